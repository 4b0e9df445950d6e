"""Section 4, interpolation: paths between test pairs and their evenness (pixels, CNN features)."""

from __future__ import annotations

import torch

from facemask_vae import metrics as M
from facemask_vae import report as R
from facemask_vae.evaluation.context import Context, batches
from facemask_vae.evaluation.shared import interpolation_pairs, pairs

# interpolation_pairs lives in shared.py, beside the pairs accessor the swap test reads too
__all__ = ["interpolation_pairs", "section_interpolation"]


def section_interpolation(ctx: Context) -> None:
    """Decoded paths between the same test pairs for every model; evenness in pixel and CNN space."""
    cfg = ctx.cfg
    steps = int(cfg.interp_steps)
    a_idx, b_idx = pairs(ctx)
    ctx.heading(f"Interpolation smoothness ({len(a_idx)} mask/no-mask pairs, {steps} steps)")
    xa, xb = ctx.floats(ctx.x_test[a_idx]), ctx.floats(ctx.x_test[b_idx])
    n_show = min(int(cfg.n_show_pairs), len(a_idx))
    rows = []
    shown: dict[tuple[str, str], torch.Tensor] = {}
    for name, run in zip(ctx.names, ctx.runs, strict=True):
        modes = ("linear", "slerp") if run.model.has_kl else ("linear",)
        for mode in modes:
            paths = torch.cat(
                [
                    run.model.interpolate(xa[s], xb[s], steps=steps, mode=mode).cpu()
                    for s in batches(len(a_idx), max(1, ctx.bs // steps))
                ]
            )
            px = M.path_smoothness(paths)
            feats, _ = ctx.cnn_predict(paths.flatten(0, 1))
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
            shown[(name, mode)] = paths[:n_show]
    for p in range(n_show):
        for name, run in zip(ctx.names, ctx.runs, strict=True):
            modes = ("linear", "slerp") if run.model.has_kl else ("linear",)
            for mode in modes:
                rows.append((f"pair {p + 1}: {name} ({mode})", shown[(name, mode)][p]))
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
