"""How `vqpress-server serve` stops and how it recovers: real server processes on loopback (port 0,
a temp data dir), each in its own process group, signalled the ways supervisors do.

Whatever receives the signal (the server, its workers, or the whole group) the server exits in
seconds, and a job that was running is back in the queue, so the next start runs it at once. A
killed server's worker stops by itself, and a server started after a crash re-queues the jobs of
its dead workers without waiting out their lease.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from vqpress_server.artifacts import ArtifactStore
from vqpress_server.jobs import JobRecord, JobState, JobTable
from vqpress_server.jobs.specs import CameraSpec, ExportSplatsSpec, RenderSplatsSpec
from vqpress_server.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "tests" / "data" / "donut_small.ply"
EXIT_BOUND_S = 30.0  # a stop takes about a second; the bound leaves room for a loaded CI machine
START_BOUND_S = 120.0  # a worker imports torch before it is ready: seconds, more on a busy machine
RENDER_VIEWS = 4000  # tiny views (~5 ms each; 4096 is the cap): still running whenever a test acts on it

pytestmark = pytest.mark.skipif(not SCENE.exists(), reason="tests/data/donut_small.ply not present")


def wait_for(pred: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``pred`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.05)


def pid_gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class Server:
    """`vqpress-server serve --port 0 --workers 1` on ``data_dir``, in a new process group."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'client'}{os.pathsep}{REPO / 'server'}"}
        env.pop("VQPRESS_DATA_DIR", None)
        cmd = [sys.executable, "-m", "vqpress_server.cli", "serve", "--data-dir", str(data_dir)]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--port", "0", "--workers", "1"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, as under a supervisor
            )
        self.pgid = self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_exit(self, timeout: float = EXIT_BOUND_S) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server still running {timeout:.0f} s after the signal:\n{self.text()[-3000:]}")

    def kill_group(self) -> None:
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture
def servers(tmp_path: Path):  # noqa: ANN201
    """Start servers with ``servers()``; every process group left is killed at the end."""
    started: list[Server] = []

    def start() -> Server:
        s = Server(tmp_path / "data", tmp_path / f"server{len(started)}.log")
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill_group()


@pytest.fixture
def render_job(tmp_path: Path) -> Callable[[], JobRecord]:
    """Submit a long Render job (many tiny views of a small scene) to the data dir's table."""
    import torch
    from vqpress_server.core.render.cameras import camera_to_dict, orbit_cameras
    from vqpress_server.core.splats.formats import load_scene

    s = Settings(data_dir=tmp_path / "data")
    store = ArtifactStore(s.artifacts_dir, s.max_artifact_bytes)
    splats, _ = load_scene(SCENE)
    small = splats.index(torch.arange(40))
    npz = tmp_path / "small.npz"
    np.savez(npz, **small.numpy())
    src = store.put_file(npz, "small.npz", "npz").id
    (cam,) = [camera_to_dict(c) for c in orbit_cameras(small, n=1, width=8, height=8)]
    cams = tuple(CameraSpec.from_json({**cam, "name": f"view{i}"}) for i in range(RENDER_VIEWS))
    table = JobTable(s.jobs_db)

    def submit() -> JobRecord:
        return table.submit_spec(RenderSplatsSpec(src, cams, encoding="float32"))

    return submit


def worker_of(rec: JobRecord) -> int:
    """The pid of the worker holding (or that last held) the job: ids end in /<pid>."""
    return int(rec.worker_id.rsplit("/", 1)[1])  # type: ignore[union-attr]


def warm_idle_worker(server: Server) -> int:
    """Run a job that fails at once (a missing source), so the worker is warm and idle; its pid."""
    table = table_of(server.data_dir)
    job = table.submit_spec(ExportSplatsSpec("ab" * 32, "ply"))

    def ended() -> JobRecord | None:
        assert server.proc.poll() is None, f"server exited:\n{server.text()[-3000:]}"
        rec = table.get(job.id)
        return rec if rec.terminal else None

    return worker_of(wait_for(ended, START_BOUND_S, "a first job to end"))  # type: ignore[arg-type]


def started_running(server: Server, job_id: str, not_worker: str | None = None) -> JobRecord:
    def check() -> JobRecord | None:
        assert server.proc.poll() is None, f"server exited:\n{server.text()[-3000:]}"
        return running(table_of(server.data_dir), job_id, not_worker)

    return wait_for(check, START_BOUND_S, "the job to run")  # type: ignore[return-value]


