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


def _float64_labels(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    out = torch.empty(len(x), dtype=torch.int64, device=x.device)
    step = max(1, (1 << 28) // c.shape[0])
    for s in range(0, len(x), step):
        d = torch.cdist(x[s : s + step].double(), c.double(), compute_mode="donot_use_mm_for_euclid_dist")
        out[s : s + step] = d.argmin(1)
    return out


@pytest.mark.parametrize("d", [9, 16, 45, 64])
@pytest.mark.parametrize("K", [1, 7, 100, 4097])
def test_dot_assign_matches_float64(d: int, K: int) -> None:
    """The tensor-core kernel (8 < d <= 64): ragged N and K, K = 1, near ties, duplicates."""
    from vqpress_server.core.vq.triton_assign import assign_dot

    g = torch.Generator().manual_seed(1000 * d + K)
    c = torch.randn(K, d, generator=g) * 2 + 50.0  # far from the origin: centering matters
    parts = [torch.randn(50_037, d, generator=g) * 2 + 50.0]
    if K > 1:
        i, j = torch.randint(K, (2, 3000), generator=g)
        parts.append((c[i] + c[j]) / 2)  # midpoints: near-equidistant from two centroids
        parts.append(c[: min(K, 500)])  # points on a centroid
    parts.append(parts[0][:1000])  # repeated rows
    x = torch.cat(parts).cuda()
    c = c.cuda()
    if K > 2:
        c[K - 1] = c[1]  # an exact duplicate: its points go to index 1
    labels = assign(x, c)
    ref = _float64_labels(x, c)
    _check_same_up_to_ties(labels, ref, x, c)
    _check_same_up_to_ties(labels, _assign_gemm(x, c), x, c)  # the twin
    if K > 2:
        assert (labels != K - 1).all()
    raw, amb = assign_dot(x, c)
    _check_same_up_to_ties(raw[~amb], ref[~amb], x[~amb], c)
    if K > 1:
        n0 = len(parts[0])
        assert amb[:n0][ref[:n0] != 1].float().mean() < 0.05  # few random rows need float64


def test_dot_assign_six_million_rows_exact() -> None:
    """The benchmark's shape at K = 4096 (2M rows): every label equals float64 up to exact ties."""
    g = torch.Generator(device="cuda").manual_seed(45)
    x = torch.randn(2_000_000, 45, device="cuda", generator=g)
    c = x[torch.randperm(len(x), device="cuda", generator=g)[:4096]].clone()
    labels = assign(x, c)
    sub = torch.arange(0, len(x), 10, device="cuda")
    _check_same_up_to_ties(labels[sub], _float64_labels(x[sub], c), x[sub], c)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("d", "K"), [(3, 4096), (45, 512), (45, 65536)])
def test_segment_sums_on_cuda_equal_the_float64_update(d: int, K: int, weighted: bool) -> None:
    """Sorted segment sums against float64 index_add_ on the CPU: within 1e-13 of the magnitudes,
    the same bits on every run, and cluster means within one fp32 rounding of the CPU update's."""
    from vqpress_server.core.vq import kmeans as km
    from vqpress_server.core.vq.triton_assign import segment_sums

    g = torch.Generator().manual_seed(d + K)
    n = 600_000
    x = torch.randn(n, d, generator=g) * 3 + 1
    labels = torch.randint(0, K, (n,), generator=g) % max(1, K - 5)  # some clusters stay empty
    labels[: n // 4] = 2  # one huge cluster
    w = torch.rand(n, generator=g, dtype=torch.float64) if weighted else None
    ref, ref_tot = km._sums_counts(x, labels, K, w)
    xg, lg, wg = x.cuda(), labels.cuda(), None if w is None else w.cuda()
    sums, counts, totals = segment_sums(xg, lg, K, wg)
    mag = torch.zeros(K, d, dtype=torch.float64).index_add_(
        0, labels, x.double().abs() * (1 if w is None else w[:, None])
    )
    assert bool(((sums.cpu() - ref).abs() <= 1e-13 * mag).all())
    assert torch.equal(counts.cpu(), torch.bincount(labels, minlength=K))
    if weighted:
        assert totals is not None and torch.allclose(totals.cpu(), ref_tot, rtol=1e-13, atol=0)
    assert torch.equal(segment_sums(xg, lg, K, wg)[0], sums)
    c0 = torch.randn(K, d, generator=g)
    a = km.update_centroids(x, labels, c0)
    b = km.update_centroids(xg, lg, c0.cuda()).cpu()
    assert torch.allclose(a, b, rtol=2.4e-7, atol=1e-30)
