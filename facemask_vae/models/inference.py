"""The inference API every model offers to callbacks and the evaluation: encode, decode,
reconstruct, sample (with a sampler, temperatures and BN statistics for sampling) and
interpolate. All run in eval mode under no_grad and restore the training mode after.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from facemask_vae.sampling import LatentSampler, PriorSampler, estimate_bn_stats
from facemask_vae.sampling.batchnorm import bn_layers


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of flattened rows of ``a`` and ``b`` at fractions ``t``."""
    fa, fb = a.flatten(1), b.flatten(1)
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp(min=1e-8)
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7)).unsqueeze(1)
    so = torch.sin(omega)
    t = t.view(-1, 1)
    out = torch.where(
        so.abs() < 1e-6,  # (anti)parallel: fall back to linear
        (1 - t) * fa + t * fb,
        torch.sin((1 - t) * omega) / so * fa + torch.sin(t * omega) / so * fb,
    )
    return out.view_as(a)


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """``module`` in eval mode inside the block, and back in the mode it was in after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class InferenceAPI:
    """Mixin for :class:`~facemask_vae.models.autoencoder.Autoencoder`: it reads the module's
    ``encoder``/``decoder``, ``likelihood``, ``latent_dim``, ``latent_sizes``, ``sampling_stats`` and
    ``sampling_bn_batches``/``sampling_bn_batch``, and the subclass's ``encode_all``."""

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        with eval_mode(self), torch.no_grad():
            yield

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Top-level latent means (B x latent_dim): what t-SNE and the probes look at."""
        with self._inference():
            return self.top_code(x)

    def encode_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Codes of every latent level, top first (posterior means for VAEs): B x latent_dim,
        then one tensor per skip level (B x C x H x W)."""
        with self._inference():
            return self.encode_all(x)

    def evaluate_terms(self, x: torch.Tensor) -> Any:
        """The per-image loss terms of images ``x`` (:class:`~.autoencoder.LossTerms`), in eval
        mode without gradients: one posterior draw per image from the global generator."""
        with self._inference():
            return self.loss_terms(x)

    def decode(self, z: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Images in [0, 1] from top latents; skip levels at their prior means unless given."""
        with self._inference():
            dec = self.decoder(z, skips=skips, sample_skips=False)
            return self.likelihood.mean(dec.out)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The mean reconstruction from the posterior means of every level."""
        with self._inference():
            codes = self.encode_all(x)
            return self.decode(codes[0], codes[1:] or None)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        sampler: LatentSampler | None = None,
        sampling_bn: bool = True,
        bn_batches: int | None = None,
        skip_temperature: float | None = None,
    ) -> torch.Tensor:
        """n images (n x 3 x S x S, means of p(x|z) in [0, 1]) from top latents of ``sampler``
        (default: the N(0, I) prior) at ``temperature``; skip levels from their top-down priors
        at ``skip_temperature`` (None: ``temperature``; 0: the priors' means).

        ``sampling_bn``: normalise with BN statistics re-estimated on samples of the sampler's
        ``bn_source`` (itself, or the base a one-class sampler is cut from) at this temperature
        (cached until the weights change; see :mod:`facemask_vae.sampling`); False uses the
        statistics gathered in training, on posterior codes. ``bn_batches`` overrides
        ``sampling_bn_batches`` (batches of ``sampling_bn_batch`` samples) for a cheaper
        estimate, as the image callback makes every epoch.

        A sampler with ``all_levels`` (a density fitted to the codes of every level, e.g.
        ``two_stage_all``) draws every level at once: its codes are split into the top latent and
        the skip levels, and no skip level is drawn from its prior.
        """
        sampler = sampler or PriorSampler(self.latent_dim)
        want = sum(self.latent_sizes) if sampler.all_levels else self.latent_dim
        if sampler.dim != want:
            levels = "all its levels" if sampler.all_levels else "its top latent"
            raise ValueError(
                f"the {sampler.name} sampler draws {sampler.dim}-d codes, but {levels} "
                f"{'are' if sampler.all_levels else 'is'} {want}-d: fit it to this model's codes"
            )
        skip_t = float(temperature if skip_temperature is None else skip_temperature)
        with self._inference():
            z = sampler.sample(n, temperature, generator, self.device)
            with self._sampling_bn(sampler, temperature, skip_t, sampling_bn, bn_batches):
                dec = self._decode_drawn(z, sampler.all_levels, skip_t, generator)
            return self.likelihood.mean(dec.out)

    def flatten_codes(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """``encode_all``'s codes of every level as one B x sum(latent_sizes) matrix."""
        return torch.cat([c.flatten(1) for c in codes], dim=1)

    def unflatten_codes(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`flatten_codes` undone: B x latent_dim, then each skip level as B x C x H x W."""
        top, *rest = flat.split(self.latent_sizes, dim=1)
        shapes = self.decoder.skip_latent_shapes()
        return [top, *(f.reshape(len(flat), *shape) for f, shape in zip(rest, shapes, strict=True))]

    def _decode_drawn(
        self,
        z: torch.Tensor,
        all_levels: bool,
        skip_t: float,
        generator: torch.Generator | None,
    ):
        """The decoder's output for drawn codes: top latents (skip levels from their priors at
        ``skip_t``) or, ``all_levels``, the codes of every level, flattened (split back into
        their shapes)."""
        if not all_levels:
            return self.decoder(z, temperature=skip_t, generator=generator)
        top, *skips = self.unflatten_codes(z)
        return self.decoder(top, skips=skips)

    @contextlib.contextmanager
    def _sampling_bn(
        self,
        sampler: LatentSampler,
        temperature: float,
        skip_temperature: float,
        on: bool,
        batches: int | None,
    ) -> Iterator[None]:
        """The decoder's BN statistics for this sampler and these temperatures inside the block."""
        if not on or not bn_layers(self.decoder):
            yield
            return
        # samplers that draw the same codes share statistics: the key is the fitted state's digest;
        # a one-class sampler's come from its base's draws (its own would normalise the class away)
        source = sampler.bn_source
        batches = int(batches or self.sampling_bn_batches)
        key = (source.fingerprint, float(temperature), skip_temperature, batches)

        def estimate() -> dict[str, torch.Tensor]:
            g = torch.Generator(device=self.device).manual_seed(0)  # the same stats every time

            def forward() -> None:
                z = source.sample(self.sampling_bn_batch, temperature, g, self.device)
                self._decode_drawn(z, source.all_levels, skip_temperature, g)

            return estimate_bn_stats(self.decoder, forward, batches)

        buffers = self.sampling_stats.get(self.decoder, key, estimate)
        with self.sampling_stats.applied(self.decoder, buffers):
            yield

    def interpolate(
        self, x1: torch.Tensor, x2: torch.Tensor, steps: int = 8, mode: str = "linear"
    ) -> torch.Tensor:
        """Decode ``steps`` points between the codes of x1 and x2 (every level): B x steps x C x H x W."""
        if mode not in ("linear", "slerp"):
            raise ValueError(f"interpolation mode must be 'linear' or 'slerp', got {mode!r}")
        with self._inference():
            a, b = self.encode_all(x1), self.encode_all(x2)
            n = x1.shape[0]
            t = torch.linspace(0, 1, steps, device=x1.device).repeat(n)
            rows = []
            for ca, cb in zip(a, b, strict=True):
                ca = ca.repeat_interleave(steps, 0)
                cb = cb.repeat_interleave(steps, 0)
                if mode == "slerp":
                    rows.append(slerp(ca, cb, t))
                else:
                    tt = t.view(-1, *([1] * (ca.dim() - 1)))
                    rows.append((1 - tt) * ca + tt * cb)
            images = self.decode(rows[0], rows[1:] or None)
            return images.view(n, steps, *images.shape[1:])
