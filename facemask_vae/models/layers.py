"""Convolutional building blocks shared by every encoder and decoder: plain or residual, any norm."""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("batch", "group", "none")
BLOCKS = ("plain", "resnet")


def make_norm(kind: str, channels: int) -> nn.Module:
    """A normalisation layer by name; GroupNorm uses up to 8 groups that divide ``channels``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"model.norm must be one of {NORMS}, got {kind!r}")


class ConvBlock(nn.Module):
    """conv3x3 -> norm -> SiLU; with ``block='resnet'`` two of them around an identity shortcut."""

    def __init__(self, in_ch: int, out_ch: int, block: str = "plain", norm: str = "batch") -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"model.block must be one of {BLOCKS}, got {block!r}")
        self.residual = block == "resnet"
        bias = norm == "none"
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias), make_norm(norm, out_ch), nn.SiLU()
        )
        if self.residual:
            self.body.extend(
                [nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=bias), make_norm(norm, out_ch)]
            )
            self.shortcut = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)
            self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.residual:
            return self.act(self.body(x) + self.shortcut(x))
        return self.body(x)


class Down(nn.Module):
    """One encoder stage: a stride-2 conv halving the resolution, then a block at the new one.

    Downsampling first keeps full-resolution work to the stem: on a CPU the wide-and-large
    early layers cost most of the time and add little.
    """

    def __init__(self, in_ch: int, out_ch: int, block: str, norm: str) -> None:
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1), make_norm(norm, out_ch), nn.SiLU()
        )
        self.block = ConvBlock(out_ch, out_ch, block, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.down(x))


class Up(nn.Module):
    """One decoder stage: a block at the current resolution, then nearest x2 upsampling + conv.

    Nearest + conv instead of a transposed conv avoids checkerboard artefacts in samples.
    """

    def __init__(self, in_ch: int, out_ch: int, block: str, norm: str, n_blocks: int = 1) -> None:
        super().__init__()
        self.block = ConvBlock(in_ch, in_ch, block, norm)
        # more capacity at this resolution (model.decoder_blocks); none by default, so the
        # parameter names of older checkpoints are unchanged
        self.extra = nn.Sequential(
            *(ConvBlock(in_ch, in_ch, block, norm) for _ in range(n_blocks - 1))
        )
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            make_norm(norm, out_ch),
            nn.SiLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.extra(self.block(x)))
