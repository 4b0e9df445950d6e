"""Training callbacks of our own: image logging (reconstructions, prior samples, interpolations)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image


def image_grids(
    module: pl.LightningModule,
    x: torch.Tensor,
    n_samples: int,
    interp_steps: int,
    seed: int,
) -> dict[str, torch.Tensor]:
    """The three pictures of a model's state as 3 x H x W grids in [0, 1].

    ``recon``: inputs above, reconstructions below; ``samples``: decoded prior draws from a fixed
    noise seed, so epochs compare; ``interpolation``: one row per pair (x[2i], x[2i+1]).
    """
    recon = module.reconstruct(x)
    g = torch.Generator(device=module.device).manual_seed(seed)
    samples = module.sample(n_samples, generator=g)
    pairs = x.shape[0] // 2
    interp = module.interpolate(x[:pairs], x[pairs : 2 * pairs], steps=interp_steps)
    return {
        "recon": make_grid(torch.cat([x.float(), recon]), nrow=x.shape[0], padding=1),
        "samples": make_grid(samples, nrow=int(n_samples**0.5 + 0.5), padding=1),
        "interpolation": make_grid(interp.flatten(0, 1), nrow=interp_steps, padding=1),
    }


class ImageLogger(pl.Callback):
    """Every ``every_n_epochs`` validation epochs: image grids to TensorBoard and PNGs in the run dir.

    Uses the first ``n_images`` validation images (fixed across epochs) and a fixed sample seed.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        n_images: int = 8,
        n_samples: int = 16,
        interp_steps: int = 8,
        seed: int = 0,
    ) -> None:
        if every_n_epochs < 1 or n_images < 2 or n_samples < 1 or interp_steps < 2:
            raise ValueError(
                "callbacks.image_logger needs every_n_epochs >= 1, n_images >= 2, "
                "n_samples >= 1 and interp_steps >= 2"
            )
        self.every_n_epochs, self.n_images, self.n_samples = every_n_epochs, n_images, n_samples
        self.interp_steps, self.seed = interp_steps, seed

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        due = (trainer.current_epoch + 1) % self.every_n_epochs == 0
        if not (due or trainer.fast_dev_run):
            return
        dm = trainer.datamodule
        images = dm.dataset("val").images[: self.n_images].to(pl_module.device)
        x = dm.to_float(images)
        grids = image_grids(pl_module, x, self.n_samples, self.interp_steps, self.seed)
        out_dir = Path(trainer.default_root_dir) / "images"
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, grid in grids.items():
            save_image(grid, out_dir / f"{name}_epoch{trainer.current_epoch:03d}.png")
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image(f"images/{name}", grid, trainer.global_step)
