"""Models: the plain AE and the VAE (with optional U-Net skips), on one encoder/decoder family."""

from facemask_vae.models.ae import AE
from facemask_vae.models.base import AutoEncoderBase
from facemask_vae.models.vae import VAE

__all__ = ["AE", "VAE", "AutoEncoderBase"]
