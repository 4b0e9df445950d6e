"""The real-data module on generated fixtures in the Kaggle layout (and on the real copy if present)."""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facemask_vae.data.base import CLASSES
from facemask_vae.data.facemask import (
    BadImageWarning,
    DatasetError,
    FaceMaskDataModule,
    decode_image,
    find_dataset_dir,
)

SPLIT_DIRS = ("Train", "Validation", "Test")


def _face(colour: tuple[int, int, int], size=(40, 30)) -> Image.Image:
    return Image.new("RGB", size, colour)


def make_dataset(parent: Path, per_class: int = 3) -> Path:
    """A tiny Kaggle-layout dataset: WithMask images are blue, WithoutMask images are red."""
    root = parent / "Face Mask Dataset"
    for split in SPLIT_DIRS:
        for name, colour in (("WithMask", (0, 0, 255)), ("WithoutMask", (255, 0, 0))):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                _face(colour).save(d / f"{i}.png" if i % 2 else d / f"{i}.jpg", quality=95)
    return root


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "data dir with spaces")


def _dm(root, tmp_path, **kw) -> FaceMaskDataModule:
    return FaceMaskDataModule(root=str(root), image_size=16, cache_dir=tmp_path / "cache", **kw)


def test_labels_follow_the_folders(dataset, tmp_path):
    """WithMask = 1, WithoutMask = 0: a label swap makes this fail."""
    ds = _dm(dataset, tmp_path).dataset("train")
    assert len(ds) == 6
    blue = ds.images[:, 2].float().mean((1, 2)) > 200
    red = ds.images[:, 0].float().mean((1, 2)) > 200
    assert (ds.labels[blue] == CLASSES["WithMask"]).all() and blue.sum() == 3
    assert (ds.labels[red] == CLASSES["WithoutMask"]).all() and red.sum() == 3
    assert ds.images.dtype == torch.uint8 and ds.images.shape[1:] == (3, 16, 16)


@pytest.mark.parametrize("form", ["folder", "parent", "zip"])
def test_root_may_be_folder_parent_or_zip(dataset, tmp_path, form):
    if form == "folder":
        root = dataset
    elif form == "parent":
        root = dataset.parent
    else:
        root = tmp_path / "archive.zip"
        with zipfile.ZipFile(root, "w") as zf:
            for f in dataset.rglob("*"):
                zf.write(f, f.relative_to(dataset.parent))
    dm = _dm(root, tmp_path)
    assert dm.dataset_dir.name == "Face Mask Dataset"
    assert len(dm.dataset("test")) == 6


def test_zip_is_extracted_once(dataset, tmp_path):
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in dataset.rglob("*"):
            zf.write(f, f.relative_to(dataset.parent))
    first = find_dataset_dir(archive, tmp_path / "cache")
    stamp = first.stat().st_mtime_ns
    second = find_dataset_dir(archive, tmp_path / "cache")
    assert first == second and second.stat().st_mtime_ns == stamp


def test_missing_root_names_path_layout_kaggle_and_synthetic(tmp_path):
    with pytest.raises(DatasetError) as info:
        FaceMaskDataModule(root=str(tmp_path / "nowhere"), cache_dir=tmp_path)
    msg = str(info.value)
    for needle in ("nowhere", "WithMask", "kaggle.com/datasets/ashishjangra27", "data=synthetic"):
        assert needle in msg
    with pytest.raises(DatasetError, match="data=synthetic"):
        FaceMaskDataModule(root=None, cache_dir=tmp_path)


def test_missing_split_and_empty_class_are_named(dataset, tmp_path):
    shutil.rmtree(dataset / "Validation")
    with pytest.raises(DatasetError, match="Validation"):
        _dm(dataset, tmp_path).dataset("val")
    for f in (dataset / "Test" / "WithMask").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"no images.*WithMask"):
        _dm(dataset, tmp_path).dataset("test")


