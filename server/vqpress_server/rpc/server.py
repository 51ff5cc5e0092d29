"""The gRPC server: the Vqpress service, health (grpc.health.v1), reflection, auth, TLS, limits."""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from vqpress.v1 import vqpress_pb2 as pb
from vqpress.v1 import vqpress_pb2_grpc as pb_grpc

from ..settings import MAX_MESSAGE_BYTES, Settings
from .auth import BearerTokenInterceptor

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Vqpress"].full_name  # "vqpress.v1.Vqpress"
RPC_THREADS = 64  # concurrent RPCs served; WatchJob and Render hold one each while they wait
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


@dataclass
class RpcServer:
    server: grpc.Server
    health: health.HealthServicer
    port: int  # the bound port (the one picked when Settings.port is 0)


def create_server(servicer: pb_grpc.VqpressServicer, settings: Settings) -> RpcServer:
    """A server bound to ``settings.host:settings.port`` (not started), serving health as NOT_SERVING
    until ``start`` marks it SERVING."""
    interceptors = [BearerTokenInterceptor(settings.token)] if settings.token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=RPC_THREADS, thread_name_prefix="vqpress-rpc"),
        interceptors=interceptors,
        options=SERVER_OPTIONS,
    )
    pb_grpc.add_VqpressServicer_to_server(servicer, server)
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
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}: the address is in use or not local")
    return RpcServer(server, health_servicer, port)


def set_serving(rpc: RpcServer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):
        rpc.health.set(name, status)
