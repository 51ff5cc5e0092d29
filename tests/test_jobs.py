"""The job table (SQLite) and the worker pool, end to end with the real handlers."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from vqpress_server.artifacts import ArtifactStore
from vqpress_server.core.splats.quantize_config import QuantizeConfig
from vqpress_server.jobs import JobKind, JobNotFound, JobState, JobTable, LeaseLost, QueueFull, WorkerPool
from vqpress_server.jobs.specs import (
    CameraSpec,
    ExportSplatsSpec,
    QuantizeSplatsSpec,
    RenderSplatsSpec,
    TrainSplatsSpec,
)
from vqpress_server.settings import Settings

TEST_DATA = Path(__file__).resolve().parent / "data"


# -- the table -------------------------------------------------------------------------
def test_submit_get_list_and_versions(tmp_path: Path) -> None:
    t = JobTable(tmp_path / "jobs.sqlite3")
    a = t.submit(JobKind.QUANTIZE, {"source": {"artifact": "x"}})
    b = t.submit("render", {"cameras": []})
    assert a.state is JobState.QUEUED and a.kind is JobKind.QUANTIZE and not a.terminal
    assert a.spec == {"source": {"artifact": "x"}} and a.attempts == 0 and a.worker_id is None
    assert [j.id for j in t.list()] == [b.id, a.id]  # newest first
    assert [j.id for j in t.list([JobState.RUNNING])] == []
    with pytest.raises(JobNotFound):
        t.get("nope")
    with pytest.raises(ValueError):
        t.submit("bake_a_cake", {})
    with pytest.raises(ValueError):
        t.submit("quantize", {"x": float("nan")})

    job = t.claim("w1", lease_s=30)
    assert job is not None and job.id == a.id  # oldest first
    assert job.state is JobState.RUNNING and job.attempts == 1 and job.worker_id == "w1"
    assert job.version > a.version
    v = job.version
    assert t.set_progress(a.id, "w1", "kmeans", 0.5, {"inertia": 2.0, "bad": float("nan")}) is JobState.RUNNING
    got = t.get(a.id)
    assert (got.stage, got.progress, got.metrics, got.version) == ("kmeans", 0.5, {"inertia": 2.0}, v + 1)
    t.succeed(a.id, "w1", ["r1", "r2"], ["a.vqp", "report.json"], {"ratio": 12.5})
    done = t.get(a.id)
    assert done.state is JobState.SUCCEEDED and done.terminal and done.progress == 1.0
    assert done.results == ["r1", "r2"] and done.result_names == ["a.vqp", "report.json"]
    assert done.metrics == {"inertia": 2.0, "ratio": 12.5}
    assert done.version == v + 2 and done.finished_at is not None
    # A worker that does not hold a job cannot touch it.
    with pytest.raises(LeaseLost):
        t.set_progress(a.id, "w1", "again", 0.1)
    with pytest.raises(LeaseLost):
        t.fail(b.id, "w2", "not mine")


def test_queue_limit(tmp_path: Path) -> None:
    t = JobTable(tmp_path / "jobs.sqlite3")
    t.submit("export", {}, max_queued=2)
    t.submit("export", {}, max_queued=2)
    with pytest.raises(QueueFull, match="2 jobs are already queued"):
        t.submit("export", {}, max_queued=2)
    t.claim("w", 10)  # running jobs do not count against the queue
    t.submit("export", {}, max_queued=2)


def test_cancel_queued_and_running(tmp_path: Path) -> None:
    t = JobTable(tmp_path / "jobs.sqlite3")
    running = t.submit("render", {})
    queued = t.submit("render", {})
    assert t.claim("w1", 30).id == running.id  # type: ignore[union-attr]
    c = t.request_cancel(queued.id)
    assert c.state is JobState.CANCELLED and c.finished_at is not None
    r = t.request_cancel(running.id)
    assert r.state is JobState.CANCELLING
    assert t.heartbeat(running.id, "w1", 30) is JobState.CANCELLING
    assert t.set_progress(running.id, "w1", "render 2/9", 0.2) is JobState.CANCELLING
    t.mark_cancelled(running.id, "w1")
    assert t.get(running.id).state is JobState.CANCELLED
    # Cancelling a finished job changes nothing; a cancelled job is never claimed.
    v = t.get(queued.id).version
    assert t.request_cancel(queued.id).version == v
    assert t.claim("w2", 30) is None
    with pytest.raises(JobNotFound):
        t.request_cancel("missing")


class _Clock:
    """The job table's clock, moved by the test alone: a lease expires when the test says so, not
    when a loaded machine happens to pause the test for longer than the lease."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


