"""SIGTERM under overload (issue 14, finding 4): with memory-heavy overload the drain took
over a minute, because flooding clients kept their kept-alive connections busy.

The bound is stated in work, not in seconds: once draining, each connection serves at most
the one request whose bytes had arrived, then closes, so the drain finishes what was in
flight however long the flood goes on, and the receiver's grace (``stop(grace_s)``) is not
needed to cut it short. A wall-clock bound (it was 10 s) failed on a loaded machine: the
drain is CPU work (six 2 000-point requests in flight, then the components' shutdown; 2.5 to
3 s at load 6 on 2 cores), which load 16 stretches past any fixed number of seconds.
"""

from __future__ import annotations

import collections
import http.client
import logging
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_DELTA,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Metric,
    ResourceMetrics,
    ScopeMetrics,
)

from driftline import semconv
from driftline.processor.otlp_receiver import http_server
from tests._collector import LOOPBACK, PROTOCOL_HTTP, spawn

pytestmark = pytest.mark.integration

SENDERS = 6
POINTS_PER_REQUEST = 2_000
POLL_S = 0.05
HTTP_TIMEOUT_S = 30.0
MEMORY_LIMIT_MIB = 256
# Answers each flooding connection gets before the stop, so that all of them are busy.
ANSWERS_BEFORE_STOP = 3
# Not a bound under test: how long a broken drain may take before the test gives up on it
# (a stalled machine must not turn into a hung suite).
HANG_GUARD_S = 120.0


def _request(sender: int) -> bytes:
    now = time.time_ns()
    points = []
    for at in range(POINTS_PER_REQUEST):
        point = ExponentialHistogramDataPoint(
            attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in {
                semconv.ML_MODEL_NAME: f"flood-{sender}", semconv.ML_MODEL_VERSION: "1",
                semconv.ML_OPERATION: "predict",
                semconv.ML_FEATURE_NAME: f"f{at % 50}", "pad": "x" * 200}.items()],
            time_unix_nano=now, count=100, scale=3, zero_count=0)
        point.positive.offset = at % 40
        point.positive.bucket_counts.extend([1] * 100)
        points.append(point)
    metric = Metric(name=semconv.ML_FEATURE_VALUE, exponential_histogram=ExponentialHistogram(
        data_points=points, aggregation_temporality=AGGREGATION_TEMPORALITY_DELTA))
    return ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        scope_metrics=[ScopeMetrics(metrics=[metric])])]).SerializeToString()


def _flood(endpoint: str, body: bytes, stop: threading.Event, statuses: list[int]) -> None:
    host, port = endpoint.rsplit(":", 1)
    while not stop.is_set():
        connection = http.client.HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT_S)
        try:
            while not stop.is_set():
                connection.request("POST", "/v1/metrics", body,
                                   {"Content-Type": "application/x-protobuf"})
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)  # the collector is stopping: connections are refused
        finally:
            connection.close()


class _CountingReceiver:
    """Counts the exports each connection (one thread each) began after the server started
    stopping: the drain's work."""

    signals = ("metrics",)

    def __init__(self) -> None:
        self.server: http_server.HttpServer | None = None
        self.lock = threading.Lock()
        self.answered: collections.Counter[threading.Thread] = collections.Counter()
        self.while_stopping: collections.Counter[threading.Thread] = collections.Counter()
        self.busy = threading.Condition(self.lock)
        # The next export waits, in flight, until the server stops: the stop then always
        # falls inside the flood (on a loaded machine it could land between requests).
        self.hold_next = False
        self.holding = threading.Event()

    def export(self, signal: Any, request: Any) -> ExportMetricsServiceResponse:
        assert self.server is not None
        with self.lock:
            hold, self.hold_next = self.hold_next, False
        if hold:
            self.holding.set()
            self.server.stopping.wait(HANG_GUARD_S)
        with self.lock:
            connection = threading.current_thread()
            if self.server.stopping.is_set():
                self.while_stopping[connection] += 1
            self.answered[connection] += 1
            self.busy.notify_all()
        return ExportMetricsServiceResponse()

    def count_rejected(self) -> None:
        raise AssertionError("the flood's requests are valid")

    def count_unauthenticated(self) -> None:
        raise AssertionError("no authenticator is configured")


