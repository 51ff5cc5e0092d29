"""Volume rendering of radiance fields in torch: rays, occupancy-grid sampling, alpha compositing.

Conventions: cameras are world-to-camera ``viewmat`` [4, 4] in OpenCV axes (x right, y down,
z forward) with intrinsics ``K`` [3, 3]; a pixel (i, j) is sampled at its centre (j + 0.5, i + 0.5).
Ray directions are unit length in world units, so ray parameters t are world distances.
Density is in 1 / world units; alpha of a sample of length delta is 1 - exp(-density * delta).

Bounded scenes live in the box ``aabb``, which the field sees as the unit cube. Unbounded scenes
(photos that see a whole room) keep the box for the object and contract everything outside it
(mip-NeRF 360's contraction, with the max-norm): with x' the point in box units ([-1, 1] inside),
x' stays when |x'| <= 1 and becomes (2 - 1/|x'|) x'/|x'| outside, so all of space lands in
[-2, 2]^3, and the field's unit cube holds the box in its central half. Rays then take half their
samples evenly from the camera to where they leave the box and half evenly in disparity beyond,
out to FAR_BOX_UNITS box half-sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..errors import VqpressInputError

if TYPE_CHECKING:
    from .cameras import Camera

RadianceFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (x [S, 3], d [S, 3]) -> (density [S], rgb [S, 3])
DensityFn = Callable[[Tensor], Tensor]  # x [S, 3] -> density [S]
MAX_CAMERA_PIXELS = 1 << 26
FAR_BOX_UNITS = 1000.0  # unbounded rays end this many box half-sizes beyond the box centre
_MAX_CONTRACTED = 2.0 - 1.0 / FAR_BOX_UNITS  # max-norm of the contracted far point


def unit_coords(x: Tensor, aabb: Tensor, unbounded: bool = False) -> Tensor:  # x [S, 3] world -> [S, 3]
    """The field's coordinates in [0, 1]^3 of world points: the box scaled to the cube (bounded), or
    the contracted space [-2, 2]^3 scaled to it (unbounded; the box fills [0.25, 0.75]^3)."""
    lo, hi = aabb[0], aabb[1]
    if not unbounded:
        return (x - lo) / (hi - lo)
    xn = (x - 0.5 * (lo + hi)) / (0.5 * (hi - lo))
    m = xn.abs().amax(-1, keepdim=True).clamp(min=1e-9)
    y = torch.where(m <= 1.0, xn, (2.0 - 1.0 / m) * xn / m)
    return (y + 2.0) / 4.0


def world_coords(u: Tensor, aabb: Tensor, unbounded: bool = False) -> Tensor:  # u [S, 3] in [0, 1] -> world
    """Inverse of ``unit_coords`` (unbounded: the outer shell is cut at FAR_BOX_UNITS)."""
    lo, hi = aabb[0], aabb[1]
    if not unbounded:
        return lo + u * (hi - lo)
    y = u * 4.0 - 2.0
    m = y.abs().amax(-1, keepdim=True).clamp(min=1e-9, max=_MAX_CONTRACTED)
    y = y.clamp(-_MAX_CONTRACTED, _MAX_CONTRACTED)
    xn = torch.where(m <= 1.0, y, y / m / (2.0 - m))  # |x'| = 1 / (2 - |y|) outside the box
    return 0.5 * (lo + hi) + xn * (0.5 * (hi - lo))


def camera_rays(camera: Camera, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """World-space ray origins [H*W, 3] and unit directions [H*W, 3], row-major over pixels."""
    W, H = int(camera.width), int(camera.height)
    if W < 1 or H < 1 or W * H > MAX_CAMERA_PIXELS:
        raise VqpressInputError(f"camera size {W}x{H} is empty or larger than {MAX_CAMERA_PIXELS} pixels")
    viewmat = np.asarray(camera.viewmat, dtype=np.float64)
    K = np.asarray(camera.K, dtype=np.float64)
    if viewmat.shape != (4, 4) or K.shape != (3, 3) or not (np.isfinite(viewmat).all() and np.isfinite(K).all()):
        raise VqpressInputError("camera viewmat must be a finite 4x4 and K a finite 3x3 matrix")
    if abs(np.linalg.det(K)) < 1e-12 or abs(np.linalg.det(viewmat[:3, :3])) < 1e-9:
        raise VqpressInputError("camera K or rotation is singular")
    c2w = np.linalg.inv(viewmat)
    # Per-pixel camera-space directions K^-1 [u, v, 1], then rotate to world.
    m = torch.from_numpy(c2w[:3, :3] @ np.linalg.inv(K)).float().to(device)  # [3, 3]
    v, u = torch.meshgrid(
        torch.arange(H, device=device, dtype=torch.float32) + 0.5,
        torch.arange(W, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    pix = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(H * W, device=device)], -1)  # [H*W, 3]
    dirs = torch.nn.functional.normalize(pix @ m.t(), dim=-1)
    origins = torch.from_numpy(c2w[:3, 3]).float().to(device).expand(H * W, 3)
    return origins, dirs


def ray_box(origins: Tensor, dirs: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances [N] of rays [N, 3] with the box aabb [2, 3]; missed rays get near = far."""
    assert origins.shape == dirs.shape and origins.shape[-1] == 3, (origins.shape, dirs.shape)
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (aabb[0] - origins) * inv
    t1 = (aabb[1] - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)
    far = torch.maximum(t0, t1).amin(-1)
    far = torch.maximum(far, near)
    return near, far


