"""The latent parts of the decoder: variational skip levels (priors, posteriors, draws, KLs)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from facemask_vae.models.networks import LOGVAR_BOUND, Decoder, VariationalSkip

WIDTHS = [8, 16, 16]  # image 32: decoder levels at 4, 8 and 16 px, the bottom at 4 px


def _decoder(**kw) -> Decoder:
    torch.manual_seed(0)
    kw = {"skip": "variational", "norm": "none", **kw}
    return Decoder(WIDTHS, 8, 32, "plain", **kw).eval().requires_grad_(False)


def _feats(n: int = 2) -> list[torch.Tensor]:
    """Encoder features h_1..h_D (finest first) of the sizes the decoder expects."""
    g = torch.Generator().manual_seed(1)
    return [torch.randn(n, c, 32 // 2**i, 32 // 2**i, generator=g) for i, c in enumerate(WIDTHS, 1)]


def _z(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(2))


def _set_bias(conv: torch.nn.Conv2d, mu: float, logvar: float) -> None:
    """A conv that outputs (mu, logvar) everywhere: zero weights, a constant bias per half."""
    half = conv.out_channels // 2
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias[:half] = mu
        conv.bias[half:] = logvar


def test_skip_latent_sizes_are_channels_times_pixels_per_level():
    # 4 channels at 4, 8 and 16 px, coarsest first
    assert _decoder(skip_latent_channels=4).skip_latent_sizes() == [64, 256, 1024]
    assert _decoder(skip_latent_channels=2, skip_levels=[1]).skip_latent_sizes() == [128]
    assert _decoder(skip_levels=[2, 0]).skip_latent_sizes() == [64, 1024]
    assert _decoder(skip="deterministic").skip_latent_sizes() == []
    assert _decoder(skip="none").skip_latent_sizes() == []
    # and they are the sizes of the codes the decoder draws
    dec = _decoder(skip_latent_channels=3)
    latents = dec(_z(), feats=_feats()).latents
    assert [lat.z[0].numel() for lat in latents] == dec.skip_latent_sizes()


def test_prior_reads_mu_then_a_soft_clamped_logvar_in_float32():
    skip = VariationalSkip(feat_ch=4, dec_ch=6, latent_ch=3)
    _set_bias(skip.prior, mu=1.5, logvar=12.0)
    d = torch.randn(2, 6, 5, 5)
    mu, logvar = skip.prior_params(d)
    assert mu.shape == logvar.shape == (2, 3, 5, 5)
    torch.testing.assert_close(mu, torch.full_like(mu, 1.5))
    expected = LOGVAR_BOUND * math.tanh(12.0 / LOGVAR_BOUND)
    torch.testing.assert_close(logvar, torch.full_like(logvar, expected))
    assert LOGVAR_BOUND == 10.0
    mu16, _ = skip.to(torch.bfloat16).prior_params(d.to(torch.bfloat16))
    assert mu16.dtype == torch.float32


@pytest.mark.parametrize("posterior", ["block", "conv"])
def test_posterior_starts_at_the_prior(posterior):
    torch.manual_seed(0)
    skip = VariationalSkip(feat_ch=4, dec_ch=6, latent_ch=3, posterior=posterior)
    d, h = torch.randn(2, 6, 5, 5), torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        prior = skip.prior_params(d)
        post = skip.posterior_params(h, d, prior)
    assert torch.equal(post[0], prior[0])
    # the logvar is soft-clamped a second time, so it matches the prior's only near 0
    torch.testing.assert_close(post[1], prior[1], atol=0.05, rtol=0)


def test_posterior_is_a_residual_on_the_prior_read_from_the_features_then_the_state():
    skip = VariationalSkip(feat_ch=4, dec_ch=6, latent_ch=3, posterior="conv")
    assert len(skip.posterior) == 1 and skip.posterior[0].in_channels == 4 + 6
    last = skip.posterior[-1]
    _set_bias(last, mu=0.5, logvar=-1.0)
    with torch.no_grad():
        last.weight[0, 0, 1, 1] = 1.0  # dmu of latent channel 0 += h[:, 0] (h comes first)
        last.weight[1, 4, 1, 1] = 1.0  # dmu of latent channel 1 += d[:, 0]
    d, h = torch.randn(2, 6, 5, 5), torch.randn(2, 4, 5, 5)
    prior = (torch.randn(2, 3, 5, 5), torch.full((2, 3, 5, 5), 9.8))
    mu, logvar = skip.posterior_params(h, d, prior)
    torch.testing.assert_close(mu[:, 0], prior[0][:, 0] + 0.5 + h[:, 0])
    torch.testing.assert_close(mu[:, 1], prior[0][:, 1] + 0.5 + d[:, 0])
    torch.testing.assert_close(mu[:, 2], prior[0][:, 2] + 0.5)
    # logvar: the prior's plus the residual, soft-clamped to (-10, 10)
    torch.testing.assert_close(logvar, torch.full_like(logvar, 10 * math.tanh(0.88)))


def test_block_posterior_has_a_conv_block_before_its_output_conv():
    block = VariationalSkip(feat_ch=4, dec_ch=6, latent_ch=3)  # the default
    conv = VariationalSkip(feat_ch=4, dec_ch=6, latent_ch=3, posterior="conv")
    assert len(block.posterior) == 2 and block.posterior[-1].in_channels == 6
    # no normalisation in q: a posterior must not depend on the other images of the batch
    norms = (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm)
    assert not any(isinstance(m, norms) for m in block.posterior.modules())
    n_params = [sum(p.numel() for p in m.parameters()) for m in (block, conv)]
    assert n_params[0] > n_params[1]
    assert block.project.in_channels == 3 and block.project.out_channels == 6


def test_reconstruction_draws_each_level_from_its_posterior_and_pays_its_kl():
    dec = _decoder()
    for level in dec.ladder:
        _set_bias(level.prior, mu=0.0, logvar=math.log(4.0))  # prior N(0, ~4)
        _set_bias(level.posterior[-1], mu=1.0, logvar=-2.0)  # posterior N(1, ~e^-0.6)
    prior_lv = 10 * math.tanh(math.log(4.0) / 10)  # each logvar is soft-clamped to (-10, 10)
    post_lv = 10 * math.tanh((prior_lv - 2.0) / 10)
    out = dec(_z(64), feats=_feats(64), generator=torch.Generator().manual_seed(0))
    assert len(out.latents) == len(out.skip_kls) == len(out.skip_means) == 3
    for lat, kl, mean in zip(out.latents, out.skip_kls, out.skip_means, strict=True):
        mu, logvar = lat.posterior
        torch.testing.assert_close(mu, torch.ones_like(mu))
        torch.testing.assert_close(logvar, torch.full_like(logvar, post_lv))
        torch.testing.assert_close(lat.prior[0], torch.zeros_like(mu))
        torch.testing.assert_close(lat.prior[1], torch.full_like(mu, prior_lv))
        assert torch.equal(mean, mu)
        noise = lat.z - mu  # z ~ N(1, e^post_lv)
        assert abs(float(noise.mean())) < 0.05
        assert float(noise.std()) == pytest.approx(math.exp(0.5 * post_lv), rel=0.05)
        # KL(q || p) per element, summed over space: one value per image and channel
        q = Normal(1.0, math.exp(0.5 * post_lv))
        p = Normal(0.0, math.exp(0.5 * prior_lv))
        per_element = float(kl_divergence(q, p))
        assert kl.shape == (64, 4)
        torch.testing.assert_close(kl, torch.full_like(kl, per_element * mu[0, 0].numel()))


def test_generation_draws_each_level_from_its_prior_with_the_temperature():
    dec = _decoder()
    for level in dec.ladder:
        _set_bias(level.prior, mu=0.5, logvar=math.log(4.0))  # prior N(0.5, ~4): std ~2
    z = _z(64)
    out = dec(z, generator=torch.Generator().manual_seed(0))
    assert out.skip_kls == [] and len(out.latents) == 3
    for lat, mean in zip(out.latents, out.skip_means, strict=True):
        assert lat.posterior is None
        torch.testing.assert_close(mean, lat.prior[0])
        noise = lat.z - lat.prior[0]
        std = math.exp(0.5 * 10 * math.tanh(math.log(4.0) / 10))  # the soft-clamped logvar
        assert abs(float(noise.mean())) < 0.1 and float(noise.std()) == pytest.approx(std, rel=0.05)
    # the temperature scales the noise; the same generator draws the same noise
    hot = dec(z, temperature=0.5, generator=torch.Generator().manual_seed(0))
    for cold_lat, hot_lat in zip(out.latents, hot.latents, strict=True):
        if cold_lat is out.latents[0]:  # deeper levels see a different decoder state
            torch.testing.assert_close(hot_lat.z - 0.5, 0.5 * (cold_lat.z - 0.5))
    means = dec(z, sample_skips=False)
    for lat in means.latents:
        torch.testing.assert_close(lat.z, lat.prior[0])


def test_reconstruction_means_without_sampling():
    dec = _decoder()
    for level in dec.ladder:
        _set_bias(level.posterior[-1], mu=0.25, logvar=0.0)
    out = dec(_z(), feats=_feats(), sample_skips=False)
    for lat, mean in zip(out.latents, out.skip_means, strict=True):
        torch.testing.assert_close(lat.z, lat.prior[0] + 0.25)
        assert torch.equal(mean, lat.z)
        assert lat.posterior is not None and torch.equal(lat.posterior[0], lat.z)


def test_explicit_skip_codes_override_the_features():
    dec = _decoder()
    codes = [torch.full((2, 4, s, s), float(i + 1)) for i, s in enumerate((4, 8, 16))]
    out = dec(_z(), feats=_feats(), skips=[c.to(torch.float64) for c in codes])
    assert out.skip_kls == []
    for lat, mean, code in zip(out.latents, out.skip_means, codes, strict=True):
        assert lat.z.dtype == torch.float32 and torch.equal(lat.z, code)
        assert torch.equal(mean, code) and lat.posterior is None and len(lat.prior) == 2
    # the output follows the codes: other codes, another image
    other = dec(_z(), skips=[c * 2 for c in codes])
    assert not torch.allclose(other.out, out.out)
