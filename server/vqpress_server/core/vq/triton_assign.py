"""Fused exact nearest-centroid assignment for small d (<= 8) on CUDA, in Triton.

Each program takes BLOCK_N points and walks over the centroids BLOCK_K at a time. Distances are
sum_j (x_j - c_j)^2 in fp32 FMAs (no tl.dot, so no TF32), and the N x K distance matrix is never
written: every (point, lane) keeps its running best value, best index and second-best value in
registers across centroid blocks, reduced once at the end. A point whose best and second-best
distances are closer than the fp32 error bound is flagged ambiguous; the caller re-decides those
exactly (kmeans._assign_gemm). Import this module only when CUDA is available.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_D = 8
U32 = 2.0**-24  # unit roundoff of float32

BLOCK_N = 128  # points per program
BLOCK_K = 32  # centroids per inner step (lanes of the running minimum)
NUM_WARPS = 4


@triton.jit
def _assign_kernel(
    x_ptr,  # [N, D] float32, row-major
    ct_ptr,  # [D, K] float32, centroids transposed
    labels_ptr,  # [N] int64 out
    amb_ptr,  # [N] int8 out: 1 where best and second best are within the error bound
    N,
    K,
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
    grid = (triton.cdiv(N, BLOCK_N),)
    _assign_kernel[grid](x, ct, labels, amb, N, K, tol, D=d, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, num_warps=NUM_WARPS)
    return labels, amb.bool()
