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


def test_cached_seeding_subset_draws_what_a_fresh_generator_draws() -> None:
    """The quantizer's attributes share one seed and one N: the seeding subset is kept, and a
    k-means that takes it from the cache must start exactly where a fresh generator would."""
    from vqpress_server.core.vq import kmeans as km

    km._SUBSET_CACHE.clear()
    N, m = 70_000, km._INIT_SUBSET_MIN
    for _ in range(2):  # a miss, then a hit
        sub, gen = km._random_subset(N, m, seed=3)
        ref = torch.Generator().manual_seed(3)
        assert torch.equal(sub, torch.randperm(N, generator=ref)[:m])
        assert torch.equal(torch.rand(5, generator=gen), torch.rand(5, generator=ref))  # the state after it
    assert len(km._SUBSET_CACHE) == 1

    # A prefix above the cap is drawn each time and not kept (its memory would stay with the worker).
    sub, gen = km._random_subset(N, km._SUBSET_CACHE_MAX_ROWS + 1, seed=4)
    ref = torch.Generator().manual_seed(4)
    assert torch.equal(sub, torch.randperm(N, generator=ref)[: km._SUBSET_CACHE_MAX_ROWS + 1])
    assert torch.equal(torch.rand(5, generator=gen), torch.rand(5, generator=ref))
    assert len(km._SUBSET_CACHE) == 1

    x = torch.randn(N, 2, generator=torch.Generator().manual_seed(8))
    km._SUBSET_CACHE.clear()
    cold = kmeans(x, 8, iters=2, seed=3)
    warm = kmeans(x, 8, iters=2, seed=3)  # the subset now comes from the cache
    reference = km._init_kmeanspp(x, 8, 3, cache=False)  # draws the subset itself
    assert torch.equal(cold.centroids, warm.centroids) and torch.equal(cold.labels, warm.labels)
    assert torch.equal(km._init_kmeanspp(x, 8, 3), reference)  # from the cache


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