class OccupancyGrid:
    """A res^3 grid over the field's unit cube (``unit_coords``) that marks where density is worth sampling.

    ``update`` evaluates the density at one jittered point per cell and keeps a decaying maximum
    (decay 0.95 per update). A cell is occupied when the alpha of one sample step exceeds
    ``threshold``, or, while that holds for no more than the mean cell (early in training, when
    the whole field is faint), when its alpha exceeds the mean (Instant-NGP's rule, so that
    training never starts from an empty grid). The step is ``step_size`` world units, or the box
    diagonal / samples_per_ray. Until the first update every cell is occupied. For a bounded scene
    the cells are the box's; for an unbounded one, the contracted space's.
    """

    def __init__(
        self,
        aabb: Tensor,
        resolution: int,
        samples_per_ray: int,
        threshold: float = 0.01,
        unbounded: bool = False,
        step_size: float | None = None,
    ) -> None:
        assert aabb.shape == (2, 3), aabb.shape
        self.aabb = aabb
        self.unbounded = unbounded
        self.resolution = resolution
        self.step_size = step_size if step_size is not None else float((aabb[1] - aabb[0]).norm()) / samples_per_ray
        self.threshold = threshold
        self.density = torch.full((resolution,) * 3, float("inf"), device=aabb.device)
        self._mask: Tensor | None = None

    def load(self, density: Tensor) -> None:  # [res, res, res]
        assert density.shape == self.density.shape, density.shape
        self.density = density
        self._mask = None

    def load_mask(self, mask: Tensor) -> None:  # [res, res, res] bool
        """Use a stored mask as is (a trained field's, ``NeuralField.occupancy_mask``)."""
        assert mask.shape == self.density.shape and mask.dtype == torch.bool, (mask.shape, mask.dtype)
        mask = mask.to(self.density.device)
        self.density = torch.where(mask, float("inf"), 0.0)
        self._mask = mask

    @property
    def mask(self) -> Tensor:  # [res, res, res] bool, indexed (x, y, z) over the unit cube
        if self._mask is None:
            alpha = 1.0 - torch.exp(-self.density * self.step_size)
            finite = alpha[torch.isfinite(self.density)]
            mean = float(finite.mean()) if finite.numel() else 1.0
            self._mask = alpha > min(mean, self.threshold)
        return self._mask

    def fraction(self) -> float:
        """Fraction of cells currently occupied."""
        return float(self.mask.float().mean())

    @torch.no_grad()
    def update(
        self,
        density_fn: DensityFn,
        generator: torch.Generator | None = None,
        chunk: int = 1 << 18,
        decay: float = 0.95,
    ) -> None:
        r = self.resolution
        dev = self.aabb.device
        idx = torch.stack(torch.meshgrid(*[torch.arange(r, device=dev)] * 3, indexing="ij"), -1).reshape(-1, 3)
        jitter = torch.rand(idx.shape, device=dev, generator=generator)
        x = world_coords((idx + jitter) / r, self.aabb, self.unbounded)
        new = torch.cat([density_fn(x[s : s + chunk]) for s in range(0, x.shape[0], chunk)]).reshape(r, r, r)
        old = torch.where(torch.isinf(self.density), torch.zeros_like(new), self.density)
        self.density = torch.maximum(old * decay, new.float())
        self._mask = None

    @torch.no_grad()
    def fill(self, density_fn: DensityFn, passes: int = 4, generator: torch.Generator | None = None) -> None:
        """Estimate the grid of a trained field from scratch (``passes`` jittered points per cell,
        maximum kept), then mark the neighbours of occupied cells too: a grid for rendering a field
        that was stored without one."""
        self.density = torch.zeros_like(self.density)
        for _ in range(passes):
            self.update(density_fn, generator, decay=1.0)
        m = self.mask[None, None].float()
        self._mask = torch.nn.functional.max_pool3d(m, 3, stride=1, padding=1)[0, 0] > 0

    def occupied(self, x: Tensor) -> Tensor:  # x [S, 3] world -> bool [S]
        r = self.resolution
        cell = (unit_coords(x, self.aabb, self.unbounded) * r).floor().long().clamp(0, r - 1)
        return self.mask[cell[:, 0], cell[:, 1], cell[:, 2]]


