"""``python -m benchmarks.speed --device cpu|cuda``: three training paths side by side on one
device, in one run.

    python -m benchmarks.speed --device cuda --out benchmarks/results/speed_gpu.json
    python -m benchmarks.speed --device cuda --compile-modes none,default,reduce-overhead \\
        --step-batches 128,512,2048 --out benchmarks/results/speed_gpu.json
    python -m benchmarks.speed --device cpu --quick --size 32 --limit 128   # a check, seconds

Per model and compile mode (``none``: eager, else ``module.compile_mode``):

- ``end_to_end``: ``facemask_vae.training.train`` on a composed config, as ``train.py`` runs it
  (the default callbacks, logger, validation, image logging and checkpoints; ``test=false``):
  every epoch's seconds, the median epoch after the first, and training images per second of
  that epoch (validation included, as issue #15 counts it);
- ``bare_step``: one training step with no Lightning and no data loading, a random batch already
  on the device, the default precision (bf16 autocast where supported) and channels_last, per
  batch size of ``--step-batches``; eager float32 too when the default is bf16;

and once per model, ``reference``: eager float32 in contiguous memory, batches from a DataLoader
that decodes the JPEGs (``--workers`` processes) and copies them to the device.

Every measurement runs in a process of its own under ``--child-timeout``: a mode that fails or
hangs is recorded with its error and the run goes on, and the JSON is rewritten after each one.
Data: FACEMASK_ROOT when set, else synthetic JPEGs in the Kaggle layout (as ``speed.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import (
    MODEL_OVERRIDES,
    MODELS,
    command_line,
    machine,
    run_module,
    write_synthetic_jpegs,
)
from benchmarks.device_paths import KINDS


def device_info(device: str) -> dict:
    info = {**machine(), "device": device}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info |= {
            "gpu": torch.cuda.get_device_name(0),
            "gpu_memory_gb": round(props.total_memory / 2**30, 1),
            "gpu_capability": f"{props.major}.{props.minor}",
            "cuda_runtime": torch.version.cuda,
        }
    return info


# ---- the parent: one child per measurement, the JSON rewritten after each ----------------------
def run_child(spec: dict, timeout: float) -> dict:
    args = ["--child", json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        done = run_module(
            "benchmarks.speed_device",
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": done.stderr[-3000:], "wall_s": time.perf_counter() - t0}
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"wall_s": time.perf_counter() - t0}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.speed --device",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--device", choices=["cpu", "cuda"], required=True)
    p.add_argument("--quick", action="store_true", help="2 epochs, 3 timed steps, 256 images")
    p.add_argument("--models", default="vae_unet", help=f"comma-separated, of {sorted(MODELS)}")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=128, help="end to end and the reference")
    p.add_argument("--step-batches", default=None, help="bare-step batch sizes (default: --batch)")
    p.add_argument("--compile-modes", default="none", help="none,default,reduce-overhead,...")
    p.add_argument("--epochs", type=int, default=None, help="end to end (default 5; quick 2)")
    p.add_argument("--limit", type=int, default=None, help="images per split (default: all)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 30; quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 5; quick 1)")
    p.add_argument("--workers", type=int, default=None, help="reference DataLoader workers")
    p.add_argument("--skip", default="", help="paths to leave out: end_to_end,bare_step,reference")
    p.add_argument("--override", action="append", default=[], help="extra train.py override")
    p.add_argument("--child-timeout", type=float, default=600.0)
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        spec = json.loads(argv[1])
        print(json.dumps(KINDS[spec["kind"]](spec)))
        return
    args = parse(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here")
    models = args.models.split(",")
    modes = args.compile_modes.split(",")
    from facemask_vae.lit.module import COMPILE_MODES

    for name in models:
        if name not in MODEL_OVERRIDES:
            raise SystemExit(f"--models: {name!r} is not one of {sorted(MODEL_OVERRIDES)}")
    for mode in modes:
        if mode != "none" and mode not in COMPILE_MODES:
            raise SystemExit(f"--compile-modes: {mode!r} is not none or one of {COMPILE_MODES[1:]}")
    work = Path(tempfile.mkdtemp(prefix="facemask-bench-"))
    data, source = os.environ.get("FACEMASK_ROOT"), "FACEMASK_ROOT (real Face Mask 12K)"
    if not data:
        data = str(write_synthetic_jpegs(work, n_train=256 if args.quick else 2000))
        source = "synthetic JPEGs written for the benchmark"
    base = {
        "device": args.device,
        "data": data,
        "cache": str(work / "cache"),
        "size": args.size,
        "batch": args.batch,
        "step_batches": [int(b) for b in (args.step_batches or str(args.batch)).split(",")],
        "epochs": args.epochs or (2 if args.quick else 5),
        "limit": args.limit or (256 if args.quick else None),
        "steps": args.steps or (3 if args.quick else 30),
        "warmup": args.warmup or (1 if args.quick else 5),
        "workers": (
            args.workers
            if args.workers is not None
            else (0 if args.device == "cpu" else min(8, os.cpu_count() or 1))
        ),
        "overrides": args.override,
    }
    skip = set(filter(None, args.skip.split(",")))
    result = {
        "machine": device_info(args.device),
        "data": source,
        "settings": {k: v for k, v in base.items() if k not in ("data", "cache")},
        "models": {},
        "command": command_line(argv),
    }

    def record(name: str, path: list[str], res: dict) -> None:
        node = result["models"].setdefault(name, {})
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = res
        summary = {k: round(v, 2) for k, v in res.items() if isinstance(v, float)}
        print(f"{name} {'/'.join(path)}: {res.get('error', '')[-300:] or summary}", flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2))

    for name in models:
        spec = base | {"model": name}
        if "reference" not in skip:
            record(name, ["reference"], run_child(spec | {"kind": "reference"}, args.child_timeout))
        for mode in modes:
            for kind in ("end_to_end", "bare_step"):
                if kind not in skip:
                    child = spec | {"kind": kind, "compile_mode": mode}
                    record(name, ["compile", mode, kind], run_child(child, args.child_timeout))
    if args.out:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
