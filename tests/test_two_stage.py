"""The two-stage sampler: a second VAE fitted to a model's codes, which must learn their density
(not just their mean), honour the temperature, and be reproducible from its seed."""

import math

import pytest
import torch

from facemask_vae.models import VAE
from facemask_vae.sampling import TwoStageSampler, fit_two_stage, make_sampler
from facemask_vae.sampling.two_stage import LOGVAR_RANGE, MIN_GAMMA, SecondStage


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _codes(n: int = 2000) -> torch.Tensor:
    """Codes on a curved 1-d manifold in 6-d, offset and scaled per dimension: a full-covariance
    Gaussian would fill the space between the arc's ends, the second stage should not."""
    t = torch.rand(n, generator=_gen(0)) * 3.0
    arc = torch.stack([t.cos(), t.sin()], 1) * 4.0
    z = torch.cat([arc, 0.05 * torch.randn(n, 4, generator=_gen(1))], 1)
    return z * torch.tensor([1.0, 2.0, 1.0, 1.0, 0.5, 3.0]) + torch.arange(6.0)


@pytest.fixture(scope="module")
def fitted() -> TwoStageSampler:
    return fit_two_stage(_codes(), latent_dim=2, hidden=64, epochs=60, seed=0)


def test_second_stage_learns_the_codes_density_not_only_their_moments(fitted):
    z = _codes()
    draws = fitted.sample(4000, 1.0, _gen(2))
    assert fitted.fit_loss[-1] < fitted.fit_loss[0]
    assert torch.allclose(draws.mean(0), z.mean(0), atol=0.25 * z.std(0).max().item())
    assert torch.allclose(draws.std(0)[:2], z.std(0)[:2], rtol=0.25)
    # draws lie near the arc: radius 4 in the first two (un-scaled, un-shifted) coordinates
    arc = (draws[:, :2] - torch.tensor([0.0, 1.0])) / torch.tensor([1.0, 2.0])
    assert (arc.norm(dim=1) - 4.0).abs().median() < 0.5
    # a Gaussian with the same moments puts much of its mass inside the arc (radius well below 4)
    gauss = make_sampler("gaussian", 6, z).sample(4000, 1.0, _gen(2))
    g_arc = (gauss[:, :2] - torch.tensor([0.0, 1.0])) / torch.tensor([1.0, 2.0])
    assert (g_arc.norm(dim=1) - 4.0).abs().median() > 2 * (arc.norm(dim=1) - 4.0).abs().median()


def test_temperature_scales_the_second_stage_prior_and_draws_are_scaled_back(fitted):
    spread = [fitted.sample(2000, t, _gen(3)).std(0)[:2].mean().item() for t in (1.0, 0.5, 0.0)]
    assert spread[0] > spread[1] > spread[2] == 0.0  # T 0: every draw decodes u = 0
    # T multiplies u, before the decoder, not the decoded codes; one scale for every dimension
    u = 0.5 * torch.randn(7, fitted.stage.latent_dim, generator=_gen(4))
    with torch.no_grad():
        want = fitted.mean + fitted.std * fitted.stage.decoder(u)
    assert torch.allclose(fitted.sample(7, 0.5, _gen(4)), want)
    assert torch.allclose(fitted.std, _codes().var(0).mean().sqrt().expand(6))


def test_second_stage_loss_is_the_negative_elbo_with_a_learned_variance():
    torch.manual_seed(0)
    stage = SecondStage(3, latent_dim=2, hidden=4)
    with torch.no_grad():
        stage.log_gamma.fill_(math.log(0.5))
    x = torch.randn(5, 3)
    torch.manual_seed(1)
    got = stage.loss(x)
    torch.manual_seed(1)
    mu, logvar = stage.encoder(x).chunk(2, dim=1)  # inside LOGVAR_RANGE: the clamp is idle
    u = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    rec = torch.distributions.Normal(stage.decoder(u), math.sqrt(0.5)).log_prob(x).sum(1)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(got, (kl - rec).mean())
    with torch.no_grad():
        stage.log_gamma.fill_(-20.0)
    assert stage.gamma().item() == pytest.approx(MIN_GAMMA)  # the floor against a perfect fit


def test_posterior_log_variance_is_bounded_so_a_runaway_encoder_cannot_overflow():
    """An unbounded log-variance ran away in the fit on the default U-Net VAE's codes at seed 1
    (to -600, then +65, and its weights turned NaN). The clamp is the identity inside its range;
    above it, loss and gradients stay finite (exp overflows float32 above 88); below it, the
    loss is that of the bound and the runaway units get no gradient."""
    torch.manual_seed(0)
    stage = SecondStage(3, latent_dim=2, hidden=4)
    x = torch.randn(5, 3)
    mu, logvar = stage.posterior(x)
    raw_mu, raw_logvar = stage.encoder(x).chunk(2, dim=1)
    assert torch.equal(mu, raw_mu) and torch.equal(logvar, raw_logvar)  # inside the range
    last = stage.encoder[-1]

    def loss_at(raw: float) -> torch.Tensor:
        with torch.no_grad():
            last.weight[2:].zero_()  # the log-variance half of the encoder's output is `raw`
            last.bias[2:].fill_(raw)
        stage.zero_grad()
        torch.manual_seed(2)
        loss = stage.loss(x)
        loss.backward()
        return loss

    for runaway in (200.0, -1000.0):
        loss = loss_at(runaway)
        _, logvar = stage.posterior(x)
        assert logvar.min() >= LOGVAR_RANGE[0] and logvar.max() <= LOGVAR_RANGE[1]
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in stage.parameters() if p.grad is not None)
    assert last.bias.grad[2:].abs().max() == 0  # the runaway units get no gradient...
    assert torch.equal(loss, loss_at(LOGVAR_RANGE[0]))  # ...and cost what the bound costs


