"""What users break: non-finite losses, malicious checkpoints, bad configs at the command line."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch
from helpers import ROOT

from facemask_vae.callbacks import NonFiniteGuard, NonFiniteLossError
from facemask_vae.data.base import InMemoryDataModule
from facemask_vae.models import VAE


class RandomImages(InMemoryDataModule):
    """Noise images: enough to drive a Trainer in tests that are not about data."""

    def load_split(self, split):
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        n = 64
        return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(
            n
        ) % 2


class ExplodingVAE(VAE):
    """A VAE whose loss turns NaN at the given training steps."""

    def __init__(self, bad_steps=(), **kw):
        super().__init__(**kw)
        self.bad_steps = set(bad_steps)

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if self.global_step in self.bad_steps:
            loss = loss * float("nan")
            self.last_terms["loss"] = loss.detach()
        return loss


def _trainer(callbacks, steps=6):
    return pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )


SMALL = {"image_size": 32, "widths": [8, 16], "latent_dim": 4}


def test_non_finite_loss_stops_training_with_step_and_last_finite_values():
    model = ExplodingVAE(bad_steps={3}, **SMALL)
    with pytest.raises(NonFiniteLossError, match=r"step 3.*Last finite values: \{'step': 2"):
        _trainer([NonFiniteGuard("raise")]).fit(model, datamodule=RandomImages(batch_size=16))


def test_non_finite_batch_is_skipped_and_weights_stay_finite_when_configured():
    model = ExplodingVAE(bad_steps={2, 4}, **SMALL)
    guard = NonFiniteGuard("skip")
    with pytest.warns(UserWarning, match="batch skipped"):
        _trainer([guard]).fit(model, datamodule=RandomImages(batch_size=16))
    assert guard.skipped == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_same_seed_gives_identical_losses_on_cpu():
    def run():
        pl.seed_everything(7, workers=True)
        model = VAE(**SMALL, skip="variational")
        losses = []

        class Record(pl.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                losses.append(float(outputs["loss"]))

        trainer = pl.Trainer(
            accelerator="cpu",
            max_steps=5,
            limit_val_batches=0,
            logger=False,
            deterministic=True,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[Record()],
        )
        trainer.fit(model, datamodule=RandomImages(batch_size=16, seed=7))
        return losses

    assert run() == run()


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-checkpoint",))


def test_a_checkpoint_carrying_code_is_refused_and_never_run(tmp_path):
    bad = tmp_path / "evil.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": {}, "x": _Payload()}, f)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "data=synthetic",
            "trainer=debug",
            f"ckpt_path={bad}",
            f"hydra.run.dir={tmp_path}/run",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert not (tmp_path / "pwned-by-checkpoint").exists()
    assert "weights_only" in proc.stderr or "Unsupported global" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model=nosuchmodel"], "Could not find 'model/nosuchmodel'"),
        (["anneal=nosuchschedule"], "Could not find 'anneal/nosuchschedule'"),
        (["anneal=constant", "anneal.beta=-1"], "anneal.beta must be a finite number >= 0"),
        (["anneal=constant", "anneal.beta=inf"], "anneal.beta must be a finite number >= 0"),
        (["model.latent_dim=0"], "model.latent_dim must be >= 1"),
        (["data.image_size=60"], "not divisible by 2**depth"),
        (["anneal=cyclic", "anneal.n_cycles=0"], "anneal.n_cycles must be >= 1"),
        (["anneal=cyclic", "anneal.ratio=0"], "anneal.ratio"),
        (["data.batch_size=0"], "data.batch_size must be >= 1"),
        (["ckpt_path=/no/such/file.ckpt"], "ckpt_path=/no/such/file.ckpt does not exist"),
    ],
)
def test_bad_configs_fail_at_start_up_in_a_few_lines_without_traceback(tmp_path, args, message):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | {
        "PYTHONPATH": str(ROOT)
    }
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "data=synthetic",
            *args,
            f"hydra.run.dir={tmp_path}/run",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 20, proc.stderr
