"""The ``health_check`` extension: an HTTP endpoint saying whether the processor is up, for
load balancers and orchestrators (the collector's ``extension/healthcheckextension``).

``GET <path>`` answers 200 with ``{"status": "Server available", ...}`` once told the
service is running (``ready()``), and 503 with ``"Server not available"`` before that and
from the moment shutdown begins (``not_ready()``), so traffic drains away first. The
``otlp`` receiver makes both calls (receivers start last and stop first).
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from driftline.processor.component import ComponentError, Consumer, Settings, validated
from driftline.processor.component.endpoints import endpoint_problem
from driftline.processor.component.settings import KIND_EXTENSION

_log = logging.getLogger(__name__)

TYPE = "health_check"
DEFAULT_ENDPOINT = "127.0.0.1:13133"
DEFAULT_PATH = "/"
POLL_INTERVAL_S = 0.1
JOIN_TIMEOUT_S = 5.0
# Probes are tiny; a stuck client must not keep a thread forever.
REQUEST_TIMEOUT_S = 10.0

STATE_STARTING = "starting"
STATE_READY = "ready"
STATE_STOPPING = "stopping"
STATUS_AVAILABLE = "Server available"
STATUS_NOT_AVAILABLE = "Server not available"
_CONTENT_TYPE_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    """``extensions: {health_check: {endpoint: "127.0.0.1:13133", path: "/"}}``."""

    endpoint: str = DEFAULT_ENDPOINT
    path: str = DEFAULT_PATH

    def validate(self) -> list[str]:
        problems = []
        if (problem := endpoint_problem("endpoint", self.endpoint)) is not None:
            problems.append(problem)
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            problems.append(f"path: must start with '/', e.g. /health, got {self.path!r}")
        return problems


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """What the endpoint answers: the state, and since when the service is up."""

    state: str
    up_since_unix_s: float | None

    @property
    def available(self) -> bool:
        return self.state == STATE_READY

    def to_json(self, now_unix_s: float) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": STATUS_AVAILABLE if self.available else STATUS_NOT_AVAILABLE,
            "state": self.state,
        }
        if self.available and self.up_since_unix_s is not None:
            body["upSince"] = datetime.fromtimestamp(self.up_since_unix_s, UTC).isoformat()
            body["uptime"] = f"{max(now_unix_s - self.up_since_unix_s, 0.0):.3f}s"
        return body


class HealthCheck:
    """The extension: an HTTP server started first and stopped last; the service drives
    its state with ``ready()`` / ``not_ready()`` (a ``PipelineWatcher``)."""

    def __init__(self, config: HealthCheckConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._state = STATE_STARTING
        self._up_since: float | None = None
        self._server: _HealthServer | None = None
        self._thread: threading.Thread | None = None

    def status(self) -> HealthStatus:
        with self._lock:
            return HealthStatus(self._state, self._up_since)

    def ready(self) -> None:
        """The service is running: answer 200 from now on. Idempotent (``upSince`` stays)."""
        with self._lock:
            if self._state == STATE_READY:
                return
            self._state, self._up_since = STATE_READY, time.time()
        _log.info("health_check: the service is available")

    def not_ready(self) -> None:
        """Shutdown has begun (or a restart): answer 503 from now on."""
        with self._lock:
            self._state = STATE_STOPPING

    @property
    def port(self) -> int | None:
        server = self._server
        return int(server.server_address[1]) if server is not None else None

    def endpoints(self) -> list[str]:
        """What the service prints at start (``host:port (health_check)``)."""
        if self.port is None:
            return []
        host = self._config.endpoint.rpartition(":")[0]
        return [f"{host}:{self.port} (health_check)"]

    def start(self) -> None:
        """Bind the endpoint; ``ComponentError`` naming it when the port is taken."""
        endpoint = self._config.endpoint
        host, _, port = endpoint.rpartition(":")
        host = host.strip("[]")
        server_class = _HealthServer6 if ":" in host else _HealthServer
        try:
            server = server_class((host, int(port)), self)
        except OSError as exc:
            raise ComponentError(f"endpoint: cannot listen on {endpoint} "
                                 f"({exc.strerror or exc}); stop what uses the port or set "
                                 "extensions::health_check::endpoint to another") from exc
        with self._lock:
            if self._state != STATE_READY:
                self._state = STATE_STARTING
        thread = threading.Thread(target=server.serve_forever,
                                  kwargs={"poll_interval": POLL_INTERVAL_S},
                                  name="driftline-health-check", daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        _log.info("health_check serving http://%s%s", self.endpoints()[0].split(" ")[0],
                  self._config.path)

    def shutdown(self) -> None:
        """Answer 503 until the socket closes, then close it. Idempotent."""
        self.not_ready()
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(JOIN_TIMEOUT_S)


class _HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], extension: HealthCheck) -> None:
        self.extension = extension
        super().__init__(address, _HealthHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would do a reverse-DNS lookup of the host; not needed here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _HealthServer6(_HealthServer):
    address_family = socket.AF_INET6


class _HealthHandler(BaseHTTPRequestHandler):
    server: _HealthServer
    server_version = "driftline-health"
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("health_check %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        extension = self.server.extension
        if urlsplit(self.path).path != extension._config.path:
            self._send(404, {"status": f"not found; the health check is at "
                                       f"{extension._config.path}"})
            return
        status = extension.status()
        self._send(200 if status.available else 503, status.to_json(time.time()))

    do_HEAD = do_GET

    def _send(self, code: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", _CONTENT_TYPE_JSON)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class Factory:
    """``extensions: {health_check: ...}``."""

    TYPE = TYPE
    CONFIG = HealthCheckConfig

    def default_config(self) -> HealthCheckConfig:
        return HealthCheckConfig()

    def create(self, config: HealthCheckConfig, next_consumer: Consumer | None = None,
               settings: Settings | None = None) -> HealthCheck:
        settings = settings or Settings.of(KIND_EXTENSION, TYPE)
        return HealthCheck(validated(config, settings))
