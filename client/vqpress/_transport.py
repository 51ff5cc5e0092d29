"""Transport settings of the client, set here and nowhere else: chunk size, message limits, channel.

The server's counterparts live in ``vqpress_server.settings``; both sides use 1 MiB artifact chunks
and a 64 MiB message limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

CHUNK_BYTES = 1 << 20  # artifact stream chunk size: 1 MiB
MAX_MESSAGE_BYTES = 64 << 20  # largest single gRPC message sent or received: 64 MiB
TOKEN_ENV = "VQPRESS_TOKEN"  # environment variable the CLI reads a bearer token from

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Large chunks go through without waiting for the flow-control window to grow.
    ("grpc.http2.lookahead_bytes", 4 * CHUNK_BYTES),
    ("grpc.keepalive_time_ms", 30_000),  # ping an idle connection every 30 s
    ("grpc.keepalive_timeout_ms", 10_000),  # and drop it when the ping is not answered in 10 s
    ("grpc.keepalive_permit_without_calls", 1),
    # Reconnect to a server that went away at most 5 s after it is back (gRPC's default backoff
    # grows to 120 s, so a client waiting through a restart would sit idle for minutes).
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


@dataclass(frozen=True)
class TlsConfig:
    """TLS for the connection. All paths are PEM files; None uses the system's root certificates."""

    ca_cert: Path | str | None = None  # CA that signed the server certificate
    client_cert: Path | str | None = None  # client certificate chain, for mutual TLS
    client_key: Path | str | None = None  # client private key, for mutual TLS
    server_name: str | None = None  # override the name checked against the certificate

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials; a file that cannot be read or is not PEM is refused here (VqpressError
        INVALID_ARGUMENT naming it) instead of failing every handshake later with low-level logs."""
        from .errors import invalid

        def read(p: Path | str | None, what: str, marker: bytes) -> bytes | None:
            if p is None:
                return None
            try:
                data = Path(p).read_bytes()
            except OSError as e:
                raise invalid(f"TLS {what} {p}: cannot read it: {e.strerror or e}") from None
            if marker not in data:
                raise invalid(f"TLS {what} {p} is not a PEM file (no '{marker.decode()}' line)")
            return data

        if (self.client_cert is None) != (self.client_key is None):
            raise invalid("TlsConfig: client_cert and client_key must be given together")
        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_cert, "CA certificate", b"-----BEGIN CERTIFICATE-----"),
            private_key=read(self.client_key, "client key", b"PRIVATE KEY-----"),
            certificate_chain=read(self.client_cert, "client certificate", b"-----BEGIN CERTIFICATE-----"),
        )


class _AuthInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call (works with and without TLS)."""

    def __init__(self, token: str) -> None:
        self._md = ("authorization", f"Bearer {token}")

    def _details(self, d: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(
            method=d.method,
            timeout=d.timeout,
            metadata=[*(d.metadata or ()), self._md],
            credentials=d.credentials,
            wait_for_ready=d.wait_for_ready,
            compression=d.compression,
        )

    def intercept_unary_unary(self, cont: Callable, d: grpc.ClientCallDetails, request: Any) -> Any:
        return cont(self._details(d), request)

    def intercept_unary_stream(self, cont: Callable, d: grpc.ClientCallDetails, request: Any) -> Any:
        return cont(self._details(d), request)

    def intercept_stream_unary(self, cont: Callable, d: grpc.ClientCallDetails, it: Any) -> Any:
        return cont(self._details(d), it)

    def intercept_stream_stream(self, cont: Callable, d: grpc.ClientCallDetails, it: Any) -> Any:
        return cont(self._details(d), it)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


def make_channel(address: str, token: str | None = None, tls: TlsConfig | None = None) -> grpc.Channel:
    """A channel to ``address`` (HOST:PORT) with the client's options, TLS if given, and the bearer token."""
    options = list(CHANNEL_OPTIONS)
    if tls is not None:
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        channel = grpc.secure_channel(address, tls.credentials(), options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    if token:
        channel = grpc.intercept_channel(channel, _AuthInterceptor(token))
    return channel
