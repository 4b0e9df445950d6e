"""A trained run's own sampler: the study's best density for its model family, fitted to the
training codes of the run's best checkpoint and saved beside it as ``sampler.pt``.

The study's findings (docs/notebook.md, 6f and 6i): a second VAE over the codes of every level
(``two_stage_all``, T 1) for variational U-Net VAEs; a 10-component mixture over the top latent
(``gmm``, T 0.6) for the plain VAE. The AE has no measured best: it gets the VAE's, the usual
choice for deterministic codes (Ghosh et al. 2020). The file holds the sampler's tensors, the
temperature to draw at, and a digest of the weights it was fitted to, so a sampler is never
used with another model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from facemask_vae.models import Autoencoder
from facemask_vae.run.files import (
    RunFileError,
    read_checked,
    save_state,
    training_codes,
    weights_digest,
)
from facemask_vae.sampling import LatentSampler, make_sampler, parse_name, sampler_from_state

FILE = "sampler.pt"


def default_choice(model: Autoencoder) -> tuple[str, float]:
    """(sampler name, temperature): the study's best for this model's family."""
    if model.config.skip == "variational":
        return "two_stage_all", 1.0
    return "gmm", 0.6


@dataclass
class RunSampler:
    """A fitted sampler with the temperature to draw at and what it was fitted to."""

    sampler: LatentSampler
    temperature: float
    digest: str
    n_codes: int
    fit_seconds: float

    def save(self, path: str | Path) -> Path:
        state = {
            "sampler": self.sampler.state_dict(),
            "temperature": self.temperature,
            "digest": self.digest,
            "n_codes": self.n_codes,
            "fit_seconds": self.fit_seconds,
        }
        return save_state(state, path)


def fit_run_sampler(
    model: Autoencoder,
    images: torch.Tensor,
    to_float: Any,
    name: str | None = None,
    temperature: float | None = None,
    seed: int = 0,
    two_stage: dict | None = None,
    codes: torch.Tensor | None = None,
) -> RunSampler:
    """Fit ``name`` (default: :func:`default_choice`) to the codes of ``images`` (uint8), or to
    ``codes`` when already encoded (every level's, flattened: N x sum(latent_sizes));
    ``two_stage``: the second VAE's options (latent_dim, hidden, epochs) for the two_stage kinds."""
    default_name, default_t = default_choice(model)
    name = name or default_name
    t0 = time.perf_counter()
    all_levels = parse_name(name)[1]
    if codes is None:
        codes = training_codes(model, images, to_float, all_levels)
    elif not all_levels:
        codes = codes[:, : model.latent_dim]
    sampler = make_sampler(name, codes.shape[1], codes, seed=seed, two_stage=two_stage)
    return RunSampler(
        sampler=sampler,
        temperature=default_t if temperature is None else float(temperature),
        digest=weights_digest(model),
        n_codes=len(codes),
        fit_seconds=time.perf_counter() - t0,
    )


def load_run_sampler(path: str | Path, model: Autoencoder) -> RunSampler:
    """The sampler saved at ``path``, checked against ``model``'s weights."""
    state = read_checked(path, model, "sampler")
    refit = f"delete {path} to fit a new one on next use"
    try:
        sampler = sampler_from_state(state["sampler"])
    except (KeyError, ValueError, RuntimeError) as e:
        raise RunFileError(f"{path}: its sampler state is broken ({e}); {refit}") from e
    want = sum(model.latent_sizes) if sampler.all_levels else model.latent_dim
    if sampler.dim != want:
        raise RunFileError(f"{path}: draws {sampler.dim}-d codes, the model {want}; {refit}")
    return RunSampler(
        sampler=sampler,
        temperature=float(state["temperature"]),
        digest=state["digest"],
        n_codes=int(state["n_codes"]),
        fit_seconds=float(state["fit_seconds"]),
    )
