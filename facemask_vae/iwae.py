"""The importance-weighted (IWAE) log-likelihood bound of a VAE with every latent level.

For the plain VAE the only latent is z; for the U-Net VAE with variational skips each skip
level z_l is a latent too, drawn from its posterior given the decoder state and weighted by its
top-down prior, so the bound is on log p(x) of the whole hierarchy (Burda et al. 2016).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from facemask_vae import metrics as M
from facemask_vae.models.base import AutoEncoderBase


@contextlib.contextmanager
def _ladder_recorder(decoder: torch.nn.Module) -> Iterator[list[dict[str, Any]]]:
    """Record, per variational skip level, the prior and posterior parameters and the z_l drawn
    in a decoder pass, by wrapping the level's own methods (the model code stays the one truth)."""
    ladder = (
        getattr(decoder, "ladder", None)
        if getattr(decoder, "skip", "none") == "variational"
        else None
    )
    records: list[dict[str, Any]] = [{} for _ in (ladder or [])]
    handles = []
    for level, rec in zip(ladder or [], records, strict=True):

        def prior(d, _f=level.prior_params, _r=rec):
            _r["prior"] = out = _f(d)
            return out

        def posterior(h, d, p, _f=level.posterior_params, _r=rec):
            _r["post"] = out = _f(h, d, p)
            return out

        level.prior_params = prior
        level.posterior_params = posterior
        handles.append(
            level.project.register_forward_pre_hook(
                lambda _m, args, _r=rec: _r.__setitem__("z", args[0].float())
            )
        )
    try:
        yield records
    finally:
        for level in ladder or []:
            del level.prior_params, level.posterior_params  # back to the class methods
        for h in handles:
            h.remove()


@torch.no_grad()
def importance_log_weights(
    model: AutoEncoderBase, x: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """K x B log importance weights log p(x, z) - log q(z | x) with z ~ q(z | x).

    Every latent level is drawn from its posterior (the top z, then each variational skip z_l
    given the decoder state) and weighted by the joint prior / posterior ratio, so
    ``metrics.iwae_bound`` of the result bounds log p(x) of the whole hierarchy. Deterministic
    skips are not latents: for them this bounds log p(x | encoder features) instead.
    """
    model.eval()
    feats, mu, logvar = model.posterior(x)
    std = (0.5 * logvar).exp()
    dec_feats = None if getattr(model.decoder, "skip", "none") == "none" else feats
    zero = torch.zeros_like(mu)
    out = []
    with _ladder_recorder(model.decoder) as records:
        for _ in range(k):
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + eps * std
            dec = model.decoder(z, feats=dec_feats, generator=generator, sample_skips=True)
            lw = -model.likelihood.nll(dec.out, x)
            lw = lw + M.log_normal(z, zero, zero) - M.log_normal(z, mu, logvar)
            for r in records:
                lw = lw + M.log_normal(r["z"], *r["prior"]) - M.log_normal(r["z"], *r["post"])
            out.append(lw.double())
    return torch.stack(out)
