"""The job table: SQLite in WAL mode, the source of truth for every job.

Any number of processes open the same file (the gRPC process and each worker); each thread of
each process gets its own connection. State changes that read-then-write run inside
``BEGIN IMMEDIATE`` so two workers can never claim the same job.

Lifecycle::

    QUEUED --claim--> RUNNING --succeed/fail--> SUCCEEDED / FAILED
      |                  |  \\--request_cancel--> CANCELLING --mark_cancelled--> CANCELLED
      \\--request_cancel--> CANCELLED
    RUNNING whose lease expired --requeue_expired--> QUEUED, or FAILED after max_attempts
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .model import TERMINAL_STATES, JobKind, JobNotFound, JobRecord, JobState, LeaseLost, QueueFull, StorageFull
from .specs import JobSpec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    spec         TEXT NOT NULL,
    state        TEXT NOT NULL,
    progress     REAL NOT NULL DEFAULT 0,
    stage        TEXT NOT NULL DEFAULT '',
    metrics      TEXT NOT NULL DEFAULT '{}',
    results      TEXT NOT NULL DEFAULT '[]',
    result_names TEXT NOT NULL DEFAULT '[]',
    error        TEXT NOT NULL DEFAULT '',
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_until  REAL,
    worker_id    TEXT,
    created_at   REAL NOT NULL,
    started_at   REAL,
    finished_at  REAL,
    version      INTEGER NOT NULL DEFAULT 1,
    failure      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_state_created ON jobs (state, created_at);
"""
_COLUMNS = (
    "id, kind, spec, state, progress, stage, metrics, results, result_names, error, attempts, "
    "worker_id, created_at, started_at, finished_at, version, failure"
)
_HELD = (JobState.RUNNING.value, JobState.CANCELLING.value)
_BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for another's lock before failing: 30 s
_MAX_SPEC_BYTES = 16 << 20  # a job spec larger than this (JSON bytes) is refused: 16 MiB


class TableChanges:
    """A count of the writes committed to one job table, seen by every thread of this process.

    Every JobTable of this process on the same file bumps it when a write of its commits; a worker
    process passes its writes on through ``JobTable(on_write=...)`` (the pool relays them here).
    ``wait_for_change`` waits on it, so a job that changes is seen at once rather than at the next
    poll; the polls stay, so a change this process is not told about is still seen.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def bump(self) -> None:
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        """Wait until the count is past ``seen`` (True) or ``timeout`` seconds passed (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count != seen, max(0.0, timeout))


_CHANGES: dict[str, TableChanges] = {}
_CHANGES_LOCK = threading.Lock()


def table_changes(path: Path) -> TableChanges:
    """The change count of the job table at ``path`` in this process (one per file)."""
    key = os.path.realpath(path)
    with _CHANGES_LOCK:
        return _CHANGES.setdefault(key, TableChanges())


