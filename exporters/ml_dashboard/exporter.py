"""The ``ml_dashboard`` exporter: keeps each closed window of every model and serves the
built-in dashboard (the page and its JSON API) on its own endpoint.

An exporter, as the ``prometheus`` one serves ``/metrics``: it sits at the end of the
metrics pipeline after ``ml_drift`` and sees exactly what the processors emit downstream,
so no processor knows of it. ``consume_metrics`` only sums in memory; a writer thread
writes the closed windows to the SQLite history every second and applies the retention.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics

from driftline.durations import parse_duration
from driftline.exporters.ml_dashboard.api import Api, ApiError
from driftline.exporters.ml_dashboard.collect import AppWindows, CollectStats, window_updates
from driftline.exporters.ml_dashboard.config import (
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_MAX_MEGABYTES,
    DEFAULT_PROFILE_RELOAD_S,
    DEFAULT_RETENTION_S,
    TYPE,
    MlDashboardConfig,
)
from driftline.exporters.ml_dashboard.history import (
    BYTES_PER_MEGABYTE,
    History,
    HistoryError,
    StreamKey,
    WindowUpdate,
)
from driftline.processor.component import (
    AuthenticationError,
    ComponentError,
    Consumer,
    Host,
    ServerAuthenticator,
    Settings,
    validated,
)
from driftline.processor.component.auth import authenticator_of
from driftline.processor.component.http_server import http_server
from driftline.processor.component.settings import KIND_EXPORTER
from driftline.profile import Profile, ProfileError, load_directory

_log = logging.getLogger(__name__)

STATIC_PACKAGE = "driftline.exporters.ml_dashboard.static"
INDEX = "index.html"
STATIC_PREFIX = "/static/"
API_PREFIX = "/api/"
# /api/auth answers without credentials whether the others need them, so the page asks for
# the token before its first data request instead of after a 401.
AUTH_ROUTE = "auth"
# Retention and the size bound are applied at most this often (they scan an index).
PRUNE_INTERVAL_S = 60.0
JOIN_TIMEOUT_S = 5.0
SERVE_POLL_INTERVAL_S = 0.2
NS_PER_S = 1_000_000_000
JSON_TYPE = "application/json; charset=utf-8"
# The page loads nothing from elsewhere; the policy tells the browser so.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self' "
                           "'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'")


@dataclass(slots=True)
class MlDashboardStats:
    """What the exporter did (self-telemetry): windows written, points it could not use,
    windows dropped by retention or the size bound, and failed writes."""

    windows_written: int = 0
    cumulative_points: int = 0
    invalid_points: int = 0
    late_points: int = 0
    windows_expired: int = 0
    windows_evicted: int = 0
    write_errors: int = 0
    unauthenticated_requests: int = 0
    history_bytes: int = 0


class MlDashboard:
    """The history and the page; see the module docstring."""

    def __init__(self, config: MlDashboardConfig, *,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        problems = config.validate()
        if problems:
            raise ComponentError(f"exporters::{TYPE}: invalid config: " + "; ".join(problems))
        self._config = config
        self._clock_ns = clock_ns
        self._window_ns = int(parse_duration(config.window) * NS_PER_S)
        self._grace_ns = int(parse_duration(config.grace) * NS_PER_S)
        history = config.history
        self._history_path = history.path if history is not None else ""
        self._retention_ns = int((history.retention_s if history is not None
                                  else DEFAULT_RETENTION_S) * NS_PER_S)
        self._max_bytes = (history.max_megabytes if history is not None
                           else DEFAULT_MAX_MEGABYTES) * BYTES_PER_MEGABYTE
        self._lock = threading.Lock()
        self._app = AppWindows(self._window_ns)
        self._pending: list[WindowUpdate] = []
        self._seen: dict[StreamKey, tuple[int, str]] = {}
        self._collect = CollectStats()
        self._stats = MlDashboardStats()
        self._history: History | None = None
        self._host: Host | None = None
        self._authenticator: ServerAuthenticator | None = None
        self._profiles: Mapping[tuple[str, str], Profile] = {}
        self._profiles_read_s = 0.0
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._warned: set[str] = set()

    # --- lifecycle ------------------------------------------------------------------------
    def set_host(self, host: Host) -> None:
        self._host = host

    @property
    def port(self) -> int:
        server = self._server
        return server.server_address[1] if server is not None else 0

    @property
    def url(self) -> str:
        host = self._config.endpoint.rpartition(":")[0].strip("[]")
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/"

    def start(self) -> None:
        """Open the history, find the authenticator, bind the endpoint, start the writer."""
        if self._server is not None:
            return
        where = f"exporters::{TYPE}"
        self._authenticator = authenticator_of(self._host, self._config.auth, f"{where}::auth")
        self._read_profiles(force=True)
        try:
            self._history = History(self._history_path, self._max_bytes)
        except HistoryError as exc:
            raise ComponentError(f"{where}::{exc}") from exc
        host, _, port = self._config.endpoint.rpartition(":")
        try:
            self._server = http_server(host, int(port), _handler(self), TYPE)
        except OSError as exc:
            self._history.close()
            raise ComponentError(f"{where}::endpoint: cannot listen on "
                                 f"{self._config.endpoint!r}: {exc.strerror or exc}; choose a "
                                 "free port") from exc
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._server.serve_forever,
                             kwargs={"poll_interval": SERVE_POLL_INTERVAL_S},
                             name="driftline-dashboard-http", daemon=True),
            threading.Thread(target=self._write_loop, name="driftline-dashboard-writer",
                             daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        _log.info("ml_dashboard serving %s (history: %s)", self.url,
                  self._history_path or "in memory")

    def shutdown(self) -> None:
        """Stop serving, write every window still summing (the app's partial windows
        included, so a restart loses nothing accepted), close the history. Idempotent."""
        server = self._server
        if server is None:
            return
        self._server = None
        self._stop.set()
        server.shutdown()
        server.server_close()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT_S)
        self._threads = []
        self._flush(everything=True)
        if self._history is not None:
            self._history.close()
            self._history = None

    def stats(self) -> MlDashboardStats:
        with self._lock:
            collect = self._collect
            self._stats.cumulative_points = collect.cumulative_points
            self._stats.invalid_points = collect.invalid_points
            self._stats.late_points = collect.late_points
            return MlDashboardStats(**{f: getattr(self._stats, f)
                                       for f in MlDashboardStats.__dataclass_fields__})

    # --- data -------------------------------------------------------------------------------
    def consume_metrics(self, batch: Sequence[ResourceMetrics]) -> None:
        now_ns = self._clock_ns()
        with self._lock:
            before = (self._collect.cumulative_points, self._collect.late_points)
            scopes = self._app.add(batch, self._collect, self._seen, now_ns)
            for scope_metrics in scopes:
                self._pending.extend(window_updates(scope_metrics, now_ns, self._collect))
            after = (self._collect.cumulative_points, self._collect.late_points)
        if after[0] > before[0]:
            self._warn_once("cumulative", "ml_dashboard: app metrics in cumulative temporality "
                            "are not windowed (distributions, class mix and latency stay "
                            "empty for them); Driftline's recorder sends delta")
        if after[1] > before[1]:
            self._warn_once("late", "ml_dashboard: app points arrived for a window already "
                            "written and were not added (raise 'grace'); counted in "
                            "late_points")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _log.warning(message)

    def _write_loop(self) -> None:
        last_prune_s = 0.0
        while not self._stop.wait(DEFAULT_FLUSH_INTERVAL_S):
            self._flush()
            if time.monotonic() - last_prune_s >= PRUNE_INTERVAL_S:
                last_prune_s = time.monotonic()
                self.prune()

    def _flush(self, everything: bool = False) -> None:
        with self._lock:
            updates = self._pending + self._app.due(self._clock_ns(), self._grace_ns,
                                                    everything)
            seen, self._pending, self._seen = self._seen, [], {}
        history = self._history
        if history is None or (not updates and not seen):
            return
        try:
            history.write(updates, seen)
        except Exception:  # a full disk must not stop the exporter; the next flush retries
            _log.exception("ml_dashboard: writing %d window updates failed", len(updates))
            with self._lock:
                self._stats.write_errors += 1
                self._pending = updates + self._pending
            return
        with self._lock:
            self._stats.windows_written += len(updates)

    def flush(self) -> None:
        """Write what is due now (tests and benchmarks call it instead of waiting)."""
        self._flush()

    def prune(self) -> None:
        history = self._history
        if history is None:
            return
        result = history.prune(self._clock_ns(), self._retention_ns)
        size = history.size_bytes()
        with self._lock:
            self._stats.windows_expired += result.expired
            self._stats.windows_evicted += result.evicted
            self._stats.history_bytes = size
        if result.evicted:
            _log.warning("ml_dashboard: the history reached history::max_megabytes=%d; the "
                         "%d oldest windows were deleted", self._max_bytes // BYTES_PER_MEGABYTE,
                         result.evicted)

    # --- the page ---------------------------------------------------------------------------
    def _read_profiles(self, force: bool = False) -> Mapping[tuple[str, str], Profile]:
        directory = self._config.reference_profiles
        now_s = time.monotonic()
        if not directory or (not force and now_s - self._profiles_read_s
                             < DEFAULT_PROFILE_RELOAD_S):
            return self._profiles
        self._profiles_read_s = now_s
        if not Path(directory).is_dir():
            if force:
                _log.warning("ml_dashboard: reference_profiles %r is not a directory; pages "
                             "show no reference side until it exists", directory)
            return self._profiles
        try:
            self._profiles = load_directory(directory)
        except (ProfileError, OSError) as exc:
            if force:
                raise ComponentError(f"exporters::{TYPE}::reference_profiles: cannot load "
                                     f"{directory!r}: {exc}") from exc
            _log.warning("ml_dashboard: reference_profiles %r not re-read (%s); the ones read "
                         "before stay", directory, exc)
        return self._profiles

    def api(self) -> Api:
        history = self._history
        if history is None:
            raise ApiError(503, "the dashboard is not running")
        return Api(history, self._read_profiles, parse_duration(self._config.stale_after),
                   self._clock_ns)

    @property
    def auth_required(self) -> bool:
        return self._authenticator is not None

    def authenticate(self, headers: Mapping[str, str]) -> None:
        if self._authenticator is None:
            return
        try:
            self._authenticator.authenticate(headers)
        except AuthenticationError:
            with self._lock:
                self._stats.unauthenticated_requests += 1
            raise


def _static(name: str) -> bytes | None:
    """A file of the page, from the installed package (never from the working folder)."""
    if "/" in name or name.startswith(".") or name.endswith(".py"):
        return None
    resource = resources.files(STATIC_PACKAGE).joinpath(name)
    return resource.read_bytes() if resource.is_file() else None


def _handler(dashboard: MlDashboard) -> type[BaseHTTPRequestHandler]:
    routes = {"models": Api.models, "windows": Api.windows,
              "distributions": Api.distributions}

    class _Handler(BaseHTTPRequestHandler):
        """The page and its files without credentials (they hold no data); ``/api/*``
        behind the authenticator when ``auth`` is set."""

        server_version = "driftline-dashboard"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            path = url.path
            if path.startswith(API_PREFIX):
                self._api(path[len(API_PREFIX):], dict(parse_qsl(url.query)))
                return
            name = INDEX if path == "/" else (path[len(STATIC_PREFIX):]
                                              if path.startswith(STATIC_PREFIX) else None)
            body = _static(name) if name else None
            if body is None:
                self._send(404, b"not found; the dashboard is at /", "text/plain")
                return
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            self._send(200, body, kind + ("; charset=utf-8" if kind.startswith("text/")
                                          or kind.endswith("javascript") else ""))

        def _api(self, route: str, query: dict[str, str]) -> None:
            if route == AUTH_ROUTE:  # whether to ask for a token, before asking for data
                required = dashboard.auth_required
                self._send(200, json.dumps({"required": required}).encode(), JSON_TYPE)
                return
            handler = routes.get(route)
            if handler is None:
                self._error(404, f"no API {route!r}; one of {', '.join(sorted(routes))}")
                return
            try:
                dashboard.authenticate({k.lower(): v for k, v in self.headers.items()})
            except AuthenticationError as exc:
                self._error(401, str(exc))
                return
            try:
                body = handler(dashboard.api(), query)
            except ApiError as exc:
                self._error(exc.status, str(exc))
                return
            self._send(200, body.encode(), JSON_TYPE)

        def _error(self, status: int, message: str) -> None:
            self._send(status, json.dumps({"error": message}).encode(), JSON_TYPE)

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            _log.debug("ml_dashboard: " + format, *args)

    return _Handler


class Factory:
    """Builds ``ml_dashboard`` exporters from their YAML node."""

    TYPE = TYPE
    CONFIG = MlDashboardConfig
    SIGNALS = ("metrics",)

    @staticmethod
    def default_config() -> MlDashboardConfig:
        return MlDashboardConfig()

    @staticmethod
    def create(config: MlDashboardConfig, next_consumer: Consumer | None = None,
               settings: Settings | None = None) -> MlDashboard:
        """A new, unstarted exporter; exporters end a pipeline, ``next_consumer`` is unused."""
        settings = settings or Settings.of(KIND_EXPORTER, TYPE)
        return MlDashboard(validated(config, settings))

