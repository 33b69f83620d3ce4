"""The Prometheus exporter: OTLP protobuf in, text format 0.0.4 out over a real socket."""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

import driftline.exporters
from driftline import semconv
from driftline.exporters.prometheus.exporter import (
    Factory,
    PrometheusExporter,
    PrometheusExporterConfig,
)
from driftline.exporters.prometheus_series import series as prometheus
from driftline.exporters.prometheus_series.text import metric_name
from driftline.processor.component import ComponentError
from driftline.processor.service.registry import default_factories

DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
SCOPE = InstrumentationScope(name=semconv.PROCESSOR_SCOPE, version="0.1.0")
SCOPE_LABELS = 'otel_scope_name="driftline.processor.ml_drift",otel_scope_version="0.1.0"'
SERVICE = "churn-api"


def attrs(**values: str | int | float | bool) -> list[KeyValue]:
    """OTLP attributes; keys are semconv constant names (``ML_FEATURE_NAME="age"``)."""
    result = []
    for constant, value in values.items():
        key = getattr(semconv, constant)
        if isinstance(value, bool):
            any_value = AnyValue(bool_value=value)
        elif isinstance(value, int):
            any_value = AnyValue(int_value=value)
        elif isinstance(value, float):
            any_value = AnyValue(double_value=value)
        else:
            any_value = AnyValue(string_value=value)
        result.append(KeyValue(key=key, value=any_value))
    return result


def batch(*metrics: Metric, resource: Resource | None = None) -> list[ResourceMetrics]:
    if resource is None:
        resource = Resource(attributes=attrs(SERVICE_NAME=SERVICE))
    return [
        ResourceMetrics(
            resource=resource, scope_metrics=[ScopeMetrics(scope=SCOPE, metrics=list(metrics))]
        )
    ]


def gauge(name: str, value: float, *, unit: str = "", time_unix_nano: int = 1, **labels: str
          ) -> Metric:
    metric = Metric(name=name, unit=unit, description=f"{name} help")
    metric.gauge.data_points.append(
        NumberDataPoint(as_double=value, time_unix_nano=time_unix_nano, attributes=attrs(**labels))
    )
    return metric


def counter(name: str, value: int, temporality: int, *, unit: str = "{row}") -> Metric:
    metric = Metric(name=name, unit=unit, description="rows predicted")
    metric.sum.is_monotonic = True
    metric.sum.aggregation_temporality = temporality
    metric.sum.data_points.append(NumberDataPoint(as_int=value, time_unix_nano=1))
    return metric


def scrape(exporter: PrometheusExporter, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}{path}", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return response.read().decode("utf-8")


def samples(text: str) -> list[str]:
    """The sample lines of our own metrics (no comments, no exporter self-metrics)."""
    return [
        line
        for line in text.splitlines()
        if line and not line.startswith("#") and not line.startswith("driftline_exporter_")
    ]


@pytest.fixture
def exporter() -> Iterator[PrometheusExporter]:
    instance = Factory.create(PrometheusExporterConfig(endpoint="127.0.0.1:0"))
    instance.start()
    try:
        yield instance
    finally:
        instance.shutdown()


def test_drift_gauge_has_job_instance_and_sanitised_labels(exporter: PrometheusExporter) -> None:
    resource = Resource(
        attributes=attrs(SERVICE_NAME=SERVICE, SERVICE_NAMESPACE="ml", SERVICE_INSTANCE_ID="pod-1")
    )
    score = gauge(
        semconv.ML_DRIFT_SCORE, 0.42, ML_FEATURE_NAME="age", ML_DRIFT_METHOD="wasserstein"
    )
    exporter.consume_metrics(batch(score, resource=resource))

    text = scrape(exporter)

    assert "# HELP ml_drift_score ml.drift.score help\n# TYPE ml_drift_score gauge\n" in text
    assert samples(text) == [
        'ml_drift_score{instance="pod-1",job="ml/churn-api",ml_drift_method="wasserstein",'
        f'ml_feature_name="age",{SCOPE_LABELS}}} 0.42'
    ]


