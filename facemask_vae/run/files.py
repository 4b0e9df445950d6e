"""What a trained run saves beside its checkpoints after training (its sampler, its attribute):
the file format they share, checked against the weights they were fitted to, and the training
codes they are fitted on."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from facemask_vae.models import Autoencoder

FORMAT = 1


class CheckpointError(Exception):
    """A run or checkpoint that cannot be evaluated; the message names the file and the problem."""


class RunFileError(Exception):
    """A run file that cannot be used with this run; the message names the file and the fix."""


def weights_digest(model: Autoencoder) -> str:
    """A digest of the model's weights and buffers: what a sampler file is checked against."""
    h = hashlib.sha1()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode() + value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def training_codes(
    model: Autoencoder, images: torch.Tensor, to_float: Any, all_levels: bool, batch: int = 256
) -> torch.Tensor:
    """Codes (posterior means) of uint8 ``images``: the top latent's, or every latent level's
    flattened (N x sum(latent_sizes); deterministic skips' features are not latents)."""
    device, out, n_levels = model.device, [], len(model.latent_sizes)
    for i in range(0, len(images), batch):
        x = to_float(images[i : i + batch].to(device))
        if all_levels:
            out.append(model.flatten_codes(model.encode_levels(x)[:n_levels]).cpu())
        else:
            out.append(model.encode(x).cpu())
    return torch.cat(out)


def read_checked(path: str | Path, model: Autoencoder, what: str) -> dict[str, Any]:
    """The state saved at ``path`` by a run file of this project (a sampler, an attribute),
    checked to be readable, of this format and fitted to ``model``'s weights."""
    path = Path(path)
    refit = f"delete {path} to fit a new one on next use"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or tampered file can raise almost anything
        raise RunFileError(
            f"{path}: not a readable {what} file (damaged, truncated, or it needs unsafe "
            f"unpickling, which is refused): {type(e).__name__}; {refit}"
        ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RunFileError(f"{path}: not a {what} file of this project; {refit}")
    if state.get("digest") != weights_digest(model):
        raise RunFileError(
            f"{path}: fitted to other weights than this run's checkpoint (another model, run or "
            f"checkpoint); {refit}"
        )
    return state


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    """Write a run file atomically (a temporary file, then a rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    tmp.replace(path)
    return path
