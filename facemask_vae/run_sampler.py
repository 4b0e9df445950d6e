"""A trained run's own sampler: the study's best density for its model family, fitted to the
training codes of the run's best checkpoint and saved beside it as ``sampler.pt``.

The study's findings (docs/results.md, 6f and 6i): a second VAE over the codes of every level
(``two_stage_all``, T 1) for variational U-Net VAEs; a 10-component mixture over the top latent
(``gmm``, T 0.6) for the plain VAE. The AE has no measured best: it gets the VAE's, the usual
choice for deterministic codes (Ghosh et al. 2020). The file holds the sampler's tensors, the
temperature to draw at, and a digest of the weights it was fitted to, so a sampler is never
used with another model.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from torchvision.utils import make_grid

from facemask_vae.callbacks import has_sync_bn, save_and_log_grids
from facemask_vae.lit.module import model_state
from facemask_vae.models import Autoencoder
from facemask_vae.sampling import LatentSampler, make_sampler, parse_name, sampler_from_state

log = logging.getLogger(__name__)

FILE = "sampler.pt"
FORMAT = 1


class SamplerFileError(Exception):
    """A sampler file that cannot be used with this run; the message names the file and the fix."""


def default_choice(model: Autoencoder) -> tuple[str, float]:
    """(sampler name, temperature): the study's best for this model's family."""
    if model.config.skip == "variational":
        return "two_stage_all", 1.0
    return "gmm", 0.6


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
    """Codes (posterior means) of uint8 ``images``: the top latent's, or every level's flattened
    (N x sum(latent_sizes))."""
    device, out = model.device, []
    for i in range(0, len(images), batch):
        x = to_float(images[i : i + batch].to(device))
        if all_levels:
            out.append(model.flatten_codes(model.encode_levels(x)).cpu())
        else:
            out.append(model.encode(x).cpu())
    return torch.cat(out)


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
            "format": FORMAT,
            "sampler": self.sampler.state_dict(),
            "temperature": self.temperature,
            "digest": self.digest,
            "n_codes": self.n_codes,
            "fit_seconds": self.fit_seconds,
        }
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path


def fit_run_sampler(
    model: Autoencoder,
    images: torch.Tensor,
    to_float: Any,
    name: str | None = None,
    temperature: float | None = None,
    seed: int = 0,
    two_stage: dict | None = None,
) -> RunSampler:
    """Fit ``name`` (default: :func:`default_choice`) to the codes of ``images`` (uint8);
    ``two_stage``: the second VAE's options (latent_dim, hidden, epochs) for the two_stage kinds."""
    default_name, default_t = default_choice(model)
    name = name or default_name
    t0 = time.perf_counter()
    all_levels = parse_name(name)[1]
    was_training = model.training
    model.eval()
    try:
        codes = training_codes(model, images, to_float, all_levels)
    finally:
        model.train(was_training)
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
    path = Path(path)
    refit = f"delete {path} to fit a new one on next use"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or tampered file can raise almost anything
        raise SamplerFileError(
            f"{path}: not a readable sampler file (damaged, truncated, or it needs unsafe "
            f"unpickling, which is refused): {type(e).__name__}; {refit}"
        ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SamplerFileError(f"{path}: not a sampler file of this project; {refit}")
    if state.get("digest") != weights_digest(model):
        raise SamplerFileError(
            f"{path}: fitted to other weights than this run's checkpoint (another model, run or "
            f"checkpoint); {refit}"
        )
    try:
        sampler = sampler_from_state(state["sampler"])
    except (KeyError, ValueError, RuntimeError) as e:
        raise SamplerFileError(f"{path}: its sampler state is broken ({e}); {refit}") from e
    want = sum(model.latent_sizes) if sampler.all_levels else model.latent_dim
    if sampler.dim != want:
        raise SamplerFileError(f"{path}: draws {sampler.dim}-d codes, the model {want}; {refit}")
    return RunSampler(
        sampler=sampler,
        temperature=float(state["temperature"]),
        digest=state["digest"],
        n_codes=int(state["n_codes"]),
        fit_seconds=float(state["fit_seconds"]),
    )


class FitRunSampler(pl.Callback):
    """At the end of training, fit the run's sampler to the best checkpoint's training codes,
    save it as ``<run dir>/sampler.pt`` and log a grid of its samples beside the prior's.

    ``sampler`` / ``temperature``: None for the study's best (:func:`default_choice`);
    ``max_images``: a seeded subset of the training split to fit on (None: all of it);
    ``two_stage``: the second VAE's options (None: its defaults). Only rank 0 fits.
    """

    def __init__(
        self,
        sampler: str | None = None,
        temperature: float | None = None,
        max_images: int | None = None,
        n_samples: int = 64,
        seed: int = 0,
        two_stage: dict | None = None,
    ) -> None:
        if sampler is not None:
            parse_name(sampler)  # an unknown name fails before training, not after it
        self.sampler, self.temperature, self.max_images = sampler, temperature, max_images
        self.n_samples, self.seed = int(n_samples), int(seed)
        self.two_stage = dict(two_stage) if two_stage else None
        self._t0 = time.perf_counter()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.fast_dev_run or trainer.datamodule is None:
            return
        train_seconds = time.perf_counter() - self._t0
        model = copy.deepcopy(pl_module.model)
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        if best:
            ckpt = torch.load(best, map_location="cpu", weights_only=True)
            model.load_state_dict(model_state(ckpt["state_dict"]))
        dm = trainer.datamodule
        images = dm.dataset("train").images
        if self.max_images is not None and self.max_images < len(images):
            g = torch.Generator().manual_seed(self.seed)
            images = images[torch.randperm(len(images), generator=g)[: self.max_images]]
        try:
            fitted = fit_run_sampler(
                model,
                images,
                dm.to_float,
                self.sampler,
                self.temperature,
                self.seed,
                self.two_stage,
            )
        except (ValueError, RuntimeError) as e:  # a finished training is not lost to this
            log.warning("run sampler: not fitted (%s); load_run will fit one on first use", e)
            return
        run_dir = Path(trainer.default_root_dir)
        path = fitted.save(run_dir / FILE)
        log.info(
            "run sampler: %s at T %g fitted to %d codes of %s in %.1f s (%.1f%% of training's "
            "%.0f s) -> %s",
            fitted.sampler.name,
            fitted.temperature,
            fitted.n_codes,
            Path(best).name if best else "the last weights",
            fitted.fit_seconds,
            100 * fitted.fit_seconds / max(train_seconds, 1e-9),
            train_seconds,
            path,
        )
        self._log_grids(trainer, model, fitted)

    def _log_grids(self, trainer: pl.Trainer, model: Autoencoder, fitted: RunSampler) -> None:
        grids = {}
        for name, sampler, t in (
            ("samples_prior", None, 1.0),
            ("samples_run_sampler", fitted.sampler, fitted.temperature),
        ):
            g = torch.Generator(device=model.device).manual_seed(self.seed)
            x = model.sample(
                self.n_samples,
                generator=g,
                temperature=t,
                sampler=sampler,
                sampling_bn=not has_sync_bn(model),
            )
            grids[name] = make_grid(x, nrow=int(self.n_samples**0.5 + 0.5), padding=1)
        save_and_log_grids(trainer, grids, "")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_scalar(
                    "run_sampler/fit_seconds", fitted.fit_seconds, trainer.global_step
                )
