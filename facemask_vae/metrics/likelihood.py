"""Likelihood bounds: the importance-weighted bound and nats to bits per dimension."""

from __future__ import annotations

import math

import torch


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """The importance-weighted bound log (1/K) sum_k w_k from K x B log-weights (Burda et al.)."""
    return torch.logsumexp(log_w.double(), dim=0) - math.log(log_w.shape[0])


def bits_per_dim(nats: torch.Tensor | float, n_dims: int) -> float:
    """Nats per image -> bits per dimension: nats / (n_dims ln 2)."""
    return float(nats) / (n_dims * math.log(2))
