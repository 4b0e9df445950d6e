"""Hydra/OmegaConf glue: the project's resolvers and config schemas, and start-up validation.

Importing this module registers what the YAML files use, so ``train.py``, ``eval.py`` and the
tests import it before composing:

* resolvers: ``run_name``, ``auto_precision``, ``metric`` (``${metric:val,elbo}`` is
  ``val/elbo``, from :mod:`facemask_vae.metric_keys`), ``monitor`` / ``monitor_mode`` (the
  metric and mode that pick a model's best checkpoint);
* schemas: ``model/schema`` (:class:`~facemask_vae.models.config.ModelNode`) and
  ``module/schema_plain`` / ``module/schema_adversarial``, made from the training modules'
  signatures, so every default lives in Python once and YAML files only override.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from pathlib import Path
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from facemask_vae import metric_keys as K
from facemask_vae.models.config import ModelConfig, ModelNode

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class ConfigError(ValueError):
    """A config value that cannot work; the message says which key and how to fix it."""


def _has_kl(model_target: str) -> bool:
    try:
        return bool(getattr(get_class(model_target), "has_kl", True))
    except Exception:  # an unknown target fails later, with a better message
        return True


def run_name(model_target: str, model_name: str, anneal_name: str) -> str:
    """``<model>-<anneal>``, or just ``<model>`` for models without a KL (the anneal is unused)."""
    return f"{model_name}-{anneal_name}" if _has_kl(model_target) else model_name


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


RESOLVERS = {
    "run_name": run_name,
    "auto_precision": auto_precision,
    "metric": K.key,
    "monitor": lambda target: K.monitor(_has_kl(target))[0],
    "monitor_mode": lambda target: K.monitor(_has_kl(target))[1],
}


def register_resolvers() -> None:
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def signature_schema(cls: type, skip: tuple[str, ...]) -> type:
    """A dataclass of ``cls.__init__``'s parameters with their defaults and ``_target_``: the
    structured config whose defaults are the signature's (``skip``: parameters given in code)."""
    hints = typing.get_type_hints(cls.__init__)
    fields: list[Any] = [("_target_", str, f"{cls.__module__}.{cls.__qualname__}")]
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name in skip:
            continue
        fields.append((name, hints.get(name, Any), dataclasses.field(default=p.default)))
    return dataclasses.make_dataclass(f"{cls.__name__}Node", fields)


def register_schemas() -> None:
    from facemask_vae.lit import AdversarialModule, TrainingModule

    cs = ConfigStore.instance()
    cs.store(group="model", name="schema", node=ModelNode)
    given = ("model", "optimizer", "scheduler")
    cs.store(group="module", name="schema_plain", node=signature_schema(TrainingModule, given))
    cs.store(
        group="module", name="schema_adversarial", node=signature_schema(AdversarialModule, given)
    )


register_resolvers()
register_schemas()


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate_train_config(cfg: DictConfig) -> None:
    """Check, before anything is built, the values that would otherwise fail minutes into
    training or silently misbehave. Each part is checked by the code that defines it: the model
    options by :class:`ModelConfig`, the schedules by the annealing callbacks, the training
    module by its constructor's checks."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from facemask_vae.lit.module import check_compile_mode

    for group in ("data", "model", "module", "optimizer", "trainer"):
        _require(group in cfg and cfg[group] is not None, f"the config has no `{group}` group")
    _require(
        int(cfg.data.batch_size) >= 1,
        f"data.batch_size must be >= 1, got {cfg.data.batch_size}",
    )
    try:
        ModelConfig.from_options(OmegaConf.to_container(cfg.model, resolve=True))
        check_compile_mode(bool(cfg.module.compile), cfg.module.compile_mode)
        if cfg.get("anneal") is not None:
            instantiate(cfg.anneal)
    except InstantiationException as err:  # hydra wraps what the callback's checks raised
        raise ConfigError(str(err.__cause__ or err)) from None
    except ValueError as err:
        raise ConfigError(str(err)) from None
    lr = cfg.optimizer.get("lr")
    _require(
        lr is None or (math.isfinite(float(lr)) and float(lr) > 0),
        f"optimizer.lr must be a positive number, got {lr}",
    )
    ckpt = cfg.get("ckpt_path")
    if ckpt not in (None, "last", "best", "hpc"):
        _require(
            Path(ckpt).is_file(),
            f"ckpt_path={ckpt} does not exist: give a .ckpt file, e.g. "
            "<run dir>/checkpoints/last.ckpt, or ckpt_path=last with hydra.run.dir=<run dir>",
        )
