"""The procedural face renderer: seeded faces with and without masks, all of a chunk at once.

Each face is drawn with soft-edged shapes on a pixel grid, all images of a chunk at once (pure
tensor ops, no Python loop per image): a background gradient, neck, hair, face, ears, eyes, brows,
nose and mouth, each with random shape, size, position and colour. The WithMask class adds a mask
over nose and mouth whose shape (surgical, rounded cloth, pointed N95), colour, pattern (plain,
pleats, stripes, dots) and ear loops vary.
"""

from __future__ import annotations

import torch

_SKIN = torch.tensor(
    [
        [255, 224, 196],
        [241, 194, 165],
        [224, 172, 128],
        [198, 134, 96],
        [161, 102, 68],
        [122, 76, 52],
        [88, 54, 38],
    ],
    dtype=torch.float32,
)
_HAIR = torch.tensor(
    [[20, 16, 14], [60, 40, 28], [110, 72, 40], [180, 140, 80], [150, 60, 30], [200, 200, 200]],
    dtype=torch.float32,
)
_IRIS = torch.tensor(
    [[60, 40, 25], [40, 90, 140], [70, 110, 60], [30, 25, 20]], dtype=torch.float32
)
_MASK = torch.tensor(
    [
        [150, 200, 235],  # surgical blue
        [245, 245, 245],  # white
        [30, 30, 35],  # black
        [235, 160, 190],  # pink
        [90, 120, 80],  # olive
        [60, 80, 150],  # navy
        [230, 210, 120],  # yellow
        [180, 60, 60],  # red
    ],
    dtype=torch.float32,
)


