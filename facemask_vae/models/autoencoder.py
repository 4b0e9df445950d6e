"""The model family as one plain ``nn.Module``: networks, likelihood, objective and inference.

:class:`Autoencoder` builds the encoder, decoder and likelihood from a
:class:`~facemask_vae.models.config.ModelConfig` and turns a batch's :class:`LossTerms` into the
:class:`Objective` training minimises. Subclasses (:class:`~facemask_vae.models.AE`,
:class:`~facemask_vae.models.VAE`) say how an image becomes latents and KL terms; the inference
API (``encode``/``decode``/``reconstruct``/``sample``/``interpolate``) comes from
:class:`~facemask_vae.models.inference.InferenceAPI`. No Lightning here: training lives in
:mod:`facemask_vae.lit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from facemask_vae.gaussian import apply_free_bits, kl_balance_weights
from facemask_vae.losses import Likelihood
from facemask_vae.models.config import ModelConfig
from facemask_vae.models.inference import InferenceAPI
from facemask_vae.models.networks import Decoder, Encoder
from facemask_vae.sampling import SamplingStats


@dataclass
class LossTerms:
    """Per-image terms of one forward pass, in nats: ``recon`` (B), the decoder's raw ``out``,
    the top code's mean ``mu`` (B x D), ``kls`` (one B x G tensor per latent level, top first)
    and ``z``, the top code the decoder saw (a posterior sample for VAEs)."""

    recon: torch.Tensor
    out: torch.Tensor
    mu: torch.Tensor
    kls: list[torch.Tensor] = field(default_factory=list)
    z: torch.Tensor | None = None

    def kl_per_level(self) -> torch.Tensor:
        """B x levels: each image's KL of every latent level (B x 0 without a KL)."""
        if not self.kls:
            return self.recon.new_zeros(self.recon.shape[0], 0)
        return torch.stack([k.sum(dim=1) for k in self.kls], dim=1)


@dataclass
class Objective:
    """A batch's objective and what is reported beside it, as batch means in nats per image:
    ``loss`` = recon + beta x (the KL with free bits and balancing); ``kl`` and ``elbo`` are the
    plain ones, whatever beta, free bits and balancing do to the loss."""

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    kl_levels: list[torch.Tensor]

    @property
    def elbo(self) -> torch.Tensor:
        return -(self.recon + self.kl)


class Autoencoder(InferenceAPI, nn.Module):
    """Encoder -> latents -> decoder -> p(x | z); ``has_kl`` says whether there is a KL at all."""

    has_kl: ClassVar[bool] = False

    def __init__(self, config: ModelConfig | None = None, **options: Any) -> None:
        super().__init__()
        if config is None:
            config = ModelConfig.from_options(options)
        elif options:
            raise TypeError(f"give a ModelConfig or options, not both (got {sorted(options)})")
        self.config = c = config
        self.image_size, self.latent_dim = c.image_size, c.latent_dim
        self.encoder = Encoder(c.widths, c.block, c.norm)
        flat = c.widths[-1] * (c.image_size // 2**c.depth) ** 2
        self.to_latent = nn.Linear(flat, c.latent_dim * (2 if self.has_kl else 1))
        self.decoder = Decoder(
            c.widths,
            c.latent_dim,
            c.image_size,
            c.block,
            c.norm,
            skip=c.skip,
            skip_dropout=c.skip_dropout,
            skip_latent_channels=c.skip_latent_channels,
            skip_posterior=c.skip_posterior,
            skip_levels=c.skip_levels,
            decoder_blocks=c.decoder_blocks,
        )
        #: latent dimensions per KL term, top first (what KL balancing divides by)
        self.latent_sizes = [c.latent_dim, *self.decoder.skip_latent_sizes()]
        self.likelihood = Likelihood(c.likelihood, c.sigma)
        #: BN statistics for sampling (not saved: re-estimated on demand), and how they are made:
        #: batches x batch prior samples through the decoder, as NVAE does
        self.sampling_stats = SamplingStats()
        self.sampling_bn_batches, self.sampling_bn_batch = 20, 250
        #: numbers per image (3 x S x S): the objective is optimised per dimension
        self.n_dims = 3 * self.image_size**2

    # ---- what subclasses define -------------------------------------------------------------
    def loss_terms(self, x: torch.Tensor) -> LossTerms:
        """The per-image terms of the negative ELBO for images ``x`` (B x 3 x S x S in [0, 1])."""
        raise NotImplementedError

    def encode_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Latent codes of every level, top first (posterior means for VAEs)."""
        raise NotImplementedError

    def top_code(self, x: torch.Tensor) -> torch.Tensor:
        """The top latent code alone (B x latent_dim), without the skip levels' decoder pass."""
        return self.encode_all(x)[0]

    # ---- the objective ----------------------------------------------------------------------
    def objective(self, terms: LossTerms, beta: float = 1.0) -> Objective:
        """The batch's negative ELBO with ``beta`` on the KL, as training minimises it."""
        recon = terms.recon.mean()
        kl_levels = [k.sum(dim=1).mean() for k in terms.kls]
        kl = torch.stack(kl_levels).sum() if kl_levels else recon.new_zeros(())
        loss = recon + beta * self._kl_objective(terms.kls, kl_levels, kl, beta)
        return Objective(loss=loss, recon=recon, kl=kl, kl_levels=kl_levels)

    def _kl_objective(
        self,
        kls: list[torch.Tensor],
        kl_levels: list[torch.Tensor],
        kl: torch.Tensor,
        beta: float,
    ) -> torch.Tensor:
        """The KL the optimiser sees: free-bit floors per level (the top's may differ) and, while
        beta < 1, NVAE's KL balancing across levels. The reported ELBO always uses the plain KL."""
        if not kls:
            return kl
        c = self.config
        floors = [c.free_bits] * len(kls)
        if c.free_bits_top is not None:
            floors[0] = c.free_bits_top
        terms = torch.stack(
            [apply_free_bits(k, f, c.free_bits_per) for k, f in zip(kls, floors, strict=True)]
        )
        if c.kl_balance and beta < 1 and len(kls) > 1:
            sizes = torch.tensor(self.latent_sizes, dtype=torch.float32)
            terms = terms * kl_balance_weights(torch.stack(kl_levels), sizes)
        return terms.sum()

    # ---- what a checkpoint needs to rebuild it -----------------------------------------------
    def spec(self) -> dict[str, Any]:
        """``{"_target_": class, **options}``: plain containers that rebuild this model."""
        cls = type(self)
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **self.config.to_dict()}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