def test_gauge_keeps_last_value_and_ignores_an_older_point(exporter: PrometheusExporter) -> None:
    exporter.consume_metrics(batch(gauge(semconv.ML_WINDOW_ROWS, 100, time_unix_nano=10)))
    exporter.consume_metrics(batch(gauge(semconv.ML_WINDOW_ROWS, 250, time_unix_nano=20)))
    exporter.consume_metrics(batch(gauge(semconv.ML_WINDOW_ROWS, 999, time_unix_nano=15)))

    assert samples(scrape(exporter)) == [f'ml_window_rows{{job="{SERVICE}",{SCOPE_LABELS}}} 250']


def test_delta_monotonic_sum_accumulates_across_calls(exporter: PrometheusExporter) -> None:
    exporter.consume_metrics(batch(counter(semconv.ML_PREDICT_ROWS, 3, DELTA)))
    exporter.consume_metrics(batch(counter(semconv.ML_PREDICT_ROWS, 4, DELTA)))

    text = scrape(exporter)

    assert "# TYPE ml_predict_rows_total counter\n" in text
    assert samples(text) == [f'ml_predict_rows_total{{job="{SERVICE}",{SCOPE_LABELS}}} 7']


def test_cumulative_monotonic_sum_replaces(exporter: PrometheusExporter) -> None:
    exporter.consume_metrics(batch(counter(semconv.ML_PREDICT_ROWS, 10, CUMULATIVE)))
    exporter.consume_metrics(batch(counter(semconv.ML_PREDICT_ROWS, 15, CUMULATIVE)))

    assert samples(scrape(exporter)) == [
        f'ml_predict_rows_total{{job="{SERVICE}",{SCOPE_LABELS}}} 15'
    ]


def test_non_monotonic_sums_cumulative_is_a_gauge_delta_is_dropped(
    exporter: PrometheusExporter,
) -> None:
    level = Metric(name="queue.depth", unit="{item}")
    level.sum.aggregation_temporality = CUMULATIVE
    level.sum.data_points.append(NumberDataPoint(as_int=-2, time_unix_nano=1))
    change = Metric(name="queue.change")
    change.sum.aggregation_temporality = DELTA
    change.sum.data_points.append(NumberDataPoint(as_int=5, time_unix_nano=1))
    exporter.consume_metrics(batch(level, change))

    text = scrape(exporter)

    assert "# TYPE queue_depth gauge\n" in text
    assert samples(text) == [f'queue_depth{{job="{SERVICE}",{SCOPE_LABELS}}} -2']
    assert exporter.dropped_points[prometheus.REASON_DELTA_NON_MONOTONIC_SUM] == 1


def duration_histogram(counts: list[int], total: float) -> Metric:
    metric = Metric(name=semconv.ML_PREDICT_DURATION, unit=semconv.UNIT_SECONDS)
    metric.histogram.aggregation_temporality = DELTA
    metric.histogram.data_points.append(
        HistogramDataPoint(
            count=sum(counts),
            sum=total,
            explicit_bounds=[0.1, 0.5, 1.0],
            bucket_counts=counts,
            time_unix_nano=1,
            attributes=attrs(ML_MODEL_NAME="churn"),
        )
    )
    return metric


