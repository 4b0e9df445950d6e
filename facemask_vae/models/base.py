"""The LightningModule AE and VAE share: networks, likelihood, steps, logging, optimisers.

Subclasses say how an image becomes latents and KL terms (:meth:`loss_terms`); everything a
Trainer, a callback or the evaluation needs (steps, metrics, ``encode``/``decode``/
``reconstruct``/``sample``/``interpolate``) lives here once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
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
from facemask_vae.models.networks import Decoder, Encoder, check_geometry
from facemask_vae.sampling import LatentSampler, PriorSampler, SamplingStats, estimate_bn_stats
from facemask_vae.sampling.batchnorm import bn_layers

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULERS = (None, "cosine", "plateau")


@dataclass
class LossTerms:
    """Per-image terms of one forward pass, in nats; ``kls`` holds B x G tensors, top level first."""

    recon: torch.Tensor
    out: torch.Tensor
    mu: torch.Tensor
    kls: list[torch.Tensor] = field(default_factory=list)
    z: torch.Tensor | None = None  # the top code the decoder saw (a posterior sample for VAEs)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of flattened rows of ``a`` and ``b`` at fractions ``t``."""
    fa, fb = a.flatten(1), b.flatten(1)
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp(min=1e-8)
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7)).unsqueeze(1)
    so = torch.sin(omega)
    t = t.view(-1, 1)
    out = torch.where(
        so.abs() < 1e-6,  # (anti)parallel: fall back to linear
        (1 - t) * fa + t * fb,
        torch.sin((1 - t) * omega) / so * fa + torch.sin(t * omega) / so * fb,
    )
    return out.view_as(a)


class AutoEncoderBase(pl.LightningModule):
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

    # ---- inference API used by callbacks and evaluation ------------------------------------
    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Top-level latent means (B x latent_dim): what t-SNE and the probes look at."""
        with self._inference():
            return self.encode_all(x)[0]

    def decode(self, z: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Images in [0, 1] from top latents; skip levels at their prior means unless given."""
        with self._inference():
            dec = self.decoder(z, skips=skips, sample_skips=False)
            return self.likelihood.mean(dec.out)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The mean reconstruction from the posterior means of every level."""
        with self._inference():
            codes = self.encode_all(x)
            return self.decode(codes[0], codes[1:] or None)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        sampler: LatentSampler | None = None,
        sampling_bn: bool = True,
        bn_batches: int | None = None,
        skip_temperature: float | None = None,
    ) -> torch.Tensor:
        """n images (n x 3 x S x S, means of p(x|z) in [0, 1]) from top latents of ``sampler``
        (default: the N(0, I) prior) at ``temperature``; skip levels from their top-down priors
        at ``skip_temperature`` (None: ``temperature``; 0: the priors' means).

        ``sampling_bn``: normalise with BN statistics re-estimated on this sampler's samples at
        this temperature (cached until the weights change; see :mod:`facemask_vae.sampling`);
        False uses the statistics gathered in training, on posterior codes. ``bn_batches``
        overrides ``sampling_bn_batches`` (batches of ``sampling_bn_batch`` samples) for a cheaper
        estimate, as the image callback makes every epoch.
        """
        sampler = sampler or PriorSampler(self.latent_dim)
        if sampler.dim != self.latent_dim:
            raise ValueError(
                f"sampler draws {sampler.dim}-d codes; the model's are {self.latent_dim}-d"
            )
        skip_t = float(temperature if skip_temperature is None else skip_temperature)
        with self._inference():
            z = sampler.draw(n, temperature, generator, self.device)
            with self._sampling_bn(sampler, temperature, skip_t, sampling_bn, bn_batches):
                dec = self.decoder(z, temperature=skip_t, generator=generator)
            return self.likelihood.mean(dec.out)

    @contextlib.contextmanager
    def _sampling_bn(
        self,
        sampler: LatentSampler,
        temperature: float,
        skip_temperature: float,
        on: bool,
        batches: int | None,
    ) -> Iterator[None]:
        """The decoder's BN statistics for this sampler and these temperatures inside the block."""
        if not on or not bn_layers(self.decoder):
            yield
            return
        # the prior is the same at every call; a fitted sampler is its own object
        batches = int(batches or self.sampling_bn_batches)
        owner = "" if isinstance(sampler, PriorSampler) else id(sampler)
        key = (sampler.name, owner, float(temperature), skip_temperature, batches)

        def estimate() -> dict[str, torch.Tensor]:
            g = torch.Generator(device=self.device).manual_seed(0)  # the same stats every time

            def forward() -> None:
                z = sampler.draw(self.sampling_bn_batch, temperature, g, self.device)
                self.decoder(z, temperature=skip_temperature, generator=g)

            return estimate_bn_stats(self.decoder, forward, batches)

        buffers = self.sampling_stats.get(self.decoder, key, sampler, estimate)
        with self.sampling_stats.applied(self.decoder, buffers):
            yield

    def interpolate(
        self, x1: torch.Tensor, x2: torch.Tensor, steps: int = 8, mode: str = "linear"
    ) -> torch.Tensor:
        """Decode ``steps`` points between the codes of x1 and x2 (every level): B x steps x C x H x W."""
        if mode not in ("linear", "slerp"):
            raise ValueError(f"interpolation mode must be 'linear' or 'slerp', got {mode!r}")
        with self._inference():
            a, b = self.encode_all(x1), self.encode_all(x2)
            n = x1.shape[0]
            t = torch.linspace(0, 1, steps, device=x1.device).repeat(n)
            rows = []
            for ca, cb in zip(a, b, strict=True):
                ca = ca.repeat_interleave(steps, 0)
                cb = cb.repeat_interleave(steps, 0)
                if mode == "slerp":
                    rows.append(slerp(ca, cb, t))
                else:
                    tt = t.view(-1, *([1] * (ca.dim() - 1)))
                    rows.append((1 - tt) * ca + tt * cb)
            images = self.decode(rows[0], rows[1:] or None)
            return images.view(n, steps, *images.shape[1:])

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
            self.encoder = torch.compile(self.encoder)
            self.decoder = torch.compile(self.decoder)

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
