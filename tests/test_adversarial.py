"""Adversarial options: the AAE pulls codes toward the prior; VAE-GAN updates both players."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from helpers import lit

from facemask_vae.annealing import KLAnnealing
from facemask_vae.data.synthetic import SyntheticFaceMaskDataModule
from facemask_vae.lit.critics import DivergenceMonitor
from facemask_vae.metrics import mmd_to_standard_normal
from facemask_vae.models import AE, VAE

SMALL = {"image_size": 16, "widths": [16, 32], "latent_dim": 8}


def _data(n_train: int = 256) -> SyntheticFaceMaskDataModule:
    return SyntheticFaceMaskDataModule(
        n_train=n_train, n_val=64, n_test=64, image_size=16, batch_size=32, seed=0
    )


def _trainer(steps: int, tmp_path=None, callbacks=(), **kw) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=tmp_path is not None,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=list(callbacks),
        **kw,
    )


def _codes(model, dm) -> torch.Tensor:
    x = dm.to_float(dm.dataset("val").images)
    return model.encode(x)


def test_mmd_is_near_zero_for_prior_draws_and_large_for_shifted_codes():
    g = torch.Generator().manual_seed(0)
    prior = torch.randn(400, 8, generator=g)
    assert abs(mmd_to_standard_normal(prior, generator=g)) < 0.01
    assert mmd_to_standard_normal(prior + 2.0, generator=g) > 0.1
    assert mmd_to_standard_normal(prior * 0.1, generator=g) > 0.1


def test_aae_pulls_displaced_codes_back_to_the_prior_and_the_ae_does_not():
    """Both start with codes shifted by +3; only the critic gives a reason to move back."""
    dm = _data()
    distances = {}
    for name, weight in (("ae", 0.0), ("aae", 0.3)):
        torch.manual_seed(0)
        model = AE(**SMALL)
        options = {"latent_weight": weight, "critic_lr": 2e-4} if weight else {}
        module = lit(model, channels_last=False, **options)
        with torch.no_grad():
            model.to_latent.bias += 3.0
        g = torch.Generator().manual_seed(1)
        start = mmd_to_standard_normal(_codes(model, dm), generator=g)
        _trainer(200).fit(module, datamodule=dm)
        distances[name] = mmd_to_standard_normal(_codes(model, dm), generator=g)
    assert start > 0.5
    assert distances["aae"] < 0.5 * distances["ae"], distances


def test_vae_gan_step_updates_both_players_and_counts_batches():
    torch.manual_seed(0)
    model = lit(VAE(**SMALL), channels_last=False, image_weight=0.1, image_start=0)
    assert not model.automatic_optimization
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    dm = _data(64)
    trainer = _trainer(2)
    trainer.fit(model, datamodule=dm)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("critics.image") for n in changed)
    assert any(n.startswith("model.encoder") for n in changed)
    assert any(n.startswith("model.decoder") for n in changed)
    assert trainer.global_step == 2  # batches, not optimiser steps of both players
    assert {"train/critic_image_loss_step", "train/critic_image_acc_step"} <= set(
        trainer.callback_metrics
    )


def test_image_term_waits_for_its_start_step():
    torch.manual_seed(0)
    model = lit(VAE(**SMALL), channels_last=False, image_weight=0.1, image_start=1000)
    critic = {n: p.detach().clone() for n, p in model.critics.named_parameters()}
    _trainer(2).fit(model, datamodule=_data(64))
    assert all(torch.equal(p, critic[n]) for n, p in model.critics.named_parameters())


def test_annealing_still_drives_beta_under_manual_optimisation():
    model = lit(VAE(**SMALL), channels_last=False, latent_weight=0.5)
    anneal = KLAnnealing(kind="linear", warmup_steps=8)
    _trainer(6, callbacks=[anneal]).fit(model, datamodule=_data(64))
    assert model.beta == pytest.approx(5 / 8)  # set before the last (6th) step


def test_resume_keeps_both_optimiser_states(tmp_path):
    dm = _data(64)
    model = lit(VAE(**SMALL), channels_last=False, latent_weight=1.0, image_weight=0.1)
    trainer = _trainer(4, tmp_path)
    trainer.fit(model, datamodule=dm)
    path = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert len(ckpt["optimizer_states"]) == 2
    critic_steps = [s["step"] for s in ckpt["optimizer_states"][1]["state"].values()]
    assert critic_steps and all(float(s) == 4 for s in critic_steps)

    resumed = lit(VAE(**SMALL), channels_last=False, latent_weight=1.0, image_weight=0.1)
    trainer2 = _trainer(6, tmp_path)
    trainer2.fit(resumed, datamodule=dm, ckpt_path=path, weights_only=True)
    opt_g, opt_c = (o.optimizer if hasattr(o, "optimizer") else o for o in trainer2.optimizers)
    assert all(float(s["step"]) == 6 for s in opt_c.state.values())
    assert all(float(s["step"]) == 6 for s in opt_g.state.values())
    assert trainer2.global_step == 6


def test_divergence_monitor_warns_once_after_a_streak():
    mon = DivergenceMonitor(patience=3)
    assert [mon.update(a) for a in (1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0)] == [
        False,
        False,
        False,
        False,
        False,
        True,
        False,
    ]


def test_adversarial_weights_are_validated():
    with pytest.raises(ValueError, match=r"module\.image_weight"):
        lit(VAE(**SMALL), image_weight=-1.0)
    with pytest.raises(ValueError, match="latent_weight > 0"):
        lit(VAE(**SMALL), latent_weight=0.0, image_weight=0.0)