def test_fit_is_seeded_and_leaves_the_global_rng_alone():
    z = _codes(300)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = fit_two_stage(z, latent_dim=2, hidden=16, epochs=2, seed=5)
    assert torch.equal(torch.rand(1), before)
    b = fit_two_stage(z, latent_dim=2, hidden=16, epochs=2, seed=5)
    assert torch.equal(a.sample(10, 1.0, _gen(0)), b.sample(10, 1.0, _gen(0)))
    c = fit_two_stage(z, latent_dim=2, hidden=16, epochs=2, seed=6)
    assert not torch.equal(a.sample(10, 1.0, _gen(0)), c.sample(10, 1.0, _gen(0)))


def test_make_sampler_builds_both_two_stage_kinds_with_their_options():
    z = _codes(300)
    opts = {"latent_dim": 3, "hidden": 16, "epochs": 1}
    for kind in ("two_stage", "two_stage_all"):
        s = make_sampler(kind, 6, z, seed=0, two_stage=opts)
        assert isinstance(s, TwoStageSampler) and s.name == kind and s.dim == 6
        assert s.stage.latent_dim == 3 and len(s.fit_loss) == 1
        assert s.stage.decoder[0].out_features == 16  # hidden
    with pytest.raises(ValueError, match="epochs >= 1"):
        fit_two_stage(z, epochs=0)


def test_two_stage_draws_drive_a_models_decoder():
    torch.manual_seed(0)
    m = VAE(image_size=32, widths=[8, 16, 16], latent_dim=8)
    s = fit_two_stage(torch.randn(200, 8), latent_dim=2, hidden=16, epochs=1)
    x = m.sample(3, generator=_gen(0), sampler=s, sampling_bn=False)
    assert x.shape == (3, 3, 32, 32) and x.min() >= 0 and x.max() <= 1


def test_eval_fits_two_stage_samplers_with_its_configured_options(monkeypatch):
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from facemask_vae.evaluation import samples

    codes = {"top": _codes(200)[:, :4], "all": _codes(200)}
    monkeypatch.setattr(samples, "sampler_latents", lambda ctx, i: codes["top"])
    monkeypatch.setattr(samples, "sampler_codes_all", lambda ctx, i: codes["all"])
    cfg = OmegaConf.create(
        {"gmm_components": 2, "seed": 0, "two_stage": {"latent_dim": 3, "hidden": 8, "epochs": 2}}
    )
    ctx = SimpleNamespace(cfg=cfg, runs=[SimpleNamespace(model=SimpleNamespace(latent_dim=4))])
    got = samples.fitted_samplers(ctx, 0, ["prior", "two_stage", "two_stage_all"])
    assert got["prior"].dim == 4
    assert got["two_stage"].dim == 4 and got["two_stage_all"].dim == 6
    for s in (got["two_stage"], got["two_stage_all"]):
        assert s.stage.latent_dim == 3 and len(s.fit_loss) == 2
        assert s.stage.decoder[0].out_features == 8


def test_the_figure_caption_names_the_two_stage_options_only_when_one_ran():
    from omegaconf import OmegaConf

    from facemask_vae.evaluation.sample_settings import two_stage_note

    assert two_stage_note(OmegaConf.create({"samplers": ["prior", "gmm"]})) == ""
    note = two_stage_note(
        OmegaConf.create({"samplers": ["gmm_all", "two_stage_all"], "two_stage": {"hidden": 32}})
    )
    assert "64-d latent" in note and "hidden layers of 32" in note and "100 epochs" in note


def test_on_batch_sees_every_batch_and_leaves_the_fit_unchanged():
    z, seen = torch.randn(300, 6), []

    def on_batch(epoch, stage, x, loss):
        stage.encoder(x)  # what a logger does: a forward pass, no random numbers
        seen.append((epoch, len(x), loss.requires_grad))

    kw = dict(latent_dim=2, hidden=8, epochs=2, batch_size=128)
    watched = fit_two_stage(z, on_batch=on_batch, **kw)
    plain = fit_two_stage(z, **kw)
    assert seen == [(e, n, False) for e in (0, 1) for n in (128, 128, 44)]
    assert watched.fit_loss == plain.fit_loss
    assert torch.equal(watched.sample(5, generator=_gen(0)), plain.sample(5, generator=_gen(0)))


def test_a_diverged_fit_is_refused_instead_of_drawing_nan(monkeypatch):
    real_loss = SecondStage.loss
    calls = []

    def loss(self, x):  # finite for the first epoch's 2 batches, then NaN
        calls.append(1)
        out = real_loss(self, x)
        return out if len(calls) <= 2 else out * float("nan")

    monkeypatch.setattr(SecondStage, "loss", loss)
    with pytest.raises(RuntimeError, match="diverged in epoch 2 of 3"):
        fit_two_stage(torch.randn(300, 6), latent_dim=2, hidden=8, epochs=3, batch_size=150)