def table_of(data_dir: Path) -> JobTable:
    return JobTable(Settings(data_dir=data_dir).jobs_db)


def running(table: JobTable, job_id: str, not_worker: str | None = None) -> JobRecord | None:
    rec = table.get(job_id)
    assert not rec.terminal, rec
    ok = rec.state is JobState.RUNNING and rec.progress > 0 and rec.worker_id != not_worker
    return rec if ok else None


def lease_until(data_dir: Path, job_id: str) -> float | None:
    with sqlite3.connect(Settings(data_dir=data_dir).jobs_db) as c:
        (value,) = c.execute("SELECT lease_until FROM jobs WHERE id=?", (job_id,)).fetchone()
    return value


def assert_handed_back(data_dir: Path, job_id: str, attempts: int = 0) -> None:
    """Back in the queue, its lease released: the next worker takes it at once."""
    rec = table_of(data_dir).get(job_id)
    assert rec.state is JobState.QUEUED and rec.attempts == attempts, rec
    assert lease_until(data_dir, job_id) is None


def test_sigterm_to_the_group_or_the_server_alone_hands_the_running_job_back(servers, render_job) -> None:  # noqa: ANN001
    server = servers()
    job = render_job()
    first = started_running(server, job.id)
    worker = worker_of(first)
    os.killpg(server.pgid, signal.SIGTERM)  # systemd's default stop, `timeout`, process supervisors
    assert server.wait_exit() == 0, server.text()[-3000:]
    assert pid_gone(worker)
    assert_handed_back(server.data_dir, job.id)

    # The next server takes it at once (not after a lease), as a first attempt.
    again = servers()
    rec = started_running(again, job.id, not_worker=first.worker_id)
    assert rec.attempts == 1, rec

    # SIGTERM to the server process alone while the job runs: the same clean stop.
    os.kill(again.proc.pid, signal.SIGTERM)
    assert again.wait_exit() == 0, again.text()[-3000:]
    assert pid_gone(worker_of(rec))
    assert_handed_back(again.data_dir, job.id)


def test_a_worker_killed_first_is_reaped_not_waited_on(servers, render_job) -> None:  # noqa: ANN001
    server = servers()
    worker = warm_idle_worker(server)
    os.kill(worker, signal.SIGKILL)  # e.g. the OOM killer, just before the stop
    wait_for(lambda: pid_gone(worker), 10, "the worker to die")
    job = render_job()  # queued while no worker runs
    # The group: a replacement worker the server may have started meanwhile gets it too.
    os.killpg(server.pgid, signal.SIGTERM)
    assert server.wait_exit() == 0, server.text()[-3000:]
    rec = table_of(server.data_dir).get(job.id)
    assert rec.state is JobState.QUEUED and rec.attempts == 0, rec


def test_a_killed_servers_worker_stops_and_hands_its_job_back(servers, render_job) -> None:  # noqa: ANN001
    server = servers()
    job = render_job()
    worker = worker_of(started_running(server, job.id))
    os.kill(server.proc.pid, signal.SIGKILL)  # the server alone dies; nobody tells the worker
    server.proc.wait(10)
    wait_for(lambda: pid_gone(worker), EXIT_BOUND_S, "the orphaned worker to exit")
    assert_handed_back(server.data_dir, job.id)


def test_after_a_crash_the_next_start_recovers_jobs_before_their_lease_expires(servers, render_job) -> None:  # noqa: ANN001
    server = servers()
    job = render_job()
    first = started_running(server, job.id)
    server.kill_group()  # kill -9 of everything: nobody records anything
    lease_end = lease_until(server.data_dir, job.id)
    assert lease_end is not None and table_of(server.data_dir).get(job.id).state is JobState.RUNNING

    again = servers()
    wait_for(
        lambda: table_of(again.data_dir).get(job.id).worker_id != first.worker_id,  # type: ignore[union-attr]
        START_BOUND_S,
        "the job to be recovered",
    )
    assert time.time() < lease_end, "recovered only once the dead worker's lease had expired"
    assert "recovered 1 job(s)" in again.text()
    rec = started_running(again, job.id)
    assert rec.attempts == 2, rec  # the crash counts as a lost attempt
