"""Worker processes: one per visible GPU (or one on the CPU), started with ``spawn``.

Each worker sets CUDA_VISIBLE_DEVICES to its one GPU before torch is imported, builds its warm
state once (torch, the device, gsplat's kernels, a scene LRU), then loops: claim a job, run its
handler with a heartbeat thread renewing the lease, store the result files as artifacts, end the
job. The pool restarts a worker that died; the job it held goes back to the queue (or fails after
max_attempts). This module imports no torch in the parent process, not even to count GPUs.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import traceback
from multiprocessing import get_context
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path

from ..artifacts import ArtifactNotFound, ArtifactStore, ArtifactTooLarge
from ..core.errors import Cancelled, VqpressInputError
from ..settings import Settings
from .context import CHECKPOINTS_SUFFIX, JobContext, WarmState, WorkerShutdown, checkpoint_dir_for
from .model import JobRecord, JobState, LeaseLost
from .table import JobTable

log = logging.getLogger(__name__)

_MP = get_context("spawn")  # never fork: a forked CUDA context is unusable
_MONITOR_S = 0.2  # how often the pool checks that its workers are alive (seconds)
_SCRATCH_CLEAN_S = 60.0  # how often the pool removes scratch no job needs, e.g. checkpoints of ended jobs (s)
_RESTART_BACKOFF_S = (0.5, 30.0)  # delay before restarting a worker that died young: first, max (s)
_ENV_LOCK = threading.Lock()


def worker_id_for(slot: int, pid: int | None) -> str:
    """The id a worker writes into the jobs it holds; the pool derives the same one from the pid."""
    return f"{socket.gethostname()}/w{slot}/{pid}"


def visible_gpus() -> list[str]:
    """CUDA device ids (as CUDA_VISIBLE_DEVICES entries) this process may hand to workers.

    Counted without importing torch or initializing CUDA in the gRPC process: from
    CUDA_VISIBLE_DEVICES when it is set, else from `nvidia-smi -L`. No driver, no GPUs.
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [s.strip() for s in env.split(",") if s.strip()]
        return [] if ids in (["-1"], ["none"], ["NoDevFiles"]) else ids
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