# -- weights, init, repeated values -------------------------------------------------------------
def reference_lloyd(x: torch.Tensor, c: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain float64 Lloyd from centroids c (no empty clusters expected): centroids, labels."""
    c = c.double()
    for _ in range(iters):
        labels, _ = brute_force(x, c)
        counts = torch.bincount(labels, minlength=len(c))
        assert (counts > 0).all(), "the reference expects no empty cluster"
        c = torch.zeros_like(c).index_add_(0, labels, x.double()) / counts[:, None]
        c = c.float().double()  # the centroids kmeans returns are float32
    return c.float(), brute_force(x, c.float())[0]


def test_integer_weights_equal_repeated_points() -> None:
    g = torch.Generator().manual_seed(21)
    x = torch.randn(600, 3, generator=g) * 2
    w = torch.randint(0, 5, (600,), generator=g)
    init = x[w > 0][:6].clone()
    xrep = x.repeat_interleave(w, dim=0)
    a = kmeans(x, 6, iters=7, weights=w.double(), init=init)
    b = kmeans(xrep, 6, iters=7, init=init)
    ref_c, ref_labels = reference_lloyd(xrep, init, 7)
    assert torch.allclose(a.centroids, b.centroids, atol=1e-6)
    assert torch.allclose(a.centroids, ref_c, atol=1e-6)
    assert torch.equal(a.labels.repeat_interleave(w), b.labels)
    assert torch.equal(b.labels, ref_labels)
    assert a.inertia == pytest.approx(b.inertia, rel=1e-9)
    assert a.inertia_history == pytest.approx(b.inertia_history, rel=1e-9)
    # Points of weight 0 still get their exact nearest centroid.
    assert_labels_exact(a.labels, x, a.centroids)


def test_weighted_centroids_are_weighted_means_and_ignore_zero_weights() -> None:
    x = torch.tensor([[0.0], [1.0], [4.0], [10.0], [11.0], [500.0]])
    w = torch.tensor([1.0, 3.0, 0.0, 2.0, 2.0, 0.0])  # 4.0 and the outlier 500 weigh nothing
    res = kmeans(x, 2, iters=5, seed=0, weights=w)
    assert sorted(res.centroids.squeeze(1).tolist()) == pytest.approx([0.75, 10.5])
    assert res.inertia == pytest.approx(1 * 0.75**2 + 3 * 0.25**2 + 4 * 0.25, rel=1e-6)
    assert_labels_exact(res.labels, x, res.centroids)
    # Seeding never picks a weight-0 point while points of positive weight remain.
    for seed in range(10):
        r = kmeans(x, 2, iters=0, seed=seed, weights=w)
        assert not (r.centroids == 500.0).any() and not (r.centroids == 4.0).any()


def test_init_is_respected() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2000, 4, generator=g)
    init = torch.randn(9, 4, generator=g)
    r0 = kmeans(x, 9, iters=0, init=init)
    assert torch.equal(r0.centroids, init)
    assert torch.equal(r0.labels, assign(x, init))
    r = kmeans(x, 9, iters=4, init=init, seed=1)
    assert torch.equal(r.centroids, kmeans(x, 9, iters=4, init=init, seed=99).centroids)  # no seeding
    ref_c, _ = reference_lloyd(x, init, 4)
    assert torch.allclose(r.centroids, ref_c, atol=1e-6)
    init.zero_()  # the caller's tensor is not aliased by the result
    assert not torch.equal(r0.centroids, init)
    # With init, k >= N still runs Lloyd from the given rows.
    small = kmeans(x[:3], 5, iters=2, init=torch.randn(5, 4, generator=g))
    assert small.centroids.shape == (5, 4)
    assert_labels_exact(small.labels, x[:3], small.centroids)


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"weights": torch.ones(9)}, VqpressInputError, r"shape \[N\] = \[10\]"),
        ({"weights": torch.ones(10, 1)}, VqpressInputError, "shape"),
        ({"weights": [1.0] * 10}, VqpressInputError, "torch.Tensor"),
        ({"weights": -torch.ones(10)}, VqpressInputError, ">= 0"),
        ({"weights": torch.full((10,), float("nan"))}, VqpressInputError, "NaN or inf"),
        ({"weights": torch.zeros(10)}, VqpressInputError, "all zero"),
        ({"weights": torch.ones(10, dtype=torch.bool)}, VqpressInputError, "real numbers"),
        ({"init": torch.randn(2, 4)}, VqpressInputError, "init has d = 4"),
        ({"init": torch.empty(0, 3)}, VqpressInputError, "no rows"),
        ({"init": torch.randn(3, 3)}, ConfigError, "init has 3 rows"),
        ({"init": torch.tensor([[0.0, 1.0, float("inf")], [0.0, 0.0, 0.0]])}, VqpressInputError, "init contains"),
    ],
)
def test_bad_weights_and_init_raise_clear_errors(kwargs: dict, exc: type, words: str) -> None:
    with pytest.raises(exc, match=words):
        kmeans(torch.randn(10, 3), 2, 3, **kwargs)


class _Work:
    """Counts the rows and the float64 candidate pairs that the exact assignment processes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import vqpress_server.core.vq.kmeans as km

        self.rows = 0
        self.pairs = 0
        gemm, refine = km._assign_gemm, km._refine_pairs

        def counted_gemm(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            self.rows += x.shape[0]
            return gemm(x, c)

        def counted_refine(x: torch.Tensor, c: torch.Tensor, r: torch.Tensor, *a: object) -> torch.Tensor:
            self.pairs += len(r)
            assert self.pairs <= 100_000, f"{self.pairs} near-tie pairs: repeated values are not free"
            return refine(x, c, r, *a)

        monkeypatch.setattr(km, "_assign_gemm", counted_gemm)
        monkeypatch.setattr(km, "_refine_pairs", counted_refine)


def test_identical_rows_cost_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every rotation the identity: all k-means++ candidates coincide.
    work = _Work(monkeypatch)
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(30_000, 1)
    res = kmeans(x, 4096, iters=10)
    assert res.inertia == 0.0
    assert torch.equal(res.centroids[0], x[0]) and (res.labels == 0).all()
    assert work.pairs == 0 and work.rows == 0


def test_repeated_rows_are_clustered_once(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(8)
    distinct = torch.randn(3000, 4, generator=g)
    # Half the points one repeated value, the rest 3000 distinct rows repeated 5 times each.
    x = torch.cat([torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(15_000, 1), distinct.repeat(5, 1)])
    x = x[torch.randperm(len(x), generator=g)]
    work = _Work(monkeypatch)
    res = kmeans(x, 256, iters=5, seed=2)
    assert work.rows <= 6 * 3001 and work.pairs < 3001
    assert_labels_exact(res.labels, x, res.centroids)
    # The same clustering as the distinct rows (in order of first occurrence) weighted by their
    # multiplicity.
    count: dict[tuple[float, ...], int] = {}
    for row in x.tolist():
        count[tuple(row)] = count.get(tuple(row), 0) + 1
    xu = torch.tensor(list(count))
    wres = kmeans(xu, 256, iters=5, seed=2, weights=torch.tensor(list(count.values())).double())
    assert torch.equal(res.centroids, wres.centroids)
    assert res.inertia == pytest.approx(wres.inertia, rel=1e-9)


def test_duplicate_centroids_cost_no_near_tie_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20_000, 4, generator=g)
    c = torch.cat([torch.randn(50, 4, generator=g), torch.zeros(1, 4).repeat(200, 1)])
    work = _Work(monkeypatch)
    labels = assign(x, c)
    assert work.pairs < 1000
    assert_labels_exact(labels, x, c)
    assert (labels <= 50).all()  # the copies of centroid 50 never win


@pytest.mark.parametrize("case", ["clustered", "far", "tiny", "huge", "ties", "lattice"])
def test_pruned_cpu_assignment_matches_float64_and_the_gemm_path(case: str) -> None:
    import vqpress_server.core.vq.kmeans as km

    g = torch.Generator().manual_seed(len(case))
    d = 4 if case in ("far", "huge") else 3
    x = torch.randn(8000, d, generator=g)
    c = torch.randn(1024, d, generator=g)
    if case == "clustered":  # real codebooks: centroids where the points are dense
        x = torch.cat([torch.randn(1600, d, generator=g) * 0.05 + torch.randn(1, d, generator=g) for _ in range(5)])
        c = x[torch.randperm(len(x), generator=g)[:1024]] + torch.randn(1024, d, generator=g) * 1e-3
    elif case == "far":
        x, c = x * 1e-3 + 5000.0, c * 1e-3 + 5000.0
    elif case == "tiny":
        x, c = x * 1e-18, c * 1e-18
    elif case == "huge":
        x, c = x * 1e17, c * 1e17
    elif case == "ties":  # midpoints of centroid pairs, copies of centroids, a duplicated centroid
        c[7] = c[3]
        i, j = torch.randint(1024, (2, 4000), generator=g)
        x = torch.cat([(c[i] + c[j]) / 2, c[:500], x[:3500]])
    elif case == "lattice":  # points and centroids on one integer grid: many exact ties
        x, c = (
            torch.randint(0, 8, (20_000, d), generator=g).float(),
            torch.randint(0, 8, (1024, d), generator=g).float(),
        )
    assert km._use_pruned(x, c)
    labels = assign(x, c)
    assert_labels_exact(labels, x, c)
    assert torch.equal(labels, km._assign_gemm(x, c))


def test_pruned_assignment_compares_few_centroids(monkeypatch: pytest.MonkeyPatch) -> None:
    import vqpress_server.core.vq.kmeans as km

    compared = []
    baddbmm = torch.baddbmm

    def counting_baddbmm(*a: object, **kw: object) -> torch.Tensor:
        out = baddbmm(*a, **kw)  # type: ignore[arg-type]
        compared.append(out.numel())  # the (point, centroid) distances of one chunk
        return out

    g = torch.Generator().manual_seed(0)
    x = torch.rand(20_000, 3, generator=g)
    c = torch.rand(4096, 3, generator=g)
    monkeypatch.setattr(km.torch, "baddbmm", counting_baddbmm)
    labels = km._assign_pruned(x, c)
    monkeypatch.undo()
    assert 0 < sum(compared) < 0.15 * 20_000 * 4096, sum(compared)  # a brute force compares all N x K
    assert_labels_exact(labels[:4000], x[:4000], c)


@pytest.mark.parametrize("d", [3, 45])
def test_result_is_the_same_on_one_or_two_threads(d: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """k-means runs its CPU bookkeeping on one thread and only the assignment GEMMs on the caller's
    threads (whose values decide no label), so the thread count changes no bit of the result, and
    the caller's setting is back afterwards."""
    g = torch.Generator().manual_seed(d)
    x = torch.randn(6000, d, generator=g)
    w = torch.rand(6000, generator=g)
    gemm_threads: list[int] = []
    real_addmm, real_mm = torch.addmm, torch.mm

    def addmm(*args: object, **kwargs: object) -> torch.Tensor:  # the seeding GEMMs
        gemm_threads.append(torch.get_num_threads())
        return real_addmm(*args, **kwargs)  # type: ignore[arg-type]

    def mm(*args: object, **kwargs: object) -> torch.Tensor:  # the assignment GEMMs
        gemm_threads.append(torch.get_num_threads())
        return real_mm(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "addmm", addmm)
    monkeypatch.setattr(torch, "mm", mm)
    old = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            gemm_threads.clear()
            results.append(kmeans(x, 300, iters=3, weights=w))
            assert torch.get_num_threads() == n
            # seeding GEMMs on one thread; at d = 45 the assignment GEMMs on the caller's n
            assert min(gemm_threads) == 1
            assert max(gemm_threads) == (n if d > 8 else 1)
    finally:
        torch.set_num_threads(old)
    a, b = results
    assert torch.equal(a.centroids, b.centroids)
    assert torch.equal(a.labels, b.labels)
    assert a.inertia_history == b.inertia_history
    assert_labels_exact(a.labels, x, a.centroids)


def test_best_two_is_the_same_on_one_thread_and_on_many() -> None:
    # numpy finds each row's best two on few threads, torch on many: the same entries, ties to the
    # first index, the second-best the smallest of the others (also when it ties the best), D as it was.
    from vqpress_server.core.cpu_threads import intra_op_threads
    from vqpress_server.core.vq.kmeans import _NUMPY_BEST_TWO_MAX_THREADS, _best_two

    g = torch.Generator().manual_seed(3)
    D = torch.randint(0, 5, (300, 257), generator=g).float()  # many exact ties
    D[7] = 1.0  # a row of nothing but ties
    D[8, :] = torch.inf
    D[8, 200] = -2.0  # one finite entry
    before = D.clone()
    got = {}
    for n in (1, _NUMPY_BEST_TWO_MAX_THREADS + 1):
        with intra_op_threads(n):
            got[n] = _best_two(D)
        assert torch.equal(D, before)
    (m1, a1, m2), (t1, b1, t2) = got.values()
    assert torch.equal(m1, t1) and torch.equal(a1, b1) and torch.equal(m2, t2) and a1.dtype == torch.int64
    first = (D == D.min(1, keepdim=True).values).int().argmax(1)
    assert torch.equal(a1, first) and a1[7] == 0 and a1[8] == 200
    assert m2[7] == 1.0 and m2[8] == torch.inf
