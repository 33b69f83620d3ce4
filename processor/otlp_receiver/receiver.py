"""The ``otlp`` receiver: OTLP metrics, traces and logs in, over gRPC and/or HTTP, handed to
every pipeline it feeds.

After the collector's ``receiver/otlpreceiver``. ``protocols`` names the servers to run:
``grpc`` (OTLP/gRPC) and ``http`` (OTLP/HTTP: ``POST /v1/metrics``, ``/v1/traces`` and
``/v1/logs`` with ``application/x-protobuf`` or ``application/json`` bodies, optionally
compressed with any encoding the collector's confighttp reads). Without ``protocols`` the
receiver serves gRPC on its default endpoint, as before OTLP/HTTP existed here.

The collector's ``max_concurrent_streams`` and ``keepalive`` are the gRPC server's options;
``include_metadata`` and ``cors`` are accepted with a warning (nothing here uses them).

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

import logging
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from driftline.processor.component import (
    ComponentError,
    Consumer,
    DataRefusedError,
    Host,
    MetricsConsumer,
    PartialRejection,
    Settings,
    TracesConsumer,
    consumer_of,
    validated,
)
from driftline.processor.component.auth import authenticator_of
from driftline.processor.component.settings import KIND_RECEIVER
from driftline.processor.component.signals import (
    SIGNAL_LOGS,
    SIGNAL_METRICS,
    SIGNAL_TRACES,
    item_count,
)
from driftline.processor.component.tls import grpc_server_credentials, server_ssl_context
from driftline.processor.otlp_receiver import grpc_server as _otlp_grpc
from driftline.processor.otlp_receiver import http_server as _otlp_http
from driftline.processor.otlp_receiver.config import GrpcConfig, HttpConfig, OtlpReceiverConfig
from driftline.processor.otlp_receiver.grpc_server import (
    AuthInterceptor,
    GrpcHealth,
    Refused,
    Signal,
    refusal_message,
    status_for,
)
from driftline.processor.otlp_receiver.http_server import (  # noqa: F401  (re-exported: the OTLP/HTTP names)
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_PROTOBUF,
    PATH_LOGS,
    PATH_METRICS,
    PATH_TRACES,
    HttpServer,
)

_log = logging.getLogger(__name__)

TYPE = "otlp"
# Export calls are short (hand over, return); a few threads keep many clients served.
DEFAULT_MAX_WORKERS = 8
# How long shutdown lets in-flight Export calls finish before cancelling them.
SHUTDOWN_GRACE_S = 5.0
# While a pipeline refuses data (memory limit), one warning per this many seconds.
REFUSAL_LOG_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class ReceiverStats:
    """What the receiver did with requests, over both protocols.

    ``accepted_requests`` were handed on (``partial_requests`` of them answered with a
    partial success, ``rejected_items`` data points, spans or log records rejected in all);
    ``refused_requests`` were not because a consumer raised; ``rejected_requests`` never
    reached one (OTLP/HTTP: undecodable, too large, unsupported media type or encoding);
    ``unauthenticated_requests`` failed authentication; ``dropped_log_records`` arrived with
    no logs pipeline to take them. ``accepted_items`` and ``refused_items`` count the data
    points, spans and log records of accepted and refused requests.
    """

    accepted_requests: int
    refused_requests: int
    rejected_requests: int = 0
    dropped_log_records: int = 0
    partial_requests: int = 0
    rejected_items: int = 0
    unauthenticated_requests: int = 0
    accepted_items: int = 0  # data points, spans or log records handed on
    refused_items: int = 0


def _bind_message(endpoint: str, reason: str, key: str) -> str:
    return (f"cannot listen on {endpoint} ({reason}): the port is probably in use by "
            f"another process; stop it or set {key} to another port")


class OtlpReceiver:
    """OTLP/gRPC and/or OTLP/HTTP servers passing each request's resources to ``next_consumer``.

    ``next_consumer`` is usually the pipeline builder's fan-out over every pipeline the
    receiver belongs to; it may declare ``signals`` to say which services to serve.
    """

    def __init__(self, config: OtlpReceiverConfig, next_consumer: Consumer) -> None:
        self._config = config
        self._next = next_consumer
        self._lock = threading.Lock()
        self._accepted = 0
        self._refused = 0
        self._refusal_logged_s = -REFUSAL_LOG_INTERVAL_S
        self._accepted_items = 0
        self._refused_items = 0
        self._rejected = 0
        self._dropped_log_records = 0
        self._partial = 0
        self._rejected_items = 0
        self._unauthenticated = 0
        self._host: Host | None = None
        self._server: grpc.Server | None = None
        self._health: GrpcHealth | None = None
        self._port: int | None = None
        self._http: HttpServer | None = None
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
                                 self._rejected_items, self._unauthenticated,
                                 self._accepted_items, self._refused_items)

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

    def _start_grpc(self, grpc_config: GrpcConfig) -> None:
        where = "protocols::grpc"
        authenticator = authenticator_of(self._host, grpc_config.auth, f"{where}::auth::"
                                          "authenticator")
        credentials = None
        if grpc_config.tls is not None:
            server_ssl_context(grpc_config.tls, f"{where}::tls")  # clear errors for bad PEM
            credentials = grpc_server_credentials(grpc_config.tls, f"{where}::tls")
        interceptors = ([] if authenticator is None
                        else [AuthInterceptor(authenticator, self.count_unauthenticated)])
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=DEFAULT_MAX_WORKERS,
                                       thread_name_prefix="otlp-receiver"),
            interceptors=interceptors,
            options=[
                # gRPC sets SO_REUSEPORT by default, which would let two processors share a
                # port silently; a port in use must be an error instead.
                ("grpc.so_reuseport", 0),
                *grpc_config.server_options(),
            ],
        )
        signals = self.signals
        # Logs are always served: without a logs pipeline they are counted and dropped.
        grpc_health = _otlp_grpc.add_services(server, self, (*signals, SIGNAL_LOGS))
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
        grpc_health.serving()
        self._server, self._port, self._health = server, port, grpc_health
        _log.info("OTLP/gRPC receiver listening on %s%s for %s", self.endpoint,
                  " (TLS)" if credentials is not None else "",
                  ", ".join(signals) or "no signal")

    def _start_http(self, http_config: HttpConfig) -> None:
        where = "protocols::http"
        authenticator = authenticator_of(self._host, http_config.auth, f"{where}::auth::"
                                          "authenticator")
        ssl_context = (server_ssl_context(http_config.tls, f"{where}::tls")
                       if http_config.tls is not None else None)
        endpoint = http_config.endpoint
        try:
            server = _otlp_http.make_server(endpoint, self, http_config.max_request_body_size,
                                            ssl_context, authenticator)
        except OSError as exc:
            raise ComponentError(_bind_message(endpoint, exc.strerror or str(exc),
                                               f"{where}::endpoint")) from exc
        thread = threading.Thread(target=server.serve_forever,
                                  kwargs={"poll_interval": _otlp_http.HTTP_POLL_INTERVAL_S},
                                  name="driftline-otlp-http", daemon=True)
        self._http, self._http_thread = server, thread
        thread.start()
        _log.info("OTLP/HTTP receiver listening on %s://%s for %s",
                  "https" if ssl_context is not None else "http", self.http_endpoint,
                  ", ".join(self.signals) or "no signal")

    def shutdown(self) -> None:
        """Report NOT_SERVING, stop accepting, let in-flight requests finish (up to
        ``SHUTDOWN_GRACE_S``), join."""
        if self._health is not None:
            self._health.shutting_down()
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

    def export(self, signal: Signal, request: Message) -> Message:
        """Hand ``request``'s resources on; the OTLP response (with ``partial_success`` when
        a consumer rejected part of it), or ``Refused`` when nothing was accepted."""
        batch = list(getattr(request, signal.resources))
        if signal.name == SIGNAL_LOGS and SIGNAL_LOGS not in self.signals:
            self._drop_logs(batch)
            return signal.response_type()
        items = item_count(signal.name, batch)
        try:
            consumer_of(signal.name, self._next)(batch)
        except PartialRejection as partial:
            with self._lock:
                first = self._partial == 0
                self._accepted += 1
                self._partial += 1
                self._rejected_items += max(partial.rejected, 0)
                self._accepted_items += items - max(partial.rejected, 0)
            # Counted in stats(); the first one is worth a warning, the rest would flood.
            _log.log(logging.WARNING if first else logging.DEBUG,
                     "OTLP receiver: a pipeline rejected %d of the %s sent: %s",
                     partial.rejected, signal.name, partial.message)
            response = signal.response_type()
            setattr(response.partial_success, signal.rejected_field, max(partial.rejected, 0))
            response.partial_success.error_message = partial.message
            return response
        except DataRefusedError as exc:
            with self._lock:
                self._refused += 1
                self._refused_items += items
            # Back-pressure, not a fault: the sender retries; no traceback per request, and
            # at most one warning per interval while it lasts (the rest at debug level).
            now = time.monotonic()
            loud = now - self._refusal_logged_s >= REFUSAL_LOG_INTERVAL_S
            if loud:
                self._refusal_logged_s = now
            _log.log(logging.WARNING if loud else logging.DEBUG,
                     "OTLP receiver: %s refused for now (the sender retries): %s",
                     signal.name, exc)
            raise Refused(status_for(exc), refusal_message(exc)) from exc
        except Exception as exc:
            with self._lock:
                self._refused += 1
                self._refused_items += items
            _log.error("OTLP receiver: a pipeline refused %d resource(s) in %s: %s",
                       len(batch), signal.method, exc, exc_info=True)
            raise Refused(status_for(exc), refusal_message(exc)) from exc
        with self._lock:
            self._accepted += 1
            self._accepted_items += items
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

    def count_rejected(self) -> None:
        """A request that never reached a consumer (bad body, failed TLS handshake)."""
        with self._lock:
            self._rejected += 1

    def count_unauthenticated(self) -> None:
        """A request its authenticator refused."""
        with self._lock:
            self._unauthenticated += 1


class Factory:
    """``receivers: {otlp: ...}`` (also spelled ``otlp_grpc``, ``otlphttp``, ``otlp_http``)."""

    TYPE = TYPE
    ALIASES = ("otlp_grpc", "otlphttp", "otlp_http")
    CONFIG = OtlpReceiverConfig
    SIGNALS = (SIGNAL_METRICS, SIGNAL_TRACES, SIGNAL_LOGS)

    def default_config(self) -> OtlpReceiverConfig:
        return OtlpReceiverConfig()

    def create(self, config: OtlpReceiverConfig, next_consumer: Consumer | None = None,
               settings: Settings | None = None) -> OtlpReceiver:
        settings = settings or Settings.of(KIND_RECEIVER, TYPE)
        return OtlpReceiver(validated(config, settings), next_consumer)
