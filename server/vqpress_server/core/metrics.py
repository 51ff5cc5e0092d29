"""Image quality metrics: PSNR and SSIM for [H, W, 3] images in [0, 1] (torch tensors or numpy arrays).

SSIM follows Wang et al. 2004 as scikit-image computes it with
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``:
an 11x11 Gaussian window (sigma 1.5, truncated at 3.5 sigma), K1 = 0.01, K2 = 0.03, the SSIM map
evaluated where the window fits inside the image (a 5-pixel border is left out), averaged over
pixels and then over channels. Both metrics compute in float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import VqpressInputError

PSNR_MAX_DB = 100.0  # PSNR of identical images (MSE = 0) is reported as this cap instead of infinity
SSIM_SIGMA = 1.5  # Gaussian window standard deviation (pixels)
SSIM_RADIUS = 5  # window half-size: int(3.5 * sigma + 0.5) -> an 11x11 window
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _as_image(img: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    t = torch.as_tensor(img) if isinstance(img, np.ndarray) else img
    if not isinstance(t, torch.Tensor):
        raise VqpressInputError(f"{what} must be a torch tensor or numpy array, got {type(img).__name__}")
    if t.ndim != 3 or t.shape[-1] != 3:
        raise VqpressInputError(f"{what} must have shape [H, W, 3], got {list(t.shape)}")
    t = t.detach().to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise VqpressInputError(f"{what} contains NaN or infinite values")
    return t


def _pair(img: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    a = _as_image(img, "image")
    b = _as_image(ref, "reference")
    if a.shape != b.shape:
        raise VqpressInputError(f"image and reference differ in shape: {list(a.shape)} vs {list(b.shape)}")
    return a, b.to(a.device)


def psnr(img: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray) -> float:  # [H, W, 3] each
    """Peak signal-to-noise ratio in dB for data range 1: ``-10 log10(MSE)``. Identical images give
    ``PSNR_MAX_DB`` (100 dB) rather than infinity, so the value stays JSON- and average-friendly."""
    a, b = _pair(img, ref)
    mse = float(((a - b) ** 2).mean())
    if mse <= 10 ** (-PSNR_MAX_DB / 10):
        return PSNR_MAX_DB
    return -10.0 * math.log10(mse)


def _gaussian_window(device: torch.device) -> torch.Tensor:  # [2R+1] normalized 1D taps
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    w = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return w / w.sum()


def _filter_valid(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # [C, H, W] -> [C, H-2R, W-2R]
    C = x.shape[0]
    k = w.numel()
    x = torch.nn.functional.conv2d(x[None], w.view(1, 1, 1, k).expand(C, 1, 1, k), groups=C)
    x = torch.nn.functional.conv2d(x, w.view(1, 1, k, 1).expand(C, 1, k, 1), groups=C)
    return x[0]


def ssim(img: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray) -> float:  # [H, W, 3] each
    """Mean structural similarity (data range 1); both sides must be at least 11x11 pixels."""
    a, b = _pair(img, ref)
    H, W, _ = a.shape
    if min(H, W) < 2 * SSIM_RADIUS + 1:
        raise VqpressInputError(
            f"SSIM needs images of at least {2 * SSIM_RADIUS + 1}x{2 * SSIM_RADIUS + 1} pixels, got {H}x{W}"
        )
    x = a.permute(2, 0, 1)
    y = b.permute(2, 0, 1)
    w = _gaussian_window(a.device)
    mu_x, mu_y = _filter_valid(x, w), _filter_valid(y, w)
    var_x = _filter_valid(x * x, w) - mu_x**2
    var_y = _filter_valid(y * y, w) - mu_y**2
    cov = _filter_valid(x * y, w) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(s.mean())


__all__ = ["PSNR_MAX_DB", "psnr", "ssim"]
