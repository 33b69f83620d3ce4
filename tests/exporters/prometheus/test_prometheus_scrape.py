"""A real Prometheus scrapes the exporter and answers queries with our drift gauge."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from driftline import semconv
from driftline.exporters.prometheus.exporter import (
    Factory,
    PrometheusExporter,
    PrometheusExporterConfig,
)

if TYPE_CHECKING:
    from conftest import PrometheusServer

pytestmark = pytest.mark.integration

SERVICE = "churn-api"
QUERY_TIMEOUT_S = 30.0


def resource_metrics(*metrics: Metric) -> list[ResourceMetrics]:
    resource = Resource(
        attributes=[KeyValue(key=semconv.SERVICE_NAME, value=AnyValue(string_value=SERVICE))]
    )
    scope = InstrumentationScope(name=semconv.PROCESSOR_SCOPE)
    return [ResourceMetrics(resource=resource,
                            scope_metrics=[ScopeMetrics(scope=scope, metrics=list(metrics))])]


def drift_score(feature: str, value: float, time_unix_nano: int) -> list[ResourceMetrics]:
    metric = Metric(name=semconv.ML_DRIFT_SCORE, description="drift statistic per feature")
    metric.gauge.data_points.append(
        NumberDataPoint(
            as_double=value,
            time_unix_nano=time_unix_nano,
            attributes=[
                KeyValue(key=semconv.ML_FEATURE_NAME, value=AnyValue(string_value=feature)),
                KeyValue(
                    key=semconv.ML_DRIFT_METHOD,
                    value=AnyValue(string_value=semconv.DRIFT_METHOD_WASSERSTEIN),
                ),
            ],
        )
    )
    return resource_metrics(metric)


def rows_and_latency() -> list[ResourceMetrics]:
    """A delta counter and an explicit-bucket histogram, to check Prometheus parses them too."""
    delta = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    rows = Metric(name=semconv.ML_PREDICT_ROWS, unit=semconv.UNIT_ROWS)
    rows.sum.is_monotonic = True
    rows.sum.aggregation_temporality = delta
    rows.sum.data_points.append(NumberDataPoint(as_int=40, time_unix_nano=1))
    latency = Metric(name=semconv.ML_PREDICT_DURATION, unit=semconv.UNIT_SECONDS)
    latency.histogram.aggregation_temporality = delta
    latency.histogram.data_points.append(
        HistogramDataPoint(count=5, sum=0.9, explicit_bounds=[0.1, 0.5],
                           bucket_counts=[3, 1, 1], time_unix_nano=1)
    )
    return resource_metrics(rows, latency)


@pytest.fixture
def exporter() -> Iterator[PrometheusExporter]:
    instance = Factory.create(PrometheusExporterConfig(endpoint="127.0.0.1:0"))
    instance.start()
    try:
        yield instance
    finally:
        instance.shutdown()


def test_prometheus_scrapes_the_drift_gauge(
    exporter: PrometheusExporter, prometheus_server: Callable[..., PrometheusServer]
) -> None:
    exporter.consume_metrics(drift_score("age", 0.42, time_unix_nano=1))
    exporter.consume_metrics(rows_and_latency())
    exporter.consume_metrics(rows_and_latency())
    server = prometheus_server([f"127.0.0.1:{exporter.port}"])

    result = server.wait_for("ml_drift_score", QUERY_TIMEOUT_S)

    assert len(result) == 1
    labels = result[0]["metric"]
    assert labels["__name__"] == "ml_drift_score"
    assert labels["ml_feature_name"] == "age"
    assert labels["ml_drift_method"] == semconv.DRIFT_METHOD_WASSERSTEIN
    assert labels["job"] == SERVICE  # from service.name, kept by honor_labels
    assert labels["otel_scope_name"] == semconv.PROCESSOR_SCOPE
    assert float(result[0]["value"][1]) == 0.42

    # Prometheus drops a whole scrape it cannot parse, so these prove the other families'
    # text is valid too; the values are the two deltas added up.
    rows = server.wait_for("ml_predict_rows_total", QUERY_TIMEOUT_S)
    assert float(rows[0]["value"][1]) == 80
    buckets = server.wait_for("ml_predict_duration_seconds_bucket", QUERY_TIMEOUT_S)
    by_le = {series["metric"]["le"]: float(series["value"][1]) for series in buckets}
    assert by_le == {"0.1": 6, "0.5": 8, "+Inf": 10}

    # A new window's score replaces the old one in what Prometheus sees.
    exporter.consume_metrics(drift_score("age", 0.73, time_unix_nano=2))
    updated = server.wait_for(
        'ml_drift_score{ml_feature_name="age"}',
        QUERY_TIMEOUT_S,
        predicate=lambda series: bool(series) and float(series[0]["value"][1]) == 0.73,
    )
    assert len(updated) == 1
