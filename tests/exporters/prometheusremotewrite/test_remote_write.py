"""The ``prometheusremotewrite`` exporter against a real Prometheus started with
``--web.enable-remote-write-receiver``: metrics sent by the SDK's OTLP exporter to a real
collector are pushed to Prometheus and read back with PromQL."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cramjam
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from driftline.exporters.prometheus_series.series import Sample
from driftline.exporters.prometheusremotewrite.exporter import (
    RemoteWriteExporter,
    RemoteWriteExporterConfig,
    write_request,
)
from driftline.exporters.prometheusremotewrite.proto import write_request_class
from tests._collector import PROTOCOL_HTTP, running_collector
from tests.conftest import LOOPBACK, run_prometheus


@pytest.mark.integration
def test_metrics_arrive_in_prometheus_by_remote_write(tmp_path: Path) -> None:
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "collector").mkdir()
    with run_prometheus([], tmp_path / "prometheus",
                        extra_args=["--web.enable-remote-write-receiver"]) as prometheus:
        config = {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
            "exporters": {"prometheusremotewrite": {
                "endpoint": f"{prometheus.url}/api/v1/write",
                "retry_on_failure": {"initial_interval": "200ms"}}},
            "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                                  "exporters": ["prometheusremotewrite"]}},
                        "telemetry": {"metrics": {"level": "none"}}},
        }
        with running_collector(config, tmp_path / "collector") as collector:
            reader = PeriodicExportingMetricReader(OTLPMetricExporter(
                endpoint=f"http://{collector.endpoints[PROTOCOL_HTTP]}/v1/metrics"),
                export_interval_millis=60_000)
            provider = MeterProvider(
                resource=Resource.create({"service.name": "shop"}), metric_readers=[reader],
                views=[View(instrument_name="checkout.duration",
                            aggregation=ExplicitBucketHistogramAggregation((0.1, 0.5, 1.0)))])
            meter = provider.get_meter("remote-write-test")
            orders = meter.create_counter("orders", unit="{order}")
            latency = meter.create_histogram("checkout.duration", unit="s")
            orders.add(3, {"region": "eu"})
            orders.add(5, {"region": "us"})
            for seconds in (0.02, 0.3, 0.3, 4.0):
                latency.record(seconds)
            provider.shutdown()  # one export
            eu = prometheus.wait_for('orders_total{region="eu",job="shop"}')
            us = prometheus.wait_for('orders_total{region="us"}')
            count = prometheus.wait_for("checkout_duration_seconds_count")
            below_tenth = prometheus.wait_for('checkout_duration_seconds_bucket{le="0.1"}')
            below_half = prometheus.wait_for('checkout_duration_seconds_bucket{le="0.5"}')
            total = prometheus.wait_for("checkout_duration_seconds_sum")
    assert float(eu[0]["value"][1]) == 3
    assert float(us[0]["value"][1]) == 5
    assert float(count[0]["value"][1]) == 4
    assert float(below_tenth[0]["value"][1]) == 1
    assert float(below_half[0]["value"][1]) == 3
    assert float(total[0]["value"][1]) == pytest.approx(4.62)
    assert eu[0]["metric"]["otel_scope_name"] == "remote-write-test"


def test_write_request_is_snappy_protobuf_with_sorted_labels() -> None:
    sample = Sample("orders_total", (("region", "eu"), ("job", "shop")), 3.0,
                    1_700_000_000_123_456_789)
    untimed = Sample("target_info", (("job", "shop"),), 1.0, 0)
    request = write_request_class().FromString(bytes(cramjam.snappy.decompress_raw(
        write_request([sample, untimed], now_ns=1_800_000_000_000_000_000))))
    series = request.timeseries[0]
    assert [(label.name, label.value) for label in series.labels] == [
        ("__name__", "orders_total"), ("job", "shop"), ("region", "eu")]
    assert (series.samples[0].value, series.samples[0].timestamp) == (3.0, 1_700_000_000_123)
    assert request.timeseries[1].samples[0].timestamp == 1_800_000_000_000


def _requests_total(value: int) -> list[ResourceMetrics]:
    """One delta point of the monotonic sum ``requests`` (exposed as ``requests_total``)."""
    point = NumberDataPoint(as_int=value, time_unix_nano=time.time_ns())
    metric = Metric(name="requests", sum=Sum(
        data_points=[point], is_monotonic=True,
        aggregation_temporality=AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA))
    return [ResourceMetrics(scope_metrics=[ScopeMetrics(metrics=[metric])])]


def test_batches_the_full_queue_refused_are_counted_once_in_the_next_request() -> None:
    """The backend holds the first request while three more batches arrive at a queue of
    one: none is refused upstream (its deltas are in the state; a retry would add them
    twice), and the next request carries their sum once."""
    received: list[float] = []
    first_held = threading.Event()
    release = threading.Event()

    class Backend(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = write_request_class().FromString(
                bytes(cramjam.snappy.decompress_raw(body)))
            received.extend(series.samples[0].value for series in request.timeseries
                            if ("__name__", "requests_total") in
                            [(label.name, label.value) for label in series.labels])
            first_held.set()
            release.wait(10)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = RemoteWriteExporterConfig(endpoint=f"http://{LOOPBACK}:{server.server_port}/")
    config.sending_queue.num_consumers = 1
    config.sending_queue.queue_size = 1
    exporter = RemoteWriteExporter("prometheusremotewrite", config)
    exporter.start()
    try:
        exporter.consume_metrics(_requests_total(1))
        assert first_held.wait(5)
        for value in (2, 4):  # the queue is full: kept for the next request
            exporter.consume_metrics(_requests_total(value))
        release.set()
        deadline = time.monotonic() + 5
        while exporter.stats().queue_size and time.monotonic() < deadline:
            time.sleep(0.02)
        exporter.consume_metrics(_requests_total(8))
    finally:
        exporter.shutdown()
        server.shutdown()
    assert received == [1.0, 15.0]
