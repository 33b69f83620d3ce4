"""The ``otlp`` receiver: OTLP/gRPC metrics and traces in, handed to every pipeline it feeds.

After the collector's ``receiver/otlpreceiver``. A consumer that raises is reported to the
client as ``INVALID_ARGUMENT`` (bad data: ``ValueError``/``TypeError``, not retryable) or
``UNAVAILABLE`` (anything else: the client's retry policy may try again); the server itself
keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from driftline.processor.component import ComponentError, MetricsConsumer, TracesConsumer
from driftline.processor.registry import SIGNAL_METRICS, SIGNAL_TRACES

_log = logging.getLogger(__name__)

TYPE = "otlp"
DEFAULT_GRPC_ENDPOINT = "127.0.0.1:4317"
DEFAULT_MAX_RECV_MSG_SIZE_MIB = 4
# Export calls are short (hand over, return); a few threads keep many clients served.
DEFAULT_MAX_WORKERS = 8
# How long shutdown lets in-flight Export calls finish before cancelling them.
SHUTDOWN_GRACE_S = 5.0
_MIB = 1 << 20
_MAX_PORT = 65535


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
class GrpcConfig:
    """``protocols::grpc``: where the gRPC server listens."""

    endpoint: str = DEFAULT_GRPC_ENDPOINT
    max_recv_msg_size_mib: int = DEFAULT_MAX_RECV_MSG_SIZE_MIB

    def validate(self) -> list[str]:
        problems = []
        if (problem := endpoint_problem("endpoint", self.endpoint)) is not None:
            problems.append(problem)
        if self.max_recv_msg_size_mib <= 0:
            problems.append("max_recv_msg_size_mib: must be a positive number of MiB, got "
                            f"{self.max_recv_msg_size_mib!r}")
        return problems


@dataclass(frozen=True, slots=True)
class ProtocolsConfig:
    grpc: GrpcConfig = field(default_factory=GrpcConfig)


@dataclass(frozen=True, slots=True)
class OtlpReceiverConfig:
    """The receiver's YAML node: ``protocols: {grpc: {endpoint: "127.0.0.1:4317"}}``."""

    protocols: ProtocolsConfig = field(default_factory=ProtocolsConfig)

    def validate(self) -> list[str]:
        return [f"protocols::grpc::{p}" for p in self.protocols.grpc.validate()]


@dataclass(frozen=True, slots=True)
class ReceiverStats:
    """Requests handed on successfully and requests refused because a consumer raised."""

    accepted_requests: int
    refused_requests: int


def _status_for(exc: Exception) -> grpc.StatusCode:
    if isinstance(exc, ValueError | TypeError):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.UNAVAILABLE


class OtlpReceiver:
    """An OTLP/gRPC server passing each request's resources to ``next_consumer``.

    ``next_consumer`` is usually the pipeline builder's fan-out over every pipeline the
    receiver belongs to; it may declare ``signals`` to say which services to serve.
    """

    def __init__(self, config: OtlpReceiverConfig, next_consumer: Any) -> None:
        self._config = config
        self._next = next_consumer
        self._lock = threading.Lock()
        self._accepted = 0
        self._refused = 0
        self._server: grpc.Server | None = None
        self._port: int | None = None

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
        return tuple(found)

    @property
    def port(self) -> int | None:
        """The port actually bound (useful with port 0), once started."""
        return self._port

    @property
    def endpoint(self) -> str | None:
        """``host:port`` actually bound, once started."""
        if self._port is None:
            return None
        host = self._config.protocols.grpc.endpoint.rpartition(":")[0]
        return f"{host}:{self._port}"

    def endpoints(self) -> list[str]:
        """What the service prints at start: one line per listening socket."""
        return [f"{self.endpoint} (OTLP/gRPC)"] if self._port is not None else []

    def stats(self) -> ReceiverStats:
        with self._lock:
            return ReceiverStats(self._accepted, self._refused)

    def start(self) -> None:
        grpc_config = self._config.protocols.grpc
        max_bytes = grpc_config.max_recv_msg_size_mib * _MIB
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=DEFAULT_MAX_WORKERS,
                                       thread_name_prefix="otlp-receiver"),
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
        endpoint = grpc_config.endpoint
        try:
            port = server.add_insecure_port(endpoint)
        except RuntimeError as exc:
            raise ComponentError(self._bind_message(endpoint, str(exc))) from exc
        if not port:
            raise ComponentError(self._bind_message(endpoint, "bind failed"))
        server.start()
        self._server, self._port = server, port
        _log.info("OTLP/gRPC receiver listening on %s for %s", self.endpoint,
                  ", ".join(signals) or "no signal")

    @staticmethod
    def _bind_message(endpoint: str, reason: str) -> str:
        return (f"cannot listen on {endpoint} ({reason}): the port is probably in use by "
                "another process; stop it or set protocols::grpc::endpoint to another port")

    def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish (up to ``SHUTDOWN_GRACE_S``)."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(SHUTDOWN_GRACE_S).wait()

    def _deliver(self, method: str, batch: Sequence[Any], context: grpc.ServicerContext) -> bool:
        try:
            getattr(self._next, method)(batch)
        except Exception as exc:
            with self._lock:
                self._refused += 1
            _log.error("OTLP receiver: a pipeline refused %d resource(s) in %s: %s",
                       len(batch), method, exc, exc_info=True)
            context.set_code(_status_for(exc))
            context.set_details(f"driftline processor could not accept the data: "
                                f"{type(exc).__name__}: {exc}")
            return False
        with self._lock:
            self._accepted += 1
        return True

    def consume_metrics_request(self, request: Any, context: grpc.ServicerContext) -> None:
        self._deliver("consume_metrics", list(request.resource_metrics), context)

    def consume_traces_request(self, request: Any, context: grpc.ServicerContext) -> None:
        self._deliver("consume_traces", list(request.resource_spans), context)


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._receiver.consume_metrics_request(request, context)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._receiver.consume_traces_request(request, context)
        return trace_service_pb2.ExportTraceServiceResponse()


class Factory:
    """``receivers: {otlp: ...}`` (also spelled ``otlp_grpc``)."""

    TYPE = TYPE
    ALIASES = ("otlp_grpc",)
    CONFIG = OtlpReceiverConfig
    SIGNALS = (SIGNAL_METRICS, SIGNAL_TRACES)

    def default_config(self) -> OtlpReceiverConfig:
        return OtlpReceiverConfig()

    def create(self, config: OtlpReceiverConfig, next_consumer: Any = None) -> OtlpReceiver:
        return OtlpReceiver(config, next_consumer)
