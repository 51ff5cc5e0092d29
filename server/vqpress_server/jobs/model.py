"""The job vocabulary: states, kinds, and the record the job table keeps for each job."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class JobState(str, Enum):  # noqa: UP042 (the agreed (str, Enum) form)
    QUEUED = "QUEUED"  # waiting for a worker
    RUNNING = "RUNNING"  # a worker holds its lease
    SUCCEEDED = "SUCCEEDED"  # results are stored as artifacts
    FAILED = "FAILED"  # error says why
    CANCELLING = "CANCELLING"  # cancel requested; the worker stops at its next progress check
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobKind(str, Enum):  # noqa: UP042
    QUANTIZE = "quantize"
    EXPORT = "export"
    RENDER = "render"
    TRAIN_SPLATS = "train_splats"
    TRAIN_FIELD = "train_field"
    BUILD_FIELD = "build_field"  # an inline field built into a .vqp for the call that sent it


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: JobKind
    spec: dict[str, Any]  # the job's input: the JSON of a jobs/specs.py spec (spec_from_json reads it)
    state: JobState
    progress: float  # 0..1 of the whole job
    stage: str  # what the job is doing now ("kmeans sh", "render 3/8", ...)
    metrics: dict[str, float] = field(default_factory=dict)
    results: list[str] = field(default_factory=list)  # artifact ids, in the kind's documented order
    result_names: list[str] = field(default_factory=list)  # a file name for each result
    error: str = ""  # why the job FAILED (or how it was CANCELLED)
    failure: str = ""  # whose fault a FAILED job was: one of FAILURES, "" when not known (a lost worker)
    attempts: int = 0  # how many times a worker claimed it
    worker_id: str | None = None  # the worker holding (or that last held) it
    created_at: float = 0.0  # unix time, seconds
    started_at: float | None = None  # when a worker last claimed it
    finished_at: float | None = None  # when it reached a terminal state
    version: int = 0  # bumps on every change, so watchers can wait for the next one

    @property
    def terminal(self) -> bool:
        return self.state.terminal


# Whose fault a failure was, so that a caller waiting on the job answers with the right status:
# "input" the request or its file (INVALID_ARGUMENT), "limit" a budget or the disk (RESOURCE_EXHAUSTED),
# "internal" a bug of the server (INTERNAL).
FAILURES = ("input", "limit", "internal")


class JobNotFound(LookupError):
    """No job with this id."""


class QueueFull(Exception):
    """Too many jobs are queued; the client should retry later."""


class StorageFull(Exception):
    """The job table cannot be written: the disk (or quota) under it is full."""


class LeaseLost(Exception):
    """This worker no longer holds the job (its lease expired and the job went to another worker)."""
