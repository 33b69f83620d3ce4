"""The ``otlphttp`` exporter (also ``otlp_http``): forwards metrics, traces and logs as
OTLP/HTTP protobuf to any OTLP backend, with headers, TLS, gzip and the collector's retry
and queue settings.

``endpoint`` is the base URL; ``/v1/metrics``, ``/v1/traces`` and ``/v1/logs`` are appended
unless ``metrics_endpoint`` etc. give a full URL. Retryable as the OTLP specification says:
429, 502, 503 and 504, after the ``Retry-After`` the server asks for; connection failures
too. A partial success is logged, not retried.
"""

from __future__ import annotations

import email.utils
import gzip
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from driftline.exporters._otlp_forward import (
    COMPRESSIONS,
    RESPONSES,
    SIGNALS,
    ClientTlsConfig,
    ForwardingExporter,
    rejected_of,
)
from driftline.exporters._sending import (
    DEFAULT_TIMEOUT,
    Item,
    QueueConfig,
    RetryConfig,
    SendError,
)
from driftline.exporters.otlp_grpc import sending_config

_log = logging.getLogger(__name__)

TYPE = "otlphttp"
DEFAULT_ENDPOINT = ""
DEFAULT_COMPRESSION = "gzip"  # the collector's default for OTLP/HTTP
CONTENT_TYPE = "application/x-protobuf"
RETRYABLE_STATUSES = (429, 502, 503, 504)
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
        if not isinstance(self.headers, dict):
            problems.append("headers: a mapping of header names to values")
        problems += [f"tls::{p}" for p in self.tls.validate()]
        problems += sending_config(self).validate()
        return problems

    def url(self, signal: str) -> str:
        own = getattr(self, f"{signal}_endpoint")
        return own or self.endpoint.rstrip("/") + _PATHS[signal]


def retry_after_s(header: str | None, now_s: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now_s is None else now_s), 0.0)


class OtlpHttpExporter(ForwardingExporter):
    def __init__(self, name: str, config: OtlpHttpExporterConfig) -> None:
        super().__init__(name, sending_config(config), self._send_item)
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
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s or None,
                                        context=self._ssl if url.startswith("https") else None
                                        ) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read(512).decode("utf-8", "replace")
            raise SendError(f"OTLP/HTTP {url}: {error.code} {detail}".strip(),
                            retryable=error.code in RETRYABLE_STATUSES,
                            retry_after_s=retry_after_s(error.headers.get("Retry-After"))
                            ) from None
        except (urllib.error.URLError, OSError) as error:
            raise SendError(f"OTLP/HTTP {url}: {error}", retryable=True) from None
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
