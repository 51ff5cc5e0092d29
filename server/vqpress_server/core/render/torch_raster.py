"""The pure-PyTorch twin of gsplat's classic 3DGS rasterizer (EWA splatting), differentiable by autograd.

It follows gsplat 1.5.3 step by step, so that the two agree to float rounding:

1. world -> camera with ``viewmat``; Gaussians nearer than ``near_plane`` are dropped;
2. 3D covariance ``R S S^T R^T`` from the normalized quaternion and the activated scales;
3. 2D covariance ``J W Sigma W^T J^T`` with the Jacobian of the perspective projection (its x/y
   clamped to 1.3x the field of view, as gsplat does), plus ``eps2d`` (0.3 px^2) on the diagonal;
4. an opacity-aware bounding box per Gaussian: beyond ``sqrt(2 ln(255 opacity))`` standard
   deviations along x or y its alpha is below 1/255 everywhere, so it touches no pixel there;
5. 16x16 tiles: every (Gaussian, tile) overlap is listed and sorted by tile, then by depth;
6. per pixel (center at +0.5), front to back: ``alpha = min(0.999, opacity * exp(-0.5 d^T Sigma^-1 d))``,
   skipped when below 1/255; compositing stops *before* the Gaussian that would bring the
   transmittance T to 1e-4 or below; the background is added with weight T.

Work is vectorized over tiles: each round takes the next chunk of Gaussians of every unfinished
tile, evaluates an [tiles, chunk, 256] block of alphas and composites it with a cumulative
product. Tiles whose pixels are all saturated drop out early. No Python loop runs per pixel or
per Gaussian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import VqpressInputError
from .sh import sh_to_rgb

TILE = 16  # tile side (pixels)
WEIGHTS_TILE = 8  # tile side of blend_weights_torch (pixels): less of each tile lies outside a small Gaussian
ALPHA_MIN = 1.0 / 255.0  # a Gaussian contributes to a pixel only with alpha at or above this
ALPHA_MAX = 0.999  # alpha is clamped to this, so one Gaussian never makes a pixel fully opaque
T_MIN = 1e-4  # compositing stops before transmittance would fall to this
BLOCK_ELEMENTS = 1 << 23  # alpha values evaluated per round (tiles x chunk x 256), bounds memory
# Rounds without autograd (renders, blend weights) on one intra-op thread: 4 MB arrays stay in a
# core's cache. lego_7k at 400x400: 4 renders 2.2 against 3.6-3.75 CPU s; the same values up to float
# rounding (5e-7 in the images). With more intra-op threads the rounds stay at BLOCK_ELEMENTS: 8x
# more, smaller ops each wait for the other threads, which on a loaded machine costs ~20 ms an op
# (blend weights of one lego view on 2 threads at load 3: 8.4 s in 1M rounds, 3.3 s in 8M; on one
# thread 0.37 s).
CACHE_BLOCK_ELEMENTS = 1 << 20


def _round_elements(differentiable: bool) -> int:
    """Alpha values per compositing round: cache-sized on one thread without autograd."""
    return CACHE_BLOCK_ELEMENTS if not differentiable and torch.get_num_threads() == 1 else BLOCK_ELEMENTS


MAX_INTERSECTIONS = 1 << 25  # (Gaussian, tile) overlaps accepted in one image (~1.3 GB of bookkeeping)


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:  # [N, 4] (w, x, y, z) -> [N, 3, 3]
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)


def project(
    means_c: torch.Tensor,  # [N, 3] camera-space positions, all with z > near plane
    covars_c: torch.Tensor,  # [N, 3, 3] camera-space 3D covariances
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    eps2d: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Perspective projection of Gaussians: pixel-space means [N, 2], 2D covariances [N, 2, 2]
    (with ``eps2d`` added) and their determinants [N]."""
    fx, fy = K[0, 0], K[1, 1]
    tx, ty, tz = means_c.unbind(-1)
    u, v = _clamped_uv(means_c, K, width, height)
    zero = torch.zeros_like(tz)
    J = torch.stack([fx / tz, zero, -fx * u / tz, zero, fy / tz, -fy * v / tz], dim=-1).reshape(-1, 2, 3)
    cov2d = J @ covars_c @ J.transpose(1, 2)
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    det = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]
    return _means2d(means_c, K), cov2d, det


