"""ONNX Runtime instrumentation with the real library, on models converted here (skl2onnx)
or built here (onnx.helper)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LogisticRegression

import driftline
from driftline import exphist, semconv
from driftline.instrumentation.onnxruntime import OnnxRuntimeInstrumentor
from driftline.instrumentation.sklearn import SklearnInstrumentor
from tests._runtimes import instrumented

ROWS = 300
PROVIDERS = ["CPUExecutionProvider"]
PIXELS = 100  # wider than max_features (64): projected


@pytest.fixture(scope="module")
def classifier() -> tuple[np.ndarray, LogisticRegression]:
    rng = np.random.default_rng(21)
    X = rng.normal(size=(ROWS, 4)).astype(np.float32)
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    return X, LogisticRegression().fit(X, y)


def _session(model: object, X: np.ndarray, zipmap: bool) -> ort.InferenceSession:
    options = None if zipmap else {id(model): {"zipmap": False}}
    onx = to_onnx(model, X[:1], options=options)
    return ort.InferenceSession(onx.SerializeToString(), providers=PROVIDERS)


def test_zipmap_classifier_span_columns_labels_and_probabilities(classifier) -> None:
    X, model = classifier
    session = driftline.register(_session(model, X, zipmap=True), name="churn", version="2")
    assert [o.name for o in session.get_outputs()] == ["output_label", "output_probability"]
    with instrumented(OnnxRuntimeInstrumentor()) as [telemetry]:
        labels, maps = session.run(None, {"X": X})
        [span] = telemetry.spans.get_finished_spans()
        assert span.name == "run churn"
        assert dict(span.attributes) == {
            semconv.ML_MODEL_NAME: "churn", semconv.ML_MODEL_VERSION: "2",
            semconv.ML_MODEL_FRAMEWORK: "onnxruntime", semconv.ML_OPERATION: "run",
            semconv.ML_BATCH_SIZE: ROWS, semconv.ML_FEATURE_COUNT: 4}
        telemetry.flush()
        features = telemetry.features()
        assert set(features) == {"f0", "f1", "f2", "f3"}
        expected = exphist.from_values(X[:, 2].astype(np.float64))
        assert (features["f2"].count, list(features["f2"].negative.bucket_counts)) == (
            expected.count, list(expected.negative.counts))
        assert telemetry.classes() == {c: int((labels == c).sum()) for c in ("no", "yes")}
        top = np.array([max(m.values()) for m in maps])
        confidence = telemetry.one(semconv.ML_PREDICTION_CONFIDENCE)
        assert confidence.count == ROWS and confidence.sum == pytest.approx(top.sum(), rel=1e-6)


def test_probability_tensor_columns_take_the_labels_classes(classifier) -> None:
    X, model = classifier
    session = _session(model, X, zipmap=False)
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
    with instrumented(OnnxRuntimeInstrumentor()) as [telemetry]:
        labels, probabilities = session.run(None, {"X": X})
        # Only the probabilities asked for: classes as the learned columns' labels.
        [only] = session.run(["probabilities"], {"X": X[:50]})
        telemetry.flush()
        assert telemetry.rows() == ROWS + 50
        best = np.array(["no", "yes"])[np.concatenate([probabilities, only]).argmax(axis=1)]
        assert np.array_equal(best[:ROWS], labels)
        assert telemetry.classes() == {c: int((best == c).sum()) for c in ("no", "yes")}
        confidence = telemetry.one(semconv.ML_PREDICTION_CONFIDENCE)
        assert confidence.count == ROWS + 50
        assert confidence.sum == pytest.approx(
            np.concatenate([probabilities, only]).max(axis=1).sum(), rel=1e-6)


def _named_inputs_model() -> ort.InferenceSession:
    """age + income per row; a wide ``pixels`` input it ignores."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["age", "income"], ["score"])], "named",
        [helper.make_tensor_value_info("age", TensorProto.FLOAT, [None, 1]),
         helper.make_tensor_value_info("income", TensorProto.FLOAT, [None, 1]),
         helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, PIXELS])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), providers=PROVIDERS)


