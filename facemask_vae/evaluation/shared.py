"""What several sections read, each behind one accessor that computes it once, on first use
(:func:`~.context.shared`): any section runs alone, in any order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from facemask_vae import metrics as M
from facemask_vae.checkpoints import LoadedRun
from facemask_vae.evaluation.context import Context, batches, shared

ACTIVE_THRESHOLD = 0.01  # as metrics.active_units: Var_x E[z|x] > 0.01


# ---- latents ------------------------------------------------------------------------------------


def encode_images(ctx: Context, run: LoadedRun, images: torch.Tensor, desc: str) -> torch.Tensor:
    """Top latent means (posterior means for VAEs) of uint8 images, batched, on the CPU."""
    return torch.cat(
        [run.model.encode(ctx.floats(images[s])).cpu() for s in batches(len(images), ctx.bs, desc)]
    )


@shared
def train_latents(ctx: Context, i: int) -> torch.Tensor:
    """Top latent means of run ``i`` on the probe subset of the training split."""
    return encode_images(ctx, ctx.runs[i], ctx.x_train, f"{ctx.names[i]}: train latents")


def _sampler_images(ctx: Context) -> torch.Tensor:
    """The training images the fitted samplers are fitted to: all of the training split, or a
    seeded subset of ``sampler_fit_max``."""
    images = ctx.dm.dataset("train").images
    limit = ctx.cfg.get("sampler_fit_max")
    if limit is not None and int(limit) < len(images):
        g = ctx.rng("sampler_subset")
        images = images[torch.randperm(len(images), generator=g)[: int(limit)].sort().values]
    return images


@shared
def sampler_latents(ctx: Context, i: int) -> torch.Tensor:
    """Top latent means of run ``i`` on the samplers' training images (N x latent_dim)."""
    desc = f"{ctx.names[i]}: latents for the samplers"
    return encode_images(ctx, ctx.runs[i], _sampler_images(ctx), desc)


@shared
def sampler_codes_all(ctx: Context, i: int) -> torch.Tensor:
    """Posterior means of every latent level of run ``i`` on the samplers' training images,
    flattened top first (N x sum(model.latent_sizes)): what the ``*_all`` samplers fit."""
    name, model = ctx.names[i], ctx.runs[i].model
    n_levels = len(model.latent_sizes)
    images = _sampler_images(ctx)
    return torch.cat(
        [
            model.flatten_codes(model.encode_levels(ctx.floats(images[s]))[:n_levels]).cpu()
            for s in batches(len(images), ctx.bs, f"{name}: codes of every level")
        ]
    )


# ---- one pass over the test split per run --------------------------------------------------------


class _RunningVar:
    """Streaming per-unit variance of codes (any shape per image), for active units per level."""

    def __init__(self) -> None:
        self.n, self.s, self.ss = 0, None, None

    def update(self, c: torch.Tensor) -> None:
        c = c.detach().flatten(1).double().cpu()
        self.n += c.shape[0]
        self.s = c.sum(0) if self.s is None else self.s + c.sum(0)
        self.ss = c.pow(2).sum(0) if self.ss is None else self.ss + c.pow(2).sum(0)

    def active(self, threshold: float) -> tuple[int, int]:
        """(units whose unbiased variance over the data exceeds ``threshold``, all units)."""
        if self.n < 2 or self.s is None:
            return 0, 0
        var = (self.ss - self.s.pow(2) / self.n) / (self.n - 1)
        return int((var > threshold).sum()), int(var.numel())


@dataclass
class TestPass:
    """One run over the evaluated split, per image (N): ``mse``, ``psnr``, ``ssim`` of the mean
    reconstruction from every level's posterior mean, the ELBO's ``nll`` and, for VAEs, ``kls``
    (N x levels), the top latent means ``mu`` (N x D), and ``level_active``: (active units,
    units) of every latent level, top first."""

    mse: torch.Tensor
    psnr: torch.Tensor
    ssim: torch.Tensor
    nll: torch.Tensor
    mu: torch.Tensor
    kls: torch.Tensor | None
    level_active: list[tuple[int, int]]


@shared
def test_pass(ctx: Context, i: int) -> TestPass:
    """Run ``i`` over the evaluated split (see :class:`TestPass`)."""
    name, model = ctx.names[i], ctx.runs[i].model
    acc: dict[str, list[torch.Tensor]] = {}
    levels: list[_RunningVar] = []
    # loss_terms draws its one posterior sample from the global generator
    torch.manual_seed(ctx.seed("posterior_noise"))
    for s in batches(len(ctx.y_test), ctx.bs, f"{name}: reconstruction"):
        x = ctx.floats(ctx.x_test[s])
        codes = model.encode_levels(x)
        rec = model.decode(codes[0], codes[1:] or None)
        acc.setdefault("mse", []).append((rec - x).pow(2).flatten(1).mean(1).cpu())
        acc.setdefault("psnr", []).append(M.psnr_per_image(rec, x).cpu())
        acc.setdefault("ssim", []).append(M.ssim_per_image(rec, x).cpu())
        acc.setdefault("mu", []).append(codes[0].cpu())
        if not levels:
            levels = [_RunningVar() for _ in codes]
        for lv, c in zip(levels, codes, strict=True):
            lv.update(c)
        terms = model.evaluate_terms(x)
        acc.setdefault("nll", []).append(terms.recon.cpu())
        if model.has_kl:
            acc.setdefault("kls", []).append(terms.kl_per_level().cpu())  # B x levels
    res: dict[str, Any] = {k: torch.cat(v) for k, v in acc.items()}
    return TestPass(
        **{k: res[k] for k in ("mse", "psnr", "ssim", "nll", "mu")},
        kls=res.get("kls"),
        level_active=[lv.active(ACTIVE_THRESHOLD) for lv in levels],
    )


def test_latents(ctx: Context, i: int) -> torch.Tensor:
    """Top latent means (posterior means for VAEs) of run ``i`` on the test split."""
    return test_pass(ctx, i).mu


def level_kls(ctx: Context, i: int) -> list[float]:
    """Mean KL of every latent level of run ``i`` on the test split (nats/image); [] without KL."""
    kls = test_pass(ctx, i).kls
    return kls.mean(0).tolist() if kls is not None else []


def level_active(ctx: Context, i: int) -> list[tuple[int, int]]:
    """(active units, units) of every latent level of run ``i``, level 0 = top."""
    return test_pass(ctx, i).level_active


# ---- pairs --------------------------------------------------------------------------------------


def interpolation_pairs(
    labels: torch.Tensor, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """n (with mask, without mask) index pairs of the split, seeded; any pairs if one class lacks."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.nonzero(labels == 1).flatten()
    neg = torch.nonzero(labels == 0).flatten()
    pos, neg = (
        pos[torch.randperm(len(pos), generator=g)],
        neg[torch.randperm(len(neg), generator=g)],
    )
    m = min(n, len(pos), len(neg))
    if m == 0:
        order = torch.randperm(len(labels), generator=g)
        m = min(n, len(labels) // 2)
        return order[:m], order[m : 2 * m]
    return pos[:m], neg[:m]


@shared
def pairs(ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """The test-split index pairs (A with mask, B without) of the interpolation and swap tests."""
    return interpolation_pairs(ctx.y_test, int(ctx.cfg.n_pairs), ctx.seed("pairs"))
