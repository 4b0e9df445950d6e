"""The real Face Mask 12K dataset (Kaggle layout), decoded once into a uint8 tensor cache on disk.

``root`` may be the ``Face Mask Dataset`` folder, its parent, or the downloaded ``.zip`` (extracted
once into the cache folder). Every image PIL reads becomes RGB, centre-cropped to a square and
resized with antialiasing; a split's images are then one uint8 tensor stored under a key made of
the file list, sizes, mtimes and the image size, so a later run loads it in about a second and no
epoch decodes a JPEG. Unreadable files are skipped with one warning per split.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from facemask_vae.data.base import CLASSES, SPLITS, InMemoryDataModule

KAGGLE_URL = "https://www.kaggle.com/datasets/ashishjangra27/face-mask-12k-images-dataset"
DATASET_FOLDER = "Face Mask Dataset"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
#: images above this many pixels are refused per file (decompression bombs); faces are far smaller
MAX_PIXELS = 40_000_000
#: bump when decoding changes, so old caches are not reused
CACHE_VERSION = 1


class DatasetError(ValueError):
    """The dataset is missing or not in the expected layout; the message says how to fix it."""


class BadImageWarning(UserWarning):
    """Some image files could not be decoded and were skipped."""


def _layout_help(path: Path | str | None) -> str:
    return (
        f"Face Mask 12K dataset not found at data.root={path!s}.\n"
        f"Expected '{DATASET_FOLDER}/{{Train,Validation,Test}}/{{WithMask,WithoutMask}}/*.png' "
        "(the folder, its parent, or the downloaded .zip).\n"
        f"Download it from {KAGGLE_URL}\n"
        "and pass data.root=<path> (or set FACEMASK_ROOT), "
        "or train on the built-in synthetic faces with data=synthetic."
    )


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/facemask-vae``, i.e. ``~/.cache/facemask-vae`` by default."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "facemask-vae"


def _is_dataset_dir(path: Path) -> bool:
    return any((path / split).is_dir() for split in SPLITS.values())


def _extract_zip(archive: Path, cache_dir: Path) -> Path:
    """Extract the archive once (atomically) into the cache; return the extracted folder."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    target = cache_dir / "extracted" / f"{archive.stem}-{key.hexdigest()[:12]}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)  # zipfile drops absolute paths and '..' components
            try:
                os.replace(tmp, target)
            except OSError:  # another process (e.g. a DDP rank) finished first: use its copy
                if not target.is_dir():
                    raise
        except zipfile.BadZipFile as err:
            raise DatasetError(f"data.root={archive} is not a readable zip file: {err}") from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def find_dataset_dir(root: str | os.PathLike | None, cache_dir: Path | None = None) -> Path:
    """The folder holding Train/Validation/Test, from the folder itself, its parent or a zip."""
    if root is None or str(root).strip() == "":
        raise DatasetError(_layout_help(None))
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(_layout_help(path))
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise DatasetError(
                f"data.root={path} is a file but not a zip archive.\n" + _layout_help(path)
            )
        path = _extract_zip(path, cache_dir or default_cache_dir())
    candidates = [path, path / DATASET_FOLDER]
    # a zip or a download folder may add one level, e.g. archive/Face Mask Dataset/Train
    candidates += sorted(p / DATASET_FOLDER for p in path.iterdir() if p.is_dir())
    candidates += sorted(p for p in path.iterdir() if p.is_dir())
    for candidate in candidates:
        if candidate.is_dir() and _is_dataset_dir(candidate):
            return candidate
    raise DatasetError(_layout_help(path))


