"""Rendering Gaussian splats: gsplat's CUDA rasterizer on the GPU, the PyTorch twin elsewhere.

Both backends take the scene in its training parameterization (log scales, logit opacities,
unnormalized quaternions, SH coefficients) and apply the activations here, identically:
``exp(scales)``, ``sigmoid(opacities)``, normalized quaternions, colors ``max(SH(dirs) + 0.5, 0)``.
Rasterization settings are gsplat's classic 3DGS ones: eps2d 0.3 px^2, near plane 0.01, 16x16 tiles.

gsplat is imported only when CUDA is available and the scene lives on a CUDA device: on a CPU
machine its kernels are never asked to compile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from ..errors import ConfigError, VqpressInputError
from ..splats.model import GaussianSplats, sh_degree_from_rest
from .cameras import MAX_IMAGE_SIZE, Camera
from .torch_raster import rasterize_torch

Backend = Literal["auto", "gsplat", "torch"]
NEAR_PLANE = 0.01  # Gaussians closer to the camera than this are dropped (world units)
EPS2D = 0.3  # low-pass filter added to every 2D covariance (pixels^2)


def _resolve_backend(backend: str, device: torch.device) -> Literal["gsplat", "torch"]:
    if backend == "torch":
        return "torch"
    on_cuda = device.type == "cuda" and torch.cuda.is_available()
    if backend == "auto":
        return "gsplat" if on_cuda else "torch"
    if backend == "gsplat":
        if not on_cuda:
            raise ConfigError(
                "the gsplat backend needs a CUDA device and the scene on it "
                f"(scene is on {device}, CUDA available: {torch.cuda.is_available()}); "
                "use backend='torch' or 'auto' on this machine"
            )
        return "gsplat"
    raise ConfigError(f"unknown render backend {backend!r}; use 'auto', 'gsplat' or 'torch'")


def rasterize_gsplat(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4]
    scales: torch.Tensor,  # [N, 3] activated
    opacities: torch.Tensor,  # [N] activated
    sh0: torch.Tensor,  # [N, 1, 3]
    shN: torch.Tensor,  # [N, K-1, 3]
    viewmat: torch.Tensor,  # [4, 4]
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    background: torch.Tensor,  # [3]
    *,
    absgrad: bool = False,  # training: also keep the absolute 2D-mean gradients densification reads
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:  # rgb [H, W, 3], alpha [H, W, 1], gsplat's info
    """gsplat's rasterizer with this module's settings (CUDA only: see ``_resolve_backend``)."""
    from gsplat import rasterization

    colors = torch.cat([sh0, shN], dim=1)  # [N, K, 3]
    render_colors, render_alphas, info = rasterization(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmat[None],
        K[None],
        width,
        height,
        near_plane=NEAR_PLANE,
        eps2d=EPS2D,
        sh_degree=sh_degree_from_rest(shN.shape[1]),
        packed=False,
        absgrad=absgrad,
        rasterize_mode="classic",
        backgrounds=background[None],
    )
    return render_colors[0], render_alphas[0], info


def rasterize(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4] (w, x, y, z), any norm
    scales: torch.Tensor,  # [N, 3] log standard deviations
    opacities: torch.Tensor,  # [N] logits
    sh0: torch.Tensor,  # [N, 1, 3]
    shN: torch.Tensor,  # [N, (d+1)^2 - 1, 3]
    viewmat: torch.Tensor,  # [4, 4] world-to-camera, OpenCV axes
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    background: torch.Tensor,  # [3]
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:  # rgb [H, W, 3] (not clamped above), alpha [H, W, 1]
    """Differentiable render of one view from raw (pre-activation) parameters.

    ``backend="auto"`` uses gsplat when the tensors are on CUDA, the PyTorch twin otherwise."""
    N = means.shape[0]
    assert means.shape == (N, 3), means.shape
    assert quats.shape == (N, 4), quats.shape
    assert scales.shape == (N, 3), scales.shape
    assert opacities.shape == (N,), opacities.shape
    assert sh0.shape == (N, 1, 3), sh0.shape
    assert shN.ndim == 3 and shN.shape[0] == N and shN.shape[2] == 3, shN.shape
    assert viewmat.shape == (4, 4), viewmat.shape
    assert K.shape == (3, 3), K.shape
    assert background.shape == (3,), background.shape
    for name, size in (("width", width), ("height", height)):
        if not 1 <= int(size) <= MAX_IMAGE_SIZE:
            raise VqpressInputError(f"{name} must be between 1 and {MAX_IMAGE_SIZE} pixels, got {size}")
    which = _resolve_backend(backend, means.device)
    if N == 0:
        rgb = background.to(means.dtype).expand(height, width, 3).clone()
        return rgb, torch.zeros(height, width, 1, device=means.device, dtype=means.dtype)
    args = (
        means,
        quats,
        torch.exp(scales),
        torch.sigmoid(opacities),
        sh0,
        shN,
        viewmat.to(means),
        K.to(means),
        int(width),
        int(height),
        background.to(means),
    )
    if which == "gsplat":
        rgb, alpha, _ = rasterize_gsplat(*args)
        return rgb, alpha
    return rasterize_torch(*args, near_plane=NEAR_PLANE, eps2d=EPS2D)


def _background_tensor(background: Sequence[float] | torch.Tensor, device: torch.device) -> torch.Tensor:
    bg = torch.as_tensor(background, dtype=torch.float32).to(device)
    if bg.shape != (3,) or not bool(torch.isfinite(bg).all()):
        raise VqpressInputError(f"background must be 3 finite numbers (RGB in [0, 1]), got {background!r}")
    return bg


def _check_scene(splats: GaussianSplats) -> None:
    if not isinstance(splats, GaussianSplats):
        raise VqpressInputError(f"expected GaussianSplats, got {type(splats).__name__}")
    for name, v in splats.tensors().items():
        if v.numel() and not bool(torch.isfinite(v).all()):
            raise VqpressInputError(
                f"scene has non-finite values in '{name}'; repair it first (load_scene or repair_non_finite)"
            )


@torch.no_grad()
def _render_checked(splats: GaussianSplats, camera: Camera, bg: torch.Tensor, backend: Backend) -> torch.Tensor:
    if not isinstance(camera, Camera):
        raise VqpressInputError(f"expected a Camera, got {type(camera).__name__}")
    device = splats.device
    rgb, _ = rasterize(
        splats.means.float(),
        splats.quats.float(),
        splats.scales.float(),
        splats.opacities.float(),
        splats.sh0.float(),
        splats.shN.float(),
        torch.tensor(camera.viewmat, dtype=torch.float32, device=device),
        torch.tensor(camera.K, dtype=torch.float32, device=device),
        camera.width,
        camera.height,
        bg,
        backend,
    )
    return rgb.clamp(0.0, 1.0)


def render(
    splats: GaussianSplats,
    camera: Camera,
    *,
    background: Sequence[float] | torch.Tensor = (0.0, 0.0, 0.0),
    backend: Backend = "auto",
) -> torch.Tensor:  # [H, W, 3] float32 in [0, 1], on the scene's device
    """Render one view without gradients. ``auto`` = gsplat on CUDA, the PyTorch twin on CPU."""
    _check_scene(splats)
    return _render_checked(splats, camera, _background_tensor(background, splats.device), backend)


def render_views(
    splats: GaussianSplats,
    cameras: Sequence[Camera],
    background: Sequence[float] | torch.Tensor = (0.0, 0.0, 0.0),
    backend: Backend = "auto",
) -> list[torch.Tensor]:  # each [H, W, 3] float32 in [0, 1]
    """Render every camera (validated once for the scene, then view by view)."""
    _check_scene(splats)
    bg = _background_tensor(background, splats.device)
    return [_render_checked(splats, cam, bg, backend) for cam in cameras]


__all__ = ["NEAR_PLANE", "EPS2D", "Backend", "rasterize", "render", "render_views"]
