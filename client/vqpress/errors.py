"""The client's one exception type, and the one place gRPC errors are translated into it."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc


class VqpressError(Exception):
    """Anything the service or the client refused, with a gRPC status code name and a message.

    ``code`` is the name of a ``grpc.StatusCode`` ("INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED",
    ...). Errors found on the client before sending use the code the server would have used.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class JobFailed(VqpressError):
    """A job ended FAILED; ``job_id`` names it and the message carries the server's reason."""

    def __init__(self, job_id: str, reason: str) -> None:
        self.job_id = job_id
        super().__init__("FAILED", f"job {job_id} failed: {reason}")


class JobCancelled(VqpressError):
    """A job ended CANCELLED (``Job.wait`` raises it: a cancelled job has no results to fetch)."""

    def __init__(self, job_id: str, reason: str = "") -> None:
        self.job_id = job_id
        super().__init__("CANCELLED", f"job {job_id} was cancelled" + (f": {reason}" if reason else ""))


class JobTimeout(VqpressError, TimeoutError):
    """A wait gave up before the job ended; the job itself goes on running on the server."""

    def __init__(self, job_id: str, timeout: float | None) -> None:
        self.job_id = job_id
        super().__init__("DEADLINE_EXCEEDED", f"job {job_id} did not finish within {timeout} s")


# Exit status of the `vqpress` CLI for each outcome; a pipeline retries 5 and fixes its input on 3.
EXIT_OK = 0
EXIT_ERROR = 1  # anything not listed below (a server-side bug: INTERNAL, UNKNOWN)
EXIT_USAGE = 2  # the command line itself is wrong (argparse)
EXIT_INVALID = 3  # the input or a local file is wrong: fix it, do not retry as is
EXIT_NOT_FOUND = 4  # no such job or artifact
EXIT_UNAVAILABLE = 5  # the server is down, unreachable or busy: retry later
EXIT_JOB_FAILED = 6  # the job ran and failed; the message has the reason
EXIT_CANCELLED = 7  # the job was cancelled
EXIT_TIMEOUT = 8  # --timeout passed; the job is still running on the server
EXIT_AUTH = 9  # the server refused the token (or its absence)
EXIT_INTERRUPTED = 130  # Ctrl-C (the job was cancelled)

_EXIT_BY_CODE = {
    "INVALID_ARGUMENT": EXIT_INVALID,
    "FAILED_PRECONDITION": EXIT_INVALID,
    "OUT_OF_RANGE": EXIT_INVALID,
    "ALREADY_EXISTS": EXIT_INVALID,
    "NOT_FOUND": EXIT_NOT_FOUND,
    "UNAVAILABLE": EXIT_UNAVAILABLE,
    "RESOURCE_EXHAUSTED": EXIT_UNAVAILABLE,
    "ABORTED": EXIT_UNAVAILABLE,
    "DATA_LOSS": EXIT_UNAVAILABLE,  # a transfer broke or the file changed while it was read: try again
    "FAILED": EXIT_JOB_FAILED,
    "CANCELLED": EXIT_CANCELLED,
    "DEADLINE_EXCEEDED": EXIT_TIMEOUT,
    "UNAUTHENTICATED": EXIT_AUTH,
    "PERMISSION_DENIED": EXIT_AUTH,
}


def exit_code(err: VqpressError) -> int:
    """The CLI's exit status for an error (see the EXIT_* constants)."""
    return _EXIT_BY_CODE.get(err.code, EXIT_ERROR)


class MissingDependencyError(ImportError):
    """An optional package is not installed; the message names the pip extra that brings it."""


def invalid(message: str) -> VqpressError:
    """An INVALID_ARGUMENT error found on the client side, before anything is sent."""
    return VqpressError("INVALID_ARGUMENT", message)


def from_rpc_error(err: grpc.RpcError) -> VqpressError:
    """Convert a ``grpc.RpcError`` (as raised by a stub call or a response stream) to a VqpressError."""
    import grpc  # here, not at the top: the numpy .vqp reader and the types import without grpc

    code = err.code() if isinstance(err, grpc.Call) else None
    details = err.details() if isinstance(err, grpc.Call) else None
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return VqpressError(name, details or str(err))


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise any ``grpc.RpcError`` raised inside the block as a VqpressError (``from None``)."""
    import grpc  # here, not at the top: the numpy .vqp reader and the types import without grpc

    try:
        yield
    except grpc.RpcError as err:
        raise from_rpc_error(err) from None


def require(module: str, purpose: str, *, extra: str | None = None, package: str | None = None) -> ModuleType:
    """Import an optional module, or raise MissingDependencyError saying what to install:
    ``pip install 'vqpress[extra]'`` or ``pip install package``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        what = f"'vqpress[{extra}]'" if extra else (package or module)
        raise MissingDependencyError(
            f"{purpose} needs the Python module {module!r}; install it with: pip install {what}"
        ) from None
