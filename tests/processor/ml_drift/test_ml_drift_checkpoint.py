"""The ml_drift checkpoint: a real collector is SIGKILLed mid-window and restarted on the
same SQLite file; the window's ml.window.rows (file exporter output) counts every row sent
exactly once. Rows go as raw OTLP/HTTP protobuf: the response comes after the commit."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path

import numpy as np
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_DELTA,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from driftline import semconv
from driftline.exporters.file.exporter import read_metrics
from driftline.processor.ml_drift.window_store import WindowStore
from driftline.profile import ProfileBuilder, save
from tests._collector import LOOPBACK, PROTOCOL_HTTP, STOP_TIMEOUT_S, spawn
from tests.processor.ml_drift.test_ml_drift import APP, MODEL, _kv

WINDOW_S = 20
NS = 1_000_000_000
# Start only with this much of the window left, so the kill falls inside it.
MIN_LEFT_S = 12
OUTPUT_TIMEOUT_S = 60.0


def rows_request(rows: int, time_ns: int) -> bytes:
    return ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        resource=Resource(attributes=_kv(APP)),
        scope_metrics=[ScopeMetrics(metrics=[Metric(
            name=semconv.ML_PREDICT_ROWS, unit=semconv.UNIT_ROWS,
            sum=Sum(aggregation_temporality=AGGREGATION_TEMPORALITY_DELTA, is_monotonic=True,
                    data_points=[NumberDataPoint(attributes=_kv(MODEL), as_int=rows,
                                                 start_time_unix_nano=time_ns - NS,
                                                 time_unix_nano=time_ns)]))])])]
    ).SerializeToString()


def post(endpoint: str, body: bytes) -> None:
    request = urllib.request.Request(f"http://{endpoint}/v1/metrics", data=body,
                                     headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def config(tmp_path: Path) -> dict:
    profiles = tmp_path / "profiles"
    builder = ProfileBuilder("churn", "3")
    builder.add_column("age", np.random.default_rng(1).normal(40, 10, 2000))
    builder.add_rows(2000)
    save(builder.build(), profiles / "churn.json")
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"ml_drift": {
            "profiles": str(profiles), "window": f"{WINDOW_S}s", "grace": "1s",
            "min_rows": 1, "checkpoint": {"path": str(tmp_path / "state" / "ml.sqlite")}}},
        "exporters": {"file": {"path": str(tmp_path / "out.jsonl"), "flush_interval": 0}},
        "service": {"pipelines": {"metrics": {
            "receivers": ["otlp"], "processors": ["ml_drift"], "exporters": ["file"]}}},
    }


def window_rows(output: Path) -> dict[int, int]:
    """``window start -> ml.window.rows`` from the file exporter's output."""
    rows: dict[int, int] = {}
    if not output.exists():
        return rows
    for request in read_metrics(output):
        for resource_metrics in request.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == semconv.ML_WINDOW_ROWS:
                        for point in metric.gauge.data_points:
                            rows[point.start_time_unix_nano] = \
                                rows.get(point.start_time_unix_nano, 0) + point.as_int
    return rows


def test_sigkill_mid_window_loses_and_doubles_nothing(tmp_path: Path) -> None:
    settings = config(tmp_path)
    window_ns = WINDOW_S * NS
    left_s = (window_ns - time.time_ns() % window_ns) / NS
    if left_s < MIN_LEFT_S:
        time.sleep(left_s + 0.1)
    window_start = time.time_ns() // window_ns * window_ns
    stamp = window_start + NS  # every point belongs to this window

    first = spawn(settings, tmp_path)
    first.wait_for((PROTOCOL_HTTP,))
    for rows in (100, 200, 300):
        post(first.endpoints[PROTOCOL_HTTP], rows_request(rows, stamp))
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(STOP_TIMEOUT_S)

    # The window is still open in the file (an evaluated one is deleted): killed mid-window,
    # and every acknowledged row is there.
    store = WindowStore(tmp_path / "state" / "ml.sqlite")
    [(open_flag, state)] = store.load().windows.values()
    store.close()
    assert (open_flag, state["rows"]) == (0, 600)  # committed before the 200 responses

    second = spawn(settings, tmp_path)
    try:
        second.wait_for((PROTOCOL_HTTP,))
        for rows in (40, 5):
            post(second.endpoints[PROTOCOL_HTTP], rows_request(rows, stamp))
        deadline = time.monotonic() + WINDOW_S + OUTPUT_TIMEOUT_S
        while sum(window_rows(tmp_path / "out.jsonl").values()) < 645 \
                and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        second.process.send_signal(signal.SIGTERM)
        second.process.wait(STOP_TIMEOUT_S)

    # Normally all in the one window; on a very slow start the last posts may arrive after
    # it closed and go to the next one (late points): the total is what must be exact.
    rows = window_rows(tmp_path / "out.jsonl")
    assert sum(rows.values()) == 645, second.stderr()
    assert rows[window_start] >= 600
