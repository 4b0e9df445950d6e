"""The model family: the plain AE and the VAE (with optional U-Net skips) as plain nn.Modules."""

from facemask_vae.models.ae import AE
from facemask_vae.models.autoencoder import Autoencoder, LossTerms, Objective
from facemask_vae.models.config import ModelConfig
from facemask_vae.models.vae import VAE

__all__ = ["AE", "VAE", "Autoencoder", "LossTerms", "ModelConfig", "Objective"]
