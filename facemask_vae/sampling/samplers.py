"""Where a model's codes come from when it generates: the prior, or a density fitted to the
training codes (ex-post density estimation, Ghosh et al. 2020; pythae's samplers).

A sampler is an object: ``fit(codes)`` on N x D codes, ``sample(n, temperature)`` draws n x D
codes, and ``state_dict()`` / :func:`~facemask_vae.sampling.factory.sampler_from_state` save and
restore it as tensors and plain values (safe for ``torch.load(weights_only=True)``). Whether it
draws the top latent alone or the codes of every level (top and skip levels, flattened) is its
``all_levels`` property. The temperature T scales the spread around the mean (the prior's
N(0, T^2 I), a fitted Gaussian's covariance by T^2, each mixture component's likewise; the
two-stage sampler's own N(0, I) prior, in ``two_stage.py``). Fitted samplers keep float32
tensors and draw with torch generators, so a seed gives the same samples on any device.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

State = dict[str, Any]


def _randn(
    n: int, dim: int, generator: torch.Generator | None, device: torch.device | str | None
) -> torch.Tensor:
    device = generator.device if generator is not None else device
    return torch.randn(n, dim, generator=generator, device=device)


class LatentSampler:
    """Draws codes: ``sample(n, temperature)`` -> n x ``dim``, once fitted."""

    kind = "sampler"

    def __init__(self, all_levels: bool = False) -> None:
        self.all_levels = bool(all_levels)
        self.dim: int | None = None
        self._fingerprint: str | None = None

    @property
    def name(self) -> str:
        """The name eval and the configs use: the kind, ``_all`` when it covers every level."""
        return f"{self.kind}_all" if self.all_levels else self.kind

    def fit(self, codes: torch.Tensor) -> LatentSampler:
        """Fit to codes (N x D); returns self."""
        if codes.dim() != 2 or len(codes) < 2:
            raise ValueError(
                f"{self.name} is fitted to N x D codes, N >= 2; got {tuple(codes.shape)}"
            )
        self.dim = int(codes.shape[1])
        self._fit(codes.detach())
        self._fingerprint = None
        return self

    def _fit(self, codes: torch.Tensor) -> None:
        raise NotImplementedError

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    # ---- state ----------------------------------------------------------------------------------
    def state_dict(self) -> State:
        """Tensors and plain values that rebuild this sampler (``sampler_from_state``)."""
        if self.dim is None:
            raise ValueError(f"the {self.name} sampler is not fitted: nothing to save")
        return {"kind": self.kind, "all_levels": self.all_levels, "dim": self.dim, **self._state()}

    def _state(self) -> State:
        return {}

    def load_state_dict(self, state: State) -> LatentSampler:
        self.all_levels, self.dim = bool(state["all_levels"]), int(state["dim"])
        self._load(state)
        self._fingerprint = None
        return self

    def _load(self, state: State) -> None:
        pass

    @property
    def bn_source(self) -> LatentSampler:
        """The sampler whose draws the decoder's sampling BN statistics are estimated on: this
        one; a sampler that keeps a subset of another's draws names that one instead."""
        return self

    @property
    def fingerprint(self) -> str:
        """A digest of the fitted state: equal for samplers that draw the same codes (what the
        model's cache of sampling BN statistics is keyed on)."""
        if self._fingerprint is None:
            h = hashlib.sha1()
            for key, value in sorted(self.state_dict().items()):
                h.update(key.encode())
                if isinstance(value, dict):  # a network's state dict
                    for k, t in sorted(value.items()):
                        h.update(k.encode() + t.detach().cpu().contiguous().numpy().tobytes())
                elif isinstance(value, torch.Tensor):
                    h.update(value.detach().cpu().contiguous().numpy().tobytes())
                else:
                    h.update(repr(value).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name}, dim={self.dim})"


class PriorSampler(LatentSampler):
    """z ~ N(0, T^2 I): the model's own prior over the top latent (nothing to fit)."""

    kind = "prior"

    def __init__(self, dim: int) -> None:
        super().__init__(all_levels=False)
        self.dim = int(dim)

    def _fit(self, codes: torch.Tensor) -> None:
        pass

    def sample(self, n, temperature=1.0, generator=None, device=None) -> torch.Tensor:
        return _randn(n, self.dim, generator, device) * temperature


