"""Samplers, BN statistics for sampling, and the levers on where the U-Net VAE puts information."""

import pytest
import torch
from torch import nn

from facemask_vae.gaussian import kl_balance_weights
from facemask_vae.lit import TrainingModule
from facemask_vae.models import AE, VAE
from facemask_vae.sampling import (
    GaussianMixtureSampler,
    PriorSampler,
    SamplingStats,
    estimate_bn_stats,
    fit_gaussian,
    fit_gmm,
    load_sampler,
    make_sampler,
    parse_name,
    sampler_from_state,
    save_sampler,
)
from facemask_vae.sampling.batchnorm import bn_buffers

SMALL = {"image_size": 32, "widths": [8, 16, 16], "latent_dim": 8}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _small(**kw) -> VAE:
    torch.manual_seed(0)
    m = VAE(**SMALL, **kw)
    m.sampling_bn_batches, m.sampling_bn_batch = 3, 32  # cheap; the mechanism is the same
    return m


# ---- samplers -----------------------------------------------------------------------------------


def test_prior_sampler_scales_by_temperature_and_is_seeded():
    s = PriorSampler(16)
    a, b = s.sample(20000, 1.0, _gen(0)), s.sample(20000, 0.5, _gen(0))
    assert torch.allclose(b, 0.5 * a)
    assert abs(a.std().item() - 1.0) < 0.02 and abs(a.mean().item()) < 0.02


def test_fitted_gaussian_recovers_mean_and_covariance():
    g = _gen(0)
    a = torch.tensor([[2.0, 0.0], [1.5, 0.5]])
    z = torch.randn(20000, 2, generator=g) @ a.T + torch.tensor([3.0, -1.0])
    s = fit_gaussian(z)
    draws = s.sample(40000, 1.0, _gen(1))
    assert torch.allclose(draws.mean(0), torch.tensor([3.0, -1.0]), atol=0.05)
    assert torch.allclose(torch.cov(draws.T), a @ a.T, rtol=0.05, atol=0.05)
    half = s.sample(40000, 0.5, _gen(1))
    assert torch.allclose(torch.cov(half.T), 0.25 * a @ a.T, rtol=0.05, atol=0.05)


def test_gmm_finds_two_clusters_and_samples_both_with_their_weights():
    g = _gen(0)
    z = torch.cat(
        [torch.randn(3000, 4, generator=g) * 0.1 + 5, torch.randn(1000, 4, generator=g) * 0.1 - 5]
    )
    s = make_sampler("gmm", 4, z, n_components=2)
    assert s.name == "gmm"
    draws = s.sample(8000, 1.0, _gen(2))
    share = (draws[:, 0] > 0).float().mean().item()
    assert abs(share - 0.75) < 0.03  # the mixture weights, not 50/50
    near = torch.minimum((draws - 5).norm(dim=1), (draws + 5).norm(dim=1))
    assert near.max() < 1.5  # every draw comes from one of the two clusters
    assert torch.equal(s.sample(10, 1.0, _gen(3)), s.sample(10, 1.0, _gen(3)))


def test_make_sampler_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="sampler must be one of"):
        make_sampler("flow", 4)
    with pytest.raises(ValueError, match="fitted to training latents"):
        make_sampler("gmm", 4)
    with pytest.raises(ValueError, match="N x 4"):
        make_sampler("gaussian", 4, torch.randn(10, 3))
    with pytest.raises(ValueError, match="needs more than"):
        fit_gmm(torch.randn(5, 4), n_components=10)


# ---- BN statistics for sampling -----------------------------------------------------------------


def test_estimated_bn_stats_are_the_mean_and_variance_of_what_the_forward_feeds():
    bn = nn.Sequential(nn.BatchNorm1d(3))
    g = _gen(0)
    batches = [torch.randn(50, 3, generator=g) * 2 + 7 for _ in range(4)]
    it = iter(batches)
    before = bn_buffers(bn)
    stats = estimate_bn_stats(bn, lambda: bn(next(it)), batches=4)
    allx = torch.cat(batches)
    assert torch.allclose(stats["0.running_mean"], allx.mean(0), atol=1e-5)
    # cumulative average of the per-batch unbiased variances
    var = torch.stack([b.var(0) for b in batches]).mean(0)
    assert torch.allclose(stats["0.running_var"], var, atol=1e-4)
    after = bn_buffers(bn)  # the module's own statistics, momentum and mode are untouched
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert bn[0].momentum == 0.1 and bn.training


