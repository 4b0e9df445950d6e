"""Samplers by name, and samplers from saved states: the one place that knows every kind.

A name is a kind (``prior``, ``gaussian``, ``gmm``, ``two_stage``), with ``_all`` for a density
over the codes of every latent level; :func:`parse_name` reads it, :func:`make_sampler` builds
and fits one, :func:`sampler_from_state` / :func:`load_sampler` rebuild a saved one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from facemask_vae.sampling.samplers import GaussianMixtureSampler, LatentSampler, PriorSampler
from facemask_vae.sampling.two_stage import TwoStageSampler

KINDS = ("prior", "gaussian", "gmm", "two_stage")
SAMPLERS = ("prior", "gaussian", "gmm", "two_stage", "gaussian_all", "gmm_all", "two_stage_all")


def parse_name(name: str) -> tuple[str, bool]:
    """(kind, all_levels) of a sampler name such as ``gmm_all``."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {name!r}")
    kind = name.removesuffix("_all")
    return kind, kind != name


def make_sampler(
    name: str,
    dim: int,
    latents: torch.Tensor | None = None,
    n_components: int = 10,
    seed: int = 0,
    two_stage: dict | None = None,
) -> LatentSampler:
    """A sampler by name: ``prior`` over ``dim`` dimensions, or a density fitted to ``latents``
    (N x dim; for the ``*_all`` names, the codes of every level). ``two_stage``: keyword options
    of :class:`TwoStageSampler` (latent_dim, hidden, epochs)."""
    kind, all_levels = parse_name(name)
    if kind == "prior":
        return PriorSampler(dim)
    if latents is None:
        raise ValueError(f"the {name} sampler is fitted to training latents: pass them")
    if latents.dim() != 2 or latents.shape[1] != dim:
        raise ValueError(f"latents must be N x {dim}, got {tuple(latents.shape)}")
    if kind == "two_stage":
        sampler: LatentSampler = TwoStageSampler(
            seed=seed, all_levels=all_levels, **(two_stage or {})
        )
    else:
        sampler = GaussianMixtureSampler(
            1 if kind == "gaussian" else n_components, seed, all_levels
        )
    return sampler.fit(latents)


def sampler_from_state(state: dict[str, Any]) -> LatentSampler:
    """The sampler a ``state_dict()`` describes."""
    if not isinstance(state, dict) or state.get("kind") not in KINDS:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not a sampler state: its kind is {found!r}, not one of {KINDS}")
    kind = state["kind"]
    if kind == "prior":
        return PriorSampler(int(state["dim"]))
    if kind == "two_stage":
        sampler: LatentSampler = TwoStageSampler()
    else:
        sampler = GaussianMixtureSampler(len(state["weights"]))
    return sampler.load_state_dict(state)


def save_sampler(sampler: LatentSampler, path: str | Path) -> Path:
    """Write ``sampler``'s state to ``path`` (tensors and plain values only)."""
    path = Path(path)
    torch.save(sampler.state_dict(), path)
    return path


def load_sampler(path: str | Path) -> LatentSampler:
    """Read a sampler :func:`save_sampler` wrote; no pickled code is run."""
    return sampler_from_state(torch.load(path, map_location="cpu", weights_only=True))
