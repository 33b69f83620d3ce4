"""The processor's own metrics (``processor/self_telemetry.py``) flow through its pipelines.

The SDK's ``OTLPMetricExporter`` sends a known number of requests; the processor must then
report exactly that many accepted requests for its receiver, in its file output (in process)
and in a real Prometheus scraping a real ``driftline collector`` subprocess.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric
from opentelemetry.sdk.metrics.export import MetricExportResult

from driftline import semconv
from driftline.exporters.file.exporter import read_metrics
from driftline.processor.service.config import parse_config
from driftline.processor.service.pipeline import build
from driftline.processor.service.self_telemetry import (
    LEVEL_NONE,
    SelfTelemetry,
    StatsSource,
    TelemetrySettings,
    build_metrics,
    is_gauge_field,
    numeric_fields,
)
from tests._collector import PROMETHEUS_EXPORTER, PROTOCOL_GRPC, running_collector
from tests.processor.otlp_receiver.test_processor_grpc import sdk_metrics, write_profile

if TYPE_CHECKING:
    from conftest import PrometheusServer

LOOPBACK = "127.0.0.1"
EXPORT_TIMEOUT_S = 5.0
SENT_REQUESTS = 7
# The processor reports every second here; Prometheus scrapes every second.
PROMETHEUS_TIMEOUT_S = 30.0
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A stats() shape with levels as well as counts (as a batch processor's)."""

    sent_batches: int
    queue_size: int
    items_queued: int
    last_evaluation_s: float
    healthy: bool


@dataclass(frozen=True, slots=True)
class RequestStats:
    """A stats() shape of counts only (as the receiver's)."""

    accepted_requests: int
    refused_requests: int


class Queue:
    def stats(self) -> QueueStats:
        return QueueStats(sent_batches=3, queue_size=12, items_queued=40,
                          last_evaluation_s=0.25, healthy=True)


def attrs(point: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in point.attributes}


def metrics_by_name(resource_metrics: Any) -> dict[str, Metric]:
    return {m.name: m for s in resource_metrics.scope_metrics for m in s.metrics}


# --- the naming rule and the OTLP shape ------------------------------------------------------


@pytest.mark.parametrize(("field", "gauge"), [
    ("queue_size", True), ("items_queued", True), ("current_bytes", True),
    ("last_evaluation_s", True), ("memory_limit_bytes", True),
    ("accepted_requests", False), ("evaluated_windows", False), ("sent_items", False),
    ("size_changes", False),
])
def test_naming_rule_decides_gauge_or_counter(field: str, gauge: bool) -> None:
    assert is_gauge_field(field) is gauge


def test_stats_become_cumulative_sums_and_gauges_with_component_attributes() -> None:
    receiver = StatsSource("receiver", "otlp", "", None)
    queue_source = StatsSource("processor", "batch", "metrics/drift", None)
    samples = [(receiver, numeric_fields(RequestStats(5, 2))),
               (queue_source, numeric_fields(Queue().stats()))]

    resource_metrics = build_metrics(samples, start_time_unix_nano=100, time_unix_nano=200)

    resource = {kv.key: kv.value.string_value for kv in resource_metrics.resource.attributes}
    assert resource == {semconv.SERVICE_NAME: semconv.PROCESSOR_SERVICE_NAME}
    [scope] = resource_metrics.scope_metrics
    assert scope.scope.name == semconv.PROCESSOR_SELF_TELEMETRY_SCOPE
    metrics = metrics_by_name(resource_metrics)
    assert set(metrics) == {f"driftline.processor.{name}" for name in (
        "accepted_requests", "refused_requests", "sent_batches", "queue_size",
        "items_queued", "last_evaluation_s")}  # not the bool
    accepted = metrics["driftline.processor.accepted_requests"]
    assert accepted.WhichOneof("data") == "sum"
    assert accepted.sum.is_monotonic
    assert accepted.sum.aggregation_temporality == CUMULATIVE
    [point] = accepted.sum.data_points
    assert (point.as_int, point.start_time_unix_nano, point.time_unix_nano) == (5, 100, 200)
    assert attrs(point) == {semconv.DRIFTLINE_COMPONENT_KIND: "receiver",
                            semconv.DRIFTLINE_COMPONENT_ID: "otlp"}
    size = metrics["driftline.processor.queue_size"]
    assert size.WhichOneof("data") == "gauge"
    [size_point] = size.gauge.data_points
    assert size_point.as_int == 12
    assert attrs(size_point) == {semconv.DRIFTLINE_COMPONENT_KIND: "processor",
                                 semconv.DRIFTLINE_COMPONENT_ID: "batch",
                                 semconv.DRIFTLINE_PIPELINE: "metrics/drift"}
    last = metrics["driftline.processor.last_evaluation_s"]
    assert last.gauge.data_points[0].as_double == 0.25


