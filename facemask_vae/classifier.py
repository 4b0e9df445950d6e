"""A small mask / no-mask CNN: the evaluation's domain feature space and its supervised ceiling.

Trained once on the training split and cached on disk under a key made of the training data's
fingerprint and the training recipe, so every later evaluation on the same data reuses it. Its
128-d pooled features stand in for Inception features when no outside weights are available
(a "domain Frechet distance"), and its test accuracy is the ceiling for the latent probes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

#: Bump when the architecture or the training recipe changes: old cache entries stop matching.
RECIPE_VERSION = 1


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where cached evaluation artefacts go: ``explicit``, else $FACEMASK_CACHE, else ~/.cache."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("FACEMASK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "facemask-vae"


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """A short content hash of a split (uint8 images and labels): the cache key of anything
    computed from the data alone."""
    h = hashlib.sha1()
    h.update(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class MaskCNN(nn.Module):
    """Four stride-2 conv stages -> global average pool (the feature) -> 2 logits."""

    feature_dim = 128

    def __init__(self) -> None:
        super().__init__()

        def stage(i: int, o: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(o),
                nn.ReLU(inplace=True),
            )

        self.body = nn.Sequential(
            stage(3, 32, 2), stage(32, 64, 2), stage(64, 128, 2), stage(128, 128, 1)
        )
        self.head = nn.Linear(self.feature_dim, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """B x 128 pooled features of images in [0, 1]."""
        return self.body((x.float() - 0.5) / 0.25).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """(features N x 128, P(WithMask) N) of float images in [0, 1], batched, in eval mode."""
        self.eval()
        feats, probs = [], []
        for i in range(0, x.shape[0], batch_size):
            f = self.features(x[i : i + batch_size])
            feats.append(f)
            probs.append(self.head(f).softmax(dim=1)[:, 1])
        return torch.cat(feats), torch.cat(probs)


@dataclass
class TrainedCNN:
    model: MaskCNN
    key: str
    path: Path
    cached: bool
    seconds: float


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to 1/16 of the size (batch-wise, seeded)."""
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    pad = max(1, x.shape[-1] // 16)
    dx, dy = torch.randint(-pad, pad + 1, (2,), generator=g).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train_mask_cnn(
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> MaskCNN:
    """Train the CNN on uint8 images (N x 3 x S x S) and labels with AdamW and a one-cycle rate."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = MaskCNN().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(labels) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    model.train()
    bar = tqdm(total=steps, desc="domain CNN: training", leave=False, disable=None)
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=g)
        for i in range(0, len(labels), batch_size):
            idx = order[i : i + batch_size]
            x = _augment(images[idx].float() / 255.0, g).to(device)
            y = labels[idx].to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()


def get_mask_cnn(
    images: torch.Tensor,
    labels: torch.Tensor,
    directory: str | os.PathLike | None = None,
    epochs: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> TrainedCNN:
    """The CNN for this training split: loaded from the cache, or trained once and cached."""
    key = f"mask_cnn-v{RECIPE_VERSION}-e{epochs}-s{seed}-{fingerprint(images, labels)}"
    path = cache_dir(directory) / f"{key}.pt"
    t0 = time.perf_counter()
    if path.is_file():
        try:
            model = MaskCNN()
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return TrainedCNN(model.to(device).eval(), key, path, True, time.perf_counter() - t0)
        except Exception as e:  # a damaged cache entry is rebuilt, not fatal
            log.warning("ignoring unreadable cached CNN %s (%s): retraining", path, e)
    model = train_mask_cnn(images, labels, epochs=epochs, seed=seed, device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    return TrainedCNN(model, key, path, False, time.perf_counter() - t0)
