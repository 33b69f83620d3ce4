"""The ``otlphttp`` exporter (also ``otlp_http``): forwards metrics, traces and logs as
OTLP/HTTP protobuf to any OTLP backend, with headers, TLS, gzip and the collector's retry
and queue settings.

``endpoint`` is the base URL; ``/v1/metrics``, ``/v1/traces`` and ``/v1/logs`` are appended
unless ``metrics_endpoint`` etc. give a full URL. Retryable as the OTLP specification says:
429, 502, 503 and 504, after the ``Retry-After`` the server asks for; connection failures
too. A partial success is logged, not retried.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from driftline.exporters._http import post
from driftline.exporters._otlp_forward import (
    COMPRESSIONS,
    RESPONSES,
    ForwardingExporter,
    rejected_of,
)
from driftline.exporters._push import ClientTlsConfig, client_problems
from driftline.exporters._sending import (
    DEFAULT_TIMEOUT,
    Item,
    QueueConfig,
    RetryConfig,
)
from driftline.processor.registry import SIGNALS

_log = logging.getLogger(__name__)

TYPE = "otlphttp"
DEFAULT_ENDPOINT = ""
DEFAULT_COMPRESSION = "gzip"  # the collector's default for OTLP/HTTP
CONTENT_TYPE = "application/x-protobuf"
_PATHS = {"metrics": "/v1/metrics", "traces": "/v1/traces", "logs": "/v1/logs"}


@dataclass(slots=True)
class OtlpHttpExporterConfig:
    endpoint: str = DEFAULT_ENDPOINT  # base URL, e.g. https://otlp.example.com
    metrics_endpoint: str = ""
    traces_endpoint: str = ""
    logs_endpoint: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    compression: str = DEFAULT_COMPRESSION
    tls: ClientTlsConfig = field(default_factory=ClientTlsConfig)
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
            problems.append(f"compression: one of {', '.join(COMPRESSIONS)}, got "
                            f"{self.compression!r}")
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
        body = item.body
        headers = {"Content-Type": CONTENT_TYPE, **self._config.headers}
        if self._config.compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        payload = post(url, body, headers, timeout_s, self._ssl)
        if payload:
            try:
                rejected, message = rejected_of(item.signal,
                                                RESPONSES[item.signal].FromString(payload))
            except DecodeError:  # a 200 with a body we cannot read still delivered the data
                _log.debug("%s: unreadable response body", url, exc_info=True)
                return
            if rejected:
                _log.warning("%s: the backend rejected %d of %d %s: %s", url, rejected,
                             item.count, item.signal, message)


class Factory:
    """``exporters: {otlphttp: {endpoint: https://..., ...}}`` (also ``otlp_http``)."""

    TYPE = TYPE
    ALIASES = ("otlp_http",)
    CONFIG = OtlpHttpExporterConfig
    SIGNALS = SIGNALS

    def default_config(self) -> OtlpHttpExporterConfig:
        return OtlpHttpExporterConfig()

    def create(self, config: OtlpHttpExporterConfig, next_consumer: Any = None,
               component_id: str = TYPE) -> OtlpHttpExporter:
        return OtlpHttpExporter(component_id, config)
