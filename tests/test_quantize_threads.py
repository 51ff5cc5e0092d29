"""On the CPU the four codebooks are clustered side by side, one thread each: the same bits as one
after the other, progress that only moves forward, and a cancel that stops every attribute."""

from __future__ import annotations

import threading

import pytest
import torch
from vqpress_server.core.errors import Cancelled
from vqpress_server.core.splats.model import GaussianSplats
from vqpress_server.core.splats.quantize import QuantizeConfig, quantize_splats

# Large enough codebooks that every attribute runs a real k-means (K < N), and that the d <= 8
# attributes take the pruned assignment (K >= 64).
CFG = QuantizeConfig(dc_codebook=128, sh_codebook=64, scale_codebook=256, rot_codebook=96, kmeans_iters=4)


def _scene(n: int = 3000, seed: int = 0) -> GaussianSplats:
    g = torch.Generator().manual_seed(seed)
    return GaussianSplats(
        means=torch.randn(n, 3, generator=g),
        quats=torch.randn(n, 4, generator=g),
        scales=torch.randn(n, 3, generator=g) - 3,
        opacities=torch.randn(n, generator=g),
        sh0=torch.randn(n, 1, 3, generator=g),
        shN=torch.randn(n, 8, 3, generator=g) * 0.1,
    )


def _with_threads(n: int, fn):  # noqa: ANN001, ANN202
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


def test_side_by_side_gives_the_bits_of_one_thread_and_restores_the_thread_count() -> None:
    scene = _scene()
    weights = torch.rand(scene.num_gaussians, generator=torch.Generator().manual_seed(1))
    seen: list[tuple[str, float]] = []

    def run_two() -> bytes:
        q = quantize_splats(scene, CFG, weights=weights, progress=lambda s, f, m: seen.append((s, f)))
        assert torch.get_num_threads() == 2  # the caller's setting is back
        return q.to_vqp_bytes()

    one = _with_threads(1, lambda: quantize_splats(scene, CFG, weights=weights).to_vqp_bytes())
    threads_before = threading.active_count()
    two = _with_threads(2, run_two)
    assert two == one
    assert threading.active_count() == threads_before  # no worker left behind
    stages = {s for s, _ in seen}
    assert stages == {"quantize:dc", "quantize:sh", "quantize:scale", "quantize:rot"}
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("threads", [1, 2])
def test_cancel_during_one_attribute_stops_them_all(threads: int) -> None:
    scene = _scene(seed=2)
    reports_after_cancel: list[str] = []
    cancelled = threading.Event()

    def progress(stage: str, fraction: float, metrics: object) -> None:
        if cancelled.is_set():
            reports_after_cancel.append(stage)
        if stage == "quantize:scale" and fraction > 0.0:
            cancelled.set()
            raise Cancelled()

    with pytest.raises(Cancelled):
        _with_threads(threads, lambda: quantize_splats(scene, CFG, progress=progress))
    # The other attributes stop at their next report instead of reporting on.
    assert reports_after_cancel == []
