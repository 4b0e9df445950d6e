"""Hydra/OmegaConf glue: the project's resolvers and start-up validation of a composed config.

Importing this module registers the resolvers the YAML files use (``run_name``,
``auto_precision``), so it is imported by ``train.py``, ``eval.py`` and the tests before composing.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class ConfigError(ValueError):
    """A config value that cannot work; the message says which key and how to fix it."""


def run_name(model_target: str, model_name: str, anneal_name: str) -> str:
    """``<model>-<anneal>``, or just ``<model>`` for models without a KL (the anneal is unused)."""
    try:
        has_kl = getattr(get_class(model_target), "has_kl", True)
    except Exception:  # an unknown target fails later, with a better message
        has_kl = True
    return f"{model_name}-{anneal_name}" if has_kl else model_name


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX or AVX512-BF16 (where bf16 matmuls beat float32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def auto_precision() -> str:
    """bf16 mixed precision where the hardware runs it fast (Ampere+ GPUs, AMX CPUs), else fp32."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"


def register_resolvers() -> None:
    for name, fn in (("run_name", run_name), ("auto_precision", auto_precision)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate_train_config(cfg: DictConfig) -> None:
    """Check the values that would otherwise fail minutes into training, or silently misbehave."""
    for group in ("data", "model", "trainer"):
        _require(group in cfg and cfg[group] is not None, f"the config has no `{group}` group")
    data, model = cfg.data, cfg.model
    _require(
        int(data.batch_size) >= 1,
        f"data.batch_size must be >= 1, got {data.batch_size}",
    )
    _require(
        int(model.latent_dim) >= 1,
        f"model.latent_dim must be >= 1, got {model.latent_dim}: try model.latent_dim=128",
    )
    depth = len(model.widths)
    size = int(data.image_size)
    _require(
        size >= 2**depth and size % (2**depth) == 0,
        f"data.image_size={size} is not divisible by 2**depth = {2**depth} "
        f"(depth = len(model.widths) = {depth}): use e.g. data.image_size=64, or fewer widths",
    )
    _validate_compile(model)
    anneal = cfg.get("anneal")
    if anneal is not None:
        for key in ("beta", "beta_max", "beta_min"):
            if key in anneal:
                v = float(anneal[key])
                _require(
                    math.isfinite(v) and v >= 0,
                    f"anneal.{key} must be a finite number >= 0, got {anneal[key]}",
                )
        if "n_cycles" in anneal:
            _require(
                int(anneal.n_cycles) >= 1, f"anneal.n_cycles must be >= 1, got {anneal.n_cycles}"
            )
        if "ratio" in anneal:
            _require(
                0 < float(anneal.ratio) <= 1,
                f"anneal.ratio is the ramp's share of a cycle, in (0, 1]; got {anneal.ratio}",
            )
    ckpt = cfg.get("ckpt_path")
    if ckpt not in (None, "last", "best", "hpc"):
        _require(
            Path(ckpt).is_file(),
            f"ckpt_path={ckpt} does not exist: give a .ckpt file, e.g. "
            "<run dir>/checkpoints/last.ckpt, or ckpt_path=last with hydra.run.dir=<run dir>",
        )


def _validate_compile(model: DictConfig) -> None:
    """model.compile_mode: a torch.compile mode, and only with model.compile=true."""
    from facemask_vae.models.base import check_compile_mode

    try:
        check_compile_mode(bool(model.get("compile", False)), model.get("compile_mode"))
    except ValueError as err:
        raise ConfigError(
            f"{err}; e.g. model.compile=true model.compile_mode=reduce-overhead (on a GPU)"
        ) from None
