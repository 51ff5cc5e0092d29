"""The Triton k-means kernels run on the CPU through Triton's interpreter (TRITON_INTERPRET=1):
the tensor-core assignment against a float64 brute force (near ties, ragged N and K, K = 1,
duplicates), the error bound of its 3xTF32 products against an emulation of the worst case, and
the sorted segment sums and point distances against the torch update. Skipped where triton is
not installed or its interpreter cannot run here."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from vqpress_server.core.vq import kmeans as km

MODULE = Path(km.__file__).with_name("triton_assign.py")
# The interpreter turns scalar arguments into one-element arrays (numpy 2.x warns when they are read).
pytestmark = pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning")


@pytest.fixture(scope="module")
def ta() -> Iterator[ModuleType]:
    """A copy of triton_assign whose kernels (and triton's own library) run on the interpreter.

    TRITON_INTERPRET must be set before triton is first imported; on a machine with CUDA the GPU
    tests cover the kernels, and an interpreted triton would be left in their way, so skip there.
    """
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: tests/test_kmeans_gpu.py runs these kernels compiled")
    # Set for the whole module: triton reads it again when its first kernel runs.
    mp = pytest.MonkeyPatch()
    mp.setenv("TRITON_INTERPRET", "1")
    try:
        if "triton" in sys.modules and not sys.modules["triton"].knobs.runtime.interpret:
            pytest.skip("triton was imported without TRITON_INTERPRET=1 in this process")
        pytest.importorskip("triton")
        spec = importlib.util.spec_from_file_location("triton_assign_interpreted", MODULE)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        assert mod.INTERPRET
        try:  # a probe: some triton / numpy pairs cannot interpret a loop over a runtime bound
            mod.point_distances(torch.ones(3, 2), torch.zeros(1, 2), torch.zeros(3, dtype=torch.int64))
            mod.segment_sums(torch.ones(3, 2), torch.zeros(3, dtype=torch.int64), 1)
        except Exception as e:  # noqa: BLE001 - any failure of the interpreter itself means skip
            pytest.skip(f"the Triton interpreter does not run here: {type(e).__name__}: {str(e)[:160]}")
        yield mod
    finally:
        mp.undo()


def brute(x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dist = (x.double()[:, None, :] - c.double()[None, :, :]).square().sum(-1)
    return dist.argmin(1), dist


def assert_exact(labels: torch.Tensor, x: torch.Tensor, c: torch.Tensor) -> None:
    ref, dist = brute(x, c)
    rows = torch.arange(len(x))
    diff = (labels != ref).nonzero().squeeze(1)
    assert torch.equal(dist[rows, labels][diff], dist[rows, ref][diff]), f"{len(diff)} labels differ"


@pytest.mark.parametrize(("n", "k", "d"), [(300, 200, 45), (129, 1, 45), (77, 130, 12), (260, 64, 64), (50, 3, 33)])
def test_dot_kernel_is_exact_with_the_float64_decision(ta: ModuleType, n: int, k: int, d: int) -> None:
    g = torch.Generator().manual_seed(n * 7 + k + d)
    c = torch.randn(k, d, generator=g) * 0.5 + 100.0  # far from the origin: centering matters
    parts = [torch.randn(n, d, generator=g) * 0.5 + 100.0]
    if k > 1:
        i, j = torch.randint(k, (2, 40), generator=g)
        parts.append((c[i] + c[j]) / 2)  # midpoints: near-equidistant from two centroids
        parts.append(c[:5])  # points on a centroid
    x = torch.cat(parts + [parts[0][:7]])  # and repeated rows
    labels, amb = ta.assign_dot(x, c)
    ref, _ = brute(x, c)
    # Unflagged rows are already right; flagged ones are few, then decided in float64.
    assert_exact(labels[~amb], x[~amb], c)
    if k > 1:
        assert amb[: len(parts[0])].float().mean() < 0.05
    assert_exact(km._redecide(x, c, labels.clone(), amb), x, c)


def test_dot_kernel_flags_exact_ties(ta: ModuleType) -> None:
    g = torch.Generator().manual_seed(3)
    c = torch.randn(20, 45, generator=g)
    c[13] = c[4]  # duplicate centroid (the caller removes these; the kernel must still flag them)
    x = torch.cat([c[4:5] + 1e-3 * torch.randn(5, 45, generator=g), torch.randn(100, 45, generator=g)])
    labels, amb = ta.assign_dot(x, c)
    ref, _ = brute(x, c)
    tied = ref == 4
    assert tied[:5].all() and amb[tied].all()
    assert torch.equal(labels[~amb], ref[~amb])


def _tf32_trunc(a: torch.Tensor) -> torch.Tensor:
    """a with its low 13 mantissa bits cleared (TF32 by truncation, the worst case of an input)."""
    return (a.view(torch.int32) & ~0x1FFF).view(torch.float32)


def test_dot_error_bound_covers_an_emulated_worst_case(ta: ModuleType) -> None:
    """3xTF32 with truncation everywhere and fp32 accumulation term by term stays inside E."""
    g = torch.Generator().manual_seed(5)
    d = 45
    tol = ta.dot_tolerance(d)
    e_rel = tol / 4  # the bound E relative to |x|^2 + cmax (the kernel flags gaps <= 4E)
    for spread in (1.0, 1e-3):
        x = 1.0 + spread * torch.randn(400, d, generator=g)
        c = 1.0 + spread * torch.randn(50, d, generator=g)
        s = 2.0 ** -math.frexp(float(max(x.abs().max(), c.abs().max())))[1]
        x, c = x * s, c * s
        b = -2.0 * c
        xh, bh = _tf32_trunc(x), _tf32_trunc(b)
        xl, bl = _tf32_trunc(x - xh), _tf32_trunc(b - bh)
        acc = torch.zeros(len(x), len(c))
        for j in range(d):  # one fp32 rounding per product term, three terms per coordinate
            for p in (
                xl[:, j, None] * bh[None, :, j],
                xh[:, j, None] * bl[None, :, j],
                xh[:, j, None] * bh[None, :, j],
            ):
                acc = acc + p
        cn = c.double().square().sum(1).float()
        comp = (cn[None, :] + acc).double()
        exact = c.double().square().sum(1)[None, :] - 2.0 * x.double() @ c.double().T
        bound = e_rel * (x.double().square().sum(1)[:, None] + float(cn.max()))
        assert bool(((comp - exact).abs() <= bound).all())
        # The bound is not vacuous: it is within a few hundred times the error seen.
        assert float((bound / (comp - exact).abs().clamp_min(1e-300)).min()) < 1e3


@pytest.mark.parametrize("weighted", [False, True])
def test_segment_sums_equal_the_float64_update(ta: ModuleType, weighted: bool) -> None:
    g = torch.Generator().manual_seed(11)
    n, k, d = 2500, 40, 45
    x = torch.randn(n, d, generator=g) * 10 + 3
    labels = torch.randint(0, k - 3, (n,), generator=g)  # the last three clusters stay empty
    labels[:1200] = 5  # one cluster larger than a chunk of the kernel
    w = torch.rand(n, generator=g, dtype=torch.float64) if weighted else None
    sums, counts, totals = ta.segment_sums(x, labels, k, w)
    ref_sums, ref_totals = km._sums_counts(x, labels, k, w)  # the CPU update: float64 index_add_
    assert torch.equal(counts, torch.bincount(labels, minlength=k))
    mag = torch.zeros(k, d, dtype=torch.float64).index_add_(
        0, labels, x.double().abs() * (1 if w is None else w[:, None])
    )
    assert bool(((sums - ref_sums).abs() <= 1e-13 * mag).all())
    assert torch.equal(sums[-3:], torch.zeros(3, d, dtype=torch.float64))
    if weighted:
        assert totals is not None
        assert torch.allclose(totals, ref_totals, rtol=1e-13, atol=0)
    else:
        assert totals is None
    again = ta.segment_sums(x, labels, k, w)[0]
    assert torch.equal(again, sums)  # deterministic: the same bits


def test_point_distances_equal_torch(ta: ModuleType) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(333, 45, generator=g)
    c = torch.randn(17, 45, generator=g)
    labels = torch.randint(0, 17, (333,), generator=g)
    ref = (x.double() - c.double()[labels]).square().sum(1)
    assert torch.allclose(ta.point_distances(x, c, labels), ref, rtol=1e-14, atol=0)


@pytest.mark.parametrize("d", [1, 3, 8])
def test_small_d_kernel_is_exact_with_the_float64_decision(ta: ModuleType, d: int) -> None:
    g = torch.Generator().manual_seed(d)
    c = torch.randn(70, d, generator=g)
    i, j = torch.randint(70, (2, 30), generator=g)
    x = torch.cat([torch.randn(200, d, generator=g), (c[i] + c[j]) / 2])
    labels, amb = ta.assign_triton(x, c)
    assert_exact(labels[~amb], x[~amb], c)
    assert_exact(km._redecide(x, c, labels.clone(), amb), x, c)
