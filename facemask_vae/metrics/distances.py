"""Distances between feature sets: Frechet, precision/recall, KID and MMD to N(0, I)."""

from __future__ import annotations

import torch


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """Frechet distance of Gaussians fitted to two N x F feature sets (the FID formula).

    ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)); the trace of the matrix square root is the
    sum of square roots of the eigenvalues of S1 S2 (real and >= 0 up to rounding).
    """
    a, b = f1.double().flatten(1), f2.double().flatten(1)
    if a.shape[0] < 2 or b.shape[0] < 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two N x F sets with N >= 2, got {tuple(a.shape)}, {tuple(b.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        # LAPACK's eigensolver can crash the process on NaN input rather than raise
        raise ValueError("the feature sets hold NaN or inf: their Frechet distance is undefined")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    eig = torch.linalg.eigvals(s1 @ s2)
    tr_sqrt = eig.sqrt().real.sum()
    d = (mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_sqrt
    return float(d.clamp(min=0))


def precision_recall(fake: torch.Tensor, real: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of N x F and M x F feature sets:
    the share of ``fake`` inside the real manifold (the union of balls round each real feature
    reaching its k-th nearest real neighbour), and the share of ``real`` inside the fake one.
    Precision is fidelity, recall is coverage: FID folds the two into one number."""
    a, b = fake.double().flatten(1), real.double().flatten(1)
    if min(len(a), len(b)) <= k or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"need two N x F sets with N > k={k}, got {tuple(a.shape)}, {tuple(b.shape)}"
        )

    def radii(x: torch.Tensor) -> torch.Tensor:  # k + 1: the nearest is the point itself
        return torch.cdist(x, x).kthvalue(k + 1, dim=1).values

    d = torch.cdist(a, b)  # N x M, read row-wise for precision and column-wise for recall
    precision = (d <= radii(b)[None, :]).any(1).double().mean()
    recall = (d <= radii(a)[:, None]).any(0).double().mean()
    return float(precision), float(recall)


#: sets up to this size get their kernel matrices once, not once per subset (3 x 8 n^2 bytes)
KID_PRECOMPUTE_MAX = 4096


def kernel_distance(
    f1: torch.Tensor,
    f2: torch.Tensor,
    subsets: int = 50,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: unbiased MMD^2 with the cubic polynomial kernel (x.y / F + 1)^3, mean and std over subsets.

    Same estimator as torchmetrics' KernelInceptionDistance (Binkowski et al. 2018), on features.
    For sets of up to ``KID_PRECOMPUTE_MAX`` features the three kernel matrices are computed once
    and each subset reads its block (the same values, ~50x fewer matrix products at 1,000 x 2,048).
    """
    a, b = f1.double().flatten(1), f2.double().flatten(1)
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 features in each set")
    if m == a.shape[0] and m == b.shape[0]:
        subsets = 1  # every subset would be the whole of both sets
    g = torch.Generator().manual_seed(seed)
    dim = a.shape[1]

    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x @ y.T / dim + 1) ** 3

    full = None
    if max(a.shape[0], b.shape[0]) <= KID_PRECOMPUTE_MAX and subsets > 1:
        full = kernel(a, a), kernel(b, b), kernel(a, b)
    vals = []
    for _ in range(subsets):
        ix = torch.randperm(a.shape[0], generator=g)[:m]
        iy = torch.randperm(b.shape[0], generator=g)[:m]
        if full is None:
            x, y = a[ix], b[iy]
            kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
        else:
            kxx, kyy, kxy = full[0][ix][:, ix], full[1][iy][:, iy], full[2][ix][:, iy]
        off = m * (m - 1)
        mmd = (
            (kxx.sum() - kxx.diagonal().sum()) / off
            + (kyy.sum() - kyy.diagonal().sum()) / off
            - 2 * kxy.mean()
        )
        vals.append(mmd)
    v = torch.stack(vals)
    return float(v.mean()), float(v.std(unbiased=False))


def mmd_to_standard_normal(
    z: torch.Tensor, n_prior: int | None = None, generator: torch.Generator | None = None
) -> float:
    """Squared MMD (RBF kernels at several bandwidths, unbiased) between codes and N(0, I) draws.

    0 when the codes look like the prior; how far an aggregate posterior is from the prior
    without assuming it is Gaussian (what an adversarial autoencoder minimises).
    """
    z = z.detach().float().flatten(1)
    n, d = z.shape
    p = torch.randn(n_prior or n, d, generator=generator).to(z)
    scales = torch.tensor([0.2, 0.5, 1.0, 2.0, 5.0], device=z.device) * d

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / s) for s in scales) / len(scales)

    kzz, kpp, kzp = k(z, z), k(p, p), k(z, p)
    m, q = len(z), len(p)
    term_z = (kzz.sum() - kzz.diagonal().sum()) / (m * (m - 1))
    term_p = (kpp.sum() - kpp.diagonal().sum()) / (q * (q - 1))
    return float(term_z + term_p - 2 * kzp.mean())
