"""Fused Triton kernels of exact k-means on CUDA: nearest-centroid assignment and centroid sums.

- ``assign_triton`` (d <= 8): each program takes BLOCK_N points and walks over the centroids BLOCK_K
  at a time. Distances are sum_j (x_j - c_j)^2 in fp32 FMAs (no tl.dot, so no TF32); every
  (point, lane) keeps its running best value, best index and second-best value in registers across
  centroid blocks, reduced once at the end. Block sizes are autotuned per (d, K range).
- ``assign_dot`` (8 < d <= 64): the same walk with x . c on tensor cores at fp32-equivalent accuracy
  (3xTF32: each fp32 operand split into a TF32 high part and a TF32-rounded residual, the points'
  once per program in registers, the centroids' once on the host; hi*hi + hi*lo + lo*hi as three
  TF32 ``tl.dot`` on exact TF32 inputs), distance = |c|^2 - 2 x . c on coordinates centered at the
  centroids' mean and scaled by a power of two; each row keeps its best two distances and the best
  index across centroid blocks.

Neither writes the N x K distance matrix. A point whose best and second-best distances are closer
than a rigorous bound on the error of the computed distances is flagged ambiguous; the caller
re-decides those exactly (kmeans._assign_gemm and its float64 decision).

- ``segment_sums``: per-cluster float64 sums (and weight totals) of points sorted by label, each
  cluster cut into fixed chunks summed by one program each, then the chunks of a cluster summed in
  order: no atomics, so the result is deterministic, and no host synchronization.
- ``point_distances``: float64 squared distance of every point to its own centroid.

Error bound of ``assign_dot`` (x, c: the centered, scaled fp32 coordinates, u = 2^-24, P = d padded
to a multiple of 16, S = 2 sum_j |x_j c_j| <= |x|^2 + |c|^2). The computed value is fl(fl(|c|^2) + T)
with T the tensor-core result for x . (-2c) (-2c is exact).
(a) Splitting: every operand a = hi + lo exactly in fp32 with |lo| <= 2^-11 |a| (hi: a rounded to
    TF32); lo enters the tensor core rounded to TF32, losing <= 2^-11 |lo|, and lo*lo is dropped, so
    each product is represented to within 3.01 * 2^-22 of its magnitude. The bound allows
    12 * 2^-22, what truncating both parts would give (tensor cores truncate inputs that are not
    exact in TF32).
(b) Accumulation: tensor cores add exact products with alignment to the largest term and
    truncation, <= 2^-22 (2 ulp) of the running sum of magnitudes per addition, over the 3P
    products of the three partial dots: <= 3P * 2^-22 * 1.01 * S.
(c) fl(|c|^2) (float64, rounded once): u |c|^2; the final addition: u (|c|^2 + S) * 1.01.
(d) Centering and scaling the inputs in fp32 moves each distance by <= 4u (|x|^2 + |c|^2) * 1.01.
Together |error| <= E = ((3P + 12) * 2^-22 * 1.01 + 8u) (|x|^2 + cmax) + 1e-30 (the last term for
underflow and flushed subnormals). The true nearest differs from the computed one only if the
computed gap is <= 2E; the kernel flags gaps <= 4E (a factor 2 of safety on top).
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

MAX_D = 8  # largest d of the direct-distance kernel
MAX_DOT_D = 64  # largest d of the tensor-core kernel (up to four k-chunks of 16)
U32 = 2.0**-24  # unit roundoff of float32
FLOOR = 1e-30  # absolute allowance for underflow on data scaled to magnitude ~1
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")  # kernels run on the CPU interpreter

# Fixed configurations (used under the interpreter, and the first of each autotuned list).
BLOCK_N = 128  # points per program (small d)
BLOCK_K = 32  # centroids per inner step (small d, lanes of the running minimum)
NUM_WARPS = 4
DOT_BLOCK_N = 128  # points per program (tensor-core kernel)
DOT_BLOCK_K = 64  # centroids per tensor-core step
SEG_ROWS = 1024  # rows of a cluster summed by one program of segment_sums
SEG_BLOCK = 64  # rows loaded per step of segment_sums


def dot_tolerance(d: int) -> float:
    """Gap below which a row is flagged, relative to |x|^2 + cmax: 4E (module docstring)."""
    p = 16 * triton.cdiv(d, 16)
    return 4.0 * ((3 * p + 12) * 2.0**-22 * 1.01 + 8 * U32)


# -- small d: direct distances ------------------------------------------------------------------
@triton.jit
def _assign_kernel(
    x_ptr,  # [N, D] float32, row-major
    ct_ptr,  # [D, K] float32, centroids transposed
    labels_ptr,  # [N] int64 out
    amb_ptr,  # [N] int8 out: 1 where best and second best are within the error bound
    N,
    K,
    K_BUCKET,  # autotuning key only: K rounded up to a power of two
    tol,  # relative error bound of a computed distance, times a safety factor
    D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    rows64 = rows.to(tl.int64)
    lanes = tl.arange(0, BLOCK_K)

    best = tl.full((BLOCK_N, BLOCK_K), float("inf"), tl.float32)
    second = tl.full((BLOCK_N, BLOCK_K), float("inf"), tl.float32)
    bidx = tl.full((BLOCK_N, BLOCK_K), -1, tl.int32)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + lanes
        cmask = cols < K
        dist = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
        for j in tl.static_range(D):
            xj = tl.load(x_ptr + rows64 * D + j, mask=rmask, other=0.0)
            cj = tl.load(ct_ptr + j * K + cols, mask=cmask, other=0.0)
            diff = xj[:, None] - cj[None, :]
            dist = tl.fma(diff, diff, dist)
        dist = tl.where(cmask[None, :], dist, float("inf"))
        lt = dist < best
        second = tl.where(lt, best, tl.minimum(second, dist))
        bidx = tl.where(lt, cols[None, :], bidx)
        best = tl.where(lt, dist, best)

    min1 = tl.min(best, axis=1)
    arg1 = tl.min(tl.where(best == min1[:, None], bidx, K), axis=1)
    # Second smallest overall: the second of the lane that holds the minimum, the best of the others.
    min2 = tl.min(tl.where(bidx == arg1[:, None], second, best), axis=1)
    amb = (min2 - min1) <= (tol * min1 + 1e-36)
    tl.store(labels_ptr + rows64, arg1.to(tl.int64), mask=rmask)
    tl.store(amb_ptr + rows64, amb.to(tl.int8), mask=rmask)


_SMALL_CONFIGS = [
    triton.Config({"BLOCK_N": 128, "BLOCK_K": 32}, num_warps=4),
    triton.Config({"BLOCK_N": 256, "BLOCK_K": 32}, num_warps=8),
    triton.Config({"BLOCK_N": 128, "BLOCK_K": 64}, num_warps=8),
    triton.Config({"BLOCK_N": 64, "BLOCK_K": 64}, num_warps=4),
    triton.Config({"BLOCK_N": 256, "BLOCK_K": 16}, num_warps=4),
    triton.Config({"BLOCK_N": 128, "BLOCK_K": 16}, num_warps=4),
]
_assign_tuned = None if INTERPRET else triton.autotune(configs=_SMALL_CONFIGS, key=["D", "K_BUCKET"])(_assign_kernel)


def _bucket(k: int) -> int:
    return 1 << max(0, (k - 1).bit_length())


def assign_triton(
    x: torch.Tensor,  # [N, d] float32, d <= 8
    centroids: torch.Tensor,  # [K, d] float32
    scale: float = 1.0,  # a power of two applied to both before the distances (keeps squares in range)
) -> tuple[torch.Tensor, torch.Tensor]:  # labels [N] int64, ambiguous [N] bool
    """Nearest centroid by fp32 FMAs; rows flagged ambiguous must be re-decided exactly."""
    N, d = x.shape
    K = centroids.shape[0]
    assert centroids.shape == (K, d), centroids.shape
    assert 1 <= d <= MAX_D, d
    assert K >= 1
    if scale != 1.0:
        x = x * scale
        centroids = centroids * scale
    x = x.contiguous()
    ct = centroids.T.contiguous()  # [d, K]
    labels = torch.empty(N, dtype=torch.int64, device=x.device)
    amb = torch.empty(N, dtype=torch.int8, device=x.device)
    if N == 0:
        return labels, amb.bool()
    tol = 4.0 * (d + 4) * U32
    if _assign_tuned is None:
        grid = (triton.cdiv(N, BLOCK_N),)
        _assign_kernel[grid](
            x, ct, labels, amb, N, K, _bucket(K), tol, D=d, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, num_warps=NUM_WARPS
        )
    else:
        _assign_tuned[lambda meta: (triton.cdiv(N, meta["BLOCK_N"]),)](x, ct, labels, amb, N, K, _bucket(K), tol, D=d)
    return labels, amb.bool()


# -- 8 < d <= 64: tensor cores ----------------------------------------------------------------------
@triton.jit
def _load_chunk(x_ptr, rows64, rmask, mu_ptr, scale, j0, D: tl.constexpr):
    """Columns j0 .. j0 + 15 of x rows, centered and scaled ([BLOCK_N, 16] float32; 0 past D)."""
    cj = j0 + tl.arange(0, 16)
    jm = cj < D
    v = tl.load(x_ptr + rows64[:, None] * D + cj[None, :], mask=rmask[:, None] & jm[None, :], other=0.0)
    m = tl.load(mu_ptr + cj, mask=jm, other=0.0)
    return tl.where(jm[None, :], (v - m[None, :]) * scale, 0.0)


@triton.jit
def _tf32(v):
    """v rounded to TF32 (10 explicit mantissa bits, ties away from zero), exactly in fp32."""
    bits = v.to(tl.uint32, bitcast=True)
    return ((bits + 0x1000) & 0xFFFFE000).to(tl.float32, bitcast=True)


@triton.jit
def _dot3(xh, xl, chi_ptr, clo_ptr, acc):
    """acc + xl . chi + xh . clo + xh . chi on tensor cores; every operand is exact in TF32."""
    chi = tl.load(chi_ptr)
    acc = tl.dot(xl, chi, acc, input_precision="tf32")
    acc = tl.dot(xh, tl.load(clo_ptr), acc, input_precision="tf32")
    return tl.dot(xh, chi, acc, input_precision="tf32")


@triton.jit
def _assign_dot_kernel(
    x_ptr,  # [N, D] float32, row-major (raw coordinates)
    mu_ptr,  # [D] float32, the center subtracted from x
    chi_ptr,  # [P, K_pad] float32: TF32 high part of -2 * centered, scaled centroids, transposed
    clo_ptr,  # [P, K_pad] float32: the residual, rounded to TF32 (both zero-padded)
    cn_ptr,  # [K_pad] float32: |c|^2 of the centered, scaled centroids; +inf on the padding
    labels_ptr,  # [N] int64 out
    amb_ptr,  # [N] int8 out
    N,
    K_pad,
    K_BUCKET,  # autotuning key only
    scale,  # power of two applied after centering
    tol,  # relative error bound, times the safety factor (dot_tolerance)
    floor,
    cmax,  # max |c|^2 over the centroids
    D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    NCHUNK: tl.constexpr = (D + 15) // 16
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    rows64 = rows.to(tl.int64)
    dk = tl.arange(0, 16)
    lanes = tl.arange(0, BLOCK_K)

    # The points' TF32 splits stay in registers for the whole walk: x = h + l + (<= 2^-22 |x|).
    x0 = _load_chunk(x_ptr, rows64, rmask, mu_ptr, scale, 0, D)
    xn = tl.sum(x0 * x0, axis=1)
    h0 = _tf32(x0)
    l0 = _tf32(x0 - h0)
    if NCHUNK > 1:
        x1 = _load_chunk(x_ptr, rows64, rmask, mu_ptr, scale, 16, D)
        xn += tl.sum(x1 * x1, axis=1)
        h1 = _tf32(x1)
        l1 = _tf32(x1 - h1)
    if NCHUNK > 2:
        x2 = _load_chunk(x_ptr, rows64, rmask, mu_ptr, scale, 32, D)
        xn += tl.sum(x2 * x2, axis=1)
        h2 = _tf32(x2)
        l2 = _tf32(x2 - h2)
    if NCHUNK > 3:
        x3 = _load_chunk(x_ptr, rows64, rmask, mu_ptr, scale, 48, D)
        xn += tl.sum(x3 * x3, axis=1)
        h3 = _tf32(x3)
        l3 = _tf32(x3 - h3)

    m1 = tl.full((BLOCK_N,), float("inf"), tl.float32)
    m2 = tl.full((BLOCK_N,), float("inf"), tl.float32)
    i1 = tl.zeros((BLOCK_N,), tl.int32)
    for k0 in range(0, K_pad, BLOCK_K):
        cols = k0 + lanes
        off = dk[:, None] * K_pad + cols[None, :]
        acc = _dot3(h0, l0, chi_ptr + off, clo_ptr + off, tl.zeros((BLOCK_N, BLOCK_K), tl.float32))
        if NCHUNK > 1:
            acc = _dot3(h1, l1, chi_ptr + 16 * K_pad + off, clo_ptr + 16 * K_pad + off, acc)
        if NCHUNK > 2:
            acc = _dot3(h2, l2, chi_ptr + 32 * K_pad + off, clo_ptr + 32 * K_pad + off, acc)
        if NCHUNK > 3:
            acc = _dot3(h3, l3, chi_ptr + 48 * K_pad + off, clo_ptr + 48 * K_pad + off, acc)
        dist = tl.load(cn_ptr + cols)[None, :] + acc  # [BLOCK_N, BLOCK_K]
        t1 = tl.min(dist, axis=1)
        ti = tl.min(tl.where(dist == t1[:, None], cols[None, :], K_pad), axis=1)
        t2 = tl.min(tl.where(cols[None, :] == ti[:, None], float("inf"), dist), axis=1)
        # An exact tie with the running best keeps the lower index and leaves a gap of 0 (flagged).
        lt = t1 < m1
        m2 = tl.where(lt, tl.minimum(m1, t2), tl.minimum(m2, t1))
        i1 = tl.where(lt, ti, i1)
        m1 = tl.where(lt, t1, m1)

    amb = (m2 - m1) <= (tol * (xn + cmax) + floor)
    tl.store(labels_ptr + rows64, i1.to(tl.int64), mask=rmask)
    tl.store(amb_ptr + rows64, amb.to(tl.int8), mask=rmask)


def _tf32_round(v: torch.Tensor) -> torch.Tensor:
    """v [float32] rounded to TF32 as the kernel's _tf32 does it."""
    return ((v.view(torch.int32) + 0x1000) & ~0x1FFF).view(torch.float32)


