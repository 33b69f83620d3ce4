"""The ``otlphttp`` exporter (also ``otlp_http``, its collector name since v0.144): forwards
metrics, traces and logs as OTLP/HTTP to any OTLP backend, with headers, TLS, the collector's
``encoding`` (``proto`` or ``json``), its compressions (gzip, zstd, zlib, deflate, snappy,
lz4) and its retry and queue settings.

``endpoint`` is the base URL; ``/v1/metrics``, ``/v1/traces`` and ``/v1/logs`` are appended
unless ``metrics_endpoint`` etc. give a full URL. Retryable as the OTLP specification says:
429, 502, 503 and 504, after the ``Retry-After`` the server asks for; connection failures
too. A partial success is logged, not retried.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import cramjam
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from driftline.exporters.sending.http import post
from driftline.exporters.sending.otlp_forward import (
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
)
from driftline.processor.component import otlp_json as _otlp_json
from driftline.processor.component.factories import PushExporterFactory
from driftline.processor.component.signals import (
    SIGNAL_LOGS,
    SIGNAL_METRICS,
    SIGNAL_TRACES,
    SIGNALS,
)
from driftline.processor.component.tls import TlsConfig

_log = logging.getLogger(__name__)

TYPE = "otlphttp"
DEFAULT_ENDPOINT = ""
DEFAULT_COMPRESSION = "gzip"  # the collector's default for OTLP/HTTP
CONTENT_TYPE = "application/x-protobuf"
CONTENT_TYPE_JSON = "application/json"
ENCODING_PROTO = "proto"
ENCODING_JSON = "json"
ENCODINGS = (ENCODING_PROTO, ENCODING_JSON)
_GZIP_LEVEL = 6
# compression → (Content-Encoding, compress), as the collector's confighttp client sends
# them: deflate is the zlib format, snappy the block format (framed before v0.125).
_COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda body: gzip.compress(body, compresslevel=_GZIP_LEVEL),
    "zstd": lambda body: bytes(cramjam.zstd.compress(body)),
    "zlib": zlib.compress,
    "deflate": zlib.compress,
    "snappy": lambda body: bytes(cramjam.snappy.compress_raw(body)),
    "lz4": lambda body: bytes(cramjam.lz4.compress(body)),
}
COMPRESSIONS = ("none", "", *_COMPRESSORS)
_REQUESTS = {SIGNAL_METRICS: ExportMetricsServiceRequest,
             SIGNAL_TRACES: ExportTraceServiceRequest, SIGNAL_LOGS: ExportLogsServiceRequest}
_PATHS = {"metrics": "/v1/metrics", "traces": "/v1/traces", "logs": "/v1/logs"}


@dataclass(slots=True)
class OtlpHttpExporterConfig:
    endpoint: str = DEFAULT_ENDPOINT  # base URL, e.g. https://otlp.example.com
    metrics_endpoint: str = ""
    traces_endpoint: str = ""
    logs_endpoint: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    compression: str = DEFAULT_COMPRESSION
    encoding: str = ENCODING_PROTO
    tls: TlsConfig = field(default_factory=TlsConfig)
    timeout: str | float = DEFAULT_TIMEOUT
    retry_on_failure: RetryConfig = field(default_factory=RetryConfig)
    sending_queue: QueueConfig = field(default_factory=QueueConfig)

    def validate(self) -> list[str]:
        problems = []
        urls = {"endpoint": self.endpoint, "metrics_endpoint": self.metrics_endpoint,
                "traces_endpoint": self.traces_endpoint, "logs_endpoint": self.logs_endpoint}
        if not any(urls.values()):
            problems.append("endpoint: required, the backend's base URL (e.g. "
                            "https://otlp.example.com)")
        problems += [f"{key}: must start with http:// or https://, got {url!r}"
                     for key, url in urls.items()
                     if url and not url.startswith(("http://", "https://"))]
        if self.compression not in COMPRESSIONS:
            problems.append(f"compression: one of {', '.join(c for c in COMPRESSIONS if c)}, "
                            f"got {self.compression!r}")
        if self.encoding not in ENCODINGS:
            problems.append(f"encoding: one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        return problems + client_problems(self)

    def url(self, signal: str) -> str:
        own = getattr(self, f"{signal}_endpoint")
        return own or self.endpoint.rstrip("/") + _PATHS[signal]


class OtlpHttpExporter(ForwardingExporter):
    def __init__(self, name: str, config: OtlpHttpExporterConfig) -> None:
        super().__init__(name, config)
        self._config = config
        self._ssl = None

    def start(self) -> None:
        if any(self._config.url(s).startswith("https://") for s in _PATHS):
            self._ssl = self._config.tls.ssl_context()
        super().start()

    def _send_item(self, item: Item, timeout_s: float) -> None:
        url = self._config.url(item.signal)
        as_json = self._config.encoding == ENCODING_JSON
        body = item.body
        if as_json:
            request = _REQUESTS[item.signal].FromString(body)
            body = _otlp_json.encode(request).encode("utf-8")
        headers = {"Content-Type": CONTENT_TYPE_JSON if as_json else CONTENT_TYPE,
                   **self._config.headers}
        compress = _COMPRESSORS.get(self._config.compression)
        if compress is not None:
            body = compress(body)
            headers["Content-Encoding"] = self._config.compression
        payload = post(url, body, headers, timeout_s, self._ssl)
        if payload:
            try:
                response_type = RESPONSES[item.signal]
                response = (_otlp_json.decode_dict(json.loads(payload), response_type,
                                                   ignore_unknown_fields=True)
                            if as_json else response_type.FromString(payload))
                rejected, message = rejected_of(item.signal, response)
            except (DecodeError, ValueError, TypeError):
                # a 200 with a body we cannot read still delivered the data
                _log.debug("%s: unreadable response body", url, exc_info=True)
                return
            if rejected:
                _log.warning("%s: the backend rejected %d of %d %s: %s", url, rejected,
                             item.count, item.signal, message)


class Factory(PushExporterFactory):
    """``exporters: {otlphttp: {endpoint: https://..., ...}}`` (also ``otlp_http``)."""

    TYPE = TYPE
    ALIASES = ("otlp_http",)
    CONFIG = OtlpHttpExporterConfig
    SIGNALS = SIGNALS
    COMPONENT = OtlpHttpExporter
