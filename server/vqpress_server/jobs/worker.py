"""Worker processes: one per visible GPU (or one on the CPU), started with ``spawn``.

Each worker sets CUDA_VISIBLE_DEVICES to its one GPU before torch is imported, builds its warm
state once (torch, the device, gsplat's kernels, a scene LRU), then loops: claim a job, rebuild its
typed spec from the table's JSON (``specs.spec_from_json``), run the handler of that spec type
(``handlers.run_spec``) with a heartbeat thread renewing the lease, store the result files as artifacts, end the
job. The pool restarts a worker that died; the job it held goes back to the queue (or fails after
max_attempts). This module imports no torch in the parent process, not even to count GPUs.

Stopping: a worker stops on SIGTERM, whoever sends it (the pool, or a supervisor signalling the
whole process group), and when its parent process is gone (the server was killed). A running job
is handed back to the queue at its next progress check. Nothing the pool uses to reach a worker
blocks when that worker has died: wake-ups are semaphores (a post never waits for the waiter),
stop is a signal.
"""

from __future__ import annotations

import contextlib
import errno
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
from multiprocessing.synchronize import Semaphore as MpSemaphore
from pathlib import Path

from ..artifacts import ArtifactNotFound, ArtifactStore, ArtifactStoreFull, ArtifactTooLarge
from ..core.errors import Cancelled, LimitExceeded, VqpressInputError
from ..locks import hold_worker_lock, no_workers_alive
from ..settings import Settings
from .context import CHECKPOINTS_SUFFIX, JobContext, WarmState, WorkerShutdown, checkpoint_dir_for
from .model import JobRecord, JobState, LeaseLost, StorageFull
from .specs import spec_from_json
from .table import JobTable, table_changes

log = logging.getLogger(__name__)

