"""The ``otlp`` receiver: OTLP metrics, traces and logs in, over gRPC and/or HTTP, handed to
every pipeline it feeds.

After the collector's ``receiver/otlpreceiver``. ``protocols`` names the servers to run:
``grpc`` (OTLP/gRPC) and ``http`` (OTLP/HTTP: ``POST /v1/metrics``, ``/v1/traces`` and
``/v1/logs`` with ``application/x-protobuf`` or ``application/json`` bodies, optionally
gzip- or deflate-compressed). Without ``protocols`` the receiver serves gRPC on its default
endpoint, as before OTLP/HTTP existed here.

A consumer that raises is reported to the client as bad data (``ValueError``/``TypeError``:
gRPC ``INVALID_ARGUMENT``, HTTP 400, not retryable), as a refusal to retry later
(``DataRefusedError``: ``RESOURCE_EXHAUSTED``, HTTP 429), as a partial success
(``PartialRejection``: OK / 200 with ``partial_success`` counting the rejected items) or as a
transient failure (anything else: gRPC ``UNAVAILABLE``, HTTP 503, the client's retry policy
may try again); the servers keep serving.

Each protocol may have ``tls`` (``cert_file``, ``key_file``, ``client_ca_file`` for mutual
TLS) and ``auth: {authenticator: <extension ID>}`` (e.g. ``bearertokenauth``); a request
failing authentication is answered ``UNAUTHENTICATED`` / 401. The gRPC server also serves the
standard ``grpc.health.v1.Health`` service (without authentication, for probes): SERVING while
running, NOT_SERVING from the start of shutdown.

Logs go to the logs pipelines; without one, logs are still answered OK (an application
exporting logs is not disturbed) and the records are dropped, counted in
``stats().dropped_log_records`` and logged once.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import socketserver
import ssl
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from driftline.exporters import _otlp_json
from driftline.processor._tls import TlsConfig, grpc_server_credentials, server_ssl_context
from driftline.processor.component import (
    AuthenticationError,
    ComponentError,
    DataRefusedError,
    Host,
    MetricsConsumer,
    PartialRejection,
    PipelineWatcher,
    ServerAuthenticator,
    TracesConsumer,
)
from driftline.processor.registry import SIGNAL_LOGS, SIGNAL_METRICS, SIGNAL_TRACES

_log = logging.getLogger(__name__)

TYPE = "otlp"
DEFAULT_GRPC_ENDPOINT = "127.0.0.1:4317"
DEFAULT_HTTP_ENDPOINT = "127.0.0.1:4318"
DEFAULT_MAX_RECV_MSG_SIZE_MIB = 4
_MIB = 1 << 20
# The collector's confighttp default; applies to the decompressed body too (gzip bombs).
DEFAULT_MAX_REQUEST_BODY_SIZE = 20 * _MIB
# Export calls are short (hand over, return); a few threads keep many clients served.
DEFAULT_MAX_WORKERS = 8
# How long shutdown lets in-flight Export calls finish before cancelling them.
SHUTDOWN_GRACE_S = 5.0
_MAX_PORT = 65535

# OTLP/HTTP, per the OTLP specification.
PATH_METRICS = "/v1/metrics"
PATH_TRACES = "/v1/traces"
PATH_LOGS = "/v1/logs"
CONTENT_TYPE_PROTOBUF = "application/x-protobuf"
CONTENT_TYPE_JSON = "application/json"
_CONTENT_TYPE_TEXT = "text/plain; charset=utf-8"
# A kept-alive connection idle this long is closed; a stalled read fails after this long.
HTTP_IDLE_TIMEOUT_S = 60.0
HTTP_READ_TIMEOUT_S = 30.0
# How often idle connections and the accept loop look whether the server is stopping.
HTTP_POLL_INTERVAL_S = 0.1
# An oversized body up to this size is read and dropped before answering 413, so the
# client reads the answer instead of a connection reset (as Go's net/http does).
HTTP_DISCARD_LIMIT_BYTES = 256 * 1024
_READ_CHUNK_BYTES = 64 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ENCODINGS = {"gzip": _GZIP_WBITS, "x-gzip": _GZIP_WBITS, "deflate": zlib.MAX_WBITS}
# A TLS client must finish its handshake within this long (per connection thread).
TLS_HANDSHAKE_TIMEOUT_S = 10.0
# Probes reach the gRPC health service without credentials, as kubelet's gRPC probe does.
HEALTH_METHOD_PREFIX = "/grpc.health.v1.Health/"
# Service names the gRPC health service reports; "" is the server as a whole.
_HEALTH_SERVICES = {
    SIGNAL_METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
    SIGNAL_TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    SIGNAL_LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
}


def endpoint_problem(key: str, endpoint: object) -> str | None:
    """``"key: message"`` when ``endpoint`` is not ``host:port`` with a port 0-65535."""
    if not isinstance(endpoint, str):
        return f"{key}: must be a string 'host:port', got {endpoint!r}"
    host, colon, port = endpoint.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > _MAX_PORT:
        return (f"{key}: must be 'host:port' with a port from 0 to {_MAX_PORT} "
                f"(0 picks a free port), got {endpoint!r}")
    return None


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """``auth``: the ID of the extension that authenticates requests (the collector's
    ``configauth``), e.g. ``bearertokenauth`` or ``bearertokenauth/clients``."""

    authenticator: str = ""

    def validate(self) -> list[str]:
        if not isinstance(self.authenticator, str) or not self.authenticator.strip():
            return ["authenticator: required, the ID of an authenticator extension listed in "
                    f"service::extensions (e.g. bearertokenauth), got {self.authenticator!r}"]
        return []


def _security_problems(tls: TlsConfig | None, auth: AuthConfig | None) -> list[str]:
    problems = []
    if tls is not None:
        problems.extend(f"tls::{p}" for p in tls.validate())
    if auth is not None:
        problems.extend(f"auth::{p}" for p in auth.validate())
    return problems


@dataclass(frozen=True, slots=True)
class GrpcConfig:
    """``protocols::grpc``: where the gRPC server listens, how big a message may be, TLS and
    authentication."""

    endpoint: str = DEFAULT_GRPC_ENDPOINT
    max_recv_msg_size_mib: int = DEFAULT_MAX_RECV_MSG_SIZE_MIB
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None

    def validate(self) -> list[str]:
        problems = []
        if (problem := endpoint_problem("endpoint", self.endpoint)) is not None:
            problems.append(problem)
        size = self.max_recv_msg_size_mib
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            problems.append("max_recv_msg_size_mib: must be a positive number of MiB, got "
                            f"{size!r}")
        return problems + _security_problems(self.tls, self.auth)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """``protocols::http``: where the OTLP/HTTP server listens, how big a request may be."""

    endpoint: str = DEFAULT_HTTP_ENDPOINT
    # Bytes, compressed and decompressed alike (the collector's confighttp key).
    max_request_body_size: int = DEFAULT_MAX_REQUEST_BODY_SIZE
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None

    def validate(self) -> list[str]:
        problems = []
        if (problem := endpoint_problem("endpoint", self.endpoint)) is not None:
            problems.append(problem)
        size = self.max_request_body_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            problems.append("max_request_body_size: must be a positive number of bytes, got "
                            f"{size!r}")
        return problems + _security_problems(self.tls, self.auth)


@dataclass(frozen=True, slots=True)
class ProtocolsConfig:
    """``protocols``: each protocol written is served, with its defaults where it is silent.

    In YAML a protocol left out of a written ``protocols`` mapping is off; ``grpc:`` alone
    turns gRPC on with its defaults (as in the collector).
    """

    grpc: GrpcConfig | None = None
    http: HttpConfig | None = None


def _default_protocols() -> ProtocolsConfig:
    return ProtocolsConfig(grpc=GrpcConfig())


@dataclass(frozen=True, slots=True)
class OtlpReceiverConfig:
    """The receiver's YAML node, e.g. ``protocols: {grpc: {endpoint: "127.0.0.1:4317"},
    http: {endpoint: "127.0.0.1:4318"}}``; without ``protocols``, gRPC on its default."""

    protocols: ProtocolsConfig = field(default_factory=_default_protocols)

    def validate(self) -> list[str]:
        grpc_config, http_config = self.protocols.grpc, self.protocols.http
        if grpc_config is None and http_config is None:
            return ["protocols: must enable at least one protocol: grpc (e.g. grpc: "
                    f"{{endpoint: {DEFAULT_GRPC_ENDPOINT}}}) or http (e.g. http: "
                    f"{{endpoint: {DEFAULT_HTTP_ENDPOINT}}})"]
        problems = []
        if grpc_config is not None:
            problems.extend(f"protocols::grpc::{p}" for p in grpc_config.validate())
        if http_config is not None:
            problems.extend(f"protocols::http::{p}" for p in http_config.validate())
        if (grpc_config is not None and http_config is not None
                and grpc_config.endpoint == http_config.endpoint
                and not grpc_config.endpoint.endswith(":0")):
            problems.append(f"protocols::http::endpoint: {http_config.endpoint!r} is also "
                            "protocols::grpc::endpoint; give each protocol its own port "
                            "(by convention 4317 for gRPC, 4318 for HTTP)")
        return problems


@dataclass(frozen=True, slots=True)
class ReceiverStats:
    """What the receiver did with requests, over both protocols.

    ``accepted_requests`` were handed on (``partial_requests`` of them answered with a
    partial success, ``rejected_items`` data points, spans or log records rejected in all);
    ``refused_requests`` were not because a consumer raised; ``rejected_requests`` never
    reached one (OTLP/HTTP: undecodable, too large, unsupported media type or encoding);
    ``unauthenticated_requests`` failed authentication; ``dropped_log_records`` arrived with
    no logs pipeline to take them.
    """

    accepted_requests: int
    refused_requests: int
    rejected_requests: int = 0
    dropped_log_records: int = 0
    partial_requests: int = 0
    rejected_items: int = 0
    unauthenticated_requests: int = 0


def _status_for(exc: Exception) -> grpc.StatusCode:
    if isinstance(exc, DataRefusedError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, ValueError | TypeError):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.UNAVAILABLE


_HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
                grpc.StatusCode.UNAUTHENTICATED: 401}


def _bind_message(endpoint: str, reason: str, key: str) -> str:
    return (f"cannot listen on {endpoint} ({reason}): the port is probably in use by "
            f"another process; stop it or set {key} to another port")


@dataclass(frozen=True, slots=True)
class _Signal:
    """One OTLP signal: its consumer method, request and response messages, and the
    response's partial-success count field."""

    name: str
    method: str
    resources: str
    request_type: type[Message]
    response_type: type[Message]
    rejected_field: str


