"""KL-annealing schedules: beta as a pure function of the global step, and the callback that applies it.

Schedules are plain functions (``beta = schedule(step)``) so they test without a Trainer; the
callback :class:`KLAnnealing` sets ``pl_module.beta`` before every training step from
``trainer.global_step``, which a checkpoint restores, so a resumed run continues its schedule.
The ``controlled`` schedule (ControlVAE) is feedback, not a function of the step: a PI
controller whose state travels in the checkpoint through the callback's ``state_dict``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch

from facemask_vae.metric_keys import KL


def _check_beta(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"anneal.{name} must be a finite number >= 0, got {value}")
    return value


@dataclass(frozen=True)
class Constant:
    """beta-VAE: the same beta at every step (beta = 1 is the plain VAE)."""

    beta: float = 1.0

    def __post_init__(self) -> None:
        _check_beta("beta", self.beta)

    def __call__(self, step: int, total_steps: int | None = None) -> float:
        return float(self.beta)


@dataclass(frozen=True)
class Linear:
    """Linear warm-up from ``beta_min`` to ``beta_max`` over ``warmup_steps``, then hold."""

    warmup_steps: int = 1000
    beta_min: float = 0.0
    beta_max: float = 1.0

    def __post_init__(self) -> None:
        _check_beta("beta_min", self.beta_min)
        _check_beta("beta_max", self.beta_max)
        if self.warmup_steps < 0:
            raise ValueError(f"anneal.warmup_steps must be >= 0, got {self.warmup_steps}")

    def __call__(self, step: int, total_steps: int | None = None) -> float:
        if self.warmup_steps == 0:
            return float(self.beta_max)
        frac = min(max(step / self.warmup_steps, 0.0), 1.0)
        return float(self.beta_min + frac * (self.beta_max - self.beta_min))


@dataclass(frozen=True)
class Sigmoid:
    """Bowman et al. (2016) logistic: beta_max / (1 + exp(-steepness * (step - center)))."""

    center: int = 1000
    steepness: float = 0.005
    beta_max: float = 1.0

    def __post_init__(self) -> None:
        _check_beta("beta_max", self.beta_max)
        if not self.steepness > 0:
            raise ValueError(f"anneal.steepness must be > 0, got {self.steepness}")

    def __call__(self, step: int, total_steps: int | None = None) -> float:
        arg = -self.steepness * (step - self.center)
        return float(self.beta_max / (1.0 + math.exp(min(arg, 700.0))))


@dataclass(frozen=True)
class Cyclic:
    """Fu et al. (2019): ``n_cycles`` cycles over the run; each ramps 0 -> beta_max over the
    first ``ratio`` of the cycle (linearly or along a half cosine), then holds at beta_max."""

    n_cycles: int = 4
    ratio: float = 0.5
    beta_max: float = 1.0
    ramp: str = "linear"

    def __post_init__(self) -> None:
        _check_beta("beta_max", self.beta_max)
        if int(self.n_cycles) < 1:
            raise ValueError(f"anneal.n_cycles must be >= 1, got {self.n_cycles}")
        if not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"anneal.ratio must be in (0, 1], got {self.ratio}")
        if self.ramp not in ("linear", "cosine"):
            raise ValueError(f"anneal.ramp must be 'linear' or 'cosine', got {self.ramp!r}")

    def __call__(self, step: int, total_steps: int | None = None) -> float:
        if not total_steps:
            raise ValueError("the cyclic schedule needs the run's total number of steps")
        period = total_steps / self.n_cycles
        pos = (step % period) / period if step < total_steps else 1.0
        frac = min(pos / self.ratio, 1.0)
        if self.ramp == "cosine":
            frac = 0.5 - 0.5 * math.cos(math.pi * frac)
        return float(self.beta_max * frac)


class PIController:
    """ControlVAE (Shao et al. 2020): a PI controller that steers beta so the KL tracks a target.

    beta = P / (1 + exp(e)) - I + beta_min, where e = target - KL, and the integral term I
    accumulates e (clamped, anti-windup). A KL above the target raises beta, below lowers it.
    Anti-windup: I does not integrate while beta is saturated and the error would push it further
    out of its range, but does when the error turns, so a saturated beta comes back.
    """

    def __init__(
        self,
        target_kl: float,
        kp: float = 0.01,
        ki: float = 0.0001,
        beta_min: float = 0.0,
        beta_max: float = 1.0,
        beta_init: float = 0.0,
    ) -> None:
        if not math.isfinite(target_kl) or target_kl <= 0:
            raise ValueError(f"anneal.target_kl must be a positive number of nats, got {target_kl}")
        self.target_kl, self.kp, self.ki = float(target_kl), float(kp), float(ki)
        self.beta_min = _check_beta("beta_min", beta_min)
        self.beta_max = _check_beta("beta_max", beta_max)
        self.integral = 0.0
        self.beta = _check_beta("beta_init", beta_init)

    def update(self, kl: float) -> float:
        """Feed the latest KL (nats per image); returns the new beta."""
        error = self.target_kl - kl
        p = self.kp / (1.0 + math.exp(min(max(error, -700.0), 700.0)))
        beta = p - self.integral + self.beta_min
        # anti-windup (conditional integration): a positive error raises I and so lowers beta;
        # integrate unless beta is already past a bound and the error pushes it further past it
        # (integrating only inside the range would freeze I, and beta, once beta saturates)
        saturated_high = beta > self.beta_max and error <= 0
        saturated_low = beta < self.beta_min and error >= 0
        if not (saturated_high or saturated_low):
            self.integral += self.ki * error
        self.beta = min(max(beta, self.beta_min), self.beta_max)
        return self.beta

    def state_dict(self) -> dict[str, float]:
        return {"integral": self.integral, "beta": self.beta}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.integral, self.beta = float(state["integral"]), float(state["beta"])


def steps_from_epochs(epochs: float | None, steps_per_epoch: int) -> int | None:
    """Convert a length given in epochs to optimiser steps (None stays None)."""
    return None if epochs is None else round(epochs * steps_per_epoch)


SCHEDULES = {"constant": Constant, "linear": Linear, "sigmoid": Sigmoid, "cyclic": Cyclic}


class KLAnnealing(pl.Callback):
    """Sets ``pl_module.beta`` from a schedule of the global step before every training step.

    Args:
        kind: the schedule, one of :data:`SCHEDULES`; ``**params`` are its fields.
        name: how runs are named (e.g. ``cyclic``, or ``beta4`` for a beta-VAE).
        warmup_epochs / center_epochs: lengths in epochs that replace ``warmup_steps`` /
            ``center`` once the number of batches per epoch is known.
    """

    def __init__(
        self,
        kind: str = "linear",
        name: str | None = None,
        warmup_epochs: float | None = None,
        center_epochs: float | None = None,
        **params: Any,
    ) -> None:
        if kind not in SCHEDULES:
            raise ValueError(
                f"unknown annealing schedule {kind!r}: anneal.kind is one of {sorted(SCHEDULES)}"
            )
        self.schedule = SCHEDULES[kind](**params)
        self.kind, self.name = kind, name or kind
        self.warmup_epochs, self.center_epochs = warmup_epochs, center_epochs
        self.total_steps: int | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.total_steps = int(trainer.estimated_stepping_batches)
        batches = trainer.num_training_batches
        if self.warmup_epochs is not None or self.center_epochs is not None:
            if not math.isfinite(batches):
                raise ValueError(
                    "anneal.warmup_epochs / center_epochs need a finite number of batches per "
                    "epoch; use warmup_steps / center instead"
                )
            self.schedule = self.schedule_for(max(int(batches), 1))
        self._apply(trainer, pl_module)

    def schedule_for(self, steps_per_epoch: int) -> Any:
        """The schedule with lengths given in epochs converted to steps."""
        fields = {}
        if self.warmup_epochs is not None and hasattr(self.schedule, "warmup_steps"):
            fields["warmup_steps"] = steps_from_epochs(self.warmup_epochs, steps_per_epoch)
        if self.center_epochs is not None and hasattr(self.schedule, "center"):
            fields["center"] = steps_from_epochs(self.center_epochs, steps_per_epoch)
        return type(self.schedule)(**{**vars(self.schedule), **fields})

    def beta_at(self, step: int) -> float:
        return self.schedule(step, self.total_steps)

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.beta = self.beta_at(trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._apply(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name}


class ControlledKLAnnealing(KLAnnealing):
    """Beta from a :class:`PIController` fed with the training KL every ``period`` steps.

    The KL is the one the training step returns (``outputs["kl"]``, nats per image, see
    :meth:`facemask_vae.lit.TrainingModule.step_outputs`), not a logged metric's name. Reading it
    costs one host sync, so it happens every ``period`` steps, not every step.
    """

    def __init__(self, name: str = "controlled", period: int = 10, **controller: Any) -> None:
        if period < 1:
            raise ValueError(f"anneal.period must be >= 1, got {period}")
        self.kind, self.name = "controlled", name
        self.controller = PIController(**controller)
        self.period = period
        self.total_steps = None

    def on_fit_start(self, trainer, pl_module) -> None:
        pl_module.beta = self.controller.beta

    def _apply(self, trainer, pl_module) -> None:
        pl_module.beta = self.controller.beta

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.period != 0:
            return
        kl = outputs.get(KL) if isinstance(outputs, dict) else None
        if not isinstance(kl, torch.Tensor):
            raise TypeError(
                f"anneal=controlled steers beta by the KL a training step returns "
                f"(outputs[{KL!r}]); this module's training_step returned {type(outputs).__name__}"
            )
        if torch.isfinite(kl):
            self.controller.update(float(kl))

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "controller": self.controller.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.controller.load_state_dict(state_dict["controller"])
