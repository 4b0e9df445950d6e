"""Latent smoothness: how evenly decoded interpolation paths move."""

from __future__ import annotations

import torch


def path_smoothness(paths: torch.Tensor) -> dict[str, float]:
    """How evenly decoded interpolation paths move, for B x T x ... paths (T >= 3 points each).

    ``step_ratio``: max step / mean step, with step_i = ||p_{i+1} - p_i|| (1 = perfectly even, a
    jump makes it large). ``second_diff``: mean ||p_{i+1} - 2 p_i + p_{i-1}|| divided by the
    path length sum_i step_i (0 for evenly spaced points on a line). Both are averaged over paths.
    """
    if paths.ndim < 3 or paths.shape[1] < 3:
        raise ValueError(f"paths must be B x T x ... with T >= 3, got {tuple(paths.shape)}")
    p = paths.flatten(2).double()
    steps = (p[:, 1:] - p[:, :-1]).norm(dim=2)  # B x (T-1)
    second = (p[:, 2:] - 2 * p[:, 1:-1] + p[:, :-2]).norm(dim=2)  # B x (T-2)
    mean_step = steps.mean(dim=1)
    length = steps.sum(dim=1)
    eps = torch.finfo(torch.float64).tiny
    # a path that does not move at all is trivially even
    ratio = torch.where(mean_step > eps, steps.amax(dim=1) / mean_step.clamp(min=eps), 1.0)
    rel = torch.where(length > eps, second.mean(dim=1) / length.clamp(min=eps), 0.0)
    return {"step_ratio": float(ratio.mean()), "second_diff": float(rel.mean())}
