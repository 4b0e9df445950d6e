"""The typed config of the model family: every option and its default, in one place.

``conf/model/*.yaml`` extend :class:`ModelNode` (registered with Hydra by
:func:`facemask_vae.config.register_schemas`), so a YAML file only says how an option differs
from the defaults here, a mistyped key or value fails when the config is composed, and
:meth:`ModelConfig.__post_init__` checks what types cannot, with a fix to try.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from facemask_vae.losses import LIKELIHOODS
from facemask_vae.models.layers import BLOCKS, NORMS

SKIPS = ("none", "deterministic", "variational")
POSTERIORS = ("block", "conv")
FREE_BITS_PER = ("dim", "group")


@dataclass
class ModelConfig:
    """What an AE, a VAE or a U-Net VAE is made of (the keys of ``model.*``)."""

    # the network: one stride-2 stage per width, plain or residual blocks
    image_size: int = 64
    latent_dim: int = 128
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    block: str = "plain"  # plain | resnet
    norm: str = "batch"  # batch | group | none
    decoder_blocks: int = 1  # conv blocks per decoder resolution (capacity top-down)
    # p(x | z)
    likelihood: str = "gaussian_learned"  # gaussian_learned | gaussian | bernoulli
    sigma: float = 0.1  # fixed sigma of `gaussian`, initial sigma of `gaussian_learned`
    # U-Net skips (VAE only)
    skip: str = "none"  # none | deterministic | variational
    skip_latent_channels: int = 4  # channels of each spatial skip latent (variational)
    skip_levels: list[int] | None = None  # decoder levels with a skip, 0 = coarsest; None: all
    skip_posterior: str = "conv"  # q(z_l) through one conv or a conv block (variational)
    skip_dropout: float = 0.0  # per-image probability of dropping a skip (deterministic)
    # the KL in the objective (VAE only; the reported ELBO never changes)
    free_bits: float = 0.0  # KL floor in nats (0: off)
    free_bits_per: str = "dim"  # dim | group
    free_bits_top: float | None = None  # a floor for the top latent alone (None: free_bits)
    kl_balance: bool = False  # NVAE's KL balancing across latent levels while beta < 1

    def __post_init__(self) -> None:
        self.widths = [int(w) for w in self.widths]
        if self.skip_levels is not None:
            self.skip_levels = sorted({int(v) for v in self.skip_levels})
        for key, value, allowed in (
            ("block", self.block, BLOCKS),
            ("norm", self.norm, NORMS),
            ("likelihood", self.likelihood, LIKELIHOODS),
            ("skip", self.skip, SKIPS),
            ("skip_posterior", self.skip_posterior, POSTERIORS),
            ("free_bits_per", self.free_bits_per, FREE_BITS_PER),
        ):
            _require(value in allowed, f"model.{key} must be one of {allowed}, got {value!r}")
        _require(
            self.latent_dim >= 1,
            f"model.latent_dim must be >= 1, got {self.latent_dim}: try model.latent_dim=128",
        )
        self._check_geometry()
        _require(self.sigma > 0, f"model.sigma must be > 0, got {self.sigma}")
        _require(
            self.decoder_blocks >= 1,
            f"model.decoder_blocks must be >= 1, got {self.decoder_blocks}",
        )
        _require(
            0.0 <= self.skip_dropout <= 1.0,
            f"model.skip_dropout is a probability in [0, 1], got {self.skip_dropout}",
        )
        _require(
            self.skip_latent_channels >= 1,
            f"model.skip_latent_channels must be >= 1, got {self.skip_latent_channels}",
        )
        levels = self.skip_levels
        depth = len(self.widths)
        _require(
            levels is None or (bool(levels) and levels[0] >= 0 and levels[-1] < depth),
            f"model.skip_levels lists decoder levels 0 (coarsest, {self.image_size // 2**depth} "
            f"px) to {depth - 1} (finest); got {levels}. Use null for all of them.",
        )
        _require(
            self.free_bits >= 0 and (self.free_bits_top is None or self.free_bits_top >= 0),
            f"model.free_bits and model.free_bits_top must be >= 0, got {self.free_bits} and "
            f"{self.free_bits_top}",
        )

    def _check_geometry(self) -> None:
        """An image size the stride-2 stages can halve down evenly, with a fix to try."""
        depth = len(self.widths)
        _require(depth >= 1, f"model.widths needs at least one stage, got {self.widths}")
        size = self.image_size
        if size % (2**depth) != 0 or size // (2**depth) < 1:
            ok = [s for s in (32, 64, 96, 128, 256) if s % (2**depth) == 0]
            raise ValueError(
                f"data.image_size={size} is not divisible by 2**depth = {2**depth} (depth = "
                f"len(model.widths) = {depth}): use an image size such as {ok}, or fewer widths"
            )

    @property
    def depth(self) -> int:
        return len(self.widths)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ModelConfig:
        """A config from ``model.*`` options, ignoring the keys Hydra adds (``_target_``, ``name``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        node_keys = {f.name for f in dataclasses.fields(ModelNode)} - names
        unknown = sorted(k for k in options if k not in names and k not in node_keys)
        if unknown:
            raise ValueError(f"unknown model options {unknown}; the options are {sorted(names)}")
        return cls(**{k: v for k, v in options.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (what a checkpoint stores, loadable with weights_only=True)."""
        return dataclasses.asdict(self)


@dataclass
class ModelNode(ModelConfig):
    """The schema of the ``model`` config group: a :class:`ModelConfig` with the class to build
    and the name runs are known by."""

    _target_: str = MISSING  # conf/model/<name>.yaml says which class
    name: str = MISSING


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
