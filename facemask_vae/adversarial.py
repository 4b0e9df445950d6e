"""Adversarial training options: critics and their losses, for the AAE and VAE-GAN settings.

* latent critic (adversarial autoencoder, Makhzani et al. 2016): tells encoder codes from prior
  draws; the encoder learns to fool it, which pulls the aggregate posterior toward N(0, I) and
  makes the AE a generative model;
* image critic (VAE-GAN, Larsen et al. 2016): a PatchGAN on real images vs. reconstructions and
  prior samples, for sharper outputs, switched on after a warm-up.

This module holds the networks, the losses, the divergence monitor and the two-player update
itself (:class:`AdversarialUpdate`): an autoencoder that is given adversarial weights creates one,
keeps its critics as its own ``critics`` attribute, switches to manual optimisation and hands
each training batch to :meth:`AdversarialUpdate.step`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    import pytorch_lightning as pl

log = logging.getLogger(__name__)


class LatentCritic(nn.Module):
    """An MLP that scores a latent code: high for prior draws, low for encoder codes."""

    def __init__(self, latent_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.float()).squeeze(1)


class PatchCritic(nn.Module):
    """A small PatchGAN: one logit per overlapping patch (spectral norm keeps it Lipschitz-ish)."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for w in widths:
            layers += [
                nn.utils.parametrizations.spectral_norm(nn.Conv2d(in_ch, w, 4, 2, 1)),
                nn.LeakyReLU(0.2),
            ]
            in_ch = w
        layers.append(nn.utils.parametrizations.spectral_norm(nn.Conv2d(in_ch, 1, 3, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1).flatten(1)  # images in [0, 1] -> [-1, 1]


def critic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss of the critic: real -> 1, fake -> 0 (float32)."""
    real, fake = real_logits.float(), fake_logits.float()
    return F.binary_cross_entropy_with_logits(
        real, torch.ones_like(real)
    ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))


def fooling_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: make the critic call the fakes real."""
    fake = fake_logits.float()
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def critic_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The share of real and fake inputs the critic classifies correctly."""
    correct = torch.cat([(real_logits > 0).flatten(), (fake_logits <= 0).flatten()])
    return correct.float().mean()


class DivergenceMonitor:
    """Counts consecutive checks with the critic's accuracy pinned near 1 and says when to warn.

    A critic that wins every time gives the generator vanishing gradients; users want to hear
    about it once, with advice, rather than find blurry samples after a day of training.
    """

    def __init__(self, patience: int, threshold: float = 0.99) -> None:
        self.patience, self.threshold = int(patience), float(threshold)
        self.streak, self.warned = 0, False

    def update(self, accuracy: float) -> bool:
        """Record one accuracy; True exactly once, when the streak first reaches ``patience``."""
        self.streak = self.streak + 1 if accuracy >= self.threshold else 0
        if self.streak >= self.patience and not self.warned:
            self.warned = True
            return True
        return False


class AdversarialUpdate:
    """The adversarial option of an autoencoder: its critics, their optimiser and the update.

    ``latent_weight`` > 0 adds a latent critic (AAE), ``image_weight`` > 0 an image critic
    (VAE-GAN) that joins at step ``image_start``; ``generative_prior`` says whether the
    autoencoder's prior is worth sampling from without a latent critic (true for VAEs). The
    autoencoder registers :attr:`critics` as its own submodule, so their checkpoint keys stay
    ``critics.*``; this object holds no other state but the divergence monitors.
    """

    def __init__(
        self,
        latent_dim: int,
        latent_weight: float = 0.0,
        image_weight: float = 0.0,
        image_start: int = 0,
        lr: float = 2e-4,
        patience: int = 200,
        generative_prior: bool = False,
    ) -> None:
        for key, value in (
            ("adv_latent_weight", latent_weight),
            ("adv_image_weight", image_weight),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"model.{key} must be a finite number >= 0, got {value}")
        self.latent_weight, self.image_weight = latent_weight, image_weight
        self.image_start, self.lr = image_start, lr
        self.critics = nn.ModuleDict()
        if latent_weight > 0:
            self.critics["latent"] = LatentCritic(latent_dim)
        if image_weight > 0:
            self.critics["image"] = PatchCritic()
        self.sample_prior = generative_prior or "latent" in self.critics
        self.divergence = {k: DivergenceMonitor(patience) for k in self.critics}

    @property
    def enabled(self) -> bool:
        """Whether there is any critic (and so a second, manual update) at all."""
        return len(self.critics) > 0

    def optimizer(self) -> torch.optim.Optimizer | None:
        """The critics' optimiser (Adam with the usual GAN betas), None without critics."""
        if not self.enabled:
            return None
        return torch.optim.Adam(self.critics.parameters(), lr=self.lr, betas=(0.5, 0.999))

    def step(
        self,
        module: pl.LightningModule,
        x: torch.Tensor,
        z: torch.Tensor,
        out: torch.Tensor,
        loss: torch.Tensor,
        to_image: Callable[[torch.Tensor], torch.Tensor],
        decode: Callable[[torch.Tensor], torch.Tensor],
        clip_val: float | None = None,
    ) -> torch.Tensor:
        """One two-player update: the autoencoder (with its fooling terms), then the critics.

        ``module`` is the autoencoder, with optimisers ``[autoencoder, critics]``; ``z`` is the
        top code its decoder saw for the images ``x``, ``out`` the decoder's raw output and
        ``loss`` the autoencoder's own objective; ``to_image`` turns raw decoder outputs into
        images in [0, 1] and ``decode`` top codes into raw outputs (with gradients). Returns
        the autoencoder's total objective.

        The critics' optimiser is stepped unwrapped so that ``global_step`` keeps counting
        batches: the annealing schedules, ``max_steps`` and ``image_start`` stay in batches.
        """
        opt_g, opt_c = module.optimizers()
        fakes: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # critic -> (real, fake)
        total = loss
        if "latent" in self.critics:
            fool = fooling_loss(self.critics["latent"](z))
            total = total + self.latent_weight * fool
            module.log("train/fool_latent", fool, on_step=True, on_epoch=True)
            fakes["latent"] = (torch.randn_like(z.float()), z.detach())
        if "image" in self.critics and module.global_step >= self.image_start:
            recon = to_image(out)
            images = [recon]
            if self.sample_prior:
                images.append(to_image(decode(torch.randn_like(z))))
            fake = torch.cat(images)
            fool = fooling_loss(self.critics["image"](fake))
            total = total + self.image_weight * fool
            module.log("train/fool_image", fool, on_step=True, on_epoch=True)
            fakes["image"] = (x, fake.detach())

        opt_g.zero_grad(set_to_none=True)
        module.manual_backward(total)
        if clip_val:
            module.clip_gradients(opt_g, gradient_clip_val=clip_val)
        opt_g.step()
        sched = module.lr_schedulers()
        if sched is not None:
            sched.step()

        opt_c.zero_grad(set_to_none=True)  # also drops what the fooling terms left on critics
        if fakes:
            c_total = loss.new_zeros(())
            for name, (real, fake) in fakes.items():
                real_logits, fake_logits = self.critics[name](real), self.critics[name](fake)
                c_loss = critic_loss(real_logits, fake_logits)
                acc = critic_accuracy(real_logits.detach(), fake_logits.detach())
                c_total = c_total + c_loss
                module.log_dict(
                    {f"train/critic_{name}_loss": c_loss, f"train/critic_{name}_acc": acc},
                    on_step=True,
                    on_epoch=True,
                )
                step = module.global_step
                if step % 10 == 0 and self.divergence[name].update(float(acc)):
                    log.warning(
                        "the %s critic has been right about >= 99%% of its inputs for %d checks "
                        "(every 10 steps up to step %d): it has won and its fooling term gives "
                        "little gradient. Lower model.critic_lr or raise the adversarial weight.",
                        name,
                        self.divergence[name].patience,
                        step,
                    )
            module.manual_backward(c_total)
            opt_c.optimizer.step()
        return total
