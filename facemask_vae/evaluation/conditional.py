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
        ctx.put(
            name,
            f"cond.fd_cnn_{word}_uncond",
            M.frechet_distance(every_feats, real),
            f"unconditional samples: domain FD to the {word} test images (the comparison)",
        )
        if every_inc is not None:
            ctx.put(
                name,
                f"cond.fid_{word}_uncond",
                fid(every, f"{name}: unconditional", feats=every_inc, ref=refs[label])["fid"],
                f"unconditional samples: FID to the {word} test images (the comparison)",
            )
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
        ctx.put(
            name,
            f"cond.fd_cnn_{word}",
            M.frechet_distance(feats, real),
            f"conditional samples ({word}): domain FD to that class's test images",
        )
        if fid is not None:
            ctx.put(
                name,
                f"cond.fid_{word}",
                fid(images, f"{name}: {word}", ref=refs[label])["fid"],
                f"conditional samples ({word}): FID to that class's test images",
            )
