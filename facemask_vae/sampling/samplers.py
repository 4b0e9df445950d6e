"""Where a model's top latent z comes from when it generates: the prior, or a density fitted to
the training latents (ex-post density estimation, Ghosh et al. 2020; pythae's samplers).

Every sampler draws n x D codes at a temperature T, which scales the spread around the mean (the
prior's N(0, T^2 I), a fitted Gaussian's covariance by T^2, each mixture component's likewise;
the two-stage sampler's own N(0, I) prior, in ``two_stage.py``). Fitted samplers keep their
parameters as float32 tensors and draw with torch generators, so a seed gives the same samples
on any device (up to float rounding in the two-stage sampler's network).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

SAMPLERS = ("prior", "gaussian", "gmm", "two_stage", "gaussian_all", "gmm_all", "two_stage_all")
#: fitted to the codes of every latent level at once (top and skip levels, flattened): for models
#: with skip levels these replace the skip levels' top-down priors too
ALL_LEVELS = ("gaussian_all", "gmm_all", "two_stage_all")


def _randn(
    n: int, dim: int, generator: torch.Generator | None, device: torch.device | str | None
) -> torch.Tensor:
    device = generator.device if generator is not None else device
    return torch.randn(n, dim, generator=generator, device=device)


class LatentSampler:
    """Draws top latents: ``draw(n, temperature)`` -> n x ``dim``."""

    name = "sampler"

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)

    def draw(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


class PriorSampler(LatentSampler):
    """z ~ N(0, T^2 I): the model's own prior."""

    name = "prior"

    def draw(self, n, temperature=1.0, generator=None, device=None) -> torch.Tensor:
        return _randn(n, self.dim, generator, device) * temperature


class GaussianMixtureSampler(LatentSampler):
    """z from a mixture of full-covariance Gaussians: pick component k by weight, then
    z = mu_k + T * L_k eps with L_k the Cholesky factor of Sigma_k. One component is the fitted
    Gaussian."""

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, chols: torch.Tensor) -> None:
        if not (weights.dim() == 1 and means.dim() == 2 and chols.dim() == 3):
            raise ValueError("weights K, means K x D and Cholesky factors K x D x D expected")
        super().__init__(means.shape[1])
        self.weights = (weights / weights.sum()).float()
        self.means, self.chols = means.float(), chols.float()
        self.name = "gaussian" if len(weights) == 1 else "gmm"

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.means.device != device:
            self.weights, self.means, self.chols = (
                t.to(device) for t in (self.weights, self.means, self.chols)
            )
        return self.weights, self.means, self.chols

    def draw(self, n, temperature=1.0, generator=None, device=None) -> torch.Tensor:
        eps = _randn(n, self.dim, generator, device)
        weights, means, chols = self._on(eps.device)
        if len(weights) == 1:
            k = torch.zeros(n, dtype=torch.long, device=eps.device)
        else:
            k = torch.multinomial(weights, n, replacement=True, generator=generator)
        z = torch.empty_like(eps)
        for c in k.unique():  # per component: never an n x D x D tensor
            rows = (k == c).nonzero().squeeze(1)
            z[rows] = means[c] + temperature * eps[rows] @ chols[c].T
        return z

    def __repr__(self) -> str:
        return f"{type(self).__name__}(components={len(self.weights)}, dim={self.dim})"


def fit_gaussian(z: torch.Tensor) -> GaussianMixtureSampler:
    """A full-covariance Gaussian fitted to latents ``z`` (N x D) by maximum likelihood."""
    z = z.detach().double().cpu()
    mean, cov = z.mean(0), torch.cov(z.T).reshape(z.shape[1], -1)
    jitter = 1e-6 * cov.diagonal().mean().clamp(min=1e-12)  # a flat direction stays factorable
    chol = torch.linalg.cholesky(cov + jitter * torch.eye(len(mean), dtype=cov.dtype))
    return GaussianMixtureSampler(torch.ones(1), mean[None], chol[None])


def fit_gmm(z: torch.Tensor, n_components: int = 10, seed: int = 0) -> GaussianMixtureSampler:
    """A full-covariance Gaussian mixture (scikit-learn, EM from k-means) fitted to ``z`` (N x D)."""
    if len(z) < 2 * n_components:
        raise ValueError(f"a {n_components}-component mixture needs more than {len(z)} latents")
    gmm = GaussianMixture(
        n_components, covariance_type="full", reg_covar=1e-5, max_iter=200, random_state=seed
    ).fit(z.double().cpu().numpy())
    chols = np.linalg.cholesky(gmm.covariances_)
    return GaussianMixtureSampler(
        torch.from_numpy(gmm.weights_), torch.from_numpy(gmm.means_), torch.from_numpy(chols)
    )


def make_sampler(
    kind: str,
    dim: int,
    latents: torch.Tensor | None = None,
    n_components: int = 10,
    seed: int = 0,
    two_stage: dict | None = None,
) -> LatentSampler:
    """A sampler by name: ``prior``, or ``gaussian``/``gmm``/``two_stage`` fitted to ``latents``
    (N x dim); the ``*_all`` kinds are the same densities, named for codes of every level (dim: all
    of them). ``two_stage``: keyword options of :func:`fit_two_stage` (latent_dim, hidden, epochs)."""
    if kind not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {kind!r}")
    if kind == "prior":
        return PriorSampler(dim)
    if latents is None:
        raise ValueError(f"the {kind} sampler is fitted to training latents: pass them")
    if latents.dim() != 2 or latents.shape[1] != dim:
        raise ValueError(f"latents must be N x {dim}, got {tuple(latents.shape)}")
    base = kind.removesuffix("_all")
    if base == "two_stage":
        from facemask_vae.sampling.two_stage import fit_two_stage  # it builds on this module

        sampler = fit_two_stage(latents, seed=seed, **(two_stage or {}))
    elif base == "gaussian":
        sampler = fit_gaussian(latents)
    else:
        sampler = fit_gmm(latents, n_components, seed)
    sampler.name = kind
    return sampler