def test_explicit_histogram_is_cumulative_and_deltas_add_up(exporter: PrometheusExporter) -> None:
    exporter.consume_metrics(batch(duration_histogram([2, 3, 0, 1], 2.5)))
    exporter.consume_metrics(batch(duration_histogram([1, 0, 4, 0], 3.25)))

    text = scrape(exporter)

    labels = f'job="{SERVICE}",ml_model_name="churn",{SCOPE_LABELS}'
    assert "# TYPE ml_predict_duration_seconds histogram\n" in text
    assert samples(text) == [
        f'ml_predict_duration_seconds_bucket{{{labels},le="0.1"}} 3',
        f'ml_predict_duration_seconds_bucket{{{labels},le="0.5"}} 6',
        f'ml_predict_duration_seconds_bucket{{{labels},le="1"}} 10',
        f'ml_predict_duration_seconds_bucket{{{labels},le="+Inf"}} 11',
        f"ml_predict_duration_seconds_sum{{{labels}}} 5.75",
        f"ml_predict_duration_seconds_count{{{labels}}} 11",
    ]


def test_exponential_histogram_is_a_classic_one_on_powers_of_two(
        exporter: PrometheusExporter) -> None:
    metric = Metric(name=semconv.ML_FEATURE_VALUE, unit=semconv.UNIT_DIMENSIONLESS)
    metric.exponential_histogram.aggregation_temporality = DELTA
    # Scale 0: bucket 1 is (2, 4], bucket 2 is (4, 8]; two deltas add up.
    for counts in ([1, 2], [3, 0]):
        point = ExponentialHistogramDataPoint(count=sum(counts), scale=0, sum=10.0, min=3.0,
                                              max=7.0, attributes=attrs(ML_FEATURE_NAME="age"))
        point.positive.offset = 1
        point.positive.bucket_counts.extend(counts)
        metric.exponential_histogram.data_points.append(point)
        exporter.consume_metrics(batch(metric))
        del metric.exponential_histogram.data_points[:]

    text = scrape(exporter)

    labels = f'job="{SERVICE}",ml_feature_name="age",{SCOPE_LABELS}'
    assert [line for line in samples(text) if line.startswith("ml_feature_value")] == [
        f'ml_feature_value_bucket{{{labels},le="2"}} 0',
        f'ml_feature_value_bucket{{{labels},le="4"}} 4',
        f'ml_feature_value_bucket{{{labels},le="8"}} 6',
        f'ml_feature_value_bucket{{{labels},le="+Inf"}} 6',
        f"ml_feature_value_sum{{{labels}}} 20",
        f"ml_feature_value_count{{{labels}}} 6",
    ]
    assert exporter.dropped_points[prometheus.REASON_EXPONENTIAL_HISTOGRAM] == 0


def test_special_values_and_label_escaping(exporter: PrometheusExporter) -> None:
    exporter.consume_metrics(batch(
        gauge("a", math.nan, ML_FEATURE_NAME='say "hi"\\now\nthen'),
        gauge("b", math.inf),
        gauge("c", -math.inf),
    ))

    assert samples(scrape(exporter)) == [
        f'a{{job="{SERVICE}",ml_feature_name="say \\"hi\\"\\\\now\\nthen",{SCOPE_LABELS}}} NaN',
        f'b{{job="{SERVICE}",{SCOPE_LABELS}}} +Inf',
        f'c{{job="{SERVICE}",{SCOPE_LABELS}}} -Inf',
    ]


def test_namespace_const_labels_and_target_info() -> None:
    config = PrometheusExporterConfig(
        endpoint="127.0.0.1:0", namespace="driftline", const_labels={"env": "prod"}
    )
    exporter = Factory.create(config)
    resource = Resource(attributes=attrs(SERVICE_NAME=SERVICE, SERVICE_VERSION="3"))
    exporter.start()
    try:
        exporter.consume_metrics(batch(gauge(semconv.ML_DRIFT_DETECTED, 1), resource=resource))
        text = scrape(exporter)
    finally:
        exporter.shutdown()

    assert samples(text) == [
        f'driftline_ml_drift_detected{{env="prod",job="{SERVICE}",{SCOPE_LABELS}}} 1',
        f'target_info{{job="{SERVICE}",service_version="3"}} 1',
    ]


