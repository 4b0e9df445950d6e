"""Section 8's one-class samples: ``run.sample(n, mask=...)`` judged by the domain CNN (is it
the class asked for?) and by their distance to that class's test images, in the CNN's and
Inception's features, beside as many draws of the run's sampler not cut to a class (the
comparison the one-class draws must not lose to)."""

from __future__ import annotations

import time

import torch

from facemask_vae import metrics as M
from facemask_vae.evaluation.context import Context
from facemask_vae.evaluation.sample_fid import SampleFid
from facemask_vae.sampling.conditional import CONFIDENCE


def conditional_samples(
    ctx: Context, i: int, fid: SampleFid | None, refs: dict[int, torch.Tensor]
) -> None:
    """Run ``i``'s class-conditional samples: the CNN's accuracy on them, their domain FD (and
    FID) to the real test images of the class, beside those of as many unconditional draws."""
    name, run, n = ctx.names[i], ctx.runs[i], int(ctx.cfg.edit_samples)
    confidence = ctx.cfg.get("edit_confidence")
    ctx.put(
        name,
        "cond.confidence",
        CONFIDENCE if confidence is None else float(confidence),
        "conditional samples: the probe confidence a draw needs",
    )
    # the comparison: as many draws of the run's sampler, not cut to a class, against each class
    bn_batches = int(ctx.cfg.get("sampling_bn_batches", 20))
    every = run.sample(n, seed=ctx.seed("editing", 2), bn_batches=bn_batches).cpu()
    every_feats = ctx.cnn_predict(every)[0]
    every_inc = None
    if fid is not None:
        t0 = time.perf_counter()
        every_inc = fid.inc(every, desc=f"inception: {name}: unconditional")
        ctx.timings[fid.timing] += round(time.perf_counter() - t0, 2)
    for label, word in ((1, "mask"), (0, "nomask")):
        real = ctx.cnn_test_feats[ctx.y_test == label]
        fid_every = None
        if every_inc is not None:
            fid_every = fid(every, f"{name}: unconditional", feats=every_inc, ref=refs[label])
        what = f"unconditional samples (the comparison), to the {word} test images"
        _put(ctx, name, f"{word}_uncond", what, M.frechet_distance(every_feats, real), fid_every)
        images = run.sample(
            n,
            seed=ctx.seed("editing", label),
            mask=bool(label),
            bn_batches=bn_batches,
            confidence=confidence,
        ).cpu()
        feats, probs = ctx.cnn_predict(images)
        ctx.put(
            name,
            f"cond.acc_{word}",
            ((probs > 0.5).long() == label).float().mean(),
            f"conditional samples ({word}): share the CNN calls {word}",
        )
        fid_own = None if fid is None else fid(images, f"{name}: {word}", ref=refs[label])
        what = f"conditional samples ({word}), to that class's test images"
        _put(ctx, name, word, what, M.frechet_distance(feats, real), fid_own)


def _put(ctx: Context, name: str, key: str, what: str, fd: float, fid: dict | None) -> None:
    """A sample set's domain FD and, when measured, its FID (``SampleFid``'s result)."""
    ctx.put(name, f"cond.fd_cnn_{key}", fd, f"{what}: domain FD")
    if fid is not None:
        ctx.put(name, f"cond.fid_{key}", fid["fid"], f"{what}: FID")
