"""The evaluation's metrics as pure functions, on inputs whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from facemask_vae import metrics as M


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ---- image quality ------------------------------------------------------------------------------


def test_psnr_of_identical_images_is_capped_where_torchmetrics_gives_inf():
    x = _rand(3, 3, 16, 16)
    assert math.isinf(float(peak_signal_noise_ratio(x, x, data_range=1.0)))  # the documented case
    p = M.psnr_per_image(x, x)
    assert p.shape == (3,) and torch.all(p == M.PSNR_CAP_DB)


def test_psnr_matches_its_definition():
    x = torch.zeros(2, 3, 8, 8)
    y = torch.full_like(x, 0.1)  # MSE = 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert torch.allclose(M.psnr_per_image(y, x), torch.tensor([20.0, 20.0]), atol=1e-4)


def test_ssim_is_one_for_identical_images_and_lower_otherwise():
    x = _rand(2, 3, 32, 32)
    assert torch.allclose(M.ssim_per_image(x, x), torch.ones(2), atol=1e-5)
    assert torch.all(M.ssim_per_image(x, _rand(2, 3, 32, 32, seed=1)) < 0.5)


# ---- likelihood helpers -------------------------------------------------------------------------


def test_log_normal_matches_torch_distributions():
    x, mu, logvar = _rand(4, 5), _rand(4, 5, seed=1), _rand(4, 5, seed=2) - 0.5
    ref = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(x).sum(1)
    assert torch.allclose(M.log_normal(x, mu, logvar), ref, atol=1e-5)


def test_iwae_bound_is_log_mean_exp_and_at_least_the_mean():
    lw = torch.randn(16, 5, generator=torch.Generator().manual_seed(0)) * 3
    bound = M.iwae_bound(lw)
    ref = torch.log(torch.exp(lw.double()).mean(0))
    assert torch.allclose(bound, ref)
    assert torch.all(bound >= lw.double().mean(0))
    assert torch.allclose(M.iwae_bound(torch.full((8, 3), -2.0)), torch.full((3,), -2.0).double())


def test_bits_per_dim():
    assert M.bits_per_dim(12 * math.log(2), 12) == pytest.approx(1.0)


# ---- path smoothness ----------------------------------------------------------------------------


def test_a_perfectly_linear_path_scores_one_and_zero():
    a, b = _rand(2, 3, 8, 8), _rand(2, 3, 8, 8, seed=1)
    t = torch.linspace(0, 1, 9).view(1, -1, 1, 1, 1)
    paths = (1 - t) * a[:, None] + t * b[:, None]
    s = M.path_smoothness(paths)
    assert s["step_ratio"] == pytest.approx(1.0, abs=1e-6)  # float32 paths
    assert s["second_diff"] == pytest.approx(0.0, abs=1e-6)


def test_an_uneven_path_scores_worse_on_both():
    a, b = torch.zeros(1, 10), torch.ones(1, 10)
    t = torch.tensor([0.0, 0.05, 0.1, 0.15, 0.9, 1.0]).view(1, -1, 1)
    s = M.path_smoothness(a[:, None] + t * (b - a)[:, None])
    assert s["step_ratio"] > 2.5 and s["second_diff"] > 0.05


def test_an_evenly_spaced_curve_is_even_but_bends():
    ang = torch.linspace(0, math.pi, 7)
    path = torch.stack([ang.cos(), ang.sin()], dim=1)[None]  # a half circle, equal steps
    s = M.path_smoothness(path)
    assert s["step_ratio"] == pytest.approx(1.0, abs=1e-6) and s["second_diff"] > 0.01


def test_a_path_that_does_not_move_counts_as_even():
    s = M.path_smoothness(torch.ones(2, 5, 3))
    assert s == {"step_ratio": 1.0, "second_diff": 0.0}


def test_path_smoothness_needs_three_points():
    with pytest.raises(ValueError, match="T >= 3"):
        M.path_smoothness(torch.zeros(1, 2, 4))


# ---- distances between feature sets ------------------------------------------------------------


def test_frechet_distance_is_zero_for_identical_sets_and_the_squared_shift_for_shifted():
    f = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    assert M.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    shift = torch.full((8,), 0.5)
    assert M.frechet_distance(f, f + shift) == pytest.approx(8 * 0.25, rel=1e-6)
    # f vs 2f: means m and 2m, covariances S and 4S, so the distance is
    # ||m||^2 + Tr(S + 4S - 2 (4 S^2)^(1/2)) = ||m||^2 + Tr(S) exactly
    fd = f.double()
    exact = fd.mean(0).pow(2).sum() + torch.trace(torch.cov(fd.T))
    assert M.frechet_distance(f, f * 2) == pytest.approx(float(exact), rel=1e-9)


def test_frechet_distance_matches_torchmetrics_and_scipy_on_features():
    """The FID formula on raw features, against torchmetrics' FID computation and sqrtm."""
    from scipy.linalg import sqrtm
    from torchmetrics.image.fid import _compute_fid

    g = torch.Generator().manual_seed(3)
    a = torch.randn(300, 6, generator=g, dtype=torch.float64)
    b = (
        torch.randn(250, 6, generator=g, dtype=torch.float64)
        @ torch.rand(6, 6, generator=g, dtype=torch.float64)
        + 0.3
    )
    ours = M.frechet_distance(a, b)
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), torch.cov(a.T), torch.cov(b.T)
    assert ours == pytest.approx(float(_compute_fid(mu1, s1, mu2, s2)), rel=1e-9)
    s1n, s2n = s1.numpy(), s2.numpy()
    ref = ((mu1 - mu2) ** 2).sum().item() + np.trace(s1n + s2n - 2 * sqrtm(s1n @ s2n).real)
    assert ours == pytest.approx(ref, rel=1e-6) and ours > 1.0


