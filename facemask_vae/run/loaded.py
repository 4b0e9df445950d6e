"""A loaded run: the model with where it came from, and what the run carries. ``run.sample``
draws with the run's own sampler (optionally one class: ``mask=True`` / ``False``) and
``run.edit`` puts a mask on or takes it off; a run saved before it carried a sampler or an
attribute fits them on first use, says so, and saves them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from facemask_vae.models import Autoencoder
from facemask_vae.run.attribute import FILE as ATTRIBUTE_FILE
from facemask_vae.run.attribute import (
    RunAttribute,
    find_lower_start,
    fit_run_attribute,
    load_run_attribute,
)
from facemask_vae.run.files import CheckpointError, training_codes
from facemask_vae.run.sampler import FILE as SAMPLER_FILE
from facemask_vae.run.sampler import RunSampler, fit_run_sampler, load_run_sampler
from facemask_vae.sampling import LatentSampler, PriorSampler
from facemask_vae.sampling.attribute import KEEP, MaskAttribute, check_edit
from facemask_vae.sampling.conditional import ClassConditionalSampler, check_confidence


def as_model_input(images: torch.Tensor, model: Autoencoder) -> torch.Tensor:
    """Images for ``model``: B x 3 x S x S, uint8 (divided by 255) or floats in [0, 1], on its
    device; anything else fails with the fix."""
    size = model.image_size
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty B x 3 x {size} x {size} tensor, got {shape}")
    if images.shape[1] != 3:
        raise ValueError(
            f"images must have 3 (RGB) channels, got {images.shape[1]}: convert grayscale or "
            "RGBA images to RGB first (PIL: image.convert('RGB'))"
        )
    if tuple(images.shape[2:]) != (size, size):
        raise ValueError(
            f"the model takes {size} x {size} px images, got {tuple(images.shape[2:])}: resize "
            f"them (torchvision.transforms.functional.resize(images, [{size}, {size}]))"
        )
    if images.dtype == torch.uint8:
        x = images.float() / 255
    elif images.is_floating_point():
        x = images.float()
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1 or x.isnan().any():
            raise ValueError(
                f"float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]: divide "
                "uint8 values by 255, or pass the uint8 tensor itself"
            )
    else:
        raise ValueError(f"images must be uint8 or floats in [0, 1], got {images.dtype}")
    return x.to(model.device)


@dataclass
class LoadedRun:
    """One trained model, with where it came from and what its run fitted to it."""

    name: str
    run_dir: Path | None
    checkpoint: Path
    config: DictConfig | None
    model: Autoencoder
    epoch: int | None = None
    _fitted: RunSampler | None = field(default=None, repr=False)
    _attribute: RunAttribute | None = field(default=None, repr=False)

    # ---- the run's sampler -----------------------------------------------------------------------
    @property
    def sampler_path(self) -> Path | None:
        """Where the run's own sampler is saved (None for a checkpoint outside a run dir)."""
        return None if self.run_dir is None else self.run_dir / SAMPLER_FILE

    @property
    def run_sampler(self) -> RunSampler | None:
        """The run's own sampler with its temperature, loaded (and checked against the model)
        on first use; None when the run has none saved."""
        path = self.sampler_path
        if self._fitted is None and path is not None and path.is_file():
            self._fitted = load_run_sampler(path, self.model)
        return self._fitted

    @property
    def sampler(self) -> LatentSampler | None:
        """The run's own sampler (the study's best for its model), None when none is saved."""
        fitted = self.run_sampler
        return None if fitted is None else fitted.sampler

    def _train_data(self) -> tuple[torch.Tensor, torch.Tensor, object]:
        """The run's training images (uint8), labels and image-to-float function, from its
        config's data section."""
        if self.config is None or self.config.get("data") is None:
            raise CheckpointError(
                f"{self.checkpoint}: fitting to the training data needs the run's config.yaml "
                "(its data); pass the run directory made by train.py"
            )
        from hydra.utils import instantiate

        dm = instantiate(self.config.data)
        train = dm.dataset("train")
        return train.images, train.labels, dm.to_float

    def fit_sampler(self, name: str | None = None, temperature: float | None = None) -> RunSampler:
        """Fit the run's sampler to its training data (from its config) and save it in the run
        directory; what a run trained before runs carried samplers needs once."""
        images, _, to_float = self._train_data()
        opts = OmegaConf.select(self.config, "callbacks.run_sampler") or {}
        name = name or opts.get("sampler")
        temperature = temperature if temperature is not None else opts.get("temperature")
        two_stage = opts.get("two_stage")
        self._fitted = fit_run_sampler(
            self.model,
            images,
            to_float,
            name,
            temperature,
            int(opts.get("seed", 0)),
            dict(two_stage) if two_stage else None,
        )
        if self.sampler_path is not None:
            self._fitted.save(self.sampler_path)
        if self._attribute is not None and (
            self._attribute.attribute.probe_all_levels != self._fitted.sampler.all_levels
        ):  # its probe reads the old sampler's codes: refit on next use
            self._attribute = None
            if self.attribute_path is not None:
                self.attribute_path.unlink(missing_ok=True)
        return self._fitted

    def _own_sampler(self) -> RunSampler:
        fitted = self.run_sampler
        if fitted is None:
            warnings.warn(
                f"{self.name}: no {SAMPLER_FILE} in its run directory (trained before runs "
                "carried their sampler): fitting one now, once",
                stacklevel=3,
            )
            fitted = self.fit_sampler()
        return fitted

    # ---- the run's mask attribute ----------------------------------------------------------------
    @property
    def attribute_path(self) -> Path | None:
        """Where the run's mask attribute is saved (None for a checkpoint outside a run dir)."""
        return None if self.run_dir is None else self.run_dir / ATTRIBUTE_FILE

    @property
    def attribute(self) -> MaskAttribute:
        """The run's mask attribute (class means of every level, a probe on its sampler's
        codes), loaded, or fitted and saved on first use with a warning."""
        path = self.attribute_path
        if self._attribute is None and path is not None and path.is_file():
            loaded = load_run_attribute(path, self.model)
            if loaded.attribute.lower_start is None and loaded.attribute.spatial:
                self._add_lower_start(loaded)
            self._attribute = loaded
        if self._attribute is None:
            warnings.warn(
                f"{self.name}: no {ATTRIBUTE_FILE} in its run directory (trained before runs "
                "carried it): fitting one now, once",
                stacklevel=2,
            )
            self.fit_attribute()
        assert self._attribute is not None
        return self._attribute.attribute

    def _add_lower_start(self, loaded: RunAttribute) -> None:
        """Give an attribute saved without the lower-face cut its cut, from the run's training
        images (a pass over them, no encoding), and save it; warn and leave it if it cannot."""
        try:
            images, labels, to_float = self._train_data()
        except CheckpointError as e:
            warnings.warn(
                f"{self.name}: its {ATTRIBUTE_FILE} does not know where the lower face begins and "
                f"the training images are not at hand ({e}): edits need region='all'",
                stacklevel=3,
            )
            return
        lower = find_lower_start(images, labels, to_float)
        if lower is not None:
            loaded.attribute.lower_start = lower
            if self.attribute_path is not None:
                loaded.save(self.attribute_path)
            warnings.warn(
                f"{self.name}: its {ATTRIBUTE_FILE} predates the lower-face cut: added it "
                f"(the lower face begins {lower:.0%} down) and saved it",
                stacklevel=3,
            )

    def fit_attribute(self) -> RunAttribute:
        """Fit the mask attribute to the run's training codes and labels, its probe on the codes
        the run's sampler draws, and save it in the run directory."""
        images, labels, to_float = self._train_data()
        all_levels = self._own_sampler().sampler.all_levels
        codes = training_codes(self.model, images, to_float, all_levels=True)
        lower = find_lower_start(images, labels, to_float)
        self._attribute = fit_run_attribute(self.model, codes, labels, all_levels, 0, lower)
        if self.attribute_path is not None:
            self._attribute.save(self.attribute_path)
        return self._attribute

    # ---- generating and editing ----------------------------------------------------------------
    def sample(
        self,
        n: int,
        temperature: float | None = None,
        seed: int | None = None,
        sampler: str | LatentSampler | None = None,
        mask: bool | None = None,
        bn_batches: int | None = None,
        confidence: float | None = None,
    ) -> torch.Tensor:
        """n images (n x 3 x S x S in [0, 1]) from the run's own sampler at its temperature, or
        from ``sampler="prior"`` (N(0, I)) or another sampler object; ``mask`` True or False
        keeps only draws the run's attribute probe assigns to that class with ``confidence``
        (None: 0.99, ``sampling.conditional.CONFIDENCE``); ``bn_batches``:
        batches the sampling BN statistics are estimated on (None: the model's default). A run
        saved without a sampler fits one on first use, and says so."""
        if confidence is not None:
            if mask is None:
                raise ValueError("confidence applies to one class's draws: pass mask=True or False")
            confidence = check_confidence(confidence)
        if sampler == "prior":
            draw_from, t = PriorSampler(self.model.latent_dim), 1.0
        elif isinstance(sampler, LatentSampler):
            draw_from, t = sampler, 1.0
        elif sampler is None:
            fitted = self._own_sampler()
            draw_from, t = fitted.sampler, fitted.temperature
        else:
            raise ValueError(
                f"sampler is None (the run's own), 'prior' or a sampler, got {sampler!r}"
            )
        if mask is not None:
            extra = {} if confidence is None else {"confidence": float(confidence)}
            draw_from = ClassConditionalSampler(draw_from, self.attribute, bool(mask), **extra)
        g = None if seed is None else torch.Generator(self.model.device).manual_seed(int(seed))
        temperature = t if temperature is None else float(temperature)
        return self.model.sample(
            n, generator=g, temperature=temperature, sampler=draw_from, bn_batches=bn_batches
        )

    def edit(
        self,
        images: torch.Tensor,
        mask: bool,
        strength: float = 1.0,
        levels: str = "all",
        region: str = "lower",
        keep: float = KEEP,
    ) -> torch.Tensor:
        """``images`` (B x 3 x S x S, uint8 or [0, 1]) with a mask put on (``mask=True``) or
        taken off: encoded, every level's code (or the top latent's, ``levels="top"``) moved
        ``strength`` class-mean differences, decoded; on spatial levels, below the upper face
        only (``region="lower"``, learnt from the training images) or everywhere (``"all"``),
        keeping ``keep`` of the face's own offset from its source class's mean code there (1: the
        plain mean shift; 0 at strength 1: the target class's mean code). Returns B x 3 x S x S
        in [0, 1]."""
        check_edit(levels, region, keep)
        x = as_model_input(images, self.model)
        codes = self.model.encode_levels(x)
        n = len(self.model.latent_sizes)  # latent levels; deterministic skips pass through
        moved = self.attribute.shift(codes[:n], bool(mask), strength, levels, region, keep)
        moved += codes[n:]
        return self.model.decode(moved[0], moved[1:] or None)
