"""The convolutional encoder and decoder every model uses, with optional U-Net skip connections.

Resolution plan for ``image_size`` S and ``depth`` D: the encoder's stage l (1..D) halves the
resolution and yields a feature h_l at S / 2**l; the top latent z is read from h_D. The decoder
walks back up and, at each resolution S / 2**l, may merge a skip from h_l:

* ``skip='none'``: no skips (a plain VAE / AE).
* ``skip='deterministic'``: h_l itself, dropped as a whole tensor per image with probability
  ``skip_dropout`` while training and absent (zeros) when sampling.
* ``skip='variational'``: a small spatial latent z_l with posterior q(z_l | h_l, decoder state)
  and a top-down prior p(z_l | decoder state), as in Ladder VAE / NVAE. Sampling draws every
  level from its prior, so the model stays generative, and each level pays its own KL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from facemask_vae.gaussian import kl_normal, reparameterize, soft_clamp
from facemask_vae.models.layers import ConvBlock, Down, Up

LOGVAR_BOUND = 10.0  # exp(+-10) spans 4.5e-5 .. 2.2e4 in variance: no overflow, ample range


@dataclass
class SkipLatent:
    """One variational skip level of a decoder pass: the z_l it used (B x C x H x W) and the
    (mu, logvar) of its top-down prior and, when reconstructing, of its posterior (float32)."""

    z: torch.Tensor
    prior: tuple[torch.Tensor, torch.Tensor]
    posterior: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass
class DecoderOutput:
    """Raw decoder output, the KL of every skip level (B x C per level, summed over space), the
    means of the skip codes, and each variational level's latent with its densities."""

    out: torch.Tensor
    skip_kls: list[torch.Tensor] = field(default_factory=list)
    skip_means: list[torch.Tensor] = field(default_factory=list)
    latents: list[SkipLatent] = field(default_factory=list)


