"""The job table (SQLite) and the worker pool, end to end with the real handlers."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from pathlib import Path

import pytest
from vqpress_server.jobs import JobKind, JobNotFound, JobState, JobTable, LeaseLost, QueueFull

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


def test_lease_expiry_requeue_and_max_attempts(tmp_path: Path) -> None:
    t = JobTable(tmp_path / "jobs.sqlite3", max_attempts=2)
    job = t.submit("quantize", {})
    assert t.claim("w1", lease_s=0.05) is not None
    assert t.requeue_expired() == 0  # lease still valid
    time.sleep(0.1)
    assert t.requeue_expired() == 1
    j = t.get(job.id)
    assert j.state is JobState.QUEUED and j.attempts == 1 and j.error == ""
    with pytest.raises(LeaseLost):  # the old worker lost it
        t.heartbeat(job.id, "w1", 10)
    assert t.claim("w2", lease_s=0.05).attempts == 2  # type: ignore[union-attr]
    t.heartbeat(job.id, "w2", lease_s=0.05)
    time.sleep(0.1)
    assert t.requeue_expired() == 1
    j = t.get(job.id)
    assert j.state is JobState.FAILED and "worker lost 2 times" in j.error and j.finished_at is not None
    # CANCELLING with an expired lease ends CANCELLED.
    c = t.submit("quantize", {})
    t.claim("w3", lease_s=0.05)
    t.request_cancel(c.id)
    time.sleep(0.1)
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
    got = [q.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)
    claimed = [i for g in got for i in g]
    assert sorted(claimed) == sorted(ids)  # every job exactly once
    assert all(j.attempts == 1 for j in t.list(limit=100))


def test_wait_for_change_wakes_fast(tmp_path: Path) -> None:
    t = JobTable(tmp_path / "jobs.sqlite3", poll_s=0.2)
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
    rec = t.wait_for_change(job.id, job.version, timeout=5)
    waited = time.monotonic() - t0
    th.join()
    assert rec.state is JobState.RUNNING
    assert waited < 0.05 + 0.06  # the 1 ms start of the backoff: seen within a few ms, not poll_s
    # A fresh change is seen within milliseconds.
    t2 = JobTable(tmp_path / "jobs.sqlite3")
    t2.set_progress(job.id, "w", "x", 0.5)
    t0 = time.monotonic()
    assert t.wait_for_change(job.id, rec.version, timeout=5).stage == "x"
    assert time.monotonic() - t0 < 0.02
    # A terminal job returns at once even when nothing is newer.
    t2.succeed(job.id, "w", [], [])
    final = t.get(job.id)
    t0 = time.monotonic()
    assert t.wait_for_change(job.id, final.version, timeout=5).state is JobState.SUCCEEDED
    assert time.monotonic() - t0 < 0.05