def test_type_conflict_drops_the_later_metric(exporter: PrometheusExporter) -> None:
    exporter.consume_metrics(batch(gauge("jobs_total", 5)))
    exporter.consume_metrics(batch(counter("jobs", 9, CUMULATIVE, unit="")))

    assert samples(scrape(exporter)) == [f'jobs_total{{job="{SERVICE}",{SCOPE_LABELS}}} 5']
    assert exporter.dropped_points[prometheus.REASON_TYPE_CONFLICT] == 1


def test_series_expire_when_not_updated() -> None:
    now = [1000.0]
    config = PrometheusExporterConfig(endpoint="127.0.0.1:0", metric_expiration="1m")
    exporter = PrometheusExporter(config, clock=lambda: now[0])
    exporter.consume_metrics(batch(gauge(semconv.ML_DRIFT_SCORE, 0.1, ML_FEATURE_NAME="old")))
    now[0] += 30
    exporter.consume_metrics(batch(gauge(semconv.ML_DRIFT_SCORE, 0.2, ML_FEATURE_NAME="new")))
    now[0] += 45  # "old" is now 75 s old, "new" 45 s

    assert samples(exporter.render()) == [
        f'ml_drift_score{{job="{SERVICE}",ml_feature_name="new",{SCOPE_LABELS}}} 0.2'
    ]


def test_other_paths_are_404(exporter: PrometheusExporter) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        scrape(exporter, "/")
    assert caught.value.code == 404


def test_port_in_use_raises_component_error_naming_the_endpoint(
    exporter: PrometheusExporter,
) -> None:
    endpoint = f"127.0.0.1:{exporter.port}"
    second = Factory.create(PrometheusExporterConfig(endpoint=endpoint))
    with pytest.raises(ComponentError, match=f"'{endpoint}'"):
        second.start()


def test_port_zero_binds_a_free_port(exporter: PrometheusExporter) -> None:
    assert exporter.port > 0
    exporter.shutdown()
    exporter.shutdown()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics", timeout=2)


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        (semconv.ML_PREDICT_DURATION, "s", "histogram", "ml_predict_duration_seconds"),
        ("rpc.latency", "ms", "histogram", "rpc_latency_milliseconds"),
        ("payload.size", "By", "gauge", "payload_size_bytes"),
        ("throughput", "By/s", "gauge", "throughput_bytes_per_second"),
        ("events", "{event}/s", "gauge", "events_per_second"),
        (semconv.ML_DRIFT_SCORE, "1", "gauge", "ml_drift_score"),
        ("cpu.utilization", "1", "histogram", "cpu_utilization"),
        (semconv.ML_PREDICT_ROWS, "{row}", "counter", "ml_predict_rows_total"),
        ("hits", "1", "counter", "hits_total"),
        ("http.duration_seconds", "s", "histogram", "http_duration_seconds"),
        ("io.bytes_total", "By", "counter", "io_bytes_total"),
        ("io.total", "By", "counter", "io_bytes_total"),
        ("9lives/€.x", "", "gauge", "_9lives_x"),
        ("odd", "m3", "gauge", "odd_m3"),
    ],
)
def test_metric_names_follow_the_compatibility_spec(
    name: str, unit: str, kind: str, expected: str
) -> None:
    assert metric_name(name, unit, is_counter=kind == "counter") == expected