def test_a_draining_server_serves_each_flooding_connection_at_most_one_more_request(
        caplog: pytest.LogCaptureFixture) -> None:
    """The mechanism, counted in process: while six kept-alive connections flood it, the
    server stops; each connection gets at most one answer after that, and every connection
    has closed before the grace (a hang guard here) would cut it short."""
    receiver = _CountingReceiver()
    server = http_server.make_server(f"{LOOPBACK}:0", receiver, 4 << 20)
    receiver.server = server
    serving = threading.Thread(target=server.serve_forever,
                               kwargs={"poll_interval": http_server.HTTP_POLL_INTERVAL_S},
                               daemon=True)
    serving.start()
    endpoint = f"{LOOPBACK}:{server.server_address[1]}"
    body = ExportMetricsServiceRequest().SerializeToString()
    stop = threading.Event()
    statuses: list[int] = []
    threads = [threading.Thread(target=_flood, args=(endpoint, body, stop, statuses),
                                daemon=True) for _ in range(SENDERS)]
    try:
        for thread in threads:
            thread.start()
        with receiver.busy:
            assert receiver.busy.wait_for(
                lambda: len(receiver.answered) >= SENDERS and
                min(receiver.answered.values()) >= ANSWERS_BEFORE_STOP, HANG_GUARD_S), \
                dict(receiver.answered)
            receiver.hold_next = True
        assert receiver.holding.wait(HANG_GUARD_S)
        with caplog.at_level(logging.WARNING, logger=http_server.__name__):
            server.stop(HANG_GUARD_S)
    finally:
        stop.set()
        for thread in threads:
            thread.join(HTTP_TIMEOUT_S)
    assert not [r for r in caplog.records if "still busy" in r.getMessage()]
    assert receiver.while_stopping, "the flood was not going on when the server stopped"
    assert max(receiver.while_stopping.values()) == 1, dict(receiver.while_stopping)
    assert set(statuses) == {200}


def test_sigterm_drains_while_the_flood_goes_on(tmp_path: Path) -> None:
    """End to end with the default config's ``memory_limiter`` shape: the collector flooded
    by six senders exits 0 after SIGTERM while the flood goes on, and says it drained."""
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {
            "memory_limiter": {"check_interval": "0.2s", "limit_mib": MEMORY_LIMIT_MIB,
                               "spike_limit_mib": MEMORY_LIMIT_MIB // 5},
            "ml_drift": {"profiles": str(tmp_path), "window": "2s", "grace": "0.2s",
                         "checkpoint": {"path": str(tmp_path / "ml_drift.sqlite")}},
        },
        "exporters": {"prometheus": {"endpoint": f"{LOOPBACK}:0"},
                      "file": {"path": str(tmp_path / "metrics.jsonl")}},
        "service": {"pipelines": {"metrics": {
            "receivers": ["otlp"], "processors": ["memory_limiter", "ml_drift"],
            "exporters": ["prometheus", "file"]}}},
    }
    collector = spawn(config, tmp_path)
    stop = threading.Event()
    statuses: list[int] = []
    threads: list[threading.Thread] = []
    try:
        collector.wait_for((PROTOCOL_HTTP,))
        endpoint = collector.endpoints[PROTOCOL_HTTP]
        threads = [threading.Thread(target=_flood, args=(endpoint, _request(n), stop, statuses),
                                    daemon=True) for n in range(SENDERS)]
        for thread in threads:
            thread.start()
        # The flood is on once every sender could have had an answer (not after a fixed
        # 4 s: at load 13 no 2 000-point request had been answered by then).
        deadline = time.monotonic() + HANG_GUARD_S
        while len(statuses) < SENDERS and time.monotonic() < deadline:
            time.sleep(POLL_S)
        assert len(statuses) >= SENDERS, f"the flood got {len(statuses)} answers"
        collector.process.send_signal(signal.SIGTERM)
        try:
            returncode = collector.process.wait(HANG_GUARD_S)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"no exit {HANG_GUARD_S}s after SIGTERM under overload; "
                                 f"log:\n{collector.stderr()[-3000:]}") from exc
    finally:
        stop.set()
        for thread in threads:
            thread.join(HTTP_TIMEOUT_S)
        if collector.process.poll() is None:
            collector.process.kill()
            collector.process.wait()
    assert returncode == 0, collector.stderr()[-3000:]
    assert "drained in" in collector.stderr()
    assert set(statuses) <= {200, 429, 503}, sorted(set(statuses))
