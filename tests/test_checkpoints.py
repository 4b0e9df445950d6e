"""Loading runs for eval.py: run directories, bad checkpoints, missing paths, column names."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import run_script

from facemask_vae.checkpoints import CheckpointError, find_checkpoint, load_run
from facemask_vae.evaluation.context import unique_names


def test_a_run_directory_resolves_to_its_best_checkpoint(runs):
    run_dir, ckpt = find_checkpoint(runs["vae_unet"])
    assert run_dir == runs["vae_unet"] and ckpt.name.startswith("epoch")
    loaded = load_run(runs["vae_unet"])
    assert loaded.name == "vae_unet-linear" and not loaded.model.training
    assert load_run(ckpt).name == "vae_unet-linear"  # a checkpoint inside a run dir works too


def _fake_run(src: Path, dst: Path, payload: bytes | None = None, obj=None) -> Path:
    """A copy of a run dir's config with a replaced best checkpoint."""
    (dst / "checkpoints").mkdir(parents=True)
    shutil.copy(src / "config.yaml", dst / "config.yaml")
    ckpt = dst / "checkpoints" / "epoch000.ckpt"
    if payload is not None:
        ckpt.write_bytes(payload)
    else:
        torch.save(obj, ckpt)
    return ckpt


class _NotAllowed:
    pass


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("random_bytes", "not a readable PyTorch checkpoint"),
        ("no_state_dict", "no 'state_dict'"),
        ("unsafe_pickle", "not a readable PyTorch checkpoint"),
        ("unrelated_model", "is not one of this project's models"),
        ("bad_model_options", "do not build a VAE"),
        ("other_weights", "weights are not those of a VAE"),
        ("ae_weights_vae_config", "weights do not fit"),
    ],
)
def test_a_wrong_checkpoint_fails_clearly(runs, tmp_path, kind, message):
    src = runs["vae_unet"]
    dst = tmp_path / kind
    if kind == "random_bytes":
        ckpt = _fake_run(src, dst, payload=os.urandom(4096))
    elif kind == "no_state_dict":
        ckpt = _fake_run(src, dst, obj={"weights": torch.zeros(3)})
    elif kind == "unsafe_pickle":
        ckpt = _fake_run(src, dst, obj={"state_dict": {}, "extra": _NotAllowed()})
    elif kind == "unrelated_model":  # a module of another project, with its own spec
        lin = torch.nn.Linear(3, 2)
        hp = {"model": {"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2}}
        ckpt = _fake_run(src, dst, obj={"state_dict": lin.state_dict(), "hyper_parameters": hp})
    elif kind == "bad_model_options":  # this project's model with options it cannot take
        real = torch.load(find_checkpoint(src)[1], map_location="cpu", weights_only=True)
        real["hyper_parameters"]["model"]["latent_dim"] = 0
        ckpt = _fake_run(src, dst, obj=real)
    elif kind == "other_weights":
        real = torch.load(find_checkpoint(src)[1], map_location="cpu", weights_only=True)
        real["state_dict"] = torch.nn.Linear(3, 2).state_dict()
        ckpt = _fake_run(src, dst, obj=real)
    else:  # the AE's checkpoint inside a run dir whose config says VAE
        ae_ckpt = torch.load(find_checkpoint(runs["ae"])[1], map_location="cpu", weights_only=True)
        ckpt = _fake_run(src, dst, obj=ae_ckpt)
    with pytest.raises(CheckpointError, match=message) as err:
        load_run(dst)
    assert str(ckpt) in str(err.value)  # the message names the file


def test_missing_paths_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="no such run directory"):
        load_run(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no checkpoints/"):
        load_run(tmp_path)


def test_eval_py_prints_a_bad_checkpoint_without_a_traceback(runs, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"this is not a checkpoint")
    proc = run_script(
        "eval.py", [f"runs=[{bad}]", f"hydra.run.dir={tmp_path / 'out'}"], tmp_path, timeout=300
    )
    assert proc.returncode == 1
    assert "Error:" in proc.stderr and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr


# ---- the pieces ---------------------------------------------------------------------------------


def test_runs_sharing_a_name_are_told_apart_by_their_directories():
    # experiment=resnet_blocks and no_augment both train "vae_unet-linear": the report's columns
    # must say which is which, not "vae_unet-linear#2"
    names = ["ae", "vae_unet-linear", "vae_unet-linear", "vae_unet-linear"]
    dirs = [Path("s/0_ae"), Path("s/2_vae_unet-linear"), Path("arch/resnet_blocks"), None]
    assert unique_names(names[:3], dirs[:3]) == ["ae", "2_vae_unet-linear", "resnet_blocks"]
    # a run given as a bare checkpoint has no directory to go by: numbered instead
    assert unique_names(names, dirs) == [
        "ae",
        *["vae_unet-linear", "vae_unet-linear#2"],
        "vae_unet-linear#3",
    ]
    # the same directory name twice (seed42/0_ae, seed1/0_ae): numbered
    assert unique_names(["ae", "ae"], [Path("seed42/0_ae"), Path("seed1/0_ae")]) == ["ae", "ae#2"]


def _pre_redesign(ckpt: dict) -> dict:
    """A checkpoint as train.py wrote it before the model and its training were split: one
    LightningModule's flat hyper-parameters (model and training options) and unprefixed keys."""
    old = dict(ckpt)
    spec = dict(old["hyper_parameters"]["model"])
    spec.pop("_target_")
    train_options = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0, "scheduler": None}
    train_options |= {"channels_last": False, "compile": False, "adv_latent_weight": 0.0}
    old["hyper_parameters"] = {**spec, **train_options, "name": "vae_unet"}
    old["state_dict"] = {k.removeprefix("model."): v for k, v in old["state_dict"].items()}
    return old


def test_a_checkpoint_from_before_the_redesign_loads_and_samples_the_same(runs, tmp_path):
    src = runs["vae_unet"]
    new = load_run(src)
    ckpt = torch.load(find_checkpoint(src)[1], map_location="cpu", weights_only=True)
    _fake_run(src, tmp_path / "old", obj=_pre_redesign(ckpt))
    old = load_run(tmp_path / "old")
    assert type(old.model) is type(new.model) and old.model.config == new.model.config
    gen = [torch.Generator().manual_seed(3) for _ in range(2)]
    a = new.model.sample(4, generator=gen[0], sampling_bn=False)
    b = old.model.sample(4, generator=gen[1], sampling_bn=False)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_a_run_from_before_the_redesign_resumes_into_the_training_module(runs):
    from facemask_vae.lit.module import prefixed_state_dict

    ckpt = torch.load(find_checkpoint(runs["vae_unet"])[1], map_location="cpu", weights_only=True)
    old = _pre_redesign(ckpt)["state_dict"]
    assert prefixed_state_dict(old).keys() == ckpt["state_dict"].keys()
    assert prefixed_state_dict({"critics.latent.w": 1}) == {"critics.latent.w": 1}
