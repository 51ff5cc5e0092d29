"""The ``ray`` executor: jobs run in actors of a Ray cluster; the front-end keeps the record.

Roles::

    front-end (this process, a Ray driver)              every node of the cluster
    gRPC + job table (SQLite) + artifact store          NodeWorker actors: one per GPU (num_gpus=1),
    RayExecutor: claims jobs, holds their leases,       or cpu_slots per GPU-less node; warm state,
    writes progress, mirrors checkpoints,        <--->  a node-local artifact cache, job scratch;
    stores results                                      run the same handlers as local workers

Only the front-end touches the job table and the content-addressed store, so no node needs a
shared disk and a dying node cannot leave a half-written record. The data path is Ray's object
store: a job's input artifacts are ``ray.put`` once by the front-end (kept for re-use up to
``RayConfig.object_cache_bytes``), fetched by a node only when its cache lacks them (their digest
verified as they are stored there); result files come back as the actor call's return value and
are stored by the front-end under the same id. Training checkpoints written on a node come back
with the progress polls and are kept in the front-end's scratch folder (the same
``<job id>-checkpoints`` folder local workers use), and go out again with the job when it is re-run
on any node, so it resumes from there.

Leases and faults: the front-end claims a job for an actor (worker id ``ray/<node id>@<ip>/a<n>``,
which names the node) and renews its lease while the actor answers its progress polls. An actor
that dies (its node died, it was killed, it ran out of memory) fails its call: the job goes back to
the queue, or FAILS after max_attempts, like a local worker's. An actor that stops answering for
``lease_s`` is killed and treated the same. Actors are owned by the front-end, so they end with it;
on start the front-end hands jobs its predecessor's actors held back to the queue (not counted as
an attempt). Cancellation: the front-end sees CANCELLING in the table and passes it on with the
next poll; the handler stops at its next progress check, as on a local worker.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from vqpress import digests

from ..artifacts import ArtifactNotFound, ArtifactStore
from ..settings import RayConfig, Settings
from .context import WarmState, checkpoint_dir_for
from .model import JobRecord, JobState, LeaseLost
from .table import JobTable
from .worker import _clean_scratch, _drop_checkpoints_if_ended, _end, _run_job

log = logging.getLogger(__name__)

WORKER_PREFIX = "ray/"  # every worker id of this executor starts so; the rest names node and actor
_RECONCILE_S = 1.0  # how often the front-end compares the actors with the cluster's nodes (seconds)
_SCRATCH_CLEAN_S = 60.0  # how often the front-end's scratch folder is cleaned (seconds)
_ACTOR_BACKOFF_S = (1.0, 60.0)  # delay before re-creating an actor that failed on a node: first, max (s)
_ACTOR_CONCURRENCY = 4  # threads of an actor: one runs the job, the others answer polls and stop requests


# -- on the nodes ------------------------------------------------------------------------------
class _RelayTable:
    """What a job on a node sees in place of the job table: the front-end's answers, held in memory.

    ``_run_job`` and the handlers call the methods a JobTable has; progress and the outcome wait
    here for the front-end's next poll, and the state the front-end last passed on (CANCELLING, or
    the lease lost) is what progress calls return or raise.
    """

    def __init__(self, job: JobRecord, worker_id: str) -> None:
        self.job = job
        self.worker_id = worker_id
        self.state = job.state
        self.lost = False
        self.stage = ""
        self.progress = 0.0
        self.metrics: dict[str, float] = {}
        self.outcome: dict[str, Any] | None = None  # how the job ended, once it has
        self._lock = threading.Lock()

    # -- the JobTable methods a running job calls ------------------------------------------------
    def set_progress(
        self, job_id: str, worker_id: str, stage: str, progress: float, metrics: Mapping[str, float] | None = None
    ) -> JobState:
        with self._lock:
            self._held()
            self.stage, self.progress = str(stage)[:200], float(progress)
            if metrics:
                self.metrics.update({k: float(v) for k, v in metrics.items() if isinstance(v, int | float)})
            return self.state

    def heartbeat(self, job_id: str, worker_id: str, lease_s: float) -> JobState:
        with self._lock:
            self._held()
            return self.state

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            return replace(self.job, state=self.state, stage=self.stage, progress=self.progress)

    def succeed(
        self,
        job_id: str,
        worker_id: str,
        results: list[str],
        result_names: list[str],
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        self._end(JobState.SUCCEEDED, results=list(results), names=list(result_names), metrics=dict(metrics or {}))

    def fail(self, job_id: str, worker_id: str, error: str, failure: str = "") -> None:
        self._end(JobState.FAILED, error=error, failure=failure)

    def mark_cancelled(self, job_id: str, worker_id: str) -> None:
        self._end(JobState.CANCELLED)

    def release(self, job_id: str, worker_id: str) -> None:
        self._end(JobState.QUEUED)

    # -- the front-end's side --------------------------------------------------------------------
    def pass_on(self, state: str | None) -> None:
        """The job's state in the front-end's table (CANCELLING, ...), or "LOST" when its lease is."""
        with self._lock:
            if state == "LOST":
                self.lost = True
            elif state is not None and self.outcome is None:
                self.state = JobState(state)

    def _held(self) -> None:
        if self.lost:
            raise LeaseLost(f"job {self.job.id} is no longer held by {self.worker_id}")

    def _end(self, state: JobState, **outcome: Any) -> None:
        with self._lock:
            self._held()
            metrics = {**self.metrics, **outcome.pop("metrics", {})}
            self.outcome = {"state": state.value, "metrics": metrics, **outcome}
            self.state = state


class NodeWorker:
    """A Ray actor: the worker of one GPU (or one CPU slot) of one node.

    Built once: warm state (torch, the device, gsplat's kernels, recent scenes), the node's artifact
    cache and its scratch folder. ``run`` takes one job at a time; ``status`` and ``shutdown``
    answer on other threads of the actor while it runs.
    """

    def __init__(self, settings: Settings, slot: int, threads: int | None) -> None:
        ctx = ray.get_runtime_context()
        gpus = ctx.get_accelerator_ids().get("GPU", [])
        if not gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported: never touch a GPU
        self.node_id = ctx.get_node_id()
        self.ip = ray.util.get_node_ip_address()
        self.worker_id = f"{WORKER_PREFIX}{self.node_id[:12]}@{self.ip}/a{slot}"
        node_root = settings.ray.node_dir / self.node_id[:12]
        # Scratch per actor (cleared at start: nothing in it survives its actor); the artifact cache per node.
        self.settings = replace(settings, data_dir=node_root / f"a{slot}")
        shutil.rmtree(self.settings.scratch_dir, ignore_errors=True)
        self.settings.scratch_dir.mkdir(parents=True, exist_ok=True)
        self.cache = ArtifactStore(node_root / "artifacts", settings.max_artifact_bytes, settings.digest_function)
        self.warm = WarmState.create("cuda" if gpus else "cpu", threads=threads)
        self._stopping = threading.Event()
        self._relay: _RelayTable | None = None
        self._sent: dict[str, tuple[int, int]] = {}  # checkpoint file -> (size, mtime_ns) last sent
        self._lock = threading.Lock()

    def ready(self) -> dict[str, Any]:
        """Where this actor runs, once its warm state is built."""
        return {
            "worker_id": self.worker_id,
            "node_id": self.node_id,
            "ip": self.ip,
            "host": socket.gethostname(),
            "device": self.warm.device,
            "pid": os.getpid(),
        }

    def fetch(self, sources: Mapping[str, tuple[dict[str, Any], Any]]) -> int:
        """Store the job's input artifacts in the node's cache unless it has them; returns bytes fetched.

        ``sources``: artifact id -> (its ArtifactInfo as a dict, an ObjectRef of its bytes).
        """
        fetched = 0
        for aid, (info, ref) in sources.items():
            if self.cache.exists(aid):
                continue
            data = ray.get(ref)
            stored = self.cache.put_bytes(
                data,
                info["name"],
                info["kind"],
                source_job=info.get("source_job"),
                digest_function=digests.function_of(aid),
            )
            if stored.id != aid:  # the bytes are not what the front-end's store named: drop them
                self.cache.delete(stored.id)
                raise ValueError(f"artifact {aid} arrived as {stored.id}; refusing it")
            fetched += len(data)
        return fetched

    def run(
        self,
        job: JobRecord,
        sources: Mapping[str, tuple[dict[str, Any], Any]],
        checkpoints: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Run one job through the handlers local workers use; returns its outcome and result files."""
        relay = _RelayTable(job, self.worker_id)
        ckpt_dir = checkpoint_dir_for(self.settings.scratch_dir, job.id)
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # the front-end's copy is the one to resume from
        if checkpoints:
            ckpt_dir.mkdir(parents=True)
            for name, ref in checkpoints.items():
                (ckpt_dir / Path(name).name).write_bytes(ray.get(ref))
        with self._lock:
            self._relay = relay
            self._sent = {name: _file_key(ckpt_dir / name) for name in checkpoints}
        t0 = time.perf_counter()
        try:
            fetched = self.fetch(sources)
            relay.metrics["node_fetch_bytes"] = float(fetched)
            _run_job(job, self.worker_id, self.settings, relay, self.cache, self.warm, self._stopping)  # type: ignore[arg-type]
        except ArtifactNotFound as e:
            relay.fail(job.id, self.worker_id, str(e))
        finally:
            with self._lock:
                self._relay = None
        out = relay.outcome
        if out is None:  # the lease was lost: the front-end gave the job to another worker
            return {"state": None, "seconds": time.perf_counter() - t0}
        files = []
        if out["state"] == JobState.SUCCEEDED.value:
            for aid in out["results"]:
                info = self.cache.stat(aid)
                files.append((aid, info.name, info.kind, self.cache.read_bytes(aid)))
        self._trim_cache()
        return {**out, "files": files, "seconds": time.perf_counter() - t0}

    def status(self, job_id: str, state: str | None) -> dict[str, Any] | None:
        """Pass on the job's state from the table; return its progress and new checkpoint files."""
        with self._lock:
            relay = self._relay
            if relay is None or relay.job.id != job_id:
                return None
            relay.pass_on(state)
            ckpts = {}
            ckpt_dir = checkpoint_dir_for(self.settings.scratch_dir, job_id)
            for p in sorted(ckpt_dir.glob("*")) if ckpt_dir.is_dir() else []:
                # Checkpoints are written to a temp file and renamed: a finished file is never rewritten.
                if p.suffix == ".tmp" or not p.is_file():
                    continue
                key = _file_key(p)
                if self._sent.get(p.name) != key:
                    try:
                        ckpts[p.name] = p.read_bytes()
                    except FileNotFoundError:
                        continue  # replaced while read: the next poll sends the new one
                    self._sent[p.name] = key
            return {
                "stage": relay.stage,
                "progress": relay.progress,
                "metrics": dict(relay.metrics),
                "checkpoints": ckpts,
            }

    def read_artifact(self, artifact_id: str) -> bytes:
        """The bytes of an artifact in the node's cache (the path results take back; benchmarked)."""
        return self.cache.read_bytes(artifact_id)

    def shutdown(self) -> None:
        """Hand the running job back (the front-end is stopping): it stops at its next progress check."""
        self._stopping.set()

    def _trim_cache(self) -> None:
        total, limit = 0, self.settings.ray.node_cache_bytes
        for info in self.cache.list(limit=1_000_000):  # newest first: the oldest go
            total += info.size
            if total > limit:
                try:
                    self.cache.delete(info.id)
                except ArtifactNotFound:
                    pass


def _file_key(p: Path) -> tuple[int, int]:
    try:
        st = p.stat()
    except FileNotFoundError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


# -- on the front-end ----------------------------------------------------------------------------
@dataclass
class _Slot:
    """One actor the front-end created, and the job it runs."""

    key: tuple[str, int]  # (node id, index on that node)
    actor: Any  # ray.actor.ActorHandle
    ready_ref: Any  # ObjectRef of ready() until it answered
    info: dict[str, Any] = field(default_factory=dict)  # ready()'s answer
    job: JobRecord | None = None
    run_ref: Any = None
    status_ref: Any = None
    last_seen: float = 0.0  # monotonic time of the last answer from the actor
    last_beat: float = 0.0  # monotonic time the lease was last renewed
    last_progress: tuple[str, float] = ("", -1.0)
    push: str | None = None  # state to pass on with the next poll

    @property
    def worker_id(self) -> str:
        return str(self.info.get("worker_id", ""))


class RayExecutor:
    """Actors of a Ray cluster serving the job table at ``settings.jobs_db`` (see the module docstring)."""

    streams_renders = False  # actors write on their own nodes: a Render's images come back as results

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config: RayConfig = settings.ray
        self._slots: dict[tuple[str, int], _Slot] = {}
        self._backoff: dict[str, tuple[float, float]] = {}  # node id -> (retry after, next delay)
        self._refs: OrderedDict[str, tuple[Any, int]] = OrderedDict()  # artifact id -> (ObjectRef, bytes)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._table: JobTable | None = None
        self._store: ArtifactStore | None = None
        self._owns_ray = False
        self._lock = threading.Lock()
        self._actor_class: Any = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        s, c = self.settings, self.config
        s.scratch_dir.mkdir(parents=True, exist_ok=True)
        if not ray.is_initialized():
            if c.address is None:
                ray.init(
                    namespace=c.namespace,
                    num_cpus=c.local_cpus,
                    object_store_memory=c.local_object_store_bytes,
                    include_dashboard=False,
                )
            else:
                ray.init(address=c.address, namespace=c.namespace)
            self._owns_ray = True
        self._table = JobTable(s.jobs_db, max_attempts=s.max_attempts, poll_s=s.poll_s)
        self._store = ArtifactStore(s.artifacts_dir, s.max_artifact_bytes, s.digest_function)
        n = self._release_orphans()
        n += self._table.requeue_expired()
        if n:
            log.info("recovered %d job(s) whose worker was lost", n)
        _clean_scratch(s.scratch_dir, self._table)
        self._thread = threading.Thread(target=self._loop, name="vqpress-ray-dispatch", daemon=True)
        self._thread.start()

    def begin_stop(self) -> None:
        """Stop dispatching and ask running jobs to hand back; returns at once (``stop`` waits)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        for sl in self._slots.values():
            if sl.run_ref is not None:
                _quietly(sl.actor.shutdown.remote)

    def stop(self, timeout: float = 10) -> None:
        """Stop dispatching; running jobs are asked to hand back, then their actors are killed."""
        self.begin_stop()
        table = self._table
        busy = [sl for sl in self._slots.values() if sl.run_ref is not None]
        deadline = time.monotonic() + timeout
        for sl in busy:
            try:
                outcome = ray.get(sl.run_ref, timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                outcome = None
            if table is not None and sl.job is not None:
                if isinstance(outcome, dict) and outcome.get("state") is not None:
                    self._record(sl, outcome)
                else:  # the actor did not hand the job back in time: its lease is ours to give back
                    _end(table.release, sl.job.id, sl.worker_id)
        for sl in self._slots.values():
            _quietly(ray.kill, sl.actor, no_restart=True)
        self._slots.clear()
        self._refs.clear()
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._owns_ray = False
        if table is not None:
            table.close()

    def notify(self) -> None:
        self._wake.set()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until at least one actor exists and every actor created so far has its warm state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                slots = list(self._slots.values())
            if slots and all(sl.info for sl in slots):
                return True
            time.sleep(0.05)
        return False

    def devices(self) -> list[str]:
        """Each ready actor's device ("cuda" or "cpu"), for GetServerInfo."""
        with self._lock:
            return [str(sl.info["device"]) for sl in self._slots.values() if sl.info]

    def describe(self) -> str:
        with self._lock:
            nodes = {sl.key[0] for sl in self._slots.values()}
            return f"{len(self._slots)} Ray actors on {len(nodes)} node(s)"

    def workers(self) -> list[dict[str, Any]]:
        """The actors that are ready: worker id, node id, ip, host, device, pid; and the job they run."""
        with self._lock:
            return [{**sl.info, "job": sl.job.id if sl.job else None} for sl in self._slots.values() if sl.info]

    def __enter__(self) -> RayExecutor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the dispatch loop -----------------------------------------------------------------------
    def _loop(self) -> None:
        last_reconcile = last_clean = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            try:
                if now - last_reconcile >= _RECONCILE_S:
                    last_reconcile = now
                    self._reconcile()
                self._collect()
                self._poll()
                self._dispatch()
                if now - last_clean >= _SCRATCH_CLEAN_S:
                    last_clean = now
                    assert self._table is not None
                    _clean_scratch(self.settings.scratch_dir, self._table)
            except Exception:
                log.exception("ray executor step failed; retrying")
            self._wake.wait(self.settings.poll_s)
            self._wake.clear()

    def _reconcile(self) -> None:
        """One actor per GPU of every alive node (or cpu_slots per GPU-less node); none on dead nodes."""
        alive: dict[str, Mapping[str, float]] = {n["NodeID"]: n.get("Resources", {}) for n in ray.nodes() if n["Alive"]}
        for key, sl in list(self._slots.items()):
            if key[0] not in alive and sl.run_ref is None:
                _quietly(ray.kill, sl.actor, no_restart=True)
                with self._lock:
                    del self._slots[key]
        now = time.monotonic()
        for node_id, res in alive.items():
            if self._backoff.get(node_id, (0.0, 0.0))[0] > now:
                continue
            gpus, cpus = int(res.get("GPU", 0)), float(res.get("CPU", 0))
            if gpus:
                want, options, threads = gpus, {"num_gpus": 1, "num_cpus": 0}, None
            elif self.config.cpu_slots and cpus >= self.config.cpu_slots:
                per = cpus / self.config.cpu_slots
                want, options, threads = self.config.cpu_slots, {"num_cpus": per}, max(1, int(per))
            else:
                continue
            for i in range(want):
                if (node_id, i) not in self._slots:
                    self._create(node_id, i, options, threads)

    def _create(self, node_id: str, index: int, options: dict[str, Any], threads: int | None) -> None:
        if self._actor_class is None:
            self._actor_class = ray.remote(NodeWorker)
        cls = self._actor_class.options(
            **options,
            max_concurrency=_ACTOR_CONCURRENCY,
            max_restarts=0,  # the front-end re-creates actors itself, on the nodes alive then
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        )
        # Actors get no secrets: the bearer token and TLS files are the front-end's alone.
        actor = cls.remote(replace(self.settings, token=None, tls_cert=None, tls_key=None), index, threads)
        with self._lock:
            self._slots[(node_id, index)] = _Slot((node_id, index), actor, actor.ready.remote())
        log.info("creating a worker actor on node %s (%s)", node_id[:12], options)

    def _collect(self) -> None:
        """Actors that became ready, or failed to start; jobs that ended, or whose actor died."""
        for sl in list(self._slots.values()):
            if sl.ready_ref is not None and _done(sl.ready_ref):
                try:
                    sl.info = ray.get(sl.ready_ref)
                    sl.ready_ref = None
                    sl.last_seen = time.monotonic()
                    self._backoff.pop(sl.key[0], None)
                    log.info("worker %s ready (%s, pid %s)", sl.worker_id, sl.info["device"], sl.info["pid"])
                except Exception as e:
                    log.error("worker actor on node %s failed to start: %s", sl.key[0][:12], _short(e))
                    self._forget(sl, backoff=True)
            if sl.run_ref is not None and _done(sl.run_ref):
                try:
                    outcome = ray.get(sl.run_ref)
                except (RayActorError, ActorUnavailableError) as e:
                    self._actor_lost(sl, _short(e))
                    continue
                except RayTaskError as e:  # an error outside the handlers (they report their own)
                    assert self._table is not None and sl.job is not None
                    _end(self._table.fail, sl.job.id, sl.worker_id, f"worker error: {_short(e)}")
                    self._finish(sl)
                    continue
                self._record(sl, outcome)
                self._finish(sl)

    def _poll(self) -> None:
        """Progress, checkpoints and lease renewal for every running job; a silent actor is killed."""
        assert self._table is not None
        now = time.monotonic()
        for sl in list(self._slots.values()):
            if sl.job is None:
                continue
            if sl.status_ref is not None and _done(sl.status_ref):
                try:
                    snap = ray.get(sl.status_ref)
                    sl.last_seen = now
                except (RayActorError, ActorUnavailableError):
                    snap = None  # the run call reports the actor's death
                sl.status_ref = None
                if snap is not None:
                    self._apply(sl, snap)
            if sl.job is None:
                continue
            if now - sl.last_seen > self.settings.lease_s:
                log.error("worker %s did not answer for %.0f s; killing it", sl.worker_id, now - sl.last_seen)
                _quietly(ray.kill, sl.actor, no_restart=True)
                sl.last_seen = now  # its run call fails next and the job is recovered there
                continue
            if (
                sl.push != "LOST"
                and now - sl.last_beat >= self.settings.heartbeat_s
                and now - sl.last_seen < self.settings.lease_s
            ):
                sl.last_beat = now
                try:
                    state = self._table.heartbeat(sl.job.id, sl.worker_id, self.settings.lease_s)
                    if state is JobState.CANCELLING:
                        sl.push = state.value
                except LeaseLost:
                    sl.push = "LOST"
            if sl.status_ref is None:
                sl.status_ref = sl.actor.status.remote(sl.job.id, sl.push)

    def _apply(self, sl: _Slot, snap: Mapping[str, Any]) -> None:
        """Write a poll's progress and checkpoints to the front-end's table and scratch folder."""
        assert self._table is not None and sl.job is not None
        if sl.push == "LOST":
            return
        if snap["checkpoints"]:
            ckpt = checkpoint_dir_for(self.settings.scratch_dir, sl.job.id)
            ckpt.mkdir(parents=True, exist_ok=True)
            for name, data in snap["checkpoints"].items():
                tmp = ckpt / f".{Path(name).name}.part"
                tmp.write_bytes(data)
                os.replace(tmp, ckpt / Path(name).name)
        progress = (snap["stage"], snap["progress"])
        if progress != sl.last_progress and snap["stage"]:
            sl.last_progress = progress
            try:
                state = self._table.set_progress(sl.job.id, sl.worker_id, *progress, snap["metrics"])
                if state is JobState.CANCELLING:
                    sl.push = state.value
            except LeaseLost:
                sl.push = "LOST"

    def _dispatch(self) -> None:
        """Give queued jobs to idle, ready actors (oldest job first, as the table hands them out)."""
        assert self._table is not None
        for sl in list(self._slots.values()):
            if not sl.info or sl.job is not None or sl.ready_ref is not None:
                continue
            job = self._table.claim(sl.worker_id, self.settings.lease_s)
            if job is None:
                return
            try:
                sources = self._sources(job)
                ckpts = self._checkpoints(job)
            except Exception as e:
                log.exception("could not prepare job %s", job.id)
                _end(self._table.fail, job.id, sl.worker_id, f"could not send the job's inputs: {_short(e)}")
                continue
            now = time.monotonic()
            sl.job, sl.push, sl.last_progress = job, None, ("", -1.0)
            sl.last_seen = sl.last_beat = now
            sl.run_ref = sl.actor.run.remote(job, sources, ckpts)
            log.info("job %s (%s) -> %s", job.id, job.kind.value, sl.worker_id)

    # -- pieces ------------------------------------------------------------------------------------
    def _sources(self, job: JobRecord) -> dict[str, tuple[dict[str, Any], Any]]:
        """The artifacts a job's spec names, each as (info, ObjectRef), put once and kept for re-use."""
        assert self._store is not None
        out: dict[str, tuple[dict[str, Any], Any]] = {}
        for aid in _artifact_ids(job.spec):
            if aid in out or not self._store.exists(aid):
                continue  # an id the store lacks: the handler reports it as it does on a local worker
            info = self._store.stat(aid)
            if aid in self._refs:
                self._refs.move_to_end(aid)
                ref = self._refs[aid][0]
            else:
                ref = ray.put(self._store.read_bytes(aid))
                self._refs[aid] = (ref, info.size)
                total = sum(size for _, size in self._refs.values())
                while total > self.config.object_cache_bytes and len(self._refs) > 1:
                    _, (_, size) = self._refs.popitem(last=False)
                    total -= size
            out[aid] = (info.as_dict(), ref)
        return out

    def _checkpoints(self, job: JobRecord) -> dict[str, Any]:
        """The job's checkpoint files kept here from an attempt before, as ObjectRefs."""
        ckpt = checkpoint_dir_for(self.settings.scratch_dir, job.id)
        if not ckpt.is_dir():
            return {}
        return {
            p.name: ray.put(p.read_bytes())
            for p in sorted(ckpt.iterdir())
            if p.is_file() and not p.name.startswith(".")
        }

    def _record(self, sl: _Slot, outcome: Mapping[str, Any]) -> None:
        """Store a finished job's result files and record how it ended."""
        assert self._table is not None and self._store is not None and sl.job is not None
        table, job, wid = self._table, sl.job, sl.worker_id
        state = outcome.get("state")
        if state is None:
            log.warning("job %s was abandoned by %s (its lease was lost)", job.id, wid)
        elif state == JobState.SUCCEEDED.value:
            try:
                for aid, name, kind, data in outcome["files"]:
                    stored = self._store.put_bytes(
                        data, name, kind, source_job=job.id, digest_function=digests.function_of(aid)
                    )
                    if stored.id != aid:
                        raise ValueError(f"result {name!r} arrived as {stored.id}, not {aid}")
            except Exception as e:
                _end(table.fail, job.id, wid, f"could not store the results: {_short(e)}")
            else:
                _end(table.succeed, job.id, wid, outcome["results"], outcome["names"], outcome["metrics"])
                log.info("job %s succeeded on %s in %.2f s", job.id, wid, outcome.get("seconds", 0.0))
        elif state == JobState.FAILED.value:
            _end(table.fail, job.id, wid, outcome.get("error", "failed"), outcome.get("failure", ""))
        elif state == JobState.CANCELLED.value:
            _end(table.mark_cancelled, job.id, wid)
        else:  # QUEUED: handed back undone (the actor was asked to stop)
            _end(table.release, job.id, wid)
        _drop_checkpoints_if_ended(table, job.id, self.settings.scratch_dir)

    def _finish(self, sl: _Slot) -> None:
        sl.job = sl.run_ref = sl.status_ref = None
        sl.push = None
        self._wake.set()

    def _actor_lost(self, sl: _Slot, why: str) -> None:
        """The actor is gone (its node died, it was killed): its job goes back to the queue or fails."""
        assert self._table is not None
        log.error("worker %s died while running job %s: %s", sl.worker_id, sl.job.id if sl.job else None, why)
        try:
            if self._table.requeue_expired(worker_id=sl.worker_id):
                self._wake.set()
        except Exception:
            log.exception("recovering the jobs of worker %s failed", sl.worker_id)
        self._forget(sl, backoff=False)

    def _forget(self, sl: _Slot, *, backoff: bool) -> None:
        _quietly(ray.kill, sl.actor, no_restart=True)
        with self._lock:
            self._slots.pop(sl.key, None)
        if backoff:
            _, delay = self._backoff.get(sl.key[0], (0.0, _ACTOR_BACKOFF_S[0]))
            self._backoff[sl.key[0]] = (time.monotonic() + delay, min(2 * delay, _ACTOR_BACKOFF_S[1]))

    def _release_orphans(self) -> int:
        """Jobs held by the actors of a front-end that is gone (they ended with it): back to the queue."""
        assert self._table is not None
        n = 0
        for job in self._table.list([JobState.RUNNING, JobState.CANCELLING], limit=1_000_000):
            if job.worker_id and job.worker_id.startswith(WORKER_PREFIX):
                _end(self._table.release, job.id, job.worker_id)
                n += 1
        return n


def _artifact_ids(spec: Any) -> Iterator[str]:
    """Every artifact id in a job spec, whatever its shape (dicts, lists, dataclasses)."""
    if isinstance(spec, str):
        if digests.is_id(spec):
            yield spec
    elif isinstance(spec, Mapping):
        for v in spec.values():
            yield from _artifact_ids(v)
    elif isinstance(spec, list | tuple):
        for v in spec:
            yield from _artifact_ids(v)
    elif hasattr(spec, "__dataclass_fields__"):
        for name in spec.__dataclass_fields__:
            yield from _artifact_ids(getattr(spec, name))


def _done(ref: Any) -> bool:
    ready, _ = ray.wait([ref], timeout=0)
    return bool(ready)


def _quietly(fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except Exception as e:
        log.debug("%s failed: %s", getattr(fn, "__name__", fn), e)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:500]


__all__ = ["WORKER_PREFIX", "NodeWorker", "RayExecutor"]