_MP = get_context("spawn")  # never fork: a forked CUDA context is unusable
_MONITOR_S = 0.2  # how often the pool checks that its workers are alive (seconds)
_SCRATCH_CLEAN_S = 60.0  # how often the pool removes scratch no job needs, e.g. checkpoints of ended jobs (s)
_RESTART_BACKOFF_S = (0.5, 30.0)  # delay before restarting a worker that died young: first, max (s)
_PARENT_CHECK_S = 0.25  # how often a worker checks that the server that started it is alive (s)
_ORPHAN_GRACE_S = 15.0  # a worker whose server is gone exits at the latest this long after (s)
_ORPHAN_WAIT_S = 30.0  # at start, how long to wait for workers of a killed server to exit (s)
_DISK_FULL_RETRY_S = (0.5, 10.0)  # a worker that cannot write to the job table retries: first, max (s)
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

    streams_renders = True  # workers share the server's data directory: a Render's images go through its outbox

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        gpus = visible_gpus()
        n = settings.workers if settings.workers is not None else max(1, len(gpus))
        if n < 0:
            raise ValueError(f"workers must be >= 0, got {n}")
        self._devices: list[str | None] = [gpus[i % len(gpus)] if gpus else None for i in range(n)]
        cpu_workers = sum(d is None for d in self._devices)
        self._threads = max(1, (os.cpu_count() or 1) // cpu_workers) if cpu_workers else None
        self._wake: list[MpSemaphore] = [_MP.Semaphore(0) for _ in range(n)]
        self._wrote: MpSemaphore = _MP.Semaphore(0)  # posted by a worker after each job-table write
        self._relay: threading.Thread | None = None
        self._procs: list[SpawnProcess | None] = [None] * n
        self._killed: set[int] = set()  # pids this pool killed after they outlived stop's timeout
        self._ready: list[MpSemaphore] = [_MP.Semaphore(0) for _ in range(n)]  # posted once warm
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
        if no_workers_alive(s.data_dir, _ORPHAN_WAIT_S):
            # No worker of an earlier server runs: whatever they still hold, they lost.
            n = sum(self._table.requeue_expired(worker_id=wid) for wid in _holders(self._table))
        else:
            log.warning(
                "workers of an earlier server on %s are still running after %.0f s; their jobs are "
                "recovered when their leases expire",
                s.data_dir,
                _ORPHAN_WAIT_S,
            )
            n = self._table.requeue_expired()
        if n:
            log.info("recovered %d job(s) whose worker was lost", n)
        _clean_scratch(s.scratch_dir, self._table)
        shutil.rmtree(s.outbox_dir, ignore_errors=True)  # images for Render calls of an earlier run
        with self._lock:
            for slot in range(len(self._procs)):
                self._spawn(slot)
        self._monitor = threading.Thread(target=self._watch, name="vqpress-pool-monitor", daemon=True)
        self._monitor.start()
        self._relay = threading.Thread(target=self._relay_writes, name="vqpress-pool-relay", daemon=True)
        self._relay.start()

    def stop(self, timeout: float = 10) -> None:
        """Ask workers to stop (SIGTERM: a running job goes back to the queue), join them, kill
        stragglers after ``timeout`` seconds. A worker that already exited is only reaped. Jobs still
        held by a worker afterwards are recovered now, not when their lease expires."""
        self.begin_stop()
        if self._monitor is not None:
            self._monitor.join()
        if self._relay is not None:
            self._wrote.release()  # wakes the relay, which sees the stop
            self._relay.join()
        with self._lock:
            procs = [(slot, p) for slot, p in enumerate(self._procs) if p is not None]
        for slot, p in procs:
            if p.is_alive():
                with contextlib.suppress(OSError):
                    p.terminate()
            self._wake[slot].release()
        deadline = time.monotonic() + timeout
        for _, p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for slot, p in procs:
            if p.is_alive():
                log.warning("worker pid %s did not stop in %.0f s; killing it", p.pid, timeout)
                self._killed.add(p.pid or -1)
                p.kill()
                p.join(5)
            self._recover(slot, p)
            p.close()
        with self._lock:
            self._procs = [None] * len(self._procs)
        if self._table is not None:
            self._table.close()

    def begin_stop(self) -> None:
        """Restart no worker from now on (call as soon as the server decides to stop)."""
        self._stopping.set()

    def notify(self) -> None:
        """Wake idle workers now (call after a submit), instead of at their next poll. Never blocks."""
        for sem in self._wake:
            with contextlib.suppress(NotImplementedError):
                if sem.get_value() > 0:
                    continue  # a wake-up is already pending
            sem.release()

    def devices(self) -> list[str]:
        """Each worker's device: "cuda:<id>" (its CUDA_VISIBLE_DEVICES entry) or "cpu"."""
        return [f"cuda:{d}" if d is not None else "cpu" for d in self._devices]

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._procs if p is not None and p.pid is not None and p.is_alive()]

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every worker has its warm state (True), or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        for sem in self._ready:
            if not sem.acquire(timeout=max(0.0, deadline - time.monotonic())):
                return False
            sem.release()  # stays ready for the next caller
        return True

    def describe(self) -> str:
        return f"{len(self.pids())} local workers"

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------
    def _spawn(self, slot: int) -> None:
        device = self._devices[slot]
        while self._ready[slot].acquire(block=False):  # not ready until this process says so
            pass
        proc = _MP.Process(
            target=_worker_main,
            args=(slot, device, self._threads, self.settings, self._wake[slot], self._ready[slot], self._wrote),
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

    def _recover(self, slot: int, proc: SpawnProcess) -> None:
        """The process has exited: recover the jobs it still holds now, not when their lease expires.

        A worker this pool killed for outliving stop's timeout hands its job back uncounted; any
        other death counts as a lost attempt (the job may be what killed it).
        """
        assert self._table is not None
        wid = worker_id_for(slot, proc.pid)
        try:
            if proc.pid in self._killed:
                for job_id in _holders(self._table, wid):
                    _end(self._table.release, job_id, wid)
            else:
                self._table.requeue_expired(worker_id=wid)
        except Exception:
            log.exception("recovering the jobs of worker %s failed", wid)

    def _relay_writes(self) -> None:
        """Pass the workers' job-table writes on to this process's waiters (``TableChanges``), so a
        Render or WatchJob call sees a job change as soon as its worker records it."""
        changes = table_changes(self.settings.jobs_db)
        while not self._stopping.is_set():
            if self._wrote.acquire(timeout=_MONITOR_S):
                while self._wrote.acquire(block=False):  # many writes, one wake-up
                    pass
                changes.bump()

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
        if proc.exitcode in (0, -signal.SIGTERM):
            log.warning("worker %d (pid %s) stopped (exit code %s); restarting it", slot, proc.pid, proc.exitcode)
        else:
            log.error("worker %d (pid %s) died with exit code %s; restarting it", slot, proc.pid, proc.exitcode)
        self._recover(slot, proc)
        proc.close()
        self._procs[slot] = None
        try:
            self.notify()
            _clean_scratch(self.settings.scratch_dir, self._table)
        except Exception:
            log.exception("scratch clean-up after worker %d failed", slot)
        lived = time.monotonic() - self._started_at[slot]
        if lived < 10 * _RESTART_BACKOFF_S[1]:
            self._restart_after[slot] = time.monotonic() + self._backoff[slot]
            self._backoff[slot] = min(self._backoff[slot] * 2, _RESTART_BACKOFF_S[1])
        else:
            self._restart_after[slot] = 0.0
            self._backoff[slot] = _RESTART_BACKOFF_S[0]


def _holders(table: JobTable, worker_id: str | None = None) -> list[str]:
    """Ids of the workers holding jobs (RUNNING or CANCELLING); with ``worker_id``: the ids of the
    jobs that worker holds."""
    held = table.list([JobState.RUNNING, JobState.CANCELLING], limit=1_000_000)
    if worker_id is not None:
        return [j.id for j in held if j.worker_id == worker_id]
    return sorted({j.worker_id for j in held if j.worker_id})


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
    wake: MpSemaphore,
    ready: MpSemaphore,
    wrote: MpSemaphore,
) -> None:
    stopping = threading.Event()  # set on SIGTERM or when the server is gone: hand back, then exit
    busy = [False]  # True from a claim until the job is recorded: SIGTERM then waits for the hand-back

    def on_sigterm(signum: int, frame: object) -> None:
        if not busy[0]:
            os._exit(0)  # nothing held (idle, or still warming up): there is nothing to hand back
        stopping.set()
        wake.release()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops its workers
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file-size limit is an OSError for the job, not a crash
    os.environ["CUDA_VISIBLE_DEVICES"] = device if device is not None else ""
    worker_id = worker_id_for(slot, os.getpid())
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {worker_id} %(levelname)s %(message)s")
    threading.Thread(
        target=_watch_parent, args=(os.getppid(), stopping, wake), name="vqpress-parent-watch", daemon=True
    ).start()
    lock = hold_worker_lock(settings.data_dir)  # held until this process exits, however it exits
    if lock is None:
        log.warning("could not take %s; a restarted server will wait out this worker's leases", settings.data_dir)
    table = JobTable(
        settings.jobs_db, max_attempts=settings.max_attempts, poll_s=settings.poll_s, on_write=lambda: _post(wrote)
    )
    store = ArtifactStore(settings.artifacts_dir, settings.max_artifact_bytes, settings.digest_function)
    warm = WarmState.create("cuda" if device is not None else "cpu", threads=threads)
    ready.release()
    log.info("worker %s ready (%s)", worker_id, warm.device)
    retry = _DISK_FULL_RETRY_S[0]
    while not stopping.is_set():
        busy[0] = True
        try:
            job = table.claim(worker_id, settings.lease_s)
        except StorageFull as e:
            busy[0] = False
            log.error("cannot claim jobs: %s; retrying in %.1f s", e, retry)
            wake.acquire(timeout=retry)
            retry = min(retry * 2, _DISK_FULL_RETRY_S[1])
            continue
        retry = _DISK_FULL_RETRY_S[0]
        if job is None:
            busy[0] = False
            wake.acquire(timeout=settings.poll_s)
            continue
        if stopping.is_set():
            _end(table.release, job.id, worker_id)
            break
        _run_job(job, worker_id, settings, table, store, warm, stopping)
        busy[0] = False
    log.info("worker %s stopped", worker_id)
    # Everything is recorded; skip the interpreter's teardown of torch (seconds on a busy machine).
    table.close()
    logging.shutdown()
    os._exit(0)


