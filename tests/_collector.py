"""A real ``driftline collector`` subprocess for integration tests (not a fixture module).

``running_collector`` writes the config, starts the service on ports the OS picks, waits
for the line it prints per listening socket, yields, and stops it with SIGTERM.
"""

from __future__ import annotations

import contextlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from driftline import semconv
from driftline.exporters.file.exporter import read_metrics

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
POST_TIMEOUT_S = 10.0
LISTENING = re.compile(r"^receiver (\S+) listening on (\S+) \((OTLP/gRPC|OTLP/HTTP)\)$")
# Any component's line, e.g. "exporter prometheus listening on 127.0.0.1:40123".
COMPONENT_LISTENING = re.compile(r"^(\S+ \S+) listening on (\S+)")
PROTOCOL_HTTP = "OTLP/HTTP"
PROTOCOL_GRPC = "OTLP/gRPC"
PROMETHEUS_EXPORTER = "exporter prometheus"


def processor_gauges(path: Path) -> Iterator[tuple[str, dict[str, str], Any]]:
    """(metric name, string attributes, point) of every gauge point the processor wrote to
    the file exporter's ``path`` (nothing while it does not exist)."""
    if not path.exists():
        return
    for request in read_metrics(path):
        for resource_metrics in request.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                if scope.scope.name != semconv.PROCESSOR_SCOPE:
                    continue
                for metric in scope.metrics:
                    for point in metric.gauge.data_points:
                        yield metric.name, {kv.key: kv.value.string_value
                                            for kv in point.attributes}, point


def file_pipeline_config(output: Path, protocols: dict[str, Any]) -> dict[str, Any]:
    """An ``otlp`` receiver with ``protocols`` feeding metrics and traces to a ``file``."""
    return {
        "receivers": {"otlp": {"protocols": protocols}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"pipelines": {
            "metrics": {"receivers": ["otlp"], "exporters": ["file"]},
            "traces": {"receivers": ["otlp"], "exporters": ["file"]},
        }},
    }


@dataclass
class Collector:
    """A running collector: what it listens on (by protocol), its log, its exit code."""

    process: subprocess.Popen[str]
    stderr_path: Path
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    endpoints: dict[str, str] = field(default_factory=dict)
    # Every "KIND ID listening on ENDPOINT" line by "KIND ID" (the first endpoint each).
    listening: dict[str, str] = field(default_factory=dict)
    returncode: int | None = None

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_for(self, protocols: tuple[str, ...],
                 components: tuple[str, ...] = ()) -> None:
        """Read the stdout lines until ``protocols`` (receiver endpoints) and ``components``
        (``"exporter prometheus"``: any other listening component) have printed theirs."""
        def done() -> bool:
            return set(protocols) <= set(self.endpoints) and set(components) <= set(
                self.listening)

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and not done():
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            line = line.rstrip("\n")
            if match := LISTENING.match(line):
                self.endpoints[match.group(3)] = match.group(2)
            if match := COMPONENT_LISTENING.match(line):
                self.listening.setdefault(match.group(1), match.group(2))
        if not done():
            raise AssertionError(f"the collector did not print {protocols} {components} "
                                 f"endpoints (got {self.endpoints} {self.listening}); "
                                 f"stderr:\n{self.stderr()}")

    def endpoint_of(self, component: str) -> str:
        """Where ``component`` (``"exporter prometheus"``) listens, waiting for its line."""
        self.wait_for((), (component,))
        return self.listening[component]


def _pump(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def spawn(config: dict[str, Any], workdir: Path) -> Collector:
    """Start a collector serving ``config``; its stdout lines are pumped into ``lines``."""
    config_path = workdir / "collector.yaml"
    config_path.write_text(yaml.safe_dump(config))
    stderr_path = workdir / "collector.log"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "driftline.cli", "collector", "--config", str(config_path)],
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=workdir)
    collector = Collector(process, stderr_path)
    threading.Thread(target=_pump, args=(process.stdout, collector.lines), daemon=True).start()
    return collector


@contextlib.contextmanager
def running_collector(config: dict[str, Any], workdir: Path,
                      protocols: tuple[str, ...] = (PROTOCOL_HTTP,)) -> Iterator[Collector]:
    """The collector serving ``config``; SIGTERM on exit, its exit code in ``returncode``."""
    collector = spawn(config, workdir)
    process = collector.process
    try:
        collector.wait_for(protocols)
        yield collector
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            collector.returncode = process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.wait()
            raise AssertionError(f"the collector did not stop within {STOP_TIMEOUT_S}s of "
                                 f"SIGTERM; its log:\n{collector.stderr()}") from exc


def post_metrics(endpoint: str, resource_metrics: Any) -> None:
    """POST ``resource_metrics`` to an OTLP/HTTP receiver at ``endpoint`` (host:port) as
    protobuf, and check it was accepted."""
    body = ExportMetricsServiceRequest(resource_metrics=resource_metrics).SerializeToString()
    request = urllib.request.Request(f"http://{endpoint}/v1/metrics", data=body,
                                     headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(request, timeout=POST_TIMEOUT_S) as response:
        assert response.status == 200


def spawn_cli(args: list[str], workdir: Path) -> Collector:
    """Start ``driftline collector ARGS`` (e.g. several ``--config`` and ``--set``); its
    stdout lines are pumped into ``lines``, its stderr kept in ``collector.log``."""
    stderr_path = workdir / "collector.log"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "driftline.cli", "collector", *args],
                                   stdout=subprocess.PIPE, stderr=stderr, text=True,
                                   cwd=workdir)
    collector = Collector(process, stderr_path)
    threading.Thread(target=_pump, args=(process.stdout, collector.lines), daemon=True).start()
    return collector