def _means2d(means_c: torch.Tensor, K: torch.Tensor) -> torch.Tensor:  # [N, 3] -> [N, 2] pixel-space means
    tx, ty, tz = means_c.unbind(-1)
    return torch.stack([K[0, 0] * tx / tz + K[0, 2] + K[0, 1] * ty / tz, K[1, 1] * ty / tz + K[1, 2]], dim=-1)


def _clamped_uv(
    means_c: torch.Tensor, K: torch.Tensor, width: int, height: int
) -> tuple[torch.Tensor, torch.Tensor]:  # [N] each
    """x/z and y/z of camera-space positions, as the projection's Jacobian takes them."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tx, ty, tz = means_c.unbind(-1)
    # gsplat clamps the Jacobian's x/y to 1.3x the half field of view, for Gaussians far off-screen.
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    u = torch.minimum(torch.maximum(tx / tz, -lim_x_neg), lim_x_pos)
    v = torch.minimum(torch.maximum(ty / tz, -lim_y_neg), lim_y_pos)
    return u, v


def world_covariances(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:  # [N, 4], [N, 3] -> [N, 6]
    """The world-space 3D covariances ``R S S^T R^T`` as (xx, yy, zz, xy, xz, yz): what every view's
    projection starts from, computed once for many views (``blend_weights_torch(covars=...)``)."""
    M_ = quat_to_rotmat(quats) * scales[:, None, :]  # R S, [N, 3, 3]
    r0, r1, r2 = M_.unbind(1)  # rows [N, 3]
    pairs = ((r0, r0), (r1, r1), (r2, r2), (r0, r1), (r0, r2), (r1, r2))
    return torch.stack([(p * q).sum(-1) for p, q in pairs], dim=-1)


def _project_covariances(
    means_c: torch.Tensor,  # [M, 3] camera-space positions, all with z > near plane
    covars: torch.Tensor,  # [M, 6] world-space covariances (world_covariances)
    R: torch.Tensor,  # [3, 3] world-to-camera rotation
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    eps2d: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``project`` from precomputed world covariances: the 2D covariance ``(J R) Sigma (J R)^T`` as
    three quadratic forms of the rows of ``J R``, elementwise (no batched 3x3 products)."""
    fx, fy = K[0, 0], K[1, 1]
    tz = means_c[:, 2:3]
    u, v = _clamped_uv(means_c, K, width, height)
    a = (fx / tz) * (R[0] - u[:, None] * R[2])  # [M, 3] first row of J R
    b = (fy / tz) * (R[1] - v[:, None] * R[2])  # [M, 3] second row
    sxx, syy, szz, sxy, sxz, syz = covars.unbind(-1)

    def form(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:  # p^T Sigma q, [M]
        px, py, pz = p.unbind(-1)
        qx, qy, qz = q.unbind(-1)
        return (
            px * (sxx * qx + sxy * qy + sxz * qz)
            + py * (sxy * qx + syy * qy + syz * qz)
            + pz * (sxz * qx + syz * qy + szz * qz)
        )

    c00, c11, c01 = form(a, a) + eps2d, form(b, b) + eps2d, form(a, b)
    cov2d = torch.stack([c00, c01, c01, c11], dim=-1).reshape(-1, 2, 2)
    return _means2d(means_c, K), cov2d, c00 * c11 - c01 * c01


@dataclass
class _Tiles:
    """What the compositing reads, for the Gaussians kept by culling (``idx`` into the input)."""

    idx: torch.Tensor  # [M] int64, input Gaussian of each kept one
    means2d: torch.Tensor  # [M, 2] pixel-space means
    conic: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # [M] each: inverse 2D covariance [[a, b], [b, c]]
    log_opac: torch.Tensor  # [M]
    isect_gauss: torch.Tensor  # [I] int64, kept Gaussian of each (Gaussian, tile) overlap, by tile then depth
    tile_count: torch.Tensor  # [n_tiles] int64, overlaps per tile
    tile_start: torch.Tensor  # [n_tiles] int64, first overlap of each tile in isect_gauss
    W_t: int  # tiles per row
    H_t: int  # tile rows
    tile: int  # tile side (pixels)


def _tile_setup(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4]
    scales: torch.Tensor,  # [N, 3] activated
    opacities: torch.Tensor,  # [N] activated
    viewmat: torch.Tensor,  # [4, 4]
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    near_plane: float,
    eps2d: float,
    tile: int = TILE,
    covars: torch.Tensor | None = None,  # [N, 6] world_covariances(quats, scales), when precomputed
) -> _Tiles:
    """Steps 1-5 of the module docstring: culling, projection, tile lists (of ``tile`` x ``tile``
    pixels) sorted by depth."""
    device = means.device
    W_t, H_t = math.ceil(width / tile), math.ceil(height / tile)
    n_tiles = W_t * H_t

    # 1. Camera space and near-plane culling (index, not mask, so dropped Gaussians get no NaN grads).
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    means_c = means @ R.T + t  # [N, 3]
    keep = (means_c[:, 2] > near_plane) & (opacities >= ALPHA_MIN)
    idx = keep.nonzero()[:, 0]

    # 2-3. Covariances and projection of the kept Gaussians.
    if covars is None:
        rot = quat_to_rotmat(quats[idx])  # [M, 3, 3]
        M_ = rot * scales[idx][:, None, :]  # R S
        covars_c = R @ (M_ @ M_.transpose(1, 2)) @ R.T
        means2d, cov2d, det = project(means_c[idx], covars_c, K, width, height, eps2d)
    else:
        means2d, cov2d, det = _project_covariances(means_c[idx], covars[idx], R, K, width, height, eps2d)
    opac = opacities[idx]

    # 4. Opacity-aware extent, culling of degenerate and off-screen Gaussians.
    with torch.no_grad():
        extent = torch.sqrt(2.0 * torch.log(opac.clamp_min(ALPHA_MIN) / ALPHA_MIN))  # in std devs
        rx = extent * cov2d[:, 0, 0].clamp_min(0).sqrt()
        ry = extent * cov2d[:, 1, 1].clamp_min(0).sqrt()
        mx, my = means2d[:, 0], means2d[:, 1]
        on = (det > 0) & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        on &= torch.isfinite(means2d).all(-1) & torch.isfinite(rx) & torch.isfinite(ry)
        sel = on.nonzero()[:, 0]
        # Depth order first; the stable sort by tile below keeps it within each tile.
        sel = sel[torch.sort(_sort_key(means_c[idx[sel], 2]), stable=True).indices]
        box = torch.stack([mx - rx, mx + rx, my - ry, my + ry])[:, sel].div_(tile).floor_()  # [4, S] in tiles
        box[:2].clamp_(0, W_t - 1)
        box[2:].clamp_(0, H_t - 1)
        x0, x1, y0, y1 = box.long()
        tw = x1 - x0 + 1
        counts = tw * (y1 - y0 + 1)
        total = int(counts.sum())
        if total > MAX_INTERSECTIONS:
            raise VqpressInputError(
                f"{total} Gaussian-tile overlaps at {width}x{height} exceed the CPU renderer's limit of "
                f"{MAX_INTERSECTIONS}; render smaller images or use the CUDA backend"
            )
        owner = torch.repeat_interleave(torch.arange(sel.numel(), device=device), counts)  # [I]
        # per overlap: its Gaussian's first overlap, box width and first tile, in one gather
        first, tw_o, base = torch.stack([torch.cumsum(counts, 0) - counts, tw, y0 * W_t + x0])[:, owner]
        k = torch.arange(total, device=device) - first
        tile_of = base + (k // tw_o) * W_t + k % tw_o
        order = torch.sort(tile_of, stable=True).indices
        isect_gauss = sel[owner[order]]  # [I] indices into the kept set, by tile then depth
        tile_count = torch.bincount(tile_of, minlength=n_tiles)  # [n_tiles]
        tile_start = torch.cumsum(tile_count, 0) - tile_count

    # 5. The exponent of each Gaussian's alpha is a quadratic in the pixel offset (u, v) from a
    # tile's center, so a [chunk, 6] x [6, 256] product evaluates it for a whole tile:
    # log(alpha) = log(opacity) - 0.5 d^T Sigma^-1 d, with the conic Sigma^-1 = [[ca, cb], [cb, cc]].
    inv_det = 1.0 / det.clamp_min(1e-10)
    ca = cov2d[:, 1, 1] * inv_det
    cb = -0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]) * inv_det
    cc = cov2d[:, 0, 0] * inv_det
    return _Tiles(idx, means2d, (ca, cb, cc), torch.log(opac), isect_gauss, tile_count, tile_start, W_t, H_t, tile)


