"""bench/bench_field_speed.py end to end on a tiny scene (--tiny, CPU): a row per method and
variant with its speed and losses, the table, and the JSON."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from test_bench_fields import _tiny_lego

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_tiny_speed_benchmark_times_every_variant_and_writes_json(tmp_path: Path) -> None:
    data = _tiny_lego(tmp_path / "data", views=6, size=12)
    out = tmp_path / "speed.json"
    cmd = [sys.executable, str(REPO / "bench" / "bench_field_speed.py"), "--device", "cpu", "--tiny",
           "--data", str(data / "nerf_synthetic_lego_400"), "--out", str(out), "--warmup", "4", "--steps", "4",
           "--methods", "dense", "vqad-4", "--variants", "default", "fast", "--budget-s", "400",
           "--run-cap-s", "100"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=560)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    rows = {(r["method"], r["variant"]): r for r in res["rows"]}
    assert set(rows) == {(m, v) for m in ("dense", "vqad-4") for v in ("default", "fast")}
    for key, r in rows.items():
        assert not r["partial"] and r["steps_done"] == 8 and r["timed_steps"] == 4, (key, r)
        assert r["steps_per_s"] > 0 and r["samples_per_s"] > 0 and math.isfinite(r["loss_last"]), (key, r)
        assert r["peak_memory_bytes"] is None  # no CUDA peak on the CPU
    for m in ("dense", "vqad-4"):  # the options train the same field: same first loss to float tolerance
        assert rows[(m, "fast")]["loss_first"] == pytest.approx(rows[(m, "default")]["loss_first"], rel=1e-4)
    assert "| vqad-4 | fast |" in proc.stdout and "x default" in proc.stdout
