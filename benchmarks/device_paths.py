"""The three training paths that ``python -m benchmarks.speed --device`` times, each run in a
process of its own.

``end_to_end`` (``train.py``'s path, per-epoch wall time), ``bare_step`` (one step, no Lightning,
no data loading) and ``reference`` (eager float32, a JPEG-decoding DataLoader); each takes the
spec dict that ``benchmarks/speed_device.py`` builds and returns a JSON-able dict.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import (
    MODEL_OVERRIDES,
    build_model,
    eager_step,
    flops_per_image,
    negative_elbo,
    training_module,
)
from facemask_vae import metric_keys as K


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def end_to_end(spec: dict) -> dict:
    """train.py's path on ``spec``'s data, model and compile mode; per-epoch wall time."""
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from facemask_vae import training
    from facemask_vae.config import CONF_DIR

    device = torch.device(spec["device"])
    mode = spec["compile_mode"]
    overrides = [
        "data=facemask",
        f"data.root={spec['data']}",
        f"data.cache_dir={spec['cache']}",
        f"data.image_size={spec['size']}",
        f"data.batch_size={spec['batch']}",
        f"data.limit_per_split={spec['limit'] or 'null'}",
        *MODEL_OVERRIDES[spec["model"]],
        f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
        f"trainer.max_epochs={spec['epochs']}",
        "test=false",
        *([] if mode == "none" else ["module.compile=true", f"module.compile_mode={mode}"]),
        *spec["overrides"],
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = tempfile.mkdtemp(prefix="facemask-e2e-")

    class EpochClock(pl.Callback):
        def __init__(self) -> None:
            self.starts: list[float] = []
            self.val_starts: list[float] = []
            self.end, self.loader, self.n_train = 0.0, "", 0

        def on_train_epoch_start(self, trainer, pl_module):
            sync(device)
            self.starts.append(time.perf_counter())
            self.loader = type(trainer.train_dataloader).__name__
            self.n_train = len(trainer.datamodule.dataset("train"))

        def on_validation_epoch_start(self, trainer, pl_module):
            if not trainer.sanity_checking:
                sync(device)
                self.val_starts.append(time.perf_counter())

        def on_fit_end(self, trainer, pl_module):
            sync(device)
            self.end = time.perf_counter()

    clock = EpochClock()
    build = training.build_callbacks
    training.build_callbacks = lambda c, m: [*build(c, m), clock]
    t0 = time.perf_counter()
    result = training.train(cfg)
    bounds = [*clock.starts, clock.end]
    epochs = [b - a for a, b in itertools.pairwise(bounds)]
    steady = epochs[1:] or epochs
    median = statistics.median(steady)
    train_only = [v - s for s, v in zip(clock.starts, clock.val_starts, strict=False)]
    return {
        "epoch_s": epochs,
        "first_epoch_s": epochs[0],
        "median_epoch_s": median,
        "img_per_s": clock.n_train / median,
        "median_train_part_s": statistics.median(train_only[1:] or train_only),
        "train_images": clock.n_train,
        "setup_s": clock.starts[0] - t0,
        "precision": str(cfg.trainer.precision),
        "batches_from": clock.loader,
        "val_elbo": result["metrics"].get(K.VAL_ELBO),
        "val_loss": result["metrics"].get(K.VAL_LOSS),
        "peak_gpu_mb": peak_memory_mb(device),
        "overrides": overrides,
    }


def bare_step(spec: dict) -> dict:
    """One training step as in profile_step.py, on the device, per batch size (and precision)."""
    from facemask_vae.config import auto_precision

    device, size, mode = torch.device(spec["device"]), spec["size"], spec["compile_mode"]
    gflop = flops_per_image(spec["model"], size) / 1e9  # on the CPU, before the device work
    bf16 = auto_precision().startswith("bf16")
    out = {"gflop_per_train_image": gflop, "batches": {}}
    runs = [(b, bf16) for b in spec["step_batches"]]
    if bf16 and mode == "none":
        runs += [(b, False) for b in spec["step_batches"]]
    for batch, use_bf16 in runs:
        compiled = {} if mode == "none" else {"compile": True, "compile_mode": mode}
        module = training_module(spec["model"], size, channels_last=True, **compiled)
        module.configure_model()  # torch.compile, as the Trainer does
        module.to(device)
        opt = module.make_optimizer(module.model.parameters())  # AdamW, as configure_optimizers
        x = torch.rand(batch, 3, size, size, device=device)
        x = x.contiguous(memory_format=torch.channels_last)

        def step(module=module, opt=opt, x=x, use_bf16=use_bf16) -> None:
            module.on_train_batch_start(None, 0)  # the CUDA-graph step mark, as under a Trainer
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = negative_elbo(module.model, x)
            opt.zero_grad(set_to_none=True)
            (loss / x[0].numel()).backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            opt.step()

        t0 = time.perf_counter()
        for _ in range(spec["warmup"]):
            step()
        sync(device)
        t1 = time.perf_counter()
        for _ in range(spec["steps"]):
            step()
        sync(device)
        dt = (time.perf_counter() - t1) / spec["steps"]
        key = f"{batch}{'' if use_bf16 == bf16 else '_fp32'}"
        out["batches"][key] = {
            "precision": "bf16-mixed" if use_bf16 else "32-true",
            "ms_per_step": dt * 1e3,
            "img_per_s": batch / dt,
            "tflop_per_s": gflop * batch / dt / 1e3,
            "warmup_s": t1 - t0,
        }
        del module, opt, x
    out["peak_gpu_mb"] = peak_memory_mb(device)
    return out


def reference(spec: dict) -> dict:
    """Eager float32, contiguous, a DataLoader decoding JPEGs and copying batches to the device."""
    from torchvision import datasets, transforms

    device, size, batch = torch.device(spec["device"]), spec["size"], spec["batch"]
    tf = transforms.Compose(
        [
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
        ]
    )
    ds = datasets.ImageFolder(str(Path(spec["data"]) / "Train"), transform=tf)
    workers = spec["workers"]
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    model = build_model(spec["model"], size).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    done, total, t0 = 0, spec["steps"] + spec["warmup"], 0.0
    while done < total:
        for x, _ in loader:
            eager_step(model, opt, x.to(device, non_blocking=True))
            done += 1
            if done == spec["warmup"]:
                sync(device)
                t0 = time.perf_counter()
            if done == total:
                break
    sync(device)
    img_per_s = batch * spec["steps"] / (time.perf_counter() - t0)
    return {
        "img_per_s": img_per_s,
        "epoch_s_train_only": len(ds) / img_per_s,
        "workers": workers,
        "peak_gpu_mb": peak_memory_mb(device),
    }


KINDS = {"end_to_end": end_to_end, "bare_step": bare_step, "reference": reference}
