"""SIGTERM under overload (issue 14, finding 4): with memory-heavy overload the drain took
over a minute. With the default config's ``memory_limiter`` shape, a collector flooded by
concurrent senders still drains and exits 0 within ``STOP_TIMEOUT_S`` of SIGTERM while the
flood goes on."""

from __future__ import annotations

import http.client
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
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
from tests._collector import LOOPBACK, PROTOCOL_HTTP, STOP_TIMEOUT_S, spawn

pytestmark = pytest.mark.integration

SENDERS = 6
POINTS_PER_REQUEST = 2_000
FLOOD_S = 4.0
HTTP_TIMEOUT_S = 30.0
MEMORY_LIMIT_MIB = 256


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


def test_sigterm_drains_within_the_bound_while_the_flood_goes_on(tmp_path: Path) -> None:
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
        stop.wait(FLOOD_S)
        assert statuses, "the flood never got an answer"
        collector.process.send_signal(signal.SIGTERM)
        try:
            returncode = collector.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"no exit within {STOP_TIMEOUT_S}s of SIGTERM under "
                                 f"overload; log:\n{collector.stderr()[-3000:]}") from exc
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
