"""The in-memory data module both datasets share: uint8 tensors in RAM, batches in [0, 1].

Images live as one uint8 tensor per split (decoded once, by the real loader from its disk cache or
by the synthetic generator), so an epoch costs a few tensor slices and no decoding. Conversion to
float and train-only augmentation happen on whole batches after transfer to the device. On a
single GPU (``on_device='auto'``) the split tensors move there once and batches are sliced there
(:mod:`facemask_vae.data.device`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from facemask_vae.data.augment import BatchAugment
from facemask_vae.data.device import DeviceBatches, wants_device_batches

#: Class folder names of the Kaggle layout and their labels. WithMask is the positive class.
CLASSES: dict[str, int] = {"WithoutMask": 0, "WithMask": 1}
#: Split folder names of the Kaggle layout, mapped to the Lightning stage names we use.
SPLITS: dict[str, str] = {"train": "Train", "val": "Validation", "test": "Test"}


class ImageTensorDataset(Dataset):
    """Images (uint8, N x 3 x H x W) and labels (int64, N) with whole-batch indexing."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be uint8 N x 3 x H x W, got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    # The default fetcher calls this with a whole batch of indices: one gather instead of B.
    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx], self.labels[idx]


def _collate_batch(batch: Any) -> Any:
    """Batches arrive whole from ``__getitems__``; single items (batch_size=None) are stacked."""
    if isinstance(batch, tuple):
        return batch
    images, labels = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(labels)


def limit_split(
    images: torch.Tensor, labels: torch.Tensor, limit: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep at most ``limit`` images, a seeded class-balanced-as-possible random subset."""
    if limit is None or limit >= len(labels):
        return images, labels
    if limit < 1:
        raise ValueError(f"data.limit_per_split must be >= 1 or null, got {limit}")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=g)
    # interleave the classes so a tiny limit still sees both
    by_class = [order[labels[order] == c] for c in sorted(set(labels.tolist()))]
    interleaved = torch.stack(
        [t[: min(len(t) for t in by_class)] for t in by_class], dim=1
    ).flatten()
    rest = order[~torch.isin(order, interleaved)]
    keep = torch.cat([interleaved, rest])[:limit].sort().values
    return images[keep], labels[keep]


class InMemoryDataModule(pl.LightningDataModule):
    """Base for both datasets: subclasses implement :meth:`load_split`; the rest is shared."""

    def __init__(
        self,
        image_size: int = 64,
        batch_size: int = 128,
        num_workers: int = 0,
        limit_per_split: int | None = None,
        augment: Mapping[str, Any] | None = None,
        seed: int = 0,
        channels_last: bool = True,
        on_device: str | bool = "auto",
    ) -> None:
        super().__init__()
        if int(image_size) < 8:
            raise ValueError(f"data.image_size must be >= 8, got {image_size}")
        if int(batch_size) < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if int(num_workers) < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.limit_per_split = limit_per_split
        self.seed = int(seed)
        self.channels_last = channels_last
        self.augment = BatchAugment(**dict(augment or {}))
        wants_device_batches(on_device, torch.device("cpu"), 1)  # validate early
        self.on_device = on_device
        self.datasets: dict[str, ImageTensorDataset] = {}
        self._on_device: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (uint8 N x 3 x S x S images, int64 labels) for 'train', 'val' or 'test'."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        wanted = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("test",),
        }.get(stage or "", tuple(SPLITS))
        for split in wanted:
            if split not in self.datasets:
                images, labels = self.load_split(split)
                images, labels = limit_split(images, labels, self.limit_per_split, self.seed)
                self.datasets[split] = ImageTensorDataset(images, labels)

    def dataset(self, split: str) -> ImageTensorDataset:
        """The dataset of one split, loading it on first use (for evaluation outside a Trainer)."""
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "fit", "test": "test"}[split])
            if split not in self.datasets:  # "fit" loads train and val together
                self.setup(None)
        return self.datasets[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader | DeviceBatches:
        trainer = self.trainer
        if trainer is not None:
            device = trainer.strategy.root_device
            if wants_device_batches(self.on_device, device, trainer.world_size):
                key = (split, str(device))
                if key not in self._on_device:  # one copy per split and device, kept
                    ds = self.dataset(split)
                    self._on_device[key] = (ds.images.to(device), ds.labels.to(device))
                images, labels = self._on_device[key]
                return DeviceBatches(
                    images,
                    labels,
                    self.batch_size,
                    shuffle,
                    self.seed,
                    lambda: trainer.current_epoch,
                )
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=_collate_batch,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader("test", shuffle=False)

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [0, 255] -> float [0, 1], in the memory format the models run fastest in."""
        x = images.float().div_(255.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        x = self.to_float(images)
        trainer = self.trainer
        if trainer is not None and trainer.training:
            x = self.augment(x)
        return x, labels