def test_inputs_by_name_wide_inputs_projected_and_regression_values() -> None:
    rng = np.random.default_rng(22)
    session = _named_inputs_model()
    feed = {"age": rng.normal(40, 5, (ROWS, 1)).astype(np.float32),
            "income": rng.normal(50, 5, (ROWS, 1)).astype(np.float32),
            "pixels": rng.uniform(0, 1, (ROWS, PIXELS)).astype(np.float32)}
    with instrumented(OnnxRuntimeInstrumentor()) as [telemetry]:
        [score] = session.run(["score"], feed)
        [span] = telemetry.spans.get_finished_spans()
        assert span.attributes[semconv.ML_FEATURE_COUNT] == 2 + PIXELS
        telemetry.flush()
        names = set(telemetry.features())
        assert {"age", "income", "pixels.l2_norm"} | {f"pixels.proj{i}" for i in range(16)} \
            == names
        age = telemetry.features()["age"]
        assert age.count == ROWS and age.sum == pytest.approx(float(feed["age"].sum()),
                                                              rel=1e-5)
        norm = telemetry.features()["pixels.l2_norm"]
        assert norm.sum == pytest.approx(float(np.linalg.norm(
            feed["pixels"].astype(np.float64), axis=1).sum()), rel=1e-5)
        assert list(telemetry.metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)) == []
        values = telemetry.one(semconv.ML_PREDICTION_VALUE)
        assert values.count == ROWS and values.sum == pytest.approx(float(score.sum()),
                                                                    rel=1e-5)


def test_a_single_one_column_input_is_named_after_the_input() -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["age"], ["same"])], "one",
        [helper.make_tensor_value_info("age", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("same", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=PROVIDERS)
    age = np.arange(ROWS, dtype=np.float32).reshape(-1, 1)
    with instrumented(OnnxRuntimeInstrumentor()) as [telemetry]:
        session.run(None, {"age": age})
        telemetry.flush()
        assert set(telemetry.features()) == {"age"}
        assert telemetry.features()["age"].sum == pytest.approx(float(age.sum()))
        assert telemetry.one(semconv.ML_PREDICTION_VALUE).sum == pytest.approx(float(age.sum()))


@pytest.mark.parametrize("feed", [None, [1.0, 2.0]])
def test_a_bad_feed_raises_onnx_runtimes_own_error_and_counts_the_call(feed: object) -> None:
    session = _named_inputs_model()
    with pytest.raises(Exception) as plain:
        session.run(None, feed)
    with instrumented(OnnxRuntimeInstrumentor()) as [telemetry]:
        with pytest.raises(type(plain.value)) as observed:
            session.run(None, feed)
        assert str(observed.value) == str(plain.value)
        telemetry.flush()
        assert telemetry.instrumentor.recorder.failed_aggregations == 0
        [duration] = list(telemetry.metrics.points(semconv.ML_PREDICT_DURATION))
        assert duration.attributes[semconv.ERROR_TYPE] == type(plain.value).__qualname__


class SessionRegressor(RegressorMixin, BaseEstimator):
    """A scikit-learn estimator serving an ONNX session."""

    def __init__(self, session: object = None) -> None:
        self.session = session

    def fit(self, X: np.ndarray, y: np.ndarray) -> SessionRegressor:
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        feed = {"age": X[:, :1], "income": X[:, 1:2], "pixels": X[:, 2:]}
        return self.session.run(None, feed)[0].ravel()


def test_a_session_run_inside_an_estimator_reports_once() -> None:
    rng = np.random.default_rng(23)
    X = rng.normal(size=(40, 2 + PIXELS)).astype(np.float32)
    with instrumented(SklearnInstrumentor(), OnnxRuntimeInstrumentor()) as [sk, onnx]:
        SessionRegressor(_named_inputs_model()).predict(X)
        assert [s.name for s in sk.spans.get_finished_spans()] == ["predict SessionRegressor"]
        assert onnx.spans.get_finished_spans() == ()
        onnx.flush()
        assert onnx.metrics.exported == []


def test_uninstrument_restores_run(classifier) -> None:
    X, model = classifier
    session = _session(model, X, zipmap=True)
    from onnxruntime.capi.onnxruntime_inference_collection import Session

    original = Session.__dict__["run"]
    with instrumented(OnnxRuntimeInstrumentor()) as [telemetry]:
        assert Session.__dict__["run"] is not original
    assert Session.__dict__["run"] is original
    session.run(None, {"X": X})
    assert telemetry.spans.get_finished_spans() == ()
