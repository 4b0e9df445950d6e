"""Latent-space structure: active units, k-NN accuracy, silhouette and classifier probes."""

from __future__ import annotations

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
