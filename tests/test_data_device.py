"""Batches served from split tensors on the training device (the GPU path), exercised on the CPU."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from helpers import lit

from facemask_vae.data.device import DeviceBatches, wants_device_batches
from facemask_vae.data.synthetic import SyntheticFaceMaskDataModule
from facemask_vae.models import VAE


def _data(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).clone()
    return images, torch.arange(n)


def test_an_epoch_yields_every_image_once_in_a_seeded_order_that_changes_per_epoch():
    images, labels = _data(10)
    batches = DeviceBatches(images, labels, batch_size=4, shuffle=True, seed=3)
    assert len(batches) == 3
    first = [b for b in batches]
    assert [len(y) for _, y in first] == [4, 4, 2]
    order = torch.cat([y for _, y in first])
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    assert all(torch.equal(x[:, 0, 0, 0].long(), y) for x, y in first)  # images follow labels
    second = torch.cat([y for _, y in batches])
    assert second.tolist() != order.tolist()  # a new permutation each epoch
    again = DeviceBatches(images, labels, batch_size=4, shuffle=True, seed=3)
    assert torch.cat([y for _, y in again]).tolist() == order.tolist()  # reproducible
    assert torch.cat([y for _, y in again]).tolist() == second.tolist()  # its own second epoch
    resumed = DeviceBatches(images, labels, batch_size=4, shuffle=True, seed=3, epoch_of=lambda: 1)
    assert torch.cat([y for _, y in resumed]).tolist() == second.tolist()  # the trainer's epoch


def test_unshuffled_batches_are_views_in_order():
    images, labels = _data(10)
    out = list(DeviceBatches(images, labels, batch_size=4, shuffle=False))
    assert torch.cat([y for _, y in out]).tolist() == list(range(10))
    assert out[0][0].data_ptr() == images.data_ptr()  # a slice, not a copy


def test_when_batches_come_from_the_device():
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert not wants_device_batches("auto", cpu, 1)
    assert wants_device_batches("auto", gpu, 1)
    assert not wants_device_batches("auto", gpu, 2)  # DDP shards DataLoaders: keep them
    assert wants_device_batches(True, cpu, 1) and not wants_device_batches(False, gpu, 1)
    with pytest.raises(ValueError, match="on_device"):
        wants_device_batches("always", cpu, 1)


def test_a_trainer_fits_on_device_batches_with_augmentation():
    dm = SyntheticFaceMaskDataModule(
        n_train=48,
        n_val=16,
        n_test=16,
        image_size=32,
        batch_size=16,
        on_device=True,
        augment={"hflip": 0.5},
    )
    model = VAE(image_size=32, widths=[8, 16], latent_dim=4)
    model.sampling_bn_batches, model.sampling_bn_batch = 1, 8
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(lit(model), datamodule=dm)
    assert isinstance(dm.train_dataloader(), DeviceBatches)
    assert trainer.global_step == 3  # 48 images in batches of 16
    assert all(torch.isfinite(p).all() for p in model.parameters())
