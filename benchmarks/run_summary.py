"""What a finished train.py run measured, as JSON: its ELBO per epoch and its epochs' wall time.

    python -m benchmarks.run_summary <run dir> [<run dir> ...] [--wall name=seconds ...] [--out f.json]

Per run: the resolved settings that matter for speed and quality (model, batch size, learning
rate, precision, compile, where batches came from), the validation ELBO after every epoch and at
the end, the test metrics when the run had a test pass, and the wall time between successive
validation ELBO events (an epoch, validation and image logging included; the first one also
holds the set-up). ``scripts/gpu_session.sh`` uses it to compare batch 128 with
``experiment=gpu_fast`` at the same number of epochs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

from facemask_vae import metric_keys as K

#: where a setting is in a run's config.yaml, newest spelling first (older runs kept the training
#: options under model.*)
SETTINGS = {
    "lr": ("optimizer.lr", "model.lr"),
    "compile": ("module.compile", "model.compile"),
    "compile_mode": ("module.compile_mode", "model.compile_mode"),
}


def setting(cfg, name: str):
    """A run's setting ``name`` (a key of :data:`SETTINGS`) under whichever key its config has."""
    from omegaconf import OmegaConf

    for key in SETTINGS[name]:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            return value
    return None


def summarise(run_dir: Path) -> dict:
    from omegaconf import OmegaConf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = OmegaConf.load(run_dir / "config.yaml")
    scalars: dict[str, list] = {}
    for d in sorted({p.parent for p in run_dir.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(d), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(acc.Scalars(tag))
    elbo = sorted(scalars.get(K.VAL_ELBO, []), key=lambda e: e.wall_time)
    times = [e.wall_time for e in elbo]
    epochs = [b - a for a, b in itertools.pairwise(times)]
    last = {t: sorted(v, key=lambda e: e.step)[-1].value for t, v in scalars.items()}
    return {
        "run_name": cfg.get("run_name"),
        "model": cfg.model.get("name"),
        "batch_size": cfg.data.batch_size,
        "lr": setting(cfg, "lr"),
        "on_device": cfg.data.get("on_device"),
        "precision": cfg.trainer.precision,
        "compile": setting(cfg, "compile"),
        "compile_mode": setting(cfg, "compile_mode"),
        "max_epochs": cfg.trainer.max_epochs,
        "val_elbo_per_epoch": [e.value for e in elbo],
        "final_val_elbo": elbo[-1].value if elbo else None,
        "best_val_elbo": max((e.value for e in elbo), default=None),
        "test": {t: v for t, v in last.items() if t.startswith(K.key(K.TEST, ""))},
        "epoch_s_between_val_events": epochs,
        "median_epoch_s": statistics.median(epochs) if epochs else None,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run_summary", description=__doc__.splitlines()[0]
    )
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--wall", action="append", default=[], help="name=seconds of the whole run")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    wall = dict(w.split("=", 1) for w in args.wall)
    result = {}
    for run in args.runs:
        try:
            result[run.name] = summarise(run)
        except Exception as err:  # a run that failed or timed out: say so, summarise the rest
            result[run.name] = {"error": f"{type(err).__name__}: {err}"}
        if run.name in wall:
            result[run.name]["wall_s"] = float(wall[run.name])
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
