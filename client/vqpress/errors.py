"""The client's one exception type, and the one place gRPC errors are translated into it."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

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


class MissingDependencyError(ImportError):
    """An optional package is not installed; the message names the pip extra that brings it."""


def invalid(message: str) -> VqpressError:
    """An INVALID_ARGUMENT error found on the client side, before anything is sent."""
    return VqpressError("INVALID_ARGUMENT", message)


def from_rpc_error(err: grpc.RpcError) -> VqpressError:
    """Convert a ``grpc.RpcError`` (as raised by a stub call or a response stream) to a VqpressError."""
    code = err.code() if isinstance(err, grpc.Call) else None
    details = err.details() if isinstance(err, grpc.Call) else None
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return VqpressError(name, details or str(err))


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise any ``grpc.RpcError`` raised inside the block as a VqpressError (``from None``)."""
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
