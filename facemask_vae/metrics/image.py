"""Per-image reconstruction quality: PSNR and SSIM of image pairs."""

from __future__ import annotations

import torch

#: PSNR is capped here: identical images have MSE 0, where torchmetrics returns +inf.
PSNR_CAP_DB = 100.0


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
