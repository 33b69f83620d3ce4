"""The ``otlp`` exporter (also ``otlp_grpc``): forwards metrics, traces and logs over OTLP/gRPC
to any OTLP backend, with headers, TLS, gzip and the collector's retry and queue settings.

Retryable as the OTLP specification says: CANCELLED, DEADLINE_EXCEEDED, ABORTED,
OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS, and RESOURCE_EXHAUSTED only when the server sends
a ``RetryInfo`` (whose delay is then honoured). A partial success is logged, not retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from driftline.exporters.sending.otlp_forward import (
    COMPRESSIONS,
    RESPONSES,
    ForwardingExporter,
    rejected_of,
)
from driftline.exporters.sending.push import client_problems
from driftline.exporters.sending.queue import (
    DEFAULT_TIMEOUT,
    Item,
    QueueConfig,
    RetryConfig,
    SendError,
)
from driftline.processor.component.factories import PushExporterFactory
from driftline.processor.component.signals import SIGNALS
from driftline.processor.component.tls import TlsConfig

_log = logging.getLogger(__name__)

TYPE = "otlp"
DEFAULT_ENDPOINT = ""
DEFAULT_COMPRESSION = "gzip"  # the collector's default for OTLP/gRPC
_METHODS = {
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
_RETRYABLE = {grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE,
              grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS}
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(slots=True)
class OtlpGrpcExporterConfig:
    endpoint: str = DEFAULT_ENDPOINT  # host:port
    headers: dict[str, str] = field(default_factory=dict)
    compression: str = DEFAULT_COMPRESSION
    tls: TlsConfig = field(default_factory=TlsConfig)
    timeout: str | float = DEFAULT_TIMEOUT
    retry_on_failure: RetryConfig = field(default_factory=RetryConfig)
    sending_queue: QueueConfig = field(default_factory=QueueConfig)

    def validate(self) -> list[str]:
        problems = []
        if not self.endpoint or ":" not in self.endpoint.rsplit("/", 1)[-1]:
            problems.append(f"endpoint: required as host:port (e.g. api.example.com:4317), "
                            f"got {self.endpoint!r}")
        if self.compression not in COMPRESSIONS:
            problems.append(f"compression: one of {', '.join(COMPRESSIONS)}, got "
                            f"{self.compression!r}")
        if self.tls.insecure_skip_verify:  # grpcio's channels always verify the server
            problems.append("tls::insecure_skip_verify: not supported by the otlp (gRPC) "
                            "exporter; give tls::ca_file, or use otlphttp")
        return problems + client_problems(self)


def _target(endpoint: str) -> str:
    """``host:port`` from an endpoint that may carry a scheme (the collector accepts both)."""
    return endpoint.split("://", 1)[-1].rstrip("/")


def _retry_delay_s(error: grpc.RpcError) -> float | None:
    """The delay of a ``RetryInfo`` in the error's status details, if any."""
    for key, value in error.trailing_metadata() or ():
        if key != _STATUS_DETAILS_KEY:
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


class OtlpGrpcExporter(ForwardingExporter):
    def __init__(self, name: str, config: OtlpGrpcExporterConfig) -> None:
        super().__init__(name, config)
        self._config = config
        self._channel: grpc.Channel | None = None
        self._metadata = tuple((k.lower(), str(v)) for k, v in config.headers.items())

    def start(self) -> None:
        tls = self._config.tls
        options = [("grpc.max_send_message_length", -1)]
        compression = (grpc.Compression.Gzip if self._config.compression == "gzip"
                       else grpc.Compression.NoCompression)
        if tls.insecure or self._config.endpoint.startswith("http://"):
            self._channel = grpc.insecure_channel(_target(self._config.endpoint), options,
                                                  compression)
        else:
            credentials = grpc.ssl_channel_credentials(
                _read(tls.ca_file), _read(tls.key_file), _read(tls.cert_file))
            self._channel = grpc.secure_channel(_target(self._config.endpoint), credentials,
                                                options, compression)
        super().start()

    def shutdown(self) -> None:
        super().shutdown()
        if self._channel is not None:
            self._channel.close()

    def _send_item(self, item: Item, timeout_s: float) -> None:
        assert self._channel is not None
        call = self._channel.unary_unary(_METHODS[item.signal],
                                         response_deserializer=RESPONSES[item.signal].FromString)
        try:
            response = call(item.body, timeout=timeout_s or None, metadata=self._metadata)
        except grpc.RpcError as error:
            code = error.code()
            delay_s = _retry_delay_s(error)
            retryable = code in _RETRYABLE or (
                code is grpc.StatusCode.RESOURCE_EXHAUSTED and delay_s is not None)
            raise SendError(f"OTLP/gRPC {self._config.endpoint}: {code.name}: "
                            f"{error.details()}", retryable=retryable,
                            retry_after_s=delay_s) from None
        rejected, message = rejected_of(item.signal, response)
        if rejected:
            _log.warning("%s: the backend rejected %d of %d %s: %s", self._config.endpoint,
                         rejected, item.count, item.signal, message)


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


class Factory(PushExporterFactory):
    """``exporters: {otlp: {endpoint: host:4317, ...}}`` (also spelled ``otlp_grpc``)."""

    TYPE = TYPE
    ALIASES = ("otlp_grpc",)
    CONFIG = OtlpGrpcExporterConfig
    SIGNALS = SIGNALS
    COMPONENT = OtlpGrpcExporter
