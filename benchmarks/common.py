"""What the benchmarks share: the model table, the training step they time, the machine they ran on.

Imports no other benchmark module, so that any of them can import it (``speed.py``,
``speed_device.py``, ``device_paths.py``, ``profile_step.py`` ...) without an import circle.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

#: the repository root (the folder that holds ``benchmarks/``)
ROOT = Path(__file__).resolve().parent.parent

#: the benchmarks' model names: (class, options over :class:`facemask_vae.models.ModelConfig`)
MODELS = {
    "ae": ("facemask_vae.models.AE", {}),
    "vae": ("facemask_vae.models.VAE", {"skip": "none"}),
    "vae_unet": ("facemask_vae.models.VAE", {"skip": "variational", "skip_posterior": "conv"}),
    # the study's U-Net VAE: conv-block skip posteriors (conf/experiment/ae_vs_vae.yaml)
    "vae_unet_block": (
        "facemask_vae.models.VAE",
        {"skip": "variational", "skip_posterior": "block"},
    ),
}

#: the same models as train.py overrides
MODEL_OVERRIDES = {
    "ae": ["model=ae"],
    "vae": ["model=vae"],
    "vae_unet": ["model=vae_unet"],
    "vae_unet_block": ["model=vae_unet", "model.skip_posterior=block"],
}


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The CPU, its bf16 units and the software versions, for a result's JSON."""
    flags = ""
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "amx_bf16": "amx_bf16" in flags,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cuda": torch.cuda.is_available(),
    }


def command_line(argv: list[str] | None = None) -> str:
    """The command that reruns this process: ``python -m benchmarks.x ...`` for a benchmark run
    as a module, ``python <file> ...`` otherwise. ``argv``: the arguments (default: this
    process's)."""
    args = sys.argv[1:] if argv is None else argv
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = ["-m", spec.name] if spec is not None and spec.name else [sys.argv[0]]
    return "python " + shlex.join([*head, *args])


def run_module(module: str, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """``python -m <module> *args`` in a child process that imports this checkout's benchmarks
    whatever its working directory (the repository root goes first on its PYTHONPATH);
    ``kwargs`` go to :func:`subprocess.run`."""
    path = os.environ.get("PYTHONPATH")
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), path]))}
    return subprocess.run([sys.executable, "-m", module, *args], env=env, **kwargs)


def write_synthetic_jpegs(root: Path, n_train: int, size: int = 128) -> Path:
    """A Kaggle-layout folder of synthetic JPEGs, for machines without the real data."""
    from PIL import Image

    from facemask_vae.data.base import CLASSES, SPLITS
    from facemask_vae.data.synthetic import generate_faces

    base = root / "Face Mask Dataset"
    counts = {"train": n_train, "val": max(n_train // 10, 64), "test": max(n_train // 10, 64)}
    for seed, (split, n) in enumerate(counts.items()):
        images, labels = generate_faces(n, image_size=size, seed=1000 + seed)[:2]
        names = {v: k for k, v in CLASSES.items()}
        for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
            d = base / SPLITS[split] / names[int(lab)]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f"{i}.jpg", quality=95)
    return base


def build_model(name: str, image_size: int, channels_last: bool = False) -> torch.nn.Module:
    """The generative model called ``name`` (a key of :data:`MODELS`), a plain ``nn.Module``;
    its weights in channels_last memory when asked (as the training module puts them)."""
    from hydra.utils import get_class

    target, kw = MODELS[name]
    model = get_class(target)(image_size=image_size, **kw)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def training_module(
    name: str,
    image_size: int,
    channels_last: bool = True,
    compile: bool = False,
    compile_mode: str | None = None,
):
    """The project's default training regime around model ``name``: a
    :class:`facemask_vae.lit.TrainingModule` with AdamW at lr 1e-3 (``conf/optimizer/adamw.yaml``),
    no scheduler, channels_last and optionally torch.compile (applied by ``configure_model``)."""
    from facemask_vae.lit import TrainingModule

    return TrainingModule(
        build_model(name, image_size),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        channels_last=channels_last,
        compile=compile,
        compile_mode=compile_mode,
    )


def negative_elbo(model, x: torch.Tensor) -> torch.Tensor:
    """The benchmarks' training loss: batch-mean negative ELBO at beta = 1 (nats per image)."""
    return model.objective(model.loss_terms(x)).loss


def eager_step(model, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    """One plain float32 training step (the eager reference): nats per dimension, clipped."""
    loss = negative_elbo(model, x)
    opt.zero_grad()
    (loss / x[0].numel()).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def flops_per_image(name: str, image_size: int, batch: int = 8) -> float:
    """Forward + backward FLOPs of one training step, per image (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(name, image_size)
    x = torch.rand(batch, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        negative_elbo(model, x).backward()
    return counter.get_total_flops() / batch