def test_kernel_distance_near_zero_for_same_distribution_and_large_for_shifted():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    same, _ = M.kernel_distance(a, b, subsets=10, subset_size=200)
    shifted, std = M.kernel_distance(a, b + 1.0, subsets=10, subset_size=200)
    assert abs(same) < 0.05 and shifted > 1.0
    # mean and (population) std over the subsets are torchmetrics' KID estimator on each subset:
    # the same subsets, drawn from the same seeded generator
    from torchmetrics.image.kid import poly_mmd

    g = torch.Generator().manual_seed(0)
    per_subset = []
    for _ in range(10):
        x = a.double()[torch.randperm(400, generator=g)[:200]]
        y = (b + 1.0).double()[torch.randperm(400, generator=g)[:200]]
        per_subset.append(poly_mmd(x, y))
    per_subset = torch.stack(per_subset)
    assert shifted == pytest.approx(per_subset.mean().item(), rel=1e-9)
    assert std == pytest.approx(per_subset.std(unbiased=False).item(), rel=1e-9)
    assert 0 < std < 0.5 * shifted  # subsets of the same two sets agree roughly


def test_kernel_distance_on_whole_sets_is_torchmetrics_poly_mmd():
    from torchmetrics.image.kid import poly_mmd

    g = torch.Generator().manual_seed(1)
    a = torch.randn(60, 5, generator=g, dtype=torch.float64)
    b = torch.randn(60, 5, generator=g, dtype=torch.float64) * 1.5 + 0.2
    kid, std = M.kernel_distance(a, b, subsets=7, subset_size=1000)  # one subset: both sets
    assert kid == pytest.approx(poly_mmd(a, b).item(), rel=1e-9) and std == 0.0


# ---- latent-space structure --------------------------------------------------------------------


def _clusters(n: int = 200, gap: float = 6.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    z = rng.standard_normal((n, 5)) + gap * y[:, None]
    return z, y


def test_knn_and_silhouette_on_separable_and_on_random_labels():
    z, y = _clusters()
    assert M.knn_accuracy(z, y, k=5) == 1.0
    assert M.silhouette(z, y) > 0.5
    shuffled = np.random.default_rng(1).permutation(y)
    assert 0.3 < M.knn_accuracy(z, shuffled, k=5) < 0.7
    assert abs(M.silhouette(z, shuffled)) < 0.1


def test_knn_excludes_the_point_itself_even_with_duplicates():
    z = np.zeros((6, 2))
    y = np.array([0, 0, 0, 1, 1, 1])
    z[3:] = 1.0
    assert M.knn_accuracy(z, y, k=2) == 1.0


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_probes_on_separable_latents_are_near_perfect(kind):
    ztr, ytr = _clusters(300, gap=4.0, seed=0)
    zte, yte = _clusters(200, gap=4.0, seed=1)
    s = M.probe_scores(ztr, ytr, zte, yte, kind=kind, seed=0)
    assert s["accuracy"] > 0.97 and s["f1"] > 0.97 and s["roc_auc"] > 0.99


def test_probe_kind_is_checked():
    z, y = _clusters(20)
    with pytest.raises(ValueError, match="logreg"):
        M.probe_scores(z, y, z, y, kind="svm")


def test_classification_scores_of_a_perfect_and_an_inverted_classifier():
    y = np.array([0, 1, 0, 1])
    assert M.classification_scores(y, np.array([0.1, 0.9, 0.2, 0.8])) == {
        "accuracy": 1.0,
        "f1": 1.0,
        "roc_auc": 1.0,
    }
    assert M.classification_scores(y, np.array([0.9, 0.1, 0.8, 0.2]))["roc_auc"] == 0.0


def test_active_units_unchanged():
    mu = torch.zeros(100, 4)
    mu[:, 0] = torch.linspace(-1, 1, 100)
    assert M.active_units(mu) == 1