_DOT_CONFIGS = [
    triton.Config({"BLOCK_N": 128, "BLOCK_K": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_N": 256, "BLOCK_K": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_N": 128, "BLOCK_K": 128}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_N": 128, "BLOCK_K": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_N": 64, "BLOCK_K": 64}, num_warps=4, num_stages=3),
]
_assign_dot_tuned = (
    None if INTERPRET else triton.autotune(configs=_DOT_CONFIGS, key=["D", "K_BUCKET"])(_assign_dot_kernel)
)
_DOT_K_ALIGN = 128  # centroid padding: a multiple of every BLOCK_K above


def assign_dot(
    x: torch.Tensor,  # [N, d] float32, 8 < d <= 64
    centroids: torch.Tensor,  # [K, d] float32
) -> tuple[torch.Tensor, torch.Tensor]:  # labels [N] int64, ambiguous [N] bool
    """Nearest centroid by 3xTF32 tensor-core products; rows flagged ambiguous must be re-decided."""
    N, d = x.shape
    K = centroids.shape[0]
    assert centroids.shape == (K, d), centroids.shape
    assert 1 <= d <= MAX_DOT_D, d
    assert K >= 1
    x = x.contiguous()
    labels = torch.empty(N, dtype=torch.int64, device=x.device)
    amb = torch.empty(N, dtype=torch.int8, device=x.device)
    if N == 0:
        return labels, amb.bool()
    # Center at the centroids' mean (no pass over x) and scale by a power of two so that squares
    # stay in range; the same fp32 operations on both sides, as the kernel does them on x.
    mu = centroids.double().mean(0).float()  # [d]
    cc = centroids - mu  # [K, d]
    m = max(float((x.abs().amax(0) + mu.abs()).max()), float(cc.abs().max()))
    scale = 1.0 if m == 0.0 else 2.0 ** -math.frexp(m)[1]
    cc = cc * scale
    p = 16 * triton.cdiv(d, 16)
    k_pad = _DOT_K_ALIGN * triton.cdiv(K, _DOT_K_ALIGN)
    b = (cc * -2.0).T  # [d, K], exact
    chi = torch.zeros(p, k_pad, dtype=torch.float32, device=x.device)
    clo = torch.zeros(p, k_pad, dtype=torch.float32, device=x.device)
    chi[:d, :K] = _tf32_round(b.contiguous())
    clo[:d, :K] = _tf32_round((b - chi[:d, :K]).contiguous())
    cn = torch.full((k_pad,), float("inf"), dtype=torch.float32, device=x.device)
    cn[:K] = cc.double().square().sum(1).float()
    cmax = float(cn[:K].max())
    tol = dot_tolerance(d)
    args = (x, mu, chi, clo, cn, labels, amb, N, k_pad, _bucket(K), scale, tol, FLOOR, cmax)
    if _assign_dot_tuned is None:
        grid = (triton.cdiv(N, DOT_BLOCK_N),)
        _assign_dot_kernel[grid](*args, D=d, BLOCK_N=DOT_BLOCK_N, BLOCK_K=DOT_BLOCK_K, num_warps=8)
    else:
        _assign_dot_tuned[lambda meta: (triton.cdiv(N, meta["BLOCK_N"]),)](*args, D=d)
    return labels, amb.bool()