def test_lease_expiry_requeue_and_max_attempts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vqpress_server.jobs.table as table_module

    clock = _Clock()
    monkeypatch.setattr(table_module, "time", clock)
    t = JobTable(tmp_path / "jobs.sqlite3", max_attempts=2)
    job = t.submit("quantize", {})
    assert t.claim("w1", lease_s=10) is not None
    clock.now += 9.9
    assert t.requeue_expired() == 0  # lease still valid
    clock.now += 0.2
    assert t.requeue_expired() == 1
    j = t.get(job.id)
    assert j.state is JobState.QUEUED and j.attempts == 1 and j.error == ""
    with pytest.raises(LeaseLost):  # the old worker lost it
        t.heartbeat(job.id, "w1", 10)
    assert t.claim("w2", lease_s=10).attempts == 2  # type: ignore[union-attr]
    clock.now += 9
    t.heartbeat(job.id, "w2", lease_s=10)  # renewed: 10 s from now
    clock.now += 9
    assert t.requeue_expired() == 0
    clock.now += 2
    assert t.requeue_expired() == 1
    j = t.get(job.id)
    assert j.state is JobState.FAILED and "worker lost 2 times" in j.error and j.finished_at is not None
    # CANCELLING with an expired lease ends CANCELLED.
    c = t.submit("quantize", {})
    t.claim("w3", lease_s=10)
    t.request_cancel(c.id)
    clock.now += 11
    t.requeue_expired()
    assert t.get(c.id).state is JobState.CANCELLED


def test_requeue_by_worker_and_release(tmp_path: Path) -> None:
    t = JobTable(tmp_path / "jobs.sqlite3", max_attempts=3)
    a = t.submit("quantize", {})
    t.claim("dead", lease_s=3600)
    assert t.requeue_expired() == 0
    assert t.requeue_expired(worker_id="dead") == 1  # the pool saw the process die
    assert t.get(a.id).state is JobState.QUEUED
    t.claim("w", lease_s=3600)
    t.release(a.id, "w")  # a clean shutdown does not count as an attempt
    j = t.get(a.id)
    assert j.state is JobState.QUEUED and j.attempts == 1


def _race(path: str, worker: str, out: mp.Queue, start: float) -> None:
    t = JobTable(Path(path))
    while time.time() < start:
        time.sleep(0.001)
    got = []
    while (job := t.claim(worker, 60)) is not None:
        got.append(job.id)
    out.put(got)


def test_claim_is_atomic_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    t = JobTable(path)
    ids = {t.submit("render", {"i": i}).id for i in range(60)}
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    start = time.time() + 1.5
    procs = [ctx.Process(target=_race, args=(str(path), f"w{i}", q, start)) for i in range(3)]
    for p in procs:
        p.start()
    got = [q.get(timeout=180) for _ in procs]  # a bound for a stuck claim: spawning 3 is slow when loaded
    for p in procs:
        p.join(30)
    claimed = [i for g in got for i in g]
    assert sorted(claimed) == sorted(ids)  # every job exactly once
    assert all(j.attempts == 1 for j in t.list(limit=100))


