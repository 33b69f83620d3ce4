"""Shared test helpers: reserved ports, waiting on HTTP, and a real Prometheus server.

Ports: a process that can bind port 0 and print what it got (the collector's "listening on"
lines, read by ``tests/_collector.py``) is given port 0. Where a test must name a port
before its process exists (a backend that comes up later, a binary that cannot report its
port, an address where nothing may listen), ``reserve_port`` holds it with a bound socket
until the moment it is handed over.

Tests that need the ``prometheus`` binary skip when it is missing, except under ``CI=true``
where a missing binary is a broken CI image and the test fails instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest
import yaml

LOOPBACK = "127.0.0.1"
PROMETHEUS_BINARY = "prometheus"
PROMETHEUS_MISSING = "needs the Debian package prometheus (apt-get install prometheus)"
PROMETHEUS_READY_TIMEOUT_S = 30.0
PROMETHEUS_STOP_TIMEOUT_S = 10.0
PROMETHEUS_START_ATTEMPTS = 3
DEFAULT_SCRAPE_INTERVAL_S = 1
DEFAULT_QUERY_TIMEOUT_S = 30.0
SCRAPE_JOB = "driftline"
POLL_INTERVAL_S = 0.2
HTTP_TIMEOUT_S = 2.0


# Reserved ports are drawn below the kernel's ephemeral range (outgoing connections and
# port-0 binds take theirs from it), from here up.
RESERVED_PORT_MIN = 10_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_LOW = 32_768
RESERVE_ATTEMPTS = 200


class ReservedPort:
    """A loopback TCP port held by a bound socket that never listens: connecting to it is
    refused, and no other socket can bind it until ``release``.

    A port freed right after the OS picked it (bind port 0, close) was taken by another
    worker's connection before a backend started on it a minute later. This one is held
    until the moment the process that binds it is started, and lies below the ephemeral
    range, so in that moment only an explicit bind of that very port could take it.
    """

    def __init__(self) -> None:
        self.socket = _bound_below_ephemeral_range()
        self.port = int(self.socket.getsockname()[1])
        self.endpoint = f"{LOOPBACK}:{self.port}"

    def release(self) -> None:
        """Let a process bind the port (call right before starting it). Idempotent."""
        self.socket.close()


@contextlib.contextmanager
def reserve_port() -> Iterator[ReservedPort]:
    """A ``ReservedPort``, released at the latest when the block ends."""
    reserved = ReservedPort()
    try:
        yield reserved
    finally:
        reserved.release()


def _bound_below_ephemeral_range() -> socket.socket:
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = DEFAULT_EPHEMERAL_LOW
    for _ in range(RESERVE_ATTEMPTS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((LOOPBACK, random.randrange(RESERVED_PORT_MIN, low)))
        except OSError:
            sock.close()
            continue
        return sock
    raise RuntimeError(f"no free port between {RESERVED_PORT_MIN} and {low} in "
                       f"{RESERVE_ATTEMPTS} attempts")


def wait_for_http(url: str, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; ``TimeoutError`` with the last failure otherwise."""
    deadline = time.monotonic() + timeout_s
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as err:
            last = str(err)
        time.sleep(POLL_INTERVAL_S)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s}s (last: {last})")


def missing_dependency(reason: str, allow_module_level: bool = False) -> NoReturn:
    """Skip for want of ``reason``'s dependency, or fail when CI=true: CI installs every
    dependency from the project's files, so there a missing one is an error, never a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, so this is an error, not a skip", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)


def require_binary(name: str, missing: str) -> str:
    """The path of executable ``name``; skip the test without it, or fail it when CI=true."""
    path = shutil.which(name)
    if path is None:
        missing_dependency(missing)
    return path


TORCH_MISSING = ("needs PyTorch, an optional dependency (pip install -e '.[dev]', which pins "
                 "torch==2.13.0)")


def require_torch() -> ModuleType:
    """The ``torch`` module; skip without it (the whole module when called at import), or
    fail when CI=true."""
    try:
        import torch
    except ImportError as exc:
        missing_dependency(f"{TORCH_MISSING}: {exc}", allow_module_level=True)
    return torch


@dataclass(frozen=True, slots=True)
class PrometheusServer:
    """A running Prometheus: its base URL and files, with helpers for the HTTP query API."""

    url: str
    port: int
    config_path: Path
    log_path: Path

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The ``data.result`` of an instant query (vector results: metric + value)."""
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(address, timeout=HTTP_TIMEOUT_S) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {body}")
        return list(body["data"]["result"])

    def wait_for(
        self,
        promql: str,
        timeout_s: float = DEFAULT_QUERY_TIMEOUT_S,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
    ) -> list[dict[str, Any]]:
        """Poll ``promql`` until ``predicate(result)`` holds (default: any series); return it."""
        deadline = time.monotonic() + timeout_s
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if predicate(result):
                return result
            time.sleep(POLL_INTERVAL_S)
        raise AssertionError(
            f"{promql!r} did not match within {timeout_s}s; last result {result}; "
            f"Prometheus log:\n{self.log_path.read_text(errors='replace')[-4000:]}"
        )


