"""k-means on CUDA: the fused Triton assignment against the torch path and a float64 brute force,
and CUDA k-means against CPU k-means for the same seed."""

from __future__ import annotations

import pytest
import torch
from vqpress_server.core.vq.kmeans import _assign_gemm, assign, kmeans

pytestmark = pytest.mark.gpu


def _check_same_up_to_ties(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor, c: torch.Tensor) -> None:
    diff = (a != b).nonzero().squeeze(1)
    if len(diff):
        da = (x[diff].double() - c[a[diff]].double()).square().sum(1)
        db = (x[diff].double() - c[b[diff]].double()).square().sum(1)
        assert torch.equal(da, db), f"{len(diff)} labels differ without an exact tie"


@pytest.mark.parametrize("d", range(1, 9))
@pytest.mark.parametrize("K", [1, 7, 32, 100, 1000])
def test_triton_assign_matches_torch_and_float64(d: int, K: int) -> None:
    from vqpress_server.core.vq.triton_assign import assign_triton

    g = torch.Generator().manual_seed(100 * d + K)
    x = (torch.randn(50_000, d, generator=g) * 3 + 10).cuda()
    c = (torch.randn(K, d, generator=g) * 3 + 10).cuda()
    if K > 2:
        c[K - 1] = c[0]  # an exact duplicate: its points go to index 0
    labels = assign(x, c)  # Triton on CUDA for d <= 8
    torch_labels = _assign_gemm(x, c)
    _check_same_up_to_ties(labels, torch_labels, x, c)
    ref = torch.cdist(x.double(), c.double(), compute_mode="donot_use_mm_for_euclid_dist").argmin(1)
    _check_same_up_to_ties(labels, ref, x, c)
    if K > 2:
        assert (labels != K - 1).all()
    # The raw kernel (before the float64 decisions) already agrees wherever it did not flag a row.
    raw, amb = assign_triton(x, c)
    _check_same_up_to_ties(raw[~amb], ref[~amb], x[~amb], c)
    # Few rows need the float64 decision, besides those of the duplicated centroid.
    if K > 1:  # with one centroid every row is index 0 and nothing is left to measure
        assert amb[ref != 0].float().mean() < 0.01


@pytest.mark.parametrize(("d", "k"), [(3, 64), (4, 256), (45, 128)])
def test_cuda_kmeans_agrees_with_cpu(d: int, k: int) -> None:
    x = torch.randn(40_000, d, generator=torch.Generator().manual_seed(d))
    cpu = kmeans(x, k, iters=8, seed=4)
    gpu = kmeans(x.cuda(), k, iters=8, seed=4)
    assert gpu.centroids.device.type == "cuda" and gpu.labels.device.type == "cuda"
    assert gpu.inertia == pytest.approx(cpu.inertia, rel=1e-4)


def test_cuda_kmeans_ignores_tf32() -> None:
    old = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    try:
        g = torch.Generator().manual_seed(9)
        x = torch.randn(100_000, 45, generator=g).cuda()
        c = torch.randn(512, 45, generator=g).cuda()
        ref = torch.cdist(x.double(), c.double(), compute_mode="donot_use_mm_for_euclid_dist").argmin(1)
        _check_same_up_to_ties(assign(x, c), ref, x, c)
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    finally:
        torch.backends.cuda.matmul.fp32_precision = old
