"""BatchAugment: each augmentation does what its option says, per image, and nothing when off."""

from __future__ import annotations

import pytest
import torch

from facemask_vae.data.augment import BatchAugment


def _fixed_factors(aug: BatchAugment, brightness: float, contrast: float, saturation: float):
    """Make the colour jitter draw the given factors, in the order brightness, contrast, saturation."""
    values = iter([brightness, contrast, saturation])
    aug._factors = lambda n, device: torch.full((n, 1, 1, 1), next(values), device=device)


def _ramps(n: int = 64, size: int = 32) -> torch.Tensor:
    """Channel 0 rises left to right, channel 1 top to bottom, channel 2 is flat: 0..1 each."""
    r = torch.linspace(0, 1, size)
    x = torch.zeros(n, 3, size, size)
    x[:, 0] = r.view(1, 1, size)
    x[:, 1] = r.view(1, size, 1)
    x[:, 2] = 0.5
    return x


def test_disabled_augmentation_returns_the_batch_itself():
    x = torch.rand(4, 3, 8, 8)
    aug = BatchAugment(hflip=0.0, zoom_out=1.0, random_resized_crop=1.0)
    assert not aug.enabled and aug(x) is x
    assert not BatchAugment(hflip=0.0, zoom_out=0.5, zoom_out_p=0.0).enabled


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"hflip": 1.5}, "hflip"),
        ({"color_jitter": 1.0}, "color_jitter"),
        ({"random_resized_crop": 0.0}, "random_resized_crop"),
        ({"zoom_out": 0.0}, "zoom_out"),
        ({"zoom_out": 1.2}, "zoom_out"),
        ({"zoom_out": 0.5, "zoom_out_p": -0.1}, "zoom_out_p"),
    ],
)
def test_invalid_options_name_their_key(kwargs, key):
    with pytest.raises(ValueError, match=f"data.augment.{key} "):
        BatchAugment(**kwargs)


def test_hflip_flips_each_image_independently_with_its_probability():
    torch.manual_seed(0)
    x = torch.rand(400, 3, 4, 4)
    out = BatchAugment(hflip=0.5)(x)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped | kept).all())  # every image is either itself or its mirror
    assert 160 < int(flipped.sum()) < 240  # about half, drawn per image
    assert torch.equal(BatchAugment(hflip=1.0)(x), x.flip(-1))


def test_colour_jitter_brightness_contrast_and_saturation():
    x = torch.rand(3, 3, 8, 8) * 0.5
    aug = BatchAugment(hflip=0.0, color_jitter=0.5)
    _fixed_factors(aug, 0.5, 1.0, 1.0)
    torch.testing.assert_close(aug(x), x * 0.5)  # brightness scales every pixel
    _fixed_factors(aug, 1.0, 0.0, 1.0)
    flat = aug(x)  # zero contrast: every pixel becomes the image's mean
    torch.testing.assert_close(flat, x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x))
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    _fixed_factors(aug, 1.0, 1.0, 0.0)
    gray = aug(red)  # zero saturation: the luma of pure red, 0.299, in every channel
    torch.testing.assert_close(gray, torch.full_like(red, 0.299))
    green, blue = red.roll(1, dims=1), red.roll(2, dims=1)
    _fixed_factors(aug, 1.0, 1.0, 0.0)
    torch.testing.assert_close(aug(green), torch.full_like(red, 0.587))
    _fixed_factors(aug, 1.0, 1.0, 0.0)
    torch.testing.assert_close(aug(blue), torch.full_like(red, 0.114))
    _fixed_factors(aug, 3.0, 1.0, 1.0)
    assert aug(x).max() == 1.0  # clamped to the image range


def test_colour_jitter_draws_factors_per_image_within_its_strength():
    torch.manual_seed(0)
    x = torch.full((200, 3, 4, 4), 0.5)  # gray: contrast and saturation leave it alone
    out = BatchAugment(hflip=0.0, color_jitter=0.4)(x)
    level = out[:, 0, 0, 0]
    assert torch.allclose(out, level.view(-1, 1, 1, 1).expand_as(out))
    assert level.min() >= 0.5 * 0.6 - 1e-6 and level.max() <= 0.5 * 1.4 + 1e-6
    assert level.max() - level.min() > 0.3  # spread over most of [0.3, 0.7], one draw per image


def test_random_resized_crop_zooms_into_a_crop_of_bounded_area_and_aspect():
    torch.manual_seed(0)
    x = _ramps()
    out = BatchAugment(hflip=0.0, random_resized_crop=0.3)(x)
    # the crop's width and height fractions, read off the ramps it kept
    width = out[:, 0, :, -1].mean(1) - out[:, 0, :, 0].mean(1)
    height = out[:, 1, -1, :].mean(1) - out[:, 1, 0, :].mean(1)
    area, ratio = width * height, width / height
    assert area.min() > 0.3 * 0.9 and area.max() <= 1.0 + 1e-4
    assert ratio.min() > 0.75 * 0.9 and ratio.max() < (4 / 3) * 1.1
    assert area.max() - area.min() > 0.3  # drawn per image
    assert out.min() >= 0 and out.max() <= 1


