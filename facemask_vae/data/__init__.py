"""Face Mask 12K data: the real Kaggle-layout dataset (`facemask`), built-in synthetic faces
(`synthetic`) and their shared in-memory base (`base`)."""

from facemask_vae.data.base import CLASSES, SPLITS, ImageTensorDataset, InMemoryDataModule

__all__ = ["CLASSES", "SPLITS", "ImageTensorDataset", "InMemoryDataModule"]