class WorkerPool:
    """Worker processes serving the job table at ``settings.jobs_db``.

    ``settings.workers`` overrides the count (None = one per visible GPU, else one on the CPU;
    0 = no workers, jobs stay queued). With GPUs present, workers share them round-robin.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        gpus = visible_gpus()
        n = settings.workers if settings.workers is not None else max(1, len(gpus))
        if n < 0:
            raise ValueError(f"workers must be >= 0, got {n}")
        self._devices: list[str | None] = [gpus[i % len(gpus)] if gpus else None for i in range(n)]
        cpu_workers = sum(d is None for d in self._devices)
        self._threads = max(1, (os.cpu_count() or 1) // cpu_workers) if cpu_workers else None
        self._wake = _MP.Event()
        self._stop = _MP.Event()
        self._procs: list[SpawnProcess | None] = [None] * n
        self._ready: list[MpEvent] = [_MP.Event() for _ in range(n)]
        self._started_at = [0.0] * n
        self._backoff = [_RESTART_BACKOFF_S[0]] * n
        self._restart_after = [0.0] * n
        self._table: JobTable | None = None
        self._monitor: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        s.scratch_dir.mkdir(parents=True, exist_ok=True)
        self._table = JobTable(s.jobs_db, max_attempts=s.max_attempts, poll_s=s.poll_s)
        n = self._table.requeue_expired()
        if n:
            log.info("recovered %d job(s) whose worker was lost", n)
        _clean_scratch(s.scratch_dir, self._table)
        with self._lock:
            for slot in range(len(self._procs)):
                self._spawn(slot)
        self._monitor = threading.Thread(target=self._watch, name="vqpress-pool-monitor", daemon=True)
        self._monitor.start()

    def stop(self, timeout: float = 10) -> None:
        """Ask workers to stop (a running job goes back to the queue), join them, kill stragglers."""
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join()
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            procs = [p for p in self._procs if p is not None]
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                log.warning("worker pid %s did not stop in %.0f s; killing it", p.pid, timeout)
                p.kill()
                p.join(5)
            p.close()
        with self._lock:
            self._procs = [None] * len(self._procs)
        if self._table is not None:
            self._table.close()

    def notify(self) -> None:
        """Wake idle workers now (call after a submit), instead of at their next poll."""
        self._wake.set()

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._procs if p is not None and p.pid is not None and p.is_alive()]

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every worker has its warm state (True), or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        return all(ev.wait(max(0.0, deadline - time.monotonic())) for ev in self._ready)

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------
    def _spawn(self, slot: int) -> None:
        device = self._devices[slot]
        self._ready[slot].clear()
        proc = _MP.Process(
            target=_worker_main,
            args=(slot, device, self._threads, self.settings, self._wake, self._stop, self._ready[slot]),
            name=f"vqpress-worker-{slot}",
            daemon=True,
        )
        # The child inherits the environment at start(): it sees only its own GPU (or none) from
        # its first instruction, before anything could import torch.
        with _ENV_LOCK:
            old = os.environ.get("CUDA_VISIBLE_DEVICES")
            os.environ["CUDA_VISIBLE_DEVICES"] = device if device is not None else ""
            try:
                proc.start()
            finally:
                if old is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = old
        self._procs[slot] = proc
        self._started_at[slot] = time.monotonic()
        log.info("started worker %d (pid %s, %s)", slot, proc.pid, f"GPU {device}" if device else "CPU")

    def _watch(self) -> None:
        assert self._table is not None
        last_requeue = last_clean = time.monotonic()
        while not self._stopping.wait(_MONITOR_S):
            now = time.monotonic()
            with self._lock:
                for slot, proc in enumerate(self._procs):
                    if proc is not None and not proc.is_alive():
                        self._worker_died(slot, proc)
                    elif proc is None and now >= self._restart_after[slot]:
                        self._spawn(slot)
            if now - last_requeue >= self.settings.heartbeat_s:
                last_requeue = now
                try:
                    if self._table.requeue_expired():
                        self.notify()
                except Exception:
                    log.exception("requeue of expired jobs failed")
            if now - last_clean >= _SCRATCH_CLEAN_S:
                last_clean = now
                try:
                    _clean_scratch(self.settings.scratch_dir, self._table)
                except Exception:
                    log.exception("scratch clean-up failed")

    def _worker_died(self, slot: int, proc: SpawnProcess) -> None:
        assert self._table is not None
        wid = worker_id_for(slot, proc.pid)
        log.error("worker %d (pid %s) died with exit code %s; restarting it", slot, proc.pid, proc.exitcode)
        proc.close()
        self._procs[slot] = None
        try:
            # The process is gone for sure: its jobs need not wait for their lease to expire.
            if self._table.requeue_expired(worker_id=wid):
                self.notify()
            _clean_scratch(self.settings.scratch_dir, self._table)
        except Exception:
            log.exception("recovering the jobs of worker %s failed", wid)
        lived = time.monotonic() - self._started_at[slot]
        if lived < 10 * _RESTART_BACKOFF_S[1]:
            self._restart_after[slot] = time.monotonic() + self._backoff[slot]
            self._backoff[slot] = min(self._backoff[slot] * 2, _RESTART_BACKOFF_S[1])
        else:
            self._restart_after[slot] = 0.0
            self._backoff[slot] = _RESTART_BACKOFF_S[0]


def _clean_scratch(scratch: Path, table: JobTable) -> None:
    """Remove what no job needs any more from the scratch folder (left by killed workers or ended jobs).

    A per-attempt folder ``<job id>-<attempt>`` stays only while that attempt runs (RUNNING or
    CANCELLING); a ``<job id>-checkpoints`` folder stays while the job may still run (QUEUED,
    RUNNING, CANCELLING), so a re-run after a worker death resumes from its last checkpoint.
    The folder is listed before the job states are read: a folder created after the listing is not
    seen, and one seen belongs to a job whose state is read afterwards, so nothing live is removed.
    """
    entries = list(scratch.iterdir()) if scratch.is_dir() else []
    if not entries:
        return
    live = table.list([JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING], limit=1_000_000)
    states = {j.id: j for j in live}
    for d in entries:
        job_id, _, rest = d.name.partition("-")
        job = states.get(job_id)
        if job is None:
            keep = False
        elif "-" + rest == CHECKPOINTS_SUFFIX:
            keep = True
        else:
            keep = job.state is not JobState.QUEUED and rest == str(job.attempts)
        if not keep:
            shutil.rmtree(d, ignore_errors=True)


def _drop_checkpoints_if_ended(table: JobTable, job_id: str, scratch_root: Path) -> None:
    """Remove the job's checkpoint folder once the job is over (any terminal state)."""
    ckpt = checkpoint_dir_for(scratch_root, job_id)
    if not ckpt.exists():
        return
    try:
        ended = table.get(job_id).terminal
    except Exception:
        log.exception("could not read the state of job %s; its checkpoints stay until the next clean-up", job_id)
        return
    if ended:
        shutil.rmtree(ckpt, ignore_errors=True)


