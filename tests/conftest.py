"""Session fixtures shared by the evaluation and checkpoint tests: two tiny trained runs and one
eval.py report on them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import TINY, compose_config, run_script

from facemask_vae.training import train

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # pytest-xdist runs a worker per core: one torch thread each (and in the scripts they start),
    # since workers whose OpenMP pools share the cores run several times slower than one alone
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

#: a few hundred 32 px synthetic faces and a small network (the helpers' TINY without its
#: trainer switches, which the trainer config group may or may not have)
TINY_RUN = [o for o in TINY if not o.startswith(("trainer.enable", "callbacks."))]
#: small but complete: every section runs, in a few seconds
EVAL_ARGS = [
    "fid=false",
    "n_samples=96",
    "samplers=[prior,gmm,gaussian_all]",
    "temperatures=[1.0,0.7]",
    "skip_temperatures=[null,0.5]",
    "sampling_bn=[false,true]",
    "sampling_bn_batches=2",
    "gmm_components=2",
    "iwae_k=4",
    "iwae_images=16",
    "n_pairs=8",
    "n_show_pairs=2",
    "interp_steps=5",
    "probe_train_max=128",
    "shifts=[zoom_out,grayscale]",
    "cnn_epochs=1",
    "batch_size=64",
    "edit_images=8",
    "edit_strengths=[1.0,2.0]",
    "edit_samples=16",
    "edit_confidence=0.5",  # a 2-step model's probe is rarely 99% sure
    "sections=all",
]


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A U-Net VAE (linear annealing) and an AE, one epoch each on 32 px synthetic faces."""
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for model in ("vae_unet", "ae"):
        cfg = compose_config(
            [
                *TINY_RUN,
                f"model={model}",
                "anneal=linear",
                "trainer.max_epochs=2",
                "test=false",
                "callbacks.run_sampler.two_stage={latent_dim: 8, hidden: 32, epochs: 5}",
            ],
            base / model,
        )
        train(cfg)
        out[model] = base / model
    return out


@pytest.fixture(scope="session")
def evaluated(runs, tmp_path_factory) -> tuple[Path, list[str]]:
    """eval.py on both runs, as a user would call it; returns the output dir and the args."""
    out = tmp_path_factory.mktemp("eval")
    cache = tmp_path_factory.mktemp("cache")
    args = [
        f"runs=[{runs['vae_unet']},{runs['ae']}]",
        *EVAL_ARGS,
        f"cache_dir={cache}",
        f"hydra.run.dir={out}",
    ]
    proc = run_script("eval.py", args, cwd=tmp_path_factory.mktemp("cwd"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, args