def test_sample_uses_statistics_of_prior_samples_not_of_training():
    m = _small(skip="variational")
    m.eval()
    own = bn_buffers(m.decoder)
    g = _gen(0)
    a = m.sample(6, generator=_gen(5))
    b = m.sample(6, generator=_gen(5), sampling_bn=False)
    assert not torch.allclose(a, b)  # the re-estimated statistics differ from fresh BN's (0, 1)
    assert all(torch.equal(own[k], v) for k, v in bn_buffers(m.decoder).items())
    # by hand: the decoder in eval mode with the statistics estimated from prior draws
    stats = next(iter(m.sampling_stats._cache.values()))[1]
    with m.sampling_stats.applied(m.decoder, stats), torch.no_grad():
        z = torch.randn(6, 8, generator=g.manual_seed(5))
        ref = m.likelihood.mean(m.decoder(z, generator=g).out)
    assert torch.allclose(a, ref, atol=1e-6)


def test_sampling_stats_are_cached_per_temperature_and_refreshed_after_an_update():
    m = _small(skip="variational")
    calls = []
    orig = SamplingStats.get

    def counting(self, module, key, estimate):
        return orig(self, module, key, lambda: calls.append(key) or estimate())

    SamplingStats.get = counting
    try:
        m.sample(2)
        m.sample(2)
        assert len(calls) == 1  # cached
        m.sample(2, temperature=0.6)
        assert len(calls) == 2  # one entry per temperature
        opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
        m.train()
        m.loss_terms(torch.rand(4, 3, 32, 32)).recon.mean().backward()
        opt.step()
        m.sample(2)
        assert len(calls) == 3  # the weights changed: estimated again
    finally:
        SamplingStats.get = orig


def test_temperature_reaches_every_level_of_the_unet_vae():
    m = _small(skip="variational")
    # give the skip priors some spread so the temperature has something to scale
    for level in m.decoder.ladder:
        nn.init.normal_(level.prior.weight, std=0.3)
        nn.init.constant_(level.prior.bias, 0.5)
    z = torch.zeros(3, 8)
    cold = m.sample(3, generator=_gen(1), temperature=0.0, sampling_bn=False)
    means = m.decode(z)  # every level at its prior mean
    assert torch.allclose(cold, means, atol=1e-5)
    warm = m.sample(3, generator=_gen(1), temperature=1.0, sampling_bn=False)
    assert not torch.allclose(warm, means, atol=1e-3)


def test_skip_temperature_scales_the_skip_levels_alone():
    m = _small(skip="variational")
    for level in m.decoder.ladder:
        nn.init.normal_(level.prior.weight, std=0.3)
        nn.init.constant_(level.prior.bias, 0.5)
    means = m.decode(torch.zeros(3, 8))  # every level at its prior mean

    def draw(seed: int, **kw) -> torch.Tensor:
        return m.sample(3, generator=_gen(seed), sampling_bn=False, **kw)

    # top at T 0 (z = 0): only the skip levels can vary, and only at a skip temperature > 0
    assert torch.allclose(draw(1, temperature=0.0, skip_temperature=0.0), means, atol=1e-5)
    assert not torch.allclose(draw(1, temperature=0.0, skip_temperature=1.0), means, atol=1e-3)
    # skips at their means: the top latent alone decides, and it follows its own temperature
    a, b = (
        draw(1, temperature=1.0, skip_temperature=0.0),
        draw(2, temperature=1.0, skip_temperature=0.0),
    )
    # (an untrained decoder's output hardly moves: a few 1e-4 at most here)
    assert (a - b).abs().max() > 1e-4
    z = PriorSampler(8).sample(3, 1.0, _gen(1))
    assert torch.allclose(a, m.decode(z), atol=1e-5)
    # None means "the top's temperature", the behaviour before skip temperatures existed
    torch.testing.assert_close(
        draw(3, temperature=0.7), draw(3, temperature=0.7, skip_temperature=0.7)
    )


