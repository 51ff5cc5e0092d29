"""Resource faults a server meets in the field: many open streams, a full disk, a second server on
the same port or data directory. Real servers on loopback (port 0, temp data dirs)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from vqpress.v1 import vqpress_pb2 as pb
from vqpress.v1 import vqpress_pb2_grpc as pb_grpc
from vqpress_server.app import App, build_app
from vqpress_server.artifacts import ArtifactStore
from vqpress_server.jobs import JobState, JobTable, StorageFull
from vqpress_server.jobs.specs import ExportSplatsSpec
from vqpress_server.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DONUT = REPO / "tests" / "data" / "donut.ply"  # 2.5 MB: its export does not fit in a few hundred KiB
C = grpc.StatusCode


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[App]:
    app = build_app(settings)
    app.start()
    try:
        yield app
    finally:
        app.stop(grace=1.0)


def health(channel: grpc.Channel, timeout: float = 10) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout).status


def wait_job(table: JobTable, job_id: str, timeout: float = 120):  # noqa: ANN201
    deadline = time.monotonic() + timeout
    rec = table.get(job_id)
    while not rec.terminal:
        left = deadline - time.monotonic()
        assert left > 0, f"job {job_id} stuck: {rec}"
        rec = table.wait_for_change(job_id, rec.version, timeout=left)
    return rec


# -- many streams ---------------------------------------------------------------------------
def test_open_streams_are_capped_and_health_always_answers(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", port=0, workers=0)  # no worker: the job stays queued
    n = settings.max_streams + 16  # 64 by default: as many as used to take every server thread
    with serving(settings) as app, grpc.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        stub = pb_grpc.VqpressStub(ch)
        job = app.jobs.submit_spec(ExportSplatsSpec("ab" * 32, "ply"))
        open_calls, refused = [], []
        for _ in range(n):
            call = stub.WatchJob(pb.WatchJobRequest(id=job.id), timeout=120)
            try:
                assert next(call).id == job.id  # open: it answered its first status
                open_calls.append(call)
            except grpc.RpcError as e:
                refused.append(e)
        try:
            assert len(open_calls) == settings.max_streams and len(refused) == n - settings.max_streams
            e = refused[0]
            assert e.code() is C.RESOURCE_EXHAUSTED and "max_streams" in (e.details() or ""), e
            # Everything else still answers while the streams stay open.
            assert health(ch) == health_pb2.HealthCheckResponse.SERVING
            assert stub.GetJob(pb.GetJobRequest(id=job.id), timeout=10).state == pb.JOB_STATE_QUEUED
            # A closed stream frees its slot.
            open_calls.pop().cancel()
            deadline = time.monotonic() + 30
            while True:
                call = stub.WatchJob(pb.WatchJobRequest(id=job.id), timeout=120)
                try:
                    next(call)
                    open_calls.append(call)
                    break
                except grpc.RpcError as e:
                    assert e.code() is C.RESOURCE_EXHAUSTED and time.monotonic() < deadline, e
                    time.sleep(0.05)
        finally:
            for call in open_calls:
                call.cancel()


# -- a full disk ----------------------------------------------------------------------------
def _mount_small_fs(path: Path, size: str) -> bool:
    """A size-limited tmpfs at ``path`` (needs root); False where the system does not allow it."""
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _fill(path: Path, leave: int) -> None:
    """Write ``path`` until its filesystem has about ``leave`` bytes free (all of it for 0)."""
    with open(path, "wb") as f:
        block = b"\0" * (1 << 20)
        while True:
            free = os.statvfs(path.parent).f_bavail * os.statvfs(path.parent).f_frsize
            want = free - leave
            if want <= 0:
                break
            try:
                f.write(block[: min(len(block), want)])
                f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small-fs"
    if not _mount_small_fs(mnt, "40m"):
        pytest.skip("cannot mount a size-limited tmpfs here (needs root); the injected-ENOSPC test covers the worker")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, timeout=30)


def test_a_full_disk_fails_the_job_with_the_reason_and_refuses_submits(small_fs: Path) -> None:
    settings = Settings(data_dir=small_fs / "data", port=0, workers=1, poll_s=0.05, min_free_bytes=256 << 10)
    export = pb.ExportRequest(format=pb.EXPORT_FORMAT_PLY)
    with serving(settings) as app, grpc.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        stub = pb_grpc.VqpressStub(ch)
        src = app.store.put_file(DONUT, "donut.ply", "ply")
        export.artifact.id = src.id
        assert app.workers.wait_ready(120)
        (worker,) = app.workers.pids()

        # Room to accept the job, not to write its 2.5 MB result: it fails, saying why.
        _fill(small_fs / "filler-1", leave=512 << 10)
        ref = stub.Export(export, timeout=30)
        rec = wait_job(app.jobs, ref.id)
        assert rec.state is JobState.FAILED, rec
        assert "out of disk space" in rec.error and "free disk space" in rec.error, rec.error
        assert str(small_fs) not in rec.error  # the server's paths mean nothing to the client
        assert app.workers.pids() == [worker]  # the worker survived
        assert not list(settings.scratch_dir.iterdir())  # its partial output is gone

        # No room at all: submits are refused up front.
        _fill(small_fs / "filler-2", leave=0)
        with pytest.raises(grpc.RpcError) as ei:
            stub.Export(export, timeout=30)
        assert ei.value.code() is C.RESOURCE_EXHAUSTED and "free" in (ei.value.details() or ""), ei.value
        assert health(ch) == health_pb2.HealthCheckResponse.SERVING

        # Space freed: the same worker runs the same job to the end.
        (small_fs / "filler-1").unlink()
        (small_fs / "filler-2").unlink()
        ok = wait_job(app.jobs, stub.Export(export, timeout=30).id)
        assert ok.state is JobState.SUCCEEDED, ok
        assert app.workers.pids() == [worker]


def test_an_injected_enospc_fails_the_job_and_the_worker_carries_on(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The worker's own code path (in this process): ENOSPC while storing the result, then a job
    table that cannot be written for a moment."""
    from vqpress_server.jobs.context import WarmState
    from vqpress_server.jobs.table import JobTable as Table
    from vqpress_server.jobs.worker import _run_job

    s = Settings(data_dir=tmp_path / "data", poll_s=0.05, heartbeat_s=0.2)
    store = ArtifactStore(s.artifacts_dir, s.max_artifact_bytes)
    table = JobTable(s.jobs_db)
    src = store.put_file(REPO / "tests" / "data" / "donut_small.ply", "donut_small.ply", "ply")
    warm = WarmState.create("cpu", threads=1)

    def no_space(self, path, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    job = table.submit_spec(ExportSplatsSpec(src.id, "splat"))
    with monkeypatch.context() as m:
        m.setattr(ArtifactStore, "put_file", no_space)
        _run_job(table.claim("w", s.lease_s), "w", s, table, store, warm, threading.Event())
    rec = table.get(job.id)
    assert rec.state is JobState.FAILED, rec
    assert "out of disk space" in rec.error and "No space left on device" in rec.error, rec.error
    assert str(tmp_path) not in rec.error
    assert not any(s.scratch_dir.iterdir())

    # The job table itself full when the failure is recorded: retried until it can be written.
    fails = [2]
    real_fail = Table.fail

    def full_then_ok(self, *a):  # noqa: ANN001, ANN002, ANN202
        if fails[0]:
            fails[0] -= 1
            raise StorageFull("the job table cannot be written: no space left on the server's disk")
        return real_fail(self, *a)

    job = table.submit_spec(ExportSplatsSpec(src.id, "splat"))
    with monkeypatch.context() as m:
        m.setattr(ArtifactStore, "put_file", no_space)
        m.setattr(Table, "fail", full_then_ok)
        _run_job(table.claim("w", s.lease_s), "w", s, table, store, warm, threading.Event())
    rec = table.get(job.id)
    assert rec.state is JobState.FAILED and "out of disk space" in rec.error and fails == [0], rec

    # And the next job on the same worker state succeeds.
    job = table.submit_spec(ExportSplatsSpec(src.id, "splat"))
    _run_job(table.claim("w", s.lease_s), "w", s, table, store, warm, threading.Event())
    assert table.get(job.id).state is JobState.SUCCEEDED


def test_submit_is_refused_below_the_free_space_floor(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", port=0, workers=0, min_free_bytes=1 << 62)
    with serving(settings) as app, grpc.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        src = app.store.put_file(REPO / "tests" / "data" / "donut_small.ply", "donut_small.ply", "ply")
        req = pb.ExportRequest(format=pb.EXPORT_FORMAT_PLY)
        req.artifact.id = src.id
        with pytest.raises(grpc.RpcError) as ei:
            pb_grpc.VqpressStub(ch).Export(req, timeout=30)
        assert ei.value.code() is C.RESOURCE_EXHAUSTED and "min_free_bytes" in (ei.value.details() or "")
        assert app.jobs.list() == []


# -- a second server ------------------------------------------------------------------------
def _serve_cli(data_dir: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'client'}{os.pathsep}{REPO / 'server'}"}
    env.pop("VQPRESS_DATA_DIR", None)
    cmd = [sys.executable, "-m", "vqpress_server.cli", "serve", "--data-dir", str(data_dir)]
    # A server that does start serves until stopped: the timeout ends that failure.
    return subprocess.run(
        [*cmd, "--port", str(port), "--workers", "0"], capture_output=True, text=True, env=env, timeout=60
    )


def test_a_second_server_on_the_same_port_or_data_dir_is_refused_clearly(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path / "first", port=0, workers=0)
    with serving(first) as app:
        taken = _serve_cli(tmp_path / "other", app.port)
        assert taken.returncode == 3, taken.stderr
        assert f"error: cannot listen on 127.0.0.1:{app.port}: the address is in use" in taken.stderr
        assert "Traceback" not in taken.stderr

        shared = _serve_cli(first.data_dir, 0)
        assert shared.returncode == 3, shared.stderr
        owner = f"data directory {first.data_dir} is in use by another vqpress server (pid {os.getpid()}"
        assert owner in shared.stderr
        assert "Traceback" not in shared.stderr
        assert health(grpc.insecure_channel(f"127.0.0.1:{app.port}")) == health_pb2.HealthCheckResponse.SERVING
    # Once the first has stopped, the directory is free again.
    with serving(first):
        pass
