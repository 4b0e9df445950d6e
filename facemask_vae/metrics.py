"""Metrics as pure functions of tensors, so they test without a Trainer or a model."""

from __future__ import annotations

import torch


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """Latent dimensions whose posterior mean varies over the data: Cov_x(E[z|x]) > threshold.

    Burda et al. (2016): a dimension the encoder never moves carries no information. ``mu`` is
    N x D (any trailing shape is flattened), one row per data point.
    """
    mu = mu.flatten(1).float()
    return int((mu.var(dim=0, unbiased=True) > threshold).sum())
