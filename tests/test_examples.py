"""examples/pipeline.py against a loopback server: submit many scenes and return, then collect."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from vqpress.vqp import read_vqp

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"

pytestmark = pytest.mark.timeout(600)


def test_pipeline_submits_detaches_and_collects(tmp_path: Path) -> None:
    from vqpress_server.app import build_app
    from vqpress_server.settings import Settings

    scenes = []
    for name in ("donut_small.ply", "tarot_small.splat", "biker_small.spz"):
        scenes.append(tmp_path / name)
        shutil.copy(DATA / name, scenes[-1])
    out = tmp_path / "results"
    script = [sys.executable, str(REPO / "examples" / "pipeline.py")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "client"), os.environ.get("PYTHONPATH", "")])}
    app = build_app(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0, workers=1, poll_s=0.05))
    app.start()
    try:
        server = ["--server", f"127.0.0.1:{app.port}", "--out", str(out), "--kmeans-iters", "3"]
        sub = subprocess.run([*script, "submit", *server, *map(str, scenes)], capture_output=True, text=True,
                             timeout=300, env=env)  # fmt: skip
        assert sub.returncode == 0, sub.stderr
        manifest = json.loads((out / "jobs.json").read_text())
        assert sorted(manifest) == ["biker_small", "donut_small", "tarot_small"]
        assert all(e["state"] == "QUEUED" and len(e["job"]) == 32 for e in manifest.values())
        col = subprocess.run([*script, "collect", *server], capture_output=True, text=True, timeout=500, env=env)
        assert col.returncode == 0, col.stderr
    finally:
        app.stop(0)
    manifest = json.loads((out / "jobs.json").read_text())
    for stem, entry in manifest.items():
        assert entry["state"] == "SUCCEEDED", entry
        vqp = out / f"{stem}.vqp"
        assert read_vqp(vqp.read_bytes()).kind == "splats" and entry["bytes"] == vqp.stat().st_size
        assert json.loads((out / f"{stem}.report.json").read_text())["output_bytes"] == entry["bytes"]
