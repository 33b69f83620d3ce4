"""scikit-learn instrumentation: spans and metrics, asserted exactly, with the real SDK."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import driftline
from driftline import exphist, semconv
from driftline.instrumentation.sklearn import SklearnInstrumentor
from tests._otel import InMemoryMetricExporter

RNG = np.random.default_rng(3)


@pytest.fixture()
def telemetry():
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricExporter()
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=provider, metric_exporter=metrics)
    try:
        yield instrumentor, spans, metrics
    finally:
        instrumentor.uninstrument()


def _training_frame(rows: int = 400) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.DataFrame({"tenure": RNG.uniform(-3, 3, rows), "spend": RNG.normal(5, 2, rows)})
    return frame, (frame["tenure"] + RNG.normal(0, 0.5, rows) > 0).astype(int).to_numpy()


def _flush(instrumentor: SklearnInstrumentor) -> None:
    assert instrumentor.recorder.force_flush()


def test_pipeline_call_gives_one_span_for_the_outermost_model(telemetry) -> None:
    _instrumentor, spans, _ = telemetry
    X, y = _training_frame()
    model = driftline.register(
        Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y),
        name="churn", version="3")
    spans.clear()
    model.predict_proba(X.iloc[:25])
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["predict_proba churn"]
    span = finished[0]
    assert span.kind is SpanKind.INTERNAL
    assert dict(span.attributes) == {
        semconv.ML_MODEL_NAME: "churn", semconv.ML_MODEL_VERSION: "3",
        semconv.ML_MODEL_FRAMEWORK: "sklearn", semconv.ML_OPERATION: "predict_proba",
        semconv.ML_BATCH_SIZE: 25, semconv.ML_FEATURE_COUNT: 2,
    }
    assert span.instrumentation_scope.name == "driftline.instrumentation.sklearn"


def test_metrics_carry_exact_distributions_counts_and_classes(telemetry) -> None:
    instrumentor, _, metrics = telemetry
    X, y = _training_frame()
    model = driftline.register(LogisticRegression().fit(X, y), name="churn")
    first, second = X.iloc[:150], X.iloc[150:]
    probabilities = np.vstack([model.predict_proba(first), model.predict_proba(second)])
    _flush(instrumentor)

    rows = list(metrics.points(semconv.ML_PREDICT_ROWS))
    assert [p.value for p in rows] == [400]
    durations = list(metrics.points(semconv.ML_PREDICT_DURATION))
    assert [p.count for p in durations] == [2] and sum(durations[0].bucket_counts) == 2

    features = {p.attributes[semconv.ML_FEATURE_NAME]: p
                for p in metrics.points(semconv.ML_FEATURE_VALUE)}
    assert set(features) == {"tenure", "spend"}
    for name, point in features.items():
        expected = exphist.from_values(X[name].to_numpy())
        assert (point.scale, point.count, point.zero_count) == (
            expected.scale, expected.count, expected.zero_count)
        assert point.positive.offset == expected.positive.offset
        assert list(point.positive.bucket_counts) == list(expected.positive.counts)
        assert list(point.negative.bucket_counts) == list(expected.negative.counts)
        assert point.attributes[semconv.ML_OPERATION] == "predict_proba"
    # A feature living in [-3, 3] arrives with its negative buckets filled.
    assert sum(features["tenure"].negative.bucket_counts) == int((X["tenure"] < 0).sum()) > 0

    labels = model.classes_[probabilities.argmax(axis=1)]
    classes = {p.attributes[semconv.ML_PREDICTION_CLASS]: p.value
               for p in metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)}
    assert classes == {str(c): int((labels == c).sum()) for c in np.unique(labels)}
    confidence = next(iter(metrics.points(semconv.ML_PREDICTION_CONFIDENCE)))
    assert confidence.count == 400
    assert confidence.max == pytest.approx(probabilities.max())
    assert confidence.min == pytest.approx(probabilities.max(axis=1).min())


def test_regressor_outputs_are_prediction_values_not_classes(telemetry) -> None:
    instrumentor, _, metrics = telemetry
    X = RNG.normal(size=(100, 3))
    model = LinearRegression().fit(X, X @ [1.0, -2.0, 0.5])
    predictions = model.predict(X)
    _flush(instrumentor)
    assert list(metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)) == []
    values = next(iter(metrics.points(semconv.ML_PREDICTION_VALUE)))
    assert values.count == 100 and values.sum == pytest.approx(predictions.sum())
    names = {p.attributes[semconv.ML_FEATURE_NAME] for p in metrics.points(
        semconv.ML_FEATURE_VALUE)}
    assert names == {"f0", "f1", "f2"}
    assert next(iter(metrics.points(semconv.ML_PREDICT_ROWS))).attributes[
        semconv.ML_MODEL_NAME] == "LinearRegression"


def test_failure_sets_error_status_and_reraises_the_same_exception(telemetry) -> None:
    instrumentor, spans, metrics = telemetry
    X, y = _training_frame()
    model = LogisticRegression().fit(X.to_numpy(), y)
    with pytest.raises(ValueError) as raised:
        model.predict(np.ones((4, 5)))  # wrong feature count
    span = spans.get_finished_spans()[-1]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[semconv.ERROR_TYPE] == "ValueError"
    event = span.events[0]
    assert event.name == "exception"
    assert event.attributes["exception.message"] == str(raised.value)
    _flush(instrumentor)
    failed = [p for p in metrics.points(semconv.ML_PREDICT_DURATION)
              if p.attributes.get(semconv.ERROR_TYPE) == "ValueError"]
    assert len(failed) == 1 and failed[0].count == 1


def test_uninstrument_restores_every_method_exactly() -> None:
    before = {name: vars(Pipeline)[name] for name in ("predict", "predict_proba")}
    lr_before = vars(LogisticRegression)["predict_proba"]
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(),
                            metric_exporter=InMemoryMetricExporter())
    assert vars(Pipeline)["predict"] is not before["predict"]
    instrumentor.uninstrument()
    # Identity, not ==: a wrapt proxy left in place compares equal to what it wraps.
    assert all(vars(Pipeline)[n] is before[n] for n in before)
    assert vars(LogisticRegression)["predict_proba"] is lr_before
    assert "__init_subclass__" not in vars(BaseEstimator)
    # The descriptor came back, so a pipeline without predict_proba still says so.
    from sklearn.svm import SVC

    X = np.random.default_rng(0).normal(size=(40, 3))
    assert not hasattr(Pipeline([("svc", SVC())]).fit(X, X[:, 0] > 0), "predict_proba")


def test_no_spans_after_uninstrument_and_none_when_suppressed(telemetry) -> None:
    instrumentor, spans, _ = telemetry
    X, y = _training_frame()
    model = LogisticRegression().fit(X, y)
    with suppress_instrumentation():
        model.predict(X)
    assert spans.get_finished_spans() == ()
    instrumentor.uninstrument()
    model.predict(X)
    assert spans.get_finished_spans() == ()
    instrumentor.instrument(tracer_provider=TracerProvider())  # so the fixture can undo it


def test_classes_defined_after_instrumentation_are_wrapped(telemetry) -> None:
    _, spans, _ = telemetry

    class Threshold(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            self.classes_ = np.array([0, 1])
            return self

        def predict(self, X):
            return (np.asarray(X)[:, 0] > 0).astype(int)

    Threshold().fit(None, None).predict(np.ones((3, 1)))
    assert [s.name for s in spans.get_finished_spans()] == ["predict Threshold"]


def test_predictions_identical_and_inputs_untouched() -> None:
    X, y = _training_frame()
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y)
    plain = model.predict_proba(X)
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(),
                            metric_exporter=InMemoryMetricExporter())
    try:
        snapshot = X.copy()
        instrumented = model.predict_proba(X)
        instrumentor.recorder.force_flush()
    finally:
        instrumentor.uninstrument()
    assert instrumented.tobytes() == plain.tobytes() and instrumented.dtype == plain.dtype
    pd.testing.assert_frame_equal(X, snapshot)


def test_eight_threads_give_exact_row_counts(telemetry) -> None:
    instrumentor, _, metrics = telemetry
    X, y = _training_frame()
    model = LogisticRegression().fit(X, y)
    batch_sizes = [1, 3, 7, 20]

    def serve() -> None:
        for i in range(50):
            model.predict(X.iloc[: batch_sizes[i % 4]])

    threads = [threading.Thread(target=serve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _flush(instrumentor)
    expected_rows = 8 * sum(batch_sizes[i % 4] for i in range(50))
    assert sum(p.value for p in metrics.points(semconv.ML_PREDICT_ROWS)) == expected_rows
    assert sum(p.count for p in metrics.points(semconv.ML_FEATURE_VALUE)) == 2 * expected_rows


def test_binary_decision_scores_count_as_the_classes_scikit_learn_predicts(telemetry) -> None:
    instrumentor, _, metrics = telemetry
    X, y = _training_frame()
    model = driftline.register(LogisticRegression().fit(X, np.where(y == 1, "churn", "stay")),
                               name="churn")
    with suppress_instrumentation():
        predicted = model.predict(X)
    model.decision_function(X)
    _flush(instrumentor)
    classes = {p.attributes[semconv.ML_PREDICTION_CLASS]: p.value
               for p in metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)}
    assert classes == {c: int((predicted == c).sum()) for c in ("churn", "stay")}
