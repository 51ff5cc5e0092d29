"""The durable job queue (SQLite), its worker processes, and one handler per job kind."""

from .model import JobKind, JobNotFound, JobRecord, JobState, LeaseLost, QueueFull, StorageFull
from .table import JobTable
from .worker import WorkerPool

__all__ = [
    "JobKind",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "JobTable",
    "LeaseLost",
    "QueueFull",
    "StorageFull",
    "WorkerPool",
]
