"""The OTLP signals as the receiver's two servers see them, and the OTLP/gRPC server parts:
the export services, the authentication interceptor and the standard health service.

gRPC status codes are the receiver's common language for outcomes; OTLP/HTTP maps them to
HTTP statuses (``http_server``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from driftline.processor.component import (
    AuthenticationError,
    DataRefusedError,
    ServerAuthenticator,
)
from driftline.processor.component.signals import SIGNAL_LOGS, SIGNAL_METRICS, SIGNAL_TRACES

# A refused-for-now request (memory limit) tells the sender when to try again: OTLP/gRPC
# clients retry RESOURCE_EXHAUSTED only when RetryInfo says recovery is possible.
RETRY_AFTER_S = 1
RETRY_INFO_KEY = "google.rpc.retryinfo-bin"

# Probes reach the gRPC health service without credentials, as kubelet's gRPC probe does.
HEALTH_METHOD_PREFIX = "/grpc.health.v1.Health/"
EXPORT_METHOD = "Export"
# The OTLP services by signal, also the names the gRPC health service reports; "" is the
# server as a whole.
OVERALL_HEALTH_SERVICE = ""
HEALTH_SERVICES = {
    SIGNAL_METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
    SIGNAL_TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    SIGNAL_LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
}


@dataclass(frozen=True, slots=True)
class Signal:
    """One OTLP signal: its consumer method, request and response messages, and the
    response's partial-success count field."""

    name: str
    method: str
    resources: str
    request_type: type[Message]
    response_type: type[Message]
    rejected_field: str


OTLP_SIGNALS = {
    SIGNAL_METRICS: Signal(SIGNAL_METRICS, "consume_metrics", "resource_metrics",
                           metrics_service_pb2.ExportMetricsServiceRequest,
                           metrics_service_pb2.ExportMetricsServiceResponse,
                           "rejected_data_points"),
    SIGNAL_TRACES: Signal(SIGNAL_TRACES, "consume_traces", "resource_spans",
                          trace_service_pb2.ExportTraceServiceRequest,
                          trace_service_pb2.ExportTraceServiceResponse, "rejected_spans"),
    SIGNAL_LOGS: Signal(SIGNAL_LOGS, "consume_logs", "resource_logs",
                        logs_service_pb2.ExportLogsServiceRequest,
                        logs_service_pb2.ExportLogsServiceResponse, "rejected_log_records"),
}


def status_for(exc: Exception) -> grpc.StatusCode:
    """How a consumer's exception reaches the sender: refused for now, bad data, transient."""
    if isinstance(exc, DataRefusedError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    # Data a consumer cannot hold or compute with (a value out of range: OverflowError, a
    # structure too deep: RecursionError) fails again on every retry: answered for good.
    if isinstance(exc, ValueError | TypeError | ArithmeticError | RecursionError):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.UNAVAILABLE


def refusal_message(exc: Exception) -> str:
    return f"driftline processor could not accept the data: {type(exc).__name__}: {exc}"


_RETRY_INFO = error_details_pb2.RetryInfo(
    retry_delay=duration_pb2.Duration(seconds=RETRY_AFTER_S)).SerializeToString()


class Refused(Exception):
    """A request a consumer did not accept; ``code`` says how the client should react."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Exporting(Protocol):
    """What the servers hand requests to (the receiver)."""

    def export(self, signal: Signal, request: Message) -> Message:
        """The response, or ``Refused``."""


class AuthInterceptor(grpc.ServerInterceptor):
    """Refuses every call but health checks whose metadata the authenticator rejects;
    ``on_denied`` counts them."""

    def __init__(self, authenticator: ServerAuthenticator,
                 on_denied: Callable[[], None]) -> None:
        self._authenticator = authenticator
        self._on_denied = on_denied

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        if handler_call_details.method.startswith(HEALTH_METHOD_PREFIX):
            return continuation(handler_call_details)
        headers = {key.lower(): value for key, value in handler_call_details.invocation_metadata
                   if isinstance(value, str)}
        try:
            self._authenticator.authenticate(headers)
        except AuthenticationError as exc:
            self._on_denied()
            message = f"unauthenticated: {exc}"

            def deny(request: Any, context: grpc.ServicerContext) -> None:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

            return grpc.unary_unary_rpc_method_handler(deny)
        return continuation(handler_call_details)


def _export(receiver: Exporting, signal: Signal, request: Message,
            context: grpc.ServicerContext) -> Message:
    try:
        return receiver.export(signal, request)
    except Refused as refused:
        context.set_code(refused.code)
        context.set_details(refused.message)
        if refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            context.set_trailing_metadata([(RETRY_INFO_KEY, _RETRY_INFO)])
        return signal.response_type()


def _export_handler(receiver: Exporting, signal: Signal) -> grpc.GenericRpcHandler:
    """The signal's ``Export`` method taking raw bytes: a request that does not decode is
    answered INVALID_ARGUMENT naming the problem (grpcio's own deserializer would answer
    INTERNAL before any of our code runs)."""

    def export(body: bytes, context: grpc.ServicerContext) -> Any:
        try:
            request = signal.request_type.FromString(body)
        except DecodeError as exc:
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details(f"the body is not an OTLP {signal.name} export request: {exc}")
            return signal.response_type()
        return _export(receiver, signal, request, context)

    method = grpc.unary_unary_rpc_method_handler(
        export, response_serializer=lambda response: response.SerializeToString())
    return grpc.method_handlers_generic_handler(HEALTH_SERVICES[signal.name],
                                                {EXPORT_METHOD: method})


class GrpcHealth:
    """The server's ``grpc.health.v1`` service: NOT_SERVING until ``serving()``, NOT_SERVING
    for good from ``shutting_down()`` (watchers are told at once)."""

    def __init__(self, servicer: health.HealthServicer, names: Iterable[str]) -> None:
        self._servicer = servicer
        self._names = (OVERALL_HEALTH_SERVICE, *names)
        for name in self._names:
            servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    def serving(self) -> None:
        for name in self._names:
            self._servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    def shutting_down(self) -> None:
        self._servicer.enter_graceful_shutdown()


def add_services(server: grpc.Server, receiver: Exporting, signals: Iterable[str]
                 ) -> GrpcHealth:
    """Register the export service of each of ``signals`` and the health service."""
    served = tuple(dict.fromkeys(signals))
    server.add_generic_rpc_handlers(
        tuple(_export_handler(receiver, OTLP_SIGNALS[signal]) for signal in served))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return GrpcHealth(servicer, [HEALTH_SERVICES[s] for s in served])
