"""How much each Gaussian contributes to the images: the weights that k-means should respect.

A plain k-means treats every Gaussian alike, so a codebook spends as many entries on the tiny,
transparent or hidden Gaussians inside an object (most of a trained scene) as on the ones that make
the picture. Weighting each Gaussian's vector by its contribution moves the centroids to where the
dB are (LightGaussian's global significance; c3dgs weights its k-means the same way).

The measure, ``view_importance``: the blending weight a Gaussian receives, summed over every pixel
of the given views, ``sum_views sum_pixels alpha_i T_i`` (occlusion included). On CUDA, computed
with one gsplat backward pass per view: render a constant white scene on black; the image is
``sum_i w_i(p) * c_i``, so the gradient of its sum with respect to Gaussian i's color is its summed
weight ``sum_p w_i(p)``. On the CPU, the PyTorch rasterizer's compositing sums the same weights
directly (``blend_weights_torch``: no colors, no autograd graph), the views side by side on one
intra-op thread each; a test holds it to the gradient of the PyTorch render. The CPU weighs each
view at 1/4 of its width and height (``reduced_blend_weights``: a sum over pixels estimates an
integral over the image, so fewer, larger pixels estimate the same one): trained_lego30k_sh3's 100
train views of 400x400, default preset, 4 test views: 41.19 dB against 41.22 at full size, 91% of the
pruned 15% the same Gaussians; lego_7k's 87 views 4.6 CPU s instead of 31.6. (A camera-free proxy,
opacity x the area of the two largest axes, measured 3.3 dB worse than this on trained_lego30k_sh3,
2.6 dB worse than no weights at all: it cannot see occlusion.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..cpu_threads import cpu_map
from ..errors import VqpressInputError
from ..progress import Progress
from ..render.cameras import Camera
from ..render.splats import EPS2D, NEAR_PLANE, rasterize
from ..render.torch_raster import blend_weights_torch, world_covariances
from .model import SH_C0, GaussianSplats

CPU_MAX_VIEWS = 8  # views the CPU weighs a scene by (evenly spaced among the given ones)
CPU_DOWNSCALE = 4  # the CPU renders each view's weights at 1/4 of its width and height...
CPU_MIN_SIDE = 100  # ...or at 1/2 or in full, so that the shorter side keeps at least this many pixels


def importance_views(cameras: Sequence[Camera], device: torch.device, *, prune: bool = False) -> list[Camera]:
    """The views to weigh by: all of them on CUDA (100 views of 400x400 take 0.4 s on an H200); on the
    CPU at most ``CPU_MAX_VIEWS`` evenly spaced ones (lego_7k: 8 views of 400x400 in ~1 s on 2 cores),
    unless the weights will also ``prune``: then all of them, because a Gaussian that none of a few
    views sees ranks last and is dropped though the other views see it (trained_lego30k_sh3, default
    preset, 4 test views: 37.61 dB with 8 of its 100 train views, 41.22 dB with all, 41.28 unpruned;
    at 1/4 size, ``cpu_downscale``, all of them cost 87 views of lego_7k 2.4 s on 2 cores)."""
    cams = list(cameras)
    if device.type == "cuda" or prune or len(cams) <= CPU_MAX_VIEWS:
        return cams
    step = len(cams) / CPU_MAX_VIEWS
    return [cams[int(i * step)] for i in range(CPU_MAX_VIEWS)]


def cpu_downscale(width: int, height: int) -> int:
    """The factor the CPU divides a view's width and height by to weigh it: ``CPU_DOWNSCALE``, halved
    while the shorter side would fall below ``CPU_MIN_SIDE`` pixels."""
    f = CPU_DOWNSCALE
    while f > 1 and min(width, height) < f * CPU_MIN_SIDE:
        f //= 2
    return f


def reduced_blend_weights(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4]
    scales: torch.Tensor,  # [N, 3] activated
    opacities: torch.Tensor,  # [N] activated
    viewmat: torch.Tensor,  # [4, 4]
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    factor: int,
    covars: torch.Tensor | None = None,  # [N, 6] world_covariances(quats, scales)
) -> torch.Tensor:  # [N] float64
    """A view's summed blending weights from its image at 1/``factor`` of the width and height.

    The intrinsics are scaled with the image, the low-pass filter stays ``EPS2D`` in full-size pixels
    (``EPS2D / factor^2`` in the small ones, so every Gaussian keeps its footprint), and the sums are
    multiplied by the pixel-area ratio ``factor^2``: a sum over the pixels estimates the integral
    of ``alpha T`` over the image, which the full-size sum estimates too."""
    if factor == 1:
        return blend_weights_torch(
            means, quats, scales, opacities, viewmat, K, width, height,
            near_plane=NEAR_PLANE, eps2d=EPS2D, covars=covars,
        )  # fmt: skip
    K_small = K.clone()
    K_small[:2] /= factor  # fx, skew, cx and fy, cy: pixel (0, 0) covers [0, factor)^2 of the full image
    w = blend_weights_torch(
        means, quats, scales, opacities, viewmat, K_small, -(-width // factor), -(-height // factor),
        near_plane=NEAR_PLANE, eps2d=EPS2D / factor**2, covars=covars, tile=4,
    )  # fmt: skip
    return w * float(factor**2)


def _gradient_weights(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4]
    scales: torch.Tensor,  # [N, 3] log scales
    opacities: torch.Tensor,  # [N] logits
    viewmat: torch.Tensor,  # [4, 4]
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
) -> torch.Tensor:  # [N] float64
    """Summed blending weights of one view as the gradient of a white scene's rendered sum."""
    N, dev = means.shape[0], means.device
    sh0 = torch.full((N, 1, 3), 0.5 / SH_C0, device=dev, requires_grad=True)  # color 1.0: SH_C0 * dc + 0.5
    no_rest = torch.zeros(N, 0, 3, device=dev)
    rgb, _ = rasterize(
        means, quats, scales, opacities, sh0, no_rest, viewmat, K, width, height, torch.zeros(3, device=dev)
    )
    rgb[..., 0].sum().backward()
    assert sh0.grad is not None
    return sh0.grad[:, 0, 0].double() / SH_C0


