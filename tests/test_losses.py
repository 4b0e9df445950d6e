"""The ELBO's terms: KL sign and value, free bits, likelihoods."""

import math

import pytest
import torch

from facemask_vae.losses import (
    Likelihood,
    apply_free_bits,
    kl_normal,
    kl_std_normal,
    soft_clamp,
)


def test_kl_is_zero_when_posterior_equals_prior():
    mu, logvar = torch.zeros(4, 16), torch.zeros(4, 16)
    assert torch.equal(kl_std_normal(mu, logvar), torch.zeros(4, 16))
    m, lv = torch.randn(4, 8), torch.randn(4, 8)
    assert torch.allclose(kl_normal(m, lv, m, lv), torch.zeros(4, 8), atol=1e-6)


def test_analytic_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu_q, lv_q = torch.randn(6, generator=g), torch.randn(6, generator=g) * 0.5
    mu_p, lv_p = torch.randn(6, generator=g), torch.randn(6, generator=g) * 0.5
    n = 400_000
    z = mu_q + torch.randn(n, 6, generator=g) * (0.5 * lv_q).exp()

    def log_normal(x, m, lv):
        return -0.5 * (math.log(2 * math.pi) + lv + (x - m) ** 2 / lv.exp())

    mc = (log_normal(z, mu_q, lv_q) - log_normal(z, mu_p, lv_p)).mean(0)
    assert torch.allclose(kl_normal(mu_q, lv_q, mu_p, lv_p), mc, atol=0.02)
    mc_std = (log_normal(z, mu_q, lv_q) - log_normal(z, torch.zeros(6), torch.zeros(6))).mean(0)
    assert torch.allclose(kl_std_normal(mu_q, lv_q), mc_std, atol=0.02)


def test_kl_is_positive_away_from_the_prior():
    kl = kl_std_normal(torch.full((3,), 2.0), torch.full((3,), -1.0))
    expected = 0.5 * (4.0 + math.exp(-1.0) - 1.0 + 1.0)
    assert torch.allclose(kl, torch.full((3,), expected))


def test_free_bits_floor_per_dimension_and_per_group():
    kl = torch.tensor([[0.1, 2.0, 0.0], [0.3, 4.0, 0.0]])  # batch means: 0.2, 3.0, 0.0
    assert apply_free_bits(kl, 0.0).item() == pytest.approx(3.2)
    assert apply_free_bits(kl, 0.5, "dim").item() == pytest.approx(0.5 + 3.0 + 0.5)
    assert apply_free_bits(kl, 5.0, "group").item() == pytest.approx(5.0)
    assert apply_free_bits(kl, 1.0, "group").item() == pytest.approx(3.2)


def test_soft_clamp_bounds_logvar_so_exp_stays_finite():
    x = torch.tensor([-1e6, -3.0, 0.0, 3.0, 1e6])
    y = soft_clamp(x, 10.0)
    assert y.abs().max() <= 10.0
    assert torch.isfinite(y.exp()).all()
    assert y[2] == 0 and abs(y[3].item() - 3.0) < 0.1


def test_gaussian_nll_is_summed_over_pixels_and_matches_formula():
    lik = Likelihood("gaussian", sigma=0.1)
    x = torch.full((2, 3, 4, 4), 0.5)
    out = torch.zeros(2, 3, 4, 4)  # sigmoid(0) = 0.5: a perfect mean
    per_pixel = math.log(0.1) + 0.5 * math.log(2 * math.pi)
    assert torch.allclose(lik.nll(out, x), torch.full((2,), 48 * per_pixel))
    worse = lik.nll(torch.full((2, 3, 4, 4), 2.0), x)
    assert (worse > lik.nll(out, x)).all()


def test_learned_sigma_is_a_parameter_and_bernoulli_is_bce():
    assert isinstance(Likelihood("gaussian_learned").log_sigma, torch.nn.Parameter)
    assert not isinstance(Likelihood("gaussian").log_sigma, torch.nn.Parameter)
    lik = Likelihood("bernoulli")
    x = torch.tensor([[[[1.0]]]]).expand(1, 3, 1, 1)
    assert torch.allclose(lik.nll(torch.zeros(1, 3, 1, 1), x), torch.tensor([3 * math.log(2.0)]))
    with pytest.raises(ValueError, match=r"model\.likelihood"):
        Likelihood("laplace")