class GaussianMixtureSampler(LatentSampler):
    """Codes from a mixture of full-covariance Gaussians: pick component k by weight, then
    z = mu_k + T * L_k eps with L_k the Cholesky factor of Sigma_k. One component is the
    maximum-likelihood Gaussian (``kind`` gaussian); more are fitted by scikit-learn's EM from
    k-means (``kind`` gmm), seeded."""

    def __init__(self, n_components: int = 1, seed: int = 0, all_levels: bool = False) -> None:
        super().__init__(all_levels)
        if int(n_components) < 1:
            raise ValueError(f"a mixture needs >= 1 component, got {n_components}")
        self.n_components, self.seed = int(n_components), int(seed)
        self.weights = self.means = self.chols = torch.empty(0)

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "gaussian" if self.n_components == 1 else "gmm"

    def _fit(self, codes: torch.Tensor) -> None:
        if self.n_components == 1:
            weights, means, chols = _ml_gaussian(codes)
        else:
            weights, means, chols = _em_mixture(codes, self.n_components, self.seed)
        self._set(weights, means, chols)

    def _set(self, weights: torch.Tensor, means: torch.Tensor, chols: torch.Tensor) -> None:
        if not (weights.dim() == 1 and means.dim() == 2 and chols.dim() == 3):
            raise ValueError("weights K, means K x D and Cholesky factors K x D x D expected")
        self.weights = (weights / weights.sum()).float()
        self.means, self.chols = means.float(), chols.float()
        self.n_components, self.dim = len(weights), int(means.shape[1])

    def _state(self) -> State:
        return {"weights": self.weights.cpu(), "means": self.means.cpu(), "chols": self.chols.cpu()}

    def _load(self, state: State) -> None:
        self._set(state["weights"], state["means"], state["chols"])

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.means.device != device:
            self.weights, self.means, self.chols = (
                t.to(device) for t in (self.weights, self.means, self.chols)
            )
        return self.weights, self.means, self.chols

    def sample(self, n, temperature=1.0, generator=None, device=None) -> torch.Tensor:
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
        return f"{type(self).__name__}(name={self.name}, components={self.n_components}, dim={self.dim})"


def _ml_gaussian(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The maximum-likelihood full-covariance Gaussian of codes ``z`` (N x D), as a mixture of one."""
    z = z.double().cpu()
    mean, cov = z.mean(0), torch.cov(z.T).reshape(z.shape[1], -1)
    jitter = 1e-6 * cov.diagonal().mean().clamp(min=1e-12)  # a flat direction stays factorable
    chol = torch.linalg.cholesky(cov + jitter * torch.eye(len(mean), dtype=cov.dtype))
    return torch.ones(1), mean[None], chol[None]


def _em_mixture(
    z: torch.Tensor, n_components: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A full-covariance Gaussian mixture fitted to ``z`` (N x D) by scikit-learn's EM."""
    if len(z) < 2 * n_components:
        raise ValueError(f"a {n_components}-component mixture needs more than {len(z)} latents")
    gmm = GaussianMixture(
        n_components, covariance_type="full", reg_covar=1e-5, max_iter=200, random_state=seed
    ).fit(z.double().cpu().numpy())
    chols = np.linalg.cholesky(gmm.covariances_)
    return torch.from_numpy(gmm.weights_), torch.from_numpy(gmm.means_), torch.from_numpy(chols)


def fit_gaussian(z: torch.Tensor, all_levels: bool = False) -> GaussianMixtureSampler:
    """A full-covariance Gaussian fitted to latents ``z`` (N x D) by maximum likelihood."""
    return GaussianMixtureSampler(1, all_levels=all_levels).fit(z)


def fit_gmm(
    z: torch.Tensor, n_components: int = 10, seed: int = 0, all_levels: bool = False
) -> GaussianMixtureSampler:
    """A full-covariance Gaussian mixture (scikit-learn, EM from k-means) fitted to ``z`` (N x D)."""
    return GaussianMixtureSampler(n_components, seed, all_levels).fit(z)
