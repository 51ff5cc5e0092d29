"""OpenCV radial-tangential lens distortion on normalized image coordinates, and image undistortion.

Model (k1, k2, p1, p2, k3), for a normalized undistorted point (x, y) and r^2 = x^2 + y^2:
    x_d = x (1 + k1 r^2 + k2 r^4 + k3 r^6) + 2 p1 x y + p2 (r^2 + 2 x^2)
    y_d = y (1 + k1 r^2 + k2 r^4 + k3 r^6) + p1 (r^2 + 2 y^2) + 2 p2 x y
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import VqpressInputError


def distort_points(xy: torch.Tensor, coeffs: tuple[float, ...]) -> torch.Tensor:  # [..., 2]
    """Apply the distortion to normalized points xy [..., 2]; coeffs = (k1, k2, p1, p2[, k3])."""
    k1, k2, p1, p2, k3 = (tuple(coeffs) + (0.0,) * 5)[:5]
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return torch.stack([xd, yd], dim=-1)


def undistort_points(xy_d: torch.Tensor, coeffs: tuple[float, ...], iters: int = 30) -> torch.Tensor:  # [..., 2]
    """Exact inverse of distort_points by Newton's method in float64 (residual below 1e-12 in range)."""
    k1, k2, p1, p2, k3 = (tuple(coeffs) + (0.0,) * 5)[:5]
    target = xy_d.double()
    xy = target.clone()
    for _ in range(iters):
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        dradial = k1 + r2 * (2 * k2 + 3 * k3 * r2)  # d radial / d r2
        res = distort_points(xy, (k1, k2, p1, p2, k3)) - target
        # Jacobian of (xd, yd) w.r.t. (x, y).
        jxx = radial + 2 * x * x * dradial + 2 * p1 * y + 6 * p2 * x
        jxy = 2 * x * y * dradial + 2 * p1 * x + 2 * p2 * y
        jyx = 2 * x * y * dradial + 2 * p1 * x + 2 * p2 * y
        jyy = radial + 2 * y * y * dradial + 6 * p1 * y + 2 * p2 * x
        det = jxx * jyy - jxy * jyx
        det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
        dx = (jyy * res[..., 0] - jxy * res[..., 1]) / det
        dy = (-jyx * res[..., 0] + jxx * res[..., 1]) / det
        xy = xy - torch.stack([dx, dy], dim=-1)
    return xy.to(xy_d.dtype)


def undistort_image(
    img: torch.Tensor,  # [H, W, 3]
    K: np.ndarray,  # [3, 3] intrinsics of both the distorted and the undistorted image
    coeffs: tuple[float, ...],
) -> torch.Tensor:  # [H, W, 3]
    """The pinhole image with intrinsics K seen through the lens (k1, k2, p1, p2[, k3]).

    Each output pixel center is mapped through the distortion model to the photo and sampled
    bilinearly (border pixels repeat where the lens saw nothing).
    """
    H, W, _ = img.shape
    if not all(np.isfinite(coeffs)):
        raise VqpressInputError(f"distortion coefficients must be finite, got {coeffs}")
    if not any(coeffs):
        return img
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    v, u = torch.meshgrid(
        torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij"
    )
    xy = torch.stack([(u - cx) / fx, (v - cy) / fy], dim=-1)
    xy_d = distort_points(xy, coeffs)
    # Pixel coordinate p (edges of the image at 0 and W) -> grid_sample's [-1, 1] with align_corners=False.
    gx = 2 * (xy_d[..., 0] * fx + cx) / W - 1
    gy = 2 * (xy_d[..., 1] * fy + cy) / H - 1
    grid = torch.stack([gx, gy], dim=-1).float()[None]
    out = torch.nn.functional.grid_sample(
        img.permute(2, 0, 1)[None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[0].permute(1, 2, 0).contiguous()