def test_wait_for_change_wakes_fast(tmp_path: Path) -> None:
    # A long poll_s: a change seen well within half of it was seen by the short first polls, not by
    # a poll_s sleep. (No tight deadline: a loaded machine may be slow, never 15 s slow here.)
    poll_s = 30.0
    t = JobTable(tmp_path / "jobs.sqlite3", poll_s=poll_s)
    job = t.submit("render", {})
    # Nothing changes: returns the same version after the timeout.
    t0 = time.monotonic()
    assert t.wait_for_change(job.id, job.version, timeout=0.1).version == job.version
    assert time.monotonic() - t0 >= 0.1

    def claim_soon() -> None:
        time.sleep(0.05)
        JobTable(tmp_path / "jobs.sqlite3").claim("w", 10)

    th = threading.Thread(target=claim_soon)
    th.start()
    t0 = time.monotonic()
    rec = t.wait_for_change(job.id, job.version, timeout=2 * poll_s)
    waited = time.monotonic() - t0
    th.join()
    assert rec.state is JobState.RUNNING
    assert waited < poll_s / 2  # seen by the doubling polls from 1 ms
    # A change already made is seen by the first query.
    t2 = JobTable(tmp_path / "jobs.sqlite3")
    t2.set_progress(job.id, "w", "x", 0.5)
    t0 = time.monotonic()
    assert t.wait_for_change(job.id, rec.version, timeout=2 * poll_s).stage == "x"
    assert time.monotonic() - t0 < poll_s / 2
    # A terminal job returns at once even when nothing is newer.
    t2.succeed(job.id, "w", [], [])
    final = t.get(job.id)
    t0 = time.monotonic()
    assert t.wait_for_change(job.id, final.version, timeout=2 * poll_s).state is JobState.SUCCEEDED
    assert time.monotonic() - t0 < poll_s / 2


def test_scratch_clean_keeps_checkpoints_until_the_job_ends(tmp_path: Path) -> None:
    from vqpress_server.jobs.context import checkpoint_dir_for
    from vqpress_server.jobs.worker import _clean_scratch

    t = JobTable(tmp_path / "jobs.sqlite3")
    running, done, cancelled = (t.submit("train_field", {}) for _ in range(3))
    assert [t.claim("w", 60).id for _ in range(3)] == [running.id, done.id, cancelled.id]  # type: ignore[union-attr]
    queued = t.submit("train_field", {})
    t.succeed(done.id, "w", [], [], {})
    t.request_cancel(cancelled.id)
    t.mark_cancelled(cancelled.id, "w")
    scratch = tmp_path / "scratch"
    keep = [
        checkpoint_dir_for(scratch, queued.id),  # re-queued after a worker death: resumes from here
        checkpoint_dir_for(scratch, running.id),
        scratch / f"{running.id}-1",  # the attempt that runs now
    ]
    drop = [
        checkpoint_dir_for(scratch, done.id),
        checkpoint_dir_for(scratch, cancelled.id),
        checkpoint_dir_for(scratch, "f" * 32),  # a job the table does not know
        scratch / f"{queued.id}-1",  # the attempt of a killed worker
        scratch / f"{running.id}-0",  # an older attempt
        scratch / f"{done.id}-1",
    ]
    for d in keep + drop:
        (d / "sub").mkdir(parents=True)
    _clean_scratch(scratch, t)
    assert sorted(p.name for p in scratch.iterdir()) == sorted(d.name for d in keep)
    t.request_cancel(running.id)
    t.mark_cancelled(running.id, "w")
    _clean_scratch(scratch, t)
    assert [p.name for p in scratch.iterdir()] == [checkpoint_dir_for(scratch, queued.id).name]


def test_writes_that_change_the_table_are_announced(tmp_path: Path) -> None:
    # Each committed write that changed a row calls on_write and bumps this process's change count
    # (shared by every table on the file); reads and writes that changed nothing do neither.
    calls: list[int] = []
    t = JobTable(tmp_path / "jobs.sqlite3", on_write=lambda: calls.append(1))
    other = JobTable(tmp_path / "jobs.sqlite3")
    assert other.changes is t.changes
    c0 = t.changes.count
    job = t.submit("render", {})
    assert len(calls) == 1 and t.changes.count == c0 + 1
    t.get(job.id), t.list(), t.wait_for_change(job.id, job.version, timeout=0)
    assert other.claim("w", 10) is not None  # another table of this process: the count, not the hook
    assert len(calls) == 1 and t.changes.count == c0 + 2
    assert t.claim("w2", 10) is None  # nothing queued: nothing changed
    assert len(calls) == 1 and t.changes.count == c0 + 2
    t.set_progress(job.id, "w", "x", 0.5)
    assert len(calls) == 2
    with pytest.raises(LeaseLost):
        t.set_progress(job.id, "someone else", "x", 0.6)  # rolled back: not announced
    assert len(calls) == 2 and t.changes.count == c0 + 3
    # A hook that fails does not fail the write: the announcement is a hint, the table the record.
    broken = JobTable(tmp_path / "jobs.sqlite3", on_write=lambda: 1 / 0)  # type: ignore[func-returns-value,return-value]
    broken.succeed(job.id, "w", [], [])
    assert broken.get(job.id).state is JobState.SUCCEEDED and t.changes.count == c0 + 4


