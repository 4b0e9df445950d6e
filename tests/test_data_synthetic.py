"""The built-in synthetic faces: deterministic, balanced, varied, and masks where masks belong."""

from __future__ import annotations

import hashlib

import pytest
import torch

from facemask_vae.data.base import CLASSES
from facemask_vae.data.synthetic import SyntheticFaceMaskDataModule, generate_faces, save_grid


def test_shapes_dtype_and_balanced_labels():
    images, labels = generate_faces(50, image_size=32, seed=3)
    assert images.shape == (50, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.long and set(labels.tolist()) == {0, 1}
    assert labels.sum().item() == 25


def test_deterministic_from_seed_and_different_across_seeds():
    a, la = generate_faces(16, 32, seed=1)
    b, lb = generate_faces(16, 32, seed=1)
    c, _ = generate_faces(16, 32, seed=2)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)


def test_mask_only_on_withmask_faces_and_over_the_lower_face():
    _, labels, mask = generate_faces(64, 64, seed=0, return_mask_pixels=True)
    covered = mask.flatten(1).float().mean(1)
    assert (covered[labels == CLASSES["WithoutMask"]] == 0).all()
    assert (covered[labels == CLASSES["WithMask"]] > 0.03).all()
    # the mask sits over nose and mouth: its centre of mass is in the lower part of the image
    rows = torch.arange(64).float()
    masked = mask[labels == 1].float()
    centre = (masked.sum(2) * rows).sum(1) / masked.sum((1, 2))
    assert (centre > 32).float().mean() > 0.9


def test_classes_are_learnable_from_pixels():
    """The mask-vs-no-mask signal is in the pixels: a linear probe separates held-out faces."""
    from sklearn.linear_model import LogisticRegression

    images, labels = generate_faces(600, 16, seed=5)
    x = images.float().flatten(1).numpy() / 255
    probe = LogisticRegression(max_iter=2000).fit(x[:400], labels[:400].numpy())
    assert probe.score(x[400:], labels[400:].numpy()) > 0.8


def test_images_vary():
    images, _ = generate_faces(32, 32, seed=0)
    per_image = images.float().flatten(1)
    # no two images identical, and a real spread of brightness
    assert torch.cdist(per_image, per_image).fill_diagonal_(1e9).min() > 100
    assert per_image.mean(1).std() > 5


def test_datamodule_splits_are_disjoint_and_limited():
    dm = SyntheticFaceMaskDataModule(n_train=40, n_val=20, n_test=20, image_size=32, seed=0)
    train, val, test = dm.dataset("train"), dm.dataset("val"), dm.dataset("test")
    assert (len(train), len(val), len(test)) == (40, 20, 20)
    # no image of one split is any image of another (nor repeated within its split)
    hashes = {
        split: [hashlib.sha256(img.contiguous().numpy().tobytes()).hexdigest() for img in ds.images]
        for split, ds in (("train", train), ("val", val), ("test", test))
    }
    for split, hs in hashes.items():
        assert len(set(hs)) == len(hs), f"{split} repeats an image"
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = set(hashes[a]) & set(hashes[b])
        assert not shared, f"{len(shared)} images are in both {a} and {b}"
    limited = SyntheticFaceMaskDataModule(
        n_train=40, n_val=20, n_test=20, image_size=32, limit_per_split=6
    )
    assert len(limited.dataset("train")) == 6
    assert set(limited.dataset("train").labels.tolist()) == {0, 1}


def test_batches_are_float_in_unit_range():
    dm = SyntheticFaceMaskDataModule(n_train=8, n_val=8, n_test=8, image_size=16, batch_size=4)
    images, labels = next(iter(dm.val_dataloader()))
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    assert x.dtype == torch.float32 and x.shape == (4, 3, 16, 16)
    assert x.min() >= 0 and x.max() <= 1
    assert torch.equal(y, labels)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="n_val"):
        SyntheticFaceMaskDataModule(n_val=0)
    with pytest.raises(ValueError, match="image_size"):
        generate_faces(4, image_size=4)


def test_save_grid(tmp_path):
    out = save_grid(tmp_path / "grid.png", n=16, image_size=16)
    assert out.is_file() and out.stat().st_size > 500
