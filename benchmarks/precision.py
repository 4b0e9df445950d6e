"""Does bf16 mixed precision cost quality? The validation ELBO after the same short run, per precision.

    python -m benchmarks.precision --out benchmarks/results/precision.json
    python -m benchmarks.precision --epochs 1 --limit 512 --seeds 42   # a quick look
    python -m benchmarks.precision model.skip_posterior=block         # any Hydra override

Trains the default U-Net VAE (64 px, batch 128) in float32 and in bf16-mixed from each of the
seeds and compares the final validation ELBOs: per seed (the same initialisation and data order
in both precisions) and as means, next to the spread the seeds alone cause. The KL weight is
constant by default: during a warm-up the ELBO still swings by several percent per epoch, which
would hide a 1% effect. Data: FACEMASK_ROOT when set, else synthetic faces.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import command_line
from facemask_vae import metric_keys as K


def val_elbo_history(run_dir: Path) -> list[float]:
    """The run's validation ELBO after each epoch, from its TensorBoard events."""
    from facemask_vae.curves import read_curves

    _, values = read_curves(run_dir, {K.ELBO: {K.VAL: K.VAL_ELBO}})[K.ELBO][K.VAL]
    return values.tolist()


def run(precision: str, seed: int, args: argparse.Namespace, work: Path) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf, open_dict

    from facemask_vae.config import CONF_DIR
    from facemask_vae.training import train

    data = ["data=facemask"] if os.environ.get("FACEMASK_ROOT") else ["data=synthetic"]
    overrides = [
        *data,
        f"model={args.model}",
        f"anneal={args.anneal}",
        # the scheduler group defaults to none; `scheduler=null` is no group override in Hydra
        "~scheduler" if args.scheduler in ("null", "none") else f"scheduler={args.scheduler}",
        *([f"data.limit_per_split={args.limit}"] if args.limit else []),
        f"trainer.max_epochs={args.epochs}",
        f"trainer.precision={precision}",
        "callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false",
        f"seed={seed}",
        "test=false",
        *args.overrides,
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    out = work / f"{precision}-seed{seed}"
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    start = time.perf_counter()
    result = train(cfg)
    seconds = time.perf_counter() - start
    m = result["metrics"]
    return {
        "precision": precision,
        "seed": seed,
        "val_elbo": m[K.VAL_ELBO],
        "val_elbo_per_epoch": val_elbo_history(out),
        "model_config": OmegaConf.to_container(cfg.model, resolve=True),
        "val_recon": m[K.key(K.VAL, K.RECON)],
        "val_kl": m[K.key(K.VAL, K.KL)],
        "seconds": seconds,
        "overrides": overrides,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.precision", description=__doc__.splitlines()[0]
    )
    p.add_argument("--model", default="vae_unet")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="images per split (default: all)")
    p.add_argument("--anneal", default="constant", help="a conf/anneal/ config")
    p.add_argument(
        "--scheduler", default="cosine", help="a conf/scheduler/ config (cosine | plateau), or null"
    )
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("overrides", nargs="*", help="Hydra overrides for both precisions")
    p.add_argument("--seeds", default="42,43,44", help="comma-separated; each runs both precisions")
    args = p.parse_args()
    seeds = [int(v) for v in args.seeds.split(",")]
    precisions = ("32-true", "bf16-mixed")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run(prec, seed, args, Path(tmp)) for seed in seeds for prec in precisions]
    model_config = runs[0]["model_config"]  # the same in every run: kept once
    for r in runs:
        del r["model_config"]
    elbo = {q: [r["val_elbo"] for r in runs if r["precision"] == q] for q in precisions}
    fp32_mean = statistics.mean(elbo["32-true"])
    per_prec = {
        q: {
            "val_elbo_mean": statistics.mean(v),
            "val_elbo_std": statistics.stdev(v) if len(v) > 1 else None,
            "seconds_mean": statistics.mean(r["seconds"] for r in runs if r["precision"] == q),
        }
        for q, v in elbo.items()
    }
    paired = [(b - f) / abs(f) for f, b in zip(elbo["32-true"], elbo["bf16-mixed"], strict=True)]
    summary = {
        "model": args.model,
        "model_config": model_config,
        "epochs": args.epochs,
        "images_per_split": args.limit or "all",
        "anneal": args.anneal,
        "scheduler": args.scheduler,
        "seeds": seeds,
        "data": "real Face Mask 12K" if os.environ.get("FACEMASK_ROOT") else "synthetic",
        "runs": runs,
        "per_precision": per_prec,
        # signed, (bf16 - fp32) / |fp32|; the target is |this| < 1%
        "bf16_vs_fp32_mean_rel_diff": (per_prec["bf16-mixed"]["val_elbo_mean"] - fp32_mean)
        / abs(fp32_mean),
        "bf16_vs_fp32_paired_rel_diffs": paired,
        "fp32_seed_std_rel": None
        if per_prec["32-true"]["val_elbo_std"] is None
        else per_prec["32-true"]["val_elbo_std"] / abs(fp32_mean),
        "command": command_line(),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
