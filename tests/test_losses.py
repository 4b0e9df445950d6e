"""The ELBO's terms: KL sign and value, free bits, reparameterised draws, likelihoods."""

import math

import pytest
import torch

from facemask_vae.gaussian import (
    apply_free_bits,
    kl_balance_weights,
    kl_normal,
    kl_std_normal,
    reparameterize,
    soft_clamp,
)
from facemask_vae.losses import Likelihood


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


# ---- added for the mutation benchmark ---------------------------------------------------------


def test_soft_clamp_is_bound_times_tanh():
    x = torch.tensor([-5.0, 5.0, 20.0])
    expected = torch.tensor([-10 * math.tanh(0.5), 10 * math.tanh(0.5), 10 * math.tanh(2.0)])
    torch.testing.assert_close(soft_clamp(x, 10.0), expected)


def test_free_bits_of_a_negative_floor_and_an_unknown_mode():
    kl = torch.tensor([[0.1, 2.0], [0.3, 4.0]])  # batch means 0.2, 3.0
    assert apply_free_bits(kl, -1.0, "dim").item() == pytest.approx(3.2)
    assert apply_free_bits(kl, 0.5).item() == pytest.approx(0.5 + 3.0)  # per dim by default
    with pytest.raises(ValueError, match=r"model\.free_bits_per"):
        apply_free_bits(kl, 0.5, "level")


def test_kl_normal_of_a_known_pair():
    # KL(N(1, 1) || N(0, 4)) = ln 2 + (1 + 1) / (2 * 4) - 1/2
    one = torch.tensor([1.0])
    kl = kl_normal(one, torch.zeros(1), torch.zeros(1), torch.tensor([math.log(4.0)]))
    torch.testing.assert_close(kl, torch.tensor([math.log(2.0) + 0.25 - 0.5]))


def test_kl_balance_weights_known_values():
    # per-dimension KL plus the floor, normalised to mean 1
    w = kl_balance_weights(torch.tensor([1.0, 3.0]), torch.tensor([1, 1]), floor=0.0)
    torch.testing.assert_close(w, torch.tensor([0.5, 1.5]))
    w = kl_balance_weights(torch.tensor([0.0, 0.99]), torch.tensor([1.0, 1.0]))  # floor 0.01
    torch.testing.assert_close(w, torch.tensor([0.01, 1.0]) / 0.505)
    w = kl_balance_weights(torch.tensor([4.0, 4.0]), torch.tensor([1.0, 4.0]), floor=0.0)
    torch.testing.assert_close(w, torch.tensor([1.6, 0.4]))
    # a slightly negative KL (rounding) counts by its size, not as a credit
    w = kl_balance_weights(torch.tensor([-1.0, 3.0]), torch.tensor([1.0, 1.0]), floor=0.0)
    torch.testing.assert_close(w, torch.tensor([0.5, 1.5]))


def test_kl_balance_weights_carry_no_gradient_and_check_shapes():
    kls = torch.tensor([1.0, 2.0], requires_grad=True)
    assert not kl_balance_weights(kls, torch.tensor([1.0, 1.0])).requires_grad
    with pytest.raises(ValueError, match="one KL and one size per level"):
        kl_balance_weights(torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match="one KL and one size per level"):
        kl_balance_weights(torch.ones(2, 2), torch.ones(2, 2))


def test_likelihood_defaults_and_sigma_checks():
    lik = Likelihood()
    assert lik.kind == "gaussian_learned" and isinstance(lik.log_sigma, torch.nn.Parameter)
    torch.testing.assert_close(lik.sigma(), torch.full((3,), 0.1))
    with pytest.raises(ValueError, match=r"model\.sigma"):
        Likelihood("gaussian", sigma=0.0)
    # sigma is floored at min_sigma (1/255 by default), in sigma() and in the NLL
    tiny = Likelihood("gaussian", sigma=1e-6)
    torch.testing.assert_close(tiny.sigma(), torch.full((3,), 1 / 255))
    x = torch.full((1, 3, 2, 2), 0.5)
    per_pixel = math.log(1 / 255) + 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(tiny.nll(torch.zeros_like(x), x), torch.tensor([12 * per_pixel]))
    floored = Likelihood("gaussian", sigma=1e-6, min_sigma=0.01)
    torch.testing.assert_close(floored.sigma(), torch.full((3,), 0.01))


