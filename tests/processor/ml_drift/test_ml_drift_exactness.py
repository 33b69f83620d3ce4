"""The processor's numeric verdicts against SciPy on the raw values (issue 13, points 1, 3
and 7): exact reference moments from the profile, low-cardinality columns as categories,
and window merges sized by the buckets that hold counts (not the SDK's zero padding)."""

from __future__ import annotations

import numpy as np
import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from driftline import drift, exphist, semconv
from driftline.exphist import Buckets, ExpHistogram
from driftline.processor.ml_drift.window import StreamKey, Window
from driftline.profile import ProfileBuilder
from tests.processor.ml_drift.test_ml_drift import (
    NS,
    T0,
    Capture,
    Clock,
    app_batch,
    gauges,
    processor,
)

KEY = StreamKey("churn", "3", "predict")
SDK_MAX_SIZE = 160


def _sdk_delta_histograms(chunks: list[np.ndarray]) -> list[ExpHistogram]:
    """What the OpenTelemetry SDK exports per interval for ``chunks``: delta exponential
    histograms, their bucket arrays padded with zeros to 160 buckets."""
    reader = InMemoryMetricReader(preferred_temporality={
        Histogram: AggregationTemporality.DELTA})
    provider = MeterProvider(metric_readers=[reader], views=[View(
        instrument_name="x", aggregation=ExponentialBucketHistogramAggregation())])
    instrument = provider.get_meter("test").create_histogram("x")
    hists = []
    for chunk in chunks:
        for value in chunk:
            instrument.record(float(value))
        [point] = reader.get_metrics_data().resource_metrics[0].scope_metrics[0] \
            .metrics[0].data.data_points
        hists.append(ExpHistogram(
            point.scale, point.zero_count,
            Buckets(point.positive.offset, np.array(point.positive.bucket_counts)),
            Buckets(point.negative.offset, np.array(point.negative.bucket_counts)),
            point.count, point.sum, point.min, point.max))
    provider.shutdown()
    return hists


def test_window_merge_ignores_the_sdks_zero_padding() -> None:
    rng = np.random.default_rng(17)
    chunks = [rng.normal(100, 1, 300) for _ in range(4)]
    sdk = _sdk_delta_histograms(chunks)
    assert all(h.positive.counts.size == SDK_MAX_SIZE for h in sdk[1:])  # padded, as seen
    window = Window(KEY, 0)
    for hist in sdk:
        window.add_numeric("x", hist)
    merged = window.numeric["x"]
    unpadded = exphist.merge([exphist.ExpHistogram(
        h.scale, h.zero_count, exphist.trimmed(h.positive), exphist.trimmed(h.negative),
        h.count, h.sum, h.min, h.max) for h in sdk])
    assert merged.scale == unpadded.scale == min(h.scale for h in sdk)
    assert exphist.merge(sdk).scale == merged.scale
    values = np.concatenate(chunks)
    reference = rng.normal(100, 1, 5000)
    ref_hist = exphist.from_values(reference)
    exact = wasserstein_distance(reference, values) / reference.std()
    assert drift.wasserstein_normed(ref_hist, merged, float(reference.std())) == \
        pytest.approx(exact, rel=0.02, abs=0.002)


def test_processor_norms_by_the_profiles_exact_std_and_judges_codes_as_categories() -> None:
    rng = np.random.default_rng(23)
    builder = ProfileBuilder("churn", "3")
    far = rng.normal(1e4, 1, 5000)
    codes = 1.0 + (rng.random(5000) < 0.02)
    builder.add_column("far", far)
    builder.add_column("code", codes)
    builder.add_rows(5000)
    profile = builder.build()
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): profile}, clock, capture)
    cur_far = rng.normal(1e4 + 0.3, 1, 2000)
    cur_codes = 1.0 + (rng.random(2000) < 0.02)
    clock.at(3)
    proc.consume_metrics(app_batch(T0 + 2 * NS, {"far": cur_far, "code": cur_codes}))
    clock.at(11.2)
    values = gauges(proc.evaluate_due())
    exact_far = wasserstein_distance(far, cur_far) / far.std()
    score = semconv.ML_DRIFT_SCORE
    assert values[(score, "far", semconv.DRIFT_METHOD_WASSERSTEIN)] == pytest.approx(
        exact_far, rel=0.02)
    table = [[np.count_nonzero(side == v) for v in (1.0, 2.0)] for side in (codes, cur_codes)]
    assert values[(score, "code", semconv.DRIFT_METHOD_JENSENSHANNON)] == pytest.approx(
        jensenshannon(*table), rel=1e-9)
    assert (score, "code", semconv.DRIFT_METHOD_WASSERSTEIN) not in values
    assert values[(semconv.ML_DRIFT_DETECTED, "code", semconv.DRIFT_METHOD_JENSENSHANNON)] == 0
