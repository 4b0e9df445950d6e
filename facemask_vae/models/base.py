"""The LightningModule AE and VAE share: networks, likelihood, steps, logging, optimisers.

Subclasses say how an image becomes latents and KL terms (:meth:`loss_terms`); the steps, metrics
and optimisers a Trainer needs live here once, the inference API (``encode``/``decode``/
``reconstruct``/``sample``/``interpolate``) in :mod:`facemask_vae.models.inference`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from facemask_vae.adversarial import AdversarialUpdate
from facemask_vae.losses import Likelihood, apply_free_bits, kl_balance_weights
from facemask_vae.metrics import active_units
from facemask_vae.models.inference import InferenceAPI
from facemask_vae.models.networks import Decoder, Encoder, check_geometry
from facemask_vae.sampling import SamplingStats

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULERS = (None, "cosine", "plateau")
#: torch.compile's modes (None: torch's default); "reduce-overhead" replays CUDA graphs, which
#: pays on a GPU where a step is launch-bound, and the max-autotune modes search kernels first
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def check_compile_mode(compile: bool, compile_mode: str | None) -> None:
    """Refuse an unknown mode, and a mode without ``compile`` (it would silently do nothing)."""
    if compile_mode not in COMPILE_MODES:
        raise ValueError(
            f"model.compile_mode must be one of {COMPILE_MODES} (null: torch's default), "
            f"got {compile_mode!r}"
        )
    if compile_mode is not None and not compile:
        raise ValueError(
            f"model.compile_mode={compile_mode} needs model.compile=true (it picks the mode of "
            "torch.compile, which is off)"
        )


@dataclass
class LossTerms:
    """Per-image terms of one forward pass, in nats; ``kls`` holds B x G tensors, top level first."""

    recon: torch.Tensor
    out: torch.Tensor
    mu: torch.Tensor
    kls: list[torch.Tensor] = field(default_factory=list)
    z: torch.Tensor | None = None  # the top code the decoder saw (a posterior sample for VAEs)


class AutoEncoderBase(InferenceAPI, pl.LightningModule):
    """Shared encoder/decoder LightningModule; ``beta`` weights the KL (set by annealing callbacks)."""

    has_kl: bool = False

    def __init__(
        self,
        image_size: int = 64,
        latent_dim: int = 128,
        widths: Sequence[int] = (32, 64, 128, 256),
        block: str = "plain",
        norm: str = "batch",
        likelihood: str = "gaussian_learned",
        sigma: float = 0.1,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: str | None = None,
        channels_last: bool = True,
        compile: bool = False,
        compile_mode: str | None = None,
        name: str | None = None,
        skip: str = "none",
        skip_dropout: float = 0.0,
        skip_latent_channels: int = 4,
        skip_posterior: str = "block",  # conf/model/vae_unet.yaml sets conv; block loads old runs
        skip_levels: Sequence[int] | None = None,
        decoder_blocks: int = 1,
        free_bits: float = 0.0,
        free_bits_per: str = "dim",
        free_bits_top: float | None = None,
        kl_balance: bool = False,
        adv_latent_weight: float = 0.0,
        adv_image_weight: float = 0.0,
        adv_image_start: int = 0,
        critic_lr: float = 2e-4,
        critic_patience: int = 200,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        widths = [int(w) for w in widths]
        if int(latent_dim) < 1:
            raise ValueError(f"model.latent_dim must be >= 1, got {latent_dim}")
        check_geometry(int(image_size), len(widths), widths)
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"model.optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}"
            )
        if scheduler not in SCHEDULERS:
            raise ValueError(f"model.scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        check_compile_mode(compile, compile_mode)
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"model.lr must be a positive number, got {lr}")
        if free_bits < 0 or (free_bits_top is not None and free_bits_top < 0):
            raise ValueError(
                f"model.free_bits and model.free_bits_top must be >= 0, got {free_bits} and "
                f"{free_bits_top}"
            )
        self.image_size, self.latent_dim = int(image_size), int(latent_dim)
        self.encoder = Encoder(widths, block, norm)
        flat = widths[-1] * (self.image_size // 2 ** len(widths)) ** 2
        self.to_latent = nn.Linear(flat, self.latent_dim * (2 if self.has_kl else 1))
        self.decoder = Decoder(
            widths,
            self.latent_dim,
            self.image_size,
            block,
            norm,
            skip=skip,
            skip_dropout=skip_dropout,
            skip_latent_channels=skip_latent_channels,
            skip_posterior=skip_posterior,
            skip_levels=None if skip_levels is None else [int(v) for v in skip_levels],
            decoder_blocks=int(decoder_blocks),
        )
        #: latent dimensions per KL term, top first (what KL balancing divides by)
        self.latent_sizes = [self.latent_dim, *self.decoder.skip_latent_sizes()]
        self.likelihood = Likelihood(likelihood, sigma)
        #: BN statistics for sampling (not saved: re-estimated on demand), and how they are made:
        #: batches x batch prior samples through the decoder, as NVAE does
        self.sampling_stats = SamplingStats()
        self.sampling_bn_batches, self.sampling_bn_batch = 20, 250
        self.beta = 1.0
        self.last_terms: dict[str, torch.Tensor] = {}
        self.n_dims = 3 * self.image_size**2
        self._mu_store: dict[str, list[torch.Tensor]] = {"train": [], "val": []}
        # the adversarial option (off by default): critics trained in a second, manual update;
        # they stay this module's ``critics`` (checkpoint keys critics.*)
        self.adversarial = AdversarialUpdate(
            self.latent_dim,
            adv_latent_weight,
            adv_image_weight,
            adv_image_start,
            critic_lr,
            critic_patience,
            generative_prior=self.has_kl,
        )
        self.critics = self.adversarial.critics
        if scheduler == "plateau" and self.adversarial.enabled:
            raise ValueError("model.scheduler=plateau is not supported with adversarial terms")
        self.automatic_optimization = not self.adversarial.enabled
        #: set by training.train from trainer.gradient_clip_val (Lightning cannot clip for us
        #: under manual optimisation)
        self.grad_clip_val: float | None = None
        if channels_last:
            self.to(memory_format=torch.channels_last)

    # ---- what subclasses define -------------------------------------------------------------
    def loss_terms(self, x: torch.Tensor) -> LossTerms:
        raise NotImplementedError

    def encode_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Latent codes of every level, top first (posterior means for VAEs)."""
        raise NotImplementedError

    # ---- training ----------------------------------------------------------------------------
    def _step(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str
    ) -> tuple[torch.Tensor, LossTerms]:
        x, _ = batch
        terms = self.loss_terms(x)
        recon = terms.recon.mean()
        kl_levels = [k.sum(dim=1).mean() for k in terms.kls]
        kl = torch.stack(kl_levels).sum() if kl_levels else recon.new_zeros(())
        loss = recon + self.beta * self._kl_objective(terms.kls, kl_levels, kl)
        on_step = stage == "train"
        log = {f"{stage}/loss": loss, f"{stage}/recon": recon}
        if self.has_kl:
            log |= {f"{stage}/kl": kl, f"{stage}/elbo": -(recon + kl), f"{stage}/beta": self.beta}
            if len(kl_levels) > 1:
                log |= {f"{stage}/kl_level{i}": v for i, v in enumerate(kl_levels)}
        # float32 even under bf16 autocast: SSIM's Gaussian filter is a conv that autocast would
        # run in bf16, where E[x^2] - E[x]^2 loses the variances (test SSIM came out 0.07-0.15 low)
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            xm = self.likelihood.mean(terms.out).clamp(0, 1)
            xf = x.float()
            log[f"{stage}/psnr"] = peak_signal_noise_ratio(xm, xf, data_range=1.0)
            if not on_step:  # SSIM's filtering in float32 is too costly for every training step
                log[f"{stage}/ssim"] = structural_similarity_index_measure(xm, xf, data_range=1.0)
        self.log_dict(
            log, on_step=on_step, on_epoch=True, batch_size=x.shape[0], sync_dist=not on_step
        )
        if on_step:  # read by the NonFiniteGuard callback before the optimiser step
            self.last_terms = {"loss": loss.detach(), "recon": recon.detach(), "kl": kl.detach()}
        if stage in self._mu_store:
            self._mu_store[stage].append(terms.mu.detach().float())
        return loss, terms

    def _kl_objective(
        self, kls: list[torch.Tensor], kl_levels: list[torch.Tensor], kl: torch.Tensor
    ) -> torch.Tensor:
        """The KL the optimiser sees: free-bit floors per level (the top's may differ) and, while
        beta < 1, NVAE's KL balancing across levels. The reported ELBO always uses the plain KL."""
        if not kls:
            return kl
        hp = self.hparams
        floors = [hp.free_bits] * len(kls)
        if hp.get("free_bits_top") is not None:
            floors[0] = hp.free_bits_top
        terms = torch.stack(
            [apply_free_bits(k, f, hp.free_bits_per) for k, f in zip(kls, floors, strict=True)]
        )
        if hp.get("kl_balance") and self.beta < 1 and len(kls) > 1:
            sizes = torch.tensor(self.latent_sizes, dtype=torch.float32)
            terms = terms * kl_balance_weights(torch.stack(kl_levels), sizes)
        return terms.sum()

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        # Optimise nats per dimension: Adam is scale-free, but gradient clipping and weight
        # decay are not, and per-dimension keeps their settings meaningful at any image size.
        loss, terms = self._step(batch, "train")
        if self.automatic_optimization:
            return loss / self.n_dims
        return self.adversarial.step(
            self,
            batch[0],
            terms.z if terms.z is not None else terms.mu,
            terms.out,
            loss / self.n_dims,
            to_image=self.likelihood.mean,
            decode=lambda z: self.decoder(z).out,
            clip_val=self.grad_clip_val,
        )

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_active_units(self, stage: str) -> None:
        mus = self._mu_store[stage]
        if mus:
            mu = torch.cat(mus)
            if mu.shape[0] > 1:
                self.log(f"{stage}/active_units", float(active_units(mu)), sync_dist=True)
        mus.clear()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.sampling_stats.clear()  # the weights moved: sampling statistics are re-estimated

    def on_train_epoch_end(self) -> None:
        self._log_active_units("train")

    def on_validation_epoch_end(self) -> None:
        self._log_active_units("val")

    def configure_model(self) -> None:
        if self.hparams.compile:
            mode = self.hparams.get("compile_mode")
            self.encoder = torch.compile(self.encoder, mode=mode)
            self.decoder = torch.compile(self.decoder, mode=mode)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # CUDA-graph modes: a new step begins, so the graphs' outputs of the last one may be
        # overwritten (without this torch can refuse to replay while they look alive)
        if self.hparams.compile and self.hparams.get("compile_mode") in CUDA_GRAPH_MODES:
            torch.compiler.cudagraph_mark_step_begin()

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for n, p in self.named_parameters() if not n.startswith("critics.")]
        opt = OPTIMIZERS[hp.optimizer](params, lr=hp.lr, weight_decay=hp.weight_decay)
        critic_opt = self.adversarial.optimizer()
        if hp.scheduler == "cosine":
            total = max(int(self.trainer.estimated_stepping_batches), 1)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
            if critic_opt is not None:
                return [opt, critic_opt], [sched]
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if critic_opt is not None:
            return [opt, critic_opt]
        if hp.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=3)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss"}}
        return opt
