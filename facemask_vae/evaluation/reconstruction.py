"""Section 1, reconstruction: MSE, PSNR, SSIM; negative ELBO and the IWAE bound for VAEs; with
``recon_fid``, the FID of reconstructions: about what a perfect latent sampler would score."""

from __future__ import annotations

import torch

from facemask_vae import metrics as M
from facemask_vae import report as R
from facemask_vae.evaluation.context import REFERENCE, Context, batches
from facemask_vae.evaluation.sample_fid import SampleFid
from facemask_vae.evaluation.shared import test_pass
from facemask_vae.models import VAE


def section_reconstruction(ctx: Context) -> None:
    """Per-image MSE/PSNR/SSIM of mean reconstructions; ELBO terms and the IWAE bound for VAEs."""
    cfg = ctx.cfg
    k = int(cfg.iwae_k)
    ctx.heading(f"Reconstruction ({cfg.split} split, {len(ctx.y_test)} images)")
    n_dims = 3 * ctx.x_test.shape[-1] ** 2
    show = ctx.floats(ctx.x_test[: int(cfg.n_show)]).cpu()
    rows = [("input", show)]
    n_iwae = len(ctx.y_test) if cfg.get("iwae_images") is None else int(cfg.iwae_images)
    g = ctx.rng("iwae_subset")
    iwae_idx = torch.randperm(len(ctx.y_test), generator=g)[:n_iwae].sort().values
    for i, (name, run) in enumerate(zip(ctx.names, ctx.runs, strict=True)):
        model = run.model
        res = test_pass(ctx, i)
        ctx.put(name, "recon.mse", res.mse.mean(), "MSE (per pixel, images in [0, 1])")
        ctx.put(name, "recon.psnr", res.psnr.mean(), "PSNR (dB, mean over images)")
        ctx.put(name, "recon.ssim", res.ssim.mean(), "SSIM (mean over images)")
        ctx.put(name, "recon.nll", res.nll.mean(), "reconstruction NLL (nats/image)")
        if res.kls is not None:
            kls = res.kls
            neg_elbo = res.nll + kls.sum(1)
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
    if cfg.get("recon_fid"):
        _reconstruction_fid(ctx)


def _reconstruction_fid(ctx: Context) -> None:
    """FID of each model's mean reconstructions of the other split's images (val when evaluating
    on test) against the evaluation split: about what its samples would score from a sampler
    that drew every latent level's codes as unseen real images have them. The reference column
    scores those real images themselves: the gap between the two is what the decoder loses."""
    fid = SampleFid.create(ctx, "reconstruction")
    if fid is None:
        return
    other = "val" if ctx.cfg.split == "test" else "test"
    data = ctx.dm.dataset(other)
    x = data.images
    label = f"FID of mean reconstructions of the {len(x)} {other} images (reference: the images)"
    real = fid.real_features(x, data.labels, other)
    ctx.put(REFERENCE, "recon.fid", fid(x, f"real {other} images", feats=real)["fid"], label)
    for name, run in zip(ctx.names, ctx.runs, strict=True):
        if run.model.config.skip == "deterministic":
            ctx.note(
                "reconstruction",
                f"{name}: no reconstruction FID (its skips are encoder features, not latents a "
                "sampler could draw).",
            )
            continue
        rec = torch.cat(
            [
                run.model.reconstruct(ctx.floats(x[b])).cpu()
                for b in batches(len(x), ctx.bs, f"{name}: reconstructing the {other} images")
            ]
        )
        ctx.put(name, "recon.fid", fid(rec, f"{name}: {other} reconstructions")["fid"], label)


def _iwae(ctx: Context, model: VAE, idx: torch.Tensor, k: int, name: str) -> torch.Tensor:
    """Per-image IWAE bounds (nats) of the images ``idx``, k posterior samples each."""
    g = ctx.rng("iwae", ctx.device)
    bs = max(1, ctx.bs // 2)
    out = []
    for s in batches(len(idx), bs, f"{name}: IWAE k={k}"):
        lw = model.importance_log_weights(ctx.floats(ctx.x_test[idx[s]]), k, generator=g)
        out.append(M.iwae_bound(lw).cpu())
    return torch.cat(out)
