"""Diagonal-Gaussian latents: reparameterised draws, KLs, log-densities and free bits.

The one home of this maths for the model's latent levels, the IWAE bound and the second-stage
sampler. Everything is elementwise on float32 tensors of any shape (callers upcast autocast
outputs: sums of many KL terms lose too much precision in bfloat16), in nats.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def soft_clamp(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Smoothly squash ``x`` into (-bound, bound): keeps exp(logvar) finite with gradients intact."""
    return bound * torch.tanh(x / bound)


def standard_normal(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """eps ~ N(0, I) with the shape, dtype and device of ``like`` (from ``generator`` if given)."""
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def reparameterize(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """z = mu + T * eps * sigma, eps ~ N(0, I): a differentiable draw from N(mu, T^2 exp(logvar))."""
    eps = standard_normal(mu, generator)
    if temperature != 1.0:
        eps = temperature * eps
    return mu + eps * (0.5 * logvar).exp()


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


def log_normal(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mu, exp(logvar)) summed over every dimension but the first: one value per row."""
    lp = -0.5 * ((x - mu).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI)
    return lp.flatten(1).sum(dim=1)


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
