"""The ``health_check`` and ``bearertokenauth`` extensions on their own, over real sockets.

The receivers' use of ``bearertokenauth`` (with the SDK exporters) is in
``tests/processor/otlp_receiver/test_receiver_tls_auth.py``; the gRPC health service is in
``tests/processor/otlp_receiver/test_processor_grpc.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from driftline.processor.component import (
    AuthenticationError,
    ComponentError,
    PipelineWatcher,
    ServerAuthenticator,
)
from driftline.processor.extensions import bearertokenauth, health_check
from driftline.processor.extensions.bearertokenauth import BearerTokenAuth, BearerTokenAuthConfig
from driftline.processor.extensions.health_check import HealthCheck, HealthCheckConfig
from driftline.processor.service.config import ConfigError, parse_config
from driftline.processor.service.pipeline import build
from driftline.processor.service.registry import default_factories
from tests._collector import (
    LOOPBACK,
    PROTOCOL_GRPC,
    PROTOCOL_HTTP,
    STOP_TIMEOUT_S,
    running_collector,
)

HTTP_TIMEOUT_S = 5.0
# Polling a starting or stopping service: bounded in count, no timing asserted.
POLL_LIMIT = 100
POLL_PAUSE_S = 0.05


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@contextlib.contextmanager
def started(config: HealthCheckConfig) -> Iterator[HealthCheck]:
    extension = health_check.Factory().create(config)
    extension.start()
    try:
        yield extension
    finally:
        extension.shutdown()


# --- health_check ---------------------------------------------------------------------------


def test_health_check_is_503_until_ready_200_while_up_503_once_stopping() -> None:
    with started(HealthCheckConfig(endpoint=f"{LOOPBACK}:0", path="/health")) as extension:
        url = f"http://{LOOPBACK}:{extension.port}/health"
        starting = get(url)
        extension.ready()
        up = get(url)
        extension.not_ready()
        stopping = get(url)

    status, headers, body = starting
    assert (status, headers["Content-Type"]) == (503, "application/json")
    assert json.loads(body) == {"status": "Server not available", "state": "starting"}
    status, _, body = up
    answer = json.loads(body)
    assert (status, answer["status"], answer["state"]) == (200, "Server available", "ready")
    assert answer["upSince"].endswith("+00:00")
    assert answer["uptime"].endswith("s") and float(answer["uptime"][:-1]) >= 0
    status, _, body = stopping
    assert (status, json.loads(body)["state"]) == (503, "stopping")


def test_health_check_other_paths_are_404_and_head_has_no_body() -> None:
    with started(HealthCheckConfig(endpoint=f"{LOOPBACK}:0", path="/health")) as extension:
        extension.ready()
        status, _, body = get(f"http://{LOOPBACK}:{extension.port}/other")
        head = urllib.request.Request(f"http://{LOOPBACK}:{extension.port}/health",
                                      method="HEAD")
        with urllib.request.urlopen(head, timeout=HTTP_TIMEOUT_S) as response:
            head_status, head_body = response.status, response.read()

    assert status == 404
    assert "/health" in json.loads(body)["status"]
    assert (head_status, head_body) == (200, b"")


def test_health_check_stops_listening_at_shutdown() -> None:
    extension = HealthCheck(HealthCheckConfig(endpoint=f"{LOOPBACK}:0"))
    extension.start()
    port = extension.port
    assert extension.endpoints() == [f"{LOOPBACK}:{port} (health_check)"]
    extension.shutdown()
    extension.shutdown()  # idempotent

    assert extension.endpoints() == []
    with pytest.raises(ConnectionRefusedError), socket.create_connection((LOOPBACK, port)):
        pass


def test_health_check_port_in_use_is_a_component_error_naming_the_key() -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        endpoint = f"{LOOPBACK}:{taken.getsockname()[1]}"
        extension = HealthCheck(HealthCheckConfig(endpoint=endpoint))
        with pytest.raises(ComponentError, match=f"cannot listen on {endpoint}.*"
                                                 "extensions::health_check::endpoint"):
            extension.start()


def test_health_check_is_a_pipeline_watcher_with_collector_defaults() -> None:
    extension = health_check.Factory().create(health_check.Factory().default_config())
    assert isinstance(extension, PipelineWatcher)
    assert health_check.Factory().default_config() == HealthCheckConfig(
        endpoint="127.0.0.1:13133", path="/")


def config_document(extensions: dict[str, Any], enabled: list[str]) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"file": {"path": os.devnull}},
        "extensions": extensions,
        "service": {"extensions": enabled,
                    "pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }


def test_health_check_config_problems_name_their_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_document({"health_check": {"endpoint": "13133", "path": "health"}},
                                     ["health_check"]), environ={})

    problems = caught.value.problems
    assert any(p.startswith("extensions::health_check::endpoint: must be 'host:port'")
               for p in problems)
    assert "extensions::health_check::path: must start with '/', e.g. /health, got 'health'" \
        in problems


def test_health_check_starts_first_and_stops_last_in_the_pipeline_graph() -> None:
    config = parse_config(config_document({"health_check": {"endpoint": f"{LOOPBACK}:0"}},
                                          ["health_check"]), environ={})
    pipelines = build(config, default_factories())
    [extension] = [n.component for n in pipelines.nodes() if n.kind == "extension"]
    pipelines.start()
    try:
        url = f"http://{LOOPBACK}:{extension.port}/"
        # What the service does once every component runs (PipelineWatcher).
        extension.ready()
        assert get(url)[0] == 200
    finally:
        pipelines.shutdown()
    assert extension.port is None


def poll_until(url: str, status: int) -> tuple[int, dict[str, Any]]:
    """GET ``url`` until it answers ``status`` (or ``POLL_LIMIT`` tries); the last answer."""
    answer: tuple[int, dict[str, Any]] = (0, {})
    for _ in range(POLL_LIMIT):
        code, _, body = get(url)
        answer = (code, json.loads(body))
        if code == status:
            break
        time.sleep(POLL_PAUSE_S)
    return answer


@pytest.mark.integration
def test_collector_health_check_is_200_while_running_and_503_while_draining(
    tmp_path: Path
) -> None:
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"},
                                             "http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"file": {"path": str(tmp_path / "out.jsonl")}},
        "extensions": {"health_check": {"endpoint": f"{LOOPBACK}:0", "path": "/health"}},
        "service": {"extensions": ["health_check"],
                    "pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }
    with running_collector(config, tmp_path, (PROTOCOL_GRPC, PROTOCOL_HTTP)) as collector:
        line = collector.lines.get(timeout=HTTP_TIMEOUT_S)
        health_url = f"http://{line.split(' listening on ')[1].split(' ')[0]}/health"
        running = poll_until(health_url, 200)
        # Hold an OTLP/HTTP request in flight (half its body sent), so shutdown drains.
        host, port = collector.endpoints[PROTOCOL_HTTP].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=HTTP_TIMEOUT_S) as held:
            held.sendall(b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/x-protobuf\r\nContent-Length: 10\r\n"
                         b"\r\n\x0a\x00")
            collector.process.send_signal(signal.SIGTERM)
            draining = poll_until(health_url, 503)
            held.sendall(b"\x00" * 8)  # let the drain finish
            held.recv(1024)
        # Exit on our SIGTERM: a second one (running_collector's) would cut the drain short.
        collector.process.wait(STOP_TIMEOUT_S)

    assert line.startswith("extension health_check listening on 127.0.0.1:")
    assert running[0] == 200 and running[1]["status"] == "Server available"
    assert draining == (503, {"status": "Server not available", "state": "stopping"})
    assert collector.returncode == 0, collector.stderr()


# --- bearertokenauth ------------------------------------------------------------------------


def test_bearer_token_accepts_the_token_in_any_scheme_case_only() -> None:
    extension = bearertokenauth.Factory().create(BearerTokenAuthConfig(token="abc"))
    extension.start()

    assert isinstance(extension, ServerAuthenticator)
    extension.authenticate({"authorization": "Bearer abc"})
    extension.authenticate({"authorization": "bearer abc"})
    for headers, message in [
        ({}, "missing Authorization header"),
        ({"authorization": "Bearer abd"}, "not valid"),
        ({"authorization": "Bearer abcd"}, "not valid"),
        ({"authorization": "Basic abc"}, "must be 'Bearer <token>'"),
        ({"authorization": "Bearer"}, "must be 'Bearer <token>'"),
    ]:
        with pytest.raises(AuthenticationError, match=message) as caught:
            extension.authenticate(headers)
        assert "abc" not in str(caught.value).replace("abcd", "")


def test_bearer_token_custom_header_and_scheme() -> None:
    extension = BearerTokenAuth(BearerTokenAuthConfig(token="abc", scheme="Token",
                                                      header="X-Api-Key"))
    extension.start()
    extension.authenticate({"x-api-key": "Token abc"})
    with pytest.raises(AuthenticationError, match="missing X-Api-Key header"):
        extension.authenticate({"authorization": "Token abc"})


def test_bearer_token_file_must_hold_a_token_at_start(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    extension = BearerTokenAuth(BearerTokenAuthConfig(filename=str(empty)))
    with pytest.raises(ComponentError, match="is empty; write the token into it"):
        extension.start()


def test_bearer_token_file_that_becomes_empty_keeps_the_previous_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("kept")
    extension = BearerTokenAuth(BearerTokenAuthConfig(filename=str(token_file)))
    extension.start()
    token_file.write_text("")
    stat = token_file.stat()
    os.utime(token_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    extension.authenticate({"authorization": "Bearer kept"})