def test_change_count_wakes_its_waiters(tmp_path: Path) -> None:
    changes = JobTable(tmp_path / "jobs.sqlite3").changes
    seen = changes.count
    assert not changes.wait(seen, 0.01)  # nothing written: the timeout
    changes.bump()
    assert changes.wait(seen, 600.0)  # already past what the waiter saw: at once, nothing missed
    seen = changes.count
    got: list[bool] = []
    th = threading.Thread(target=lambda: got.append(changes.wait(seen, 600.0)), daemon=True)
    th.start()
    changes.bump()  # wakes the waiter long before its 600 s
    th.join(60)
    assert got == [True]


def test_wait_for_change_wakes_on_the_change_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The waiter's polls are made to never end on their own (every wait asks for 10 minutes), so
    # the only thing that can return it is the write's announcement: no timing is assumed.
    t = JobTable(tmp_path / "jobs.sqlite3", poll_s=600.0)
    job = t.submit("render", {})
    changes = t.changes
    real_wait = changes.wait
    asleep = threading.Event()

    def long_wait(seen: int, timeout: float) -> bool:
        asleep.set()
        return real_wait(seen, 600.0)

    monkeypatch.setattr(changes, "wait", long_wait)
    got: list[object] = []

    def wait() -> None:
        got.append(t.wait_for_change(job.id, job.version, timeout=1200.0))

    th = threading.Thread(target=wait, daemon=True)
    th.start()
    assert asleep.wait(120.0), "the waiter never went to sleep"
    JobTable(tmp_path / "jobs.sqlite3").claim("w", 10)  # another table on the file: it bumps the same count
    th.join(120.0)
    assert not th.is_alive(), "the waiter slept through an announced write"
    assert got[0].state is JobState.RUNNING  # type: ignore[attr-defined]


