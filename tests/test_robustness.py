"""What users break: non-finite losses, malicious checkpoints, bad configs at the command line."""

from __future__ import annotations

import functools
import os
import pickle
import re
import warnings

import pytest
import pytorch_lightning as pl
import torch
from helpers import TINY, compose_config, lit, run_script

from facemask_vae.callbacks import NonFiniteGuard, NonFiniteLossError
from facemask_vae.data.base import InMemoryDataModule
from facemask_vae.data.facemask import BadImageWarning
from facemask_vae.errors import friendly_errors
from facemask_vae.lit import TrainingModule
from facemask_vae.models import VAE
from facemask_vae.training import train


class RandomImages(InMemoryDataModule):
    """Noise images: enough to drive a Trainer in tests that are not about data."""

    def load_split(self, split):
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        n = 64
        return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(
            n
        ) % 2


class ExplodingVAE(TrainingModule):
    """A VAE's training whose loss turns NaN at the given training steps."""

    def __init__(self, bad_steps=(), **kw):
        super().__init__(VAE(**kw), functools.partial(torch.optim.AdamW, lr=1e-3))
        self.bad_steps = set(bad_steps)

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        if self.global_step in self.bad_steps:
            out["loss"] = out["loss"] * float("nan")
            self.last_terms["loss"] = out["loss"].detach()
        return out


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


def test_device_path_raises_at_its_next_check_with_the_first_bad_step():
    """The accelerator path (forced on the CPU with check_every): no read per step, the bad
    step's gradients zeroed on the device, the error at the next read, naming the bad step."""
    model = ExplodingVAE(bad_steps={3}, **SMALL)
    with pytest.raises(NonFiniteLossError, match=r"step 3: \{'n_bad_steps': 1\}.*'step': 2"):
        _trainer([NonFiniteGuard("raise", check_every=4)], steps=8).fit(
            model, datamodule=RandomImages(batch_size=16)
        )
    assert all(torch.isfinite(p).all() for p in model.parameters())  # masked before the step


def test_device_path_skips_bad_batches_without_reading_the_loss_every_step(monkeypatch):
    model = ExplodingVAE(bad_steps={1, 2}, **SMALL)
    guard = NonFiniteGuard("skip", check_every=5)
    flushes = []
    orig = NonFiniteGuard.flush
    monkeypatch.setattr(
        NonFiniteGuard, "flush", lambda self, step, m: flushes.append(step) or orig(self, step, m)
    )
    with pytest.warns(UserWarning, match=r"2 step\(s\) up to step 4, the first at step 1"):
        _trainer([guard], steps=6).fit(model, datamodule=RandomImages(batch_size=16))
    assert guard.skipped == 2
    assert flushes[0] == 4  # one host read per check_every steps, not per step
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert guard.last_finite is not None and guard.last_finite["step"] == 5


def test_device_path_catches_non_finite_gradients_behind_a_finite_loss():
    model = lit(VAE(**SMALL))
    steps = []

    class NaNGrads(pl.Callback):  # a finite loss whose backward pass yields NaN at step 2
        def on_after_backward(self, trainer, pl_module):
            steps.append(trainer.global_step)
            if trainer.global_step == 2:
                next(pl_module.parameters()).grad.fill_(float("nan"))

    guard = NonFiniteGuard("skip", check_every=5)
    with pytest.warns(UserWarning, match=r"1 step\(s\) up to step 4, the first at step 2"):
        _trainer([NaNGrads(), guard], steps=6).fit(model, datamodule=RandomImages(batch_size=16))
    assert guard.skipped == 1 and 2 in steps
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_same_seed_gives_identical_losses_on_cpu():
    def run():
        pl.seed_everything(7, workers=True)
        model = lit(VAE(**SMALL, skip="variational"))
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


def test_a_checkpoint_carrying_code_is_refused_and_never_run(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "evil.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": {}, "x": _Payload()}, f)
    monkeypatch.chdir(tmp_path)  # where the payload would touch its file
    cfg = compose_config([*TINY, "trainer=debug", f"ckpt_path={bad}"], tmp_path / "run")
    with pytest.raises(BaseException) as info, friendly_errors():
        train(cfg)
    assert not (tmp_path / "pwned-by-checkpoint").exists()
    said = capsys.readouterr().err + str(info.value)
    assert "weights_only" in said or "Unsupported global" in said, said


