"""The evaluation's metrics as pure functions, on inputs whose answers are known."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from facemask_vae import metrics as M
from facemask_vae.gaussian import log_normal


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
    assert torch.allclose(log_normal(x, mu, logvar), ref, atol=1e-5)


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


# ---- added for the mutation benchmark: known answers, edge cases and defaults ---------------


def test_active_units_counts_each_dimension_by_its_unbiased_variance():
    mu = torch.zeros(100, 5)
    mu[:, :3] = torch.linspace(-1, 1, 100)[:, None]  # three dimensions vary, two do not
    assert M.active_units(mu) == 3
    two = torch.tensor([[0.0], [1.0]])  # unbiased variance 0.5 (the biased one is 0.25)
    assert M.active_units(two, threshold=0.3) == 1
    assert M.active_units(two, threshold=0.5) == 0  # strictly above the threshold


def test_ssim_of_flat_images_is_the_luminance_term():
    # flat images have no variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1), C1 = (0.01 L)^2
    x = torch.zeros(2, 3, 16, 16)
    y = torch.stack([torch.full((3, 16, 16), 0.1), torch.full((3, 16, 16), 0.2)])
    c1 = 0.01**2
    expected = torch.tensor([c1 / (0.01 + c1), c1 / (0.04 + c1)])
    got = M.ssim_per_image(x, y)
    assert got.shape == (2,)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-6)
    c1 = 0.02**2  # data_range 2
    torch.testing.assert_close(
        M.ssim_per_image(x, y, data_range=2.0),
        torch.tensor([c1 / (0.01 + c1), c1 / (0.04 + c1)]),
        rtol=1e-3,
        atol=1e-6,
    )


def test_path_smoothness_of_a_half_circle_and_a_line_per_path():
    # 7 points on a unit half circle, angle step t: steps 2 sin(t/2), second differences
    # 4 sin^2(t/2), so second_diff = 4 sin^2(t/2) / (6 * 2 sin(t/2)) = sin(t/2) / 3
    ang = torch.linspace(0, math.pi, 7)
    arc = torch.stack([ang.cos(), ang.sin()], dim=1)
    line = torch.linspace(0, 10, 7)[:, None] * torch.tensor([1.0, 0.0])  # long, straight, even
    expected = math.sin(math.pi / 12) / 3
    assert M.path_smoothness(arc[None])["second_diff"] == pytest.approx(expected, rel=1e-5)
    both = M.path_smoothness(torch.stack([arc, line]))  # each path scored on its own, averaged
    assert both["second_diff"] == pytest.approx(expected / 2, rel=1e-5)
    assert both["step_ratio"] == pytest.approx(1.0, abs=1e-5)
    three = M.path_smoothness(torch.tensor([[[0.0], [1.0], [3.0]]]))  # the fewest points
    assert three["step_ratio"] == pytest.approx(2 / 1.5)
    assert three["second_diff"] == pytest.approx(1 / 3)
    # with an even path of other step sizes: each ratio is taken on its own path's steps
    mixed = M.path_smoothness(torch.tensor([[[0.0], [1.0], [3.0]], [[0.0], [10.0], [20.0]]]))
    assert mixed["step_ratio"] == pytest.approx((4 / 3 + 1) / 2)
    assert mixed["second_diff"] == pytest.approx((1 / 3 + 0) / 2)


def test_knn_accuracy_default_k_and_its_tie_rule():
    # 1-D: six points of class 0 at 0..5, four of class 1 at 100..103. With k = 5 a class-1
    # point sees its 3 classmates and 2 class-0 points (right); with k = 6 a 3-3 tie goes to the
    # lower label, 0 (wrong)
    z = np.array([0, 1, 2, 3, 4, 5, 100, 101, 102, 103], dtype=float)[:, None]
    y = np.array([0] * 6 + [1] * 4)
    assert M.knn_accuracy(z, y) == 1.0
    assert M.knn_accuracy(z, y, k=6) == 0.6


def test_knn_accuracy_on_fewer_points_than_k_and_never_votes_for_itself():
    # 4 points: k is cut to 3, every other point; each point's own class has one other member
    # against two of the other class, so every vote is lost (a point voting for itself would win)
    z = np.array([[0.0], [1.0], [10.0], [11.0]])
    y = np.array([0, 0, 1, 1])
    assert M.knn_accuracy(z, y) == 0.0


def test_silhouette_of_a_single_class_is_nan():
    z, _ = _clusters(20)
    assert math.isnan(M.silhouette(z, np.zeros(20)))


def test_probe_defaults_are_a_seeded_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    z, y = _clusters(60, gap=1.0, seed=0)
    zte, yte = _clusters(40, gap=1.0, seed=1)
    assert isinstance(M.fit_probe(z, y)[-1], LogisticRegression)
    assert M.probe_scores(z, y, zte, yte) == M.probe_scores(z, y, zte, yte, kind="logreg")


def test_mlp_probe_is_reproducible_by_its_seed():
    z, y = _clusters(60, gap=1.0, seed=0)
    zte, yte = _clusters(40, gap=1.0, seed=1)
    default = M.probe_probs(M.fit_probe(z, y, kind="mlp"), zte)
    np.testing.assert_array_equal(
        default, M.probe_probs(M.fit_probe(z, y, kind="mlp", seed=0), zte)
    )
    other = M.probe_probs(M.fit_probe(z, y, kind="mlp", seed=1), zte)
    assert not np.array_equal(default, other)
    scores = M.probe_scores(z, y, zte, yte, kind="mlp")
    assert scores == M.probe_scores(z, y, zte, yte, kind="mlp", seed=0)
    assert scores != M.probe_scores(z, y, zte, yte, kind="mlp", seed=1)
    s = M.probe_scores(z, y, zte, yte, kind="mlp", seed=3)
    assert s == M.probe_scores(z, y, zte, yte, kind="mlp", seed=3)
    assert s == M.classification_scores(yte, M.probe_probs(M.fit_probe(z, y, "mlp", 3), zte))


def test_classification_scores_edge_cases():
    y = np.array([0, 1, 0, 1])
    # p = 0.5 is not above 0.5: predicted negative
    assert M.classification_scores(y, np.array([0.5, 0.9, 0.5, 0.9]))["accuracy"] == 1.0
    # one class only: no ROC-AUC; no positives predicted or present: F1 0, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = M.classification_scores(np.zeros(4), np.full(4, 0.1))
    assert s["accuracy"] == 1.0 and s["f1"] == 0.0 and math.isnan(s["roc_auc"])


def test_precision_recall_separate_fidelity_from_coverage():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 8, generator=g)
    assert M.precision_recall(real, real) == (1.0, 1.0)
    # mode collapse: samples that are copies of 20 real points are all real-looking (precision 1)
    # but cover only the neighbourhoods of those 20 (recall well below 1)
    collapsed = real[:20].repeat(20, 1)
    p, r = M.precision_recall(collapsed, real)
    assert p == 1.0 and r < 0.3
    assert M.precision_recall(real, collapsed) == (r, p)  # the roles swap with the arguments
    # samples off the data: none inside the real manifold, no real image inside theirs
    assert M.precision_recall(real + 100.0, real) == (0.0, 0.0)
    # a fresh draw from the same distribution: both high, neither exactly 1
    p, r = M.precision_recall(torch.randn(400, 8, generator=g), real)
    assert 0.5 < p < 1.0 and 0.5 < r < 1.0
    with pytest.raises(ValueError, match="N > k=3"):
        M.precision_recall(real[:3], real)


def test_precision_recall_balls_reach_exactly_the_kth_nearest_real_neighbour():
    # real points on a line: the k-th nearest other point is 1, 1, 2, 3, 4 away (k = 1) and
    # 3, 2, 3, 4, 7 away (k = 2); the fakes at 14.5-14.7 are 4.5 from the last real point
    real = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])
    fake = torch.tensor([[14.5], [14.6], [14.7]])
    assert M.precision_recall(fake, real, k=1) == (0.0, 0.0)  # 4.5 > 4: outside every ball
    assert M.precision_recall(fake, real, k=2) == (1.0, 0.0)  # 4.5 <= 7: inside the last one