def _u(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _pick(g: torch.Generator, palette: torch.Tensor, n: int, jitter: float) -> torch.Tensor:
    """Random palette colours (n x 3, in [0, 1]) with a little per-image variation."""
    idx = torch.randint(len(palette), (n,), generator=g)
    colour = palette[idx] / 255.0
    return (colour + jitter * torch.randn(n, 3, generator=g)).clamp(0, 1)


def _ellipse(x, y, cx, cy, rx, ry, px: float) -> torch.Tensor:
    """Soft coverage in [0, 1] of an axis-aligned ellipse, anti-aliased over about one pixel."""
    d = torch.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return ((1 - d) * torch.minimum(rx, ry) / px + 0.5).clamp(0, 1)


def _band(v, lo, hi, px: float) -> torch.Tensor:
    """Soft coverage of lo <= v <= hi."""
    return (((v - lo) / px + 0.5).clamp(0, 1)) * (((hi - v) / px + 0.5).clamp(0, 1))


def _paint(canvas: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Alpha-composite a colour (n x 3 or n x 3 x H x W) over the canvas (n x 3 x H x W)."""
    if colour.ndim == 2:
        colour = colour[:, :, None, None]
    a = alpha[:, None]
    return canvas * (1 - a) + colour * a


def _render(
    labels: torch.Tensor, size: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images (n x 3 x size x size in [0, 1]) and the mask's coverage (n x size x size)."""
    n = len(labels)
    px = 2.0 / size  # one pixel in the [-1, 1] coordinates
    coords = torch.linspace(-1 + px / 2, 1 - px / 2, size)
    y = coords.view(1, size, 1).expand(n, size, size)
    x = coords.view(1, 1, size).expand(n, size, size)

    def col(t: torch.Tensor) -> torch.Tensor:
        return t.view(n, 1, 1)

    # background: a two-colour linear gradient in a random direction
    c0, c1 = torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g)
    angle = _u(g, n, 0, 6.2832)
    t = ((x * col(torch.cos(angle)) + y * col(torch.sin(angle))) * 0.5 + 0.5).clamp(0, 1)
    canvas = c0[:, :, None, None] * (1 - t[:, None]) + c1[:, :, None, None] * t[:, None]

    # face geometry: size, shape and position
    scale = _u(g, n, 0.72, 1.08)
    rx, ry = col(0.50 * scale * _u(g, n, 0.82, 1.08)), col(0.62 * scale * _u(g, n, 0.92, 1.1))
    cx, cy = col(_u(g, n, -0.18, 0.18)), col(_u(g, n, -0.12, 0.16))
    skin = _pick(g, _SKIN, n, 0.03)
    hair = _pick(g, _HAIR, n, 0.04)
    shade = (skin * 0.8).clamp(0, 1)

    # neck and shoulders
    canvas = _paint(
        canvas, _band(x, cx - 0.45 * rx, cx + 0.45 * rx, px) * _band(y, cy, 2.0, px), shade
    )
    canvas = _paint(
        canvas,
        _ellipse(x, y, cx, cy + 1.55 * ry, 1.9 * rx, 0.75 * ry, px),
        torch.rand(n, 3, generator=g),
    )
    # hair behind the head: long hair reaches down the sides
    long_hair = col(_u(g, n, 0.0, 1.0))
    hair_back = _ellipse(x, y, cx, cy - 0.08 * ry, 1.12 * rx, 1.05 * ry, px) * (
        y < cy + long_hair * 0.9 * ry
    )
    has_hair = col((torch.rand(n, generator=g) < 0.9).float())
    canvas = _paint(canvas, hair_back * has_hair, hair)
    # ears
    for side in (-1.0, 1.0):
        canvas = _paint(
            canvas, _ellipse(x, y, cx + side * 0.98 * rx, cy, 0.14 * rx, 0.2 * ry, px), shade
        )
    # face
    canvas = _paint(canvas, _ellipse(x, y, cx, cy, rx, ry, px), skin)
    # fringe: the top of the face under the hair line
    hair_line = cy - col(_u(g, n, 0.45, 0.75)) * ry
    fringe = _ellipse(x, y, cx, cy, 1.02 * rx, 1.02 * ry, px) * ((hair_line - y) / px + 0.5).clamp(
        0, 1
    )
    canvas = _paint(canvas, fringe * has_hair, hair)

    # eyes, irises and brows
    ex, ey = col(_u(g, n, 0.32, 0.44)) * rx, cy - col(_u(g, n, 0.08, 0.2)) * ry
    eye_r = col(_u(g, n, 0.11, 0.16)) * rx
    iris = _pick(g, _IRIS, n, 0.03)
    look = col(_u(g, n, -0.3, 0.3)) * eye_r
    brow_h = col(_u(g, n, 0.03, 0.06)) * ry
    brow_lift = col(_u(g, n, 0.17, 0.3)) * ry
    white = torch.full((n, 3), 0.95)
    for side in (-1.0, 1.0):
        ecx = cx + side * ex
        canvas = _paint(canvas, _ellipse(x, y, ecx, ey, eye_r, 0.6 * eye_r, px), white)
        canvas = _paint(
            canvas, _ellipse(x, y, ecx + look, ey, 0.5 * eye_r, 0.5 * eye_r, px), iris * 0.8
        )
        brow = _band(x, ecx - 1.3 * eye_r, ecx + 1.3 * eye_r, px) * _band(
            y, ey - brow_lift - brow_h, ey - brow_lift + brow_h, px
        )
        canvas = _paint(canvas, brow, hair * 0.8)

    # nose and mouth
    ny = cy + col(_u(g, n, 0.12, 0.22)) * ry
    nose_w = col(_u(g, n, 0.08, 0.14)) * rx
    canvas = _paint(canvas, _ellipse(x, y, cx, ny, nose_w, 0.6 * nose_w, px), shade * 0.85)
    my = cy + col(_u(g, n, 0.45, 0.58)) * ry
    mouth_w = col(_u(g, n, 0.22, 0.38)) * rx
    mouth_h = col(_u(g, n, 0.04, 0.12)) * ry
    lips = (skin * torch.tensor([0.75, 0.45, 0.45]) + torch.tensor([0.1, 0.0, 0.0])).clamp(0, 1)
    canvas = _paint(canvas, _ellipse(x, y, cx, my, mouth_w, mouth_h, px), lips)

    # the mask: over nose and mouth, from below the eyes to the chin
    has_mask = col(labels.float())
    top = ey + col(_u(g, n, 0.12, 0.22)) * ry
    style = torch.randint(3, (n,), generator=g).view(n, 1, 1)
    widen = col(_u(g, n, 1.0, 1.12))
    under_top = ((y - top) / px + 0.5).clamp(0, 1)
    # surgical: the face ellipse, widened, below the top edge
    surgical = _ellipse(x, y, cx, cy, widen * rx, 1.03 * ry, px) * under_top
    # cloth: a rounded patch centred on the mouth
    cloth = _ellipse(x, y, cx, (top + cy + ry) / 2, widen * 0.95 * rx, (cy + ry - top) / 2 + px, px)
    # N95: pointed at the chin (a diamond-ish shape below the top edge)
    half = (cy + 1.05 * ry - top).clamp(min=px)
    point = (1 - ((y - top) / half).clamp(0, 1) ** 2).clamp(0, 1) ** 0.5 * widen * rx
    n95 = _band(x - cx, -point - px, point + px, px) * under_top * (y < cy + 1.05 * ry)
    shape = torch.where(style == 0, surgical, torch.where(style == 1, cloth, n95))
    coverage = shape * has_mask

    base = _pick(g, _MASK, n, 0.05)
    accent = torch.rand(n, 3, generator=g)
    pattern = torch.randint(4, (n,), generator=g).view(n, 1, 1)
    freq = col(_u(g, n, 10.0, 22.0))
    pleats = (torch.sin((y - top) * freq * 1.5) > 0.6).float() * 0.25
    stripes = (torch.sin((x - cx) * freq + (y - top) * freq * 0.5) > 0.3).float()
    dots = ((torch.sin((x - cx) * freq) * torch.sin((y - top) * freq)) > 0.55).float()
    mix = torch.where(
        pattern == 0,
        torch.zeros_like(x),
        torch.where(pattern == 1, -pleats, torch.where(pattern == 2, stripes, dots)),
    )
    mask_colour = torch.where(
        mix[:, None] >= 0,
        base[:, :, None, None] * (1 - mix[:, None]) + accent[:, :, None, None] * mix[:, None],
        base[:, :, None, None] * (1 + mix[:, None]),
    )
    canvas = _paint(canvas, coverage, mask_colour)
    # ear loops: from the mask's upper and lower corners to the ears
    loop_colour = (base * 0.85).clamp(0, 1)
    for side in (-1.0, 1.0):
        ear_x = cx + side * 0.98 * rx
        d = torch.sqrt((x - ear_x) ** 2 / (0.25 * rx) ** 2 + (y - cy) ** 2 / (0.35 * ry) ** 2)
        ring = _band(d, 0.85, 1.0, 0.06) * has_mask * (side * (x - ear_x) < 0.05)
        canvas = _paint(canvas, ring * 0.9, loop_colour)

    # lighting and sensor noise
    light = 1 + col(_u(g, n, -0.12, 0.12)) * x
    canvas = canvas * light[:, None] * col(_u(g, n, 0.85, 1.1))[:, None]
    canvas = canvas + 0.02 * torch.randn(canvas.shape, generator=g)
    return canvas.clamp(0, 1), coverage


def generate_faces(
    n: int,
    image_size: int = 64,
    seed: int = 0,
    return_mask_pixels: bool = False,
    chunk: int = 512,
) -> tuple[torch.Tensor, ...]:
    """``n`` synthetic faces: uint8 images (n x 3 x S x S) and labels (WithMask = 1), balanced.

    Deterministic in ``(n, image_size, seed)``. With ``return_mask_pixels`` also returns a bool
    n x S x S map of the pixels the mask covers (empty for WithoutMask faces).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    g = torch.Generator().manual_seed(int(seed))
    labels = (torch.arange(n) % 2)[torch.randperm(n, generator=g)]
    images, masks = [], []
    for start in range(0, n, chunk):
        img, cov = _render(labels[start : start + chunk], image_size, g)
        images.append(img.mul(255).round_().to(torch.uint8))
        masks.append(cov > 0.5)
    out = (torch.cat(images), labels.long())
    return (*out, torch.cat(masks)) if return_mask_pixels else out