def view_importance(
    splats: GaussianSplats,
    cameras: Sequence[Camera],
    progress: Progress | None = None,
) -> torch.Tensor:  # [N] float32 (float64 sums), on the scene's device
    """Summed blending weight of every Gaussian over every pixel of ``cameras``."""
    if len(cameras) == 0:
        raise VqpressInputError("view importance needs at least one camera")
    N = splats.num_gaussians
    dev = splats.device
    total = torch.zeros(N, dtype=torch.float64, device=dev)
    means = splats.means.float().detach()
    quats = splats.quats.float().detach()
    scales = splats.scales.float().detach()
    opacities = splats.opacities.float().detach()
    covars = None
    if dev.type != "cuda":
        scales, opacities = torch.exp(scales), torch.sigmoid(opacities)
        covars = world_covariances(quats, scales)  # every view projects the same 3D covariances

    def one(cam: Camera) -> torch.Tensor:  # [N] float64
        viewmat = torch.tensor(cam.viewmat, dtype=torch.float32, device=dev)
        K = torch.tensor(cam.K, dtype=torch.float32, device=dev)
        if dev.type == "cuda":
            return _gradient_weights(means, quats, scales, opacities, viewmat, K, cam.width, cam.height)
        return reduced_blend_weights(
            means, quats, scales, opacities, viewmat, K, cam.width, cam.height, cpu_downscale(cam.width, cam.height),
            covars,
        )  # fmt: skip

    # On the CPU the views run side by side, one intra-op thread each (cpu_threads.py); the sums are
    # added in view order, so the result is that of one thread.
    for i, w in enumerate(cpu_map(one, cameras, dev)):
        total += w
        if progress is not None:
            progress("importance", (i + 1) / len(cameras), {})
    return total.clamp_min(0.0).float()


__all__ = [
    "CPU_DOWNSCALE",
    "CPU_MAX_VIEWS",
    "CPU_MIN_SIDE",
    "cpu_downscale",
    "importance_views",
    "reduced_blend_weights",
    "view_importance",
]