class JobTable:
    """Jobs in the SQLite file ``path``.

    max_attempts: a job whose worker was lost this many times FAILS with a reason (default 3).
    poll_s: the longest pause between looks at the table in wait_for_change (seconds, default 0.2).
    on_write: called after each write that changed the table commits (a worker process tells the
    server's process so); it must not block.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_attempts: int = 3,
        poll_s: float = 0.2,
        on_write: Callable[[], None] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.path = Path(path)
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.changes = table_changes(self.path)
        self._on_write = on_write
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        if "failure" not in {r[1] for r in conn.execute("PRAGMA table_info(jobs)")}:  # a table of 0.x
            conn.execute("ALTER TABLE jobs ADD COLUMN failure TEXT NOT NULL DEFAULT ''")

    # -- connections -----------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _write(self) -> _Txn:
        return _Txn(self._conn(), self._committed)

    def _committed(self) -> None:
        self.changes.bump()
        if self._on_write is not None:
            try:
                self._on_write()
            except Exception:  # a hint only: waiters still poll
                pass

    # -- client side -----------------------------------------------------------------
    def submit(self, kind: JobKind | str, spec: Mapping[str, Any], *, max_queued: int | None = None) -> JobRecord:
        """Queue a job. Raises QueueFull when ``max_queued`` jobs are already waiting."""
        kind = JobKind(kind)
        spec_json = json.dumps(dict(spec), allow_nan=False, separators=(",", ":"))
        if len(spec_json) > _MAX_SPEC_BYTES:
            raise ValueError(f"job spec is {len(spec_json)} bytes; the limit is {_MAX_SPEC_BYTES}")
        job_id = uuid.uuid4().hex
        with self._write() as c:
            if max_queued is not None:
                (n,) = c.execute("SELECT count(*) FROM jobs WHERE state=?", (JobState.QUEUED.value,)).fetchone()
                if n >= max_queued:
                    raise QueueFull(f"{n} jobs are already queued (the limit is {max_queued}); retry later")
            c.execute(
                "INSERT INTO jobs (id, kind, spec, state, created_at) VALUES (?, ?, ?, ?, ?)",
                (job_id, kind.value, spec_json, JobState.QUEUED.value, time.time()),
            )
        return self.get(job_id)

    def submit_spec(self, spec: JobSpec, *, max_queued: int | None = None) -> JobRecord:
        """Queue the job of a typed spec (its kind is the spec's): the table stores ``spec.to_json()``."""
        return self.submit(spec.KIND, spec.to_json(), max_queued=max_queued)

    def get(self, job_id: str) -> JobRecord:
        row = self._conn().execute(f"SELECT {_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {str(job_id)[:80]!r}")
        return _record(row)

    def list(self, states: Iterable[JobState | str] | None = None, limit: int = 100) -> list[JobRecord]:
        """Jobs, newest first, optionally only in the given states."""
        sql, args = f"SELECT {_COLUMNS} FROM jobs", []
        if states is not None:
            vals = [JobState(s).value for s in states]
            sql += f" WHERE state IN ({','.join('?' * len(vals))})"
            args.extend(vals)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        args.append(max(0, int(limit)))
        return [_record(r) for r in self._conn().execute(sql, args)]

    def request_cancel(self, job_id: str) -> JobRecord:
        """QUEUED -> CANCELLED at once; RUNNING -> CANCELLING (the worker stops soon); else unchanged."""
        now = time.time()
        with self._write() as c:
            state = self._state(c, job_id)
            if state is JobState.QUEUED:
                c.execute(
                    "UPDATE jobs SET state=?, error=?, finished_at=?, version=version+1 WHERE id=?",
                    (JobState.CANCELLED.value, "cancelled before it started", now, job_id),
                )
            elif state is JobState.RUNNING:
                c.execute(
                    "UPDATE jobs SET state=?, version=version+1 WHERE id=?",
                    (JobState.CANCELLING.value, job_id),
                )
        return self.get(job_id)

    def wait_for_change(self, job_id: str, after_version: int, timeout: float) -> JobRecord:
        """The job once its version is past ``after_version`` (or it is terminal, or ``timeout`` s passed).

        Wakes when a write to the table commits in this process or in a worker that reports its
        writes (``TableChanges``), and polls besides, from 1 ms doubling up to poll_s, so a change
        nobody reports is still seen soon.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        delay = 0.001
        conn = self._conn()
        while True:
            seen = self.changes.count  # before the query: a write committed after it wakes the wait
            row = conn.execute("SELECT version, state FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {str(job_id)[:80]!r}")
            if row[0] > after_version or JobState(row[1]) in TERMINAL_STATES:
                return self.get(job_id)
            left = deadline - time.monotonic()
            if left <= 0:
                return self.get(job_id)
            self.changes.wait(seen, min(delay, left))
            delay = min(delay * 2, self.poll_s)

    # -- worker side -----------------------------------------------------------------
    def claim(self, worker_id: str, lease_s: float) -> JobRecord | None:
        """Take the oldest QUEUED job, or None. Atomic across processes."""
        now = time.time()
        with self._write() as c:
            row = c.execute(
                "SELECT id FROM jobs WHERE state=? ORDER BY created_at, rowid LIMIT 1",
                (JobState.QUEUED.value,),
            ).fetchone()
            if row is None:
                return None
            c.execute(
                "UPDATE jobs SET state=?, worker_id=?, lease_until=?, attempts=attempts+1, started_at=?, "
                "progress=0, stage='', error='', version=version+1 WHERE id=? AND state=?",
                (JobState.RUNNING.value, worker_id, now + lease_s, now, row[0], JobState.QUEUED.value),
            )
        return self.get(row[0])

    def heartbeat(self, job_id: str, worker_id: str, lease_s: float) -> JobState:
        """Renew the lease; returns the state (CANCELLING means: stop). Raises LeaseLost."""
        with self._write() as c:
            self._held(c, job_id, worker_id)
            c.execute("UPDATE jobs SET lease_until=? WHERE id=?", (time.time() + lease_s, job_id))
            return self._state(c, job_id)

    def set_progress(
        self,
        job_id: str,
        worker_id: str,
        stage: str,
        progress: float,
        metrics: Mapping[str, float] | None = None,
    ) -> JobState:
        """Record progress (merging ``metrics`` into the job's); returns the state. Raises LeaseLost."""
        p = min(max(float(progress), 0.0), 1.0) if math.isfinite(progress) else 0.0
        with self._write() as c:
            self._held(c, job_id, worker_id)
            if metrics:
                (old,) = c.execute("SELECT metrics FROM jobs WHERE id=?", (job_id,)).fetchone()
                merged = {**json.loads(old), **_clean_metrics(metrics)}
                c.execute("UPDATE jobs SET metrics=? WHERE id=?", (json.dumps(merged), job_id))
            c.execute(
                "UPDATE jobs SET stage=?, progress=?, version=version+1 WHERE id=?",
                (str(stage)[:200], p, job_id),
            )
            return self._state(c, job_id)

    def succeed(
        self,
        job_id: str,
        worker_id: str,
        results: Sequence[str],
        result_names: Sequence[str],
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        if len(results) != len(result_names):
            raise ValueError(f"{len(results)} results but {len(result_names)} result names")
        with self._write() as c:
            self._held(c, job_id, worker_id)
            (old,) = c.execute("SELECT metrics FROM jobs WHERE id=?", (job_id,)).fetchone()
            merged = {**json.loads(old), **_clean_metrics(metrics or {})}
            c.execute(
                "UPDATE jobs SET state=?, progress=1, stage='done', results=?, result_names=?, metrics=?, "
                "lease_until=NULL, finished_at=?, version=version+1 WHERE id=?",
                (
                    JobState.SUCCEEDED.value,
                    json.dumps(list(results)),
                    json.dumps(list(result_names)),
                    json.dumps(merged),
                    time.time(),
                    job_id,
                ),
            )

    def fail(self, job_id: str, worker_id: str, error: str, failure: str = "") -> None:
        """FAILED with ``error``; ``failure`` says whose fault it was (model.FAILURES, "" unknown)."""
        self._finish(job_id, worker_id, JobState.FAILED, error or "failed", failure)

    def mark_cancelled(self, job_id: str, worker_id: str) -> None:
        self._finish(job_id, worker_id, JobState.CANCELLED, "cancelled while running")

    def release(self, job_id: str, worker_id: str) -> None:
        """Give a job back undone (the worker is shutting down): RUNNING -> QUEUED, not counted as an
        attempt; CANCELLING -> CANCELLED."""
        with self._write() as c:
            state = self._held(c, job_id, worker_id)
            if state is JobState.CANCELLING:
                c.execute(
                    "UPDATE jobs SET state=?, error=?, lease_until=NULL, finished_at=?, version=version+1 WHERE id=?",
                    (JobState.CANCELLED.value, "cancelled while running", time.time(), job_id),
                )
            else:
                c.execute(
                    "UPDATE jobs SET state=?, attempts=max(attempts-1, 0), lease_until=NULL, progress=0, "
                    "stage='', version=version+1 WHERE id=?",
                    (JobState.QUEUED.value, job_id),
                )

    def requeue_expired(self, *, worker_id: str | None = None) -> int:
        """Recover jobs whose worker is gone; returns how many changed.

        Without ``worker_id``: jobs whose lease expired. With it: every job that worker holds (the
        pool saw the process die). RUNNING goes back to QUEUED, or FAILED after max_attempts;
        CANCELLING becomes CANCELLED.
        """
        now = time.time()
        with self._write() as c:
            if worker_id is None:
                rows = c.execute(
                    "SELECT id, state, attempts, worker_id FROM jobs WHERE state IN (?, ?) AND lease_until < ?",
                    (*_HELD, now),
                ).fetchall()
            else:
                rows = c.execute(
                    "SELECT id, state, attempts, worker_id FROM jobs WHERE state IN (?, ?) AND worker_id=?",
                    (*_HELD, worker_id),
                ).fetchall()
            for job_id, state, attempts, wid in rows:
                if state == JobState.CANCELLING.value:
                    new, error, finished = JobState.CANCELLED, "cancelled (its worker was lost)", now
                elif attempts >= self.max_attempts:
                    new, finished = JobState.FAILED, now
                    error = (
                        f"worker lost {attempts} times (last {wid}); giving up after max_attempts="
                        f"{self.max_attempts}. The job may crash its worker (out of memory?): "
                        "try a smaller input"
                    )
                else:
                    new, error, finished = JobState.QUEUED, "", None
                c.execute(
                    "UPDATE jobs SET state=?, error=?, finished_at=?, lease_until=NULL, progress=0, "
                    "stage='', version=version+1 WHERE id=?",
                    (new.value, error, finished, job_id),
                )
        return len(rows)

    # -- helpers ---------------------------------------------------------------------
    def _finish(self, job_id: str, worker_id: str, state: JobState, error: str, failure: str = "") -> None:
        with self._write() as c:
            self._held(c, job_id, worker_id)
            c.execute(
                "UPDATE jobs SET state=?, error=?, failure=?, lease_until=NULL, finished_at=?, version=version+1 "
                "WHERE id=?",
                (state.value, error, failure, time.time(), job_id),
            )

    @staticmethod
    def _state(c: sqlite3.Connection, job_id: str) -> JobState:
        row = c.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {str(job_id)[:80]!r}")
        return JobState(row[0])

    @staticmethod
    def _held(c: sqlite3.Connection, job_id: str, worker_id: str) -> JobState:
        row = c.execute("SELECT state, worker_id FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {str(job_id)[:80]!r}")
        if row[0] not in _HELD or row[1] != worker_id:
            raise LeaseLost(f"job {job_id} is {row[0]} and held by {row[1]}, not by {worker_id}")
        return JobState(row[0])


class _Txn:
    """``with`` block running ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception);
    ``committed`` is called after a commit that changed rows."""

    def __init__(self, conn: sqlite3.Connection, committed: Callable[[], None]) -> None:
        self.conn = conn
        self.committed = committed
        self._before = 0

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        self._before = self.conn.total_changes
        return self.conn

    def __exit__(self, et: object, ev: object, tb: object) -> None:
        if et is None:
            try:
                changed = self.conn.total_changes != self._before
                self.conn.execute("COMMIT")
                if changed:
                    self.committed()
                return
            except sqlite3.Error as e:
                ev = e
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        if _is_full(ev):
            raise StorageFull(
                "the job table cannot be written: no space left on the server's disk; free disk space"
            ) from ev  # type: ignore[misc]
        if et is None:
            raise ev  # type: ignore[misc]


def _is_full(e: object) -> bool:
    """SQLITE_FULL: a write needed space the disk (or quota) did not have."""
    return isinstance(e, sqlite3.Error) and getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Finite float metrics only (a NaN would not survive JSON, and None means 'not measured')."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(v):
            out[str(k)] = float(v)
    return out


def _record(row: tuple[Any, ...]) -> JobRecord:
    (id_, kind, spec, state, progress, stage, metrics, results, names, error, attempts, worker,
     created, started, finished, version, failure) = row  # fmt: skip
    return JobRecord(
        id=id_,
        kind=JobKind(kind),
        spec=json.loads(spec),
        state=JobState(state),
        progress=progress,
        stage=stage,
        metrics=json.loads(metrics),
        results=json.loads(results),
        result_names=json.loads(names),
        error=error,
        attempts=attempts,
        worker_id=worker,
        created_at=created,
        started_at=started,
        finished_at=finished,
        version=version,
        failure=failure,
    )
