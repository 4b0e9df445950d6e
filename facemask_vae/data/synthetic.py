"""Built-in synthetic faces with and without masks, rendered from a seed: no files, no download.

The DataModule over the faces of :mod:`facemask_vae.data.faces`, with the real module's splits
and labels. It lets the main job and the tests run without the real data;
``python -m facemask_vae.data.synthetic`` writes a grid to look at.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from facemask_vae.data.base import SPLITS, InMemoryDataModule
from facemask_vae.data.faces import generate_faces

__all__ = ["SyntheticFaceMaskDataModule", "generate_faces", "main", "save_grid"]

#: the seed offset of each split, so train, val and test never share an image
_SPLIT_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_003}


class SyntheticFaceMaskDataModule(InMemoryDataModule):
    """The synthetic faces with the real module's interface, splits and labels."""

    def __init__(
        self,
        n_train: int = 2400,
        n_val: int = 300,
        n_test: int = 300,
        image_size: int = 64,
        batch_size: int = 128,
        num_workers: int = 0,
        limit_per_split: int | None = None,
        seed: int = 0,
        augment: Mapping[str, Any] | None = None,
        channels_last: bool = True,
        on_device: str | bool = "auto",
    ) -> None:
        super().__init__(
            image_size=image_size,
            batch_size=batch_size,
            num_workers=num_workers,
            limit_per_split=limit_per_split,
            augment=augment,
            seed=seed,
            channels_last=channels_last,
            on_device=on_device,
        )
        self.sizes = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
        for split, count in self.sizes.items():
            if count < 1:
                raise ValueError(f"data.n_{split} must be >= 1, got {count}")

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
        return generate_faces(
            self.sizes[split], self.image_size, seed=self.seed + _SPLIT_OFFSET[split]
        )


def save_grid(path: Path, n: int = 64, image_size: int = 64, seed: int = 0) -> Path:
    """Write a grid of ``n`` faces (WithoutMask rows first, then WithMask) as a PNG."""
    from torchvision.utils import save_image

    images, labels = generate_faces(n, image_size, seed)
    order = torch.argsort(labels, stable=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images[order].float() / 255, path, nrow=int(n**0.5), padding=1)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/synthetic_grid.png"))
    parser.add_argument("-n", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(save_grid(args.out, args.n, args.image_size, args.seed))


if __name__ == "__main__":
    main()