# -- the worker pool, end to end -------------------------------------------------------
def _settings(tmp_path: Path, **kw: object) -> Settings:
    base = dict(data_dir=tmp_path / "data", workers=1, poll_s=0.05, heartbeat_s=0.2, lease_s=10.0)
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def _wait(table: JobTable, job_id: str, pred, timeout: float = 60.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    rec = table.get(job_id)
    while not pred(rec):
        left = deadline - time.monotonic()
        assert left > 0, f"job {job_id} stuck: {rec}"
        rec = table.wait_for_change(job_id, rec.version, timeout=left)
    return rec


def _done(rec) -> bool:  # noqa: ANN001
    return rec.terminal


def _running_with_progress(rec) -> bool:  # noqa: ANN001
    return rec.state is JobState.RUNNING and rec.progress > 0


def _small_scene(store: ArtifactStore, n: int) -> tuple[str, object]:
    """The first ``n`` Gaussians of the donut fixture, stored as an inline-tensor (npz) artifact."""
    import torch
    from vqpress_server.core.splats.formats import load_scene

    splats, _ = load_scene(TEST_DATA / "donut_small.ply")
    sub = splats.index(torch.arange(n))
    path = store.root.parent / f"small{n}.npz"
    np.savez(path, **sub.numpy())
    return store.put_file(path, f"small{n}.npz", "npz").id, sub


def _orbit(splats, n: int, size: int) -> tuple[CameraSpec, ...]:  # noqa: ANN001
    from vqpress_server.core.render.cameras import camera_to_dict, orbit_cameras

    return tuple(CameraSpec.from_json(camera_to_dict(c)) for c in orbit_cameras(splats, n=n, width=size, height=size))


@pytest.fixture
def donut() -> Path:
    path = TEST_DATA / "donut_small.ply"
    if not path.exists():
        pytest.skip("tests/data/donut_small.ply not present")
    return path


def test_pool_runs_real_jobs_and_survives_failures(tmp_path: Path, donut: Path) -> None:
    from vqpress_server.core.render.cameras import camera_from_dict
    from vqpress_server.core.render.splats import render
    from vqpress_server.core.splats.formats import load_scene, read_splats

    s = _settings(tmp_path)
    store = ArtifactStore(s.artifacts_dir, s.max_artifact_bytes)
    table = JobTable(s.jobs_db)
    ply = store.put_file(donut, "donut.ply", "ply")
    npz_id, small = _small_scene(store, 40)
    junk = store.put_bytes(b"\x89PNG not a scene", "photo.png", "png")
    lying = b"ply\nformat binary_little_endian 1.0\nelement vertex 999999999\nproperty float x\nend_header\n"
    broken = store.put_bytes(lying + b"\0" * 12, "broken.ply", "ply")
    cams = _orbit(small, 2, 20)
    bad_cfg = QuantizeSplatsSpec(ply.id).to_json()
    bad_cfg["config"] = {"dc_codebook": 4096, "no_such_field": 1}  # as no RPC would store it
    with WorkerPool(s) as pool:
        assert pool.wait_ready(60)
        pids = pool.pids()
        jobs = {
            "untyped": table.submit(JobKind.TRAIN_SPLATS, {"source": {"artifact": ply.id}}),
            "train": table.submit_spec(TrainSplatsSpec(ply.id)),
            "junk": table.submit_spec(ExportSplatsSpec(junk.id, "ply")),
            "broken": table.submit_spec(ExportSplatsSpec(broken.id, "splat")),
            "missing": table.submit_spec(ExportSplatsSpec("ab" * 32, "ply")),
            "bad_cfg": table.submit(JobKind.QUANTIZE, bad_cfg),
            "splat": table.submit_spec(ExportSplatsSpec(ply.id, "splat")),
            "render": table.submit_spec(RenderSplatsSpec(npz_id, cams, (1.0, 1.0, 1.0), "float32")),
        }
        pool.notify()
        ends = {k: _wait(table, j.id, _done) for k, j in jobs.items()}
        assert pool.pids() == pids  # failures do not cost the worker
    for k in ("untyped", "train", "junk", "broken", "missing", "bad_cfg"):
        assert ends[k].state is JobState.FAILED and ends[k].failure == "input", (k, ends[k])
    assert 'names its "type"' in ends["untyped"].error  # a stored spec is one of jobs/specs.py's
    assert "donut.ply" in ends["train"].error, ends["train"]  # a scene is no dataset
    assert "is not a scene" in ends["junk"].error
    assert "no artifact" in ends["missing"].error
    assert ends["broken"].error.startswith("broken.ply") and str(s.data_dir) not in ends["broken"].error
    assert "no_such_field" in ends["bad_cfg"].error and not ends["bad_cfg"].error.startswith("ConfigError")

    # Export: a .splat of the same scene, stored with its source job.
    e = ends["splat"]
    assert e.state is JobState.SUCCEEDED and e.result_names == ["donut.splat"], e
    info = store.stat(e.results[0])
    assert info.kind == "splat" and info.source_job == e.id and e.metrics["num_gaussians"] == 3000
    out = read_splats(store.path(info.id), "splat")
    ref, _ = load_scene(donut)
    assert out.num_gaussians == 3000
    assert np.allclose(out.means.numpy(), ref.means.numpy(), atol=1e-5)

    # Render: float32 images in camera order, equal to rendering in this process.
    r = ends["render"]
    assert r.state is JobState.SUCCEEDED and len(r.results) == 2, r
    for rid, cam in zip(r.results, cams, strict=True):
        img = np.load(store.path(rid), allow_pickle=False)
        want = render(small, camera_from_dict(cam.to_json()), background=(1.0, 1.0, 1.0)).numpy()
        assert img.dtype == np.float32 and img.shape == (20, 20, 3)
        np.testing.assert_allclose(img, want, atol=1e-5)
    # No scratch left behind.
    assert list(s.scratch_dir.iterdir()) == []


def test_pool_quantize_job_produces_a_decodable_vqp(tmp_path: Path, donut: Path) -> None:
    pytest.importorskip("vqpress_server.core.splats.compress")
    from vqpress_server.core.splats.formats import load_scene
    from vqpress_server.core.splats.quantize import decode_vqp_splats

    s = _settings(tmp_path)
    store = ArtifactStore(s.artifacts_dir, s.max_artifact_bytes)
    table = JobTable(s.jobs_db)
    ply = store.put_file(donut, "donut.ply", "ply")
    scene, _ = load_scene(donut)
    config = {"dc_codebook": 64, "sh_codebook": 16, "scale_codebook": 64, "rot_codebook": 64, "kmeans_iters": 3}
    spec = QuantizeSplatsSpec(ply.id, QuantizeConfig(**config), _orbit(scene, 2, 32))
    with WorkerPool(s) as pool:
        job = table.submit_spec(spec)
        pool.notify()
        rec = _wait(table, job.id, _done, timeout=120)
    assert rec.state is JobState.SUCCEEDED, rec
    assert rec.result_names == ["donut.vqp", "report.json"]
    vqp_id, report_id = rec.results
    assert store.stat(vqp_id).kind == "vqp" and store.stat(report_id).kind == "json"
    decoded = decode_vqp_splats(store.read_bytes(vqp_id))
    assert decoded.num_gaussians == 3000 - 450  # weighed by the job's cameras, the least important 15% dropped
    report = json.loads(store.read_bytes(report_id))
    assert report["num_gaussians_input"] == 3000 and report["importance"] == "given"
    assert report["output_bytes"] == store.stat(vqp_id).size == rec.metrics["output_bytes"]
    assert rec.metrics["ratio"] == pytest.approx(ply.size / store.stat(vqp_id).size, rel=1e-6)
    assert rec.metrics["ratio"] > 3
    assert report["num_cameras"] == 2 and rec.metrics["psnr"] == pytest.approx(report["psnr"])
    assert rec.metrics["psnr"] > 20 and 0.5 < rec.metrics["ssim"] <= 1


def test_cancel_a_running_render(tmp_path: Path, donut: Path) -> None:
    s = _settings(tmp_path)
    store = ArtifactStore(s.artifacts_dir, s.max_artifact_bytes)
    table = JobTable(s.jobs_db)
    src, small = _small_scene(store, 40)
    spec = RenderSplatsSpec(src, _orbit(small, 400, 16), encoding="float32")
    with WorkerPool(s) as pool:
        job = table.submit_spec(spec)
        pool.notify()
        _wait(table, job.id, _running_with_progress)
        assert table.request_cancel(job.id).state is JobState.CANCELLING
        rec = _wait(table, job.id, _done, timeout=120)
        # It stopped at the next camera, not after 400: its progress says so, whatever the clock did.
        assert rec.state is JobState.CANCELLED and rec.results == [] and rec.progress < 0.5
        # The worker is free again.
        after = table.submit(JobKind.TRAIN_FIELD, {})
        pool.notify()
        assert _wait(table, after.id, _done).state is JobState.FAILED
    assert store.list(kind="npy") == []


def test_killed_worker_is_restarted_and_its_job_recovered(tmp_path: Path, donut: Path) -> None:
    s = _settings(tmp_path, max_attempts=2)
    store = ArtifactStore(s.artifacts_dir, s.max_artifact_bytes)
    table = JobTable(s.jobs_db)
    src, small = _small_scene(store, 40)
    # Enough views that the job is still running when the test kills its worker (~5 ms a view).
    spec = RenderSplatsSpec(src, _orbit(small, 200, 16), encoding="float32")
    with WorkerPool(s) as pool:
        # Killed once: re-queued, run again by the restarted worker, and completed.
        job = table.submit_spec(spec)
        pool.notify()
        _wait(table, job.id, _running_with_progress)
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGKILL)
        rec = _wait(table, job.id, _done, timeout=60)
        assert rec.state is JobState.SUCCEEDED and rec.attempts == 2, rec
        assert len(rec.results) == 200
        assert pool.pids() and pool.pids() != [pid]
        # Killed every time: fails with a reason after max_attempts.
        doomed = table.submit_spec(spec)
        pool.notify()
        for _ in range(2):
            _wait(table, doomed.id, _running_with_progress)
            (pid,) = pool.pids()
            os.kill(pid, signal.SIGKILL)
            _wait(table, doomed.id, lambda r, pid=pid: r.state is not JobState.RUNNING or str(pid) not in r.worker_id)
        rec = _wait(table, doomed.id, _done)
        assert rec.state is JobState.FAILED and "worker lost 2 times" in rec.error, rec