_SIGNALS = {
    SIGNAL_METRICS: _Signal(SIGNAL_METRICS, "consume_metrics", "resource_metrics",
                            metrics_service_pb2.ExportMetricsServiceRequest,
                            metrics_service_pb2.ExportMetricsServiceResponse,
                            "rejected_data_points"),
    SIGNAL_TRACES: _Signal(SIGNAL_TRACES, "consume_traces", "resource_spans",
                           trace_service_pb2.ExportTraceServiceRequest,
                           trace_service_pb2.ExportTraceServiceResponse, "rejected_spans"),
    SIGNAL_LOGS: _Signal(SIGNAL_LOGS, "consume_logs", "resource_logs",
                         logs_service_pb2.ExportLogsServiceRequest,
                         logs_service_pb2.ExportLogsServiceResponse, "rejected_log_records"),
}


def _refusal_message(exc: Exception) -> str:
    return f"driftline processor could not accept the data: {type(exc).__name__}: {exc}"


class _Refused(Exception):
    """A request a consumer did not accept; ``code`` says how the client should react."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _authenticator_of(host: Host | None, auth: AuthConfig | None,
                      where: str) -> ServerAuthenticator | None:
    if auth is None:
        return None
    if host is None:
        raise ComponentError(f"{where}: the receiver was started without a host, so extension "
                             f"'{auth.authenticator}' cannot be reached")
    extension = host.extension(auth.authenticator, where)
    if not isinstance(extension, ServerAuthenticator):
        raise ComponentError(f"{where}: extension '{auth.authenticator}' does not authenticate "
                             "requests; name an authenticator such as bearertokenauth")
    return extension


class OtlpReceiver:
    """OTLP/gRPC and/or OTLP/HTTP servers passing each request's resources to ``next_consumer``.

    ``next_consumer`` is usually the pipeline builder's fan-out over every pipeline the
    receiver belongs to; it may declare ``signals`` to say which services to serve.
    """

    def __init__(self, config: OtlpReceiverConfig, next_consumer: Any) -> None:
        self._config = config
        self._next = next_consumer
        self._lock = threading.Lock()
        self._accepted = 0
        self._refused = 0
        self._rejected = 0
        self._dropped_log_records = 0
        self._partial = 0
        self._rejected_items = 0
        self._unauthenticated = 0
        self._host: Host | None = None
        self._server: grpc.Server | None = None
        self._health: health.HealthServicer | None = None
        self._port: int | None = None
        self._http: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None

    def set_host(self, host: Host) -> None:
        """Keep the host; authenticators named under ``auth`` are looked up at start."""
        self._host = host

    @property
    def signals(self) -> tuple[str, ...]:
        declared = getattr(self._next, "signals", None)
        if declared is not None:
            return tuple(declared)
        found = []
        if isinstance(self._next, MetricsConsumer):
            found.append(SIGNAL_METRICS)
        if isinstance(self._next, TracesConsumer):
            found.append(SIGNAL_TRACES)
        if callable(getattr(self._next, "consume_logs", None)):
            found.append(SIGNAL_LOGS)
        return tuple(found)

    @property
    def port(self) -> int | None:
        """The gRPC port actually bound (useful with port 0), once started."""
        return self._port

    @property
    def endpoint(self) -> str | None:
        """gRPC ``host:port`` actually bound, once started."""
        grpc_config = self._config.protocols.grpc
        if self._port is None or grpc_config is None:
            return None
        return f"{grpc_config.endpoint.rpartition(':')[0]}:{self._port}"

    @property
    def http_port(self) -> int | None:
        """The OTLP/HTTP port actually bound, once started."""
        server = self._http
        return int(server.server_address[1]) if server is not None else None

    @property
    def http_endpoint(self) -> str | None:
        """OTLP/HTTP ``host:port`` actually bound, once started (URLs add ``http://`` or
        ``https://`` with ``tls``)."""
        http_config = self._config.protocols.http
        if self.http_port is None or http_config is None:
            return None
        return f"{http_config.endpoint.rpartition(':')[0]}:{self.http_port}"

    def endpoints(self) -> list[str]:
        """What the service prints at start: one line per listening socket."""
        found = []
        if self.endpoint is not None:
            found.append(f"{self.endpoint} (OTLP/gRPC)")
        if self.http_endpoint is not None:
            found.append(f"{self.http_endpoint} (OTLP/HTTP)")
        return found

    def stats(self) -> ReceiverStats:
        with self._lock:
            return ReceiverStats(self._accepted, self._refused, self._rejected,
                                 self._dropped_log_records, self._partial,
                                 self._rejected_items, self._unauthenticated)

    def start(self) -> None:
        """Bind and serve every configured protocol; ``ComponentError`` naming a taken port,
        an unreadable certificate or a missing authenticator."""
        protocols = self._config.protocols
        try:
            if protocols.grpc is not None:
                self._start_grpc(protocols.grpc)
            if protocols.http is not None:
                self._start_http(protocols.http)
        except ComponentError:
            self.shutdown()
            raise
        self._tell_watchers("ready")

    def _tell_watchers(self, method: str) -> None:
        """Call ``ready``/``not_ready`` on the host's ``PipelineWatcher`` extensions
        (``health_check``).

        The service does not drive watchers itself yet; receivers start last and stop first,
        so a receiver having started (or beginning to stop) is when traffic can flow (or
        should drain). Both calls are idempotent, so a service that also calls them is fine.
        """
        if self._host is None:
            return
        for name, extension in self._host.extensions.items():
            if isinstance(extension, PipelineWatcher):
                try:
                    getattr(extension, method)()
                except Exception as exc:
                    _log.error("OTLP receiver: extension %s failed in %s(): %s", name, method,
                               exc, exc_info=True)

    def _start_grpc(self, grpc_config: GrpcConfig) -> None:
        where = "protocols::grpc"
        authenticator = _authenticator_of(self._host, grpc_config.auth, f"{where}::auth::"
                                          "authenticator")
        credentials = None
        if grpc_config.tls is not None:
            server_ssl_context(grpc_config.tls, f"{where}::tls")  # clear errors for bad PEM
            credentials = grpc_server_credentials(grpc_config.tls, f"{where}::tls")
        max_bytes = grpc_config.max_recv_msg_size_mib * _MIB
        interceptors = [] if authenticator is None else [_AuthInterceptor(self, authenticator)]
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=DEFAULT_MAX_WORKERS,
                                       thread_name_prefix="otlp-receiver"),
            interceptors=interceptors,
            options=[
                # gRPC sets SO_REUSEPORT by default, which would let two processors share a
                # port silently; a port in use must be an error instead.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", max_bytes),
            ],
        )
        signals = self.signals
        if SIGNAL_METRICS in signals:
            metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
                _MetricsService(self), server)
        if SIGNAL_TRACES in signals:
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)
        # Logs are always served: without a logs pipeline they are counted and dropped.
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsService(self), server)
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        endpoint = grpc_config.endpoint
        key = f"{where}::endpoint"
        try:
            if credentials is None:
                port = server.add_insecure_port(endpoint)
            else:
                port = server.add_secure_port(endpoint, credentials)
        except RuntimeError as exc:
            raise ComponentError(_bind_message(endpoint, str(exc), key)) from exc
        if not port:
            raise ComponentError(_bind_message(endpoint, "bind failed", key))
        server.start()
        for signal in (*signals, SIGNAL_LOGS):
            health_servicer.set(_HEALTH_SERVICES[signal], health_pb2.HealthCheckResponse.SERVING)
        health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        self._server, self._port, self._health = server, port, health_servicer
        _log.info("OTLP/gRPC receiver listening on %s%s for %s", self.endpoint,
                  " (TLS)" if credentials is not None else "",
                  ", ".join(signals) or "no signal")

    def _start_http(self, http_config: HttpConfig) -> None:
        where = "protocols::http"
        authenticator = _authenticator_of(self._host, http_config.auth, f"{where}::auth::"
                                          "authenticator")
        ssl_context = (server_ssl_context(http_config.tls, f"{where}::tls")
                       if http_config.tls is not None else None)
        endpoint = http_config.endpoint
        host, _, port = endpoint.rpartition(":")
        host = host.strip("[]")
        server_class = _HttpServer6 if ":" in host else _HttpServer
        try:
            server = server_class((host, int(port)), self, http_config.max_request_body_size,
                                  ssl_context, authenticator)
        except OSError as exc:
            raise ComponentError(_bind_message(endpoint, exc.strerror or str(exc),
                                               f"{where}::endpoint")) from exc
        thread = threading.Thread(target=server.serve_forever,
                                  kwargs={"poll_interval": HTTP_POLL_INTERVAL_S},
                                  name="driftline-otlp-http", daemon=True)
        self._http, self._http_thread = server, thread
        thread.start()
        _log.info("OTLP/HTTP receiver listening on %s://%s for %s",
                  "https" if ssl_context is not None else "http", self.http_endpoint,
                  ", ".join(self.signals) or "no signal")

    def shutdown(self) -> None:
        """Report NOT_SERVING, stop accepting, let in-flight requests finish (up to
        ``SHUTDOWN_GRACE_S``), join."""
        if self._server is not None or self._http is not None:
            self._tell_watchers("not_ready")
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        server, self._server, self._port = self._server, None, None
        http, thread = self._http, self._http_thread
        self._http = self._http_thread = None
        stopped_grpc = server.stop(SHUTDOWN_GRACE_S) if server is not None else None
        if http is not None:
            http.stop(SHUTDOWN_GRACE_S)
            if thread is not None:
                thread.join(SHUTDOWN_GRACE_S)
        if stopped_grpc is not None:
            stopped_grpc.wait()
        self._health = None

    # --- handing over -----------------------------------------------------------------------

    def export(self, signal: _Signal, request: Message) -> Message:
        """Hand ``request``'s resources on; the OTLP response (with ``partial_success`` when
        a consumer rejected part of it), or ``_Refused`` when nothing was accepted."""
        batch = list(getattr(request, signal.resources))
        if signal.name == SIGNAL_LOGS and SIGNAL_LOGS not in self.signals:
            self._drop_logs(batch)
            return signal.response_type()
        try:
            getattr(self._next, signal.method)(batch)
        except PartialRejection as partial:
            with self._lock:
                self._accepted += 1
                self._partial += 1
                self._rejected_items += max(partial.rejected, 0)
            _log.warning("OTLP receiver: a pipeline rejected %d of the %s sent: %s",
                         partial.rejected, signal.name, partial.message)
            response = signal.response_type()
            setattr(response.partial_success, signal.rejected_field, max(partial.rejected, 0))
            response.partial_success.error_message = partial.message
            return response
        except Exception as exc:
            with self._lock:
                self._refused += 1
            _log.error("OTLP receiver: a pipeline refused %d resource(s) in %s: %s",
                       len(batch), signal.method, exc, exc_info=True)
            raise _Refused(_status_for(exc), _refusal_message(exc)) from exc
        with self._lock:
            self._accepted += 1
        return signal.response_type()

    def _export_grpc(self, signal: _Signal, request: Message,
                     context: grpc.ServicerContext) -> Message:
        try:
            return self.export(signal, request)
        except _Refused as refused:
            context.set_code(refused.code)
            context.set_details(refused.message)
            return signal.response_type()

    def _drop_logs(self, batch: Sequence[Any]) -> None:
        """Count log records no pipeline takes; say so in the log once."""
        records = sum(len(scope.log_records) for resource in batch
                      for scope in resource.scope_logs)
        with self._lock:
            first = self._dropped_log_records == 0
            self._dropped_log_records += records
            self._accepted += 1
        if first and records:
            _log.warning("OTLP receiver: no logs pipeline takes this receiver's logs; dropping "
                         "log records, counted in the receiver's stats and logged only this "
                         "once (add a logs pipeline to keep them)")

    def _count_rejected(self) -> None:
        with self._lock:
            self._rejected += 1

    def _count_unauthenticated(self) -> None:
        with self._lock:
            self._unauthenticated += 1


