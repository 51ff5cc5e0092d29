"""Exact k-means (Lloyd) for vector quantization, on the device of its input.

Assignment is exact: every point gets the centroid at the smallest Euclidean distance, as a
float64 brute force would choose it, the lowest index winning an exact tie. Two fast paths find
the nearest centroid in fp32, and the rare points whose best and second-best distances are closer
than the fp32 error bound are re-decided in float64 among their candidates:

- small d (<= 8) on CUDA: a fused Triton kernel (``triton_assign``) of direct fp32 distances that
  never writes the N x K distance matrix;
- 8 < d <= 64 on CUDA: a fused Triton kernel on tensor cores (3xTF32 products, fp32-equivalent,
  with a rigorous error bound; ``triton_assign.assign_dot``) that keeps each row's best two
  distances in registers and never writes the N x K matrix either;
- small d (<= 8) on the CPU: points and centroids sorted along a Z-order curve into boxes of 32
  points and 8 centroids, each block of points compared only with the groups of centroids that
  the boxes and an upper bound leave possible, by small GEMMs on coordinates centered at the
  block (no N x K matrix, typically 3-6 % of the pairs);
- otherwise (and as the twin of the CUDA kernels, which hand it their ambiguous rows): chunked
  ``||c||^2 - 2 x c^T`` GEMMs in full fp32 (TF32 is switched off around them whatever the global
  matmul precision is), on data centered and scaled by a power of two.

Exact copies of a centroid are left out of the comparison (their points go to the first copy),
and k-means clusters the distinct rows of x weighted by their multiplicity, so repeated values
cost nothing extra.

Centroid updates accumulate in float64: on CUDA by a Triton kernel over the points sorted by label
(fixed order, no atomics: deterministic), on the CPU with ``index_add_``; clusters left empty are
re-seeded at the points farthest from their centroid. Initialization is k-means++ style D^2
sampling on a random subset, drawing several centroids per round so that large K stays cheap. All
random draws come from a CPU generator seeded by ``seed``, so CPU and CUDA start from the same
centroids.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..budgets import MAX_CODEBOOK  # k ≤ 2^23: k-means++ samples 2k candidates from at most 2^24 points
from ..cpu_threads import intra_op_threads
from ..errors import ConfigError, VqpressInputError
from ..progress import Progress

U32 = 2.0**-24  # unit roundoff of float32
MAX_ABS = 1e30  # inputs beyond this magnitude are rejected (their squares leave fp32 range)
_CPU_BUDGET_BYTES = 256 << 20  # scratch memory per assignment chunk on CPU
_CPU_SEED_CHUNK_BYTES = 4 << 20  # seeding distances per GEMM chunk on CPU
_NUMPY_BEST_TWO_MAX_THREADS = 4  # _best_two through numpy up to this many intra-op threads
_CPU_GEMM_CHUNK_BYTES = 8 << 20  # distances per GEMM chunk on CPU (lego sh: 0.51 s at 8 MiB, 0.93 s at 32)
_CUDA_BUDGET_FRACTION = 0.25  # of free device memory, per assignment chunk
_CUDA_BUDGET_MAX = 2 << 30  # cap per chunk on CUDA (bytes)
_INIT_SUBSET_MIN = 65536  # k-means++ runs on at most max(this, 8 K) points
_INIT_SUBSET_MAX = 1 << 24  # torch.multinomial's category limit
_INIT_ROUNDS = 64  # D^2-sampling rounds for large K (a round draws ceil(K / rounds) centroids)
_PRUNE_MAX_D = 8  # CPU assignment by pruned direct distances up to this d (GEMMs above)
_PRUNE_BLOCK = 32  # points per block of the pruned assignment
_PRUNE_GROUP = 8  # centroids per group (box) of the pruned assignment
_PRUNE_PROBES = 2  # groups nearest a block's center whose centroids bound its members' best distances
_PRUNE_CHUNK_BYTES = 2 << 20  # distance block of the pruned assignment: stays in a core's cache
_PRUNE_SLACK = 1e-5  # relative allowance on the fp32 box lower bounds (their error is < 1e-6)
_PRUNE_FLOOR = 1e-30  # absolute window for underflowed squared differences


@dataclass
class KMeansResult:
    centroids: torch.Tensor  # [K', d] float32, K' = min(k, N)
    labels: torch.Tensor  # [N] int64
    inertia: float  # sum of squared distances of the points to their centroid (float64 sum)
    inertia_history: list[float] = field(default_factory=list)  # inertia before each update


# Intra-op threads for the assignment GEMMs while k-means runs its other work on one thread (None:
# the current setting). Set by _cpu_one_thread.
_GEMM_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar("_GEMM_THREADS", default=None)


@contextlib.contextmanager
def _cpu_one_thread(device: torch.device) -> Iterator[None]:
    """On the CPU, run k-means on one thread except its assignment GEMMs.

    Lloyd on the CPU is a long series of passes over arrays of ~10^5 elements; on two threads each
    pass waits for the second thread to be scheduled, which on a loaded machine costs ~20 ms a pass
    (measured: a log of 60k doubles 22 ms on two threads, 0.5 ms on one, at load 7-11 on 2 cores),
    more than the work. The large GEMMs keep the caller's threads: their results decide no label
    (the near-tie rule re-decides in float64), while every value that reaches a centroid (seeding
    distances, sums) is computed on one thread, so the result no longer depends on the thread count.
    """
    if device.type != "cpu":
        yield
        return
    token = _GEMM_THREADS.set(torch.get_num_threads())
    try:
        with intra_op_threads(1):
            yield
    finally:
        _GEMM_THREADS.reset(token)


@contextlib.contextmanager
def full_fp32_matmul() -> Iterator[None]:
    """Run fp32 matmuls in IEEE fp32 (no TF32, no bf16 splitting) inside, restore the setting after."""
    backends = [torch.backends.cuda.matmul, torch.backends.mkldnn.matmul]
    old = [b.fp32_precision for b in backends]
    try:
        for b in backends:
            b.fp32_precision = "ieee"
        yield
    finally:
        for b, o in zip(backends, old, strict=True):
            b.fp32_precision = o


# -- duplicates -------------------------------------------------------------------------------------
def _unique_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of x in order of first occurrence.

    Returns (first [U] int64: the index in x of each distinct row's first occurrence, ascending;
    inverse [N] int64: the distinct row of each row of x). Rows are compared by their bits, so
    0.0 and -0.0 count as different rows (harmless: they are equally far from everything).
    """
    N, d = x.shape
    bits = x.contiguous().view(torch.int32).to(torch.int64)  # [N, d]
    # A 64-bit multiplicative hash per row (wrapping arithmetic); collisions are checked below.
    mult = torch.arange(d, dtype=torch.int64, device=x.device) * 0x9E3779B97F4A7C15 % (1 << 62) | 1
    h = (bits * mult).sum(1) + (bits.roll(1, 1) * (mult * 3 | 1)).sum(1)  # [N]
    _, inv = torch.unique(h, return_inverse=True)
    first = torch.full((int(inv.max()) + 1,), N, dtype=torch.int64, device=x.device)
    first.scatter_reduce_(0, inv, torch.arange(N, device=x.device), reduce="amin")
    if not bool((x == x[first[inv]]).all()):  # a hash collision: fall back to comparing rows
        _, inv = torch.unique(x, dim=0, return_inverse=True)
        first = torch.full((int(inv.max()) + 1,), N, dtype=torch.int64, device=x.device)
        first.scatter_reduce_(0, inv, torch.arange(N, device=x.device), reduce="amin")
    first, perm = torch.sort(first)
    rank = torch.empty_like(perm)
    rank[perm] = torch.arange(len(perm), device=x.device)
    return first, rank[inv]


