"""Metrics as pure functions of tensors, so they test without a Trainer or a model.

One module per idea: ``image`` (PSNR, SSIM), ``likelihood`` (IWAE bound, bits per dimension),
``paths`` (interpolation smoothness), ``distances`` (Frechet, precision/recall, KID, MMD) and
``latent`` (active units, k-NN, silhouette, probes). Every public name is re-exported here; a
setting such as ``distances.KID_PRECOMPUTE_MAX`` is changed in its own module.
"""

from __future__ import annotations

from facemask_vae.metrics.distances import (
    KID_PRECOMPUTE_MAX,
    frechet_distance,
    kernel_distance,
    mmd_to_standard_normal,
    precision_recall,
)
from facemask_vae.metrics.image import PSNR_CAP_DB, psnr_per_image, ssim_per_image
from facemask_vae.metrics.latent import (
    active_units,
    classification_scores,
    fit_probe,
    knn_accuracy,
    probe_probs,
    probe_scores,
    silhouette,
)
from facemask_vae.metrics.likelihood import bits_per_dim, iwae_bound
from facemask_vae.metrics.paths import path_smoothness

__all__ = [
    "KID_PRECOMPUTE_MAX",
    "PSNR_CAP_DB",
    "active_units",
    "bits_per_dim",
    "classification_scores",
    "fit_probe",
    "frechet_distance",
    "iwae_bound",
    "kernel_distance",
    "knn_accuracy",
    "mmd_to_standard_normal",
    "path_smoothness",
    "precision_recall",
    "probe_probs",
    "probe_scores",
    "psnr_per_image",
    "silhouette",
    "ssim_per_image",
]