def test_attribute_keys_that_sanitise_alike_join_values_in_key_order(
    exporter: PrometheusExporter,
) -> None:
    metric = Metric(name="g")
    metric.gauge.data_points.append(NumberDataPoint(as_int=1, attributes=[
        KeyValue(key="a/b", value=AnyValue(string_value="slash")),
        KeyValue(key="a.b", value=AnyValue(string_value="dot")),
        KeyValue(key="flag", value=AnyValue(bool_value=True)),
    ]))
    exporter.consume_metrics(batch(metric))

    assert samples(scrape(exporter)) == [
        f'g{{a_b="dot;slash",flag="true",job="{SERVICE}",{SCOPE_LABELS}}} 1'
    ]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (PrometheusExporterConfig(endpoint="x"), ["endpoint: must be host:port, got 'x'"]),
        (PrometheusExporterConfig(endpoint="localhost:99999"),
         ["endpoint: must be host:port, got 'localhost:99999'"]),
        (PrometheusExporterConfig(const_labels={"bad-name": "v"}),
         ["const_labels::bad-name: must be a label name matching [a-zA-Z_][a-zA-Z0-9_]* "
          "and not starting with '__'"]),
        (PrometheusExporterConfig(metric_expiration="soon"),
         ["metric_expiration: must be a duration such as '10s', '500ms', '2m', '1h' or a "
          "number of seconds, got 'soon'"]),
        (PrometheusExporterConfig(endpoint="[::1]:9464", const_labels={"env": "prod"}), []),
    ],
)
def test_config_validation(config: PrometheusExporterConfig, expected: list[str]) -> None:
    assert config.validate() == expected


def test_factory_declares_type_config_and_signals() -> None:
    assert Factory.TYPE == "prometheus"
    assert Factory.CONFIG is PrometheusExporterConfig
    assert Factory.SIGNALS == ("metrics",)
    assert Factory().default_config() == PrometheusExporterConfig(
        endpoint="127.0.0.1:9464", namespace="", const_labels={}, metric_expiration="5m",
        add_ratio_suffix=False, reference_profiles="", max_series=50_000,
    )


def test_public_names_are_pinned() -> None:
    assert sorted(driftline.exporters.__all__) == [
        "FileExporter",
        "FileExporterConfig",
        "OtlpJsonError",
        "PrometheusExporter",
        "PrometheusExporterConfig",
        "file",
        "prometheus",
        "read_logs",
        "read_metrics",
        "read_traces",
    ]


def test_the_registry_is_the_only_list_of_exporters() -> None:
    """``exporters.factories()`` listed 2 of the 7 exporters and nothing used it: the
    service's registry is the one list, with every exporter in it (issue 15)."""
    assert not hasattr(driftline.exporters, "factories")
    assert set(default_factories().exporters) >= {
        "prometheus", "prometheusremotewrite", "file", "otlp", "otlphttp", "alertmanager",
        "webhook"}


def test_ratio_suffix_is_opt_in_and_only_for_gauges() -> None:
    def names(config: PrometheusExporterConfig) -> list[str]:
        exporter = PrometheusExporter(config)
        share = gauge(semconv.ML_DRIFT_DATASET_SHARE, 0.25, unit=semconv.UNIT_DIMENSIONLESS)
        hits = counter("hits", 2, CUMULATIVE, unit=semconv.UNIT_DIMENSIONLESS)
        exporter.consume_metrics(batch(share, hits))
        return [line.split("{")[0] for line in samples(exporter.render())]

    assert names(PrometheusExporterConfig()) == ["hits_total", "ml_drift_dataset_share"]
    assert names(PrometheusExporterConfig(add_ratio_suffix=True)) == [
        "hits_total", "ml_drift_dataset_share_ratio"
    ]


def test_series_beyond_max_series_are_dropped_and_counted() -> None:
    exporter = PrometheusExporter(PrometheusExporterConfig(max_series=3))
    for feature in ("a", "b", "c", "d", "e"):
        exporter.consume_metrics(batch(gauge(semconv.ML_DRIFT_SCORE, 0.5,
                                             ML_FEATURE_NAME=feature)))
    exporter.consume_metrics(batch(gauge(semconv.ML_DRIFT_SCORE, 0.7, ML_FEATURE_NAME="a")))

    exposed = [line for line in samples(exporter.render()) if line.startswith("ml_drift")]
    assert [line.split('ml_feature_name="')[1][0] for line in exposed] == ["a", "b", "c"]
    assert exposed[0].endswith(" 0.7")  # a known series still updates
    assert exporter.dropped_points[prometheus.REASON_SERIES_LIMIT] == 2
