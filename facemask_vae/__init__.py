"""facemask-vae: AE, VAE and U-Net VAE on Face Mask 12K with KL-annealing schedules."""

__version__ = "0.1.0"
