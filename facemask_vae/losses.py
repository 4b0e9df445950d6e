"""p(x | z): the reconstruction term of the negative ELBO, in nats per image.

It runs in float32 (callers upcast autocast outputs), because sums over 12,288 pixels lose too
much precision in bfloat16. The latent terms (KLs, free bits) live in :mod:`facemask_vae.gaussian`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from facemask_vae.gaussian import LOG_2PI

LIKELIHOODS = ("gaussian", "gaussian_learned", "bernoulli")


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
            per_pixel = 0.5 * z.pow(2) + log_sigma + 0.5 * LOG_2PI
        return per_pixel.flatten(1).sum(dim=1)

    def sample(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw x ~ p(x | z) (clamped to [0, 1]); figures show :meth:`mean` instead."""
        mean = self.mean(out)
        if self.kind == "bernoulli":
            return torch.bernoulli(mean, generator=generator)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        return (mean + noise * self.sigma().view(1, 3, 1, 1)).clamp(0, 1)
