"""Executors compared on small quantize jobs, and the Ray data path's throughput.

    python bench/bench_cluster.py [--jobs N] [--mib M] [--out OUT.json] [--quick]

Rows: the local executor (one worker process), Ray with 1 worker node, Ray with 2 worker nodes
(each node its own raylet and object store on 127.0.0.1, a head with no workers). Each row runs N
quantize jobs of tests/data/donut_small.ply (3,000 Gaussians, small codebooks, PSNR at one 32 px
view) submitted at once, after the workers are warm:
- jobs/min: N / (first submit -> last job done);
- per-job overhead: mean over jobs of (claimed -> recorded done) minus the handler's own seconds,
  i.e. what the executor adds: inputs to the worker, results back, polling, bookkeeping.
Data path: M MiB of random bytes put by the front-end into the object store and fetched by an actor
on a worker node into its artifact cache (sha256 checked), then returned by the actor (the results'
path); MiB/s of each, median of 3.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "client"), str(REPO / "server")]

from vqpress import digests  # noqa: E402
from vqpress_server.cluster_demo import loopback_cluster, use_loopback  # noqa: E402

SCENE = REPO / "tests" / "data" / "donut_small.ply"
CONFIG = {"dc_codebook": 64, "sh_codebook": 16, "scale_codebook": 64, "rot_codebook": 64, "kmeans_iters": 3}


def _cameras() -> list[dict]:
    from vqpress_server.core.render.cameras import camera_to_dict, orbit_cameras
    from vqpress_server.core.splats.formats import load_scene

    scene, _ = load_scene(SCENE)
    return [camera_to_dict(c) for c in orbit_cameras(scene, n=1, width=32, height=32)]


def run_jobs(settings, n: int) -> dict:  # noqa: ANN001
    from vqpress_server.app import build_app
    from vqpress_server.core.splats.quantize_config import QuantizeConfig
    from vqpress_server.jobs.specs import CameraSpec, QuantizeSplatsSpec

    app = build_app(settings)
    ply = app.store.put_file(SCENE, "donut.ply", "ply")
    cams = tuple(CameraSpec.from_json(c) for c in _cameras())
    spec = QuantizeSplatsSpec(ply.id, QuantizeConfig(**CONFIG), cams)
    app.start()
    try:
        assert app.workers.wait_ready(600), "workers did not start"
        # One job first so every worker is past its first-job costs (imports, caches), as in service.
        warm = [app.jobs.submit_spec(spec).id for _ in range(2)]
        app.workers.notify()
        _wait_all(app.jobs, warm)
        t0 = time.time()
        ids = [app.jobs.submit_spec(spec).id for _ in range(n)]
        app.workers.notify()
        recs = _wait_all(app.jobs, ids)
        wall = max(r.finished_at for r in recs) - t0
    finally:
        app.stop()
    assert all(r.state.value == "SUCCEEDED" for r in recs), [r.error for r in recs]
    overhead = [(r.finished_at - r.started_at) - r.metrics["seconds"] for r in recs]
    return {
        "jobs": n,
        "wall_s": wall,
        "jobs_per_min": 60.0 * n / wall,
        "handler_s": statistics.mean(r.metrics["seconds"] for r in recs),
        "overhead_s": statistics.mean(overhead),
        "workers": sorted({r.worker_id.split("/")[1] if r.worker_id.startswith("ray/") else "local" for r in recs}),
    }


def _wait_all(table, ids: list[str], timeout: float = 1800) -> list:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        recs = [table.get(i) for i in ids]
        if all(r.terminal for r in recs):
            return recs
        assert time.monotonic() < deadline, "jobs did not finish"
        time.sleep(0.05)


def data_path(cluster, mib: int) -> dict:  # noqa: ANN001
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    from vqpress_server.jobs.ray_executor import NodeWorker
    from vqpress_server.settings import RayConfig, Settings

    tmp = Path(tempfile.mkdtemp(prefix="vqpress-bench-"))
    ray.init(address=cluster.address)
    try:
        node = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0)
        settings = Settings(data_dir=tmp, ray=RayConfig(node_dir=tmp / "nodes"))
        actor = (
            ray.remote(NodeWorker)
            .options(num_cpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
            .remote(settings, 0, 1)
        )
        ray.get(actor.ready.remote())
        ins, outs = [], []
        for _ in range(3):
            data = os.urandom(mib << 20)
            aid = digests.id_of_bytes(data)
            info = {"name": "blob.bin", "kind": "bin", "source_job": None}
            t0 = time.perf_counter()
            ref = ray.put(data)
            fetched = ray.get(actor.fetch.remote({aid: (info, ref)}))
            ins.append(time.perf_counter() - t0)
            assert fetched == len(data)
            t0 = time.perf_counter()
            back = ray.get(actor.read_artifact.remote(aid))
            outs.append(time.perf_counter() - t0)
            assert digests.id_of_bytes(back) == aid
            del ref, back
        ray.kill(actor)
    finally:
        ray.shutdown()
    return {
        "mib": mib,
        "to_node_mib_s": mib / statistics.median(ins),
        "from_node_mib_s": mib / statistics.median(outs),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--out", "--json", dest="json", type=Path, help="write the rows as JSON here")
    ap.add_argument("--quick", action="store_true", help="2 jobs, 16 MiB: a smoke run, not numbers to report")
    args = ap.parse_args()
    if args.quick:
        args.jobs, args.mib = 2, 16
    use_loopback()
    from vqpress_server.settings import RayConfig, Settings

    rows: dict[str, dict] = {}
    tmp = Path(tempfile.mkdtemp(prefix="vqpress-bench-"))
    base = {"port": 0, "poll_s": 0.05, "heartbeat_s": 1.0}
    rows["local (1 worker process)"] = run_jobs(Settings(data_dir=tmp / "local", workers=1, **base), args.jobs)
    print(rows, flush=True)
    dp = None
    for nodes in (1, 2):
        cluster = loopback_cluster(nodes)
        try:
            ray_cfg = RayConfig(address=cluster.address, node_dir=tmp / f"nodes{nodes}")
            s = Settings(data_dir=tmp / f"ray{nodes}", executor="ray", ray=ray_cfg, **base)
            rows[f"ray, {nodes} worker node(s)"] = run_jobs(s, args.jobs)
            print(rows, flush=True)
            if nodes == 2:
                dp = data_path(cluster, args.mib)
        finally:
            cluster.shutdown()
    print("| executor | jobs | jobs/min | handler s/job | overhead s/job |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['jobs']} | {r['jobs_per_min']:.1f} | {r['handler_s']:.2f} | {r['overhead_s']:.3f} |")
    if dp is not None:
        print(f"\ndata path, {dp['mib']} MiB: front-end -> node cache {dp['to_node_mib_s']:.0f} MiB/s, "
              f"node -> front-end {dp['from_node_mib_s']:.0f} MiB/s")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "data_path": dp}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