def _first_of_duplicates(c: torch.Tensor) -> torch.Tensor | None:
    """Indices [U] of the distinct centroids (first occurrences, ascending), or None if all differ."""
    if c.shape[0] < 2:
        return None
    first, _ = _unique_rows(c)
    return None if len(first) == c.shape[0] else first


# -- validation ----------------------------------------------------------------------------------
def _check_points(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise VqpressInputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise VqpressInputError(f"{name} must have shape [N, d], got {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise VqpressInputError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.shape[1] == 0:
        raise VqpressInputError(f"{name} has d = 0 dimensions: there is nothing to cluster")
    x = x.detach().to(torch.float32).contiguous()
    if x.numel() > 0:
        if not bool(torch.isfinite(x).all()):
            raise VqpressInputError(f"{name} contains NaN or inf; repair or drop those rows first")
        if float(x.abs().max()) > MAX_ABS:
            raise VqpressInputError(f"{name} has values beyond ±{MAX_ABS:g}; rescale the data first")
    return x


def _check_weights(w: object, n: int, device: torch.device) -> torch.Tensor:
    """Per-point weights as float64 [N] on x's device; finite, non-negative, not all zero."""
    if not isinstance(w, torch.Tensor):
        raise VqpressInputError(f"weights must be a torch.Tensor, got {type(w).__name__}")
    if w.shape != (n,):
        raise VqpressInputError(f"weights must have shape [N] = [{n}] (one per point), got {tuple(w.shape)}")
    if w.dtype == torch.bool or w.is_complex():
        raise VqpressInputError(f"weights must be real numbers, got {w.dtype}")
    w = w.detach().to(device=device, dtype=torch.float64).contiguous()
    if not bool(torch.isfinite(w).all()):
        raise VqpressInputError("weights contain NaN or inf; every weight must be a finite number >= 0")
    if bool((w < 0).any()):
        raise VqpressInputError(f"weights must be >= 0, got a minimum of {float(w.min()):g}")
    if not bool((w > 0).any()):
        raise VqpressInputError("weights are all zero: at least one point needs a positive weight")
    return w


def _check_init(init: object, d: int, device: torch.device) -> torch.Tensor:
    c = _check_points(init, "init")  # type: ignore[arg-type]
    if c.shape[0] == 0:
        raise VqpressInputError("init has no rows: give at least one initial centroid")
    if c.shape[1] != d:
        raise VqpressInputError(f"x has d = {d} but init has d = {c.shape[1]}")
    return c.to(device).clone()


# -- assignment ------------------------------------------------------------------------------------
def _chunk_rows(per_row_bytes: int, device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = min(int(free * _CUDA_BUDGET_FRACTION), _CUDA_BUDGET_MAX)
    else:
        budget = _CPU_BUDGET_BYTES
    return max(1, budget // max(per_row_bytes, 1))


def _pow2_scale(m: float) -> float:
    """A power of two that brings a magnitude m near 1 (exact to apply in fp32)."""
    return 1.0 if m == 0.0 else 2.0 ** (-math.frexp(m)[1])


def _refine_pairs(
    x: torch.Tensor,  # [N, d] float32
    centroids: torch.Tensor,  # [K, d] float32
    rows: torch.Tensor,  # [P] int64, row into x of each candidate pair
    cols: torch.Tensor,  # [P] int64, centroid of each candidate pair
    n_rows: int,
) -> torch.Tensor:
    """For each row, the candidate at the smallest float64 distance (lowest index on ties)."""
    dist = (x[rows].double() - centroids[cols].double()).square().sum(1)  # [P]
    best = torch.full((n_rows,), math.inf, dtype=torch.float64, device=x.device)
    best.scatter_reduce_(0, rows, dist, reduce="amin")
    at_best = dist == best[rows]
    big = torch.full((n_rows,), centroids.shape[0], dtype=torch.int64, device=x.device)
    big.scatter_reduce_(0, rows[at_best], cols[at_best], reduce="amin")
    return big


def _best_two(D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's smallest entry, its index (the first on ties) and its second-smallest entry (the
    smallest of the others), for a contiguous float32 matrix [B, M]; D is as it was afterwards.

    On the CPU with few intra-op threads through numpy, whose SIMD argmin is about 7x torch's
    ``min(1)`` with indices on one thread (0.31 against 2.1 ms for 512 x 4096): the row minimum with
    its index was 70 % of the GEMM's time. numpy's pass is one thread and torch's scales with its
    threads (the whole step for 512 x 4096: numpy 0.45 ms; torch 2.39 ms on one thread, 1.21 on two),
    so with more than _NUMPY_BEST_TWO_MAX_THREADS threads torch's is used. The same entries either
    way: both take the first minimum.
    """
    if D.device.type != "cpu" or torch.get_num_threads() > _NUMPY_BEST_TWO_MAX_THREADS:
        min1, a1 = D.min(1)
        D.scatter_(1, a1[:, None], math.inf)
        min2 = D.amin(1)
        D.scatter_(1, a1[:, None], min1[:, None])
        return min1, a1, min2
    Dn = D.numpy()
    a1 = Dn.argmin(1)
    r = np.arange(Dn.shape[0])
    min1 = Dn[r, a1]
    Dn[r, a1] = np.inf
    min2 = Dn.min(1)
    Dn[r, a1] = min1
    return torch.from_numpy(min1), torch.from_numpy(a1.astype(np.int64, copy=False)), torch.from_numpy(min2)


def _assign_gemm(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Exact nearest centroid via chunked fp32 GEMMs plus a float64 decision on near-ties."""
    N, d = x.shape
    K = centroids.shape[0]
    labels = torch.empty(N, dtype=torch.int64, device=x.device)
    if K == 1:
        return labels.fill_(0)
    on_cpu = x.device.type == "cpu"
    mu = x.double().mean(0).float()  # [d]
    cc = centroids - mu
    s = _pow2_scale(max(float(cc.abs().max()), float(x.abs().max() + mu.abs().max())))
    cc = cc * s
    cn = cc.square().sum(1)  # [K]
    cmax = float(cn.max())
    # Error bound of the expanded fp32 distance, doubled for the candidate window.
    tol = 4.0 * (2 * d + 12) * U32
    floor = 1e-30
    if on_cpu:
        # One GEMM per chunk that also adds ||c||^2: [x, 1] . [-2 c, ||c||^2] (-2 c is exact).
        # addmm's broadcast of ||c||^2 into its output was a third of its time; the error of the
        # (d + 1)-term products stays inside tol (derived for the GEMM plus a separate addition).
        c_aug = torch.cat([cc * -2.0, cn[:, None]], 1)  # [K, d + 1]
        rows_per_chunk = max(1, min(_chunk_rows(3 * K * 4 + 8 * d, x.device), _CPU_GEMM_CHUNK_BYTES // (4 * K)))
    else:
        rows_per_chunk = _chunk_rows(3 * K * 4 + 8 * d, x.device)
    # One distance buffer for all chunks: a fresh [B, K] array per chunk doubled the GEMM's time on
    # the CPU (page faults on first touch).
    D_buf: torch.Tensor | None = None
    gemm_threads = (_GEMM_THREADS.get() or torch.get_num_threads()) if on_cpu else 1
    with full_fp32_matmul():
        for s0 in range(0, N, rows_per_chunk):
            xc = (x[s0 : s0 + rows_per_chunk] - mu) * s  # [B, d]
            if D_buf is None or D_buf.shape[0] < len(xc):
                D_buf = torch.empty(len(xc), K, dtype=torch.float32, device=x.device)
            out = D_buf[: len(xc)]
            # The best two: the second decides whether the first is certain. The best entry is
            # found, masked and the minimum taken again (_best_two): on the CPU that beat topk(2)
            # 2x (lego sh, K = 4096, one thread); on CUDA topk is ~10x slower than two row minima
            # (H100, K = 512..4096).
            with intra_op_threads(gemm_threads):
                if on_cpu:
                    xa = torch.cat([xc, torch.ones(len(xc), 1)], 1)  # [B, d + 1]
                    D = torch.mm(xa, c_aug.T, out=out)  # [B, K]
                else:
                    D = torch.addmm(cn, xc, cc.T, beta=1.0, alpha=-2.0, out=out)  # [B, K]
                min1, a1, min2 = _best_two(D)
            margin = tol * (xc.square().sum(1) + cmax) + floor  # [B]
            amb = (min2 - min1) <= margin
            if bool(amb.any()):
                ridx = amb.nonzero().squeeze(1)
                sub = D[ridx]  # [M, K]
                r, c = (sub <= (min1[ridx] + margin[ridx])[:, None]).nonzero(as_tuple=True)
                a1[ridx] = _refine_pairs(x[s0 : s0 + rows_per_chunk][ridx], centroids, r, c, len(ridx))
            labels[s0 : s0 + rows_per_chunk] = a1
    return labels


def _morton_order(x: torch.Tensor) -> torch.Tensor:
    """Permutation [N] that sorts the rows of x [N, d] (d <= 8) along a Z-order curve."""
    N, d = x.shape
    bits = min(10, 62 // d)
    lo, hi = x.amin(0), x.amax(0)
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    q = ((x - lo) / span * ((1 << bits) - 1)).round_().to(torch.int64)  # [N, d]
    # spread[v]: the bits of v moved to every d-th position, so dimensions interleave by shifts
    v = torch.arange(1 << bits, dtype=torch.int64, device=x.device)
    spread = torch.zeros_like(v)
    for b in range(bits):
        spread |= ((v >> b) & 1) << (b * d)
    code = spread[q[:, 0]]
    for j in range(1, d):
        code |= spread[q[:, j]] << j
    return torch.argsort(code)


def _assign_pruned(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Exact nearest centroid for small d on the CPU, looking only at centroids that can win.

    Points and centroids are both sorted along a Z-order curve and cut into boxes: blocks of
    _PRUNE_BLOCK points, groups of _PRUNE_GROUP centroids. For a block, the centroids of the
    _PRUNE_PROBES groups nearest its center give every member an upper bound on its best distance;
    a group whose box is farther from the block's box than the block's largest upper bound (a lower
    bound for every member and centroid; both bounds fp32 with a relative allowance far above their
    rounding error) can hold neither the nearest centroid nor a near-tie, so only the other groups
    are compared. Their distances are fp32 GEMMs on coordinates centered at the block (so the
    expanded ``||c||^2 - 2 x c`` form loses only the digits of the local scale), with the error bound
    and float64 near-tie decision of _assign_gemm. Same labels as a float64 brute force.

    Measured on lego_7k's attributes (one thread, k-means++ centroids): 4-5x faster than comparing
    each block with every centroid's box (scale, K = 16384: 0.27 s against 1.35-1.48 s).
    """
    N, d = x.shape
    K = centroids.shape[0]
    B, Bc = _PRUNE_BLOCK, _PRUNE_GROUP
    perm = _morton_order(x)
    G = -(-N // B)
    xp = x[perm]
    if G * B > N:  # pad the last block with copies of the last point
        xp = torch.cat([xp, xp[-1:].expand(G * B - N, d)])
    xb = xp.view(G, B, d)
    cperm = _morton_order(centroids)
    Gc = -(-K // Bc)
    group_ids = torch.full((Gc * Bc,), -1, dtype=torch.int64)  # -1: a padding slot of the last group
    group_ids[:K] = cperm
    group_ids = group_ids.view(Gc, Bc)
    cs = centroids[cperm]
    if Gc * Bc > K:  # padding copies of the last centroid leave the last box as it is
        cs = torch.cat([cs, cs[-1:].expand(Gc * Bc - K, d)])
    cg = cs.view(Gc, Bc, d)
    lo, hi = xb.amin(1), xb.amax(1)  # [G, d]
    clo, chi = cg.amin(1), cg.amax(1)  # [Gc, d]
    center, gcenter = (lo + hi) * 0.5, (clo + chi) * 0.5

    # Lower bound of the squared distance between each block's box and each group's box, and the
    # squared distance between their centers (which picks the probes): [G, Gc].
    lb = torch.zeros(G, Gc)
    cd = torch.zeros(G, Gc)
    t1, t2 = torch.empty_like(lb), torch.empty_like(lb)
    for j in range(d):
        below = torch.sub(clo[None, :, j], hi[:, j, None], out=t1)
        above = torch.sub(lo[:, j, None], chi[None, :, j], out=t2)
        gap = torch.maximum(below, above, out=t1).clamp_min_(0)
        lb.addcmul_(gap, gap)
        diff = torch.sub(center[:, j, None], gcenter[None, :, j], out=t2)
        cd.addcmul_(diff, diff)
    # Upper bound of every member's best distance: the largest over the block of each member's
    # nearest among the probe groups' centroids (direct fp32 differences, (d + 2) u relative error).
    near = torch.topk(cd, min(_PRUNE_PROBES, Gc), dim=1, largest=False, sorted=False).indices  # [G, p]
    probe_ids = group_ids[near].reshape(G, -1)  # [G, p * Bc]
    probes_t = centroids.T[:, probe_ids.clamp_min(0)]  # [d, G, p * Bc]
    dp = torch.sub(xb[:, :, None, 0], probes_t[0][:, None, :]).square_()  # [G, B, p * Bc]
    for j in range(1, d):
        diff = torch.sub(xb[:, :, None, j], probes_t[j][:, None, :])
        dp.addcmul_(diff, diff)
    dp.masked_fill_((probe_ids < 0)[:, None, :], math.inf)
    ub = dp.amin(2).amax(1)  # [G]
    cand = lb <= (ub * (1 + 2 * _PRUNE_SLACK))[:, None]  # [G, Gc]; the probes are always candidates
    counts = cand.sum(1)  # [G], >= 1

    tol = 4.0 * (2 * d + 12) * U32  # _assign_gemm's error bound of the expanded fp32 distance, doubled
    labels_sorted = torch.empty(G, B, dtype=torch.int64)
    # Blocks in buckets of similar candidate counts (powers of two), each padded to its largest.
    bucket = torch.ceil(torch.log2(counts.double())).to(torch.int64)
    with full_fp32_matmul():
        for bval in torch.unique(bucket).tolist():
            gsel = (bucket == bval).nonzero().squeeze(1)  # [Gb]
            P = int(counts[gsel].max())
            step = max(1, _PRUNE_CHUNK_BYTES // (B * P * Bc * 4))
            for s0 in range(0, len(gsel), step):
                gs = gsel[s0 : s0 + step]
                r, cols = cand[gs].nonzero(as_tuple=True)  # row-major: ascending group per block
                starts = torch.cumsum(counts[gs], 0) - counts[gs]
                gidx = torch.full((len(gs), P), -1, dtype=torch.int64)  # [Gb, P] candidate groups
                gidx[r, torch.arange(len(r)) - starts[r]] = cols
                idx = group_ids[gidx.clamp_min(0)].masked_fill_((gidx < 0)[:, :, None], -1).view(len(gs), P * Bc)
                mu = center[gs][:, None, :]  # [Gb, 1, d]
                xg = xb[gs] - mu  # [Gb, B, d]
                cb = centroids[idx.clamp_min(0)] - mu  # [Gb, P * Bc, d]
                pad = idx < 0  # [Gb, P * Bc]
                cn = cb.square().sum(2).masked_fill_(pad, 0.0)  # [Gb, P * Bc]
                cmax = cn.amax(1)  # [Gb]
                cn.masked_fill_(pad, math.inf)  # padding slots are never nearest
                D = torch.baddbmm(cn[:, None, :], xg, cb.transpose(1, 2), beta=1.0, alpha=-2.0)  # [Gb, B, P * Bc]
                min1, pos1, min2 = (t.view(len(gs), B) for t in _best_two(D.view(len(gs) * B, -1)))
                a1 = torch.gather(idx, 1, pos1)  # [Gb, B]
                margin = tol * (xg.square().sum(2) + cmax[:, None]) + _PRUNE_FLOOR  # [Gb, B]
                amb = (min2 - min1) <= margin
                if bool(amb.any()):
                    bi, pi = amb.nonzero(as_tuple=True)
                    thr = min1[bi, pi] + margin[bi, pi]
                    m, cpos = (D[bi, pi] <= thr[:, None]).nonzero(as_tuple=True)
                    rows = perm[(gs[bi] * B + pi).clamp_max(N - 1)]  # padded rows copy the last point
                    a1[bi, pi] = _refine_pairs(x[rows], centroids, m, idx[bi[m], cpos], len(bi))
                labels_sorted[gs] = a1
    labels = torch.empty(N, dtype=torch.int64)
    labels[perm] = labels_sorted.view(-1)[:N]
    return labels


def _use_pruned(x: torch.Tensor, centroids: torch.Tensor) -> bool:
    if x.device.type != "cpu" or x.shape[1] > _PRUNE_MAX_D or centroids.shape[0] < 64 or x.shape[0] < 8 * _PRUNE_BLOCK:
        return False
    m = max(float(x.abs().max()), float(centroids.abs().max()))
    return m <= 2.0**60  # squares of differences stay in fp32 range


_TRITON_MAX_D = 8  # direct-distance Triton kernel up to this d on CUDA
_TRITON_DOT_MAX_D = 64  # tensor-core Triton kernel above _TRITON_MAX_D up to this d on CUDA


def _use_triton(x: torch.Tensor) -> bool:
    return x.device.type == "cuda" and x.shape[1] <= _TRITON_MAX_D


def _use_triton_dot(x: torch.Tensor) -> bool:
    return x.device.type == "cuda" and _TRITON_MAX_D < x.shape[1] <= _TRITON_DOT_MAX_D


def _assign_exact(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    # Exactly equal centroids tie for every point, and their points all go to the lowest index:
    # assign against the distinct ones only, so a duplicated centroid costs no near-tie decisions.
    keep = _first_of_duplicates(centroids)
    if keep is not None:
        labels = _assign_distinct(x, centroids[keep])
        return keep[labels]
    return _assign_distinct(x, centroids)


def _assign_distinct(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    if _use_triton(x):
        from .triton_assign import assign_triton

        s = _pow2_scale(float(x.abs().max())) if x.numel() else 1.0
        labels, amb = assign_triton(x, centroids, s)
        return _redecide(x, centroids, labels, amb)
    if _use_triton_dot(x):
        from .triton_assign import assign_dot

        labels, amb = assign_dot(x, centroids)
        return _redecide(x, centroids, labels, amb)
    if _use_pruned(x, centroids):
        return _assign_pruned(x, centroids)
    return _assign_gemm(x, centroids)


def _redecide(x: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor, amb: torch.Tensor) -> torch.Tensor:
    """Labels [N] with the rows flagged ambiguous [N] bool decided again by the exact GEMM path."""
    ridx = amb.nonzero().squeeze(1)
    if len(ridx):
        labels[ridx] = _assign_gemm(x[ridx], centroids)
    return labels


def assign(
    x: torch.Tensor,  # [N, d]
    centroids: torch.Tensor,  # [K, d]
) -> torch.Tensor:  # [N] int64
    """Index of the nearest centroid (Euclidean) of every point, exactly; lowest index on exact ties.

    Uses the fused Triton kernels on CUDA for d <= 64 and chunked fp32 GEMMs otherwise; all
    re-decide near-ties in float64, so the labels equal a float64 brute force.
    """
    x = _check_points(x, "x")
    c = _check_points(centroids, "centroids")
    if c.shape[0] == 0:
        raise VqpressInputError("centroids is empty: need at least one centroid")
    if c.shape[1] != x.shape[1]:
        raise VqpressInputError(f"x has d = {x.shape[1]} but centroids have d = {c.shape[1]}")
    if x.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=x.device)
    with _cpu_one_thread(x.device):
        return _assign_exact(x, c.to(x.device))


# -- update ----------------------------------------------------------------------------------------
def _sums_counts(
    x: torch.Tensor, labels: torch.Tensor, K: int, w: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster float64 sums [K, d] and counts [K] (with weights w [N]: weighted sums, weight totals).

    On CUDA a Triton kernel sums the points sorted by label, each cluster in fixed chunks added in
    a fixed order (``triton_assign.segment_sums``): no atomics, so the sums are deterministic, and
    float64 atomics under heavy contention (few clusters, many members) were what made the update
    slower than the assignment. On CPU, chunked index_add_.
    """
    d = x.shape[1]
    if x.device.type == "cuda":
        from .triton_assign import segment_sums

        sums, counts, totals = segment_sums(x, labels, K, w)
        return sums, (counts if totals is None else totals)
    counts = torch.bincount(labels, minlength=K)
    totals = counts if w is None else torch.bincount(labels, weights=w, minlength=K)
    sums = torch.zeros(K, d, dtype=torch.float64, device=x.device)
    step = _chunk_rows(16 * d, x.device)
    for s0 in range(0, x.shape[0], step):
        part = x[s0 : s0 + step].double()
        if w is not None:
            part *= w[s0 : s0 + step, None]
        sums.index_add_(0, labels[s0 : s0 + step], part)
    return sums, totals


def update_centroids(
    x: torch.Tensor,  # [N, d]
    labels: torch.Tensor,  # [N] int64
    centroids: torch.Tensor,  # [K, d]
) -> torch.Tensor:  # [K, d] float32
    """Mean of each cluster's members; a cluster without members keeps its value (for QAT steps)."""
    N, d = x.shape
    K = centroids.shape[0]
    assert labels.shape == (N,), labels.shape
    assert centroids.shape == (K, d), centroids.shape
    x = x.detach().float()
    # Called on every QAT step: on CUDA the sorted segment sums need no host synchronization (on a
    # GPU shared by several trainings each such read would wait for everyone's queued work).
    sums, counts = _sums_counts(x, labels, K)
    mean = (sums / counts.clamp_min(1)[:, None].double()).float()
    return torch.where((counts > 0)[:, None], mean, centroids.detach().to(torch.float32))


def _point_distances(x: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Float64 squared distance of every point to its own centroid [N], in chunks (one kernel on CUDA)."""
    if x.device.type == "cuda":
        from .triton_assign import point_distances

        return point_distances(x, centroids, labels)
    out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    step = _chunk_rows(24 * x.shape[1], x.device)
    for s0 in range(0, x.shape[0], step):
        xs = x[s0 : s0 + step].double()
        out[s0 : s0 + step] = (xs - centroids[labels[s0 : s0 + step]].double()).square().sum(1)
    return out


def _update_reseed(
    x: torch.Tensor,
    labels: torch.Tensor,
    centroids: torch.Tensor,
    point_dist: torch.Tensor,
    w: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cluster (weighted) means; empty clusters move to the points farthest from their centroid.

    With weights, a cluster whose members all weigh 0 counts as empty, and only points of positive
    weight are candidates for re-seeding.
    """
    K = centroids.shape[0]
    sums, totals = _sums_counts(x, labels, K, w)
    out = centroids.clone()
    has = totals > 0
    out[has] = (sums[has] / totals[has, None].double()).float()
    empty = (~has).nonzero().squeeze(1)
    if len(empty):
        cand = point_dist if w is None else torch.where(w > 0, point_dist, -1.0)
        n_cand = len(cand) if w is None else int((w > 0).sum())
        empty = empty[:n_cand]  # more empty clusters than candidate points: the rest keep their value
        # Farthest first; a stable sort makes the choice among equal distances deterministic.
        order = torch.sort(cand, descending=True, stable=True).indices[: len(empty)]
        out[empty] = x[order]
    return out


# -- initialization -------------------------------------------------------------------------------
# A quantizer clusters several attributes of one scene with the same seed, and their distinct rows
# are usually as many as the scene's points, so the seeding subset (a permutation of all N points,
# O(N) on one CPU thread: ~0.1-0.16 s at N = 3M, measured) is the same each time. The prefix it
# keeps and the generator's state after it are kept for a few (seed, N, m), so later calls draw
# exactly what a fresh generator would.
_SUBSET_CACHE: OrderedDict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
_SUBSET_CACHE_SIZE = 4
_SUBSET_CACHE_MAX_ROWS = 1 << 21  # a kept prefix is at most 16 MiB (K <= 262,144); larger ones are drawn each time
_SUBSET_CACHE_LOCK = threading.Lock()


def _random_subset(N: int, m: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """``torch.randperm(N, generator=G)[:m]`` for a generator G freshly seeded with ``seed``, and G
    as it is after that draw (a new generator each call: the caller may draw from it)."""
    key = (int(seed), int(N), int(m))
    with _SUBSET_CACHE_LOCK:
        hit = _SUBSET_CACHE.get(key)
        if hit is not None:
            _SUBSET_CACHE.move_to_end(key)
    if hit is None:
        gen = torch.Generator().manual_seed(int(seed))
        hit = (torch.randperm(N, generator=gen)[:m].clone(), gen.get_state())
        if m > _SUBSET_CACHE_MAX_ROWS:
            return hit[0], gen
        with _SUBSET_CACHE_LOCK:
            _SUBSET_CACHE[key] = hit
            while len(_SUBSET_CACHE) > _SUBSET_CACHE_SIZE:
                _SUBSET_CACHE.popitem(last=False)
    gen = torch.Generator()
    gen.set_state(hit[1])
    return hit[0], gen


def _init_kmeanspp(
    x: torch.Tensor, k: int, seed: int, w: torch.Tensor | None = None, *, cache: bool = True
) -> torch.Tensor:
    """k-means++ style D^2 sampling (D^2 w with weights w [N]) on a random subset; ceil(k / 64)
    draws per round for large k. Points of weight 0 enter the subset only after all others.

    Every random number is drawn from a CPU generator seeded by ``seed``, so the seeding is the same on
    every device up to the rounding of its distances. The arithmetic on them (the D^2 keys, the
    b smallest, the bookkeeping) runs on x's device: on CUDA that is a few small kernels and one
    host read per round, where the same passes over the subset on the host took most of a 3M-point
    quantization (BENCHMARKS §2). ``cache``: the unweighted subset may come from
    ``_random_subset``'s cache (False: drawn here; the same draws either way).
    """
    dev = x.device
    N = x.shape[0]
    m = min(N, max(_INIT_SUBSET_MIN, 8 * k), _INIT_SUBSET_MAX)
    gen = torch.Generator().manual_seed(int(seed))
    if w is None:
        if m >= N:
            sub_idx = torch.arange(N)
        elif cache:
            sub_idx, gen = _random_subset(N, m, seed)
        else:
            sub_idx = torch.randperm(N, generator=gen)[:m]
        ws = None
        first = int(torch.randint(m, (1,), generator=gen))
    else:
        keys = torch.rand(N, generator=gen, dtype=torch.float64).to(dev) + (w == 0).double()
        sub_idx = torch.sort(keys, stable=True).indices[:m] if m < N else torch.arange(N, device=dev)
        ws = w[sub_idx.to(w.device)].to(dev)  # [m] float64
        first = int(torch.multinomial(ws.cpu(), 1, generator=gen))
    xs = x[sub_idx.to(dev)]  # [m, d]
    per_round = max(1, math.ceil(k / _INIT_ROUNDS))
    chosen = [torch.tensor([first], device=dev)]
    n_chosen = 1
    taken = torch.zeros(m, dtype=torch.bool, device=dev)
    taken[first] = True
    dmin = torch.full((m,), math.inf, dtype=torch.float64, device=dev)
    new = chosen[0]
    xs_n = xs.square().sum(1)  # [m]
    buf = torch.empty(0, dtype=torch.float32, device=dev)  # the GEMM's output, reused every round
    while True:
        # Distances for seeding need no exactness: one fp32 GEMM per round, clamped at zero.
        c = xs[new]  # [b, d]
        step = _chunk_rows(8 * len(new) + 8 * x.shape[1], dev)
        if dev.type == "cpu":  # rows whose distances stay in cache until their minimum is taken
            step = max(1, min(step, _CPU_SEED_CHUNK_BYTES // (4 * len(new))))
        for s0 in range(0, m, step):
            rows = min(step, m - s0)
            if buf.numel() < rows * len(new):
                buf = torch.empty(rows * len(new), dtype=torch.float32, device=dev)
            out = buf[: rows * len(new)].view(rows, len(new))
            part = torch.addmm(c.square().sum(1), xs[s0 : s0 + step], c.T, beta=1.0, alpha=-2.0, out=out).amin(1)
            # Rounding is monotone, so adding ||x||^2 and clamping after the row minimum gives the
            # same bits as doing both to every entry first, at a fraction of the memory traffic.
            part = (part + xs_n[s0 : s0 + step]).clamp_min_(0).double()
            dmin[s0 : s0 + step] = torch.minimum(dmin[s0 : s0 + step], part)
        if n_chosen >= k:
            break
        b = min(per_round, k - n_chosen)
        p = dmin.clone() if ws is None else dmin * ws
        p[taken] = 0.0
        n_pos = int((p > 0).sum())
        if n_pos >= b:
            # D^2 sampling of b distinct points without replacement in one pass
            # (Efraimidis-Spirakis keys: the b smallest of -log(u) / p).
            u = torch.rand(m, generator=gen, dtype=torch.float64).clamp_min_(1e-300).to(dev)
            keys = torch.where(p > 0, -torch.log(u) / p, torch.full_like(p, math.inf))
            new = torch.topk(keys, b, largest=False).indices
        else:  # fewer distinct points than centroids: fill with unused (duplicate) points
            pos = (p > 0).nonzero().squeeze(1)
            rest = (~taken & (p == 0)).nonzero().squeeze(1)
            rest = rest[torch.randperm(len(rest), generator=gen)[: b - n_pos].to(dev)]
            new = torch.cat([pos, rest])
        taken[new] = True
        chosen.append(new)
        n_chosen += len(new)
    return xs[torch.cat(chosen)[:k]].clone()


def _total(point_dist: torch.Tensor, w: torch.Tensor | None) -> float:
    return float(point_dist.sum() if w is None else (point_dist * w).sum())


# -- Lloyd ------------------------------------------------------------------------------------------
def kmeans(
    x: torch.Tensor,  # [N, d]
    k: int,
    iters: int = 10,
    seed: int = 0,
    *,
    weights: torch.Tensor | None = None,  # [N]
    init: torch.Tensor | None = None,  # [K, d]
    progress: Progress | None = None,
) -> KMeansResult:
    """Cluster the rows of x into min(k, N) clusters with (weighted) Lloyd's algorithm.

    x: [N, d] floating point (any device; work and results stay there; computed in float32).
    k: number of clusters (> 0); when k >= N every point becomes its own centroid, and when x has
        at most k distinct rows every distinct row becomes a centroid.
    iters: Lloyd iterations (>= 0; default 10); labels and inertia are those of a final assignment
        to the returned centroids.
    seed: seeds the k-means++ initialization; the same seed gives the same result.
    weights: optional [N] finite non-negative weight per point (not all zero). Centroids are
        weighted means, the inertia is weighted, the seeding samples D^2 * weight; points of weight
        0 still get a label. Integer weights give the result of repeating each point that often.
    init: optional [k, d] initial centroids (no seeding); k must equal its number of rows, and
        the k >= N shortcut does not apply (every row of init is a returned centroid).
    progress: called as progress("kmeans", fraction, {"inertia": ...}) after each iteration.

    Repeated rows of x cost nothing extra: k-means runs on the distinct rows, weighted by how
    often each occurs (the labels are those of the exact assignment either way).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ConfigError(f"iters must be a non-negative integer, got {iters!r}")
    if k > MAX_CODEBOOK:
        raise ConfigError(f"k = {k} is too large: at most {MAX_CODEBOOK} clusters (2^23) are supported")
    x = _check_points(x, "x")
    N, d = x.shape
    if N == 0:
        raise VqpressInputError("x has no points (N = 0): there is nothing to cluster")
    w = None if weights is None else _check_weights(weights, N, x.device)
    c0 = None if init is None else _check_init(init, d, x.device)
    if c0 is not None and c0.shape[0] != k:
        raise ConfigError(f"k = {k} but init has {c0.shape[0]} rows; pass k = init.shape[0]")
    if c0 is None and k >= N:
        labels = torch.arange(N, device=x.device)
        return KMeansResult(x.clone(), labels, 0.0, [0.0])

    with _cpu_one_thread(x.device):
        return _lloyd(x, k, iters, seed, w, c0, progress)


def _lloyd(
    x: torch.Tensor,  # [N, d] float32, checked
    k: int,
    iters: int,
    seed: int,
    w: torch.Tensor | None,  # [N] float64, checked
    c0: torch.Tensor | None,  # [k, d] float32, checked
    progress: Progress | None,
) -> KMeansResult:
    N = x.shape[0]
    first, inv = _unique_rows(x)
    U = len(first)
    if U < N:  # cluster the distinct rows, each weighted by its multiplicity (times its weights)
        wu = torch.bincount(inv, weights=w, minlength=U).double()
        xu = x[first]
    else:
        xu, wu = x, w
    if c0 is None and U <= k:
        # Every distinct row is a centroid; the rest of the k (< N) are repeated rows.
        extra = torch.ones(N, dtype=torch.bool, device=x.device)
        extra[first] = False
        extra_idx = extra.nonzero().squeeze(1)[: k - U]
        centroids = torch.cat([x[first], x[extra_idx]])
        return KMeansResult(centroids, inv, 0.0, [0.0])

    centroids = c0 if c0 is not None else _init_kmeanspp(xu, k, int(seed), wu)
    history: list[float] = []
    for it in range(iters):
        labels = _assign_exact(xu, centroids)
        point_dist = _point_distances(xu, centroids, labels)
        history.append(_total(point_dist, wu))
        centroids = _update_reseed(xu, labels, centroids, point_dist, wu)
        if progress is not None:
            progress("kmeans", (it + 1) / iters, {"inertia": history[-1]})
    labels = _assign_exact(xu, centroids)
    inertia = _total(_point_distances(xu, centroids, labels), wu)
    history.append(inertia)
    if U < N:
        labels = labels[inv]
    return KMeansResult(centroids, labels, inertia, history)
