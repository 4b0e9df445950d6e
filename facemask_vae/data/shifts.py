"""Seeded distribution shifts of uint8 image batches: the project's stand-in for "other photos".

The Face Mask 12K crops are tight, centred and clean; photos from elsewhere are framed wider, off
centre, blurrier, compressed harder and lit differently. Each shift here maps a uint8 batch
``N x 3 x S x S`` to a uint8 batch of the same shape, as a pure function of the images, a
``torch.Generator`` (for the shifts that draw per-image parameters) and its strength parameters,
whose defaults are the strengths the evaluation reports. :data:`SHIFTS` names them and
:func:`apply_shift` runs one by name with a seed.

The image ops are torchvision's ``transforms.v2.functional`` and, for JPEG, Pillow (torchvision's
own JPEG codec is deprecated since 0.29); JPEG round trips run on the CPU, the rest on the
images' device.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from facemask_vae.data.augment import border_colour

Shift = Callable[..., torch.Tensor]


def _check(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"shifts take uint8 N x 3 x H x W images, got {images.dtype} {tuple(images.shape)}"
        )


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64) * (high - low) + low


def zoom_out(
    images: torch.Tensor, generator: torch.Generator | None = None, scale: float = 0.6
) -> torch.Tensor:
    """The whole image shrunk to ``scale`` of the frame (antialiased), centred on a flat backdrop
    of each image's mean border colour (the mean of its outermost ring of pixels), like a wider
    crop of the same photo against a plain background. Deterministic (``generator`` unused).

    images: uint8 N x 3 x S x S -> uint8 N x 3 x S x S.
    """
    _check(images)
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"zoom_out scale must be in (0, 1], got {scale}")
    h, w = images.shape[-2:]
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    small = TF.resize(images, [sh, sw], antialias=True)
    border = border_colour(images).round().to(torch.uint8)  # N x 3
    out = border[:, :, None, None].expand(-1, -1, h, w).clone()
    top, left = (h - sh) // 2, (w - sw) // 2
    out[..., top : top + sh, left : left + sw] = small
    return out


def off_centre(
    images: torch.Tensor, generator: torch.Generator | None = None, fraction: float = 0.25
) -> torch.Tensor:
    """A ``(1 - fraction)``-sized square crop at a random corner of each image (seeded, per
    image), resized back to full size: the face moves ``fraction * S / 2`` pixels along each axis
    away from the centre (before the resize) and a ``1 / (1 - fraction)`` zoom cuts off its far
    sides.

    images: uint8 N x 3 x S x S -> uint8 N x 3 x S x S.
    """
    _check(images)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"off_centre fraction must be in [0, 1), got {fraction}")
    h, w = images.shape[-2:]
    ch, cw = max(1, round(h * (1 - fraction))), max(1, round(w * (1 - fraction)))
    corner = torch.randint(0, 4, (len(images),), generator=generator)
    out = torch.empty_like(images)
    for c in range(4):
        idx = torch.nonzero(corner == c).flatten()
        if len(idx) == 0:
            continue
        top, left = (h - ch) * (c // 2), (w - cw) * (c % 2)
        crop = TF.crop(images[idx.to(images.device)], top, left, ch, cw)
        out[idx.to(images.device)] = TF.resize(crop, [h, w], antialias=True)
    return out


def blur(
    images: torch.Tensor, generator: torch.Generator | None = None, factor: float = 4.0
) -> torch.Tensor:
    """Rescaling blur: downsampled by ``factor`` (antialiased) and upsampled back (bilinear), the
    softness of a small face enlarged from a low-resolution photo. Deterministic.

    images: uint8 N x 3 x S x S -> uint8 N x 3 x S x S.
    """
    _check(images)
    if factor < 1.0:
        raise ValueError(f"blur factor must be >= 1, got {factor}")
    h, w = images.shape[-2:]
    small = TF.resize(
        images, [max(1, round(h / factor)), max(1, round(w / factor))], antialias=True
    )
    return TF.resize(small, [h, w], antialias=True)


def jpeg(
    images: torch.Tensor, generator: torch.Generator | None = None, quality: int = 20
) -> torch.Tensor:
    """A JPEG round trip at ``quality`` (1-100; Pillow's libjpeg encoder, 4:2:0 chroma
    subsampling): blocking and colour bleeding of a heavily compressed photo. Deterministic; runs
    on the CPU.

    images: uint8 N x 3 x S x S -> uint8 N x 3 x S x S (on the input's device).
    """
    _check(images)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"jpeg quality must be in [1, 100], got {quality}")
    hwc = images.detach().cpu().permute(0, 2, 3, 1).contiguous().numpy()
    out = torch.empty_like(images, device="cpu")
    for i, arr in enumerate(hwc):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
    return out.to(images.device)


def colour(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    brightness: float = 0.5,
    contrast: float = 0.5,
    saturation: float = 0.5,
    hue: float = 0.1,
) -> torch.Tensor:
    """Per-image (seeded) colour changes, in this order: brightness, contrast and saturation
    factors drawn uniformly from ``[1 - s, 1 + s]``, and a hue rotation from ``[-hue, hue]`` (a
    fraction of the colour wheel), as different lighting and white balance would give.

    images: uint8 N x 3 x S x S -> uint8 N x 3 x S x S.
    """
    _check(images)
    for name, s in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        if not 0.0 <= s < 1.0:
            raise ValueError(f"colour {name} must be in [0, 1), got {s}")
    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"colour hue must be in [0, 0.5], got {hue}")
    n = len(images)
    b = _uniform(n, 1 - brightness, 1 + brightness, generator)
    c = _uniform(n, 1 - contrast, 1 + contrast, generator)
    s = _uniform(n, 1 - saturation, 1 + saturation, generator)
    hh = _uniform(n, -hue, hue, generator)
    out = torch.empty_like(images)
    for i in range(n):
        x = TF.adjust_brightness(images[i], float(b[i]))
        x = TF.adjust_contrast(x, float(c[i]))
        x = TF.adjust_saturation(x, float(s[i]))
        out[i] = TF.adjust_hue(x, float(hh[i])) if hue > 0 else x
    return out


def grayscale(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B) copied to all three channels. Deterministic.

    images: uint8 N x 3 x S x S -> uint8 N x 3 x S x S with equal channels.
    """
    _check(images)
    return TF.rgb_to_grayscale(images, num_output_channels=3)


#: The shifts by name, in the order the evaluation reports them; each is called as
#: ``fn(images, generator, **params)`` with its defaults as the reported strengths.
SHIFTS: dict[str, Shift] = {
    "zoom_out": zoom_out,
    "off_centre": off_centre,
    "blur": blur,
    "jpeg": jpeg,
    "colour": colour,
    "grayscale": grayscale,
}

#: What each shift does at its default strength, for tables and figures.
DESCRIPTIONS: dict[str, str] = {
    "zoom_out": "zoom out (face at 60% of the frame)",
    "off_centre": "off centre (75% corner crop)",
    "blur": "blur (4x down and up)",
    "jpeg": "JPEG quality 20",
    "colour": "colour (brightness, contrast, saturation +-50%, hue +-0.1)",
    "grayscale": "grayscale",
}


def apply_shift(name: str, images: torch.Tensor, seed: int = 0, **params: float) -> torch.Tensor:
    """Shift ``name`` of :data:`SHIFTS` applied to uint8 ``N x 3 x S x S`` images, its random
    draws from a CPU generator seeded with ``seed``; ``params`` override its default strengths."""
    if name not in SHIFTS:
        raise ValueError(f"unknown shift {name!r}; the shifts are {', '.join(SHIFTS)}")
    return SHIFTS[name](images, torch.Generator().manual_seed(int(seed)), **params)
