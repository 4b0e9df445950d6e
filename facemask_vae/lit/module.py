"""The LightningModule of the plain training regime: one model, one optimiser, one step.

:class:`TrainingModule` takes the generative model (an
:class:`~facemask_vae.models.Autoencoder`), the optimiser as a partial (Hydra ``_partial_``:
called with the parameters) and optionally a Lightning lr-scheduler config whose ``scheduler`` is
a partial (called with the optimiser). Its one :meth:`model_step` computes the model's objective
at the module's ``beta`` (set by the annealing callbacks) and logs it under the names of
:mod:`facemask_vae.metric_keys`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from facemask_vae import metric_keys as K
from facemask_vae.metrics import active_units
from facemask_vae.models.autoencoder import Autoencoder, LossTerms, Objective

#: torch.compile's modes (None: torch's default); "reduce-overhead" replays CUDA graphs, which
#: pays on a GPU where a step is launch-bound, and the max-autotune modes search kernels first
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")

OptimizerFactory = Callable[..., torch.optim.Optimizer]


def check_compile_mode(compile: bool, compile_mode: str | None) -> None:
    """Refuse an unknown mode, and a mode without ``compile`` (it would silently do nothing)."""
    if compile_mode not in COMPILE_MODES:
        raise ValueError(
            f"module.compile_mode must be one of {COMPILE_MODES} (null: torch's default), "
            f"got {compile_mode!r}"
        )
    if compile_mode is not None and not compile:
        raise ValueError(
            f"module.compile_mode={compile_mode} needs module.compile=true (it picks the mode of "
            "torch.compile, which is off)"
        )


class TrainingModule(pl.LightningModule):
    """Trains a generative model on its negative ELBO (nats per dimension) with ``beta`` on the KL.

    ``optimizer`` is called with the model's parameters (None: a module that only tests);
    ``scheduler`` is Lightning's lr-scheduler dict with the scheduler as a partial of the optimiser.

    ``last_terms`` holds the latest training step's detached loss, recon and KL, for callbacks
    that check them before the optimiser steps (:class:`~facemask_vae.callbacks.NonFiniteGuard`).
    """

    def __init__(
        self,
        model: Autoencoder,
        optimizer: OptimizerFactory | None = None,
        scheduler: dict[str, Any] | None = None,
        channels_last: bool = True,
        compile: bool = False,
        compile_mode: str | None = None,
    ) -> None:
        super().__init__()
        check_compile_mode(compile, compile_mode)
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"])
        self.hparams["model"] = model.spec()  # what rebuilds the model from a checkpoint alone
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_config = dict(scheduler) if scheduler else None
        if self.scheduler_config is not None and "scheduler" not in self.scheduler_config:
            raise ValueError(
                "scheduler must be a Lightning lr-scheduler config with a `scheduler` partial, "
                f"got keys {sorted(self.scheduler_config)}"
            )
        self.beta = 1.0
        self.last_terms: dict[str, torch.Tensor] = {}
        self._mu_store: dict[str, list[torch.Tensor]] = {K.TRAIN: [], K.VAL: []}
        if channels_last:
            self.to(memory_format=torch.channels_last)

    # ---- one step -----------------------------------------------------------------------------
    def model_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str
    ) -> tuple[Objective, LossTerms]:
        """The model's objective on a batch at the current beta, logged as ``<stage>/...``."""
        x, _ = batch
        terms = self.model.loss_terms(x)
        obj = self.model.objective(terms, self.beta)
        self._log_step(stage, x, terms, obj)
        if stage in self._mu_store:
            self._mu_store[stage].append(terms.mu.detach().float())
        return obj, terms

    def _log_step(self, stage: str, x: torch.Tensor, terms: LossTerms, obj: Objective) -> None:
        on_step = stage == K.TRAIN
        log = {K.key(stage, K.LOSS): obj.loss, K.key(stage, K.RECON): obj.recon}
        if self.model.has_kl:
            log |= {
                K.key(stage, K.KL): obj.kl,
                K.key(stage, K.ELBO): obj.elbo,
                K.key(stage, K.BETA): self.beta,
            }
            if len(obj.kl_levels) > 1:
                log |= {K.key(stage, K.kl_level(i)): v for i, v in enumerate(obj.kl_levels)}
        # float32 even under bf16 autocast: SSIM's Gaussian filter is a conv that autocast would
        # run in bf16, where E[x^2] - E[x]^2 loses the variances (test SSIM came out 0.07-0.15 low)
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            xm = self.model.likelihood.mean(terms.out).clamp(0, 1)
            xf = x.float()
            log[K.key(stage, K.PSNR)] = peak_signal_noise_ratio(xm, xf, data_range=1.0)
            if not on_step:  # SSIM's filtering in float32 is too costly for every training step
                log[K.key(stage, K.SSIM)] = structural_similarity_index_measure(
                    xm, xf, data_range=1.0
                )
        self.log_dict(
            log, on_step=on_step, on_epoch=True, batch_size=x.shape[0], sync_dist=not on_step
        )
        if on_step:  # read by the NonFiniteGuard callback before the optimiser step
            self.last_terms = {"loss": obj.loss.detach(), "recon": obj.recon.detach()}
            self.last_terms["kl"] = obj.kl.detach()

    def step_outputs(self, loss: torch.Tensor, obj: Objective) -> dict[str, torch.Tensor]:
        """What a training step returns: the loss to optimise (nats per dimension) and, for
        callbacks' ``on_train_batch_end``, the step's detached KL and recon (nats per image)."""
        return {"loss": loss, K.KL: obj.kl.detach(), K.RECON: obj.recon.detach()}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        # Optimise nats per dimension: Adam is scale-free, but gradient clipping and weight
        # decay are not, and per-dimension keeps their settings meaningful at any image size.
        obj, _ = self.model_step(batch, K.TRAIN)
        return self.step_outputs(obj.loss / self.model.n_dims, obj)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.model_step(batch, K.VAL)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.model_step(batch, K.TEST)

    # ---- hooks ----------------------------------------------------------------------------------
    def _log_active_units(self, stage: str) -> None:
        mus = self._mu_store[stage]
        if mus:
            mu = torch.cat(mus)
            if mu.shape[0] > 1:
                self.log(K.key(stage, K.ACTIVE_UNITS), float(active_units(mu)), sync_dist=True)
        mus.clear()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.model.sampling_stats.clear()  # the weights moved: sampling statistics are re-estimated

    def on_train_epoch_end(self) -> None:
        self._log_active_units(K.TRAIN)

    def on_validation_epoch_end(self) -> None:
        self._log_active_units(K.VAL)

    def configure_model(self) -> None:
        if self.hparams.compile:
            mode = self.hparams.compile_mode
            # in place: the state dict keeps its keys (a wrapper would add ``_orig_mod.``)
            self.model.encoder.compile(mode=mode)
            self.model.decoder.compile(mode=mode)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # CUDA-graph modes: a new step begins, so the graphs' outputs of the last one may be
        # overwritten (without this torch can refuse to replay while they look alive)
        if self.hparams.compile and self.hparams.compile_mode in CUDA_GRAPH_MODES:
            torch.compiler.cudagraph_mark_step_begin()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints written before the model moved into ``self.model`` resume too."""
        checkpoint["state_dict"] = prefixed_state_dict(checkpoint["state_dict"])

    # ---- optimisers -----------------------------------------------------------------------------
    def build_scheduler(self, opt: torch.optim.Optimizer) -> dict[str, Any] | None:
        """The lr-scheduler config for ``opt``; a cosine schedule's ``T_max`` defaults to the
        run's optimiser steps."""
        if self.scheduler_config is None:
            return None
        config = dict(self.scheduler_config)
        factory = config.pop("scheduler")
        kwargs = {}
        func = getattr(factory, "func", factory)
        given = getattr(factory, "keywords", {}) or {}
        if "T_max" in inspect.signature(func).parameters and "T_max" not in given:
            kwargs["T_max"] = max(int(self.trainer.estimated_stepping_batches), 1)
        return {"scheduler": factory(opt, **kwargs), **config}

    def make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        if self.optimizer_factory is None:
            raise ValueError("this module was built without an optimizer: it can test, not train")
        return self.optimizer_factory(params)

    def configure_optimizers(self) -> Any:
        opt = self.make_optimizer(self.model.parameters())
        scheduler = self.build_scheduler(opt)
        return opt if scheduler is None else {"optimizer": opt, "lr_scheduler": scheduler}


#: the top-level modules of a model's state dict before it moved into ``TrainingModule.model``
_MODEL_PARTS = ("encoder.", "to_latent.", "decoder.", "likelihood.")


def prefixed_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """A training module's state dict with the model's keys under ``model.`` (old checkpoints
    had them at the top; the adversarial critics stay ``critics.*``)."""
    return {(f"model.{k}" if k.startswith(_MODEL_PARTS) else k): v for k, v in state.items()}


def model_state(state_dict: dict[str, Any]) -> dict[str, Any]:
    """The model's weights from a training module's state dict (old or new layout)."""
    state = prefixed_state_dict(state_dict)
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
