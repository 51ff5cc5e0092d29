"""bench/bench_fields.py end to end on a tiny scene (--quick, CPU): every method runs in its own
process, writes its JSON row as soon as it is measured, is evaluated on every held-out view, and
--summary prints the table with the goals."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_fields import _orbit, _sphere
from vqpress_server.core.render.volume import render_image

REPO = Path(__file__).resolve().parents[1]


def _tiny_lego(root: Path, views: int = 16, size: int = 24) -> Path:
    """A NeRF-synthetic folder named like lego's: RGBA photos of an analytic sphere."""
    scene = root / "nerf_synthetic_lego_400"
    (scene / "train").mkdir(parents=True)
    aabb = torch.tensor([[-1.5] * 3, [1.5] * 3])
    frames = []
    cams = _orbit(views, size)
    for i, cam in enumerate(cams):
        white = render_image(_sphere, cam, aabb, 64, background=(1.0, 1.0, 1.0))
        black = render_image(_sphere, cam, aabb, 64, background=(0.0, 0.0, 0.0))
        alpha = (1.0 - (white - black).mean(-1, keepdim=True)).clamp(0, 1)
        rgb = torch.where(alpha > 0, black / alpha.clamp(min=1e-6), torch.zeros_like(black)).clamp(0, 1)
        rgba = (torch.cat([rgb, alpha], -1).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(rgba, "RGBA").save(scene / "train" / f"r_{i}.png")
        c2w = np.linalg.inv(cam.viewmat)
        c2w[:3, 1:3] *= -1.0  # OpenCV -> OpenGL axes
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": c2w.tolist()})
    angle = 2 * math.atan(0.5 * size / float(cams[0].K[0, 0]))
    (scene / "transforms_train.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return root


@pytest.mark.timeout(600)  # three trainings and five evaluations in processes of their own, on a loaded CPU
def test_quick_benchmark_writes_a_row_per_method_and_a_summary(tmp_path: Path) -> None:
    data = _tiny_lego(tmp_path / "data")
    out = tmp_path / "rows"
    bench = str(REPO / "bench" / "bench_fields.py")
    methods = ["dense", "vqad-4", "hash-10"]
    cmd = [sys.executable, bench, "--quick", "--data", str(data), "--out-dir", str(out), "--time-budget", "0",
           "--steps", "30", "--deadline", "500", "--methods", *methods]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=560)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the orchestrator and the method processes it started
        proc.communicate()
        raise
    assert proc.returncode == 0, stdout[-3000:]
    rows = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    want = {f"lego_400_{m}" for m in ("dense", "kmvq-4", "lra-1", "vqad-4", "hash-10")}
    assert set(rows) == want, sorted(rows)
    for name, row in rows.items():
        assert row["views"] == 2, name  # every held-out view: 0 and 8 of 16
        assert math.isfinite(row["psnr"]) and math.isfinite(row["ssim"]), name
        assert row["total_bytes"] > row["grid_bytes"] > 0
    for name in ("dense", "vqad-4", "hash-10"):  # each trained: the loss went down over its 30 steps
        row = rows[f"lego_400_{name}"]
        assert row["steps"] == 30 and row["history"][-1]["loss"] < row["history"][0]["loss"], (name, row["history"])
    assert rows["lego_400_vqad-4"]["allocated_vertices"] > 0
    assert rows["lego_400_kmvq-4"]["grid_bytes"] < rows["lego_400_dense"]["grid_bytes"]
    assert "[lego vqad-4] train" in stdout  # progress lines, tagged by method
    assert "RESULT lego_400 kmvq-4" in stdout
    table = subprocess.run([sys.executable, bench, "--summary", str(out)], capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert "| vqad-4 |" in table.stdout and "peak memory" not in table.stdout  # no CUDA peak on the CPU
    assert "vqad-4 vs dense" in table.stdout and "vqad-4 vs hash-10" in table.stdout
