"""The mask label in a model's codes: what editing and class-conditional sampling act on.

:class:`MaskAttribute` holds, fitted to training codes and their labels, the class means of the
codes at every latent level (top latent, then each skip level, C x H x W) and a logistic probe on
the codes a run's sampler draws (flattened, every level or the top latent alone). The
difference of the class means at a level is that level's *mask direction*: adding it puts a mask
on, subtracting it takes one off (:meth:`MaskAttribute.shift`). The probe's P(mask | code)
turns any sampler into a class-conditional one by rejection
(:class:`~facemask_vae.sampling.conditional.ClassConditionalSampler`):
it keeps the draws the probe assigns to the class with confidence (P above ``confidence`` for a
mask, below 1 - ``confidence`` without; 0.99 by default, where the domain CNN agrees with the
probe far more often than at 0.5). Where the mask sits is learnt from the data too: the upper
face is where the two classes' mean images differ least (:func:`upper_face_rows`), and an edit
moves the spatial levels' codes below it only (``region="lower"``), keeping the upper face.
There a mean shift alone keeps the face's own mask or mouth in its codes, so an edit also lets
go of part of it (``keep``, :data:`KEEP`): the face's offset from its class's mean is shrunk.
Everything is kept as float32 tensors, saved and loaded as plain state (``torch.load`` with
``weights_only=True``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: which latent levels an edit moves: every level, or the top latent alone
LEVELS = ("all", "top")
#: where on the spatial levels an edit moves the codes: below the upper face, or everywhere
REGIONS = ("lower", "all")
#: how much of a face's own spatial code (its offset from the mean of the class it is taken
#: from) an edit keeps where it acts: 1 is the plain mean shift, 0 keeps none of it
KEEP = 0.5


def upper_face_rows(with_mask: torch.Tensor, without: torch.Tensor) -> tuple[int, torch.Tensor]:
    """How many rows from the top make the upper face, where the two classes' mean images
    (3 x H x W in [0, 1]) differ least: the cut of a two-step fit to the per-row mean absolute
    difference (least squares, the cut between H/4 and 3H/4, the upper step the lower one).
    Returns the cut and the per-row difference (H)."""
    diff = (with_mask - without).abs().mean(dim=(0, 2))
    h, best = len(diff), None
    for r in range(max(1, h // 4), 3 * h // 4 + 1):
        up, down = diff[:r], diff[r:]
        sse = float(((up - up.mean()) ** 2).sum() + ((down - down.mean()) ** 2).sum())
        if up.mean() < down.mean() and (best is None or sse < best[0]):
            best = (sse, r)
    if best is None:
        raise ValueError("the classes' mean images differ most at the top: no upper face to keep")
    return best[1], diff


@torch.no_grad()
def class_mean_images(
    images: torch.Tensor, labels: torch.Tensor, to_float: Any, batch: int = 512
) -> list[torch.Tensor]:
    """The mean image of each class (0: without a mask, 1: with), 3 x H x W in [0, 1], of uint8
    ``images`` (N x 3 x H x W) summed batch by batch."""
    labels = torch.as_tensor(labels).cpu()
    out = []
    for k in (0, 1):
        chosen = images[labels == k]
        if len(chosen) == 0:
            raise ValueError(f"no images of class {k}: both classes are needed")
        total = sum(
            to_float(chosen[i : i + batch]).float().sum(0).cpu()
            for i in range(0, len(chosen), batch)
        )
        out.append(total / len(chosen))
    return out


def lower_face_start(images: torch.Tensor, labels: torch.Tensor, to_float: Any) -> float:
    """Where the lower face (where masks sit) begins, as a fraction of the image height: the
    upper-face cut of the class mean images of uint8 ``images`` with their ``labels``."""
    without, with_mask = class_mean_images(images, labels, to_float)
    return upper_face_rows(with_mask, without)[0] / with_mask.shape[-2]


def check_edit(levels: str, region: str, keep: float = KEEP) -> None:
    """Refuse an edit's ``levels``, ``region`` or ``keep`` that does not exist, naming the
    choices."""
    if levels not in LEVELS:
        raise ValueError(f"levels must be one of {LEVELS}, got {levels!r}")
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    if isinstance(keep, bool) or not isinstance(keep, int | float) or not 0 <= keep <= 1:
        raise ValueError(
            f"keep must be a number in [0, 1], got {keep!r}: 1 keeps the face's own code (the "
            "plain mean shift), 0 starts from the class mean (at strength 1: the target's)"
        )


@dataclass
class MaskAttribute:
    """Class means of every level's codes (``means[label][level]``, label 0: without a mask, 1:
    with), a logistic probe on ``probe_dim``-d flattened codes (standardised by ``center`` and
    ``scale``, then ``weight``, ``bias``) and where the lower face begins (``lower_start``, a
    fraction of the height; None when fitted without images)."""

    means: list[list[torch.Tensor]]
    center: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    probe_all_levels: bool
    lower_start: float | None = None

    def __post_init__(self) -> None:
        if self.lower_start is not None and not 0 < float(self.lower_start) < 1:
            raise ValueError(f"lower_start must lie in (0, 1), got {self.lower_start}")

    @property
    def probe_dim(self) -> int:
        return int(self.weight.numel())

    def direction(self, level: int) -> torch.Tensor:
        """Level ``level``'s mask direction: mean code with a mask minus mean code without."""
        return self.means[1][level] - self.means[0][level]

    def shift(
        self,
        codes: list[torch.Tensor],
        mask: bool,
        strength: float = 1.0,
        levels: str = "all",
        region: str = "lower",
        keep: float = KEEP,
    ) -> list[torch.Tensor]:
        """Codes of every level (B x ... each, top first) moved ``strength`` class-mean
        differences towards ``mask`` (True: with a mask), at every level or the top alone; on
        spatial levels (B x C x H x W) below the upper face only (``region="lower"``) or
        everywhere (``"all"``), keeping ``keep`` of each face's offset from the mean of the class
        it is taken from (without a mask for ``mask=True``) there; the top latent keeps all."""
        check_edit(levels, region, keep)
        if len(codes) != len(self.means[0]):
            raise ValueError(
                f"{len(codes)} levels of codes given, the attribute was fitted to "
                f"{len(self.means[0])}"
            )
        sign = 1.0 if mask else -1.0
        out = []
        for i, c in enumerate(codes):
            if levels == "all" or i == 0:
                step = sign * float(strength) * self.direction(i).to(c)
                if c.dim() == 4 and keep != 1:  # spatial: let go of part of the face's own code
                    source = self.means[0 if mask else 1][i].to(c)
                    step = step - (1.0 - float(keep)) * (c - source)
                c = c + self._region(step, region)
            out.append(c)
        return out

    def _region(self, step: torch.Tensor, region: str) -> torch.Tensor:
        """``step`` (C x H x W or B x C x H x W) with its rows above the lower face zeroed, on a
        spatial level."""
        if region == "all" or step.dim() < 3:
            return step
        if self.lower_start is None:
            raise ValueError(
                "this attribute does not know where the lower face begins (fitted without "
                "images, or the classes' mean images showed no upper face): pass region='all', "
                "or fit it with lower_start=lower_face_start(images, labels, to_float)"
            )
        out = step.clone()
        out[..., : math.floor(self.lower_start * step.shape[-2] + 0.5), :] = 0  # half up
        return out

    @property
    def spatial(self) -> bool:
        """Whether any level's codes are spatial (C x H x W): where ``region`` and ``keep``
        matter."""
        return any(m.dim() == 3 for m in self.means[0])

    @property
    def probe_digest(self) -> str:
        """A digest of the probe: class-conditional draws depend on it."""
        parts = (self.center, self.scale, self.weight, self.bias)
        return hashlib.sha1(b"".join(t.numpy().tobytes() for t in parts)).hexdigest()[:12]

    def p_mask(self, flat: torch.Tensor) -> torch.Tensor:
        """P(with mask) of flattened codes (N x ``probe_dim``) under the probe: N."""
        if flat.shape[-1] != self.probe_dim:
            raise ValueError(f"the probe reads {self.probe_dim}-d codes, got {flat.shape[-1]}-d")
        x = (flat.float() - self.center.to(flat.device)) / self.scale.to(flat.device)
        return torch.sigmoid(x @ self.weight.to(flat.device) + self.bias.to(flat.device))

    def state_dict(self) -> dict[str, Any]:
        return {
            "means": [[t.clone() for t in level] for level in self.means],
            "center": self.center,
            "scale": self.scale,
            "weight": self.weight,
            "bias": self.bias,
            "probe_all_levels": self.probe_all_levels,
            "lower_start": self.lower_start,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MaskAttribute:
        means = [
            [torch.as_tensor(t, dtype=torch.float32) for t in level] for level in state["means"]
        ]
        if len(means) != 2 or len(means[0]) != len(means[1]) or not means[0]:
            raise ValueError("means must hold the same levels for two classes")
        if any(a.shape != b.shape for a, b in zip(*means, strict=True)):
            raise ValueError("the two classes' means differ in shape")
        parts = {k: torch.as_tensor(state[k], dtype=torch.float32) for k in ("center", "scale")}
        parts |= {k: torch.as_tensor(state[k], dtype=torch.float32) for k in ("weight", "bias")}
        dims = {parts[k].numel() for k in ("center", "scale", "weight")}
        if len(dims) != 1 or parts["bias"].numel() != 1:
            raise ValueError("the probe's center, scale and weight must have one length")
        lower = state.get("lower_start")
        return cls(
            means=means,
            probe_all_levels=bool(state["probe_all_levels"]),
            lower_start=None if lower is None else float(lower),
            **parts,
        )


def fit_attribute(
    levels: list[torch.Tensor],
    labels: torch.Tensor,
    probe_all_levels: bool,
    seed: int = 0,
    lower_start: float | None = None,
) -> MaskAttribute:
    """Fit to codes of every level (N x ... each, top first) and labels (N, 1: with mask): the
    class means, and a logistic regression (scikit-learn, standardised inputs) on the flattened
    codes of every level or of the top alone; ``lower_start`` (:func:`lower_face_start`) is
    kept for region-restricted edits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    y = torch.as_tensor(labels).long().cpu()
    if len(levels) == 0 or any(len(c) != len(y) for c in levels):
        raise ValueError("fit_attribute needs codes of every level, one row per label")
    counts = torch.bincount(y, minlength=2)
    if len(counts) != 2 or int(counts.min()) < 2:
        raise ValueError(f"each class needs at least 2 codes, got {counts.tolist()}")
    levels = [c.detach().float().cpu() for c in levels]
    means = [[c[y == k].mean(0) for c in levels] for k in (0, 1)]
    flat = torch.cat([c.flatten(1) for c in (levels if probe_all_levels else levels[:1])], dim=1)
    scaler = StandardScaler().fit(flat.numpy())
    x = scaler.transform(flat.numpy())
    clf = LogisticRegression(max_iter=1000, C=1.0, random_state=seed).fit(x, y.numpy())
    return MaskAttribute(
        means=means,
        center=torch.as_tensor(scaler.mean_, dtype=torch.float32),
        scale=torch.as_tensor(np.where(scaler.scale_ > 0, scaler.scale_, 1.0), dtype=torch.float32),
        weight=torch.as_tensor(clf.coef_[0], dtype=torch.float32),
        bias=torch.as_tensor(clf.intercept_[0], dtype=torch.float32),
        probe_all_levels=probe_all_levels,
        lower_start=lower_start,
    )
