"""The VAE: Gaussian posterior, reparameterisation, N(0, I) prior, analytic KL; optional U-Net skips.

``skip='variational'`` (the U-Net VAE) adds a ladder of spatial latents, one per resolution, each
with its own KL; ``'deterministic'`` is the naive U-Net baseline with skip dropout; ``'none'`` is
the plain VAE through the same code path.
"""

from __future__ import annotations

import torch

from facemask_vae.losses import kl_std_normal, soft_clamp
from facemask_vae.models.base import AutoEncoderBase, LossTerms
from facemask_vae.models.networks import LOGVAR_BOUND


class VAE(AutoEncoderBase):
    """A (hierarchical, with skips) VAE whose loss is the negative ELBO with beta on the KL."""

    has_kl = True

    def posterior(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Encoder features and the top posterior's (mu, logvar), in float32."""
        feats = self.encoder(x)
        mu, logvar = self.to_latent(feats[-1].flatten(1)).float().chunk(2, dim=1)
        return feats, mu, soft_clamp(logvar, LOGVAR_BOUND)

    def _skip_feats(self, feats: list[torch.Tensor]) -> list[torch.Tensor] | None:
        return None if self.decoder.skip == "none" else feats

    def encode_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, mu, _ = self.posterior(x)
        if self.decoder.skip == "none":
            return [mu]
        if self.decoder.skip == "deterministic":
            rev = list(reversed(feats))
            return [mu, *(rev[level] for level in self.decoder.levels)]
        dec = self.decoder(mu, feats=feats, sample_skips=False)
        return [mu, *dec.skip_means]

    def loss_terms(self, x: torch.Tensor) -> LossTerms:
        feats, mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        dec = self.decoder(z, feats=self._skip_feats(feats))
        return LossTerms(
            recon=self.likelihood.nll(dec.out, x),
            out=dec.out,
            mu=mu,
            kls=[kl_std_normal(mu, logvar), *dec.skip_kls],
            z=z,
        )
