"""bench/bench_rd.py's "bytes at equal PSNR": the Pareto front of vqpress's presets and the
interpolation of log(bytes) in PSNR at a SOG file's PSNR."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_rd", REPO / "bench" / "bench_rd.py")
assert _spec is not None and _spec.loader is not None
bench_rd = importlib.util.module_from_spec(_spec)
sys.modules["bench_rd"] = bench_rd  # its dataclasses look their module up there
_spec.loader.exec_module(bench_rd)
Point = bench_rd.Point


def test_pareto_front_drops_a_point_beaten_in_bytes_and_psnr() -> None:
    pts = [Point(2000, 40.0), Point(1000, 35.0), Point(1500, 34.0), Point(4000, 41.0), Point(4000, 39.0)]
    assert bench_rd.pareto_front(pts) == [Point(1000, 35.0), Point(2000, 40.0), Point(4000, 41.0)]


def test_bytes_at_psnr_interpolates_log_bytes_linearly() -> None:
    curve = [Point(1000, 30.0), Point(4000, 40.0)]
    b, how = bench_rd.bytes_at_psnr(curve, 35.0)
    assert how == "interpolated" and b == pytest.approx(2000.0)  # the geometric mean at the middle
    b, _ = bench_rd.bytes_at_psnr(curve, 37.5)
    assert b == pytest.approx(math.exp(0.25 * math.log(1000) + 0.75 * math.log(4000)))
    assert bench_rd.bytes_at_psnr(curve, 40.0) == (pytest.approx(4000.0), "interpolated")


def test_bytes_at_psnr_outside_the_curve() -> None:
    curve = [Point(4000, 40.0), Point(1000, 30.0), Point(3000, 29.0)]  # the last is dominated
    assert bench_rd.bytes_at_psnr(curve, 25.0) == (1000.0, "bound")  # the smallest point already beats it
    assert bench_rd.bytes_at_psnr(curve, 40.5) == (None, "above")
    assert bench_rd.bytes_at_psnr([], 30.0) == (None, "above")


def test_equal_psnr_rows_compare_sog_with_the_vqp_presets_only() -> None:
    def row(method: str, file: str, nbytes: int, psnr: float | None) -> dict:
        return {"method": method, "file": file, "bytes": nbytes, "psnr": psnr}

    result = {
        "scene": "s",
        "rows": [
            row("vqpress high_ratio", "high_ratio.vqp", 1000, 30.0),
            row("vqpress default", "default.vqp", 4000, 40.0),
            row("vqpress SOG", "vq.sog", 500, 45.0),  # vqpress's SOG writer is not on the .vqp curve
            row("splat-transform SOG (default)", "st_default.sog", 6000, 35.0),
            row("splat-transform SOG (-i 50)", "st_hq.sog", 7000, None),  # not evaluated: no figure
            row("splat-transform SPZ v4", "st.spz", 9000, 42.0),
        ],
    }
    e, missing = bench_rd.equal_psnr_rows(result)
    assert e["method"] == "splat-transform SOG (default)" and e["how"] == "interpolated"
    assert e["vqpress_bytes"] == pytest.approx(2000.0) and e["advantage"] == pytest.approx(3.0)
    assert missing["method"] == "splat-transform SOG (-i 50)" and missing["advantage"] is None