def test_bad_files_are_skipped_with_one_warning(dataset, tmp_path):
    d = dataset / "Train" / "WithMask"
    (d / "empty.jpg").write_bytes(b"")
    (d / "garbage.png").write_bytes(b"not an image at all")
    good = (d / "1.png").read_bytes()
    (d / "truncated.png").write_bytes(good[: len(good) // 2])
    (d / "notes.txt").write_text("ignored: not an image suffix")
    (d / "Thumbs.db").write_bytes(b"\x00" * 10)
    with pytest.warns(BadImageWarning, match="skipped 3 unreadable image file") as rec:
        ds = _dm(dataset, tmp_path).dataset("train")
    bad = [str(w.message) for w in rec if issubclass(w.category, BadImageWarning)]
    assert len(bad) == 1
    assert all(name in bad[0] for name in ("empty.jpg", "garbage.png", "truncated.png"))
    assert len(ds) == 6


def test_decompression_bomb_is_refused_per_file(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(path)
    with pytest.raises(ValueError, match="exceeds"):
        decode_image(path, 16, max_pixels=10_000)
    assert decode_image(path, 16).shape == (16, 16, 3)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    path = tmp_path / f"img_{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}"
    img = Image.new("RGB", (24, 20), (200, 100, 50)).convert(mode) if mode != "I;16" else None
    if mode == "I;16":
        img = Image.fromarray(np.full((20, 24), 40000, dtype=np.uint16))
    img.save(path)
    out = decode_image(path, 8)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    if mode == "I;16":  # 16-bit scaled to 8 bits, not clipped to white
        assert 140 < out.mean() < 170


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg", ".bmp", ".webp", ".JPG"])
def test_every_image_format_is_read(tmp_path, suffix):
    path = tmp_path / f"face{suffix}"
    _face((10, 200, 30)).save(
        path,
        format={".jpg": "JPEG", ".jpeg": "JPEG", ".JPG": "JPEG"}.get(suffix, suffix[1:].upper()),
    )
    out = decode_image(path, 8)
    assert out.shape == (8, 8, 3) and abs(int(out[..., 1].mean()) - 200) < 12


def test_center_crop_keeps_the_middle(tmp_path):
    """A wide image is cropped to its centre square, not squashed."""
    arr = np.zeros((20, 60, 3), dtype=np.uint8)
    arr[:, 20:40] = 255  # a white centre square between black side bands
    Image.fromarray(arr).save(tmp_path / "wide.png")
    out = decode_image(tmp_path / "wide.png", 10)
    assert out.mean() > 240


def test_cache_is_reused_and_invalidated_by_changes(dataset, tmp_path):
    dm = _dm(dataset, tmp_path)
    dm.dataset("train")
    path = dm.cache_paths["train"]
    assert path.is_file()
    dm2 = _dm(dataset, tmp_path)
    dm2.dataset("train")
    assert dm2.cache_paths["train"] == path
    # a changed file (new mtime) and a different image size each get a new cache
    f = dataset / "Train" / "WithMask" / "0.jpg"
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    dm3 = _dm(dataset, tmp_path)
    dm3.dataset("train")
    assert dm3.cache_paths["train"] != path
    dm4 = FaceMaskDataModule(root=str(dataset), image_size=8, cache_dir=tmp_path / "cache")
    dm4.dataset("train")
    assert dm4.cache_paths["train"] not in (path, dm3.cache_paths["train"])
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_cached_load_does_not_decode(dataset, tmp_path, monkeypatch):
    _dm(dataset, tmp_path).dataset("train")

    def boom(*a, **k):
        raise AssertionError("decoded an image although the cache exists")

    monkeypatch.setattr("facemask_vae.data.facemask.decode_image", boom)
    assert len(_dm(dataset, tmp_path).dataset("train")) == 6


def test_train_only_augmentation(dataset, tmp_path):
    dm = _dm(dataset, tmp_path, augment={"hflip": 1.0})
    images = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    images[..., :8] = 255

    class FakeTrainer:
        training = True

    dm.trainer = FakeTrainer()
    flipped, _ = dm.on_after_batch_transfer((images, torch.zeros(2)), 0)
    assert flipped[..., 8:].min() == 1 and flipped[..., :8].max() == 0
    FakeTrainer.training = False
    plain, _ = dm.on_after_batch_transfer((images, torch.zeros(2)), 0)
    assert plain[..., :8].min() == 1


REAL = os.environ.get("FACEMASK_ROOT")


@pytest.mark.skipif(not REAL or not Path(REAL).exists(), reason="FACEMASK_ROOT not set")
def test_real_dataset_split_sizes(tmp_path):
    """The real copy: Kaggle split sizes, both classes, no unreadable files."""
    cache = os.environ.get("FACEMASK_CACHE") or tmp_path
    dm = FaceMaskDataModule(root=REAL, image_size=32, cache_dir=cache)
    sizes = {s: len(dm.dataset(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 10_023, "val": 800, "test": 992}
    assert dm.dataset("val").labels.sum().item() == 400
    assert dm.dataset("test").labels.sum().item() == 483
    images, labels = next(iter(dm.val_dataloader()))
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
    assert 0 <= x.min() < 0.2 and 0.8 < x.max() <= 1  # real photos span the range
    assert set(y.tolist()) <= {0, 1}
    # 400 label-1 images above, and the WithMask folder holds exactly 400 files
    files = {s: sorted((Path(dm.dataset_dir) / "Validation" / s).iterdir()) for s in CLASSES}
    assert len(files["WithMask"]) == 400 and len(files["WithoutMask"]) == 400
