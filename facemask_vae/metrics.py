"""Metrics as pure functions of tensors, so they test without a Trainer or a model."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """Latent dimensions whose posterior mean varies over the data: Cov_x(E[z|x]) > threshold.

    Burda et al. (2016): a dimension the encoder never moves carries no information. ``mu`` is
    N x D (any trailing shape is flattened), one row per data point.
    """
    mu = mu.flatten(1).float()
    return int((mu.var(dim=0, unbiased=True) > threshold).sum())


# ---- image quality ------------------------------------------------------------------------------

#: PSNR is capped here: identical images have MSE 0, where torchmetrics returns +inf.
PSNR_CAP_DB = 100.0


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


def psnr_per_image(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, cap_db: float = PSNR_CAP_DB
) -> torch.Tensor:
    """PSNR of every image pair in dB (B), capped at ``cap_db`` so identical images stay finite."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    p = peak_signal_noise_ratio(
        x.float(), y.float(), data_range=data_range, reduction="none", dim=(1, 2, 3)
    )
    return p.clamp(max=cap_db)


def ssim_per_image(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of every image pair (B), torchmetrics' Gaussian-window definition."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(
        x.float(), y.float(), data_range=data_range, reduction="none"
    )


# ---- likelihood bounds --------------------------------------------------------------------------


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """The importance-weighted bound log (1/K) sum_k w_k from K x B log-weights (Burda et al.)."""
    return torch.logsumexp(log_w.double(), dim=0) - math.log(log_w.shape[0])


def bits_per_dim(nats: torch.Tensor | float, n_dims: int) -> float:
    """Nats per image -> bits per dimension: nats / (n_dims ln 2)."""
    return float(nats) / (n_dims * math.log(2))


# ---- paths (latent smoothness) ------------------------------------------------------------------


def path_smoothness(paths: torch.Tensor) -> dict[str, float]:
    """How evenly decoded interpolation paths move, for B x T x ... paths (T >= 3 points each).

    ``step_ratio``: max step / mean step, with step_i = ||p_{i+1} - p_i|| (1 = perfectly even, a
    jump makes it large). ``second_diff``: mean ||p_{i+1} - 2 p_i + p_{i-1}|| divided by the
    path length sum_i step_i (0 for evenly spaced points on a line). Both are averaged over paths.
    """
    if paths.ndim < 3 or paths.shape[1] < 3:
        raise ValueError(f"paths must be B x T x ... with T >= 3, got {tuple(paths.shape)}")
    p = paths.flatten(2).double()
    steps = (p[:, 1:] - p[:, :-1]).norm(dim=2)  # B x (T-1)
    second = (p[:, 2:] - 2 * p[:, 1:-1] + p[:, :-2]).norm(dim=2)  # B x (T-2)
    mean_step = steps.mean(dim=1)
    length = steps.sum(dim=1)
    eps = torch.finfo(torch.float64).tiny
    # a path that does not move at all is trivially even
    ratio = torch.where(mean_step > eps, steps.amax(dim=1) / mean_step.clamp(min=eps), 1.0)
    rel = torch.where(length > eps, second.mean(dim=1) / length.clamp(min=eps), 0.0)
    return {"step_ratio": float(ratio.mean()), "second_diff": float(rel.mean())}


# ---- distances between feature sets ------------------------------------------------------------


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


# ---- latent-space structure --------------------------------------------------------------------


def knn_accuracy(
    z: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, k: int = 5
) -> float:
    """Leave-one-out k-NN accuracy: how often the majority label of a point's k nearest
    neighbours (itself excluded, Euclidean) is its own label. Ties go to the lower label."""
    from sklearn.neighbors import NearestNeighbors

    z, y = _np(z), _np(labels).astype(int)
    k = min(k, len(y) - 1)
    nn_ = NearestNeighbors(n_neighbors=k + 1).fit(z)
    idx = nn_.kneighbors(z, return_distance=False)
    # drop each point itself (usually, but with duplicates not always, the first neighbour)
    not_self = idx != np.arange(len(y))[:, None]
    first = np.argsort(~not_self, axis=1, kind="stable")[:, :k]
    neigh = np.take_along_axis(idx, first, axis=1)
    votes = y[neigh]
    counts = np.stack([(votes == c).sum(axis=1) for c in range(int(y.max()) + 1)], axis=1)
    pred = counts.argmax(axis=1)
    return float((pred == y).mean())


def silhouette(z: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Silhouette score of the label classes in z (Euclidean): -1..1, higher = better separated."""
    from sklearn.metrics import silhouette_score

    y = _np(labels)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(silhouette_score(_np(z), y, metric="euclidean"))


def probe_scores(
    z_train: torch.Tensor | np.ndarray,
    y_train: torch.Tensor | np.ndarray,
    z_test: torch.Tensor | np.ndarray,
    y_test: torch.Tensor | np.ndarray,
    kind: str = "logreg",
    seed: int = 0,
) -> dict[str, float]:
    """Fit a linear (``logreg``) or small MLP (``mlp``) probe on standardised train features and
    return test accuracy, F1 (positive class 1) and ROC-AUC."""
    probe = fit_probe(z_train, y_train, kind=kind, seed=seed)
    return classification_scores(_np(y_test), probe_probs(probe, z_test))


def fit_probe(
    z_train: torch.Tensor | np.ndarray,
    y_train: torch.Tensor | np.ndarray,
    kind: str = "logreg",
    seed: int = 0,
) -> Any:
    """The probe of :func:`probe_scores`, fitted: a scikit-learn pipeline (standardisation, then
    logistic regression or the MLP) for :func:`probe_probs`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logreg":
        clf = LogisticRegression(max_iter=500, C=1.0)
    elif kind == "mlp":
        clf = MLPClassifier(
            hidden_layer_sizes=(128,),
            max_iter=200,
            early_stopping=True,
            n_iter_no_change=10,
            random_state=seed,
        )
    else:
        raise ValueError(f"probe kind must be 'logreg' or 'mlp', got {kind!r}")
    pipe = make_pipeline(StandardScaler(), clf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings: the probe is a measurement
        pipe.fit(_np(z_train), _np(y_train))
    return pipe


def probe_probs(probe: Any, z: torch.Tensor | np.ndarray) -> np.ndarray:
    """P(class 1) of a :func:`fit_probe` probe for features ``z`` (N x D)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return probe.predict_proba(_np(z))[:, 1]


def classification_scores(y_true: np.ndarray, prob_pos: np.ndarray) -> dict[str, float]:
    """Accuracy and F1 at p > 0.5, and ROC-AUC, from the probabilities of class 1."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    y_true, prob_pos = _np(y_true).astype(int), _np(prob_pos)
    pred = (prob_pos > 0.5).astype(int)
    auc = roc_auc_score(y_true, prob_pos) if len(np.unique(y_true)) == 2 else float("nan")
    return {
        "accuracy": float(accuracy_score(y_true, pred)),
        "f1": float(f1_score(y_true, pred, zero_division=0)),
        "roc_auc": float(auc),
    }


def _np(a: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)
