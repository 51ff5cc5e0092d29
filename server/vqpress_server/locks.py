"""Who may use a data directory: one server, and the workers it started. POSIX advisory locks.

Two lock files live in the data directory:

``server.lock``   held exclusively by the one server using the directory (``hold_server_lock``);
                  a second server on it is refused with ``DataDirInUse``. It holds the owner's pid.
``workers.lock``  held shared by every worker process for its whole life (``hold_worker_lock``).
                  A server that takes it exclusively (``no_workers_alive``) knows that no worker of
                  an earlier server is still running, so every job such a worker held can be
                  re-queued at once instead of after its lease.

The kernel drops a lock when its holder exits, however it exits (kill -9 included), so a crash
never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import IO

SERVER_LOCK = "server.lock"
WORKERS_LOCK = "workers.lock"
_POLL_S = 0.05  # how often no_workers_alive retries the lock (seconds)


class DataDirInUse(OSError):
    """Another server is using the data directory."""


def hold_server_lock(data_dir: Path) -> IO[str]:
    """Lock ``data_dir`` for this process; keep the returned file open as long as the server runs.

    Raises DataDirInUse (naming the other server's pid) when another process holds it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SERVER_LOCK
    f = open(path, "a+")  # noqa: SIM115 - the open file is the lock
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        owner = f.read().strip() or "unknown"
        f.close()
        raise DataDirInUse(
            f"data directory {data_dir} is in use by another vqpress server (pid {owner}, see {path}); "
            "stop it, or give this server its own --data-dir"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def release(lock: IO[str] | None) -> None:
    """Drop a lock taken by this module (closing the file releases it)."""
    if lock is not None:
        with contextlib.suppress(OSError):
            lock.close()


def hold_worker_lock(data_dir: Path, timeout: float = 60.0) -> IO[str] | None:
    """In a worker process: hold ``workers.lock`` shared until the process exits.

    Waits while a starting server holds it exclusively (a fraction of a second); returns None if
    that takes longer than ``timeout`` seconds (the worker runs without it).
    """
    f = open(data_dir / WORKERS_LOCK, "a+")  # noqa: SIM115 - the open file is the lock
    if _lock_within(f, fcntl.LOCK_SH, timeout):
        return f
    f.close()
    return None


def no_workers_alive(data_dir: Path, timeout: float) -> bool:
    """True once no process holds ``workers.lock`` (every earlier worker has exited), waiting up to
    ``timeout`` seconds for workers that are still stopping; False if some outlive the wait."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / WORKERS_LOCK, "a+") as f:
        if not _lock_within(f, fcntl.LOCK_EX, timeout):
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def _lock_within(f: IO[str], mode: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(f, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
