"""The evaluation's output: matplotlib figures (PNG) and the markdown report around them.

Figures are pure functions of tensors/arrays and a path, so the pipeline decides what to show
and this module only how. Images are float tensors in [0, 1], N x 3 x H x W.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure  # the object API: no pyplot state, no GUI backend
from matplotlib.ticker import MaxNLocator
from torchvision.utils import make_grid

DPI = 110


def _to_hwc(grid: torch.Tensor) -> np.ndarray:
    return grid.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def image_rows(
    rows: Sequence[tuple[str, torch.Tensor]], path: Path, title: str = "", cell: float = 0.62
) -> Path:
    """One labelled row of images per entry (each N x 3 x H x W), stacked vertically.

    The layout is in inches (``cell`` per image), with room on the left for the longest label.
    """
    n = max(r[1].shape[0] for r in rows)
    label_w = 0.15 + 0.068 * max(len(r[0]) for r in rows)
    top = 0.35 if title else 0.05
    width, height = label_w + n * cell + 0.05, top + len(rows) * cell + 0.05
    fig = Figure(figsize=(width, height))
    for r, (label, imgs) in enumerate(rows):
        y = height - top - (r + 1) * cell
        ax = fig.add_axes(
            (label_w / width, y / height, imgs.shape[0] * cell / width, cell / height)
        )
        grid = make_grid(imgs.float().cpu(), nrow=imgs.shape[0], padding=1, pad_value=1.0)
        ax.imshow(_to_hwc(grid), interpolation="nearest")
        ax.axis("off")
        fig.text(
            (label_w - 0.08) / width,
            (y + cell / 2) / height,
            label,
            ha="right",
            va="center",
            fontsize=8,
        )
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.05 / height, va="top")
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.05)
    return path


def image_panels(
    panels: Sequence[tuple[str, torch.Tensor]], path: Path, nrow: int, title: str = ""
) -> Path:
    """Side-by-side panels, each a grid of images (N x 3 x H x W) with ``nrow`` per row."""
    k = len(panels)
    fig = Figure(figsize=(3.4 * k, 3.6))
    axes = fig.subplots(1, k, squeeze=False)
    for ax, (label, imgs) in zip(axes[0], panels, strict=True):
        ax.imshow(_to_hwc(make_grid(imgs.float().cpu(), nrow=nrow, padding=1, pad_value=1.0)))
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.4)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.05)
    return path


def scatter_panels(
    panels: Sequence[tuple[str, np.ndarray]],
    labels: np.ndarray,
    path: Path,
    class_names: Sequence[str] = ("without mask", "with mask"),
) -> Path:
    """2-D embeddings (N x 2 each), one panel per model, points coloured by label."""
    k = len(panels)
    fig = Figure(figsize=(3.6 * k, 3.6))
    axes = fig.subplots(1, k, squeeze=False)
    colors = ("tab:orange", "tab:blue")
    for ax, (title, emb) in zip(axes[0], panels, strict=True):
        for c, name in enumerate(class_names):
            m = labels == c
            ax.scatter(emb[m, 0], emb[m, 1], s=4, alpha=0.6, c=colors[c % 2], label=name)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].legend(fontsize=7, markerscale=3, loc="best")
    fig.tight_layout(pad=0.4)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.05)
    return path


def training_curves(
    curves: Mapping[str, Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]],
    path: Path,
) -> Path:
    """Per quantity (loss, recon, KL, beta) one panel; per run one colour; train solid, val dashed.

    ``curves[run][quantity][stage] = (epochs, values)``.
    """
    quantities = ["loss", "recon", "kl", "beta"]
    titles = {
        "loss": "loss (nats/image)",
        "recon": "reconstruction NLL (nats/image)",
        "kl": "KL (nats/image)",
        "beta": "beta",
    }
    fig = Figure(figsize=(15, 3.4))
    axes = fig.subplots(1, 4, squeeze=False)
    cmap = matplotlib.colormaps["tab10"]
    for ax, q in zip(axes[0], quantities, strict=True):
        plotted = False
        for i, (run, per_q) in enumerate(curves.items()):
            for stage, style in (("train", "-"), ("val", "--")):
                if stage in per_q.get(q, {}):
                    ep, v = per_q[q][stage]
                    ax.plot(ep, v, style, color=cmap(i % 10), label=f"{run} {stage}", marker=".")
                    plotted = True
        ax.set_title(titles[q], fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        if q in ("loss", "recon") and plotted:
            _symlog_if_wide(ax)
        if not plotted:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(len(labels), 6))
        fig.tight_layout(rect=(0, 0.12, 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.05)
    return path


def _symlog_if_wide(ax: Any) -> None:
    """Early epochs can be orders of magnitude above the rest: a symlog axis keeps both readable."""
    ys = np.concatenate([line.get_ydata() for line in ax.get_lines()] or [np.zeros(1)])
    ys = ys[np.isfinite(ys)]
    if (
        ys.size
        and ys.max() - ys.min() > 0
        and (np.abs(ys).max() / (np.median(np.abs(ys)) + 1e-12)) > 20
    ):
        ax.set_yscale("symlog", linthresh=max(1.0, float(np.median(np.abs(ys)))))


# ---- markdown -----------------------------------------------------------------------------------


def fmt(v: Any) -> str:
    """A table cell: numbers with 3-4 significant digits, text as is, missing as an en dash."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 1e5 or a < 1e-3:
            return f"{v:.3g}"
        if a >= 100:
            return f"{v:.1f}"
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def markdown_table(
    rows: Sequence[tuple[str, str]],
    columns: Sequence[str],
    values: Mapping[str, Mapping[str, Any]],
) -> str:
    """A markdown table with one column per model and one row per (key, label) that has a value
    in some column; a row with an empty key is a section heading, shown only if its section has
    rows."""
    head = "| | " + " | ".join(c.replace("|", "\\|") for c in columns) + " |"
    lines = [head, "|---|" + "---:|" * len(columns)]
    heading = None
    for key, label in rows:
        if not key:
            heading = label
            continue
        cells = [values.get(c, {}).get(key) for c in columns]
        if all(c is None for c in cells):
            continue
        if heading is not None:
            lines.append(f"| **{heading}** |" + " |" * len(columns))
            heading = None
        lines.append(f"| {label} | " + " | ".join(fmt(c) for c in cells) + " |")
    return "\n".join(lines)


