"""Face Mask 12K data: the real Kaggle-layout dataset, a built-in synthetic one, and their shared base."""

from facemask_vae.data.base import CLASSES, SPLITS, ImageTensorDataset, InMemoryDataModule

__all__ = ["CLASSES", "SPLITS", "ImageTensorDataset", "InMemoryDataModule"]
