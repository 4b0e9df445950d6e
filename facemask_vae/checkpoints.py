"""Finding and safely loading trained runs: the model and its config, as a
:class:`~facemask_vae.run.loaded.LoadedRun`.

A run directory (from ``train.py``) holds ``config.yaml`` (the resolved config), ``checkpoints/``
(the best ``epochNNN.ckpt`` and ``last.ckpt``), and ``sampler.pt`` and ``attribute.pt`` (what the
run fitted after training, :mod:`facemask_vae.run`). Checkpoints are read with ``torch.load(weights_only=True)``: no code in a
checkpoint runs, and anything that is not what we expect raises :class:`CheckpointError`.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from facemask_vae.lit.module import model_state
from facemask_vae.models import Autoencoder, ModelConfig
from facemask_vae.run.files import CheckpointError
from facemask_vae.run.loaded import LoadedRun

__all__ = ["CheckpointError", "LoadedRun", "find_checkpoint", "load_model", "load_run"]


_EPOCH = re.compile(r"epoch(\d+)")


def _epoch_of(path: Path) -> int:
    m = _EPOCH.search(path.stem)
    return int(m.group(1)) if m else -1


def _safe_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: no such file") from e
    except Exception as e:  # the unpickler of a damaged file can raise almost anything
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        first = f"{type(e).__name__}: {first}" if first else type(e).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (damaged, truncated, or it needs "
            f"unsafe unpickling, which is refused): {first}"
        ) from e


def find_checkpoint(path: str | Path) -> tuple[Path | None, Path]:
    """(run dir or None, checkpoint file) for a run directory or a .ckpt file.

    In a run directory the best checkpoint is the one ``last.ckpt`` records as best (or the only
    ``epoch*.ckpt``, or the latest epoch); ``last.ckpt`` only when nothing else was saved.
    """
    p = Path(path).expanduser()
    if p.is_file():
        run_dir = p.parent.parent if p.parent.name == "checkpoints" else p.parent
        return (run_dir if (run_dir / "config.yaml").is_file() else None), p
    if not p.is_dir():
        raise CheckpointError(f"{p}: no such run directory or checkpoint file")
    ckpt_dir = p / "checkpoints"
    if not ckpt_dir.is_dir():
        raise CheckpointError(
            f"{p}: not a run directory (no checkpoints/ inside); give a directory made by "
            "train.py or a .ckpt file"
        )
    last = ckpt_dir / "last.ckpt"
    candidates = sorted(c for c in ckpt_dir.glob("*.ckpt") if c.name != "last.ckpt")
    if len(candidates) == 1:
        return p, candidates[0]
    if len(candidates) > 1:
        if last.is_file():
            best = _best_recorded_in(last)
            if best is not None and (ckpt_dir / best.name).is_file():
                return p, ckpt_dir / best.name
        return p, max(candidates, key=_epoch_of)
    if last.is_file():
        return p, last
    raise CheckpointError(f"{ckpt_dir}: no .ckpt files")


def _best_recorded_in(last: Path) -> Path | None:
    """The best_model_path the ModelCheckpoint callback stored in ``last.ckpt``, if any."""
    try:
        ckpt = _safe_load(last)
    except CheckpointError:
        return None
    for key, state in (ckpt.get("callbacks") or {}).items():
        if "ModelCheckpoint" in str(key) and isinstance(state, dict):
            best = state.get("best_model_path")
            if best and Path(best).name != "last.ckpt":  # the unmonitored last-state callback
                return Path(best)
    return None


def model_spec(hparams: dict, config: DictConfig | None, ckpt_path: Path) -> dict[str, Any]:
    """``{"_target_": ..., **model options}`` from a checkpoint's hyper-parameters.

    Checkpoints of the training modules store the model's spec under ``model``. Older ones (one
    LightningModule that was the model) kept its options flat beside the training options, its
    class in the run's config.yaml, and ``skip_posterior`` defaulted to ``block`` then.
    """
    target = OmegaConf.select(config, "model._target_") if config is not None else None
    if isinstance(hparams.get("model"), dict) and "_target_" in hparams["model"]:
        spec = dict(hparams["model"])
        if target and _model_class(str(target), ckpt_path) is not _model_class(
            spec["_target_"], ckpt_path
        ):
            raise CheckpointError(
                f"{ckpt_path}: it holds a {spec['_target_']} but its run's config.yaml names "
                f"{target}: its weights do not fit the model the config describes"
            )
        return spec
    if not target:
        raise CheckpointError(
            f"{ckpt_path}: no config.yaml with model._target_ next to it (expected in the run "
            "directory above checkpoints/): pass the run directory made by train.py"
        )
    fields = {f.name for f in dataclasses.fields(ModelConfig)}  # the rest were training options
    options = {k: v for k, v in hparams.items() if k in fields}
    options.setdefault("skip_posterior", "block")
    return {"_target_": str(target), **options}


def _model_class(target: str, ckpt_path: Path) -> type:
    try:
        cls = get_class(target)
    except Exception as e:
        raise CheckpointError(f"{ckpt_path}: model._target_={target!r} cannot be imported") from e
    if not (isinstance(cls, type) and issubclass(cls, Autoencoder)):
        raise CheckpointError(
            f"{ckpt_path}: model._target_={target!r} is not one of this project's models"
        )
    return cls


def load_model(ckpt_path: str | Path, config: DictConfig | None = None) -> tuple[Autoencoder, dict]:
    """Build the model a checkpoint describes, with its weights, in eval mode on the CPU."""
    ckpt_path = Path(ckpt_path)
    ckpt = _safe_load(ckpt_path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        kind = type(ckpt).__name__
        keys = sorted(ckpt)[:6] if isinstance(ckpt, dict) else []
        raise CheckpointError(
            f"{ckpt_path}: not a Lightning checkpoint: no 'state_dict' "
            f"(found a {kind}{' with keys ' + str(keys) if keys else ''})"
        )
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict):
        raise CheckpointError(f"{ckpt_path}: no 'hyper_parameters' to rebuild the model from")
    options = model_spec(hparams, config, ckpt_path)
    cls = _model_class(str(options.pop("_target_")), ckpt_path)
    try:
        model = cls(**options)
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"{ckpt_path}: its hyper_parameters do not build a {cls.__name__}: {e}"
        ) from e
    result = model.load_state_dict(model_state(ckpt["state_dict"]), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{ckpt_path}: its weights are not those of a {cls.__name__} "
            f"({len(result.missing_keys)} missing, e.g. {result.missing_keys[:3]}; "
            f"{len(result.unexpected_keys)} unexpected, e.g. {result.unexpected_keys[:3]})"
        )
    if hparams.get("channels_last"):  # the memory layout it was trained and tested in
        model.to(memory_format=torch.channels_last)
    model.eval()
    return model, ckpt


def load_run(path: str | Path) -> LoadedRun:
    """A run directory or checkpoint -> the model (eval mode, CPU), its config and its name."""
    run_dir, ckpt_path = find_checkpoint(path)
    config = None
    if run_dir is not None:
        try:
            config = OmegaConf.load(run_dir / "config.yaml")
        except Exception as e:
            raise CheckpointError(f"{run_dir / 'config.yaml'}: unreadable config: {e}") from e
        if not isinstance(config, DictConfig):
            raise CheckpointError(f"{run_dir / 'config.yaml'}: not a mapping")
    try:
        model, ckpt = load_model(ckpt_path, config)
    except RuntimeError as e:  # size mismatches in load_state_dict
        first = str(e).strip().splitlines()
        raise CheckpointError(
            f"{ckpt_path}: its weights do not fit the model the config describes: "
            f"{' '.join(first[:3])}"
        ) from e
    name = None
    if config is not None:
        name = OmegaConf.select(config, "run_name", default=None)
        if name is None:
            name = OmegaConf.select(config, "model.name", default=None)
    if name is None:  # a bare checkpoint: the name its run had
        hparams = ckpt.get("hyper_parameters") or {}
        name = hparams.get("run_name") or hparams.get("name") or ckpt_path.stem
    epoch = ckpt.get("epoch")
    return LoadedRun(
        name=str(name),
        run_dir=run_dir,
        checkpoint=ckpt_path,
        config=config,
        model=model,
        epoch=int(epoch) if isinstance(epoch, int) else None,
    )