class _AuthInterceptor(grpc.ServerInterceptor):
    """Refuses every call but health checks whose metadata the authenticator rejects."""

    def __init__(self, receiver: OtlpReceiver, authenticator: ServerAuthenticator) -> None:
        self._receiver = receiver
        self._authenticator = authenticator

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        if handler_call_details.method.startswith(HEALTH_METHOD_PREFIX):
            return continuation(handler_call_details)
        headers = {key.lower(): value for key, value in handler_call_details.invocation_metadata
                   if isinstance(value, str)}
        try:
            self._authenticator.authenticate(headers)
        except AuthenticationError as exc:
            self._receiver._count_unauthenticated()
            message = f"unauthenticated: {exc}"

            def deny(request: Any, context: grpc.ServicerContext) -> None:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

            return grpc.unary_unary_rpc_method_handler(deny)
        return continuation(handler_call_details)


# --- OTLP/HTTP ---------------------------------------------------------------------------


_ROUTES = {PATH_METRICS: _SIGNALS[SIGNAL_METRICS], PATH_TRACES: _SIGNALS[SIGNAL_TRACES],
           PATH_LOGS: _SIGNALS[SIGNAL_LOGS]}


class _HttpError(Exception):
    """An OTLP/HTTP request answered with ``status`` and a google.rpc.Status ``message``."""

    def __init__(self, status: int, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _inflate(raw: bytes, wbits: int, limit: int) -> bytes:
    """``raw`` decompressed, refusing (413) to produce more than ``limit`` bytes."""
    out = bytearray()
    data = raw
    while data:
        decompressor = zlib.decompressobj(wbits)
        try:
            out += decompressor.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise _HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                             f"cannot decompress the body: {exc}") from exc
        if len(out) > limit:
            raise _HttpError(413, grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"the decompressed body exceeds max_request_body_size ({limit} "
                             "bytes)")
        if not decompressor.eof:
            raise _HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                             "cannot decompress the body: it is truncated")
        data = decompressor.unused_data
        if data and wbits != _GZIP_WBITS:
            raise _HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                             "cannot decompress the body: data after the end of the stream")
    return bytes(out)


