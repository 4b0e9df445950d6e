"""Training callbacks of our own: image logging (reconstructions, prior samples, interpolations),
the non-finite loss guard and glibc heap reuse."""

from __future__ import annotations

import ctypes
import platform
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only, rank_zero_warn
from torchvision.utils import make_grid, save_image

from facemask_vae.models import Autoencoder


def image_grids(
    model: Autoencoder,
    x: torch.Tensor,
    n_samples: int,
    interp_steps: int,
    seed: int,
    sampling_bn_batches: int = 4,
) -> dict[str, torch.Tensor]:
    """The three pictures of a model's state as 3 x H x W grids in [0, 1].

    ``model``'s public API only (reconstruct, sample, interpolate).
    ``recon``: inputs above, reconstructions below; ``samples``: decoded prior draws from a fixed
    noise seed, so epochs compare, normalised with BN statistics re-estimated on
    ``sampling_bn_batches`` batches of prior samples (0: the training statistics);
    ``interpolation``: one row per pair (x[2i], x[2i+1]).
    """
    recon = model.reconstruct(x)
    g = torch.Generator(device=model.device).manual_seed(seed)
    samples = model.sample(
        n_samples,
        generator=g,
        sampling_bn=sampling_bn_batches > 0,
        bn_batches=sampling_bn_batches or None,
    )
    pairs = x.shape[0] // 2
    interp = model.interpolate(x[:pairs], x[pairs : 2 * pairs], steps=interp_steps)
    return {
        "recon": make_grid(torch.cat([x.float(), recon]), nrow=x.shape[0], padding=1),
        "samples": make_grid(samples, nrow=int(n_samples**0.5 + 0.5), padding=1),
        "interpolation": make_grid(interp.flatten(0, 1), nrow=interp_steps, padding=1),
    }


class ImageLogger(pl.Callback):
    """Every ``every_n_epochs`` validation epochs: image grids to TensorBoard and PNGs in the run dir.

    Uses the first ``n_images`` validation images (fixed across epochs) and a fixed sample seed.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        n_images: int = 8,
        n_samples: int = 16,
        interp_steps: int = 8,
        seed: int = 0,
        sampling_bn_batches: int = 4,
    ) -> None:
        if every_n_epochs < 1 or n_images < 2 or n_samples < 1 or interp_steps < 2:
            raise ValueError(
                "callbacks.image_logger needs every_n_epochs >= 1, n_images >= 2, "
                "n_samples >= 1 and interp_steps >= 2"
            )
        self.every_n_epochs, self.n_images, self.n_samples = every_n_epochs, n_images, n_samples
        self.interp_steps, self.seed = interp_steps, seed
        if sampling_bn_batches < 0:
            raise ValueError("callbacks.image_logger.sampling_bn_batches must be >= 0 (0: off)")
        self.sampling_bn_batches = sampling_bn_batches

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        due = (trainer.current_epoch + 1) % self.every_n_epochs == 0
        if not (due or trainer.fast_dev_run):
            return
        dm = trainer.datamodule
        images = dm.dataset("val").images[: self.n_images].to(pl_module.device)
        x = dm.to_float(images)
        bn_batches = 0 if has_sync_bn(pl_module) else self.sampling_bn_batches
        grids = image_grids(
            pl_module.model, x, self.n_samples, self.interp_steps, self.seed, bn_batches
        )
        save_and_log_grids(trainer, grids, f"_epoch{trainer.current_epoch:03d}")


def has_sync_bn(module: torch.nn.Module) -> bool:
    """Whether ``module`` has SyncBatchNorm layers: rank 0 alone cannot run them in train mode
    (they wait for the other ranks), so sampling BN statistics are not re-estimated then."""
    return any(isinstance(m, torch.nn.SyncBatchNorm) for m in module.modules())


def save_and_log_grids(trainer: pl.Trainer, grids: dict[str, torch.Tensor], suffix: str) -> None:
    """Each 3 x H x W grid as ``<run dir>/images/<name><suffix>.png`` and as the TensorBoard
    image ``images/<name>`` at the current step."""
    out_dir = Path(trainer.default_root_dir) / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, grid in grids.items():
        save_image(grid, out_dir / f"{name}{suffix}.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(f"images/{name}", grid, trainer.global_step)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message has the step and last finite values."""


