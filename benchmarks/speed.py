"""Training and evaluation speed of every model, against a plain reference, measured side by side.

    python -m benchmarks.speed --quick --out /tmp/speed_quick.json    # 64 px, fewer steps
    python -m benchmarks.speed --out benchmarks/results/speed.json    # 64 and 128 px
    python -m benchmarks.speed --sizes 64 --models vae_unet,vae_unet_block

Run it from the repository root, as a module (``benchmarks`` is a package).

Per model and image size it reports: training images/s of the project's default path (Lightning
Trainer, the default precision, channels_last, the decoded-image cache) and of a plain reference
in the same process on the same data and model (eager, float32, contiguous memory, a DataLoader
that decodes the JPEGs from disk every epoch), evaluation images/s, GFLOP per training image and
the GFLOP/s achieved, and the peak resident memory of a process that trains that model. For the
data module: the cache build time and the cached load time. Data: FACEMASK_ROOT when set (the
real Face Mask 12K), else synthetic faces written to disk as JPEGs in the Kaggle layout.
With ``--compile`` it also times the default path with torch.compile, and its compile time.

``--device cpu|cuda`` runs the device suite instead (``benchmarks/speed_device.py``, its own
options: ``python -m benchmarks.speed --device cuda --help``): end to end through ``train.py``'s path, the bare step and
the eager float32 DataLoader reference side by side, per compile mode, with the GPU's name.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import (
    MODELS,
    build_model,
    command_line,
    eager_step,
    flops_per_image,
    machine,
    run_module,
    training_module,
    write_synthetic_jpegs,
)


class _Clock:
    """Lightning callback: timestamps after each training batch, to time steady-state steps."""

    def __init__(self):
        import pytorch_lightning as pl

        class Clock(pl.Callback):
            def __init__(self):
                self.stamps: list[float] = []

            def on_train_batch_end(self, *args, **kwargs):
                self.stamps.append(time.perf_counter())

        self.callback = Clock()


def time_default_training(
    name: str, dm, image_size: int, steps: int, warmup: int, compile: bool = False
) -> dict:
    """The project's default path: the training module (AdamW, channels_last) under a Lightning
    Trainer, default precision, cache, heap reuse (conf/callbacks/default.yaml).

    With ``compile`` the module is built with ``compile=True`` (torch.compile); the warm-up steps
    then include the compilation, reported as ``warmup_s``.
    """
    import pytorch_lightning as pl

    from facemask_vae.callbacks import HeapReuse
    from facemask_vae.config import auto_precision

    module = training_module(name, image_size, channels_last=True, compile=compile)
    clock = _Clock().callback
    trainer = pl.Trainer(
        accelerator="cpu",
        precision=auto_precision(),
        max_steps=steps + warmup,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock, HeapReuse()],
        gradient_clip_val=1.0,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    s = clock.stamps
    dt = s[-1] - s[warmup - 1]
    return {
        "train_img_per_s": dm.batch_size * (len(s) - warmup) / dt,
        "warmup_s": s[warmup - 1] - start,
        "precision": auto_precision(),
    }


def time_reference_training(
    name: str, folder: Path, image_size: int, batch: int, steps: int, warmup: int
) -> float:
    """A plain loop: eager float32, contiguous tensors, JPEGs decoded by a DataLoader each epoch."""
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.Resize(image_size),
            transforms.CenterCrop(image_size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
        ]
    )
    ds = datasets.ImageFolder(str(folder / "Train"), transform=tf)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch, shuffle=True, num_workers=0, drop_last=True
    )
    model = build_model(name, image_size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    done, t0 = 0, None
    while done < steps + warmup:
        for x, _ in loader:
            eager_step(model, opt, x)
            done += 1
            if done == warmup:
                t0 = time.perf_counter()
            if done == steps + warmup:
                break
    return batch * steps / (time.perf_counter() - t0)


def time_evaluation(name: str, dm, image_size: int, batches: int) -> float:
    """Reconstruction throughput of the test split in the default precision."""
    from facemask_vae.config import auto_precision

    model = build_model(name, image_size, channels_last=True).eval()
    dm.setup("test")
    loader = dm.test_dataloader()
    bf16 = auto_precision().startswith("bf16")
    n, t0 = 0, None
    for i, batch in enumerate(loader):
        x, _ = dm.on_after_batch_transfer(batch, 0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.reconstruct(x)
        if i == 0:
            t0 = time.perf_counter()
        else:
            n += x.shape[0]
        if i >= batches:
            break
    return n / (time.perf_counter() - t0)


def child(args) -> dict:
    """One model at one size, in its own process so its peak memory is its own."""
    from facemask_vae.data.facemask import FaceMaskDataModule

    dm = FaceMaskDataModule(
        root=args.data, image_size=args.size, batch_size=args.batch, cache_dir=args.cache
    )
    # the default path's HeapReuse lasts for the process: the reference and the evaluation
    # (eval.py does not use it) run first, with glibc's default allocator
    reference = time_reference_training(
        args.model, Path(args.data), args.size, args.batch, args.steps, args.warmup
    )
    eval_img_per_s = time_evaluation(args.model, dm, args.size, batches=5)
    res = time_default_training(args.model, dm, args.size, args.steps, args.warmup)
    res["reference_train_img_per_s"] = reference
    res["speedup"] = res["train_img_per_s"] / reference
    res["eval_img_per_s"] = eval_img_per_s
    res["gflop_per_train_image"] = flops_per_image(args.model, args.size) / 1e9
    res["achieved_gflop_per_s"] = res["gflop_per_train_image"] * res["train_img_per_s"]
    res["epoch_seconds_10023_images"] = 10023 / res["train_img_per_s"]
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.compile:  # after the peak-memory reading: compilation has its own footprint
        compiled = time_default_training(
            args.model, dm, args.size, args.steps, args.warmup, compile=True
        )
        res["compiled_train_img_per_s"] = compiled["train_img_per_s"]
        res["compiled_warmup_s"] = compiled["warmup_s"]
        res["compile_speedup"] = compiled["train_img_per_s"] / res["train_img_per_s"]
    return res


def time_cache(data: Path, cache: Path, size: int) -> dict:
    from facemask_vae.data.facemask import FaceMaskDataModule

    t0 = time.perf_counter()
    FaceMaskDataModule(root=str(data), image_size=size, cache_dir=str(cache)).setup(None)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    dm = FaceMaskDataModule(root=str(data), image_size=size, cache_dir=str(cache))
    dm.setup(None)
    load = time.perf_counter() - t0
    n = sum(len(d) for d in dm.datasets.values())
    return {"images": n, "cache_build_s": build, "cached_load_s": load}


def main() -> None:
    if any(a == "--device" or a.startswith("--device=") for a in sys.argv[1:]):
        from benchmarks.speed_device import main as device_suite

        device_suite(sys.argv[1:])
        return
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="64 px only, fewer steps")
    p.add_argument("--sizes", default="64,128", help="image sizes, comma-separated")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument(
        "--models",
        default="ae,vae,vae_unet,vae_unet_block",
        help=f"comma-separated, of {sorted(MODELS)}",
    )
    p.add_argument(
        "--compile", action="store_true", help="also time the default path with torch.compile"
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=64, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=20, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    for name in args.models.split(","):
        if name not in MODELS:
            p.error(f"--models: {name!r} is not one of {sorted(MODELS)}")

    work = Path(tempfile.mkdtemp(prefix="facemask-bench-"))
    data = os.environ.get("FACEMASK_ROOT")
    source = "FACEMASK_ROOT (real Face Mask 12K)"
    if not data:
        data = str(write_synthetic_jpegs(work, n_train=2000 if args.quick else 4000))
        source = "synthetic JPEGs written for the benchmark"
    sizes = [64] if args.quick else [int(v) for v in args.sizes.split(",")]
    steps = 8 if args.quick else 20
    result = {
        "machine": machine(),
        "data": source,
        "batch_size": args.batch,
        "steps_timed": steps,
        "models": {},
        "data_module": {},
        "command": command_line(),
    }
    for size in sizes:
        cache = work / f"cache{size}"
        result["data_module"][f"{size}px"] = time_cache(Path(data), cache, size)
        print(f"data module {size}px: {result['data_module'][f'{size}px']}", flush=True)
        for name in args.models.split(","):
            child_args = [
                "--child",
                "--model",
                name,
                "--size",
                str(size),
                "--batch",
                str(args.batch),
                "--steps",
                str(steps),
                "--data",
                data,
                "--cache",
                str(cache),
                *(["--compile"] if args.compile else []),
            ]
            out = run_module(
                "benchmarks.speed", child_args, capture_output=True, text=True, check=False
            )
            if out.returncode != 0:
                raise SystemExit(f"benchmark of {name} at {size}px failed:\n{out.stderr[-4000:]}")
            res = json.loads(out.stdout.strip().splitlines()[-1])
            key = name if size == 64 else f"{name}@{size}"
            result["models"][key] = res
            print(
                f"{key}: {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()})}",
                flush=True,
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
