"""SIGTERM drains: what the collector accepted before (or while) it stops reaches the exporter.

A real ``driftline collector`` subprocess runs otlp → memory_limiter → batch (60 s timeout,
so nothing leaves on its own) → file; the official SDK OTLP/HTTP exporters send to it;
after SIGTERM the process must exit 0 with every point and span in the file.
"""

from __future__ import annotations

import http.client
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from driftline.exporters.file.exporter import read_metrics, read_traces
from tests._collector import LOOPBACK, PROTOCOL_HTTP, STOP_TIMEOUT_S, spawn

POINTS = 300
SPANS = 40
EXPORT_TIMEOUT_S = 10.0
# Long enough that no batch leaves by timeout while the test runs; only SIGTERM sends.
BATCH_TIMEOUT = "60s"
NEVER_FULL = 1_000_000
UNREACHED_LIMIT_MIB = 1_000_000
READER_INTERVAL_MS = 3_600_000
LOG_WAIT_S = 10.0
# The processor's own metrics (self-telemetry) travel through the metrics pipelines too.
SELF_TELEMETRY_PREFIX = "driftline.processor."


def drain_config(output: Path) -> dict[str, Any]:
    # The usual order: memory_limiter (a limit never reached here) first, then batch.
    pipeline = {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"],
                "exporters": ["file"]}
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"batch": {"timeout": BATCH_TIMEOUT, "send_batch_size": NEVER_FULL},
                       "memory_limiter": {"check_interval": "1s",
                                          "limit_mib": UNREACHED_LIMIT_MIB}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"pipelines": {"metrics": pipeline, "traces": pipeline}},
    }


def send_metrics(base: str) -> None:
    """``POINTS`` counter points (one per attribute set) through the SDK's OTLP/HTTP exporter."""
    exporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=EXPORT_TIMEOUT_S)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=READER_INTERVAL_MS)
    provider = MeterProvider(metric_readers=[reader],
                             resource=Resource.create({"service.name": "drain-test"}))
    counter = provider.get_meter("drain").create_counter("drain.items")
    for i in range(POINTS):
        counter.add(i + 1, {"item": i})
    assert provider.force_flush()
    provider.shutdown()


def send_spans(base: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "drain-test"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=f"{base}/v1/traces", timeout=EXPORT_TIMEOUT_S)))
    tracer = provider.get_tracer("drain")
    for i in range(SPANS):
        with tracer.start_as_current_span(f"span-{i}"):
            pass
    provider.shutdown()


def wait_for_log(log: Path, text: str) -> None:
    deadline = time.monotonic() + LOG_WAIT_S
    while text not in log.read_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged; log:\n{log.read_text()}")
        time.sleep(0.05)


def one_point_request(value: float) -> bytes:
    metric = Metric(name="drain.in_flight", gauge=Gauge(data_points=[
        NumberDataPoint(as_double=value, time_unix_nano=time.time_ns())]))
    return ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        scope_metrics=[ScopeMetrics(metrics=[metric])])]).SerializeToString()


@pytest.mark.integration
def test_sigterm_sends_everything_the_batch_held(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    collector = spawn(drain_config(output), tmp_path)
    try:
        collector.wait_for((PROTOCOL_HTTP,))
        base = f"http://{collector.endpoints[PROTOCOL_HTTP]}"
        send_metrics(base)
        send_spans(base)
        # Everything was accepted (200) and is still held by the batch processor.
        assert output.read_text() == ""

        # A request in flight when SIGTERM arrives: headers and half its body sent.
        body = one_point_request(42.0)
        host, port = collector.endpoints[PROTOCOL_HTTP].rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=EXPORT_TIMEOUT_S)
        connection.putrequest("POST", "/v1/metrics")
        connection.putheader("Content-Type", "application/x-protobuf")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        connection.send(body[: len(body) // 2])

        collector.process.send_signal(signal.SIGTERM)
        wait_for_log(collector.stderr_path, "received SIGTERM")
        connection.send(body[len(body) // 2:])
        response = connection.getresponse()
        assert response.status == 200, response.read()
        connection.close()
        returncode = collector.process.wait(STOP_TIMEOUT_S)
    finally:
        if collector.process.poll() is None:
            collector.process.kill()
            collector.process.wait()
    assert returncode == 0, collector.stderr()

    points = {}
    in_flight = []
    for request in read_metrics(output):
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name.startswith(SELF_TELEMETRY_PREFIX):
                        continue  # the processor's own metrics share the pipeline
                    if metric.name == "drain.in_flight":
                        in_flight.extend(p.as_double for p in metric.gauge.data_points)
                        continue
                    assert metric.name == "drain.items"
                    for point in metric.sum.data_points:
                        [attribute] = point.attributes
                        points[attribute.value.int_value] = point.as_int
    assert points == {i: i + 1 for i in range(POINTS)}
    assert in_flight == [42.0]
    names = sorted(s.name for request in read_traces(output) for rs in request.resource_spans
                   for ss in rs.scope_spans for s in ss.spans)
    assert names == sorted(f"span-{i}" for i in range(SPANS))


@pytest.mark.integration
def test_sigterm_with_nothing_pending_exits_zero(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    collector = spawn(drain_config(output), tmp_path)
    try:
        collector.wait_for((PROTOCOL_HTTP,))
        collector.process.send_signal(signal.SIGTERM)
        returncode = collector.process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        collector.process.kill()
        collector.process.wait()
        raise
    assert returncode == 0, collector.stderr()
    assert "driftline collector stopped" in collector.stderr()
    names = {m.name for request in read_metrics(output) for rm in request.resource_metrics
             for sm in rm.scope_metrics for m in sm.metrics}
    assert all(name.startswith(SELF_TELEMETRY_PREFIX) for name in names), names
    assert read_traces(output) == []


@pytest.mark.integration
def test_a_second_sigterm_during_the_drain_stops_at_once(tmp_path: Path) -> None:
    """The drain waits for a request in flight (up to the receiver's grace); a second
    SIGTERM ends the process with the signal's default action instead of exit 0."""
    output = tmp_path / "out.jsonl"
    collector = spawn(drain_config(output), tmp_path)
    try:
        collector.wait_for((PROTOCOL_HTTP,))
        host, port = collector.endpoints[PROTOCOL_HTTP].rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=EXPORT_TIMEOUT_S)
        connection.putrequest("POST", "/v1/metrics")
        connection.putheader("Content-Type", "application/x-protobuf")
        connection.putheader("Content-Length", "1000")
        connection.endheaders()
        connection.send(b"\x00" * 10)  # the rest never comes: the drain waits for it

        collector.process.send_signal(signal.SIGTERM)
        wait_for_log(collector.stderr_path, "draining:")
        collector.process.send_signal(signal.SIGTERM)
        returncode = collector.process.wait(STOP_TIMEOUT_S)
        connection.close()
    finally:
        if collector.process.poll() is None:
            collector.process.kill()
            collector.process.wait()
    assert returncode == -signal.SIGTERM
    assert "driftline collector stopped" not in collector.stderr()
