"""What bf16 or TF32 hardware would do to the Inception features, emulated on any CPU.

A CPU without bf16 units runs bf16 autocast far slower than float32 (29x for the TorchScript
network, docs/performance.md), and only a GPU runs TF32. Both formats round the convolutions'
inputs and weights and accumulate in float32; bf16 autocast also rounds every conv and pooling
output, since its activations are stored in bf16. :func:`emulate` reproduces that rounding
around float32 convolutions, so the FID error of either format can be measured at float32 speed
(``benchmarks/fid_accuracy.py``). The bf16 emulation models CPU autocast and is checked against
it in ``tests/test_fid_rounding.py`` (it differs only in the order of float32 accumulation);
cuDNN's bf16 convolutions add the bias after rounding, so on a GPU it is close, not exact. The
TF32 rounding (to nearest, ties to even) is assumed, not checked against a GPU. Inference only:
the hooks round values, not gradients.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

#: TF32 keeps 10 of float32's 23 mantissa bits
_TF32_DROPPED_BITS = 13


def round_bf16(x: torch.Tensor) -> torch.Tensor:
    """float32 -> the nearest bf16 value (ties to even), kept as float32. Same shape."""
    return x.to(torch.bfloat16).to(x.dtype)


def round_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 -> the nearest TF32 value (10 mantissa bits, ties to even), kept as float32.

    Works on the bit pattern: adding half a unit of the last kept bit (less one when that bit is
    even) and clearing the dropped bits rounds to nearest, ties to even. Same shape and memory
    layout; infinities stay as they are; NaNs are not handled (activations here are finite).
    """
    bits = x.view(torch.int32)
    out = (bits >> _TF32_DROPPED_BITS).bitwise_and_(1)  # 1 where the last kept bit is odd
    out.add_(bits).add_((1 << (_TF32_DROPPED_BITS - 1)) - 1)
    return out.bitwise_and_(-(1 << _TF32_DROPPED_BITS)).view(torch.float32)


ROUND: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"bf16": round_bf16, "tf32": round_tf32}


def emulate(net: nn.Module, fmt: str) -> nn.Module:
    """A copy of ``net`` whose convolutions (and, for bf16, poolings) round as ``fmt`` would.

    Conv weights and biases are rounded once; each conv's input is rounded before it runs. For
    bf16 (autocast: activations stored in bf16) every conv, average- and max-pool output is
    rounded too; ReLU and concatenation of rounded values need no rounding. TF32 rounds only
    what the tensor cores read: conv inputs and weights.
    """
    if fmt not in ROUND:
        raise ValueError(f"fmt must be one of {tuple(ROUND)}, got {fmt!r}")
    rnd = ROUND[fmt]
    net = copy.deepcopy(net)

    def round_input(_module: nn.Module, args: tuple) -> tuple:
        return (rnd(args[0]), *args[1:])

    def round_output(_module: nn.Module, _args: tuple, out: torch.Tensor) -> torch.Tensor:
        return rnd(out)

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            with torch.no_grad():
                m.weight.copy_(rnd(m.weight))
                if m.bias is not None and fmt == "bf16":  # autocast casts the bias too
                    m.bias.copy_(rnd(m.bias))
            m.register_forward_pre_hook(round_input)
            if fmt == "bf16":
                m.register_forward_hook(round_output)
        elif fmt == "bf16" and isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
            m.register_forward_hook(round_output)
    return net
