"""End to end with the real SDK: an app with its own explicit-bucket View exports
``ml.feature.value`` with cumulative temporality through the OTLP/HTTP exporter to a real
collector; ml_drift turns the cumulative points into deltas and compares them with the
profile on the explicit bounds."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource as SdkResource

from driftline import semconv
from driftline.profile import save
from tests._collector import LOOPBACK, PROTOCOL_HTTP, processor_gauges, running_collector
from tests.processor.ml_drift.test_ml_drift import APP, MODEL, reference
from tests.processor.ml_drift.test_ml_drift_temporality import BOUNDS

ROWS_PER_EXPORT = 1000
EXPORTS = 2
WAIT_S = 30.0
NEVER_MS = 3_600_000  # the test flushes by hand


def verdicts(path: Path) -> tuple[int, dict[tuple[str, str], list[float]]]:
    """Total ml.window.rows and every (feature, method) -> detected values in the file."""
    rows, detected = 0, {}
    for name, attrs, point in processor_gauges(path):
        if name == semconv.ML_WINDOW_ROWS:
            rows += point.as_int
        elif name == semconv.ML_DRIFT_DETECTED:
            key = (attrs[semconv.ML_FEATURE_NAME], attrs[semconv.ML_DRIFT_METHOD])
            detected.setdefault(key, []).append(point.as_int)
    return rows, detected


def test_sdk_cumulative_explicit_buckets_through_a_real_collector(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    save(reference(rng), tmp_path / "profiles" / "churn.json")
    output = tmp_path / "metrics.jsonl"
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"ml_drift": {"profiles": str(tmp_path / "profiles"), "window": "2s",
                                    "grace": "0.5s", "min_rows": 100}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"pipelines": {"metrics": {
            "receivers": ["otlp"], "processors": ["ml_drift"], "exporters": ["file"]}}},
    }
    with running_collector(config, tmp_path) as collector:
        exporter = OTLPMetricExporter(
            endpoint=f"http://{collector.endpoints[PROTOCOL_HTTP]}/v1/metrics",
            preferred_temporality={Histogram: AggregationTemporality.CUMULATIVE})
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=NEVER_MS)
        provider = MeterProvider(
            metric_readers=[reader], resource=SdkResource.create(APP),
            views=[View(instrument_name=semconv.ML_FEATURE_VALUE,
                        aggregation=ExplicitBucketHistogramAggregation(boundaries=BOUNDS))])
        histogram = provider.get_meter("app").create_histogram(semconv.ML_FEATURE_VALUE)
        for _ in range(EXPORTS):
            for name, values in (("age", rng.normal(55, 10, ROWS_PER_EXPORT)),
                                 ("income", rng.normal(50, 5, ROWS_PER_EXPORT))):
                for value in values:
                    histogram.record(float(value), {**MODEL, semconv.ML_FEATURE_NAME: name})
            assert provider.force_flush()
        provider.shutdown()
        deadline = time.monotonic() + WAIT_S
        while verdicts(output)[0] < EXPORTS * ROWS_PER_EXPORT and time.monotonic() < deadline:
            time.sleep(0.2)

    rows, detected = verdicts(output)
    # Each row counted once: the second cumulative export only adds its delta.
    assert rows == EXPORTS * ROWS_PER_EXPORT, collector.stderr()
    js = semconv.DRIFT_METHOD_JENSENSHANNON
    assert detected[("age", js)] and set(detected[("age", js)]) == {1}
    assert detected[("income", js)] and set(detected[("income", js)]) == {0}
