"""The callback that fits what a run carries, at the end of training: its sampler
(:mod:`.sampler`, ``sampler.pt``) and its mask attribute (:mod:`.attribute`, ``attribute.pt``),
both from one pass over the best checkpoint's training codes (and the lower-face cut
from the training images themselves)."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from torchvision.utils import make_grid

from facemask_vae.callbacks import has_sync_bn, save_and_log_grids
from facemask_vae.lit.module import model_state
from facemask_vae.models import Autoencoder
from facemask_vae.run.attribute import FILE as ATTRIBUTE_FILE
from facemask_vae.run.attribute import find_lower_start, fit_run_attribute
from facemask_vae.run.files import training_codes
from facemask_vae.run.sampler import FILE, RunSampler, fit_run_sampler
from facemask_vae.sampling import parse_name

log = logging.getLogger(__name__)


class FitRunSampler(pl.Callback):
    """At the end of training, fit the run's sampler and mask attribute to the best checkpoint's
    training codes, save them as ``<run dir>/sampler.pt`` and ``attribute.pt``, and log a grid
    of the sampler's samples beside the prior's.

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
        train = dm.dataset("train")
        images, labels = train.images, train.labels
        if self.max_images is not None and self.max_images < len(images):
            g = torch.Generator().manual_seed(self.seed)
            keep = torch.randperm(len(images), generator=g)[: self.max_images]
            images, labels = images[keep], labels[keep]
        try:
            t0 = time.perf_counter()
            codes = training_codes(model, images, dm.to_float, all_levels=True)
            encode_s = time.perf_counter() - t0
            fitted = fit_run_sampler(
                model,
                images,
                dm.to_float,
                self.sampler,
                self.temperature,
                self.seed,
                self.two_stage,
                codes=codes,
            )
            fitted.fit_seconds += encode_s
        except (ValueError, RuntimeError) as e:  # a finished training is not lost to this
            log.warning("run sampler: not fitted (%s); load_run will fit one on first use", e)
            return
        run_dir = Path(trainer.default_root_dir)
        path = fitted.save(run_dir / FILE)
        try:
            attribute = fit_run_attribute(
                model,
                codes,
                labels,
                fitted.sampler.all_levels,
                self.seed,
                find_lower_start(images, labels, dm.to_float),
            )
        except (ValueError, RuntimeError) as e:
            log.warning("run attribute: not fitted (%s); load_run will fit one on first use", e)
        else:
            attribute.save(run_dir / ATTRIBUTE_FILE)
            log.info(
                "run attribute: class means of %d levels and a probe on %d-d codes in %.1f s",
                len(model.latent_sizes),
                attribute.attribute.probe_dim,
                attribute.fit_seconds,
            )
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