# The report's methods section; evaluation fills in the numbers of its config.
METHODS = """\
## How the numbers are computed

- **Reconstruction**: mean reconstructions decode the posterior means of every latent level.
  MSE is per pixel on images in [0, 1]; PSNR (dB) and SSIM (torchmetrics, Gaussian 11x11
  window) are computed per image and averaged; PSNR is capped at {psnr_cap:g} dB (identical
  images have MSE 0, where torchmetrics returns inf). With `recon_fid`, the FID of the mean
  reconstructions of the other split's images against the {split} images, beside that of the
  real images themselves: about what a sampler of every latent level's codes could score.
- **Likelihoods** are in nats per image (summed over 3 x H x W = {n_dims} dimensions). The
  reconstruction NLL and the negative ELBO use one posterior sample per image with the
  analytic KL of every level. The IWAE bound (on a seeded subset of {n_iwae} images, beside
  the negative ELBO of the same images) draws k = {k} samples of *all* levels from the
  posterior (top z, then each variational skip z_l given the decoder state) and weights each by
  p(x|z) p(z) / q(z|x) with the joint top-down prior: -log p(x) <= -log (1/k) sum_k w_k.
  The Gaussian likelihood is a density on [0, 1], so these numbers can be negative.
  **Bits/dim** = nats / (3 H W ln 2) of that density; **bits/dim, 8-bit** adds log2(256) = 8,
  i.e. treats the density as constant over each of the 256 intensity bins of width 1/256
  (P(bin) ~ p(x) / 256 per dimension). The models were not trained on dequantised data, so
  compare these across models here, not with published discrete likelihoods. Deterministic
  U-Net skips are not latents: for such a model the bounds are on log p(x | encoder features),
  not on a generative likelihood, and do not compare with the others. For the AE only
  the reconstruction NLL under its own Gaussian likelihood is given (it has no ELBO).
- **Samples**: each model decodes {n_samples} draws per setting to the mean image. A setting
  is a top-latent sampler (*prior*: N(0, I); *gaussian*: a full-covariance Gaussian, *gmm*: a
  Gaussian mixture, both fitted to the top latent means of the training images), a
  temperature T (the sampler's spread, and every U-Net skip level's prior spread, times T), and
  the decoder's BN statistics (*sampling*: re-estimated on 20 x 250 samples of that setting, as
  NVAE does; *training*: as trained). The headline row is N(0, I) at T = 1. The domain CNN (4 conv stages, global average pool, trained
  on the training split once and cached) gives 128-d features; the *domain Frechet distance*
  is the FID formula on these features against the {split} images. *CNN-confident* is the
  share of samples with max class probability > 0.9; *classified with mask* is the share with
  P(mask) > 0.5.{fid_note}
- **Latent space**: top posterior means (AE: codes). k-NN accuracy: leave-one-out majority of
  the 5 nearest neighbours (Euclidean); silhouette: scikit-learn, Euclidean, classes as
  clusters; t-SNE on at most 50 PCA components. Active units: Var over the split of
  E[z|x] > 0.01 per unit (for skips, per channel and position).
- **Interpolation**: a path decodes {steps} evenly spaced points between two codes (every
  level); for a path p_1..p_T in pixel space or in CNN feature space, *max/mean step* is
  max_i ||p_(i+1) - p_i|| / mean_i ||p_(i+1) - p_i|| (1 = perfectly even, a jump makes it
  large) and *2nd difference / length* is mean_i ||p_(i+1) - 2 p_i + p_(i-1)|| /
  sum_i ||p_(i+1) - p_i|| (0 = evenly spaced on a straight line). Both are averaged over
  pairs; lower is smoother.
- **Probes**: logistic regression and an MLP (128 hidden units, early stopping) on
  standardised features of a seeded subset of {n_train} training images, scored on the {split}
  split; F1 is for the class "with mask", ROC-AUC from the predicted probabilities.
- **Training**: per-epoch scalars of each run's TensorBoard events; "final" is the last epoch.
"""