def _write_config(
    path: Path, scrape_targets: Sequence[str], scrape_interval_s: int, honor_labels: bool
) -> None:
    interval = f"{scrape_interval_s}s"
    config = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": [
            {
                "job_name": SCRAPE_JOB,
                # Keep the exporter's own job/instance (from service.name), as one does when
                # scraping a collector that re-exports many services.
                "honor_labels": honor_labels,
                "static_configs": [{"targets": list(scrape_targets)}],
            }
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(PROMETHEUS_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(PROMETHEUS_STOP_TIMEOUT_S)


@contextlib.contextmanager
def run_prometheus(
    scrape_targets: Sequence[str],
    workdir: Path,
    *,
    scrape_interval_s: int = DEFAULT_SCRAPE_INTERVAL_S,
    honor_labels: bool = True,
    extra_args: Sequence[str] = (),
) -> Iterator[PrometheusServer]:
    """Start a real Prometheus on 127.0.0.1 scraping ``scrape_targets``; stop it on exit.

    ``extra_args`` go to the command line, e.g. ``["--web.enable-remote-write-receiver"]``.
    Its port is reserved until the moment Prometheus starts; one taken in that moment
    anyway is retried with another.
    """
    binary = require_binary(PROMETHEUS_BINARY, PROMETHEUS_MISSING)
    config_path = workdir / "prometheus.yml"
    _write_config(config_path, scrape_targets, scrape_interval_s, honor_labels)
    for attempt in range(1, PROMETHEUS_START_ATTEMPTS + 1):
        reserved = ReservedPort()
        port = reserved.port
        log_path = workdir / f"prometheus-{attempt}.log"
        data_path = workdir / f"data-{attempt}"
        command = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data_path}",
            f"--web.listen-address={LOOPBACK}:{port}",
            *extra_args,
        ]
        reserved.release()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
            )
        server = PrometheusServer(f"http://{LOOPBACK}:{port}", port, config_path, log_path)
        try:
            try:
                _wait_ready(server, process)
            except _ExitedEarly:
                if attempt < PROMETHEUS_START_ATTEMPTS and "address already in use" in (
                    log_path.read_text(errors="replace")
                ):
                    continue
                raise
            yield server
            return
        finally:
            _stop(process)


class _ExitedEarly(RuntimeError):
    """Prometheus exited before it became ready; the message carries its log."""


def _wait_ready(server: PrometheusServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + PROMETHEUS_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _ExitedEarly(
                f"prometheus exited with {process.returncode}:\n"
                f"{server.log_path.read_text(errors='replace')[-4000:]}"
            )
        with contextlib.suppress(TimeoutError):
            wait_for_http(f"{server.url}/-/ready", POLL_INTERVAL_S * 5)
            return
    raise TimeoutError(
        f"prometheus at {server.url} not ready within {PROMETHEUS_READY_TIMEOUT_S}s:\n"
        f"{server.log_path.read_text(errors='replace')[-4000:]}"
    )


@pytest.fixture
def prometheus_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., PrometheusServer]]:
    """``prometheus_server(scrape_targets: list[str], **options) -> PrometheusServer``.

    Starts a real Prometheus per call (options as ``run_prometheus``); every server started
    is stopped when the test ends, whatever its outcome.
    """
    with contextlib.ExitStack() as stack:

        def start(scrape_targets: list[str], **options: Any) -> PrometheusServer:
            workdir = tmp_path_factory.mktemp("prometheus")
            return stack.enter_context(run_prometheus(scrape_targets, workdir, **options))

        yield start