BAD_CONFIGS = [
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
]


@pytest.mark.parametrize(("args", "message"), BAD_CONFIGS)
def test_bad_configs_are_refused_before_training_with_a_message_that_names_the_key(
    tmp_path, capsys, args, message
):
    """In-process, every case: composing fails (a missing group) or train() exits 1 at start-up
    with the message and no traceback, before any data is read."""
    overrides = ["data=synthetic", *args]
    if message.startswith("Could not find"):
        with pytest.raises(Exception, match=re.escape(message)):
            compose_config(overrides, tmp_path / "run")
        return
    cfg = compose_config(overrides, tmp_path / "run")
    with pytest.raises(SystemExit) as exit_info, friendly_errors():
        train(cfg)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3, err


@pytest.mark.parametrize(("args", "message"), [BAD_CONFIGS[0], BAD_CONFIGS[-1]])
def test_bad_configs_fail_at_start_up_in_a_few_lines_without_traceback(tmp_path, args, message):
    """The same through train.py, for one case of each kind: Hydra's own error for a missing
    config group, and a refused value (a missing checkpoint) through train.py's friendly_errors."""
    proc = run_script(
        "train.py",
        ["data=synthetic", *args, f"hydra.run.dir={tmp_path}/run"],
        tmp_path,
        timeout=300,
    )
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 20, proc.stderr


def _messy_dataset(parent):
    """A Kaggle-layout folder of synthetic faces saved in many modes, plus broken files in Train."""
    from PIL import Image

    from facemask_vae.data.synthetic import generate_faces

    root = parent / "Face Mask Dataset"
    modes = ["RGB", "L", "P", "RGBA", "CMYK", "I;16", "LA"]
    for s, split in enumerate(("Train", "Validation", "Test")):
        images, labels = generate_faces(16, 48, seed=s)
        for i, (img, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / split / ("WithMask" if label else "WithoutMask")
            folder.mkdir(parents=True, exist_ok=True)
            pil = Image.fromarray(img.permute(1, 2, 0).numpy())
            mode = modes[i % len(modes)]
            if mode == "I;16":
                import numpy as np

                pil = Image.fromarray(np.asarray(pil.convert("L"), dtype=np.uint16) * 257)
            elif mode != "RGB":
                pil = pil.convert(mode)
            suffix = ".jpg" if mode in ("CMYK", "L") else ".png"
            pil.save(folder / f"{i}{suffix}")
    bad = root / "Train" / "WithMask"
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = next(bad.glob("*.png")).read_bytes()
    (bad / "truncated.png").write_bytes(good[: len(good) // 3])
    (bad / "readme.txt").write_text("not an image")
    Image.new("L", (9000, 9000)).save(bad / "huge.png")  # 81 Mpx: refused as a bomb
    return root


TINY_REAL = [
    "data.image_size=32",
    "data.batch_size=8",
    "model=vae",
    "model.widths=[8,16]",
    "model.latent_dim=4",
    "trainer=debug",
]


def test_messy_real_layout_trains_with_one_warning_per_split(tmp_path):
    root = _messy_dataset(tmp_path / "my data")
    overrides = [f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}", *TINY_REAL]
    cfg = compose_config(overrides, tmp_path / "run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg)
    said = [str(w.message) for w in caught if issubclass(w.category, BadImageWarning)]
    assert len(said) == 1, said  # only Train has broken files, and it is read once
    assert "skipped 4 unreadable image file(s) in Train" in said[0]


def test_a_missing_class_folder_fails_before_training(tmp_path, capsys):
    import shutil

    root = _messy_dataset(tmp_path / "data")
    shutil.rmtree(root / "Test" / "WithoutMask")
    overrides = [f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}", *TINY_REAL]
    cfg = compose_config(overrides, tmp_path / "run")
    with pytest.raises(SystemExit) as exit_info, friendly_errors():
        train(cfg)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "class folder missing" in err and "WithoutMask" in err
    assert "Traceback" not in err
    assert not list((tmp_path / "run").rglob("*.ckpt"))
