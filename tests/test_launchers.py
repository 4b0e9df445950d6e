"""Sweeps beyond one process: the SLURM launcher config composes; the parallel one runs a sweep."""

from __future__ import annotations

import pytest
from helpers import TINY, run_script
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from facemask_vae.config import CONF_DIR


def _launcher(name: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"hydra/launcher={name}", "data=synthetic"],
            return_hydra_config=True,
        )
    return cfg.hydra.launcher


def test_slurm_launcher_composes_onto_submitit():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = _launcher("slurm")
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.timeout_min == 240 and launcher.tasks_per_node == 1
    assert "partition" in launcher and "account" in launcher  # the plugin's fields stay reachable


def test_parallel_launcher_composes_onto_joblib():
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    launcher = _launcher("parallel")
    assert launcher._target_.endswith("joblib_launcher.JoblibLauncher") and launcher.n_jobs == 2


def test_parallel_launcher_runs_a_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    proc = run_script(
        "train.py",
        [
            "-m",
            *TINY,
            "model=vae",
            "anneal=linear,cyclic",
            "trainer=debug",
            "hydra/launcher=parallel",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == [
        "0_vae-linear",
        "1_vae-cyclic",
    ]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout  # the jobs ran in the joblib pool