def test_a_failing_stats_is_skipped_and_the_others_still_reported(tmp_path: Path) -> None:
    class Broken:
        def stats(self) -> RequestStats:
            raise RuntimeError("lock poisoned")

    config = parse_config({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"file": {"path": str(tmp_path / "out.jsonl"), "flush_interval": 0}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    })
    pipelines = build(config, telemetry=TelemetrySettings(LEVEL_NONE))
    pipelines.start()
    try:
        [exporter] = [n.component for n in pipelines.nodes() if n.kind == "exporter"]
        telemetry = SelfTelemetry([StatsSource("processor", "broken", "metrics", Broken()),
                                   StatsSource("processor", "queue", "metrics", Queue())],
                                  [exporter])
        telemetry.collect()
    finally:
        pipelines.shutdown()

    assert (telemetry.collections, telemetry.failures) == (1, 1)
    [request] = read_metrics(tmp_path / "out.jsonl")
    names = set(metrics_by_name(request.resource_metrics[0]))
    assert "driftline.processor.sent_batches" in names
    assert pipelines.self_telemetry is None  # level none: no thread was started


# --- in process: built from a config, fed by the SDK exporter ------------------------------


def test_receiver_accepted_requests_equal_what_the_sdk_sent(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    write_profile(profiles, rng)
    out = tmp_path / "out.jsonl"
    config = parse_config({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"ml_drift": {"profiles": str(profiles), "window": "1h"}},
        "exporters": {"file": {"path": str(out), "flush_interval": 0}},
        "service": {"pipelines": {"metrics/drift": {
            "receivers": ["otlp"], "processors": ["ml_drift"], "exporters": ["file"]}}},
    })
    pipelines = build(config, telemetry=TelemetrySettings(interval_s=0.05))
    pipelines.start()
    try:
        [receiver] = [n.component for n in pipelines.nodes() if n.kind == "receiver"]
        exporter = OTLPMetricExporter(endpoint=f"{LOOPBACK}:{receiver.port}", insecure=True,
                                      timeout=EXPORT_TIMEOUT_S)
        for _ in range(SENT_REQUESTS):
            data = sdk_metrics({"age": rng.normal(40, 10, 50)}, time.time_ns())
            assert exporter.export(data) == MetricExportResult.SUCCESS
        exporter.shutdown()
        time.sleep(0.2)  # a few periodic collections; the final one comes with shutdown
    finally:
        pipelines.shutdown()

    own = [rm for request in read_metrics(out) for rm in request.resource_metrics
           if rm.scope_metrics[0].scope.name == semconv.PROCESSOR_SELF_TELEMETRY_SCOPE]
    assert len(own) >= 2  # periodic collections plus the final one
    final = metrics_by_name(own[-1])
    [accepted] = final["driftline.processor.accepted_requests"].sum.data_points
    assert accepted.as_int == SENT_REQUESTS  # its own metrics never pass the receiver
    assert attrs(accepted) == {semconv.DRIFTLINE_COMPONENT_KIND: "receiver",
                               semconv.DRIFTLINE_COMPONENT_ID: "otlp"}
    [late] = final["driftline.processor.late_points"].sum.data_points
    assert attrs(late)[semconv.DRIFTLINE_PIPELINE] == "metrics/drift"
    assert attrs(late)[semconv.DRIFTLINE_COMPONENT_ID] == "ml_drift"
    assert late.as_int == 0
    # Counters are cumulative from one start time, so each collection is >= the one before.
    counts = [metrics_by_name(rm)["driftline.processor.accepted_requests"]
              .sum.data_points[0].as_int for rm in own]
    assert counts == sorted(counts)
    assert len({metrics_by_name(rm)["driftline.processor.accepted_requests"]
                .sum.data_points[0].start_time_unix_nano for rm in own}) == 1