def _sort_key(depth: torch.Tensor) -> torch.Tensor:  # [S] positive depths -> [S], the same order
    """Positive floats order as their bit patterns do, and integers sort ~10x faster on the CPU."""
    depth = depth.detach()
    if depth.dtype == torch.float32:
        return depth.view(torch.int32)
    if depth.dtype == torch.float64:
        return depth.view(torch.int64)
    return depth


def _pixel_basis(tiles: _Tiles, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The quadratic basis of the pixel offsets in a tile [6, tile^2] and the tile centers [n_tiles] x, y."""
    device = tiles.means2d.device
    n_tiles, ts = tiles.W_t * tiles.H_t, tiles.tile
    pix = torch.arange(ts * ts, device=device)
    pu = (pix % ts).to(dtype) - (ts - 1) / 2  # pixel center offset from the tile center
    pv = (pix // ts).to(dtype) - (ts - 1) / 2
    basis = torch.stack([pu * pu, pv * pv, pu * pv, pu, pv, torch.ones_like(pu)])  # [6, tile^2]
    tile_cx = (torch.arange(n_tiles, device=device) % tiles.W_t).to(dtype) * ts + ts / 2
    tile_cy = (torch.arange(n_tiles, device=device) // tiles.W_t).to(dtype) * ts + ts / 2
    return basis, tile_cx, tile_cy


def _next_chunk(
    tiles: _Tiles, pos: torch.Tensor, done: torch.Tensor, block_elements: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The next chunk of Gaussians of every unfinished tile: (active tiles [A], valid slots [A, C],
    kept Gaussians [A, C]); advances ``pos``. None when every tile is finished."""
    active = ((pos < tiles.tile_count) & ~done.all(dim=1)).nonzero()[:, 0]
    if active.numel() == 0:
        return None
    remaining = int((tiles.tile_count[active] - pos[active]).max())
    chunk = min(remaining, max(8, block_elements // (active.numel() * tiles.tile * tiles.tile)))
    slot = pos[active, None] + torch.arange(chunk, device=pos.device)  # [A, C]
    count = tiles.tile_count[active, None]
    valid = slot < count
    g = tiles.isect_gauss[(tiles.tile_start[active, None] + slot.clamp_max(count - 1))]
    pos[active] += chunk
    return active, valid, g


def _exponent_coefs(
    tiles: _Tiles,
    active: torch.Tensor,
    valid: torch.Tensor,
    g: torch.Tensor,
    tile_cx: torch.Tensor,
    tile_cy: torch.Tensor,
) -> torch.Tensor:  # [A, C, 6]
    """Coefficients of log(alpha) in the pixel basis for each (tile, Gaussian) slot; -1e4 off the list."""
    ca, cb, cc = tiles.conic
    # d = pixel - mean = (u - du, v - dv) with (du, dv) the mean's offset from the tile center.
    du = tiles.means2d[g, 0] - tile_cx[active, None]  # [A, C]
    dv = tiles.means2d[g, 1] - tile_cy[active, None]
    a_, b_, c_ = ca[g], cb[g], cc[g]
    const = tiles.log_opac[g] - (0.5 * a_ * du * du + 0.5 * c_ * dv * dv + b_ * du * dv)
    const = torch.where(valid, const, torch.full((), -1e4, device=g.device, dtype=const.dtype))
    return torch.stack([-0.5 * a_, -0.5 * c_, -b_, a_ * du + b_ * dv, c_ * dv + b_ * du, const], dim=-1)


# Exponents far below log(ALPHA_MIN) are raised to this floor before exp: their alpha stays below
# ALPHA_MIN (so nothing changes), and exp no longer produces subnormal results, which cost ~10x
# more on the CPU (8M exps over [-120, 0]: 144 ms; over [-50, 0]: 16 ms).
_LOG_ALPHA_FLOOR = math.log(ALPHA_MIN) - 8.0
_LOG_ALPHA_MAX = math.log(ALPHA_MAX)


def rasterize_torch(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4] (w, x, y, z), any norm
    scales: torch.Tensor,  # [N, 3] activated (standard deviations, world units)
    opacities: torch.Tensor,  # [N] activated, in [0, 1]
    sh0: torch.Tensor,  # [N, 1, 3]
    shN: torch.Tensor,  # [N, (d+1)^2 - 1, 3]
    viewmat: torch.Tensor,  # [4, 4] world-to-camera, OpenCV axes
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    background: torch.Tensor,  # [3]
    *,
    near_plane: float = 0.01,  # camera-space depth below which Gaussians are dropped (world units)
    eps2d: float = 0.3,  # added to the 2D covariance diagonal (pixels^2), gsplat's default
) -> tuple[torch.Tensor, torch.Tensor]:  # rgb [H, W, 3], alpha [H, W, 1]
    """Render one view; gradients flow to every input tensor through autograd.

    Takes activated parameters (``rasterize`` in splats.py applies exp/sigmoid). Colors are
    ``max(SH(dirs) + 0.5, 0)`` with dirs from the camera center to each Gaussian."""
    device, dtype = means.device, means.dtype
    tiles = _tile_setup(means, quats, scales, opacities, viewmat, K, width, height, near_plane, eps2d)
    idx, W_t, H_t = tiles.idx, tiles.W_t, tiles.H_t
    n_tiles = W_t * H_t
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    campos = -torch.linalg.solve(R, t)  # camera center in world space (R need not be orthonormal)
    colors = sh_to_rgb(sh0[idx], shN[idx], means[idx] - campos)  # [M, 3]
    basis, tile_cx, tile_cy = _pixel_basis(tiles, dtype)

    # 6. Front-to-back compositing, a chunk of Gaussians per unfinished tile per round.
    rgb = torch.zeros(n_tiles, TILE * TILE, 3, device=device, dtype=dtype)
    T = torch.ones(n_tiles, TILE * TILE, device=device, dtype=dtype)
    done = torch.zeros(n_tiles, TILE * TILE, device=device, dtype=torch.bool)
    pos = torch.zeros(n_tiles, device=device, dtype=torch.long)
    differentiable = torch.is_grad_enabled() and any(
        x.requires_grad for x in (means, quats, scales, opacities, sh0, shN, viewmat, K)
    )
    while True:
        with torch.no_grad():
            nxt = _next_chunk(tiles, pos, done, _round_elements(differentiable))
        if nxt is None:
            break
        active, valid, g = nxt
        coef = _exponent_coefs(tiles, active, valid, g, tile_cx, tile_cy)  # [A, C, 6]
        T_a = T[active]  # [A, 256]
        if differentiable:
            alpha = torch.exp(torch.clamp(coef @ basis, _LOG_ALPHA_FLOOR, _LOG_ALPHA_MAX))  # [A, C, 256]
            live = (alpha >= ALPHA_MIN) & ~done[active][:, None, :]
            alpha = torch.where(live, alpha, torch.zeros((), device=device, dtype=dtype))
            one_minus = 1.0 - alpha
            T_after = T_a[:, None, :] * torch.cumprod(one_minus, dim=1)  # [A, C, 256]
            included = T_after > T_MIN  # a prefix along C for each pixel
            weight = torch.where(included, alpha * (T_after / one_minus), torch.zeros((), device=device, dtype=dtype))
        else:  # the same arithmetic in place: fewer full-block allocations when no graph is kept
            alpha = (coef @ basis).clamp_(_LOG_ALPHA_FLOOR, _LOG_ALPHA_MAX).exp_()
            live = alpha >= ALPHA_MIN
            live &= ~done[active][:, None, :]
            alpha.mul_(live)
            one_minus = 1.0 - alpha
            T_after = torch.cumprod(one_minus, dim=1).mul_(T_a[:, None, :])
            included = T_after > T_MIN
            weight = alpha.mul_(T_after).div_(one_minus).mul_(included)
        rgb = rgb.index_put((active,), rgb[active] + torch.einsum("acp,acd->apd", weight, colors[g]))
        # Transmittance carried to the next round: after the chunk, or where a pixel stopped, after
        # its last included Gaussian (few pixels stop per round, so that is gathered sparsely).
        T_new = T_after[:, -1, :]
        stop = ~included[:, -1, :]  # [A, 256]
        with torch.no_grad():
            sa, sp = stop.nonzero(as_tuple=True)
            n_inc = included[sa, :, sp].sum(dim=1)  # [S]
        T_stop = torch.where(n_inc > 0, T_after[sa, (n_inc - 1).clamp_min(0), sp], T_a[sa, sp])
        T = T.index_put((active,), T_new.index_put((sa, sp), T_stop))
        with torch.no_grad():
            done[active] |= stop

    image = rgb + T[..., None] * background.to(dtype)
    image = image.reshape(H_t, W_t, TILE, TILE, 3).permute(0, 2, 1, 3, 4).reshape(H_t * TILE, W_t * TILE, 3)
    alpha_img = (1.0 - T).reshape(H_t, W_t, TILE, TILE).permute(0, 2, 1, 3).reshape(H_t * TILE, W_t * TILE, 1)
    return image[:height, :width], alpha_img[:height, :width]


@torch.no_grad()
def blend_weights_torch(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4] (w, x, y, z), any norm
    scales: torch.Tensor,  # [N, 3] activated (standard deviations, world units)
    opacities: torch.Tensor,  # [N] activated, in [0, 1]
    viewmat: torch.Tensor,  # [4, 4] world-to-camera, OpenCV axes
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    eps2d: float = 0.3,
    block_elements: int | None = None,  # alpha values per round (tiles x chunk x tile^2); None: _round_elements
    tile: int = WEIGHTS_TILE,  # tile side (pixels)
    covars: torch.Tensor | None = None,  # [N, 6] world_covariances(quats, scales), for many views of one scene
) -> torch.Tensor:  # [N] float64
    """Every Gaussian's blending weight ``alpha_i T_i`` summed over the pixels of one view.

    The compositing of ``rasterize_torch`` without colors or images: the weights that
    ``rasterize_torch`` multiplies the colors by, summed per Gaussian (equal, up to float rounding,
    to the gradient of the rendered image's sum with respect to each Gaussian's color, which
    ``tests/test_importance.py`` checks). The tile size changes no weight: a Gaussian left off a
    smaller tile's list has alpha below ``ALPHA_MIN`` on all its pixels."""
    N = means.shape[0]
    device, dtype = means.device, means.dtype
    out = torch.zeros(N, dtype=torch.float64, device=device)
    if N == 0:
        return out
    tiles = _tile_setup(means, quats, scales, opacities, viewmat, K, width, height, near_plane, eps2d, tile, covars)
    n_tiles, P = tiles.W_t * tiles.H_t, tile * tile
    n_isect, M = tiles.isect_gauss.numel(), tiles.idx.numel()
    basis, tile_cx, tile_cy = _pixel_basis(tiles, dtype)
    # The exponent coefficients of every (Gaussian, tile) overlap, once, in list order; the slots of a
    # round past a tile's list read the extra last row (alpha 0) and add to the extra last Gaussian.
    tile_of = torch.repeat_interleave(torch.arange(n_tiles, device=device), tiles.tile_count)  # [I]
    listed = torch.ones(n_isect, 1, dtype=torch.bool, device=device)
    coef = torch.zeros(n_isect + 1, 6, device=device, dtype=dtype)
    coef[:n_isect] = _exponent_coefs(tiles, tile_of, listed, tiles.isect_gauss[:, None], tile_cx, tile_cy)[:, 0]
    coef[n_isect, 5] = -1e4
    gauss = torch.cat([tiles.isect_gauss, torch.full((1,), M, device=device, dtype=torch.long)])  # [I + 1]
    acc = torch.zeros(M + 1, dtype=torch.float64, device=device)  # per kept Gaussian, and the padding one
    # Pixels of the edge tiles beyond the image have no transmittance to give: they weigh nothing.
    pix = torch.arange(P, device=device)
    tid = torch.arange(n_tiles, device=device)
    outside = (((tid % tiles.W_t) * tile)[:, None] + (pix % tile) >= width) | (
        ((tid // tiles.W_t) * tile)[:, None] + (pix // tile) >= height
    )  # [n_tiles, P]
    T = torch.ones(n_tiles, P, device=device, dtype=dtype).masked_fill_(outside, 0.0)
    count, start = tiles.tile_count, tiles.tile_start
    pos = torch.zeros(n_tiles, device=device, dtype=torch.long)
    block = block_elements if block_elements is not None else _round_elements(False)
    active = ((count > 0) & ~outside.all(dim=1)).nonzero()[:, 0]
    while active.numel() > 0:
        count_a, pos_a = count[active], pos[active]
        chunk = min(int((count_a - pos_a).max()), max(8, block // (active.numel() * P)))
        slot = pos_a[:, None] + torch.arange(chunk, device=device)  # [A, C]
        row = torch.where(slot < count_a[:, None], start[active, None] + slot, n_isect)  # [A, C]
        alpha = torch.matmul(coef[row], basis)  # [A, C, P] log(alpha)
        alpha.clamp_(_LOG_ALPHA_FLOOR, _LOG_ALPHA_MAX).exp_()
        alpha.masked_fill_(alpha < ALPHA_MIN, 0.0)
        one_minus = torch.sub(1.0, alpha)
        T_after = torch.cumprod(one_minus, dim=1).mul_(T[active][:, None, :])
        included = T_after > T_MIN  # a prefix along C for each pixel
        weight = alpha.mul_(T_after).div_(one_minus).mul_(included)
        acc.index_add_(0, gauss[row].reshape(-1), weight.sum(2).reshape(-1).double())
        # At or below T_MIN where a pixel stopped: it includes nothing more; a tile whose pixels
        # all stopped, or whose list ended, leaves the rounds.
        T_last = T_after[:, -1, :]
        T[active] = T_last
        pos_a += chunk
        pos[active] = pos_a
        active = active[(pos_a < count_a) & (T_last > T_MIN).any(dim=1)]
    out[tiles.idx] = acc[:M]
    return out


__all__ = ["blend_weights_torch", "quat_to_rotmat", "rasterize_torch", "world_covariances"]
