"""The gRPC server: the Vqpress service, health (grpc.health.v1), reflection, auth, TLS, limits."""

from __future__ import annotations

import errno
import ipaddress
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from vqpress import _wire
from vqpress.v1 import vqpress_pb2 as pb
from vqpress.v1 import vqpress_pb2_grpc as pb_grpc

from ..settings import MAX_MESSAGE_BYTES, Settings
from .auth import BearerTokenInterceptor

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Vqpress"].full_name  # "vqpress.v1.Vqpress"
UNARY_THREADS = 16  # threads beyond Settings.max_streams, kept for short calls (health, GetJob, submits)
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),  # a second server on the same port fails instead of sharing it
    # Clients ping idle connections every 30 s (long Render and WatchJob calls sit idle while a
    # worker computes); accept pings down to 10 s apart instead of answering with GOAWAY
    # "too_many_pings", the default for anything under 5 minutes.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


class OpenBindRefused(RuntimeError):
    """Serving without a token on a non-loopback interface was not explicitly allowed."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    h = host.strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False  # a host name or a wildcard: reachable from elsewhere as far as we know


def check_exposure(settings: Settings) -> None:
    """Refuse to serve on a public interface without a token, unless ``settings.insecure``: anyone who
    reaches the port could then run jobs on its GPUs and read and delete every artifact."""
    if settings.token or settings.insecure or is_loopback(settings.host):
        return
    raise OpenBindRefused(
        f"refusing to serve on {settings.host} without a token: anyone who can reach port {settings.port} could "
        "run jobs and read every artifact. Set --token (or VQPRESS_TOKEN), bind to 127.0.0.1 (--host), or pass "
        "--insecure (VQPRESS_INSECURE=1) if the network in front of it does the authentication"
    )


@dataclass
class RpcServer:
    server: grpc.Server
    health: health.HealthServicer
    port: int  # the bound port (the one picked when Settings.port is 0)


def create_server(servicer: pb_grpc.VqpressServicer, settings: Settings) -> RpcServer:
    """A server bound to ``settings.host:settings.port`` (not started), serving health as NOT_SERVING
    until ``start`` marks it SERVING. Refuses (OpenBindRefused) a public interface without a token."""
    check_exposure(settings)
    # A streaming call holds its thread while it waits (a sync gRPC server has no other way), so
    # streams are capped below the thread count: short calls, health included, always find one.
    interceptors: list[grpc.ServerInterceptor] = [BearerTokenInterceptor(settings.token)] if settings.token else []
    interceptors.append(StreamLimit(settings.max_streams))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_streams + UNARY_THREADS, thread_name_prefix="vqpress-rpc"),
        interceptors=interceptors,
        options=SERVER_OPTIONS,
    )
    add_servicer(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    address = f"{settings.host}:{settings.port}"
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ValueError("TLS needs both a certificate (tls_cert) and its private key (tls_key)")
    if settings.tls_cert is not None and settings.tls_key is not None:
        creds = grpc.ssl_server_credentials([(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())])
        port = server.add_secure_port(address, creds)
    else:
        port = _bind(lambda: server.add_insecure_port(address))
    if port == 0:
        raise OSError(errno.EADDRINUSE, f"cannot listen on {address}: the address is in use or not local")
    return RpcServer(server, health_servicer, port)


# Methods whose messages go through vqpress._wire instead of protobuf: (request deserializer,
# response serializer). The servicer's UploadArtifact gets a chunk as a memoryview (any other
# message as protobuf); its DownloadArtifact yields the bytes of each chunk.
_WIRE_CODECS: dict[str, tuple[Callable[[bytes], Any] | None, Callable[[Any], bytes] | None]] = {
    "UploadArtifact": (_wire.decode_upload_request, None),
    "DownloadArtifact": (None, _wire.encode_artifact_chunk),
}
_HANDLER_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_servicer(servicer: pb_grpc.VqpressServicer, server: grpc.Server) -> None:
    """Register every method of the Vqpress service (what the generated
    ``add_VqpressServicer_to_server`` does), the artifact streams with the codecs of vqpress._wire."""
    service = pb.DESCRIPTOR.services_by_name["Vqpress"]
    handlers = {}
    for m in service.methods:
        decode: Callable[[bytes], Any] | None = getattr(pb, m.input_type.name).FromString
        encode: Callable[[Any], bytes] | None = getattr(pb, m.output_type.name).SerializeToString
        wire_decode, wire_encode = _WIRE_CODECS.get(m.name, (None, None))
        kind = _HANDLER_KINDS[(m.client_streaming, m.server_streaming)]
        handlers[m.name] = kind(
            getattr(servicer, m.name),
            request_deserializer=wire_decode or decode,
            response_serializer=wire_encode or encode,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def _bind(add_port: Callable[[], int]) -> int:
    """The bound port, or 0 when gRPC could not bind (some versions raise instead of returning 0)."""
    try:
        return add_port()
    except RuntimeError:
        return 0


class StreamLimit(grpc.ServerInterceptor):
    """At most ``limit`` streaming calls (either direction) at once; one more is RESOURCE_EXHAUSTED."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_streams must be at least 1, got {limit}")
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        method = details.method.rsplit("/", 1)[-1]
        kw = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(self._streaming(handler.stream_stream, method), **kw)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(self._streaming(handler.unary_stream, method), **kw)
        return grpc.stream_unary_rpc_method_handler(self._unary(handler.stream_unary, method), **kw)

    def _take(self, context: grpc.ServicerContext, method: str) -> Callable[[], None]:
        """Take a slot (or abort the call); returns the release, safe to call more than once."""
        if not self._slots.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{method}: {self.limit} streaming calls (WatchJob, Render, uploads, downloads) are open, "
                "the server's limit (max_streams); close one or retry later",
            )
        lock, held = threading.Lock(), [True]

        def release() -> None:
            with lock:
                if held[0]:
                    held[0] = False
                    self._slots.release()

        context.add_callback(release)  # the call ended, even if the generator is never closed
        return release

    def _streaming(self, behavior: Callable[..., Iterator[Any]], method: str) -> Callable[..., Iterator[Any]]:
        def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            release = self._take(context, method)
            try:
                yield from behavior(request, context)
            finally:
                release()

        return run

    def _unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        def run(request_iterator: Any, context: grpc.ServicerContext) -> Any:
            release = self._take(context, method)
            try:
                return behavior(request_iterator, context)
            finally:
                release()

        return run


def set_serving(rpc: RpcServer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):
        rpc.health.set(name, status)