# -- update: sorted segment sums ------------------------------------------------------------------
@triton.jit
def _segment_sum_kernel(
    x_ptr,  # [N, D] float32
    w_ptr,  # [N] float64 (read only if WEIGHTED)
    order_ptr,  # [N] int64: point indices sorted by label
    start_ptr,  # [K] int64: first position of each cluster in order
    count_ptr,  # [K] int64: members of each cluster
    chunk_end_ptr,  # [K] int64: inclusive cumulative number of chunks per cluster
    part_ptr,  # [P, DP] float64 out: one row per chunk (column D: the weight total if WEIGHTED)
    K,
    D: tl.constexpr,
    DP: tl.constexpr,
    WEIGHTED: tl.constexpr,
    SEG_ROWS: tl.constexpr,
    SEG_BLOCK: tl.constexpr,
    SEARCH_STEPS: tl.constexpr,
):
    p = tl.program_id(0)
    # The cluster of chunk p: the first k with chunk_end[k] > p (binary search; K if none).
    lo = p * 0
    hi = lo + K
    for _ in tl.static_range(SEARCH_STEPS):
        active = lo < hi
        mid = (lo + hi) // 2
        right = tl.load(chunk_end_ptr + tl.minimum(mid, K - 1)) <= p
        lo = tl.where(active & right, mid + 1, lo)
        hi = tl.where(active & ~right, mid, hi)
    k = lo
    if k < K:
        first_chunk = tl.where(k > 0, tl.load(chunk_end_ptr + tl.maximum(k - 1, 0)), 0)
        r0 = (p - first_chunk).to(tl.int64) * SEG_ROWS
        n = tl.minimum(tl.load(count_ptr + k) - r0, SEG_ROWS)
        base = tl.load(start_ptr + k) + r0
        cols = tl.arange(0, DP)
        cmask = cols < D
        acc = tl.zeros((SEG_BLOCK, DP), tl.float64)
        for s in range(0, n, SEG_BLOCK):
            r = s + tl.arange(0, SEG_BLOCK)
            rm = r < n
            idx = tl.load(order_ptr + base + r, mask=rm, other=0)
            v = tl.load(x_ptr + idx[:, None] * D + cols[None, :], mask=rm[:, None] & cmask[None, :], other=0.0)
            v = v.to(tl.float64)
            if WEIGHTED:
                wv = tl.load(w_ptr + idx, mask=rm, other=0.0)
                v = tl.where(cols[None, :] == D, wv[:, None], v * wv[:, None])
            acc += v
        tl.store(part_ptr + p.to(tl.int64) * DP + cols, tl.sum(acc, axis=0))