class NonFiniteGuard(pl.Callback):
    """Stops training on a non-finite loss, or skips that batch's update (``action='skip'``).

    It runs before the optimiser step, so a bad batch never reaches the weights. On the CPU it
    reads the loss terms every step (a read costs nothing there): ``skip`` drops every gradient
    of a bad step. On an accelerator a read per step would stall the device's queue, so it checks
    on the device instead: a bad step's gradients are zeroed there (its batch never reaches the
    weights, though Adam's momentum still moves them), and the flags are read every
    ``check_every`` steps, when ``raise`` raises with the first bad step.
    """

    def __init__(
        self, action: str = "raise", max_skips: int = 100, check_every: int | None = None
    ) -> None:
        if action not in ("raise", "skip"):
            raise ValueError(
                f"callbacks.nonfinite.action must be 'raise' or 'skip', got {action!r}"
            )
        if check_every is not None and check_every < 1:
            raise ValueError(f"callbacks.nonfinite.check_every must be >= 1, got {check_every}")
        self.action, self.max_skips, self.check_every = action, max_skips, check_every
        self.skipped = 0
        self.last_finite: dict[str, float] | None = None
        self._flags: dict[str, torch.Tensor] | None = None  # the device path's running state
        self._keys: list[str] = []

    def every(self, device: torch.device) -> int:
        """Steps between host reads: ``check_every``, or 1 on the CPU and 50 elsewhere."""
        return self.check_every or (1 if device.type == "cpu" else 50)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        terms = pl_module.last_terms
        if not terms:
            return
        if self.every(pl_module.device) == 1:
            self._check(trainer.global_step, pl_module, {k: float(v) for k, v in terms.items()})
            return
        self._mask_on_device(trainer.global_step, pl_module, terms)
        if (trainer.global_step + 1) % self.every(pl_module.device) == 0:
            self.flush(trainer.global_step, pl_module)

    def _mask_on_device(self, step: int, pl_module, terms: dict[str, torch.Tensor]) -> None:
        values = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        finite = torch.isfinite(values).all()
        if grads:  # a finite loss can still back-propagate inf or NaN: the gradients count too
            finite = finite & torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()
        for g in grads:  # a bad step's gradients become zeros; a good step's stay as they are
            g.copy_(torch.where(finite, g, torch.zeros((), dtype=g.dtype, device=g.device)))
        f = self._flags
        if f is None:
            f = self._flags = {
                "bad": torch.zeros((), dtype=torch.long, device=values.device),
                "first_bad": torch.full((), -1, dtype=torch.long, device=values.device),
                "last": torch.full_like(values, float("nan")),
                "last_step": torch.full((), -1, dtype=torch.long, device=values.device),
            }
            self._keys = list(terms)
        bad = ~finite
        f["bad"] += bad.long()
        f["first_bad"] = torch.where(bad & (f["first_bad"] < 0), step, f["first_bad"])
        f["last"] = torch.where(finite, values, f["last"])
        f["last_step"] = torch.where(finite, step, f["last_step"])

    def flush(self, step: int, pl_module) -> None:
        """Read the device path's flags (one host sync) and act on the bad steps since the last."""
        f, self._flags = self._flags, None
        if f is None:
            return
        n_bad, first = int(f["bad"]), int(f["first_bad"])
        if int(f["last_step"]) >= 0:
            last = dict(zip(self._keys, f["last"].tolist(), strict=True))
            self.last_finite = {"step": int(f["last_step"]), **last}
        if n_bad == 0:
            return
        if self.action == "skip" and self.skipped + n_bad <= self.max_skips:
            self.skipped += n_bad
            rank_zero_warn(
                f"non-finite loss at {n_bad} step(s) up to step {step}, the first at step {first}: "
                f"batch skipped (its gradients zeroed; {self.skipped} so far, at most "
                f"{self.max_skips})"
            )
            return
        self._raise(first, {"n_bad_steps": n_bad})

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._flags is not None:
            self.flush(trainer.global_step, pl_module)

    def _check(self, step: int, pl_module, values: dict[str, float]) -> None:
        if all(v == v and abs(v) != float("inf") for v in values.values()):
            self.last_finite = {"step": step, **values}
            return
        if self.action == "skip" and self.skipped < self.max_skips:
            self.skipped += 1
            for p in pl_module.parameters():
                p.grad = None
            rank_zero_warn(
                f"non-finite loss at step {step} ({values}): batch skipped "
                f"({self.skipped} so far, at most {self.max_skips})"
            )
            return
        self._raise(step, values)

    def _raise(self, step: int, values: dict[str, float]) -> None:
        raise NonFiniteLossError(
            f"non-finite loss at step {step}: {values}. Last finite values: "
            f"{self.last_finite or 'none yet'}. Try a lower optimizer.lr, gradient clipping "
            "(trainer.gradient_clip_val), trainer.precision=32-true, or "
            "callbacks.nonfinite.action=skip to drop such batches."
        )

    def state_dict(self) -> dict[str, int]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))


# mallopt(3) parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def reuse_freed_heap_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the OS; False off glibc.

    glibc serves every block above its mmap threshold (at most 32 MB; a bf16 activation of the
    64 x 64 layers at batch 128 is 33.5 MB) with a fresh mmap and unmaps it on free, so each step
    page-faults its activations in again: about a tenth of a CPU training step here, spent in the
    kernel. Process-wide and for the life of the process, like LD_PRELOADing jemalloc.
    """
    if not GLIBC:
        return False
    libc = ctypes.CDLL(None)
    # no mmap for large blocks (they come from the heap), and never trim the heap's free top
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**30))


class HeapReuse(pl.Callback):
    """Applies :func:`reuse_freed_heap_memory` when training starts, in every process."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        reuse_freed_heap_memory()
