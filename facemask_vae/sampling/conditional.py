"""One class's draws from any sampler: rejection by a mask attribute's probe, with a margin.

:class:`ClassConditionalSampler` keeps the base sampler's draws the probe assigns to the class
with ``confidence`` (P above it for a mask, below one minus it without), the default
:data:`CONFIDENCE`: what ``run.sample(n, mask=...)`` draws. The decoder normalises them with
the base sampler's BN statistics (``bn_source``).
"""

from __future__ import annotations

from typing import Any

import torch

from facemask_vae.sampling.attribute import MaskAttribute
from facemask_vae.sampling.samplers import LatentSampler

#: the probe confidence a class-conditional draw must reach (P > c, or P < 1 - c)
CONFIDENCE = 0.99


def check_confidence(confidence: float) -> float:
    """A class-conditional draw's confidence, refused outside [0.5, 1) with the fix."""
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise ValueError(f"confidence must be a number in [0.5, 1), got {confidence!r}")
    if not 0.5 <= confidence < 1:
        raise ValueError(
            f"confidence must lie in [0.5, 1), got {confidence}: e.g. 0.9 (0.5 keeps every draw "
            "on the class's side of the probe's boundary)"
        )
    return float(confidence)


class ClassConditionalSampler(LatentSampler):
    """``base``'s draws that ``attribute``'s probe assigns to one class with ``confidence`` (P >
    c for ``mask``, P < 1 - c without): the base density cut to that side of the probe's
    boundary, a margin away from it. Draws until ``n`` are kept, at most ``max_rounds`` rounds
    of 2n; fails clearly if the class is that rare under ``base``."""

    def __init__(
        self,
        base: LatentSampler,
        attribute: MaskAttribute,
        mask: bool,
        max_rounds: int = 50,
        confidence: float = CONFIDENCE,
    ) -> None:
        super().__init__(base.all_levels)
        confidence = check_confidence(confidence)
        if base.dim is None:
            raise ValueError(f"the {base.name} sampler is not fitted")
        want = base.dim if base.all_levels == attribute.probe_all_levels else None
        if attribute.probe_dim != want:
            raise ValueError(
                f"the attribute's probe reads {attribute.probe_dim}-d codes "
                f"({'every level' if attribute.probe_all_levels else 'the top latent'}), the "
                f"{base.name} sampler draws {base.dim}-d ones: fit them to the same codes"
            )
        self.base, self.attribute, self.mask = base, attribute, bool(mask)
        self.kind, self.dim, self.max_rounds = base.kind, base.dim, int(max_rounds)
        self.confidence = float(confidence)

    @property
    def name(self) -> str:
        cut = f"P > {self.confidence:g}" if self.mask else f"P < {1 - self.confidence:g}"
        return f"{self.base.name} | {'mask' if self.mask else 'no mask'} ({cut})"

    @property
    def bn_source(self) -> LatentSampler:
        """The base sampler: BN statistics of one class's draws alone would normalise away what
        sets the class apart (its mean activations), so one-class draws are decoded with the
        statistics of the population they are cut from."""
        return self.base.bn_source

    @property
    def fingerprint(self) -> str:
        return (
            f"{self.base.fingerprint}|mask={self.mask}|p={self.confidence!r}"
            f"|probe={self.attribute.probe_digest}"
        )

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        kept: list[torch.Tensor] = []
        have = 0
        for _ in range(self.max_rounds):
            z = self.base.sample(2 * n, temperature, generator, device)
            p = self.attribute.p_mask(z)
            z = z[(p > self.confidence) if self.mask else (p < 1 - self.confidence)]
            kept.append(z)
            have += len(z)
            if have >= n:
                return torch.cat(kept)[:n]
        raise RuntimeError(
            f"{self.name}: {have} of {2 * n * self.max_rounds} draws fell in the class; the "
            "sampler rarely draws it at this temperature with that confidence: pass a lower "
            "one (run.sample(..., confidence=0.9); eval: edit_confidence=0.9)"
        )

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError("a class-conditional sampler is built, not saved")
