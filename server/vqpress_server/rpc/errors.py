"""The one table from exceptions to gRPC status codes, and the decorator that applies it.

Servicer methods raise; they never call ``context.abort`` themselves. ``translate_errors`` wraps
every RPC of a servicer class once, so each exception is mapped in exactly one place:

=============================  ===================  =============================================
exception                      status               why
=============================  ===================  =============================================
ServiceError                   its own code         raised by the RPC layer with a chosen code
ArtifactNotFound, JobNotFound  NOT_FOUND            unknown id
ArtifactIntegrityError         DATA_LOSS            upload bytes do not match the declared size or
                                                    digest (corrupted or cut in transit); nothing
                                                    was stored; send it again
ArtifactTooLarge, QueueFull,   RESOURCE_EXHAUSTED   over the server's size limit, disk full, queue full,
StorageFull, LimitExceeded                          a request over a budget (core/budgets.py)
VqpressInputError              INVALID_ARGUMENT     bad config, tensor or file (core.errors)
anything else                  INTERNAL             a bug: logged with an incident id that the
                                                    message carries; the server keeps serving
=============================  ===================  =============================================
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from ..artifacts.store import ArtifactIntegrityError, ArtifactNotFound, ArtifactTooLarge
from ..core.errors import LimitExceeded, VqpressInputError
from ..jobs.model import JobNotFound, QueueFull, StorageFull

log = logging.getLogger(__name__)

Code = grpc.StatusCode


class ServiceError(Exception):
    """An error the RPC layer raises with a chosen status code and a message that says what to fix."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code.name}: {message}")


def invalid_argument(message: str) -> ServiceError:
    return ServiceError(Code.INVALID_ARGUMENT, message)


STATUS_TABLE: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (ArtifactNotFound, Code.NOT_FOUND),
    (JobNotFound, Code.NOT_FOUND),
    (ArtifactIntegrityError, Code.DATA_LOSS),
    (ArtifactTooLarge, Code.RESOURCE_EXHAUSTED),  # includes ArtifactStoreFull (disk full)
    (QueueFull, Code.RESOURCE_EXHAUSTED),
    (StorageFull, Code.RESOURCE_EXHAUSTED),  # the job table's disk is full
    (LimitExceeded, Code.RESOURCE_EXHAUSTED),  # a request over a budget: names the limit and the value
    (VqpressInputError, Code.INVALID_ARGUMENT),
)


def status_for(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str]:
    """The status code and message a client sees for ``exc`` raised by ``method``."""
    if isinstance(exc, ServiceError):
        return exc.code, exc.message
    for exc_type, code in STATUS_TABLE:
        if isinstance(exc, exc_type):
            return code, str(exc)
    incident = uuid.uuid4().hex[:12]
    log.error("internal error %s in %s", incident, method, exc_info=exc)
    return Code.INTERNAL, f"internal server error (incident {incident}, logged by the server); please report it"


F = TypeVar("F", bound=Callable[..., Any])


def _wrap(method: F, name: str) -> F:
    def fail(exc: Exception, context: grpc.ServicerContext) -> None:
        if isinstance(exc, grpc.RpcError) and not context.is_active():
            # The client went away mid-call (cancelled, deadline, killed): nobody to answer, nothing
            # to debug. One line; aborting (not returning None) keeps gRPC from logging a traceback.
            log.info("%s: the client went away before the call ended", name)
            context.abort(Code.CANCELLED, "the client went away")
        code, message = status_for(exc, name)
        context.abort(code, message)

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from method(self, request, context)
            except Exception as exc:
                fail(exc, context)

        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            fail(exc, context)
            return None

    return unary  # type: ignore[return-value]


C = TypeVar("C", bound=type)


def translate_errors(rpc_names: list[str]) -> Callable[[C], C]:
    """Class decorator: wrap each named RPC method of a servicer with the status table."""

    def deco(cls: C) -> C:
        for name in rpc_names:
            setattr(cls, name, _wrap(getattr(cls, name), f"{cls.__name__}.{name}"))
        return cls

    return deco
