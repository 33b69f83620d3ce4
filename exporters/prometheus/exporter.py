"""The ``prometheus`` exporter: the latest metric state on ``GET /metrics`` for scraping.

Like the collector's ``prometheusexporter``: OTLP metrics come in and are kept as series
(``driftline.exporters.prometheus_series``, shared with ``prometheusremotewrite``); this
module serves them over HTTP, in the text format 0.0.4 or OpenMetrics when asked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from driftline.exporters.prometheus_series.series import (
    OPENMETRICS_TYPE,
    TYPE,
    PrometheusExporterConfig,
    PrometheusSeries,
    split_endpoint,
)
from driftline.processor.component import ComponentError, Consumer, Settings, validated
from driftline.processor.component.http_server import http_server
from driftline.processor.component.settings import KIND_EXPORTER

_LOG = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = f"{OPENMETRICS_TYPE}; version=1.0.0; charset=utf-8"
SERVE_POLL_INTERVAL_S = 0.2
JOIN_TIMEOUT_S = 5.0


class PrometheusExporter(PrometheusSeries):
    """The series of ``PrometheusSeries``, served on ``GET /metrics`` from a daemon thread."""

    def __init__(
        self, config: PrometheusExporterConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(config, clock=clock)
        self._host, self._configured_port = split_endpoint(config.endpoint)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port once started (the configured one before, 0 meaning any free port)."""
        server = self._server
        return server.server_address[1] if server is not None else self._configured_port

    def start(self) -> None:
        """Load the reference profiles, bind the endpoint and serve from a daemon thread;
        ``ComponentError`` if the profiles cannot be read or the endpoint is taken."""
        if self._server is not None:
            return
        self.load_reference_profiles()
        try:
            server = http_server(self._host, self._configured_port, _handler(self),
                                 "prometheus exporter")
        except OSError as err:
            raise ComponentError(
                f"prometheus exporter: cannot listen on endpoint {self._config.endpoint!r}: "
                f"{err.strerror or err}; choose a free port in the exporter's 'endpoint'"
            ) from err
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": SERVE_POLL_INTERVAL_S},
            name=f"driftline-prometheus-{self.port}",
            daemon=True,
        )
        self._thread.start()
        _LOG.info("prometheus exporter serving http://%s:%d%s", self._host, self.port, METRICS_PATH)

    def shutdown(self) -> None:
        """Stop serving and join the server thread. Idempotent."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(JOIN_TIMEOUT_S)


def _handler(exporter: PrometheusExporter) -> type[BaseHTTPRequestHandler]:
    class _MetricsHandler(BaseHTTPRequestHandler):
        """``GET /metrics`` renders the exporter's state; any other path is 404."""

        server_version = "driftline-prometheus"

        def do_GET(self) -> None:
            if urlsplit(self.path).path != METRICS_PATH:
                self.send_error(404, f"not found; metrics are at {METRICS_PATH}")
                return
            openmetrics = (exporter.open_metrics_enabled
                           and OPENMETRICS_TYPE in self.headers.get("Accept", ""))
            body = exporter.render(openmetrics=openmetrics).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type",
                             OPENMETRICS_CONTENT_TYPE if openmetrics else CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            _LOG.debug("prometheus exporter: " + format, *args)

    return _MetricsHandler


class Factory:
    """Builds ``prometheus`` exporters from their YAML node (collector-style factory)."""

    TYPE = TYPE
    CONFIG = PrometheusExporterConfig
    SIGNALS = ("metrics",)

    @staticmethod
    def default_config() -> PrometheusExporterConfig:
        """The config with every default, before the YAML is overlaid."""
        return PrometheusExporterConfig()

    @staticmethod
    def create(config: PrometheusExporterConfig, next_consumer: Consumer | None = None,
               settings: Settings | None = None) -> PrometheusExporter:
        """A new, unstarted exporter; exporters end a pipeline, so ``next_consumer`` is unused."""
        settings = settings or Settings.of(KIND_EXPORTER, TYPE)
        return PrometheusExporter(validated(config, settings))
