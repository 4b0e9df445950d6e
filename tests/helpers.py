"""Shared test helpers: composing the project's config for tiny, fast runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

import facemask_vae.config  # noqa: F401  (registers resolvers)
from facemask_vae.config import CONF_DIR

ROOT = Path(__file__).resolve().parent.parent

#: A few hundred 32 px synthetic images and a small network: a run takes seconds.
TINY = [
    "data=synthetic",
    "data.n_train=192",
    "data.n_val=64",
    "data.n_test=64",
    "data.image_size=32",
    "data.batch_size=32",
    "model.widths=[16,32,32]",
    "model.latent_dim=16",
    "trainer.precision=32-true",
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
    "callbacks.image_logger.n_samples=4",
    "callbacks.image_logger.n_images=4",
    "callbacks.run_sampler.two_stage={latent_dim: 8, hidden: 32, epochs: 5}",
]


def compose_config(overrides: list[str], output_dir: Path, name: str = "config") -> DictConfig:
    """Compose like train.py would, with the run directory set to ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    # drop the hydra node: outside @hydra.main nothing reads it, and its resolvers need a run
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


class KillAtStep(pl.Callback):
    """SIGKILLs its own process before the given global step: a crash mid-epoch, no clean-up."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def run_script(
    script: str, args: list[str], cwd: Path, full_errors: bool = False, timeout: int = 600
) -> subprocess.CompletedProcess:
    """``python <script> *args`` (train.py, eval.py) in a subprocess from ``cwd``; output captured."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env |= {"PYTHONPATH": str(ROOT)} | ({"HYDRA_FULL_ERROR": "1"} if full_errors else {})
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def lit(model, lr: float = 1e-3, **options):
    """A training module around ``model`` with AdamW at ``lr``: the adversarial one when
    ``options`` name a critic weight, the plain one otherwise."""
    import functools

    import torch

    from facemask_vae.lit import AdversarialModule, TrainingModule

    adversarial = any(k in options for k in ("latent_weight", "image_weight"))
    cls = AdversarialModule if adversarial else TrainingModule
    optimizer = functools.partial(torch.optim.AdamW, lr=lr, weight_decay=0.0)
    return cls(model, optimizer, **options)