def _unbounded_samples(
    origins: Tensor, dirs: Tensor, aabb: Tensor, S: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:  # t [N, S], delta [N, S]
    """Sample distances of unbounded rays: half evenly from the camera to where the ray leaves the
    box (to its closest approach to the box centre when it misses), half evenly in disparity from
    there to FAR_BOX_UNITS box half-sizes away; stratified when a generator is given."""
    N, dev = origins.shape[0], origins.device
    center, half = 0.5 * (aabb[0] + aabb[1]), 0.5 * (aabb[1] - aabb[0])
    near, far = ray_box(origins, dirs, aabb)
    closest = ((center - origins) * dirs).sum(-1).clamp(min=0.0)
    t_mid = torch.where(far > near, far, closest).clamp(min=1e-3 * float(half.max()))
    t_far = t_mid + FAR_BOX_UNITS * float(half.max())
    s_lin = S // 2
    u = torch.linspace(0.0, 1.0, s_lin + 1, device=dev)
    lin = t_mid[:, None] * u[None, :]  # [N, s_lin + 1] edges, 0 .. t_mid
    v = torch.linspace(0.0, 1.0, S - s_lin + 1, device=dev)[1:]
    disp = 1.0 / (1.0 / t_mid[:, None] * (1.0 - v) + 1.0 / t_far[:, None] * v)  # [N, S - s_lin] edges
    edges = torch.cat([lin, disp], -1)  # [N, S + 1]
    width = edges[:, 1:] - edges[:, :-1]
    frac = torch.rand(N, S, device=dev, generator=generator) if generator is not None else 0.5
    return edges[:, :-1] + frac * width, width


def render_rays(
    radiance: RadianceFn,
    origins: Tensor,  # [N, 3]
    dirs: Tensor,  # [N, 3] unit
    aabb: Tensor,  # [2, 3]
    samples_per_ray: int,
    *,
    occupancy: OccupancyGrid | None = None,
    background: Tensor | None = None,  # [3]; None = black
    generator: torch.Generator | None = None,  # given: stratified jitter; None: sample centres
    unbounded: bool = False,  # True: sample the whole ray, contracted outside the box (module doc)
) -> tuple[Tensor, Tensor, Tensor]:
    """Alpha-composite the field along rays inside the box (or along the whole ray when unbounded).

    Returns rgb [N, 3] (composited over ``background``), opacity [N] and expected depth [N]
    (world units along the ray). Samples in empty occupancy cells or outside the box have density 0
    and are never evaluated.
    """
    N = origins.shape[0]
    assert origins.shape == (N, 3) and dirs.shape == (N, 3), (origins.shape, dirs.shape)
    S = samples_per_ray
    dev = origins.device
    if unbounded:
        t, step = _unbounded_samples(origins, dirs, aabb, S, generator)  # [N, S] each
        valid = torch.ones(N, S, dtype=torch.bool, device=dev)
    else:
        near, far = ray_box(origins, dirs, aabb)
        delta = (far - near) / S  # [N]
        offs = torch.arange(S, device=dev, dtype=torch.float32)
        if generator is not None:
            offs = offs + torch.rand(N, S, device=dev, generator=generator)
        else:
            offs = offs.expand(N, S) + 0.5
        t = near[:, None] + offs * delta[:, None]  # [N, S]
        step = delta[:, None].expand(N, S)
        valid = (far > near)[:, None].expand(N, S)
    x = origins[:, None, :] + t[..., None] * dirs[:, None, :]  # [N, S, 3]
    if occupancy is not None:
        valid = valid & occupancy.occupied(x.reshape(-1, 3)).reshape(N, S)
    density = torch.zeros(N, S, device=dev)
    color = torch.zeros(N, S, 3, device=dev)
    if bool(valid.any()):
        d = dirs[:, None, :].expand(N, S, 3)
        sig, rgb = radiance(x[valid], d[valid])
        density = density.masked_scatter(valid, sig.float())
        color = color.masked_scatter(valid[..., None].expand(N, S, 3), rgb.float())
    alpha = 1.0 - torch.exp(-density * step)  # [N, S]
    trans = torch.cumprod(torch.cat([torch.ones(N, 1, device=dev), 1.0 - alpha + 1e-10], -1), -1)[:, :-1]
    weights = alpha * trans  # [N, S]
    opacity = weights.sum(-1)
    rgb_out = (weights[..., None] * color).sum(1)
    if background is not None:
        rgb_out = rgb_out + (1.0 - opacity)[:, None] * background
    depth = (weights * t).sum(-1)
    return rgb_out, opacity, depth


# ---------------------------------------------------------------------------------------------
# Occupancy-grid ray marching (Instant-NGP / nerfacc behaviour, in torch).
#
# A ray is cut into intervals [e(k + u), e(k + 1 + u)] for k = 0, 1, ... with
#   e(k) = near + k * step                      (bounded: inside the box)
#   e(k) = t_box * (1 + CONE)^(k - K1)          (unbounded, beyond t_box, where K1 = (t_box - near) / step)
# u a per-ray jitter in [0, 1) (0.5 without a generator). An interval is kept when its midpoint
# lies in an occupied cell and it ends before the ray's far end. Samples come packed, grouped by
# ray and ordered along it: ray_ids [S] (non-decreasing), t_mid [S], delta [S].
# Early termination: ``march_and_cull`` evaluates the density of every marched sample without
# gradient and drops the samples behind which the transmittance has fallen below early_stop_eps,
# so the (with-gradient) radiance pass sees only samples that count; compositing those is exact
# for them. ``render_rays_marched_reference`` is the per-ray loop these vectorised passes must match.
# ---------------------------------------------------------------------------------------------

MARCH_CONE = 1.0 / 256.0  # unbounded: relative growth of the step beyond the box
MARCH_CHUNK_ELEMS = 1 << 24  # candidate positions tested at once


def _march_edges(
    k: Tensor, near: Tensor, step: float, t_box: Tensor | None
) -> Tensor:  # k [N, C] float, near/t_box [N, 1] -> [N, C] distances
    lin = near + k * step
    if t_box is None:
        return lin
    k1 = (t_box - near) / step
    geo = t_box * torch.pow(1.0 + MARCH_CONE, (k - k1).clamp(min=0.0))
    return torch.where(k <= k1, lin, geo)


def march_steps_bound(aabb: Tensor, step: float) -> int:
    """Steps K that cover the longest possible ray of a bounded box (its diagonal): a bound that
    ``march_rays`` can use without reading the rays' lengths back from the device. A ray's extra
    steps beyond its own far end are never kept, so the samples are those of the exact K."""
    diag = float((aabb[1] - aabb[0]).double().norm())
    return int(math.ceil(diag / step * (1.0 + 1e-6))) + 2


def _march_ranges(
    origins: Tensor, dirs: Tensor, aabb: Tensor, step: float, unbounded: bool, max_steps: int | None = None
) -> tuple[Tensor, Tensor, Tensor | None, int]:
    """(near [N], far [N], t_box [N] or None, steps K of the longest ray, or ``max_steps`` when given
    for a bounded box: then nothing is read back from the device)."""
    if not unbounded:
        near, far = ray_box(origins, dirs, aabb)
        if max_steps is not None:
            return near, far, None, max_steps
        span = float((far - near).max()) if far.numel() else 0.0
        return near, far, None, int(math.ceil(span / step)) + 1
    center, half = 0.5 * (aabb[0] + aabb[1]), 0.5 * (aabb[1] - aabb[0])
    bn, bf = ray_box(origins, dirs, aabb)
    closest = ((center - origins) * dirs).sum(-1).clamp(min=0.0)
    t_box = torch.where(bf > bn, bf, closest).clamp(min=step)
    far = t_box + FAR_BOX_UNITS * float(half.max())
    near = torch.zeros_like(t_box)
    k_lin = float((t_box / step).max()) if t_box.numel() else 0.0
    k_geo = math.log(float((far / t_box).max()) if far.numel() else 1.0) / math.log1p(MARCH_CONE)
    return near, far, t_box, int(math.ceil(k_lin + k_geo)) + 1


@torch.no_grad()
def march_rays(
    origins: Tensor,  # [N, 3]
    dirs: Tensor,  # [N, 3] unit
    aabb: Tensor,  # [2, 3]
    step: float,  # world units between samples (inside the box)
    *,
    occupancy: OccupancyGrid | None = None,
    generator: torch.Generator | None = None,  # given: a random offset per ray; None: offset 0.5
    unbounded: bool = False,
    max_steps: int | None = None,  # bounded: march this many steps (>= ``march_steps_bound``), no read-back
) -> tuple[Tensor, Tensor, Tensor]:  # ray_ids [S] int64, t_mid [S], delta [S]
    """The intervals of each ray that lie in occupied space (block comment above).

    One host synchronisation: the ``nonzero`` that packs the kept intervals (two with the exact K
    of a bounded box, which reads the longest ray back; ``max_steps`` avoids that read)."""
    N, dev = origins.shape[0], origins.device
    assert origins.shape == (N, 3) and dirs.shape == (N, 3), (origins.shape, dirs.shape)
    near, far, t_box, K = _march_ranges(origins, dirs, aabb, step, unbounded, max_steps)
    if generator is not None:
        u = torch.rand(N, 1, device=dev, generator=generator)
    else:
        u = torch.full((N, 1), 0.5, device=dev)
    nr, fr, tb = near[:, None], far[:, None], (t_box[:, None] if t_box is not None else None)
    C = max(1, min(K, MARCH_CHUNK_ELEMS // max(N, 1)))
    keep = torch.zeros(N, K, dtype=torch.bool, device=dev)
    for c0 in range(0, K, C):
        k = torch.arange(c0, min(K, c0 + C), device=dev, dtype=torch.float32)[None] + u  # [N, c]
        e0, e1 = _march_edges(k, nr, step, tb), _march_edges(k + 1.0, nr, step, tb)
        ok = e1 <= fr
        if occupancy is not None:  # no test of ok.any() first: that would wait for the device
            mid = 0.5 * (e0 + e1)
            x = origins[:, None, :] + mid[..., None] * dirs[:, None, :]
            ok &= occupancy.occupied(x.reshape(-1, 3)).reshape(ok.shape)
        keep[:, c0 : c0 + C] = ok
    ray_ids, ks = keep.nonzero(as_tuple=True)  # row-major: grouped by ray, ordered along it
    kf = ks.to(torch.float32)[:, None] + u[ray_ids]
    nr_s, tb_s = nr[ray_ids], (tb[ray_ids] if tb is not None else None)
    e0, e1 = _march_edges(kf, nr_s, step, tb_s)[:, 0], _march_edges(kf + 1.0, nr_s, step, tb_s)[:, 0]
    return ray_ids, 0.5 * (e0 + e1), e1 - e0


def transmittance_packed(ray_ids: Tensor, n_rays: int, tau: Tensor) -> Tensor:  # [S]
    """Transmittance in front of each packed sample, exp(-sum of the optical depths tau before it
    on its ray). The running sum is in float64 so that a batch of many rays loses no precision.
    ``ray_ids`` is non-decreasing, so a ray's first sample is found by binary search (a bincount
    would read its largest id back from the device)."""
    cs = torch.cumsum(tau.double(), 0)
    excl = cs - tau.double()
    starts = torch.searchsorted(ray_ids, torch.arange(n_rays, device=ray_ids.device, dtype=ray_ids.dtype))  # [N]
    base = excl[starts.clamp(max=max(excl.shape[0] - 1, 0))] if excl.numel() else excl
    return torch.exp(-(excl - base[ray_ids])).to(tau.dtype)


def composite_packed(
    ray_ids: Tensor, n_rays: int, density: Tensor, rgb: Tensor, t: Tensor, delta: Tensor
) -> tuple[Tensor, Tensor, Tensor]:  # rgb [N, 3], opacity [N], depth [N]
    """Alpha-composite packed samples (grouped by ray, ordered along it) without a background."""
    tau = density * delta
    alpha = 1.0 - torch.exp(-tau)
    w = transmittance_packed(ray_ids, n_rays, tau) * alpha  # [S]
    dev = density.device
    out = torch.zeros(n_rays, 3, device=dev, dtype=rgb.dtype).index_add(0, ray_ids, w[:, None] * rgb)
    opacity = torch.zeros(n_rays, device=dev, dtype=w.dtype).index_add(0, ray_ids, w)
    depth = torch.zeros(n_rays, device=dev, dtype=w.dtype).index_add(0, ray_ids, w * t)
    return out, opacity, depth


@torch.no_grad()
def march_and_cull(
    density_fn: DensityFn,
    origins: Tensor,
    dirs: Tensor,
    aabb: Tensor,
    step: float,
    *,
    occupancy: OccupancyGrid | None = None,
    early_stop_eps: float = 1e-4,
    generator: torch.Generator | None = None,
    unbounded: bool = False,
    chunk: int = 1 << 20,
    max_steps: int | None = None,  # ``march_rays``
) -> tuple[Tensor, Tensor, Tensor]:  # ray_ids [S'], t [S'], delta [S']
    """``march_rays``, then drop the samples behind which the transmittance is below early_stop_eps
    (density evaluated without gradient) and those of zero density (one more host sync: the
    ``nonzero`` of the samples kept, shared by the three arrays)."""
    ray_ids, t, delta = march_rays(
        origins, dirs, aabb, step, occupancy=occupancy, generator=generator, unbounded=unbounded, max_steps=max_steps
    )
    if ray_ids.numel() == 0:
        return ray_ids, t, delta
    x = origins[ray_ids] + t[:, None] * dirs[ray_ids]
    sig = torch.cat([density_fn(x[s : s + chunk]).float() for s in range(0, x.shape[0], chunk)])
    trans = transmittance_packed(ray_ids, origins.shape[0], sig * delta)
    keep = ((trans >= early_stop_eps) & (sig > 0)).nonzero()[:, 0]
    return ray_ids[keep], t[keep], delta[keep]


def render_rays_marched(
    radiance: RadianceFn,
    density_fn: DensityFn,
    origins: Tensor,  # [N, 3]
    dirs: Tensor,  # [N, 3] unit
    aabb: Tensor,  # [2, 3]
    step: float,
    *,
    occupancy: OccupancyGrid | None = None,
    early_stop_eps: float = 1e-4,
    background: Tensor | None = None,  # [3] or [N, 3]; None = black
    generator: torch.Generator | None = None,
    unbounded: bool = False,
    max_steps: int | None = None,  # ``march_rays``
) -> tuple[Tensor, Tensor, Tensor, int]:  # rgb [N, 3], opacity [N], depth [N], samples evaluated
    """Render rays with the occupancy-grid marcher and early termination (block comment above)."""
    N = origins.shape[0]
    ray_ids, t, delta = march_and_cull(
        density_fn,
        origins,
        dirs,
        aabb,
        step,
        occupancy=occupancy,
        early_stop_eps=early_stop_eps,
        generator=generator,
        unbounded=unbounded,
        max_steps=max_steps,
    )
    if ray_ids.numel():
        x = origins[ray_ids] + t[:, None] * dirs[ray_ids]
        sig, rgb = radiance(x, dirs[ray_ids])
        rgb_out, opacity, depth = composite_packed(ray_ids, N, sig.float(), rgb.float(), t, delta)
    else:  # every ray misses occupied space
        rgb_out = torch.zeros(N, 3, device=origins.device)
        opacity, depth = torch.zeros(N, device=origins.device), torch.zeros(N, device=origins.device)
    if background is not None:
        rgb_out = rgb_out + (1.0 - opacity)[:, None] * background
    return rgb_out, opacity, depth, int(ray_ids.numel())


def render_rays_marched_reference(
    radiance: RadianceFn,
    origins: Tensor,
    dirs: Tensor,
    aabb: Tensor,
    step: float,
    *,
    occupancy: OccupancyGrid | None = None,
    early_stop_eps: float = 1e-4,
    background: Tensor | None = None,
    unbounded: bool = False,
) -> tuple[Tensor, Tensor]:  # rgb [N, 3], opacity [N]
    """The slow twin of ``render_rays_marched`` (sample offset 0.5): one ray at a time, one
    interval at a time, stopping once the transmittance falls below early_stop_eps. Tests only."""
    out_rgb, out_op = [], []
    for r in range(origins.shape[0]):
        o, d = origins[r : r + 1], dirs[r : r + 1]
        near, far, t_box, K = _march_ranges(o, d, aabb, step, unbounded)
        nr, tb = near[:, None], (t_box[:, None] if t_box is not None else None)
        T, col = 1.0, torch.zeros(3, dtype=torch.float64)
        for k in range(K):
            kk = torch.tensor([[k + 0.5]])
            e0, e1 = float(_march_edges(kk, nr, step, tb)), float(_march_edges(kk + 1.0, nr, step, tb))
            if e1 > float(far[0]):
                break
            x = o + 0.5 * (e0 + e1) * d
            if occupancy is not None and not bool(occupancy.occupied(x)[0]):
                continue
            if T < early_stop_eps:
                break
            sig, rgb = radiance(x, d)
            alpha = 1.0 - math.exp(-float(sig[0]) * (e1 - e0))
            col += T * alpha * rgb[0].double()
            T *= 1.0 - alpha
        out_rgb.append(col.float())
        out_op.append(1.0 - T)
    rgb_out = torch.stack(out_rgb) if out_rgb else torch.zeros(0, 3)
    opacity = torch.tensor(out_op, dtype=torch.float32)
    if background is not None:
        rgb_out = rgb_out + (1.0 - opacity)[:, None] * background
    return rgb_out, opacity


@torch.no_grad()
def render_image(
    radiance: RadianceFn,
    camera: Camera,
    aabb: Tensor,  # [2, 3]
    samples_per_ray: int,
    *,
    occupancy: OccupancyGrid | None = None,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    chunk: int = 1 << 14,
    unbounded: bool = False,
) -> Tensor:  # [H, W, 3]
    """Render one camera in ray chunks (no grad), sampling at stratum centres."""
    dev = aabb.device
    o, d = camera_rays(camera, dev)
    bg = torch.tensor(background, dtype=torch.float32, device=dev)
    out = [
        render_rays(
            radiance,
            o[s : s + chunk],
            d[s : s + chunk],
            aabb,
            samples_per_ray,
            occupancy=occupancy,
            background=bg,
            unbounded=unbounded,
        )[0]
        for s in range(0, o.shape[0], chunk)
    ]
    return torch.cat(out).reshape(int(camera.height), int(camera.width), 3)


@torch.no_grad()
def render_image_marched(
    radiance: RadianceFn,
    density_fn: DensityFn,
    camera: Camera,
    aabb: Tensor,  # [2, 3]
    step: float,
    *,
    occupancy: OccupancyGrid | None = None,
    early_stop_eps: float = 1e-4,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    chunk: int = 1 << 13,
    unbounded: bool = False,
) -> Tensor:  # [H, W, 3]
    """Render one camera with the occupancy-grid marcher in ray chunks (no grad, offset 0.5)."""
    dev = aabb.device
    o, d = camera_rays(camera, dev)
    bg = torch.tensor(background, dtype=torch.float32, device=dev)
    out = [
        render_rays_marched(
            radiance,
            density_fn,
            o[s : s + chunk],
            d[s : s + chunk],
            aabb,
            step,
            occupancy=occupancy,
            early_stop_eps=early_stop_eps,
            background=bg,
            unbounded=unbounded,
        )[0]
        for s in range(0, o.shape[0], chunk)
    ]
    return torch.cat(out).reshape(int(camera.height), int(camera.width), 3)
