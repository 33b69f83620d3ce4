"""High volume: above a per-interval budget the recorder aggregates a uniform random sample
of rows, so its CPU stays bounded, while ``ml.predict.rows`` stays exact."""

from __future__ import annotations

import numpy as np
from opentelemetry.sdk.trace import TracerProvider
from sklearn.linear_model import LinearRegression

from driftline import drift, exphist, semconv
from driftline.instrumentation import Limits, Recorder
from driftline.instrumentation.sklearn import SklearnInstrumentor
from tests._otel import InMemoryMetricExporter

BUDGET = 1000
CALLS = 10
ROWS_PER_CALL = 500


def _interval(model, X: np.ndarray, recorder: Recorder, metrics: InMemoryMetricExporter):
    metrics.exported.clear()
    for batch in np.array_split(X, CALLS):
        model.predict(batch)
    assert recorder.force_flush()
    rows = sum(p.value for p in metrics.points(semconv.ML_PREDICT_ROWS))
    [feature] = [p for p in metrics.points(semconv.ML_FEATURE_VALUE)]
    return rows, feature


def test_above_the_budget_a_uniform_sample_is_aggregated_and_rows_stay_exact() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(5, 2, (CALLS * ROWS_PER_CALL, 1))
    model = LinearRegression().fit(X, X[:, 0])
    metrics = InMemoryMetricExporter()
    recorder = Recorder(metrics, limits=Limits(max_sampled_rows=BUDGET), sample_seed=11)
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), recorder=recorder)
    try:
        # The first interval has no previous volume: a burst of 5x the budget is cut once it
        # passes twice the budget (the background thread may drain in between: at most
        # 2x the budget at rate 1, then the rest at budget / rows).
        rows, first = _interval(model, X, recorder, metrics)
        assert rows == 5000
        assert first.count < 3 * BUDGET
        # Later intervals sample at budget / previous volume: about BUDGET rows of 5000.
        rows, sampled = _interval(model, X, recorder, metrics)
        assert rows == 5000
        assert 0.85 * BUDGET < sampled.count < 1.15 * BUDGET
    finally:
        instrumentor.uninstrument()
        recorder.shutdown()
    # The sample keeps the distribution: close to the histogram of every row.
    whole = exphist.from_values(X[:, 0])
    sample = exphist.ExpHistogram(
        sampled.scale, sampled.zero_count,
        exphist.Buckets(sampled.positive.offset, np.asarray(sampled.positive.bucket_counts)),
        exphist.Buckets(sampled.negative.offset, np.asarray(sampled.negative.bucket_counts)),
        sampled.count, sampled.sum, sampled.min, sampled.max)
    assert drift.wasserstein_normed(whole, sample) < 0.06


def test_below_the_budget_every_row_is_aggregated() -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(CALLS * ROWS_PER_CALL, 1))
    model = LinearRegression().fit(X, X[:, 0])
    metrics = InMemoryMetricExporter()
    recorder = Recorder(metrics, limits=Limits(max_sampled_rows=10 * BUDGET))
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), recorder=recorder)
    try:
        for _ in range(2):
            rows, feature = _interval(model, X, recorder, metrics)
            assert rows == feature.count == 5000
    finally:
        instrumentor.uninstrument()
        recorder.shutdown()
