"""Where a training step's time goes: forward, backward and optimiser, then the costliest ops.

    python -m benchmarks.profile_step --model vae_unet --out benchmarks/results/profile_vae_unet.json
    python -m benchmarks.profile_step --model vae_unet --no-heap-reuse   # glibc's default malloc

Runs the bare training step of ``speed.py``'s reference loop, but on the default path's settings
(bf16 autocast where the CPU has AMX, channels_last, heap reuse, AdamW, gradient clipping) on
random images, so the figures are the model's own cost with no data loading and no Lightning.
Then profiles a few steps with torch.profiler and lists the ops by self CPU time, grouped by
input shape, so a reader sees which layer pays (e.g. the 64 x 64 decoder stage or a skip
level's posterior).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import MODELS, build_model, command_line, machine, negative_elbo


def make_step(model, batch: int, size: int, bf16: bool):
    """A closure running one training step; returns (forward, backward, optimiser) seconds."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)

    def step() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = negative_elbo(model, x)
        t1 = time.perf_counter()
        opt.zero_grad()
        (loss / x[0].numel()).backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    return step


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_step", description=__doc__.splitlines()[0]
    )
    p.add_argument("--model", default="vae_unet", choices=sorted(MODELS))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 3 warm-up steps)")
    p.add_argument("--top", type=int, default=25, help="ops to list")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--heap-reuse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the default path's HeapReuse (glibc); --no-heap-reuse profiles without it",
    )
    args = p.parse_args()

    from torch.profiler import ProfilerActivity, profile

    from facemask_vae.callbacks import reuse_freed_heap_memory
    from facemask_vae.config import cpu_has_fast_bf16

    heap_reuse = args.heap_reuse and reuse_freed_heap_memory()
    bf16 = cpu_has_fast_bf16()  # the profile runs on the CPU whatever GPU the machine has
    model = build_model(args.model, args.size, channels_last=True)
    step = make_step(model, args.batch, args.size, bf16)
    for _ in range(3):
        step()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    times = [step() for _ in range(args.steps)]
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    fwd, bwd, opt = (statistics.mean(t[i] for t in times) for i in range(3))
    total = fwd + bwd + opt

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(3):
            step()
    rows = sorted(
        prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total
    )
    ops = [
        {
            "op": e.key,
            "ms_per_step": e.self_cpu_time_total / 3 / 1000,
            "shapes": [list(s) for s in e.input_shapes if s][:3],
        }
        for e in rows[: args.top]
    ]
    result = {
        "machine": machine(),
        "model": args.model,
        "image_size": args.size,
        "batch_size": args.batch,
        "precision": "bf16 autocast" if bf16 else "float32",
        "heap_reuse": heap_reuse,
        "step_ms": 1000 * total,
        "forward_ms": 1000 * fwd,
        "backward_ms": 1000 * bwd,
        "optimizer_ms": 1000 * opt,
        # CPU time the kernel spent for the process (page faults, mmap) per step
        "system_cpu_ms": 1000 * (cpu1.ru_stime - cpu0.ru_stime) / args.steps,
        "img_per_s": args.batch / total,
        "epoch_seconds_10023_images": 10023 / (args.batch / total),
        "top_ops": ops,
        "command": command_line(),
    }
    print(
        f"{args.model} @ {args.size}px, batch {args.batch}, {result['precision']}: "
        f"{result['step_ms']:.0f} ms/step (forward {result['forward_ms']:.0f}, backward "
        f"{result['backward_ms']:.0f}, optimiser {result['optimizer_ms']:.0f}; kernel "
        f"{result['system_cpu_ms']:.0f}), "
        f"{result['img_per_s']:.0f} img/s, epoch {result['epoch_seconds_10023_images']:.1f} s"
    )
    for o in ops:
        print(f"{o['ms_per_step']:7.1f} ms  {o['op']:<36} {o['shapes']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
