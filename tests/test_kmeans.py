"""k-means on the CPU: exact labels against a float64 brute force, monotone inertia, determinism,
k >= N, empty-cluster re-seeding, bad inputs, and the straight-through quantizer."""

from __future__ import annotations

import pytest
import torch
from vqpress_server.core.errors import ConfigError, VqpressInputError
from vqpress_server.core.vq.kmeans import assign, full_fp32_matmul, kmeans, update_centroids
from vqpress_server.core.vq.ste import quantize_ste


def brute_force(x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 nearest centroid (first index on ties) and the full distance matrix."""
    dist = (x.double()[:, None, :] - c.double()[None, :, :]).square().sum(-1)
    return dist.argmin(1), dist


def assert_labels_exact(labels: torch.Tensor, x: torch.Tensor, c: torch.Tensor) -> None:
    ref, dist = brute_force(x, c)
    diff = (labels != ref).nonzero().squeeze(1)
    rows = torch.arange(len(x))
    # A differing label is allowed only on an exact float64 tie.
    assert torch.equal(dist[rows, labels][diff], dist[rows, ref][diff]), f"{len(diff)} labels differ"


@pytest.mark.parametrize("d", [1, 3, 4, 45])
def test_assign_matches_float64_brute_force(d: int) -> None:
    g = torch.Generator().manual_seed(d)
    # Far from the origin, so the expanded ||x||^2 - 2 x c + ||c||^2 form would lose digits.
    x = torch.randn(3000, d, generator=g) * 0.01 + 1000.0
    c = x[torch.randperm(3000, generator=g)[:97]] + torch.randn(97, d, generator=g) * 1e-4
    assert_labels_exact(assign(x, c), x, c)


def test_assign_near_ties_and_exact_ties() -> None:
    g = torch.Generator().manual_seed(1)
    c = torch.randn(16, 3, generator=g)
    c[5] = c[2]  # a duplicate centroid: its points must go to the lower index
    # Midpoints of centroid pairs are (near-)equidistant: the hardest case for fp32 shortcuts.
    i, j = torch.randint(16, (2, 500), generator=g)
    x = torch.cat([(c[i] + c[j]) / 2, c[[2, 2, 5]], torch.randn(500, 3, generator=g)])
    labels = assign(x, c)
    assert_labels_exact(labels, x, c)
    assert (labels != 5).all()


def test_tf32_setting_is_restored_and_ignored() -> None:
    old = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    try:
        with full_fp32_matmul():
            assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
        x = torch.randn(500, 3)
        c = torch.randn(64, 3)
        assert_labels_exact(assign(x, c), x, c)
    finally:
        torch.backends.cuda.matmul.fp32_precision = old


def test_kmeans_labels_exact_and_inertia_monotone() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(400, 4, generator=g) * 0.3 + torch.randn(1, 4, generator=g) * 5 for _ in range(8)])
    res = kmeans(x, 8, iters=15, seed=3)
    assert res.centroids.shape == (8, 4) and res.centroids.dtype == torch.float32
    assert res.labels.shape == (3200,) and res.labels.dtype == torch.int64
    assert_labels_exact(res.labels, x, res.centroids)
    ref_inertia = (x.double() - res.centroids.double()[res.labels]).square().sum().item()
    assert res.inertia == pytest.approx(ref_inertia, rel=1e-12)
    h = res.inertia_history
    assert len(h) == 16
    assert all(b <= a * (1 + 1e-6) for a, b in zip(h, h[1:], strict=False)), h
    # Well separated blobs: every cluster is one blob (inertia ~ 3200 * 4 * 0.09).
    assert res.inertia < 3200 * 4 * 0.09 * 1.2


def test_kmeans_deterministic_for_a_seed() -> None:
    x = torch.randn(2000, 6, generator=torch.Generator().manual_seed(7))
    a = kmeans(x, 40, iters=5, seed=11)
    b = kmeans(x, 40, iters=5, seed=11)
    c = kmeans(x, 40, iters=5, seed=12)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.labels, b.labels)
    assert a.inertia == b.inertia
    assert not torch.equal(a.centroids, c.centroids)


def test_large_k_uses_batched_init() -> None:
    x = torch.randn(6000, 3, generator=torch.Generator().manual_seed(2))
    res = kmeans(x, 700, iters=2, seed=0)
    assert res.centroids.shape == (700, 3)
    assert torch.bincount(res.labels, minlength=700).min() >= 1  # no cluster left empty
    assert_labels_exact(res.labels, x, res.centroids)


def test_k_at_least_n_makes_each_point_a_centroid() -> None:
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0], [2.0, 3.0]])
    res = kmeans(x, 10)
    assert torch.equal(res.centroids, x)
    assert torch.equal(res.labels, torch.arange(3))
    assert res.inertia == 0.0


def test_empty_cluster_is_reseeded_at_the_farthest_point() -> None:
    # Only 3 distinct locations for 5 clusters: the k-means++ init must pick duplicates, and two
    # clusters end up empty every iteration. They must sit on data points, never at the origin.
    base = torch.tensor([[10.0, 10.0], [20.0, 10.0], [10.0, 30.0]])
    x = base.repeat_interleave(torch.tensor([50, 50, 1]), dim=0)
    res = kmeans(x, 5, iters=4, seed=0)
    assert res.inertia == 0.0
    assert not (res.centroids.abs().sum(1) == 0).any()
    for c in res.centroids:
        assert (x == c).all(1).any(), c

    # Lloyd empties a cluster: centroid 2 starts beyond the data, every point is closer to 0 or 1.
    x = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [9.0]])
    labels = assign(x, torch.tensor([[0.1], [5.0], [100.0]]))
    assert torch.bincount(labels, minlength=3).tolist() == [3, 3, 0]
    # The QAT update keeps an empty cluster's value ...
    upd = update_centroids(x, labels, torch.tensor([[0.1], [5.0], [100.0]]))
    assert torch.allclose(upd, torch.tensor([[0.1], [19.1 / 3], [100.0]]))
    # ... k-means re-seeds it at the point farthest from its centroid (9.0, 9 - 6.37 away).
    res = kmeans(x, 3, iters=3, seed=5)
    assert sorted(res.centroids.squeeze(1).tolist()) == pytest.approx([0.1, 5.05, 9.0])
    assert res.inertia == pytest.approx(0.02 + 0.005, rel=1e-5)


def test_update_centroids_is_the_member_mean() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1000, 5, generator=g)
    labels = torch.randint(0, 7, (1000,), generator=g)
    out = update_centroids(x, labels, torch.zeros(9, 5))
    for k in range(7):
        assert torch.allclose(out[k], x[labels == k].mean(0), atol=1e-6)
    assert torch.equal(out[7:], torch.zeros(2, 5))


@pytest.mark.parametrize(
    ("x", "k", "iters", "exc", "words"),
    [
        (torch.randn(10, 3), 0, 5, ConfigError, "k must be"),
        (torch.randn(10, 3), -2, 5, ConfigError, "k must be"),
        (torch.randn(10, 3), 2, -1, ConfigError, "iters"),
        (torch.empty(0, 3), 2, 5, VqpressInputError, "N = 0"),
        (torch.empty(10, 0), 2, 5, VqpressInputError, "d = 0"),
        (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), 1, 5, VqpressInputError, "NaN"),
        (torch.tensor([[0.0, float("inf")], [1.0, 2.0]]), 1, 5, VqpressInputError, "NaN or inf"),
        (torch.tensor([[1e35, 0.0], [1.0, 2.0]]), 1, 5, VqpressInputError, "rescale"),
        (torch.randn(10), 2, 5, VqpressInputError, "shape"),
        (torch.ones(10, 3, dtype=torch.int64), 2, 5, VqpressInputError, "floating-point"),
    ],
)
def test_bad_inputs_raise_clear_errors(x: torch.Tensor, k: int, iters: int, exc: type, words: str) -> None:
    with pytest.raises(exc, match=words):
        kmeans(x, k, iters)


def test_assign_rejects_mismatched_centroids() -> None:
    with pytest.raises(VqpressInputError, match="d = 2"):
        assign(torch.randn(4, 3), torch.randn(2, 2))
    with pytest.raises(VqpressInputError, match="empty"):
        assign(torch.randn(4, 3), torch.empty(0, 3))


def test_quantize_ste_forward_is_codebook_backward_is_identity() -> None:
    x = torch.randn(6, 3, requires_grad=True)
    codebook = torch.randn(4, 3)
    idx = torch.tensor([0, 1, 2, 3, 0, 1])
    q = quantize_ste(x, codebook, idx)
    assert torch.allclose(q, codebook[idx])
    w = torch.randn(6, 3)
    (q * w).sum().backward()
    assert torch.equal(x.grad, w)
