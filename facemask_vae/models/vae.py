"""The VAE: Gaussian posterior, reparameterisation, N(0, I) prior, analytic KL; optional U-Net skips.

``skip='variational'`` (the U-Net VAE) adds a ladder of spatial latents, one per resolution, each
with its own KL; ``'deterministic'`` is the naive U-Net baseline with skip dropout; ``'none'`` is
the plain VAE through the same code path. The model also gives the importance weights of the
IWAE bound on log p(x) of its whole hierarchy (Burda et al. 2016).
"""

from __future__ import annotations

from typing import Any

import torch

from facemask_vae.gaussian import kl_std_normal, log_normal, reparameterize, soft_clamp
from facemask_vae.models.autoencoder import Autoencoder, LossTerms
from facemask_vae.models.inference import eval_mode
from facemask_vae.models.networks import LOGVAR_BOUND


class VAE(Autoencoder):
    """A (hierarchical, with skips) VAE whose loss is the negative ELBO with beta on the KL."""

    has_kl = True

    def posterior(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Encoder features and the top posterior's (mu, logvar), B x latent_dim in float32."""
        feats = self.encoder(x)
        mu, logvar = self.to_latent(feats[-1].flatten(1)).float().chunk(2, dim=1)
        return feats, mu, soft_clamp(logvar, LOGVAR_BOUND)

    def _skip_feats(self, feats: list[torch.Tensor]) -> list[torch.Tensor] | None:
        return None if self.decoder.skip == "none" else feats

    def top_code(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[1]

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
        z = reparameterize(mu, logvar)
        dec = self.decoder(z, feats=self._skip_feats(feats))
        return LossTerms(
            recon=self.likelihood.nll(dec.out, x),
            out=dec.out,
            mu=mu,
            kls=[kl_std_normal(mu, logvar), *dec.skip_kls],
            z=z,
        )

    def importance_log_weights(
        self, x: torch.Tensor, k: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """K x B log importance weights of images ``x``: see :func:`importance_log_weights`."""
        return importance_log_weights(self, x, k, generator)


def importance_log_weights(
    model: Any, x: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """K x B log importance weights log p(x, z) - log q(z | x) with z ~ q(z | x), in eval mode.

    Every latent level is drawn from its posterior (the top z, then each variational skip z_l
    given the decoder state) and weighted by the joint prior / posterior ratio, so
    ``metrics.iwae_bound`` of the result bounds log p(x) of the whole hierarchy. Deterministic
    skips are not latents: for them this bounds log p(x | encoder features) instead. ``model``
    is a :class:`VAE`, or anything with its ``posterior``, ``decoder`` and ``likelihood``.
    """
    # a ``with`` block, not the @torch.no_grad() decorator: mutmut 3 skips decorated functions
    with torch.no_grad(), eval_mode(model):
        feats, mu, logvar = model.posterior(x)
        dec_feats = None if getattr(model.decoder, "skip", "none") == "none" else feats
        zero = torch.zeros_like(mu)
        out = []
        for _ in range(k):
            z = reparameterize(mu, logvar, generator=generator)
            dec = model.decoder(z, feats=dec_feats, generator=generator, sample_skips=True)
            lw = -model.likelihood.nll(dec.out, x)
            lw = lw + log_normal(z, zero, zero) - log_normal(z, mu, logvar)
            # each skip level's z_l with the densities the decoder itself used (DecoderOutput.latents)
            for level in dec.latents:
                lw = lw + log_normal(level.z, *level.prior) - log_normal(level.z, *level.posterior)
            out.append(lw.double())
        return torch.stack(out)
