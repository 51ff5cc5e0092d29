"""The ray executor on a real Ray cluster on this machine: a head and two worker nodes, each its own
raylet and object store. Jobs spread over the nodes, a node killed mid-job, cancel, and the front-end
killed and restarted with a job on the cluster. Skipped when Ray is not installed (the cluster extra)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("ray")

from vqpress_server.cluster_demo import add_worker_node, loopback_cluster, start_server, stop_server  # noqa: E402
from vqpress_server.core.fields.config import field_config_from_spec, train_config_from_spec  # noqa: E402
from vqpress_server.core.splats.quantize_config import QuantizeConfig  # noqa: E402
from vqpress_server.jobs import JobRecord, JobState, JobTable  # noqa: E402
from vqpress_server.jobs.context import checkpoint_dir_for  # noqa: E402
from vqpress_server.jobs.specs import JobSpec, QuantizeSplatsSpec, TrainFieldSpec  # noqa: E402
from vqpress_server.settings import RayConfig, Settings  # noqa: E402

pytestmark = pytest.mark.slow

TEST_DATA = Path(__file__).resolve().parent / "data"
QUANTIZE = {"dc_codebook": 64, "sh_codebook": 16, "scale_codebook": 64, "rot_codebook": 64, "kmeans_iters": 3}
# A 2D field whose training writes a checkpoint every 60 of its 600 steps (field_handler.py).
FIELD = {"grid": {"kind": "vqad", "levels": 3, "base_resolution": 8, "max_resolution": 64, "features": 8},
         "decoder": {"hidden": 32, "layers": 1}}  # fmt: skip
TRAIN = {"steps": 600, "batch_size": 2048, "lr": 0.02, "mlp_lr": 0.02, "log_every": 10}


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    c = loopback_cluster(2)
    try:
        yield c
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


@dataclass
class Front:
    """The front-end built in this process (the composition root's graph, on port 0)."""

    app: object
    settings: Settings
    table: JobTable
    ply_id: str  # donut_small.ply
    image_id: str  # the astronaut crop, a training image
    stopped: bool = False

    def submit(self, spec: JobSpec) -> JobRecord:
        job = self.table.submit_spec(spec)
        self.app.workers.notify()  # type: ignore[attr-defined]
        return job

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.app.stop()  # type: ignore[attr-defined]


def _settings(data_dir: Path, address: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        port=0,
        executor="ray",
        ray=RayConfig(address=address, node_dir=data_dir / "nodes"),
        poll_s=0.05,
        heartbeat_s=0.5,
        lease_s=30.0,
        max_attempts=3,
    )


@pytest.fixture(scope="module")
def front(cluster: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    from vqpress_server.app import build_app

    s = _settings(tmp_path_factory.mktemp("ray") / "data", cluster.address)  # type: ignore[attr-defined]
    app = build_app(s)
    ply = app.store.put_file(TEST_DATA / "donut_small.ply", "donut.ply", "ply")
    image = app.store.put_file(TEST_DATA / "astronaut_crop128.png", "astronaut.png", "png")
    app.start()
    f = Front(app, s, JobTable(s.jobs_db), ply.id, image.id)
    try:
        assert app.workers.wait_ready(240), app.workers.describe()
        yield f
    finally:
        f.stop()


def wait(table: JobTable, job_id: str, pred: Callable[[JobRecord], bool], timeout: float = 300.0) -> JobRecord:
    deadline = time.monotonic() + timeout
    rec = table.get(job_id)
    while not pred(rec):
        left = deadline - time.monotonic()
        assert left > 0, f"job {job_id} stuck: {rec}"
        rec = table.wait_for_change(job_id, rec.version, timeout=min(left, 0.5))
    return rec


def _node(worker_id: str | None) -> str:
    assert worker_id and worker_id.startswith("ray/"), worker_id
    return worker_id.split("/")[1].split("@")[0]


def _field_spec(front: Front) -> TrainFieldSpec:
    return _train_field(front.image_id)


def _train_field(image_id: str) -> TrainFieldSpec:
    return TrainFieldSpec(image_id, field_config_from_spec(FIELD, 2), train_config_from_spec(TRAIN, 2))


def _quantize(front: Front) -> QuantizeSplatsSpec:
    return QuantizeSplatsSpec(front.ply_id, QuantizeConfig(**QUANTIZE))


def test_jobs_spread_over_the_nodes_and_name_the_node_that_ran_them(front: Front, cluster: object) -> None:
    import ray
    from vqpress_server.core.splats.quantize import decode_vqp_splats

    worker_nodes = {n["NodeID"][:12] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0}
    assert len(worker_nodes) == 2
    jobs = [front.submit(_quantize(front)) for _ in range(4)]
    recs = [wait(front.table, j.id, lambda r: r.terminal) for j in jobs]
    assert all(r.state is JobState.SUCCEEDED for r in recs), recs
    assert {_node(r.worker_id) for r in recs} == worker_nodes  # every worker node ran some
    store = front.app.store  # type: ignore[attr-defined]
    for r in recs:
        # The results came back from the node into the front-end's content-addressed store.
        assert r.result_names == ["donut.vqp", "report.json"] and r.attempts == 1
        assert decode_vqp_splats(store.read_bytes(r.results[0])).num_gaussians == 3000
        assert json.loads(store.read_bytes(r.results[1]))["output_bytes"] == store.stat(r.results[0]).size
    # Same input, same seed: the same bytes on every node.
    assert len({r.results[0] for r in recs}) == 1
    # A node fetches an input once and keeps it for the next jobs (warm state).
    fetched = [r.metrics["node_fetch_bytes"] for r in recs]
    assert sum(f > 0 for f in fetched) <= 2 and sum(fetched) <= 2 * store.stat(front.ply_id).size


def test_a_job_names_its_node_over_grpc(front: Front) -> None:
    import vqpress

    job = front.submit(_quantize(front))
    rec = wait(front.table, job.id, lambda r: r.terminal)
    with vqpress.Client(f"127.0.0.1:{front.app.port}") as client:  # type: ignore[attr-defined]
        st = client.job(job.id).status()
    assert st.state is vqpress.JobState.SUCCEEDED and st.worker == rec.worker_id and _node(st.worker)


def test_cancel_stops_a_job_running_on_a_node(front: Front) -> None:
    job = front.submit(_field_spec(front))
    wait(front.table, job.id, lambda r: r.state is JobState.RUNNING and r.stage.startswith("train"))
    front.table.request_cancel(job.id)
    rec = wait(front.table, job.id, lambda r: r.terminal, timeout=120)
    assert rec.state is JobState.CANCELLED and rec.error == "cancelled while running", rec
    # The actor is free again: the next job runs.
    nxt = front.submit(_quantize(front))
    assert wait(front.table, nxt.id, lambda r: r.terminal).state is JobState.SUCCEEDED


def test_a_node_killed_mid_job_reruns_it_on_another_node_from_its_checkpoint(front: Front, cluster: object) -> None:
    job = front.submit(_field_spec(front))
    # The checkpoint came back to the front-end: the node's own disk is not needed to resume.
    ckpt = checkpoint_dir_for(front.settings.scratch_dir, job.id) / "field.pt"
    deadline = time.monotonic() + 300
    while not ckpt.exists():
        assert time.monotonic() < deadline and not front.table.get(job.id).terminal, front.table.get(job.id)
        time.sleep(0.02)
    first = front.table.get(job.id)
    victim = _node(first.worker_id)
    (node,) = [n for n in cluster.worker_nodes if n.node_id.startswith(victim)]  # type: ignore[attr-defined]
    cluster.remove_node(node, allow_graceful=False)  # type: ignore[attr-defined]  # all its processes, SIGKILL
    rec = wait(front.table, job.id, lambda r: r.terminal, timeout=300)
    assert rec.state is JobState.SUCCEEDED and rec.attempts == 2, rec
    assert _node(rec.worker_id) != victim
    resumed = rec.metrics["resumed_from_step"]
    assert resumed >= 60 and resumed % 60 == 0, resumed
    report = json.loads(front.app.store.read_bytes(rec.results[1]))  # type: ignore[attr-defined]
    assert report["steps"] == 600 and [h["step"] for h in report["history"]] == list(range(10, 601, 10))
    # The front-end's copy goes once the job ended: right after the table says so, so wait for it.
    gone_by = time.monotonic() + 120  # a bound that only stops a hang
    while ckpt.parent.exists():
        assert time.monotonic() < gone_by, f"{ckpt.parent} is still there after the job ended"
        time.sleep(0.02)
    add_worker_node(cluster)  # back to two worker nodes for the tests after this one


def test_the_front_end_killed_and_restarted_loses_no_job(front: Front, cluster: object, tmp_path: Path) -> None:
    front.stop()  # one front-end on the cluster at a time: it hands its workers' CPUs back
    data = tmp_path / "data"
    log = tmp_path / "server.log"
    table = JobTable(data / "jobs.sqlite3")
    from vqpress_server.artifacts import ArtifactStore

    image = ArtifactStore(data / "artifacts", 1 << 30).put_file(TEST_DATA / "astronaut_crop128.png", "a.png", "png")
    proc, _ = start_server(data, cluster.address, log)  # type: ignore[attr-defined]
    try:
        job = table.submit_spec(_train_field(image.id))
        ckpt = checkpoint_dir_for(data / "scratch", job.id) / "field.pt"
        deadline = time.monotonic() + 300
        while not ckpt.exists():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # no clean-up of any kind
        proc.wait()
        assert table.get(job.id).state is JobState.RUNNING  # held by an actor that ended with its front-end
        proc, _ = start_server(data, cluster.address, log)  # type: ignore[attr-defined]
        rec = wait(table, job.id, lambda r: r.terminal, timeout=300)
    finally:
        stop_server(proc)
    assert rec.state is JobState.SUCCEEDED, (rec, log.read_text()[-3000:])
    assert rec.attempts == 1  # the front-end's restart is not counted against the job
    assert rec.metrics["resumed_from_step"] >= 60
