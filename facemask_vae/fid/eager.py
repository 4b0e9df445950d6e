"""The packaged FID Inception rebuilt as plain ``nn.Module`` s: the same features, faster.

The packaged network is TorchScript (NVIDIA's port of the TF-FID graph), which runs each conv,
its BatchNorm and its ReLU as separate ops in contiguous memory. :func:`eager_inception` rebuilds
it from the script's own weights and pooling constants with each BatchNorm folded into its
convolution, so that it can run in channels_last (oneDNN's fast layout) and be compiled or
quantized; its outputs match the script's to float32 rounding (about 2e-6 relative), and
``benchmarks/fid_accuracy.py`` checks FID itself. The script stays the ground truth in the tests.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from facemask_vae.fid.weights import load_script

#: the script's BatchNorm epsilon (every conv block of the TF port uses it)
BN_EPS = 1e-3


def _const(value: torch._C.Value):
    """A graph input's constant value, lists of constants included."""
    node = value.node()
    if node.kind() == "prim::ListConstruct":
        return [_const(v) for v in node.inputs()]
    return value.toIValue()


def _conv(script: torch.jit.ScriptModule) -> nn.Sequential:
    """Conv + BatchNorm (no scale) + ReLU, with the BatchNorm folded into the conv's bias."""
    w, beta = script.weight.detach(), script.beta.detach()
    inv = (script.var.detach() + BN_EPS).rsqrt()
    stride, padding = script.stride, script.padding
    conv = nn.Conv2d(
        w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=stride, padding=padding, bias=True
    )
    with torch.no_grad():
        conv.weight.copy_(w * inv[:, None, None, None])
        conv.bias.copy_(beta - script.mean.detach() * inv)
    return nn.Sequential(conv, nn.ReLU())


def _pool(script: torch.jit.ScriptModule) -> nn.Module:
    """The max or average pool a parameterless script module runs, with its constants (read from
    its own graph: max pooling is a call of ``F._max_pool2d``, average pooling an aten op)."""
    for node in script.graph.nodes():
        inputs = list(node.inputs())
        # F.max_pool2d stays a call of the scripted function: its first input is the function,
        # whose type names it (__torch__.torch.nn.functional._max_pool2d)
        if node.kind() == "prim::CallFunction" and "max_pool2d" in str(inputs[0].type()):
            kernel, stride, padding, dilation, ceil = (_const(v) for v in inputs[2:7])
            return nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil)
        if node.kind() == "aten::avg_pool2d":
            kernel, stride, padding, ceil, include_pad = (_const(v) for v in inputs[1:6])
            return nn.AvgPool2d(kernel, stride, padding, ceil, count_include_pad=include_pad)
    raise ValueError(f"no pooling op in {script.original_name}")


class _Concat(nn.ModuleDict):
    """Branches of one input, concatenated on channels (Inception's mixed blocks), in the order
    of the script's children, which is the order of its ``cat``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self.values()], 1)


class _MixedE(nn.ModuleDict):
    """The last two mixed blocks, whose 3x3 branches split into 1x3 and 3x1 halves."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self["tower_conv"](x)
        b = self["tower_1_conv_1"](self["tower_1_conv"](x))
        branches = [
            self["conv"](x),
            self["tower_mixed_conv"](a),
            self["tower_mixed_conv_1"](a),
            self["tower_1_mixed_conv"](b),
            self["tower_1_mixed_conv_1"](b),
            self["tower_2_conv"](self["tower_2_pool"](x)),
        ]
        return torch.cat(branches, 1)


def _mirror(script: torch.jit.ScriptModule) -> nn.Module:
    """The eager module of one script module: a conv block, a pool, a concatenating mixed block
    or a chain of children, told apart by the script's attributes and graph."""
    children = dict(script.named_children())
    if hasattr(script, "weight") and hasattr(script, "beta"):
        return _conv(script)
    if not children:
        return _pool(script)
    mirrored = {name: _mirror(child) for name, child in children.items()}
    if "tower_conv" in children:
        return _MixedE(mirrored)
    if any(n.kind() == "aten::cat" for n in script.graph.nodes()):
        return _Concat(mirrored)
    return nn.Sequential(OrderedDict(mirrored))  # layers and towers: their children in order


class EagerInception(nn.Module):
    """The packaged TorchScript Inception as plain modules: (N, 3, 299, 299) in the TF input range
    -> (N, 2048) pool features."""

    def __init__(self, script: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.layers = _mirror(script.net.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).flatten(1)


def eager_inception(path: Path) -> EagerInception:
    """:class:`EagerInception` from the packaged TorchScript file, in eval mode."""
    return EagerInception(load_script(path)).eval()
