"""The critics of the adversarial options and their losses (pure, no training loop).

* latent critic (adversarial autoencoder, Makhzani et al. 2016): tells encoder codes from prior
  draws; the encoder learns to fool it, which pulls the aggregate posterior toward N(0, I) and
  makes the AE a generative model;
* image critic (VAE-GAN, Larsen et al. 2016): a PatchGAN on real images vs. reconstructions and
  prior samples, for sharper outputs, switched on after a warm-up.

The two-player update that trains them is :class:`facemask_vae.lit.AdversarialModule`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
