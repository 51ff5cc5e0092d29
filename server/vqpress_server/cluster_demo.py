"""`make cluster-demo`: the server on a Ray cluster of three nodes on this machine, one killed mid-run.

1. start a Ray cluster on loopback addresses: a head (no workers on it) and two worker nodes, each a
   separate set of Ray processes (Ray's own multi-node utility, ray.cluster_utils);
2. start `vqpress-server serve --executor ray --ray-address ...` on a free port;
3. through the client SDK: upload the bundled scene, submit N quantize jobs, kill one worker node
   while they run, wait for every job;
4. stop everything it started and print one line:
   `cluster-demo: N jobs succeeded, 0 lost, K nodes used` (exit 0 only when none was lost and K >= 2).

    python -m vqpress_server.cluster_demo [--jobs N] [--scene FILE] [--out DIR]

``loopback_cluster`` is also what the tests and the benchmark start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# On one machine with nothing but loopback addresses, Ray must not replace 127.0.0.1 by the
# machine's outward address when a driver connects. Set before Ray is first imported.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
_NODE_OBJECT_STORE_BYTES = 100 << 20  # object store of each demo node: 100 MiB (Ray's floor is 75 MiB)
# Node failure detection within seconds rather than Ray's default of about half a minute.
_FAST_HEALTH_CHECKS = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SCENE = REPO / "tests" / "data" / "donut.ply"


def loopback_env() -> dict[str, str]:
    """The environment a process joining the loopback cluster needs (this package importable too)."""
    paths = [str(REPO / "client"), str(REPO / "server")]
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, **LOOPBACK_ENV, "PYTHONPATH": os.pathsep.join(paths + ([old] if old else []))}


def use_loopback() -> None:
    """Make this process's Ray keep 127.0.0.1 as it is, even when Ray was imported before the
    environment said so (Ray reads that setting when it is first imported)."""
    os.environ.update(LOOPBACK_ENV)
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def loopback_cluster(worker_nodes: int, cpus_per_node: int = 1) -> Any:
    """A Ray cluster on 127.0.0.1: a head with no CPUs for workers, and ``worker_nodes`` nodes.

    Every node is its own raylet and object store (separate processes), so data between nodes goes
    through Ray's object transfer as between machines. Returns a ray.cluster_utils.Cluster.
    """
    os.environ.update(loopback_env())  # node processes and front-ends started from here inherit it
    use_loopback()
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "node_ip_address": "127.0.0.1",
            "object_store_memory": _NODE_OBJECT_STORE_BYTES,
            "include_dashboard": False,
            "_system_config": _FAST_HEALTH_CHECKS,
        },
    )
    for _ in range(worker_nodes):
        add_worker_node(cluster, cpus_per_node)
    return cluster


def add_worker_node(cluster: Any, cpus: int = 1) -> Any:
    return cluster.add_node(num_cpus=cpus, node_ip_address="127.0.0.1", object_store_memory=_NODE_OBJECT_STORE_BYTES)


def start_server(
    data_dir: Path, ray_address: str, log_path: Path, extra_env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`vqpress-server serve --executor ray` on a free port; returns (process, address) once healthy."""
    import vqpress

    from .demo import _free_port

    port = _free_port()
    cmd = [sys.executable, "-m", "vqpress_server.cli", "serve", "--data-dir", str(data_dir), "--port", str(port),
           "--executor", "ray", "--ray-address", ray_address]  # fmt: skip
    env = {**loopback_env(), "VQPRESS_RAY_NODE_DIR": str(data_dir / "nodes"), **(extra_env or {})}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    with vqpress.Client(address, timeout=5) as client:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}; see {log_path}")
            try:
                if client.health() == "SERVING":
                    return proc, address
            except vqpress.VqpressError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"server did not become healthy in 180 s; see {log_path}")
            time.sleep(0.2)


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _node_of(worker_id: str) -> str:
    """The node id (its first 12 hex digits) in a Ray worker id ``ray/<node id>@<ip>/a<n>``."""
    return worker_id.split("/")[1].split("@")[0] if worker_id.startswith("ray/") else worker_id


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=6, help="quantize jobs to submit (default 6)")
    p.add_argument("--scene", type=Path, default=DEFAULT_SCENE)
    p.add_argument("--out", type=Path, help="keep the server's data and logs here (default: a temp folder)")
    args = p.parse_args(argv)
    if args.jobs < 2:
        p.error("--jobs must be at least 2")

    import vqpress

    work = args.out or Path(tempfile.mkdtemp(prefix="vqpress-cluster-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "server.log"
    print(f"cluster-demo: starting a Ray head and 2 worker nodes on 127.0.0.1 (logs in {work})", flush=True)
    cluster = loopback_cluster(2)
    proc = None
    succeeded, lost, nodes = 0, args.jobs, set()
    try:
        proc, address = start_server(work / "data", cluster.address, log_path)
        print(f"cluster-demo: server at {address}, executor ray", flush=True)
        config = vqpress.QuantizeConfig(kmeans_iters=3)
        cameras = _orbit(args.scene, 1, 48)  # PSNR/SSIM measured at one small view, to keep jobs short
        with vqpress.Client(address, timeout=60) as client:
            scene = client.upload(args.scene)
            jobs = [client.quantize(scene, config, cameras=cameras) for _ in range(args.jobs)]
            print(f"cluster-demo: submitted {len(jobs)} quantize jobs of {args.scene.name}", flush=True)
            victim = _kill_a_busy_node(jobs, cluster)
            print(f"cluster-demo: killed worker node {victim[:12]} while it ran a job", flush=True)
            for job in jobs:
                try:
                    st = job.wait(timeout=1800)
                except (vqpress.VqpressError, TimeoutError) as e:
                    print(f"cluster-demo: job {job.id}: {e}", flush=True)
                    continue
                if st.state is vqpress.JobState.SUCCEEDED:
                    succeeded += 1
                    nodes.add(_node_of(st.worker))
                    print(f"cluster-demo: job {st.id[:8]} succeeded on {st.worker}, "
                          f"ratio {st.metrics.get('ratio', 0):.1f}x", flush=True)  # fmt: skip
                else:
                    print(f"cluster-demo: job {st.id} ended {st.state.value}: {st.error}", flush=True)
        lost = args.jobs - succeeded
    finally:
        if proc is not None:
            stop_server(proc)
        cluster.shutdown()
        if args.out is None and lost == 0:
            shutil.rmtree(work, ignore_errors=True)
    print(f"cluster-demo: {succeeded} jobs succeeded, {lost} lost, {len(nodes)} nodes used", flush=True)
    return 0 if lost == 0 and len(nodes) >= 2 else 1


def _orbit(scene: Path, n: int, size: int) -> list[Any]:
    from .demo import _orbit as orbit

    return orbit(scene, n, size)


def _kill_a_busy_node(jobs: list[Any], cluster: Any) -> str:
    """Once both worker nodes have finished a job, kill one while it runs another (all its processes)."""
    import vqpress

    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        done: set[str] = set()
        busy: list[str] = []
        for job in jobs:
            st = job.status()
            if not st.worker.startswith("ray/"):
                continue
            if st.state is vqpress.JobState.SUCCEEDED:
                done.add(_node_of(st.worker))
            elif st.state is vqpress.JobState.RUNNING and st.progress > 0:
                busy.append(_node_of(st.worker))
        if len(done) >= 2 and busy:
            for node in cluster.worker_nodes:
                if node.node_id.startswith(busy[0]):
                    cluster.remove_node(node, allow_graceful=False)
                    return str(node.node_id)
        time.sleep(0.2)
    raise SystemExit("no job ran on both worker nodes within 1800 s")


if __name__ == "__main__":
    raise SystemExit(main())