def _box(image: torch.Tensor, fill: torch.Tensor) -> tuple[int, int, int, int]:
    """Top, left, height and width of the pixels of a 3 x H x W image that differ from fill."""
    differs = (image - fill.view(3, 1, 1)).abs().amax(0) > 1e-4
    rows, cols = differs.any(1).nonzero(), differs.any(0).nonzero()
    return (
        int(rows.min()),
        int(cols.min()),
        int(rows.max() - rows.min() + 1),
        int(cols.max() - cols.min() + 1),
    )


def test_zoom_out_shrinks_the_image_onto_its_border_colour_at_a_random_place():
    torch.manual_seed(0)
    size, n = 32, 64
    colour = torch.tensor([0.2, 0.4, 0.6])
    x = torch.ones(n, 3, size, size)
    x[..., 0, :] = x[..., -1, :] = colour.view(3, 1)  # a one-pixel ring of one colour
    x[..., :, 0] = x[..., :, -1] = colour.view(3, 1)
    out = BatchAugment(hflip=0.0, zoom_out=0.5, zoom_out_p=1.0)(x)
    boxes = [_box(out[i], colour) for i in range(n)]  # the shrunk white interior
    sides = torch.tensor([h for _, _, h, _ in boxes], dtype=torch.float)
    assert all(h == w for _, _, h, w in boxes)  # square images stay square
    assert sides.min() >= 0.5 * size - 1 and sides.max() <= size  # scales from [0.5, 1]
    assert int((sides < size).sum()) > 0.9 * n  # all but those drawn within half a pixel of 1
    assert sides.max() - sides.min() > 0.25 * size  # drawn per image
    assert len({(t, left) for t, left, _, _ in boxes}) > n // 2  # and placed at random
    for i, (top, left, h, w) in enumerate(boxes):
        outside = torch.ones(size, size, dtype=torch.bool)
        outside[max(top - 1, 0) : top + h + 1, max(left - 1, 0) : left + w + 1] = False
        torch.testing.assert_close(
            out[i][:, outside], colour.view(3, 1).expand(3, int(outside.sum()))
        )  # the backdrop is the image's border colour


def test_zoom_out_applies_to_its_share_of_images_and_leaves_the_rest():
    torch.manual_seed(0)
    x = torch.rand(400, 3, 16, 16)
    out = BatchAugment(hflip=0.0, zoom_out=0.6, zoom_out_p=0.3)(x)
    unchanged = (out == x).flatten(1).all(1)
    assert 400 * 0.6 < int(unchanged.sum()) < 400 * 0.8
    assert out.shape == x.shape and out.dtype == x.dtype


@pytest.mark.parametrize(
    "kwargs, key",
    [({"random_resized_crop": 1.5}, "random_resized_crop"), ({"zoom_out_p": 1.5}, "zoom_out_p")],
)
def test_options_above_their_range_are_refused(kwargs, key):
    with pytest.raises(ValueError, match=f"data.augment.{key} "):
        BatchAugment(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hflip": 0.5},
        {"hflip": 0.0, "color_jitter": 0.3},
        {"hflip": 0.0, "random_resized_crop": 0.5},
        {"hflip": 0.0, "zoom_out": 0.5, "zoom_out_p": 1.0},
    ],
)
def test_random_draws_stay_on_the_batch_device(kwargs):
    # the meta device stands in for a GPU: a parameter drawn on the CPU cannot mix with it
    x = torch.rand(4, 3, 8, 8, device="meta")
    out = BatchAugment(**kwargs)(x)
    assert out.device == x.device and out.shape == x.shape


def test_colour_jitter_clamps_below_zero_too():
    x = torch.zeros(1, 3, 4, 4)
    x[..., :2, :] = 1.0  # half white, half black: mean 0.5
    aug = BatchAugment(hflip=0.0, color_jitter=0.5)
    _fixed_factors(aug, 1.0, 3.0, 1.0)  # contrast x3: 0.5 +- 1.5
    out = aug(x)
    assert out.min() == 0.0 and out.max() == 1.0


def test_random_resized_crop_aspect_and_position_are_drawn_both_ways():
    torch.manual_seed(0)
    x = _ramps(n=128)
    out = BatchAugment(hflip=0.0, random_resized_crop=0.3)(x)
    width = out[:, 0, :, -1].mean(1) - out[:, 0, :, 0].mean(1)
    height = out[:, 1, -1, :].mean(1) - out[:, 1, 0, :].mean(1)
    ratio = width / height
    assert ratio.min() < 0.9 and ratio.max() > 1.1  # wider and taller crops
    # the crop's centre on each axis, as a fraction of the image: on either side of the middle
    cx = (out[:, 0, :, -1].mean(1) + out[:, 0, :, 0].mean(1)) / 2
    cy = (out[:, 1, -1, :].mean(1) + out[:, 1, 0, :].mean(1)) / 2
    for c in (cx, cy):
        assert c.min() < 0.4 and c.max() > 0.6
    # the area is drawn from [0.3, 1]: few crops keep (nearly) the whole image
    assert float((width * height > 0.97).float().mean()) < 0.2
    # the crop stays inside the image: no column or row is repeated from the border
    assert (out[:, 0, :, 1] - out[:, 0, :, 0]).min() > 0
    assert (out[:, 1, 1, :] - out[:, 1, 0, :]).min() > 0


