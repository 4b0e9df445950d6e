"""The IWAE bound on a linear-Gaussian two-level model, whose log p(x) and posteriors are exact.

Model: z1 ~ N(0, 1) (the top latent), z2 | z1 ~ N(z1, 1) (one variational skip level, shape
B x 1 x 1 x 1) and x | z2 ~ N(w z2, s^2 I) in D dimensions, so x ~ N(0, 2 w w^T + s^2 I).
With the exact posteriors every importance weight is p(x, z) / q(z | x) = p(x): all K x B log
weights equal log p(x). A wrong density, a missing level or a wrong noise scale breaks that.
"""

from __future__ import annotations

import math

import pytest
import torch

from facemask_vae import metrics as M
from facemask_vae.models.networks import DecoderOutput, SkipLatent
from facemask_vae.models.vae import importance_log_weights

D, S = 5, 0.5


class _Likelihood:
    def nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -torch.distributions.Normal(out, S).log_prob(x).sum(1)


class _Decoder:
    """Draws z2 from its exact posterior given z1 and x (the encoder 'features' are x itself)."""

    skip = "variational"

    def __init__(self, w: torch.Tensor) -> None:
        self.w = w

    def __call__(self, z1, feats=None, generator=None, sample_skips=True):
        assert feats is not None, "the skip posterior needs the encoder features"
        x = feats[0]
        prec = 1 + self.w.pow(2).sum() / S**2
        mu = ((z1[:, 0] + x @ self.w / S**2) / prec).view(-1, 1, 1, 1)
        logvar = torch.full_like(mu, -math.log(prec))
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        z2 = mu + eps * (0.5 * logvar).exp() if sample_skips else mu
        prior = (z1.view(-1, 1, 1, 1), torch.zeros_like(mu))
        return DecoderOutput(
            out=z2.view(-1, 1) * self.w, latents=[SkipLatent(z2, prior, (mu, logvar))]
        )


class _LinearGaussian:
    def __init__(self, dtype=torch.float64, offset: float = 0.0) -> None:
        self.w = torch.linspace(0.5, 1.5, D, dtype=dtype)
        self.decoder, self.likelihood = _Decoder(self.w), _Likelihood()
        self.offset, self.training = offset, True

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def cov_x(self) -> torch.Tensor:
        w = self.w.double()
        return 2 * torch.outer(w, w) + S**2 * torch.eye(D, dtype=torch.float64)

    def posterior(self, x: torch.Tensor):
        assert not self.training, "the bound is computed in eval mode"
        # z1 | x: Cov(z1, x) = w, Var(z1) = 1
        c = self.cov_x().to(x.dtype)
        gain = torch.linalg.solve(c, self.w)
        mu = (x @ gain)[:, None] + self.offset
        var = 1 - self.w @ gain
        return [x], mu, torch.full_like(mu, math.log(var))


def _data(n: int, dtype=torch.float64) -> torch.Tensor:
    return torch.linspace(-2, 2, n * D, dtype=dtype).view(n, D).sin() * 2


def _log_px(model: _LinearGaussian, x: torch.Tensor) -> torch.Tensor:
    return torch.distributions.MultivariateNormal(
        torch.zeros(D, dtype=torch.float64), model.cov_x()
    ).log_prob(x.double())


def test_exact_posteriors_give_log_p_x_in_every_weight():
    model, x = _LinearGaussian(), _data(3)
    g = torch.Generator().manual_seed(0)
    lw = importance_log_weights(model, x, k=4, generator=g)
    assert lw.shape == (4, 3) and lw.dtype == torch.float64
    torch.testing.assert_close(lw, _log_px(model, x).expand(4, 3), rtol=0, atol=1e-9)
    torch.testing.assert_close(M.iwae_bound(lw), _log_px(model, x), rtol=0, atol=1e-9)


def test_a_worse_posterior_gives_the_elbo_gap_and_a_tighter_iwae_bound():
    model, x = _LinearGaussian(offset=0.8), _data(4)
    log_px = _log_px(model, x)
    g = torch.Generator().manual_seed(0)
    lw = importance_log_weights(model, x, k=512, generator=g)
    assert model.training  # computed in eval mode, and the mode it had is restored
    elbo, iwae = lw.mean(0), M.iwae_bound(lw)
    # the ELBO gap is KL(q || p) of the top latent: 0.8^2 / (2 var), var = Var(z1 | x)
    gap = 0.8**2 / (2 * float(model.eval().posterior(x)[2].exp()[0, 0]))
    assert gap > 0.5
    torch.testing.assert_close(elbo, log_px - gap, rtol=0, atol=0.1)
    # 512 samples close most of that gap (the bound is below log p(x) only in expectation)
    assert float((log_px - iwae).abs().max()) < 0.25 * gap


def test_weights_are_reproducible_by_the_generator_and_carry_no_gradient():
    model, x = _LinearGaussian(offset=0.5), _data(2)
    model.w.requires_grad_(True)
    a = importance_log_weights(model, x, k=3, generator=torch.Generator().manual_seed(1))
    b = importance_log_weights(model, x, k=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not a.requires_grad
    assert len(set(a.flatten().tolist())) == 6  # a fresh draw for every sample and image


def test_float32_models_give_float64_weights():
    model, x = _LinearGaussian(dtype=torch.float32), _data(2, dtype=torch.float32)
    lw = importance_log_weights(model, x, k=2, generator=torch.Generator().manual_seed(0))
    assert lw.dtype == torch.float64
    torch.testing.assert_close(lw, _log_px(model, x).expand(2, 2), rtol=0, atol=1e-4)


@pytest.mark.parametrize("skip_attribute", [True, False])
def test_a_model_without_skips_gets_no_encoder_features(skip_attribute):
    class _Plain:  # skip = "none", or no ``skip`` attribute at all
        def __init__(self, w: torch.Tensor) -> None:
            self.w = w
            if skip_attribute:
                self.skip = "none"

        def __call__(self, z1, feats=None, generator=None, sample_skips=True):
            assert feats is None
            return DecoderOutput(out=z1 * self.w)

    # x | z1 ~ N(w z1, s^2 I): the exact posterior of z1 again gives log p(x) in every weight
    model, x = _LinearGaussian(), _data(2)
    model.decoder = _Plain(model.w)
    w = model.w
    cov = torch.outer(w, w) + S**2 * torch.eye(D, dtype=torch.float64)
    model.cov_x = lambda: cov
    lw = importance_log_weights(model, x, k=3, generator=torch.Generator().manual_seed(0))
    log_px = torch.distributions.MultivariateNormal(torch.zeros(D, dtype=torch.float64), cov)
    torch.testing.assert_close(lw, log_px.log_prob(x).expand(3, 2), rtol=0, atol=1e-9)


@pytest.mark.parametrize("k", [1, 5])
def test_k_samples_per_image(k):
    lw = importance_log_weights(_LinearGaussian(), _data(2), k=k)
    assert lw.shape == (k, 2)