def _post(sem: MpSemaphore) -> None:
    """Release ``sem`` unless a post is already pending (never blocks; the count stays small)."""
    with contextlib.suppress(NotImplementedError):
        if sem.get_value() > 0:
            return
    sem.release()


def _watch_parent(parent: int, stopping: threading.Event, wake: MpSemaphore) -> None:
    """Stop the worker when the server that started it is gone (killed: nobody else would).

    The running job is handed back at its next progress check; a handler that does not get there
    within the stop timeout is cut short, and its job recovered by the next server at start.
    """
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_S)
    log.warning("the server (pid %d) is gone; this worker stops", parent)
    stopping.set()
    wake.release()
    time.sleep(_ORPHAN_GRACE_S)
    log.error("still running %.0f s after the server was gone; exiting now", _ORPHAN_GRACE_S)
    os._exit(1)


def _run_job(
    job: JobRecord,
    worker_id: str,
    settings: Settings,
    table: JobTable,
    store: ArtifactStore,
    warm: WarmState,
    stopping: threading.Event,
) -> None:
    from .handlers import run_spec  # here: the handlers import torch, which this module's importer may not

    scratch = settings.scratch_dir / f"{job.id}-{job.attempts}"
    ctx = JobContext(
        job=job, worker_id=worker_id, table=table, store=store, warm=warm, scratch=scratch, stopping=stopping
    )
    done = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(ctx, settings, done), name="vqpress-heartbeat", daemon=True)
    beat.start()
    t0 = time.perf_counter()
    succeeded = False
    try:
        scratch.mkdir(parents=True, exist_ok=True)
        ctx.progress("start", 0.0)
        spec = spec_from_json(job.spec, job.kind)
        if getattr(spec, "stream", False):  # a Render call reads the images from the outbox as they come
            ctx.outbox = settings.outbox_dir / job.id
        result = run_spec(ctx, spec)
        ids, names = [], []
        for out in result.outputs if ctx.outbox is None else ():
            info = store.put_file(out.path, out.name, out.kind, source_job=job.id)
            ids.append(info.id)
            names.append(out.name)
        table.succeed(job.id, worker_id, ids, names, {**ctx.metrics, **result.metrics})
        succeeded = True
        log.info("job %s (%s) succeeded in %.2f s", job.id, job.kind.value, time.perf_counter() - t0)
    except Cancelled:
        _end(table.mark_cancelled, job.id, worker_id)
        log.info("job %s cancelled", job.id)
    except WorkerShutdown:
        _end(table.release, job.id, worker_id)
        log.info("job %s handed back: worker stopping", job.id)
    except LeaseLost as e:
        log.warning("abandoning job %s: %s", job.id, e)
    except Exception as e:
        full = _disk_full(e)
        if full is not None:
            # Free what this attempt wrote first: recording the failure needs a little space too.
            shutil.rmtree(scratch, ignore_errors=True)
            reason = (
                f"the server ran out of disk space in stage {ctx.stage!r} ({full}); free disk space on the "
                "server, then submit the job again"
            )
            log.error("job %s failed: %s", job.id, reason)
            _end(table.fail, job.id, worker_id, reason, "limit")
        elif isinstance(e, VqpressInputError | ArtifactNotFound | ArtifactTooLarge):
            # The input's fault (or over a size limit): the message says what to fix, kept as it is.
            limit = isinstance(e, LimitExceeded | ArtifactTooLarge)
            _end(table.fail, job.id, worker_id, str(e), "limit" if limit else "input")
            log.info("job %s failed: %s", job.id, e)
        else:
            log.error("job %s (%s) raised:\n%s", job.id, job.kind.value, traceback.format_exc())
            _end(table.fail, job.id, worker_id, f"{type(e).__name__}: {e}", "internal")
        _free_device_memory(warm)
    finally:
        done.set()
        beat.join()
        shutil.rmtree(scratch, ignore_errors=True)
        if ctx.outbox is not None and not succeeded:
            shutil.rmtree(ctx.outbox, ignore_errors=True)  # nobody reads the images of a job that did not succeed
        _drop_checkpoints_if_ended(table, job.id, settings.scratch_dir)