def _decode(body: bytes, media_type: str, message_type: type[Message]) -> Message:
    try:
        if media_type == CONTENT_TYPE_PROTOBUF:
            return message_type.FromString(body)
        data = json.loads(body.decode("utf-8"))
        if not isinstance(data, dict):
            raise _otlp_json.OtlpJsonError(f"expected a JSON object, got {type(data).__name__}")
        return _otlp_json.decode_dict(data, message_type, ignore_unknown_fields=True)
    except (DecodeError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise _HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                         f"cannot decode the body as {media_type} "
                         f"{message_type.__name__}: {exc}") from exc


def _encode(message: Message, media_type: str) -> bytes:
    if media_type == CONTENT_TYPE_JSON:
        return _otlp_json.encode(message).encode("utf-8")
    return message.SerializeToString()


class _HttpServer(ThreadingHTTPServer):
    """Serves OTLP/HTTP for one receiver; ``stop`` closes idle keep-alive connections and
    joins the connection threads with a deadline (ThreadingMixIn's own join has none)."""

    block_on_close = False

    def __init__(self, address: tuple[str, int], receiver: OtlpReceiver,
                 max_body_bytes: int, ssl_context: ssl.SSLContext | None = None,
                 authenticator: ServerAuthenticator | None = None) -> None:
        self.receiver = receiver
        self.max_body_bytes = max_body_bytes
        self.ssl_context = ssl_context
        self.authenticator = authenticator
        self.stopping = threading.Event()
        self._threads_lock = threading.Lock()
        self._connection_threads: set[threading.Thread] = set()
        super().__init__(address, _OtlpHttpHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would do a reverse-DNS lookup of the host; not needed here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-request is routine; log it instead of printing to stderr.
        _log.warning("OTLP/HTTP receiver: serving %s failed", client_address, exc_info=True)

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.stopping.is_set():
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self._serve_connection,
                                  args=(request, client_address),
                                  name="driftline-otlp-http-conn", daemon=True)
        with self._threads_lock:
            self._connection_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            if self.ssl_context is not None:
                request = self._handshake(request, client_address)
                if request is None:
                    return
            self.process_request_thread(request, client_address)
        finally:
            with self._threads_lock:
                self._connection_threads.discard(threading.current_thread())

    def _handshake(self, request: socket.socket, client_address: Any) -> ssl.SSLSocket | None:
        """The TLS side of ``request``, or None (connection closed) when the handshake fails,
        e.g. a client without a certificate under mutual TLS. Done in the connection's
        thread so a slow client cannot hold up accepting others."""
        assert self.ssl_context is not None
        request.settimeout(TLS_HANDSHAKE_TIMEOUT_S)
        try:
            secure = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            self.receiver._count_rejected()
            _log.info("OTLP/HTTP receiver: TLS handshake with %s failed: %s", client_address,
                      exc)
            self.shutdown_request(request)
            return None
        secure.settimeout(None)
        return secure

    def stop(self, grace_s: float) -> None:
        """Stop accepting, let requests in flight finish within ``grace_s``, close."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
        deadline = time.monotonic() + grace_s
        with self._threads_lock:
            threads = list(self._connection_threads)
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        if alive := sum(t.is_alive() for t in threads):
            _log.warning("OTLP/HTTP receiver: %d connection(s) still busy after %.1fs; "
                         "leaving them to finish in the background", alive, grace_s)


class _HttpServer6(_HttpServer):
    address_family = socket.AF_INET6


class _OtlpHttpHandler(BaseHTTPRequestHandler):
    """One connection: OTLP/HTTP requests, answered as the OTLP specification says."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK exporters' sessions expect
    server_version = "driftline-otlp"
    timeout = HTTP_READ_TIMEOUT_S
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("OTLP/HTTP %s: " + format, self.address_string(), *args)

    def handle_one_request(self) -> None:
        if not self._wait_for_request():
            self.close_connection = True
            return
        super().handle_one_request()

    def _wait_for_request(self) -> bool:
        """Wait until the next request's bytes arrive; False when stopping or idle too long.

        Polling the socket (not blocking in ``readline``) lets ``stop`` close idle
        keep-alive connections at once. HTTP clients here do not pipeline, so nothing
        waits in the read buffer unseen.
        """
        idle_deadline = time.monotonic() + HTTP_IDLE_TIMEOUT_S
        pending = getattr(self.connection, "pending", None)
        if pending is not None and pending():
            return True  # already decrypted by the TLS layer, invisible to select()
        while True:
            readable, _, _ = select.select([self.connection], [], [], HTTP_POLL_INTERVAL_S)
            if readable:
                return True
            if self.server.stopping.is_set() or time.monotonic() >= idle_deadline:
                return False

    # --- methods -----------------------------------------------------------------------------

    def do_POST(self) -> None:
        route = self._route()
        if route is None or not self._authenticated():
            return
        media_type = _media_type(self.headers.get("Content-Type"))
        if media_type not in (CONTENT_TYPE_PROTOBUF, CONTENT_TYPE_JSON):
            self.server.receiver._count_rejected()
            self._discard_body()
            self._send_text(415, f"unsupported media type {media_type or 'none'!r}; send "
                                 f"{CONTENT_TYPE_PROTOBUF} or {CONTENT_TYPE_JSON}")
            return
        try:
            body = self._read_body()
            request = _decode(body, media_type, route.request_type)
        except _HttpError as err:
            self.server.receiver._count_rejected()
            _log.debug("OTLP/HTTP %s: %d %s", self.path, err.status, err.message)
            self._send_status(err.status, err.code, err.message, media_type)
            return
        try:
            response = self.server.receiver.export(route, request)
        except _Refused as refused:
            status = _HTTP_STATUS.get(refused.code, 503)
            self._send_status(status, refused.code, refused.message, media_type)
            return
        self._send(200, _encode(response, media_type), media_type)

    def _authenticated(self) -> bool:
        """True when no authenticator is set or it accepts the headers; else answer 401."""
        authenticator = self.server.authenticator
        if authenticator is None:
            return True
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            authenticator.authenticate(headers)
        except AuthenticationError as exc:
            self.server.receiver._count_unauthenticated()
            self._discard_body()
            self._send_text(401, f"unauthenticated: {exc}",
                            [("WWW-Authenticate", 'Bearer realm="driftline"')])
            return False
        return True

    def _not_post(self) -> None:
        if self._route() is None:
            return
        self._discard_body()
        self._send_text(405, f"method {self.command} not allowed; OTLP/HTTP accepts POST",
                        [("Allow", "POST")])

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _not_post

    # --- helpers -----------------------------------------------------------------------------

    def _route(self) -> _Signal | None:
        """The route of this path, or None after answering 404."""
        path = urlsplit(self.path).path
        route = _ROUTES.get(path)
        if route is not None and (route.name == SIGNAL_LOGS
                                  or route.name in self.server.receiver.signals):
            return route
        self._discard_body()
        if route is None:
            message = (f"{path} not found; OTLP/HTTP serves {PATH_METRICS}, {PATH_TRACES} "
                       f"and {PATH_LOGS}")
        else:
            message = f"{path} not found: no pipeline of this processor takes {route.name}"
        self._send_text(404, message)
        return None

    def _content_length(self) -> int:
        text = self.headers.get("Content-Length")
        if text is None:
            return 0  # HTTP/1.1: a request without length or chunking has no body
        try:
            length = int(text)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise _HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                             f"invalid Content-Length {text!r}")
        return length

    def _read_body(self) -> bytes:
        limit = self.server.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raw = self._read_chunked(limit)
        else:
            length = self._content_length()
            if length > limit:
                self._discard(length)
                raise _HttpError(413, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"the body ({length} bytes) exceeds max_request_body_size "
                                 f"({limit} bytes)")
            raw = self.rfile.read(length)
            if len(raw) < length:
                self.close_connection = True
                raise _HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                                 f"the body ended after {len(raw)} of {length} bytes")
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("", "identity"):
            return raw
        wbits = _ENCODINGS.get(encoding)
        if wbits is None:
            raise _HttpError(415, grpc.StatusCode.INVALID_ARGUMENT,
                             f"unsupported Content-Encoding {encoding!r}; send gzip, deflate "
                             "or no encoding")
        return _inflate(raw, wbits, limit)

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(_READ_CHUNK_BYTES)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                self.close_connection = True
                raise _HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                                 f"invalid chunk size line {line[:40]!r}") from exc
            if size == 0:
                while self.rfile.readline(_READ_CHUNK_BYTES) not in (b"\r\n", b"\n", b""):
                    pass  # trailers, ignored
                return bytes(body)
            if len(body) + size > limit:
                self.close_connection = True
                raise _HttpError(413, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"the chunked body exceeds max_request_body_size ({limit} "
                                 "bytes)")
            chunk = self.rfile.read(size)
            self.rfile.readline(_READ_CHUNK_BYTES)  # the CRLF closing the chunk
            if len(chunk) < size:
                self.close_connection = True
                raise _HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                                 "the chunked body ended early")
            body += chunk

    def _discard(self, length: int) -> None:
        """Drop a small unread body so the connection stays usable; close it otherwise."""
        if length > HTTP_DISCARD_LIMIT_BYTES:
            self.close_connection = True
            return
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, _READ_CHUNK_BYTES))
            if not chunk:
                break
            remaining -= len(chunk)

    def _discard_body(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return
        try:
            self._discard(self._content_length())
        except _HttpError:
            self.close_connection = True

    def _send(self, status: int, body: bytes, content_type: str,
              headers: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_text(self, status: int, message: str,
                   headers: Sequence[tuple[str, str]] = ()) -> None:
        self._send(status, message.encode("utf-8"), _CONTENT_TYPE_TEXT, headers)

    def _send_status(self, status: int, code: grpc.StatusCode, message: str,
                     media_type: str) -> None:
        """A google.rpc.Status body in the request's encoding, as OTLP/HTTP errors are."""
        body = status_pb2.Status(code=code.value[0], message=message)
        self._send(status, _encode(body, media_type), media_type)


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._receiver._export_grpc(_SIGNALS[SIGNAL_METRICS], request, context)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._receiver._export_grpc(_SIGNALS[SIGNAL_TRACES], request, context)


class _LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._receiver._export_grpc(_SIGNALS[SIGNAL_LOGS], request, context)


class Factory:
    """``receivers: {otlp: ...}`` (also spelled ``otlp_grpc``, ``otlphttp``, ``otlp_http``)."""

    TYPE = TYPE
    ALIASES = ("otlp_grpc", "otlphttp", "otlp_http")
    CONFIG = OtlpReceiverConfig
    SIGNALS = (SIGNAL_METRICS, SIGNAL_TRACES, SIGNAL_LOGS)

    def default_config(self) -> OtlpReceiverConfig:
        return OtlpReceiverConfig()

    def create(self, config: OtlpReceiverConfig, next_consumer: Any = None) -> OtlpReceiver:
        return OtlpReceiver(config, next_consumer)
