"""The importance-weighted (IWAE) log-likelihood bound of a VAE with every latent level.

For the plain VAE the only latent is z; for the U-Net VAE with variational skips each skip
level z_l is a latent too, drawn from its posterior given the decoder state and weighted by its
top-down prior, so the bound is on log p(x) of the whole hierarchy (Burda et al. 2016).
"""

from __future__ import annotations

import torch

from facemask_vae import metrics as M
from facemask_vae.models.base import AutoEncoderBase


def importance_log_weights(
    model: AutoEncoderBase, x: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """K x B log importance weights log p(x, z) - log q(z | x) with z ~ q(z | x).

    Every latent level is drawn from its posterior (the top z, then each variational skip z_l
    given the decoder state) and weighted by the joint prior / posterior ratio, so
    ``metrics.iwae_bound`` of the result bounds log p(x) of the whole hierarchy. Deterministic
    skips are not latents: for them this bounds log p(x | encoder features) instead.
    """
    # a ``with`` block, not the @torch.no_grad() decorator: mutmut 3 skips decorated functions
    with torch.no_grad():
        model.eval()
        feats, mu, logvar = model.posterior(x)
        std = (0.5 * logvar).exp()
        dec_feats = None if getattr(model.decoder, "skip", "none") == "none" else feats
        zero = torch.zeros_like(mu)
        out = []
        for _ in range(k):
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + eps * std
            dec = model.decoder(z, feats=dec_feats, generator=generator, sample_skips=True)
            lw = -model.likelihood.nll(dec.out, x)
            lw = lw + M.log_normal(z, zero, zero) - M.log_normal(z, mu, logvar)
            # each skip level's z_l with the densities the decoder itself used (DecoderOutput.latents)
            for level in dec.latents:
                lw = (
                    lw
                    + M.log_normal(level.z, *level.prior)
                    - M.log_normal(level.z, *level.posterior)
                )
            out.append(lw.double())
        return torch.stack(out)