def file_config(tmp_path: Path, metrics: dict[str, Any]) -> Any:
    return parse_config({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"file": {"path": str(tmp_path / "out.jsonl"), "flush_interval": 0}},
        "service": {"telemetry": {"metrics": metrics},
                    "pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    })


def own_metrics(path: Path) -> list[Any]:
    return [rm for request in read_metrics(path) for rm in request.resource_metrics
            if rm.scope_metrics[0].scope.name == semconv.PROCESSOR_SELF_TELEMETRY_SCOPE]


def test_yaml_interval_sets_how_often_the_processor_reports(tmp_path: Path) -> None:
    config = file_config(tmp_path, {"level": "detailed", "interval": "100ms"})
    assert TelemetrySettings.of(config) == TelemetrySettings("detailed", 0.1)
    pipelines = build(config)
    pipelines.start()
    try:
        assert pipelines.self_telemetry is not None
        deadline = time.monotonic() + 10
        while pipelines.self_telemetry.collections < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pipelines.shutdown()
    assert len(own_metrics(tmp_path / "out.jsonl")) >= 4  # three periodic, one final


def test_yaml_level_none_turns_it_off(tmp_path: Path) -> None:
    pipelines = build(file_config(tmp_path, {"level": "none", "interval": "100ms"}))
    pipelines.start()
    try:
        assert pipelines.self_telemetry is None
        time.sleep(0.3)
    finally:
        pipelines.shutdown()
    path = tmp_path / "out.jsonl"
    assert not path.exists() or own_metrics(path) == []


# --- end to end: a real collector subprocess and a real Prometheus --------------------------


@pytest.mark.integration
def test_prometheus_sees_the_processor_count_exactly_what_was_sent(
        tmp_path: Path, prometheus_server: Callable[..., PrometheusServer]) -> None:
    rng = np.random.default_rng(9)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    write_profile(profiles, rng)
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"ml_drift": {"profiles": str(profiles), "window": "1h"}},
        "exporters": {"prometheus": {"endpoint": f"{LOOPBACK}:0"}},
        "service": {"telemetry": {"metrics": {"level": "basic", "interval": "1s"}},
                    "pipelines": {"metrics": {"receivers": ["otlp"], "processors": ["ml_drift"],
                                              "exporters": ["prometheus"]}}},
    }
    with running_collector(config, tmp_path, (PROTOCOL_GRPC,)) as collector:
        scrape_target = collector.endpoint_of(PROMETHEUS_EXPORTER)
        exporter = OTLPMetricExporter(endpoint=collector.endpoints[PROTOCOL_GRPC],
                                      insecure=True, timeout=EXPORT_TIMEOUT_S)
        sent_points = 0
        for _ in range(SENT_REQUESTS):
            data = sdk_metrics({"age": rng.normal(40, 10, 50)}, time.time_ns())
            sent_points += sum(len(m.data.data_points) for rm in data.resource_metrics
                               for sm in rm.scope_metrics for m in sm.metrics)
            assert exporter.export(data) == MetricExportResult.SUCCESS
        exporter.shutdown()
        server = prometheus_server([scrape_target])

        server.wait_for(
            'driftline_processor_accepted_items_total{driftline_component_kind="receiver"}',
            PROMETHEUS_TIMEOUT_S,
            predicate=lambda r: bool(r) and float(r[0]["value"][1]) == sent_points)

        accepted = server.wait_for(
            'driftline_processor_accepted_requests_total{driftline_component_kind="receiver"}',
            PROMETHEUS_TIMEOUT_S,
            predicate=lambda r: bool(r) and float(r[0]["value"][1]) == SENT_REQUESTS)
        windows = server.wait_for("driftline_processor_evaluated_windows_total",
                                  PROMETHEUS_TIMEOUT_S)

    assert collector.returncode == 0, collector.stderr()
    [series] = accepted
    labels = series["metric"]
    assert labels["job"] == semconv.PROCESSOR_SERVICE_NAME
    assert labels["driftline_component_id"] == "otlp"
    assert labels["otel_scope_name"] == semconv.PROCESSOR_SELF_TELEMETRY_SCOPE
    [window_series] = windows
    assert window_series["metric"]["driftline_pipeline"] == "metrics"
    assert window_series["metric"]["driftline_component_id"] == "ml_drift"
    assert float(window_series["value"][1]) == 0  # a 1 h window has not closed yet
