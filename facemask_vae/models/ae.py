"""The plain autoencoder: a deterministic code z = f(x), trained on reconstruction alone."""

from __future__ import annotations

from typing import Any

import torch

from facemask_vae.models.autoencoder import Autoencoder, LossTerms
from facemask_vae.models.config import ModelConfig


class AE(Autoencoder):
    """Deterministic encoder -> z -> decoder; the loss is the reconstruction NLL only."""

    has_kl = False

    def __init__(self, config: ModelConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        if self.config.skip != "none" or self.config.free_bits != 0.0:
            raise ValueError("model.skip and model.free_bits are VAE options: the AE has neither")

    def encode_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.to_latent(self.encoder(x)[-1].flatten(1)).float()]

    def loss_terms(self, x: torch.Tensor) -> LossTerms:
        z = self.encode_all(x)[0]
        out = self.decoder(z).out
        return LossTerms(recon=self.likelihood.nll(out, x), out=out, mu=z, z=z)
