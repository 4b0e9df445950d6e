"""A trained run's mask attribute: the class means of its training codes at every latent level,
where its training images' lower face begins, and a probe on the codes its sampler draws (:class:`~facemask_vae.sampling.attribute.MaskAttribute`),
fitted to the best checkpoint with the run's sampler and saved beside it as ``attribute.pt``.
What ``run.edit`` and ``run.sample(n, mask=...)`` use; checked against the weights like the
sampler file.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from facemask_vae.models import Autoencoder
from facemask_vae.run.files import RunFileError, read_checked, save_state, weights_digest
from facemask_vae.sampling.attribute import MaskAttribute, fit_attribute, lower_face_start

FILE = "attribute.pt"


@dataclass
class RunAttribute:
    """A fitted attribute with what it was fitted to."""

    attribute: MaskAttribute
    digest: str
    n_codes: int
    fit_seconds: float

    def save(self, path: str | Path) -> Path:
        state = {
            "attribute": self.attribute.state_dict(),
            "digest": self.digest,
            "n_codes": self.n_codes,
            "fit_seconds": self.fit_seconds,
        }
        return save_state(state, path)


def find_lower_start(images: torch.Tensor, labels: torch.Tensor, to_float) -> float | None:
    """Where the lower face of the training images begins (a fraction of the height), or None
    with a warning when the classes' mean images show no upper face: edits then need
    ``region="all"``, and everything else still works."""
    try:
        return lower_face_start(images, labels, to_float)
    except ValueError as e:
        warnings.warn(f"no lower-face cut ({e}): edits need region='all'", stacklevel=2)
        return None


def fit_run_attribute(
    model: Autoencoder,
    codes: torch.Tensor,
    labels: torch.Tensor,
    probe_all_levels: bool,
    seed: int = 0,
    lower_start: float | None = None,
) -> RunAttribute:
    """Fit to every level's training codes, flattened (N x sum(latent_sizes)), and their labels
    (N, 1: with mask); the probe reads every level or the top latent, as the run's sampler draws;
    ``lower_start``: where the lower face begins (``lower_face_start`` of the training images)."""
    t0 = time.perf_counter()
    levels = model.unflatten_codes(codes)
    attribute = fit_attribute(levels, labels, probe_all_levels, seed, lower_start)
    return RunAttribute(attribute, weights_digest(model), len(codes), time.perf_counter() - t0)


def load_run_attribute(path: str | Path, model: Autoencoder) -> RunAttribute:
    """The attribute saved at ``path``, checked against ``model``'s weights and levels."""
    state = read_checked(path, model, "attribute")
    refit = f"delete {path} to fit a new one on next use"
    try:
        attribute = MaskAttribute.from_state(state["attribute"])
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise RunFileError(f"{path}: its attribute state is broken ({e}); {refit}") from e
    sizes = [int(m.numel()) for m in attribute.means[0]]
    if sizes != list(model.latent_sizes):
        raise RunFileError(
            f"{path}: fitted to levels {sizes}, the model has {model.latent_sizes}; {refit}"
        )
    want = sum(sizes) if attribute.probe_all_levels else sizes[0]
    if attribute.probe_dim != want:
        raise RunFileError(
            f"{path}: its probe reads {attribute.probe_dim}-d codes, not {want}; {refit}"
        )
    return RunAttribute(
        attribute, state["digest"], int(state["n_codes"]), float(state["fit_seconds"])
    )