def test_restart_picks_up_queued_and_interrupted_jobs(tmp_path: Path, donut: Path) -> None:
    s = _settings(tmp_path)
    store = ArtifactStore(s.artifacts_dir, s.max_artifact_bytes)
    table = JobTable(s.jobs_db)
    src, small = _small_scene(store, 40)
    spec = RenderSplatsSpec(src, _orbit(small, 200, 16), encoding="float32")
    first = WorkerPool(s)
    first.start()
    interrupted = table.submit_spec(spec)
    first.notify()
    _wait(table, interrupted.id, _running_with_progress)
    queued = table.submit_spec(ExportSplatsSpec(src, "ply"))
    first.stop(timeout=10)  # the server goes down mid-job
    rec = table.get(interrupted.id)
    assert rec.state is JobState.QUEUED and rec.attempts == 0, rec  # handed back, not counted as lost
    assert table.get(queued.id).state is JobState.QUEUED
    with WorkerPool(s):  # the server comes back on the same data dir
        a = _wait(table, interrupted.id, _done)
        b = _wait(table, queued.id, _done)
    assert a.state is JobState.SUCCEEDED and len(a.results) == 200, a
    assert b.state is JobState.SUCCEEDED and b.result_names == ["small40.ply"], b


@pytest.mark.gpu
def test_gpu_worker_renders_with_warm_gsplat(tmp_path: Path, donut: Path) -> None:
    import torch
    from PIL import Image
    from vqpress_server.core.render.cameras import camera_from_dict
    from vqpress_server.core.render.splats import render
    from vqpress_server.core.splats.formats import load_scene

    s = _settings(tmp_path, workers=None)  # one worker per visible GPU
    store = ArtifactStore(s.artifacts_dir, s.max_artifact_bytes)
    table = JobTable(s.jobs_db)
    ply = store.put_file(donut, "donut.ply", "ply")
    scene, _ = load_scene(donut)
    cams = _orbit(scene, 4, 64)
    with WorkerPool(s) as pool:
        assert len(pool.pids()) == torch.cuda.device_count()
        assert pool.wait_ready(900)  # gsplat kernels loaded (compiled on a first run)
        jobs = [table.submit_spec(RenderSplatsSpec(ply.id, cams, encoding=enc)) for enc in ("float32", "png")]
        pool.notify()
        recs = [_wait(table, j.id, _done, timeout=120) for j in jobs]
    assert all(r.state is JobState.SUCCEEDED for r in recs), recs
    on_gpu = scene.to("cuda")
    for fid, pid, cam in zip(recs[0].results, recs[1].results, cams, strict=True):
        want = render(on_gpu, camera_from_dict(cam.to_json()), backend="gsplat").cpu().numpy()
        got = np.load(store.path(fid), allow_pickle=False)
        np.testing.assert_allclose(got, want, atol=1e-4)
        png = np.asarray(Image.open(store.path(pid)))
        assert png.shape == (64, 64, 3)
        assert np.abs(png.astype(np.float32) / 255 - np.clip(want, 0, 1)).max() <= 1 / 255 + 1e-6


def test_pool_relays_its_workers_writes(tmp_path: Path, donut: Path) -> None:
    # The server's process learns of every write a worker makes (claim, progress, the end): the
    # pool relays them to this process's change count, which wakes Render and WatchJob calls.
    s = _settings(tmp_path)
    store = ArtifactStore(s.artifacts_dir, s.max_artifact_bytes)
    table = JobTable(s.jobs_db)
    npz_id, small = _small_scene(store, 20)
    with WorkerPool(s) as pool:
        assert pool.wait_ready(60)
        job = table.submit_spec(RenderSplatsSpec(npz_id, _orbit(small, 1, 8), (0.0, 0.0, 0.0), "png"))
        seen = table.changes.count  # after the submit: what follows is the worker's
        pool.notify()
        deadline = time.monotonic() + 240  # a generous cap on the job state (the test times out at 300 s)
        while not table.get(job.id).terminal:  # polled, not waited on the count
            assert time.monotonic() < deadline, table.get(job.id)
            time.sleep(0.01)
        assert table.get(job.id).state is JobState.SUCCEEDED
        assert table.changes.wait(seen, 30.0), "no write of the worker was relayed"