def _end(fn: object, *args: object) -> None:
    """Record how a job ended, unless the worker no longer holds it. Never raises: a job table that
    cannot be written (a full disk) is retried for a while, then the job is left to its lease."""
    delay, deadline = _DISK_FULL_RETRY_S[0], time.monotonic() + _DISK_FULL_RETRY_S[1]
    while True:
        try:
            fn(*args)  # type: ignore[operator]
            return
        except LeaseLost as e:
            log.warning("could not record the end of job %s: %s", args[0], e)
            return
        except StorageFull as e:
            if time.monotonic() + delay > deadline:
                log.error("could not record the end of job %s: %s; its lease will expire", args[0], e)
                return
            time.sleep(delay)
            delay *= 2
        except Exception:
            log.exception("could not record the end of job %s; its lease will expire", args[0])
            return


def _disk_full(exc: BaseException) -> str | None:
    """What ran out, when ``exc`` (or an error it was raised from) is a full disk, quota or file-size
    limit; else None. The scratch path is left out: it means nothing to the client."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, StorageFull | ArtifactStoreFull):
            return str(e)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return os.strerror(e.errno)
        e = e.__cause__ or e.__context__
    return None


def _heartbeat(ctx: JobContext, settings: Settings, done: threading.Event) -> None:
    """Renew the job's lease; flag a cancel request or a lost lease for the handler."""
    interval = min(settings.heartbeat_s, settings.poll_s * 2)
    last_beat = time.monotonic()
    while not done.wait(interval):
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
