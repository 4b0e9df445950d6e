"""Train-only augmentation of whole float batches, with independent random parameters per image.

torchvision's v2 transforms draw one set of parameters per call, i.e. per batch when applied to a
batch tensor; these draw per image and stay on the batch's device, so augmentation costs a few
vectorised ops instead of a Python loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def border_colour(x: torch.Tensor) -> torch.Tensor:
    """The mean colour of each image's outermost ring of pixels: N x C x H x W -> N x C (float),
    the backdrop a zoomed-out image is placed on."""
    ring = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], dim=-1)
    return ring.float().mean(-1)


class BatchAugment:
    """Horizontal flip, light colour jitter, random resized crop and zoom-out on N x 3 x H x W.

    Args:
        hflip: probability of a horizontal flip per image (0 disables).
        color_jitter: strength s in [0, 1): brightness, contrast and saturation factors are drawn
            from [1 - s, 1 + s] per image (0 disables).
        random_resized_crop: minimum area fraction of the crop in (0, 1]; the crop is resized back
            to the full image (None or 1 disables).
        zoom_out: minimum scale in (0, 1] at which an image is shrunk into its frame, at a random
            position, on a flat backdrop of its mean border colour: a wider framing of the same
            face (None or 1 disables). The scale is drawn from [zoom_out, 1] per image.
        zoom_out_p: probability that an image is zoomed out at all.
    """

    def __init__(
        self,
        hflip: float = 0.5,
        color_jitter: float = 0.0,
        random_resized_crop: float | None = None,
        zoom_out: float | None = None,
        zoom_out_p: float = 0.5,
    ) -> None:
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"data.augment.hflip is a probability in [0, 1], got {hflip}")
        if not 0.0 <= color_jitter < 1.0:
            raise ValueError(f"data.augment.color_jitter must be in [0, 1), got {color_jitter}")
        if random_resized_crop is not None and not 0.0 < random_resized_crop <= 1.0:
            raise ValueError(
                f"data.augment.random_resized_crop is a minimum area in (0, 1], got {random_resized_crop}"
            )
        if zoom_out is not None and not 0.0 < zoom_out <= 1.0:
            raise ValueError(f"data.augment.zoom_out is a minimum scale in (0, 1], got {zoom_out}")
        if not 0.0 <= zoom_out_p <= 1.0:
            raise ValueError(
                f"data.augment.zoom_out_p is a probability in [0, 1], got {zoom_out_p}"
            )
        self.hflip = float(hflip)
        self.color_jitter = float(color_jitter)
        self.min_area = None if random_resized_crop in (None, 1.0) else float(random_resized_crop)
        self.min_scale = None if zoom_out in (None, 1.0) or zoom_out_p == 0 else float(zoom_out)
        self.zoom_out_p = float(zoom_out_p)

    @property
    def enabled(self) -> bool:
        return (
            self.hflip > 0
            or self.color_jitter > 0
            or self.min_area is not None
            or self.min_scale is not None
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        n = x.shape[0]
        if self.min_area is not None:
            x = self._random_resized_crop(x)
        if self.min_scale is not None:
            x = self._zoom_out(x)
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

    def _zoom_out(self, x: torch.Tensor) -> torch.Tensor:
        """Each chosen image shrunk (antialiased) to ``s`` of its side and pasted at a random
        position on its mean border colour; the others pass through unchanged.

        The scales and positions are drawn on the CPU so that grouping by output size needs no
        device sync; one ``interpolate`` runs per distinct size (at most ~S/2 of them).
        """
        n, _, h, w = x.shape
        chosen = torch.rand(n) < self.zoom_out_p
        scale = torch.empty(n).uniform_(self.min_scale, 1.0)
        sizes = torch.where(chosen, (scale * h).round().clamp(1, h).long(), h)
        if bool((sizes == h).all()):
            return x
        fill = border_colour(x)[:, :, None, None]  # N x 3 x 1 x 1
        out = x.clone()
        for size in sizes.unique().tolist():
            if size == h:
                continue
            idx = (sizes == size).nonzero().squeeze(1)
            sh, sw = size, max(1, round(w * size / h))
            small = F.interpolate(
                x[idx.to(x.device)], size=(sh, sw), mode="bilinear", antialias=True
            )
            tops = (torch.rand(len(idx)) * (h - sh + 1)).long().tolist()
            lefts = (torch.rand(len(idx)) * (w - sw + 1)).long().tolist()
            for j, (i, top, left) in enumerate(zip(idx.tolist(), tops, lefts, strict=True)):
                out[i] = fill[i]
                out[i, :, top : top + sh, left : left + sw] = small[j]
        return out