class Encoder(nn.Module):
    """x -> features [h_1, ..., h_D] (finest first) and the flattened top feature."""

    def __init__(self, widths: list[int], block: str, norm: str) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1)
        chans = [widths[0], *widths]
        self.stages = nn.ModuleList(
            Down(chans[i], chans[i + 1], block, norm) for i in range(len(widths))
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.stem(x)
        feats = []
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats


class VariationalSkip(nn.Module):
    """One ladder level: prior from the decoder state, posterior residual on it from h_l.

    ``posterior='block'`` reads the posterior through a conv block on [h_l, decoder state];
    ``'conv'`` through a single conv: fewer parameters and FLOPs, less capacity in q.
    """

    def __init__(self, feat_ch: int, dec_ch: int, latent_ch: int, posterior: str = "block") -> None:
        super().__init__()
        self.prior = nn.Conv2d(dec_ch, 2 * latent_ch, 3, padding=1)
        in_ch = feat_ch + dec_ch
        block = [ConvBlock(in_ch, dec_ch, "plain", "none")] if posterior == "block" else []
        self.posterior = nn.Sequential(
            *block, nn.Conv2d(dec_ch if block else in_ch, 2 * latent_ch, 3, padding=1)
        )
        self.project = nn.Conv2d(latent_ch, dec_ch, 3, padding=1)
        # start the posterior at the prior: no KL and no noise from untrained skip levels
        nn.init.zeros_(self.posterior[-1].weight)
        nn.init.zeros_(self.posterior[-1].bias)

    def prior_params(self, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.prior(d).float().chunk(2, dim=1)
        return mu, soft_clamp(logvar, LOGVAR_BOUND)

    def posterior_params(
        self, h: torch.Tensor, d: torch.Tensor, prior: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dmu, dlogvar = self.posterior(torch.cat([h, d], dim=1)).float().chunk(2, dim=1)
        return prior[0] + dmu, soft_clamp(prior[1] + dlogvar, LOGVAR_BOUND)


class Decoder(nn.Module):
    """z -> raw image output, merging skips at each resolution according to ``skip``.

    Its options come checked from :class:`~facemask_vae.models.config.ModelConfig`."""

    def __init__(
        self,
        widths: list[int],
        latent_dim: int,
        image_size: int,
        block: str,
        norm: str,
        skip: str = "none",
        skip_dropout: float = 0.0,
        skip_latent_channels: int = 4,
        skip_posterior: str = "block",
        skip_levels: list[int] | None = None,
        decoder_blocks: int = 1,
    ) -> None:
        super().__init__()
        self.skip, self.skip_dropout = skip, skip_dropout
        depth = len(widths)
        levels = list(range(depth)) if skip_levels is None else sorted(skip_levels)
        #: the levels that merge a skip, coarsest first; explicit ``skips`` follow this order
        self.levels = levels if skip != "none" else []
        self._slot = {level: j for j, level in enumerate(self.levels)}
        self.bottom = image_size // 2**depth
        self.top_ch = widths[-1]
        self.fc = nn.Linear(latent_dim, self.top_ch * self.bottom**2)
        # decoder level l (coarsest first) works at the resolution and width of encoder h_{D-l}
        rev = list(reversed(widths))
        self.stages = nn.ModuleList(
            Up(rev[i], rev[min(i + 1, depth - 1)], block, norm, decoder_blocks)
            for i in range(depth)
        )
        chans = [rev[level] for level in self.levels]
        if skip == "deterministic":
            self.merges = nn.ModuleList(nn.Conv2d(c, c, 1) for c in chans)
        elif skip == "variational":
            self.ladder = nn.ModuleList(
                VariationalSkip(c, c, skip_latent_channels, skip_posterior) for c in chans
            )
        self.head = nn.Conv2d(rev[-1], 3, 3, padding=1)

    def skip_latent_shapes(self) -> list[tuple[int, int, int]]:
        """(C, H, W) of each variational skip level's latent, coarsest first."""
        if self.skip != "variational":
            return []
        c = self.ladder[0].project.in_channels
        return [(c, self.bottom * 2**level, self.bottom * 2**level) for level in self.levels]

    def skip_latent_sizes(self) -> list[int]:
        """Latent dimensions of each variational skip level, coarsest first (C x H x W)."""
        return [c * h * w for c, h, w in self.skip_latent_shapes()]

    def forward(
        self,
        z: torch.Tensor,
        feats: list[torch.Tensor] | None = None,
        skips: list[torch.Tensor] | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        sample_skips: bool = True,
    ) -> DecoderOutput:
        """Decode z.

        Args:
            feats: encoder features [h_1..h_D] (finest first) when reconstructing; None when
                generating.
            skips: explicit skip codes of ``self.levels``, coarsest first (variational: z_l;
                deterministic: h_l); they override ``feats`` (to decode interpolated or swapped
                latents).
            temperature: scales the prior/posterior noise of the skip latents.
            sample_skips: draw z_l (True) or take the means (False) for variational skips.
        """
        d = self.fc(z).view(-1, self.top_ch, self.bottom, self.bottom)
        rev_feats = list(reversed(feats)) if feats is not None else None
        result = DecoderOutput(out=d)
        for level, stage in enumerate(self.stages):
            j = self._slot.get(level)
            if j is not None and self.skip == "deterministic":
                s = self._deterministic_skip(d, level, j, rev_feats, skips)
                d = d + self.merges[j](s)
            elif j is not None and self.skip == "variational":
                latent, kl, mean = self._variational_skip(
                    d, level, j, rev_feats, skips, temperature, generator, sample_skips
                )
                d = d + self.ladder[j].project(latent.z.to(d.dtype))
                if kl is not None:
                    result.skip_kls.append(kl)
                result.skip_means.append(mean)
                result.latents.append(latent)
            d = stage(d)
        result.out = self.head(d)
        return result

    def _deterministic_skip(self, d, level, j, rev_feats, skips) -> torch.Tensor:
        if skips is not None:
            return skips[j].to(d.dtype)
        if rev_feats is None:  # generating: there is no encoder feature to pass
            return torch.zeros_like(d)
        s = rev_feats[level]
        if self.training and self.skip_dropout > 0:
            keep = torch.rand(s.shape[0], 1, 1, 1, device=s.device) >= self.skip_dropout
            s = s * keep.to(s.dtype)
        return s

    def _variational_skip(self, d, level, j, rev_feats, skips, temperature, generator, sample):
        ladder = self.ladder[j]
        prior = ladder.prior_params(d)
        if skips is not None:
            return SkipLatent(skips[j].float(), prior), None, skips[j].float()
        if rev_feats is None:
            mu, logvar, kl, post = prior[0], prior[1], None, None
        else:
            post = mu, logvar = ladder.posterior_params(rev_feats[level], d, prior)
            kl = kl_normal(mu, logvar, *prior).sum(dim=(2, 3))  # B x C
        if not sample:
            return SkipLatent(mu, prior, post), kl, mu
        z = reparameterize(mu, logvar, temperature, generator)
        return SkipLatent(z, prior, post), kl, mu
