"""Distances between feature sets (Frechet, kernel/KID, MMD to the prior) on inputs whose answers
are known, and against torchmetrics and scipy."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from facemask_vae import metrics as M

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


def test_mmd_to_standard_normal_is_unbiased_on_prior_codes():
    # tiny samples of the prior itself: the unbiased estimate averages 0 (one that kept the
    # diagonal k(z, z) = 1 would average about +0.1 here)
    g = torch.Generator().manual_seed(0)
    vals = [
        M.mmd_to_standard_normal(torch.randn(10, 8, generator=g), generator=g) for _ in range(100)
    ]
    assert abs(sum(vals) / len(vals)) < 0.01
    vals = [
        M.mmd_to_standard_normal(torch.randn(10, 8, generator=g), n_prior=30, generator=g)
        for _ in range(100)
    ]
    assert abs(sum(vals) / len(vals)) < 0.01


def test_mmd_to_standard_normal_is_reproducible_with_a_generator():
    z = torch.randn(50, 4, generator=torch.Generator().manual_seed(1)) + 1.0
    a = M.mmd_to_standard_normal(z, generator=torch.Generator().manual_seed(7))
    b = M.mmd_to_standard_normal(z, generator=torch.Generator().manual_seed(7))
    assert a == b and a > 0.1


def test_frechet_distance_in_one_dimension():
    # 1-D Gaussians: (m1 - m2)^2 + (s1 - s2)^2 with the standard deviations s
    a = torch.tensor([[0.0], [2.0]])  # mean 1, variance 2
    b = torch.tensor([[1.0], [3.0], [5.0]])  # mean 3, variance 4
    expected = 4 + (math.sqrt(2) - 2) ** 2
    assert M.frechet_distance(a, b) == pytest.approx(expected)
    assert M.frechet_distance(b, a) == pytest.approx(expected)


def test_kernel_distance_on_sets_of_different_sizes():
    from torchmetrics.image.kid import poly_mmd

    # b's rows are all the same point: every subset of b is the same, so the value is known
    a = torch.tensor([[0.0, 1.0], [2.0, -1.0]], dtype=torch.float64)
    v = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    b = v.repeat(5, 1)
    expected = poly_mmd(a, v.repeat(2, 1)).item()  # subsets of the smaller size, 2
    assert M.kernel_distance(a, b, subsets=3)[0] == pytest.approx(expected, rel=1e-9)
    assert M.kernel_distance(b, a, subsets=3)[0] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="at least 2 features"):
        M.kernel_distance(a[:1], b)


def test_kernel_distance_precomputed_kernels_give_the_per_subset_values(monkeypatch):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(40, 6, generator=g), torch.randn(30, 6, generator=g) + 0.3
    fast = M.kernel_distance(a, b, subsets=9, subset_size=20, seed=3)
    monkeypatch.setattr(
        M.distances, "KID_PRECOMPUTE_MAX", 0
    )  # every subset's kernels from its features
    slow = M.kernel_distance(a, b, subsets=9, subset_size=20, seed=3)
    assert fast == pytest.approx(slow, rel=1e-12) and fast[1] > 0


def test_kernel_distance_draws_subsets_of_the_larger_set():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 3, generator=g), torch.randn(8, 3, generator=g)
    _, std = M.kernel_distance(a, b, subsets=5)
    assert std > 0  # a is used whole, but b's subsets differ


def _rbf_mmd_closed_form(d: int, shift: float, sigma: float) -> float:
    """MMD^2 between N(shift, sigma^2 I) and N(0, I) in d dimensions for the kernel mean over
    s in {0.2, 0.5, 1, 2, 5} d of exp(-||x - y||^2 / s): for u ~ N(m, v I),
    E exp(-||u||^2 / s) = (1 + 2 v / s)^(-d/2) exp(-||m||^2 / (s + 2 v))."""
    total = 0.0
    for c in (0.2, 0.5, 1.0, 2.0, 5.0):
        s = c * d
        zz = (1 + 4 * sigma**2 / s) ** (-d / 2)
        pp = (1 + 4 / s) ** (-d / 2)
        v = sigma**2 + 1
        zp = (1 + 2 * v / s) ** (-d / 2) * math.exp(-d * shift**2 / (s + 2 * v))
        total += zz + pp - 2 * zp
    return total / 5


@pytest.mark.parametrize(("shift", "sigma"), [(0.5, 1.0), (0.0, 0.5), (1.0, 0.3)])
def test_mmd_to_standard_normal_matches_the_closed_form_for_gaussian_codes(shift, sigma):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1000, 2, 4, generator=g) * sigma + shift  # flattened to 8 dimensions
    expected = _rbf_mmd_closed_form(8, shift, sigma)
    assert M.mmd_to_standard_normal(z, generator=g) == pytest.approx(expected, rel=0.1)
    # a prior sample of another size estimates the same quantity
    assert M.mmd_to_standard_normal(z, n_prior=400, generator=g) == pytest.approx(
        expected, rel=0.15
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [((1, 3), (5, 3)), ((5, 3), (1, 3)), ((5, 3), (5, 4))],
)
def test_frechet_distance_refuses_too_few_rows_or_mismatched_features(a, b):
    with pytest.raises(ValueError, match=re.escape(f"N >= 2, got {a}, {b}")):
        M.frechet_distance(torch.zeros(a), torch.zeros(b))


def test_frechet_distance_refuses_nan_features_instead_of_crashing():
    f = torch.randn(50, 8)
    bad = f.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        M.frechet_distance(bad, f)
    with pytest.raises(ValueError, match="NaN or inf"):
        M.frechet_distance(f, bad * float("inf"))
