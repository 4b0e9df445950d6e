"""The terms of the negative ELBO, in nats per image: likelihoods, Gaussian KLs and free bits.

Everything here runs in float32 (callers upcast autocast outputs), because sums over 12,288
pixels and KL terms lose too much precision in bfloat16.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LIKELIHOODS = ("gaussian", "gaussian_learned", "bernoulli")
_LOG_2PI = math.log(2 * math.pi)


def soft_clamp(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Smoothly squash ``x`` into (-bound, bound): keeps exp(logvar) finite with gradients intact."""
    return bound * torch.tanh(x / bound)


def kl_std_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, exp(logvar)) || N(0, 1) ) elementwise, in nats (>= 0, 0 iff mu=0, logvar=0)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_normal(
    mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """KL( N(mu_q, var_q) || N(mu_p, var_p) ) elementwise, in nats, for diagonal Gaussians."""
    return 0.5 * (
        logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0
    )


def apply_free_bits(kl: torch.Tensor, free_bits: float, per: str = "dim") -> torch.Tensor:
    """Batch-mean KL of one latent level with a floor of ``free_bits`` nats (Kingma et al. 2016).

    ``kl`` is B x G (G groups, e.g. latent dimensions or channels, each possibly summed over
    space). ``per='dim'`` floors every group's batch mean at ``free_bits``; ``per='group'``
    floors the level's total at ``free_bits``. The floor only changes the training objective,
    never the reported ELBO. Returns a scalar.
    """
    mean = kl.mean(dim=0)
    if free_bits <= 0:
        return mean.sum()
    if per == "dim":
        return mean.clamp(min=free_bits).sum()
    if per == "group":
        return mean.sum().clamp(min=free_bits)
    raise ValueError(f"model.free_bits_per must be 'dim' or 'group', got {per!r}")


def kl_balance_weights(kls: torch.Tensor, sizes: torch.Tensor, floor: float = 0.01) -> torch.Tensor:
    """NVAE's KL balancing coefficients (Vahdat & Kautz 2020, appendix A) for G latent levels.

    ``kls`` (G) are the levels' batch-mean KLs in nats, ``sizes`` (G) their numbers of latent
    dimensions. A level's weight is proportional to its KL per dimension (plus ``floor``) and the
    weights average 1: a level that carries little pays little for carrying more, which keeps
    levels from collapsing while beta is warming up. Returns G weights, no gradient.
    """
    kls, sizes = kls.detach().float(), sizes.to(kls.device).float()
    if kls.shape != sizes.shape or kls.dim() != 1:
        raise ValueError(
            f"one KL and one size per level expected, got {kls.shape} and {sizes.shape}"
        )
    w = (kls.abs() + floor) / sizes
    return w / w.mean()


class Likelihood(nn.Module):
    """p(x | z) on images in [0, 1] from the decoder's raw output (one value per pixel channel).

    ``gaussian`` has a fixed sigma; ``gaussian_learned`` learns one sigma per colour channel
    (a calibrated decoder, Rybkin et al. 2021: the data decide the noise level, so beta = 1 is
    the true ELBO and no hidden weight trades reconstruction against KL); ``bernoulli`` treats
    intensities as probabilities (common, but not a proper likelihood for continuous pixels).
    """

    def __init__(
        self, kind: str = "gaussian_learned", sigma: float = 0.1, min_sigma: float = 1 / 255
    ):
        super().__init__()
        if kind not in LIKELIHOODS:
            raise ValueError(f"model.likelihood must be one of {LIKELIHOODS}, got {kind!r}")
        if sigma <= 0:
            raise ValueError(f"model.sigma must be > 0, got {sigma}")
        self.kind = kind
        self.min_log_sigma = math.log(min_sigma)
        log_sigma = torch.full((1, 3, 1, 1), math.log(sigma))
        if kind == "gaussian_learned":
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The expected image in [0, 1]."""
        return torch.sigmoid(out.float())

    def sigma(self) -> torch.Tensor:
        return self.log_sigma.clamp(min=self.min_log_sigma).exp().flatten()

    def nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) summed over pixels and channels: one value per image, in nats."""
        out, x = out.float(), x.float()
        if self.kind == "bernoulli":
            per_pixel = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            log_sigma = self.log_sigma.clamp(min=self.min_log_sigma)
            z = (x - torch.sigmoid(out)) * torch.exp(-log_sigma)
            per_pixel = 0.5 * z.pow(2) + log_sigma + 0.5 * _LOG_2PI
        return per_pixel.flatten(1).sum(dim=1)

    def sample(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw x ~ p(x | z) (clamped to [0, 1]); figures show :meth:`mean` instead."""
        mean = self.mean(out)
        if self.kind == "bernoulli":
            return torch.bernoulli(mean, generator=generator)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        return (mean + noise * self.sigma().view(1, 3, 1, 1)).clamp(0, 1)
