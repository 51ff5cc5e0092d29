"""PSNR and SSIM against known values and an independent float64 numpy reference."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from vqpress_server.core.errors import VqpressInputError
from vqpress_server.core.metrics import PSNR_MAX_DB, psnr, ssim


def ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM written out from Wang et al. 2004 with scikit-image's choices: per pixel, the Gaussian-
    weighted (sigma 1.5, 11x11, weights summing to 1) means, variances and covariance of the window
    around it, for every window that fits in the image; averaged over pixels and channels."""
    r = 5
    ax = np.arange(-r, r + 1, dtype=np.float64)
    w2 = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * 1.5**2))
    w2 /= w2.sum()
    c1, c2 = 0.01**2, 0.03**2
    out = []
    for ch in range(x.shape[2]):
        wx = np.lib.stride_tricks.sliding_window_view(x[..., ch].astype(np.float64), (11, 11))  # [H-10, W-10, 11, 11]
        wy = np.lib.stride_tricks.sliding_window_view(y[..., ch].astype(np.float64), (11, 11))
        mx = (wx * w2).sum((-1, -2))
        my = (wy * w2).sum((-1, -2))
        vx = (w2 * (wx - mx[..., None, None]) ** 2).sum((-1, -2))
        vy = (w2 * (wy - my[..., None, None]) ** 2).sum((-1, -2))
        cxy = (w2 * (wx - mx[..., None, None]) * (wy - my[..., None, None])).sum((-1, -2))
        s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        out.append(s.mean())
    return float(np.mean(out))


def test_psnr_known_values() -> None:
    ref = np.full((8, 9, 3), 0.5)
    assert psnr(ref + 0.1, ref) == pytest.approx(20.0, abs=1e-9)  # MSE 0.01
    assert psnr(ref + 0.01, ref) == pytest.approx(40.0, abs=1e-9)
    noisy = ref.copy()
    noisy[0, 0, 0] = 1.0  # one element off by 0.5: MSE = 0.25 / 216
    assert psnr(noisy, ref) == pytest.approx(-10 * math.log10(0.25 / 216), abs=1e-9)


def test_psnr_of_identical_images_is_capped_at_100_db() -> None:
    img = torch.rand(16, 16, 3)
    assert psnr(img, img) == PSNR_MAX_DB == 100.0
    assert math.isfinite(psnr(img, img.clone()))


def test_psnr_accepts_torch_and_numpy_alike() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(20, 30, 3, generator=g), torch.rand(20, 30, 3, generator=g)
    assert psnr(a, b) == pytest.approx(psnr(a.numpy(), b.numpy()), abs=1e-12)
    assert psnr(a, b.numpy()) == pytest.approx(psnr(b, a), abs=1e-12)


def test_ssim_of_identical_images_is_one() -> None:
    img = np.random.default_rng(1).random((32, 40, 3))
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_images_has_a_closed_form() -> None:
    # Constant images: zero variance, so SSIM = (2 a b + C1) / (a^2 + b^2 + C1).
    a, b = 0.3, 0.6
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(np.full((20, 20, 3), a), np.full((20, 20, 3), b)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("shape", [(11, 11, 3), (37, 23, 3), (64, 80, 3)])
def test_ssim_matches_the_float64_reference(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    x = rng.random(shape)
    y = np.clip(x + 0.15 * rng.standard_normal(shape), 0, 1)
    assert ssim(x, y) == pytest.approx(ssim_reference(x, y), abs=1e-10)
    assert ssim(torch.from_numpy(x).float(), torch.from_numpy(y).float()) == pytest.approx(
        ssim_reference(x, y), abs=1e-5
    )


def test_ssim_on_a_real_photo_drops_with_noise(shared_scene: Callable[..., Path]) -> None:
    from PIL import Image

    img = np.asarray(Image.open(shared_scene("images_2d") / "astronaut.png").convert("RGB"))[:128, :128] / 255.0
    rng = np.random.default_rng(0)
    values = [ssim(np.clip(img + s * rng.standard_normal(img.shape), 0, 1), img) for s in (0.01, 0.05, 0.2)]
    assert values[0] > values[1] > values[2]
    noisy = np.clip(img + 0.05 * rng.standard_normal(img.shape), 0, 1)
    assert ssim(noisy, img) == pytest.approx(ssim_reference(noisy, img), abs=1e-10)


@pytest.mark.parametrize(
    "a, b, message",
    [
        (np.zeros((8, 8, 3)), np.zeros((8, 9, 3)), "differ in shape"),
        (np.zeros((8, 8)), np.zeros((8, 8)), r"\[H, W, 3\]"),
        (np.zeros((8, 8, 4)), np.zeros((8, 8, 4)), r"\[H, W, 3\]"),
        (np.full((8, 8, 3), np.nan), np.zeros((8, 8, 3)), "NaN"),
        ([[0.0]], np.zeros((8, 8, 3)), "torch tensor or numpy array"),
    ],
)
def test_bad_images_raise(a: object, b: np.ndarray, message: str) -> None:
    with pytest.raises(VqpressInputError, match=message):
        psnr(a, b)  # type: ignore[arg-type]
    with pytest.raises(VqpressInputError, match=message):
        ssim(a, b)  # type: ignore[arg-type]


def test_ssim_needs_an_11x11_window() -> None:
    with pytest.raises(VqpressInputError, match="at least 11x11"):
        ssim(np.zeros((10, 40, 3)), np.zeros((10, 40, 3)))