def test_random_resized_crop_over_a_full_side_keeps_that_side_exactly():
    # an area of ~1 with an aspect ratio != 1 makes the crop span the full width or height;
    # along that side the output is the input itself (no rescaling, no half-pixel shift)
    torch.manual_seed(0)
    x = _ramps(n=32)
    out = BatchAugment(hflip=0.0, random_resized_crop=0.999)(x)
    full_width = (out[:, 0] - x[:, 0]).abs().flatten(1).amax(1) < 1e-5
    full_height = (out[:, 1] - x[:, 1]).abs().flatten(1).amax(1) < 1e-5
    assert bool((full_width | full_height).all())
    assert full_width.any() and full_height.any()


def test_random_resized_crop_keeps_dtype_and_memory_format():
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    aug = BatchAugment(hflip=0.0, random_resized_crop=0.5)
    assert aug(x).dtype == torch.float64
    assert aug(x).is_contiguous()
    last = torch.rand(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    assert aug(last).is_contiguous(memory_format=torch.channels_last)


def _framed(n: int, size: int) -> torch.Tensor:
    """White images with a black one-pixel ring: the backdrop is black, every pasted pixel is not."""
    x = torch.ones(n, 3, size, size)
    x[..., 0, :] = x[..., -1, :] = x[..., :, 0] = x[..., :, -1] = 0.0
    return x


def test_zoom_out_positions_reach_every_edge():
    torch.manual_seed(0)
    size, n = 32, 128
    out = BatchAugment(hflip=0.0, zoom_out=0.5, zoom_out_p=1.0)(_framed(n, size))
    boxes = [_box(out[i], torch.zeros(3)) for i in range(n)]
    assert any(top == 0 for top, _, _, _ in boxes) and any(left == 0 for _, left, _, _ in boxes)
    assert any(top + h == size for top, _, h, _ in boxes)
    assert any(left + w == size for _, left, _, w in boxes)


def test_zoom_out_to_a_single_pixel():
    # a scale of 0.01 on an 8-pixel image rounds to 0 pixels: the image keeps at least one
    torch.manual_seed(0)
    out = BatchAugment(hflip=0.0, zoom_out=0.01, zoom_out_p=1.0)(_framed(64, 8))
    sides = [_box(out[i], torch.zeros(3))[2:] for i in range(64)]
    assert all(h == w and h >= 1 for h, w in sides)
    assert (1, 1) in sides


def test_zoom_out_of_every_image_and_of_none():
    torch.manual_seed(0)
    x = _framed(2, 16)
    out = BatchAugment(hflip=0.0, zoom_out=0.5, zoom_out_p=1.0)(x)
    assert all(_box(out[i], torch.zeros(3))[2] < 16 for i in range(2))  # both shrunk
    # scales in [0.99, 1] round to the full side: nothing to do, not even a copy
    assert BatchAugment(hflip=0.0, zoom_out=0.99, zoom_out_p=1.0)(x) is x


def test_zoom_out_backdrop_is_the_mean_of_the_outermost_ring():
    torch.manual_seed(0)
    size = 16
    x = torch.rand(32, 3, size, size)
    x[..., :, 0] += 2.0  # a left column unlike the rest, so a missing or doubled side shows
    ring = torch.ones(size, size, dtype=torch.bool)
    ring[1:-1, 1:-1] = False  # each border pixel once
    expected = x[..., ring].mean(-1)  # N x 3
    out = BatchAugment(hflip=0.0, zoom_out=0.3, zoom_out_p=1.0)(x)
    # a shrunk image leaves its top or its bottom row to the backdrop
    for i in range(32):
        if torch.equal(out[i], x[i]):
            continue  # a scale within half a pixel of 1: not shrunk
        for row in (out[i, :, 0, :], out[i, :, -1, :]):
            if torch.allclose(row, row[:, :1].expand_as(row)):
                torch.testing.assert_close(row[:, 0], expected[i])
                break
        else:
            pytest.fail("neither the top nor the bottom row is backdrop")


def test_zoom_out_is_antialiased():
    # a one-pixel checkerboard shrunk to ~1/3 is close to flat gray; without antialiasing
    # bilinear sampling picks single black or white pixels
    torch.manual_seed(0)
    size = 32
    board = ((torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2).float()
    x = board.expand(8, 3, size, size).clone()
    out = BatchAugment(hflip=0.0, zoom_out=0.3, zoom_out_p=1.0)(x)
    out = out[..., 2:-2, 2:-2]  # away from the border of the pasted image
    assert (out - 0.5).abs().max() < 0.25
