"""Train-only augmentation of whole float batches, with independent random parameters per image.

torchvision's v2 transforms draw one set of parameters per call, i.e. per batch when applied to a
batch tensor; these draw per image and stay on the batch's device, so augmentation costs a few
vectorised ops instead of a Python loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class BatchAugment:
    """Horizontal flip, light colour jitter and random resized crop on an N x 3 x H x W batch.

    Args:
        hflip: probability of a horizontal flip per image (0 disables).
        color_jitter: strength s in [0, 1): brightness, contrast and saturation factors are drawn
            from [1 - s, 1 + s] per image (0 disables).
        random_resized_crop: minimum area fraction of the crop in (0, 1]; the crop is resized back
            to the full image (None or 1 disables).
    """

    def __init__(
        self,
        hflip: float = 0.5,
        color_jitter: float = 0.0,
        random_resized_crop: float | None = None,
    ) -> None:
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"data.augment.hflip is a probability in [0, 1], got {hflip}")
        if not 0.0 <= color_jitter < 1.0:
            raise ValueError(f"data.augment.color_jitter must be in [0, 1), got {color_jitter}")
        if random_resized_crop is not None and not 0.0 < random_resized_crop <= 1.0:
            raise ValueError(
                f"data.augment.random_resized_crop is a minimum area in (0, 1], got {random_resized_crop}"
            )
        self.hflip = float(hflip)
        self.color_jitter = float(color_jitter)
        self.min_area = None if random_resized_crop in (None, 1.0) else float(random_resized_crop)

    @property
    def enabled(self) -> bool:
        return self.hflip > 0 or self.color_jitter > 0 or self.min_area is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        n = x.shape[0]
        if self.min_area is not None:
            x = self._random_resized_crop(x)
        if self.hflip > 0:
            flip = torch.rand(n, device=x.device) < self.hflip
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
        if self.color_jitter > 0:
            x = self._color_jitter(x)
        return x

    def _factors(self, n: int, device: torch.device) -> torch.Tensor:
        s = self.color_jitter
        return torch.empty(n, 1, 1, 1, device=device).uniform_(1 - s, 1 + s)

    def _color_jitter(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = x * self._factors(n, x.device)  # brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * self._factors(n, x.device) + mean  # contrast
        gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
        x = (x - gray) * self._factors(n, x.device) + gray  # saturation
        return x.clamp_(0.0, 1.0)

    def _random_resized_crop(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        area = torch.empty(n, device=x.device).uniform_(self.min_area, 1.0)
        log_ratio = torch.empty(n, device=x.device).uniform_(-0.2877, 0.2877)  # ratio in [3/4, 4/3]
        ratio = log_ratio.exp()
        sw = (area * ratio).sqrt().clamp(max=1.0)  # crop width / image width
        sh = (area / ratio).sqrt().clamp(max=1.0)
        tx = (torch.rand(n, device=x.device) * 2 - 1) * (1 - sw)  # centre, in [-1, 1] coordinates
        ty = (torch.rand(n, device=x.device) * 2 - 1) * (1 - sh)
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 2] = sw, tx
        theta[:, 1, 1], theta[:, 1, 2] = sh, ty
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return (
            out.contiguous(memory_format=torch.channels_last)
            if x.is_contiguous(memory_format=torch.channels_last)
            else out
        )
