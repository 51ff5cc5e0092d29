"""Bearer-token authentication: a server interceptor. Health checks stay open."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)  # methods that need no token (load balancers, compose)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuse with UNAUTHENTICATED any call without metadata ``authorization: Bearer <token>``.

    The comparison is constant-time. Methods under ``OPEN_PREFIXES`` pass without a token.
    """

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the bearer token must not be empty")
        self._expected = f"Bearer {token}".encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIXES):
            return handler
        sent = ""
        for key, value in details.invocation_metadata or ():
            if key == "authorization" and isinstance(value, str):
                sent = value
        if hmac.compare_digest(sent.encode(), self._expected):
            return handler
        why = "no 'authorization' metadata" if not sent else "a wrong bearer token"
        return _refuse(
            handler,
            f"this server requires a token and the call has {why}: "
            "send metadata 'authorization: Bearer <token>' with the server's token (VQPRESS_TOKEN)",
        )


def _refuse(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that answers UNAUTHENTICATED without running it."""

    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny, **kw)
    return grpc.unary_unary_rpc_method_handler(deny, **kw)