def test_fitted_sampler_drives_the_decoder():
    m = _small()
    s = fit_gaussian(torch.randn(200, 8) * 0.01 + 3.0)  # nearly a point at z = 3
    x = m.sample(4, generator=_gen(0), sampler=s, sampling_bn=False)
    ref = m.decode(torch.full((4, 8), 3.0))
    assert torch.allclose(x, ref, atol=1e-2)
    with pytest.raises(ValueError, match="8-d"):
        m.sample(2, sampler=PriorSampler(5))


def _point_masses(codes: torch.Tensor, all_levels: bool = True) -> GaussianMixtureSampler:
    """A mixture with one zero-spread component at each row of ``codes``."""
    n, d = codes.shape
    state = {"kind": "gmm", "all_levels": all_levels, "dim": d, "weights": torch.ones(n)}
    state |= {"means": codes, "chols": torch.zeros(n, d, d)}
    return GaussianMixtureSampler(n).load_state_dict(state)


def test_a_sampler_of_every_level_decodes_its_codes_in_the_levels_order():
    """A point mass at an image's flattened codes of every level samples its reconstruction: the
    split into levels and their shapes is the encoder's own (a swapped level would not be)."""
    m = _small(skip="variational", skip_levels=[0, 2]).eval()
    for level in m.decoder.ladder:  # posteriors away from their priors: the codes matter
        torch.nn.init.normal_(level.posterior[-1].weight, std=0.5)
    x = torch.rand(1, 3, 32, 32)
    flat = m.flatten_codes(m.encode_all(x))
    assert flat.shape == (1, sum(m.latent_sizes)) == (1, 8 + 4 * 4**2 + 4 * 16**2)
    got = m.sample(2, generator=_gen(0), sampler=_point_masses(flat), sampling_bn=False)
    want = m.reconstruct(x).expand(2, -1, -1, -1)
    assert torch.allclose(got, want, atol=1e-5)
    # only the top latent given: the skip levels come from their priors, another image
    top_only = m.sample(
        1,
        generator=_gen(0),
        sampler=_point_masses(flat[:, :8], all_levels=False),
        sampling_bn=False,
    )
    assert not torch.allclose(top_only, want[:1], atol=1e-3)
    # a sampler that does not fit the model's codes is refused with the widths
    with pytest.raises(ValueError, match="draws 100-d codes, but its top latent is 8-d"):
        m.sample(1, sampler=PriorSampler(100))
    with pytest.raises(ValueError, match="draws 8-d codes, but all its levels are 1096-d"):
        m.sample(1, sampler=_point_masses(flat[:, :8], all_levels=True))


def test_samplers_of_every_level_are_fitted_like_the_top_ones_and_named_apart():
    z = torch.randn(300, 6)
    for kind, components in (("gaussian_all", 1), ("gmm_all", 3)):
        s = make_sampler(kind, 6, z, n_components=components, seed=0)
        assert s.name == kind and len(s.weights) == components and s.dim == 6
    assert make_sampler("gaussian", 6, z).name == "gaussian"


def test_models_without_batchnorm_sample_unchanged():
    m = _small(norm="group")
    assert torch.equal(
        m.sample(3, generator=_gen(0)), m.sample(3, generator=_gen(0), sampling_bn=False)
    )
    assert len(m.sampling_stats) == 0


# ---- where the U-Net VAE puts information -------------------------------------------------------


def test_skip_levels_choose_which_resolutions_carry_latents():
    m = _small(skip="variational", skip_levels=[0, 2])
    x = torch.rand(4, 3, 32, 32)
    terms = m.loss_terms(x)
    assert len(terms.kls) == 3  # top + two levels
    assert [k.shape[1] for k in terms.kls] == [8, 4, 4]
    assert m.latent_sizes == [8, 4 * 4**2, 4 * 16**2]  # 32 px, depth 3: levels at 4, 8, 16 px
    codes = m.encode_all(x)
    assert [c.shape[-1] for c in codes[1:]] == [4, 16]
    assert m.reconstruct(x).shape == x.shape and m.sample(2).shape == (2, 3, 32, 32)
    det = _small(skip="deterministic", skip_levels=[1])
    assert len(det.encode_all(x)) == 2 and det.reconstruct(x).shape == x.shape
    with pytest.raises(ValueError, match="skip_levels"):
        _small(skip="variational", skip_levels=[3])


