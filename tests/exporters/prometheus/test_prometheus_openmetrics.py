"""OpenMetrics with exemplars: a counter and a histogram recorded inside a traced span by the
SDK carry the span's trace ID as an exemplar; a real Prometheus with exemplar storage
scrapes the exporter (it asks for OpenMetrics) and returns the exemplar from its API."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from driftline.exporters.prometheus.exporter import PrometheusExporter, PrometheusExporterConfig
from tests._collector import LOOPBACK, PROMETHEUS_EXPORTER, PROTOCOL_HTTP, running_collector
from tests.conftest import run_prometheus

WAIT_S = 30.0


def _exemplars(prometheus_url: str, query: str) -> list[dict]:
    now = time.time()
    arguments = urllib.parse.urlencode({"query": query, "start": now - 3600, "end": now + 60})
    with urllib.request.urlopen(f"{prometheus_url}/api/v1/query_exemplars?{arguments}",
                                timeout=5) as response:
        return json.load(response)["data"]


def _wait_for_exemplars(prometheus_url: str, query: str) -> list[dict]:
    deadline = time.monotonic() + WAIT_S
    found = _exemplars(prometheus_url, query)
    while not found and time.monotonic() < deadline:
        time.sleep(0.5)
        found = _exemplars(prometheus_url, query)
    return found


@pytest.mark.integration
def test_exemplars_reach_prometheus_through_openmetrics(tmp_path: Path) -> None:
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"prometheus": {"endpoint": f"{LOOPBACK}:0",
                                     "enable_open_metrics": True}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                              "exporters": ["prometheus"]}},
                    "telemetry": {"metrics": {"level": "none"}}},
    }
    (tmp_path / "collector").mkdir()
    (tmp_path / "prometheus").mkdir()
    with running_collector(config, tmp_path / "collector") as collector:
        exposition = collector.endpoint_of(PROMETHEUS_EXPORTER)
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(
            endpoint=f"http://{collector.endpoints[PROTOCOL_HTTP]}/v1/metrics"),
            export_interval_millis=60_000)
        meters = MeterProvider(
            resource=Resource.create({"service.name": "shop"}), metric_readers=[reader],
            views=[View(instrument_name="checkout.duration",
                        aggregation=ExplicitBucketHistogramAggregation((0.1, 1.0)))])
        tracer = TracerProvider().get_tracer("openmetrics-test")
        meter = meters.get_meter("openmetrics-test")
        orders = meter.create_counter("orders")
        latency = meter.create_histogram("checkout.duration", unit="s")
        with tracer.start_as_current_span("checkout") as span:
            orders.add(2, {"region": "eu"})
            latency.record(0.4)
            trace_id = format(span.get_span_context().trace_id, "032x")
        meters.shutdown()
        request = urllib.request.Request(f"http://{exposition}/metrics",
                                         headers={"Accept": "application/openmetrics-text"})
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read().decode()
            content_type = response.headers["Content-Type"]
        with run_prometheus([exposition], tmp_path / "prometheus",
                            scrape_interval_s=1,
                            extra_args=["--enable-feature=exemplar-storage"]) as prometheus:
            counter = _wait_for_exemplars(prometheus.url, "orders_total")
            buckets = _wait_for_exemplars(prometheus.url, "checkout_duration_seconds_bucket")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert "# TYPE orders counter" in body and body.rstrip().endswith("# EOF")
    assert counter[0]["exemplars"][0]["labels"]["trace_id"] == trace_id
    assert float(counter[0]["exemplars"][0]["value"]) == 2
    bucket = next(b for b in buckets if b["seriesLabels"]["le"] == "1")
    assert bucket["exemplars"][0]["labels"]["trace_id"] == trace_id
    assert float(bucket["exemplars"][0]["value"]) == pytest.approx(0.4)


def _scrape(port: int, accept: str | None) -> tuple[str, str]:
    headers = {"Accept": accept} if accept else {}
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.headers["Content-Type"], response.read().decode()


@pytest.mark.parametrize("enabled", [True, False])
def test_openmetrics_only_when_enabled_and_asked_for(enabled: bool) -> None:
    exporter = PrometheusExporter(PrometheusExporterConfig(
        endpoint=f"{LOOPBACK}:0", enable_open_metrics=enabled))
    exporter.start()
    try:
        plain_type, plain = _scrape(exporter.port, None)
        asked_type, asked = _scrape(exporter.port, "application/openmetrics-text; "
                                    "version=1.0.0,text/plain;version=0.0.4;q=0.5")
    finally:
        exporter.shutdown()
    assert plain_type.startswith("text/plain") and "# EOF" not in plain
    assert asked_type.startswith("application/openmetrics-text") == enabled
    assert asked.rstrip().endswith("# EOF") == enabled