# -- the worker process ----------------------------------------------------------------
def _worker_main(
    slot: int,
    device: str | None,
    threads: int | None,
    settings: Settings,
    wake: MpEvent,
    stop: MpEvent,
    ready: MpEvent,
) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = device if device is not None else ""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool decides when workers stop
    worker_id = worker_id_for(slot, os.getpid())
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {worker_id} %(levelname)s %(message)s")
    table = JobTable(settings.jobs_db, max_attempts=settings.max_attempts, poll_s=settings.poll_s)
    store = ArtifactStore(settings.artifacts_dir, settings.max_artifact_bytes)
    warm = WarmState.create("cuda" if device is not None else "cpu", threads=threads)
    ready.set()
    parent = os.getppid()
    stopping = threading.Event()
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("the server process is gone; worker exits")
            return
        wake.clear()
        job = table.claim(worker_id, settings.lease_s)
        if job is None:
            wake.wait(settings.poll_s)
            continue
        if stop.is_set():
            table.release(job.id, worker_id)
            return
        _run_job(job, worker_id, settings, table, store, warm, stop, stopping)


def _run_job(
    job: JobRecord,
    worker_id: str,
    settings: Settings,
    table: JobTable,
    store: ArtifactStore,
    warm: WarmState,
    stop: MpEvent,
    stopping: threading.Event,
) -> None:
    from .handlers import HANDLERS

    scratch = settings.scratch_dir / f"{job.id}-{job.attempts}"
    ctx = JobContext(
        job=job, worker_id=worker_id, table=table, store=store, warm=warm, scratch=scratch, stopping=stopping
    )
    done = threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(ctx, settings, stop, stopping, done), name="vqpress-heartbeat", daemon=True
    )
    beat.start()
    t0 = time.perf_counter()
    try:
        scratch.mkdir(parents=True, exist_ok=True)
        ctx.progress("start", 0.0)
        result = HANDLERS[job.kind](ctx, job.spec)
        ids, names = [], []
        for out in result.outputs:
            info = store.put_file(out.path, out.name, out.kind, source_job=job.id)
            ids.append(info.id)
            names.append(out.name)
        table.succeed(job.id, worker_id, ids, names, {**ctx.metrics, **result.metrics})
        log.info("job %s (%s) succeeded in %.2f s", job.id, job.kind.value, time.perf_counter() - t0)
    except Cancelled:
        _end(table.mark_cancelled, job.id, worker_id)
        log.info("job %s cancelled", job.id)
    except WorkerShutdown:
        _end(table.release, job.id, worker_id)
        log.info("job %s handed back: worker stopping", job.id)
    except LeaseLost as e:
        log.warning("abandoning job %s: %s", job.id, e)
    except (VqpressInputError, ArtifactNotFound, ArtifactTooLarge) as e:
        # The input's fault (or a full disk): the message says what to fix, kept as it is.
        _end(table.fail, job.id, worker_id, str(e))
        log.info("job %s failed: %s", job.id, e)
    except Exception as e:
        log.error("job %s (%s) raised:\n%s", job.id, job.kind.value, traceback.format_exc())
        _end(table.fail, job.id, worker_id, f"{type(e).__name__}: {e}")
        _free_device_memory(warm)
    finally:
        done.set()
        beat.join()
        shutil.rmtree(scratch, ignore_errors=True)
        _drop_checkpoints_if_ended(table, job.id, settings.scratch_dir)


def _end(fn: object, *args: object) -> None:
    """Record how a job ended, unless the worker no longer holds it."""
    try:
        fn(*args)  # type: ignore[operator]
    except LeaseLost as e:
        log.warning("could not record the end of job %s: %s", args[0], e)


def _heartbeat(
    ctx: JobContext, settings: Settings, stop: MpEvent, stopping: threading.Event, done: threading.Event
) -> None:
    """Renew the job's lease; flag a cancel request, a lost lease, or a pool stop for the handler."""
    interval = min(settings.heartbeat_s, settings.poll_s * 2)
    last_beat = time.monotonic()
    while not done.wait(interval):
        if stop.is_set():
            stopping.set()
        try:
            if time.monotonic() - last_beat >= settings.heartbeat_s:
                last_beat = time.monotonic()
                state = ctx.table.heartbeat(ctx.job.id, ctx.worker_id, settings.lease_s)
                if state is JobState.CANCELLING:
                    ctx.cancel_requested.set()
        except LeaseLost:
            ctx.lease_lost.set()
            return
        except Exception:
            log.exception("heartbeat for job %s failed", ctx.job.id)


def _free_device_memory(warm: WarmState) -> None:
    if warm.device == "cuda":
        import torch

        torch.cuda.empty_cache()
