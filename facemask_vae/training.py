"""What ``train.py`` runs: build everything from a composed config, fit, test, report paths."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from facemask_vae import metric_keys as K
from facemask_vae.checkpoints import CheckpointError, load_run
from facemask_vae.config import validate_train_config
from facemask_vae.lit import TrainingModule
from facemask_vae.lit.checkpoint_io import AtomicCheckpointIO

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig) -> TrainingModule:
    """``module(model=model, optimizer=optimizer, scheduler=scheduler)`` from the config groups."""
    # plain containers in hparams keep checkpoints loadable with torch.load(weights_only=True)
    model = instantiate(cfg.model, _convert_="all")
    scheduler = cfg.get("scheduler")
    return instantiate(
        cfg.module,
        model=model,
        optimizer=instantiate(cfg.optimizer),
        scheduler=None if scheduler is None else instantiate(scheduler, _convert_="all"),
    )


def build_callbacks(cfg: DictConfig, module: TrainingModule) -> list[pl.Callback]:
    """The callbacks of ``cfg.callbacks`` plus the KL annealing for models that have a KL."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if cfg.get("anneal") is not None:
        if module.model.has_kl:
            callbacks.append(instantiate(cfg.anneal))
        else:
            log.info(
                "model=%s has no KL term: the anneal group (%s) is ignored",
                cfg.model.get("name"),
                cfg.anneal.get("name"),
            )
    return callbacks


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit (and test) the configured model; returns the final metrics and where things are."""
    validate_train_config(cfg)
    pl.seed_everything(int(cfg.seed), workers=True)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    datamodule = instantiate(cfg.data)
    module = build_module(cfg)
    module.hparams["run_name"] = str(cfg.get("run_name") or cfg.model.name)  # for load_run
    callbacks = build_callbacks(cfg, module)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    extra: dict[str, Any] = {}
    if not module.automatic_optimization:  # Lightning cannot clip manual updates; the module does
        extra["gradient_clip_val"] = None
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        **extra,
    )

    resolved = OmegaConf.to_container(cfg, resolve=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    for lg in loggers:
        lg.log_hyperparams(resolved)

    # weights_only: a checkpoint that carries pickled code is refused, never run
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    ckpt_cb = next(
        (c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None
    )
    best = ckpt_cb.best_model_path if ckpt_cb is not None else ""
    if cfg.get("test"):
        ckpt = best if best else None
        results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
        metrics |= {k: float(v) for k, v in (results[0] if results else {}).items()}

    if trainer.is_global_zero:
        tb = next((lg for lg in loggers if isinstance(lg, TensorBoardLogger)), None)
        log.info("run directory:   %s", out_dir)
        if tb is not None:
            log.info("tensorboard:     tensorboard --logdir %s", tb.log_dir)
        log.info("best checkpoint: %s", best or "(none saved)")
    monitor = K.monitor(module.model.has_kl)[0]
    return {
        "metrics": metrics,
        "monitor": monitor,  # what picks the best checkpoint (and what a sweeper optimises)
        "output_dir": str(out_dir),
        "best_checkpoint": best,
    }


def retest_checkpoint(path: str | Path) -> dict[str, float]:
    """The test pass of a trained run's best checkpoint, run again with the current code.

    For a run trained before a test metric was fixed: the run's data and trainer settings on one
    device, seeded with its seed, no retraining. The posterior samples differ from the original
    test pass, which ran after training with another random state, and ``test/loss`` weights
    the KL with beta = 1 (no annealing callback runs); ``test/elbo`` never depends on beta.
    """
    run = load_run(path)
    if run.config is None:
        raise CheckpointError(f"{path}: needs the run directory (its config.yaml names the data)")
    cfg = run.config
    pl.seed_everything(int(cfg.seed), workers=True)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        devices=1,
        num_nodes=1,
        strategy="auto",
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    module = TrainingModule(run.model, channels_last=False)
    results = trainer.test(module, datamodule=instantiate(cfg.data), verbose=False)
    if not results:
        raise CheckpointError(f"{path}: the test pass returned no metrics")
    return {k: float(v) for k, v in results[0].items()}
