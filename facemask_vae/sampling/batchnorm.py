"""BatchNorm statistics for sampling: the decoder's running statistics, re-estimated on its own
prior samples (NVAE, Vahdat & Kautz 2020, sec. 3.3 "readjusting BN statistics").

Training gathers the decoder's BN statistics on posterior codes; codes from the prior (or a
fitted sampler at a temperature) give other activations, and normalising them with the wrong
statistics is a large part of the blotches in prior samples. :func:`estimate_bn_stats` runs the
decoder in train mode on sampled codes and returns fresh statistics without touching the
module's own; :class:`SamplingStats` caches them per (sampler's ``bn_source``, temperature) and
swaps them in around a sampling pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

Buffers = dict[str, torch.Tensor]


def bn_layers(module: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``module`` that tracks running statistics, by qualified name."""
    return {
        name: m
        for name, m in module.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    }


def bn_buffers(module: nn.Module) -> Buffers:
    """Copies of the running mean and variance of every BN layer (name.running_mean, ...)."""
    out = {}
    for name, bn in bn_layers(module).items():
        out[f"{name}.running_mean"] = bn.running_mean.detach().clone()
        out[f"{name}.running_var"] = bn.running_var.detach().clone()
    return out


def load_bn_buffers(module: nn.Module, buffers: Buffers) -> None:
    """Copy ``buffers`` (as :func:`bn_buffers` gives them) into the module's BN layers."""
    for name, bn in bn_layers(module).items():
        bn.running_mean.copy_(buffers[f"{name}.running_mean"])
        bn.running_var.copy_(buffers[f"{name}.running_var"])


@torch.no_grad()
def estimate_bn_stats(module: nn.Module, forward: Callable[[], Any], batches: int = 20) -> Buffers:
    """BN statistics of ``module`` as ``forward()`` drives it, averaged over ``batches`` calls.

    Resets every BN layer, sets its momentum to None (a cumulative average, so every batch
    counts the same) and runs ``forward`` in train mode. Returns the new statistics; the module
    leaves with its own statistics, momenta and mode restored.
    """
    if batches < 1:
        raise ValueError(f"BN re-estimation needs at least one batch, got {batches}")
    layers = bn_layers(module)
    saved, mode = bn_buffers(module), module.training
    momenta = {k: m.momentum for k, m in layers.items()}
    counts = {k: m.num_batches_tracked.clone() for k, m in layers.items()}
    try:
        for bn in layers.values():
            bn.reset_running_stats()
            bn.momentum = None
        module.train()
        for _ in range(batches):
            forward()
        return bn_buffers(module)
    finally:
        load_bn_buffers(module, saved)
        for name, bn in layers.items():
            bn.momentum = momenta[name]
            bn.num_batches_tracked.copy_(counts[name])
        module.train(mode)


def weights_version(module: nn.Module) -> tuple[tuple[int, int], ...]:
    """What changes when a parameter of ``module`` is written (optimiser steps,
    ``load_state_dict``) or replaced (``assign=True``): each tensor's storage and autograd
    version counter. Fused optimisers do not bump the counters; the LightningModule also drops
    the cache after every training batch."""
    return tuple((p.data_ptr(), p._version) for p in module.parameters())


class SamplingStats:
    """Cached sampling BN statistics of one module, per key (sampler, temperature).

    An entry is recomputed when the module's weights have changed since it was made, so a
    callback can sample every epoch and an API user can sample after more training.
    """

    def __init__(self) -> None:
        self._cache: dict[Any, tuple[Any, Buffers]] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        self._cache.clear()

    def get(self, module: nn.Module, key: Any, estimate: Callable[[], Buffers]) -> Buffers:
        """The statistics for ``key`` (made by ``estimate`` when missing or stale)."""
        version = weights_version(module)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        buffers = estimate()
        self._cache[key] = (version, buffers)
        return buffers

    @contextlib.contextmanager
    def applied(self, module: nn.Module, buffers: Buffers) -> Iterator[None]:
        """Use ``buffers`` as the module's BN statistics inside the block, then restore its own."""
        own = bn_buffers(module)
        load_bn_buffers(module, buffers)
        try:
            yield
        finally:
            load_bn_buffers(module, own)
