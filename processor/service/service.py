"""``driftline collector``: load and validate the config, build the pipelines, serve, stop.

Runs in the foreground until SIGTERM or SIGINT, then drains: the components are shut down
in data-flow order (receivers stop accepting and finish the requests in flight, processors
such as ``batch`` send what they hold, exporters flush), so what was accepted is exported.
A second signal during the drain acts as usual (SIGINT raises ``KeyboardInterrupt``,
SIGTERM ends the process) for an operator who cannot wait. Exit status 0 after a clean
stop, 1 when the config is invalid or a component cannot start or stop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from driftline.processor.component import ComponentError
from driftline.processor.service.config import (
    LOG_ENCODING_JSON,
    ConfigError,
    Sources,
    load_config,
    problem_lines,
)
from driftline.processor.service.pipeline import Node, Pipelines, build

_log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line, with the collector's JSON log keys (``level``, ``ts``
    in seconds, ``logger``, ``msg``; ``error`` when an exception is logged), for
    ``service::telemetry::logs::encoding: json``."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"level": record.levelname.lower(), "ts": record.created,
                "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line)
# The main thread wakes this often to let Python run signal handlers promptly.
_WAIT_SLICE_S = 0.5
_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
               "warning": logging.WARNING, "error": logging.ERROR}


def listening_endpoints(node: Node) -> list[str]:
    """What ``node`` listens on, from its ``endpoints()`` or its bound ``port``."""
    endpoints = getattr(node.component, "endpoints", None)
    if callable(endpoints):
        return list(endpoints())
    port = getattr(node.component, "port", None)
    configured = getattr(node.config, "endpoint", None)
    if isinstance(port, int) and isinstance(configured, str):
        return [f"{configured.rpartition(':')[0]}:{port}"]
    return []


def _print_endpoints(nodes: list[Node], out: TextIO) -> None:
    for node in nodes:
        for endpoint in listening_endpoints(node):
            print(f"{node.kind} {node.id} listening on {endpoint}", file=out)
    out.flush()


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[Callable[[], None]]:
    """SIGTERM/SIGINT set ``stop`` from before the components start, so a signal that
    arrives right after the listening lines are printed still drains instead of killing.

    Yields ``restore``, which puts the previous handlers back (idempotent): called before
    draining, so a second Ctrl+C or SIGTERM during the drain interrupts as usual.
    """
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum: int, frame: Any) -> None:
            _log.info("received %s, shutting down", signal.Signals(signum).name)
            stop.set()

        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, on_signal)

    def restore() -> None:
        while previous:
            signum, handler = previous.popitem()
            signal.signal(signum, handler)

    try:
        yield restore
    finally:
        restore()


def run_collector(config_path: Sources, *, sets: Sequence[str] = (),
                  stop: threading.Event | None = None) -> int:
    """Run the processor described by ``config_path`` until SIGTERM/SIGINT (or ``stop``).

    ``config_path`` is one ``--config`` source or several (merged in order), ``sets`` the
    ``--set`` items. Prints every config problem to stderr and returns 1 when the config is
    invalid or a component cannot start; prints one stdout line per listening endpoint once
    serving.
    """
    try:
        config = load_config(config_path, sets=sets)
    except ConfigError as exc:
        for line in problem_lines(config_path, exc, sets):
            print(line, file=sys.stderr)
        named = config_path if isinstance(config_path, str | os.PathLike) else " + ".join(
            map(str, config_path))
        print(f"{named}: invalid config ({len(exc.problems)} problem(s)); fix it and "
              "check with `driftline validate`", file=sys.stderr)
        return 1
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if config.log_encoding == LOG_ENCODING_JSON
                         else logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=_LOG_LEVELS[config.log_level], handlers=[handler])
    for warning in config.warnings:
        _log.warning("%s", warning)
    stop = stop or threading.Event()
    with _stop_on_signals(stop) as restore_signals:
        try:
            pipelines = build(config)
            pipelines.start()
        except ComponentError as exc:
            print(f"driftline collector: {exc}", file=sys.stderr)
            return 1
        _print_endpoints(list(pipelines.nodes()), sys.stdout)
        _log.info("driftline collector running %d pipeline(s); stop with SIGTERM or Ctrl+C",
                  len(config.pipelines))
        try:
            while not stop.wait(_WAIT_SLICE_S):
                pass
        finally:
            restore_signals()
            status = _shutdown(pipelines)
    return status


def _shutdown(pipelines: Pipelines) -> int:
    """Drain and stop every component; 1 if one of them failed to stop cleanly."""
    _log.info("draining: receivers stop accepting and finish requests in flight, then "
              "processors and exporters send what they hold (signal again to stop at once)")
    started = time.monotonic()
    try:
        pipelines.shutdown()
    except ComponentError as exc:
        print(f"driftline collector: {exc}", file=sys.stderr)
        return 1
    _log.info("driftline collector stopped (drained in %.1fs)", time.monotonic() - started)
    return 0