def list_split(dataset_dir: Path, split: str) -> list[tuple[Path, int]]:
    """Sorted (image file, label) pairs of one split; missing or empty folders are named."""
    split_dir = dataset_dir / SPLITS[split]
    if not split_dir.is_dir():
        raise DatasetError(
            f"split folder missing: {split_dir}\n"
            f"Expected {dataset_dir}/{{{','.join(SPLITS.values())}}}/{{{','.join(CLASSES)}}}/."
        )
    files: list[tuple[Path, int]] = []
    for name, label in CLASSES.items():
        class_dir = split_dir / name
        if not class_dir.is_dir():
            raise DatasetError(f"class folder missing: {class_dir} (expected {sorted(CLASSES)})")
        found = sorted(
            p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not found:
            raise DatasetError(
                f"class folder has no images: {class_dir} "
                f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        files += [(p, label) for p in found]
    return files


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency over white, 16-bit and float scaled to 8 bits."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = float(arr.max(initial=0))
        # floats span [0, max(peak, 1)]; integers are 16-bit when any value exceeds 8 bits
        top = max(peak, 1.0) if img.mode == "F" else (65535.0 if peak > 255 else 255.0)
        img = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def decode_image(path: Path, size: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One file -> uint8 H x W x 3 array of size x size (centre square crop, antialiased resize)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ValueError(f"{width}x{height} exceeds {max_pixels} pixels")
            if img.format == "JPEG":
                img.draft("RGB", (size, size))  # DCT-domain downscale: decodes big JPEGs faster
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    rgb = ImageOps.fit(rgb, (size, size), method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))
    return np.asarray(rgb, dtype=np.uint8)


@dataclass
class SplitCache:
    """One decoded split: images, labels and the files that were skipped (with reasons)."""

    images: torch.Tensor
    labels: torch.Tensor
    skipped: list[tuple[str, str]]


def _cache_key(files: list[tuple[Path, int]], dataset_dir: Path, size: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{size}".encode())
    for path, label in files:
        st = path.stat()
        h.update(f"|{path.relative_to(dataset_dir)}|{label}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def build_split(files: list[tuple[Path, int]], size: int, desc: str) -> SplitCache:
    """Decode every file of a split; unreadable ones are collected, not raised."""
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    labels, skipped, n = [], [], 0
    for path, label in tqdm(files, desc=desc, unit="img", leave=False, disable=None):
        try:
            images[n] = decode_image(path, size)
        except Exception as err:
            skipped.append((str(path), f"{type(err).__name__}: {err}"))
            continue
        labels.append(label)
        n += 1
    tensor = torch.from_numpy(images[:n]).permute(0, 3, 1, 2).contiguous()
    return SplitCache(tensor, torch.tensor(labels, dtype=torch.long), skipped)


def load_or_build_split(
    dataset_dir: Path, split: str, size: int, cache_dir: Path
) -> tuple[SplitCache, Path]:
    """The split's decoded tensors from the cache, building (and atomically writing) on a miss."""
    files = list_split(dataset_dir, split)
    path = cache_dir / f"{SPLITS[split]}-{size}px-{_cache_key(files, dataset_dir, size)}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            return SplitCache(blob["images"], blob["labels"], list(blob["skipped"])), path
        except Exception as err:
            warnings.warn(f"rebuilding unreadable cache {path}: {err}", stacklevel=2)
    built = build_split(files, size, desc=f"decoding {SPLITS[split]} ({size}px, once)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-", suffix=".pt")
    os.close(fd)
    try:
        blob = {"images": built.images, "labels": built.labels, "skipped": built.skipped}
        torch.save(blob, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a shared cache should be readable
        os.replace(tmp, path)  # atomic: a concurrent or killed run never sees half a file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return built, path


def _warn_skipped(split: str, skipped: list[tuple[str, str]]) -> None:
    if skipped:
        names = "; ".join(f"{Path(p).name} ({why})" for p, why in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        warnings.warn(
            f"skipped {len(skipped)} unreadable image file(s) in {SPLITS[split]}: {names}{more}",
            BadImageWarning,
            stacklevel=3,
        )


class FaceMaskDataModule(InMemoryDataModule):
    """Face Mask 12K in the Kaggle layout; labels WithMask = 1, WithoutMask = 0."""

    def __init__(
        self,
        root: str | os.PathLike | None,
        image_size: int = 64,
        batch_size: int = 128,
        num_workers: int = 0,
        limit_per_split: int | None = None,
        cache_dir: str | os.PathLike | None = None,
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
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        # fail before anything else is built: a missing root is the commonest first-run error
        self.dataset_dir = find_dataset_dir(root, self.cache_dir)
        self.cache_paths: dict[str, Path] = {}

    def prepare_data(self) -> None:
        """Build the caches once (Lightning calls this on one process per node)."""
        for split in SPLITS:
            load_or_build_split(self.dataset_dir, split, self.image_size, self.cache_dir)

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        cached, path = load_or_build_split(self.dataset_dir, split, self.image_size, self.cache_dir)
        self.cache_paths[split] = path
        _warn_skipped(split, cached.skipped)
        if len(cached.labels) == 0:
            raise DatasetError(f"no readable images in {self.dataset_dir / SPLITS[split]}")
        return cached.images, cached.labels
