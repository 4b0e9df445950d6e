"""Crashes: a SIGKILLed run resumes where it stopped; a save interrupted midway corrupts nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, TINY, compose_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from facemask_vae.lit.checkpoint_io import AtomicCheckpointIO
from facemask_vae.training import train

STEPS_PER_EPOCH = 192 // 32  # TINY: 192 training images, batch 32
EPOCHS = 4
#: the interrupted run redoes its partial epoch in a different shuffle order (the data loader's
#: RNG is not part of a checkpoint), so its final ELBO is close to, not equal to, the other's
ELBO_REL_TOL = 0.03


def _last(run_dir: Path) -> dict[str, tuple[int, float]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: (acc.Scalars(t)[-1].step, acc.Scalars(t)[-1].value) for t in acc.Tags()["scalars"]}


def _overrides() -> list[str]:
    return [
        *TINY,
        "model=vae",
        "anneal=cyclic",
        "anneal.n_cycles=1",
        "scheduler=cosine",
        "trainer.deterministic=true",
        f"trainer.max_epochs={EPOCHS}",
        "test=false",
    ]


def _train(args: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    """train.py in a subprocess: the run that gets SIGKILLed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *_overrides(),
            *args,
            f"hydra.run.dir={run_dir}",
        ],
        cwd=run_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _train_here(args: list[str], run_dir: Path) -> None:
    """The same run in this process (no interpreter start-up): the reference and the resume."""
    try:
        train(compose_config([*_overrides(), *args], run_dir))
    finally:
        torch.use_deterministic_algorithms(False)  # trainer.deterministic sets it process-wide


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_its_steps_schedules_and_optimiser(tmp_path):
    _train_here([], tmp_path / "straight")

    run = tmp_path / "killed"
    kill_step = STEPS_PER_EPOCH + STEPS_PER_EPOCH // 2  # the middle of the second epoch
    killed = _train(
        ["+callbacks.killer._target_=helpers.KillAtStep", f"+callbacks.killer.step={kill_step}"],
        run,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]  # really SIGKILLed
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == STEPS_PER_EPOCH  # the end of the first epoch: intact

    _train_here(["ckpt_path=last"], run)

    a, b = _last(tmp_path / "straight"), _last(run)
    total = EPOCHS * STEPS_PER_EPOCH
    # step count, annealing schedule and LR schedule all end where the uninterrupted run ends
    assert b["train/beta_step"][0] == a["train/beta_step"][0] == total - 1
    assert b["train/beta_step"][1] == pytest.approx(a["train/beta_step"][1], abs=1e-6)
    lr_tag = next(t for t in a if t.startswith("lr"))
    assert b[lr_tag] == pytest.approx(a[lr_tag], rel=1e-6)
    # optimiser state came back too: a fresh Adam would restart with full-size steps
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == total
    assert all(s["step"] == total for s in final["optimizer_states"][0]["state"].values())
    elbo_a, elbo_b = a["val/elbo"][1], b["val/elbo"][1]
    assert abs(elbo_b - elbo_a) <= ELBO_REL_TOL * abs(elbo_a), (elbo_a, elbo_b)


def test_an_interrupted_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1}, path)

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # stands in for a kill between the first and last byte

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"global_step": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    io.save_checkpoint({"global_step": 3}, path)
    assert torch.load(path, weights_only=True) == {"global_step": 3}