def test_default_skip_levels_and_decoder_blocks_keep_checkpoint_keys():
    old_style = set(_small(skip="variational").state_dict())
    explicit = set(_small(skip="variational", skip_levels=[0, 1, 2], decoder_blocks=1).state_dict())
    assert old_style == explicit
    bigger = _small(skip="variational", decoder_blocks=2)
    extra = set(bigger.state_dict()) - old_style
    assert extra and all(".extra." in k for k in extra)
    assert bigger.reconstruct(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_kl_balance_weights_favour_levels_that_carry_little_per_dimension():
    w = kl_balance_weights(torch.tensor([1.0, 100.0, 100.0]), torch.tensor([10.0, 10.0, 1000.0]))
    per_dim = torch.tensor([1.01 / 10, 100.01 / 10, 100.01 / 1000])
    assert torch.allclose(w, per_dim / per_dim.mean())
    assert torch.isclose(w.mean(), torch.tensor(1.0)) and w[2] < w[0] < w[1]
    assert torch.allclose(kl_balance_weights(torch.ones(3) * 5, torch.ones(3)), torch.ones(3))


def _objective(m: VAE, x: torch.Tensor, beta: float = 1.0) -> tuple[float, float, float]:
    torch.manual_seed(7)  # the same posterior noise for every model and call
    terms = m.loss_terms(x)
    loss = m.objective(terms, beta).loss
    recon = terms.recon.mean().item()
    kl = sum(k.sum(1).mean().item() for k in terms.kls)
    return loss.item(), recon, kl


def _logged(m: VAE, x: torch.Tensor) -> dict[str, float]:
    """What a validation step logs, with the posterior noise of :func:`_objective`."""
    module = TrainingModule(m, channels_last=False)
    logged: dict[str, float] = {}
    module.log_dict = lambda d, **k: logged.update(
        {k_: float(torch.as_tensor(v).detach()) for k_, v in d.items()}
    )
    torch.manual_seed(7)
    module.model_step((x, torch.zeros(len(x))), "val")
    return logged


def test_kl_balancing_changes_the_objective_only_during_warm_up():
    x = torch.rand(4, 3, 32, 32, generator=_gen(0))
    plain, bal = _small(skip="variational"), _small(skip="variational", kl_balance=True)
    for m in (plain, bal):  # posteriors away from their priors, so every level has a KL
        for level in m.decoder.ladder:
            nn.init.normal_(level.posterior[-1].weight, std=0.5)
        m.decoder.ladder[0].posterior[-1].weight.data.mul_(0.01)
        m.eval()
    bal.load_state_dict(plain.state_dict())
    for beta in (0.5, 1.0):
        (lp, recon, kl), (lb, recon_b, kl_b) = _objective(plain, x, beta), _objective(bal, x, beta)
        assert recon == pytest.approx(recon_b) and kl == pytest.approx(kl_b)  # same ELBO terms
        assert lp == pytest.approx(recon + beta * kl, rel=1e-5)
        if beta < 1:
            assert lb != pytest.approx(lp, rel=1e-4)
        else:
            assert lb == pytest.approx(lp, rel=1e-5)


def test_free_bits_on_the_top_latent_floor_only_the_top_and_never_the_elbo():
    x = torch.rand(4, 3, 32, 32, generator=_gen(0))
    m = _small(skip="variational", free_bits_top=5.0)
    m.eval()
    loss, recon, kl = _objective(m, x)
    torch.manual_seed(7)
    terms = m.loss_terms(x)
    top = terms.kls[0].mean(0).clamp(min=5.0).sum().item()  # per dimension, as free_bits_per=dim
    rest = sum(k.sum(1).mean().item() for k in terms.kls[1:])
    assert loss == pytest.approx(recon + top + rest, rel=1e-4)
    assert top > terms.kls[0].sum(1).mean().item()  # the floor is active at initialisation
    logged = _logged(m, x)
    assert logged["val/elbo"] == pytest.approx(-(recon + kl), rel=1e-5)


@pytest.mark.parametrize("per", ["dim", "group"])
def test_free_bits_floor_every_level_in_the_objective_and_never_the_elbo(per):
    x = torch.rand(4, 3, 32, 32, generator=_gen(0))
    plain = _small(skip="variational")
    floored = _small(skip="variational", free_bits=0.5, free_bits_per=per)
    floored.load_state_dict(plain.state_dict())
    for m in (plain, floored):
        m.eval()
    lp, recon, kl = _objective(plain, x)
    lf, recon_f, kl_f = _objective(floored, x)
    assert recon_f == pytest.approx(recon) and kl_f == pytest.approx(kl)  # same ELBO terms
    assert lp == pytest.approx(recon + kl, rel=1e-5)
    torch.manual_seed(7)
    kls = plain.loss_terms(x).kls
    if per == "dim":  # every group's batch mean floored at 0.5 nats, on every level
        floor = sum(k.mean(0).clamp(min=0.5).sum().item() for k in kls)
    else:  # every level's total floored at 0.5 nats
        floor = sum(max(k.sum(1).mean().item(), 0.5) for k in kls)
    assert floor > kl + 1e-3  # the floor is active at initialisation
    assert lf == pytest.approx(recon + floor, rel=1e-4)
    logged = _logged(floored, x)
    assert logged["val/elbo"] == pytest.approx(-(recon + kl), rel=1e-5)
    assert logged["val/loss"] == pytest.approx(lf, rel=1e-6)


def test_ae_samples_with_fitted_latents_too():
    torch.manual_seed(0)
    m = AE(**SMALL)
    m.sampling_bn_batches, m.sampling_bn_batch = 2, 16
    s = make_sampler("gmm", 8, torch.randn(100, 8), n_components=2)
    assert m.sample(3, sampler=s, generator=_gen(0)).shape == (3, 3, 32, 32)


def test_each_model_draws_only_the_settings_that_change_it():
    """Skip temperatures only for models with skip levels; the *_all samplers only for those, and
    with no skip temperature (they draw every level), even when none is configured as null."""
    from facemask_vae.evaluation.sample_settings import Setting, model_settings

    grid = [
        Setting(sampler, 1.0, True, skip_t)
        for sampler in ("prior", "gaussian_all")
        for skip_t in (None, 0.5)
    ]
    with_skips = model_settings(grid, has_skips=True)
    assert with_skips == [grid[0], grid[1], Setting("gaussian_all", 1.0, True, None)]
    assert model_settings(grid, has_skips=False) == [grid[0]]
    only_half = [s for s in grid if s.skip_temperature == 0.5]
    assert Setting("gaussian_all", 1.0, True, None) in model_settings(only_half, has_skips=True)


@pytest.mark.parametrize("name", ["prior", "gaussian", "gmm_all", "two_stage_all"])
def test_a_sampler_saved_and_loaded_draws_the_same_codes(tmp_path, name):
    z = torch.randn(200, 6, generator=_gen(0)) * torch.linspace(0.5, 2, 6)
    two = {"latent_dim": 2, "hidden": 8, "epochs": 2}
    s = make_sampler(name, 6, z, n_components=3, seed=0, two_stage=two)
    path = save_sampler(s, tmp_path / "sampler.pt")
    back = load_sampler(path)
    assert type(back) is type(s) and back.name == name and back.all_levels == s.all_levels
    assert torch.equal(back.sample(5, 0.7, _gen(1)), s.sample(5, 0.7, _gen(1)))
    assert back.fingerprint == s.fingerprint  # the same BN statistics cache entry
    state = torch.load(path, weights_only=True)  # tensors and plain values only
    assert state["kind"] == parse_name(name)[0]


def test_samplers_are_fitted_objects_and_a_refit_changes_their_fingerprint():
    s = GaussianMixtureSampler(1)
    with pytest.raises(ValueError, match="not fitted"):
        s.state_dict()
    a = s.fit(torch.randn(50, 3, generator=_gen(0))).fingerprint
    assert s.fit(torch.randn(50, 3, generator=_gen(1))).fingerprint != a
    with pytest.raises(ValueError, match="not a sampler state"):
        sampler_from_state({"kind": "flow"})
