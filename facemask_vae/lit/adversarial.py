"""The adversarial training regime: the model's objective plus fooling terms, and its critics.

``latent_weight`` > 0 adds a latent critic (adversarial autoencoder), ``image_weight`` > 0 an
image critic (VAE-GAN) that joins at step ``image_start``. The two players update in turn under
Lightning's manual optimisation; both optimisers' states are in every checkpoint, so a resumed
run continues both.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from facemask_vae import metric_keys as K
from facemask_vae.lit.critics import (
    DivergenceMonitor,
    LatentCritic,
    PatchCritic,
    critic_accuracy,
    critic_loss,
    fooling_loss,
)
from facemask_vae.lit.module import OptimizerFactory, TrainingModule
from facemask_vae.models.autoencoder import Autoencoder

log = logging.getLogger(__name__)


class AdversarialModule(TrainingModule):
    """:class:`TrainingModule` with critics trained in a second, manual update after the model's.

    The critics' optimiser is Adam with the usual GAN betas at ``critic_lr``. Lightning cannot
    clip gradients under manual optimisation, so ``gradient_clip_val`` clips the model's here
    (``conf/module/adversarial.yaml`` passes the trainer's value; train.py takes it off the
    Trainer, as it does for any module without automatic optimisation). A critic right about
    >= 99% of its inputs for ``critic_patience`` checks (one per 10 steps) is reported once.
    """

    def __init__(
        self,
        model: Autoencoder,
        optimizer: OptimizerFactory | None = None,
        scheduler: dict[str, Any] | None = None,
        channels_last: bool = True,
        compile: bool = False,
        compile_mode: str | None = None,
        latent_weight: float = 0.0,
        image_weight: float = 0.0,
        image_start: int = 0,
        critic_lr: float = 2e-4,
        critic_patience: int = 200,
        gradient_clip_val: float | None = None,
    ) -> None:
        for key, value in (("latent_weight", latent_weight), ("image_weight", image_weight)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"module.{key} must be a finite number >= 0, got {value}")
        if latent_weight == 0 and image_weight == 0:
            raise ValueError(
                "module=adversarial needs module.latent_weight > 0 (a latent critic, as "
                "model=aae sets) or module.image_weight > 0 (an image critic, as model=vae_gan)"
            )
        if scheduler and ("monitor" in scheduler or scheduler.get("interval") != "step"):
            raise ValueError(
                "module=adversarial steps its scheduler every batch: use one with interval: step "
                "(scheduler=cosine), not one that monitors a metric (plateau)"
            )
        super().__init__(model, optimizer, scheduler, channels_last, compile, compile_mode)
        self.automatic_optimization = False
        self.critics = nn.ModuleDict()  # checkpoint keys critics.*
        if latent_weight > 0:
            self.critics["latent"] = LatentCritic(model.latent_dim)
        if image_weight > 0:
            self.critics["image"] = PatchCritic()
        if channels_last:
            self.critics.to(memory_format=torch.channels_last)
        #: images decoded from N(0, I) are worth showing the image critic: VAEs, or a latent critic
        self.sample_prior = model.has_kl or "latent" in self.critics
        self.divergence = {k: DivergenceMonitor(critic_patience) for k in self.critics}

    def configure_optimizers(self) -> Any:
        opt = self.make_optimizer(self.model.parameters())
        critic_opt = torch.optim.Adam(
            self.critics.parameters(), lr=self.hparams.critic_lr, betas=(0.5, 0.999)
        )
        scheduler = self.build_scheduler(opt)
        return [opt, critic_opt] if scheduler is None else ([opt, critic_opt], [scheduler])

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        """One two-player update: the model (with its fooling terms), then the critics.

        The critics' optimiser is stepped unwrapped so that ``global_step`` keeps counting
        batches: the annealing schedules, ``max_steps`` and ``image_start`` stay in batches.
        """
        obj, terms = self.model_step(batch, K.TRAIN)
        x = batch[0]
        z = terms.z if terms.z is not None else terms.mu
        total, fakes = self._fooling_terms(x, z, terms.out, obj.loss / self.model.n_dims)
        opt_g, opt_c = self.optimizers()
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        if self.hparams.gradient_clip_val:
            self.clip_gradients(opt_g, gradient_clip_val=self.hparams.gradient_clip_val)
        opt_g.step()
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()
        opt_c.zero_grad(set_to_none=True)  # also drops what the fooling terms left on critics
        if fakes:
            self._critic_update(fakes, opt_c)
        return self.step_outputs(total.detach(), obj)

    def _fooling_terms(
        self, x: torch.Tensor, z: torch.Tensor, out: torch.Tensor, loss: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """The model's total objective and, per critic, its (real, fake) inputs."""
        fakes: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        total = loss
        to_image = self.model.likelihood.mean
        if "latent" in self.critics:
            fool = fooling_loss(self.critics["latent"](z))
            total = total + self.hparams.latent_weight * fool
            self.log(K.key(K.TRAIN, K.FOOL_LATENT), fool, on_step=True, on_epoch=True)
            fakes["latent"] = (torch.randn_like(z.float()), z.detach())
        if "image" in self.critics and self.global_step >= self.hparams.image_start:
            images = [to_image(out)]
            if self.sample_prior:
                images.append(to_image(self.model.decoder(torch.randn_like(z)).out))
            fake = torch.cat(images)
            fool = fooling_loss(self.critics["image"](fake))
            total = total + self.hparams.image_weight * fool
            self.log(K.key(K.TRAIN, K.FOOL_IMAGE), fool, on_step=True, on_epoch=True)
            fakes["image"] = (x, fake.detach())
        return total, fakes

    def _critic_update(
        self,
        fakes: dict[str, tuple[torch.Tensor, torch.Tensor]],
        opt_c: Any,
    ) -> None:
        c_total = torch.zeros((), device=self.device)
        for name, (real, fake) in fakes.items():
            real_logits, fake_logits = self.critics[name](real), self.critics[name](fake)
            c_loss = critic_loss(real_logits, fake_logits)
            acc = critic_accuracy(real_logits.detach(), fake_logits.detach())
            c_total = c_total + c_loss
            self.log_dict(
                {
                    K.key(K.TRAIN, K.critic(name, "loss")): c_loss,
                    K.key(K.TRAIN, K.critic(name, "acc")): acc,
                },
                on_step=True,
                on_epoch=True,
            )
            step = self.global_step
            if step % 10 == 0 and self.divergence[name].update(float(acc)):
                log.warning(
                    "the %s critic has been right about >= 99%% of its inputs for %d checks "
                    "(every 10 steps up to step %d): it has won and its fooling term gives "
                    "little gradient. Lower module.critic_lr or raise the adversarial weight.",
                    name,
                    self.divergence[name].patience,
                    step,
                )
        self.manual_backward(c_total)
        opt_c.optimizer.step()