def test_gaussian_nll_of_an_error_per_channel_sigma():
    lik = Likelihood("gaussian_learned", sigma=0.1)
    with torch.no_grad():
        lik.log_sigma.copy_(torch.tensor([0.1, 0.2, 0.4]).log().view(1, 3, 1, 1))
    x = torch.full((1, 3, 1, 1), 0.7)  # 0.2 from the mean sigmoid(0) = 0.5
    expected = sum(
        0.5 * (0.2 / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi) for s in (0.1, 0.2, 0.4)
    )
    torch.testing.assert_close(lik.nll(torch.zeros(1, 3, 1, 1), x), torch.tensor([expected]))


def test_likelihood_mean_is_the_sigmoid_in_float32():
    lik = Likelihood("gaussian")
    out = torch.tensor([[[[0.0]], [[2.0]], [[-2.0]]]], dtype=torch.bfloat16)
    mean = lik.mean(out)
    assert mean.dtype == torch.float32
    torch.testing.assert_close(
        mean.flatten(), torch.tensor([0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))])
    )


def test_gaussian_sample_has_the_mean_and_per_channel_sigma_and_stays_in_range():
    lik = Likelihood("gaussian_learned", sigma=0.1)
    with torch.no_grad():
        lik.log_sigma.copy_(torch.tensor([0.02, 0.05, 0.1]).log().view(1, 3, 1, 1))
    out = torch.zeros(2000, 3, 2, 2)  # mean 0.5 everywhere
    g = torch.Generator().manual_seed(0)
    x = lik.sample(out, generator=g)
    assert x.shape == out.shape
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.full((3,), 0.5), rtol=0, atol=0.005)
    torch.testing.assert_close(
        x.std(dim=(0, 2, 3)), torch.tensor([0.02, 0.05, 0.1]), rtol=0.05, atol=0
    )
    assert torch.equal(x, lik.sample(out, generator=torch.Generator().manual_seed(0)))
    wide = Likelihood("gaussian", sigma=1.0).sample(out, generator=g)
    assert wide.min() == 0.0 and wide.max() == 1.0  # clamped to the image range


def test_bernoulli_sample_draws_pixels_with_the_mean_as_probability():
    lik = Likelihood("bernoulli")
    out = torch.zeros(500, 3, 4, 4)
    out[:, 0] = 50.0  # p = 1
    out[:, 1] = -50.0  # p = 0
    g = torch.Generator().manual_seed(0)
    x = lik.sample(out, generator=g)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert bool((x[:, 0] == 1).all() and (x[:, 1] == 0).all())
    assert abs(float(x[:, 2].mean()) - 0.5) < 0.02  # p = sigmoid(0)
    assert torch.equal(x, lik.sample(out, generator=torch.Generator().manual_seed(0)))


def test_zero_free_bits_clamp_nothing():
    # a (Monte Carlo) KL estimate can be negative: free_bits = 0 disables the floor altogether
    kl = torch.tensor([[-0.5, 1.0]])
    assert apply_free_bits(kl, 0.0, "dim").item() == pytest.approx(0.5)


def test_sampling_and_balancing_stay_on_the_device_of_their_inputs():
    # the meta device stands in for a GPU: a tensor made on the CPU cannot mix with it
    lik = Likelihood("gaussian").to("meta")
    assert lik.sample(torch.zeros(2, 3, 4, 4, device="meta")).device.type == "meta"
    w = kl_balance_weights(torch.ones(2, device="meta"), torch.tensor([1, 2]))
    assert w.device.type == "meta"


def test_reparameterised_draws_have_the_posterior_mean_and_spread_and_carry_gradients():
    mu = torch.tensor([1.0, -2.0], requires_grad=True)
    logvar = torch.tensor([0.0, math.log(4.0)], requires_grad=True)
    g = torch.Generator().manual_seed(0)
    z = reparameterize(mu.expand(20000, 2), logvar.expand(20000, 2), generator=g)
    assert torch.allclose(z.mean(0), mu, atol=0.05)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 2.0]), atol=0.05)
    z.sum().backward()
    assert mu.grad is not None and logvar.grad is not None and logvar.grad.abs().sum() > 0
    # the temperature scales the spread, not the mean; the same generator state, the same draw
    hot = reparameterize(mu.detach(), logvar.detach(), 0.5, torch.Generator().manual_seed(1))
    cold = reparameterize(mu.detach(), logvar.detach(), 1.0, torch.Generator().manual_seed(1))
    assert torch.allclose(hot - mu.detach(), 0.5 * (cold - mu.detach()))
    double = reparameterize(mu.detach(), logvar.detach(), 2.0, torch.Generator().manual_seed(1))
    assert torch.allclose(double - mu.detach(), 2.0 * (cold - mu.detach()))