@triton.jit
def _segment_finalize_kernel(
    part_ptr,  # [P, DP] float64
    chunk_end_ptr,  # [K] int64
    sums_ptr,  # [K, DP] float64 out
    DP: tl.constexpr,
):
    k = tl.program_id(0)
    c0 = tl.where(k > 0, tl.load(chunk_end_ptr + tl.maximum(k - 1, 0)), 0)
    c1 = tl.load(chunk_end_ptr + k)
    cols = tl.arange(0, DP)
    acc = tl.zeros((DP,), tl.float64)
    for c in range(c0, c1):
        acc += tl.load(part_ptr + c * DP + cols)
    tl.store(sums_ptr + k.to(tl.int64) * DP + cols, acc)


def segment_sums(
    x: torch.Tensor,  # [N, d] float32
    labels: torch.Tensor,  # [N] int64 in [0, K)
    K: int,
    w: torch.Tensor | None = None,  # [N] float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:  # sums [K, d], counts [K], totals [K] | None
    """Deterministic float64 per-cluster sums (weighted by w), member counts and weight totals.

    No floating-point atomics (a fixed order of additions: the same bits on every run) and no
    host synchronization (the grid is sized from N and K alone).
    """
    N, d = x.shape
    assert labels.shape == (N,), labels.shape
    x = x.contiguous()
    counts = torch.zeros(K, dtype=torch.int64, device=x.device).scatter_add_(0, labels, torch.ones_like(labels))
    order = torch.sort(labels, stable=True).indices  # [N]
    ends = torch.cumsum(counts, 0)
    starts = ends - counts
    chunk_end = torch.cumsum((counts + SEG_ROWS - 1) // SEG_ROWS, 0)  # [K]
    n_prog = triton.cdiv(N, SEG_ROWS) + K  # at least the number of chunks
    weighted = w is not None
    dp = triton.next_power_of_2(d + 1 if weighted else d)
    part = torch.empty(n_prog, dp, dtype=torch.float64, device=x.device)
    wv = w.contiguous() if w is not None else part
    _segment_sum_kernel[(n_prog,)](
        x,
        wv,
        order,
        starts,
        counts,
        chunk_end,
        part,
        K,
        D=d,
        DP=dp,
        WEIGHTED=weighted,
        SEG_ROWS=SEG_ROWS,
        SEG_BLOCK=SEG_BLOCK,
        SEARCH_STEPS=K.bit_length() + 1,
        num_warps=4,
    )
    out = torch.empty(K, dp, dtype=torch.float64, device=x.device)
    _segment_finalize_kernel[(K,)](part, chunk_end, out, DP=dp, num_warps=1)
    return out[:, :d], counts, (out[:, d].contiguous() if weighted else None)


# -- distances to the own centroid ---------------------------------------------------------------
@triton.jit
def _point_dist_kernel(
    x_ptr,  # [N, D] float32
    c_ptr,  # [K, D] float32
    labels_ptr,  # [N] int64
    out_ptr,  # [N] float64 out
    N,
    D: tl.constexpr,
    DP: tl.constexpr,
    BLOCK: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    rm = rows < N
    rows64 = rows.to(tl.int64)
    cols = tl.arange(0, DP)
    m = rm[:, None] & (cols < D)[None, :]
    lab = tl.load(labels_ptr + rows64, mask=rm, other=0)
    xv = tl.load(x_ptr + rows64[:, None] * D + cols[None, :], mask=m, other=0.0).to(tl.float64)
    cv = tl.load(c_ptr + lab[:, None] * D + cols[None, :], mask=m, other=0.0).to(tl.float64)
    diff = xv - cv
    tl.store(out_ptr + rows64, tl.sum(diff * diff, axis=1), mask=rm)


def point_distances(
    x: torch.Tensor,  # [N, d] float32
    centroids: torch.Tensor,  # [K, d] float32
    labels: torch.Tensor,  # [N] int64
) -> torch.Tensor:  # [N] float64
    """Float64 squared distance of every point to its own centroid, in one pass."""
    N, d = x.shape
    out = torch.empty(N, dtype=torch.float64, device=x.device)
    if N == 0:
        return out
    dp = triton.next_power_of_2(d)
    block = max(16, min(256, 4096 // dp))
    _point_dist_kernel[(triton.cdiv(N, block),)](
        x.contiguous(), centroids.contiguous(), labels.contiguous(), out, N, D=d, DP=dp, BLOCK=block, num_warps=4
    )
    return out
