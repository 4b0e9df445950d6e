"""The seeded distribution shifts of facemask_vae.data.shifts, on small synthetic images."""

from __future__ import annotations

import pytest
import torch

from facemask_vae.data.shifts import SHIFTS, apply_shift, jpeg, off_centre, zoom_out

S = 40


def _faces(n: int = 6, seed: int = 0) -> torch.Tensor:
    """Smooth random colour images (uint8 n x 3 x S x S): blobs, so JPEG and blur act as on photos."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 5, 5, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(S, S), mode="bicubic", align_corners=False)
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def _square(size: int) -> torch.Tensor:
    """A centred white size x size square on black, 1 x 3 x S x S uint8."""
    x = torch.zeros(1, 3, S, S, dtype=torch.uint8)
    a = (S - size) // 2
    x[..., a : a + size, a : a + size] = 255
    return x


def _centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    """(row, column) centre of mass of each image's brightness, N x 2."""
    w = x.float().mean(1)  # N x S x S
    idx = torch.arange(S, dtype=torch.float32)
    total = w.sum((1, 2))
    return torch.stack([(w.sum(2) * idx).sum(1) / total, (w.sum(1) * idx).sum(1) / total], dim=1)


@pytest.mark.parametrize("name", list(SHIFTS))
def test_every_shift_keeps_shape_and_dtype_and_is_seeded(name):
    x = _faces()
    y = apply_shift(name, x, seed=3)
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert torch.equal(y, apply_shift(name, x, seed=3))  # the same seed, the same images
    assert not torch.equal(y, x)  # it changes them
    assert torch.equal(x, _faces())  # and leaves its input alone


@pytest.mark.parametrize("name", ["off_centre", "colour"])
def test_random_shifts_draw_from_the_seed(name):
    x = _faces(n=16)
    assert not torch.equal(apply_shift(name, x, seed=0), apply_shift(name, x, seed=1))


def test_an_empty_batch_and_unknown_names():
    empty = torch.zeros(0, 3, S, S, dtype=torch.uint8)
    for name in SHIFTS:
        assert apply_shift(name, empty).shape == empty.shape, name
    with pytest.raises(ValueError, match="unknown shift 'fog'"):
        apply_shift("fog", _faces())
    with pytest.raises(ValueError, match="uint8 N x 3 x H x W"):
        apply_shift("blur", _faces().float())


@pytest.mark.parametrize("scale", [0.6, 0.5])
def test_zoom_out_shrinks_the_content_by_the_factor(scale):
    x = _square(20)
    y = zoom_out(x, scale=scale)
    side = (y[0, 0] > 127).sum(1).max().item()  # the widest white row
    assert side == pytest.approx(20 * scale, abs=1)
    assert (y[0, 0] > 127).sum().item() == pytest.approx((20 * scale) ** 2, rel=0.15)
    assert y[..., 0, :].max() == 0  # the backdrop is the black border, not a copy of the face
    assert torch.allclose(_centre_of_mass(y), _centre_of_mass(x), atol=0.6)  # still centred


def test_zoom_out_fills_with_the_mean_border_colour():
    x = torch.zeros(1, 3, S, S, dtype=torch.uint8)
    x[:, 0] = 200  # a red image
    y = zoom_out(x, scale=0.5)
    assert torch.equal(y, x)  # the backdrop is the border colour: nothing to see


def test_grayscale_has_equal_channels():
    y = apply_shift("grayscale", _faces())
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])


def test_jpeg_changes_the_image_but_keeps_it_close():
    x = _faces()
    y = jpeg(x, quality=20)
    diff = (y.float() - x.float()).abs()
    assert diff.mean() > 0.2  # lossy
    assert diff.mean() < 12  # but the same picture
    better = jpeg(x, quality=95)
    assert (better.float() - x.float()).abs().mean() < diff.mean()


def test_off_centre_moves_the_centre_of_mass():
    x = _square(12).expand(32, -1, -1, -1).contiguous()
    y = off_centre(x, torch.Generator().manual_seed(0), fraction=0.25)
    moved = (_centre_of_mass(y) - _centre_of_mass(x)).abs()
    # a corner crop of 30 of 40 px moves the centre 5 px per axis, 20/3 px after the resize
    assert torch.allclose(moved, torch.full_like(moved, 5 * S / 30), atol=0.5)
    # every corner is used
    signs = {tuple(r) for r in torch.sign(_centre_of_mass(y) - _centre_of_mass(x)).int().tolist()}
    assert len(signs) == 4
    assert torch.equal(off_centre(x, fraction=0.0), x)  # no shift: the images unchanged


def test_blur_removes_fine_detail():
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (4, 3, S, S), generator=g, dtype=torch.uint8)
    y = apply_shift("blur", noise)
    assert y.float().std() < 0.5 * noise.float().std()
