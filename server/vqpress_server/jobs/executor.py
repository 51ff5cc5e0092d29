"""Where jobs run: the one interface the composition root needs, and the choice between executors.

Both executors serve the same job table with the same handlers (jobs/worker.py ``_run_job``):

- ``local``: worker processes of this server (jobs/worker.py), one per visible GPU or one on the CPU;
- ``ray``: actors of a Ray cluster (jobs/ray_executor.py), one per GPU of every node or per CPU slot.

Either way the job table is the record: leases, progress, cancellation and retries mean the same.
"""

from __future__ import annotations

from typing import Protocol

from ..settings import Settings


class Executor(Protocol):
    """Runs the jobs of the table at ``settings.jobs_db`` until stopped."""

    # Whether its workers can hand a Render call's images over through ``settings.outbox_dir``
    # (they share the server's data directory) instead of storing them as artifacts.
    streams_renders: bool

    def start(self) -> None:
        """Recover jobs a previous run left behind, then start taking jobs."""

    def begin_stop(self) -> None:
        """Stop taking jobs and ask running ones to hand back; returns at once."""

    def stop(self, timeout: float = 10) -> None:
        """Stop taking jobs; a job still running goes back to the queue (not counted as an attempt)."""

    def notify(self) -> None:
        """A job was submitted: look at the queue now rather than at the next poll."""

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every worker has its warm state (True), or ``timeout`` seconds passed (False)."""

    def devices(self) -> list[str]:
        """Each worker's device ("cuda:0", "cpu"), for GetServerInfo."""

    def describe(self) -> str:
        """One line for the log: how many workers, where."""


def build_executor(settings: Settings) -> Executor:
    """The executor ``settings.executor`` names. Ray is imported only when it is asked for."""
    if settings.executor == "local":
        from .worker import WorkerPool

        return WorkerPool(settings)
    if settings.executor == "ray":
        try:
            from .ray_executor import RayExecutor
        except ImportError as e:
            raise RuntimeError(
                f"the ray executor needs Ray ({e}): install the cluster extra, pip install 'vqpress[cluster]'"
            ) from None
        return RayExecutor(settings)
    raise ValueError(f"unknown executor {settings.executor!r}")
