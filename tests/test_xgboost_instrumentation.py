"""XGBoost instrumentation with the real library, on boosters trained here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from opentelemetry.trace import SpanKind

import driftline
from driftline import exphist, semconv
from driftline.instrumentation.sklearn import SklearnInstrumentor
from driftline.instrumentation.xgboost import XGBoostInstrumentor
from tests._runtimes import instrumented

ROWS = 300
ROUNDS = 4
PARAMS = {"nthread": 1}


def _frame(rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.DataFrame({"tenure": rng.uniform(-3, 3, ROWS), "spend": rng.normal(5, 2, ROWS)})
    return frame, (frame["tenure"] + rng.normal(0, 0.5, ROWS) > 0).astype(int).to_numpy()


def test_booster_predict_gives_a_span_features_by_booster_name_and_classes() -> None:
    rng = np.random.default_rng(1)
    X, y = _frame(rng)
    booster = driftline.register(
        xgb.train({**PARAMS, "objective": "binary:logistic"}, xgb.DMatrix(X, label=y), ROUNDS),
        name="churn", version="4")
    live = X.copy()
    live.loc[:9, "spend"] = np.nan  # not stored by the DMatrix: missing
    with instrumented(XGBoostInstrumentor()) as [telemetry]:
        # The array has no names: they come from the booster.
        probabilities = booster.predict(xgb.DMatrix(live.to_numpy(),
                                                    feature_names=["tenure", "spend"]))
        [span] = telemetry.spans.get_finished_spans()
        assert span.name == "predict churn" and span.kind is SpanKind.INTERNAL
        assert dict(span.attributes) == {
            semconv.ML_MODEL_NAME: "churn", semconv.ML_MODEL_VERSION: "4",
            semconv.ML_MODEL_FRAMEWORK: "xgboost", semconv.ML_OPERATION: "predict",
            semconv.ML_BATCH_SIZE: ROWS, semconv.ML_FEATURE_COUNT: 2}
        assert span.instrumentation_scope.name == "driftline.instrumentation.xgboost"
        telemetry.flush()
        assert booster.feature_names == ["tenure", "spend"]
        features = telemetry.features()
        assert set(features) == {"tenure", "spend"}
        for name, point in features.items():
            column = live[name].to_numpy()
            expected = exphist.from_values(column[np.isfinite(column)])
            assert (point.count, point.scale, point.zero_count) == (
                expected.count, expected.scale, expected.zero_count)
            assert list(point.positive.bucket_counts) == list(expected.positive.counts)
            assert list(point.negative.bucket_counts) == list(expected.negative.counts)
        assert features["spend"].count == ROWS - 10
        [missing] = list(telemetry.metrics.points(semconv.ML_FEATURE_MISSING))
        assert missing.attributes[semconv.ML_FEATURE_NAME] == "spend" and missing.value == 10
        labels = (probabilities > 0.5).astype(int)
        assert telemetry.classes() == {str(c): int((labels == c).sum()) for c in (0, 1)}
        confidence = telemetry.one(semconv.ML_PREDICTION_CONFIDENCE)
        top = np.maximum(probabilities, 1 - probabilities)
        assert confidence.count == ROWS
        assert confidence.max == pytest.approx(top.max()) and confidence.min == pytest.approx(
            top.min())
        assert telemetry.rows() == ROWS


def test_inplace_predict_multiclass_margins_and_frame_columns() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(ROWS, 3))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    booster = xgb.train({**PARAMS, "objective": "multi:softprob", "num_class": 3},
                        xgb.DMatrix(X, label=y), ROUNDS)
    with instrumented(XGBoostInstrumentor()) as [telemetry]:
        scores = booster.inplace_predict(X)
        margins = booster.inplace_predict(X[:100], predict_type="margin")
        telemetry.flush()
        assert [s.name for s in telemetry.spans.get_finished_spans()] == [
            "inplace_predict Booster"] * 2
        assert set(telemetry.features()) == {"f0", "f1", "f2"}
        labels = np.concatenate([scores.argmax(axis=1), margins.argmax(axis=1)])
        assert telemetry.classes() == {str(c): int((labels == c).sum())
                                       for c in np.unique(labels)}
        # Margins are softmaxed into probabilities before the top one is taken.
        exp = np.exp(margins - margins.max(axis=1, keepdims=True))
        softmaxed = exp / exp.sum(axis=1, keepdims=True)
        confidence = telemetry.one(semconv.ML_PREDICTION_CONFIDENCE)
        top = np.concatenate([scores.max(axis=1), softmaxed.max(axis=1)])
        assert confidence.count == ROWS + 100
        assert confidence.sum == pytest.approx(top.sum())


def test_regressor_values_and_leaf_indexes_are_not_predictions() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(ROWS, 2))
    booster = xgb.train({**PARAMS, "objective": "reg:squarederror"},
                        xgb.DMatrix(X, label=X @ [1.0, -2.0]), ROUNDS)
    with instrumented(XGBoostInstrumentor()) as [telemetry]:
        values = booster.predict(xgb.DMatrix(X))
        booster.predict(xgb.DMatrix(X[:50]), pred_leaf=True)
        telemetry.flush()
        assert telemetry.rows() == ROWS + 50
        assert list(telemetry.metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)) == []
        point = telemetry.one(semconv.ML_PREDICTION_VALUE)
        assert point.count == ROWS and point.sum == pytest.approx(values.sum(), rel=1e-6)
        assert telemetry.features()["f0"].count == ROWS + 50


def test_a_quantile_dmatrix_gives_predictions_but_not_its_bins_as_features() -> None:
    rng = np.random.default_rng(7)
    X, y = _frame(rng)
    booster = xgb.train({**PARAMS, "objective": "binary:logistic"},
                        xgb.DMatrix(X, label=y), ROUNDS)
    with instrumented(XGBoostInstrumentor()) as [telemetry]:
        probabilities = booster.predict(xgb.QuantileDMatrix(X))
        telemetry.flush()
        assert telemetry.rows() == ROWS
        assert telemetry.features() == {}
        labels = (probabilities > 0.5).astype(int)
        assert telemetry.classes() == {str(c): int((labels == c).sum()) for c in (0, 1)}


def test_predictions_while_training_are_not_observed() -> None:
    rng = np.random.default_rng(4)
    X, y = _frame(rng)
    dtrain = xgb.DMatrix(X, label=y)
    predicted_inside = []

    def metric(predt: np.ndarray, data: xgb.DMatrix) -> tuple[str, float]:
        predicted_inside.append(len(predt))
        return "mean", float(predt.mean())

    with instrumented(XGBoostInstrumentor()) as [telemetry]:
        # eval_set with a custom metric calls Booster.predict once per round.
        booster = xgb.train({**PARAMS, "objective": "binary:logistic"}, dtrain, ROUNDS,
                            evals=[(dtrain, "train")], custom_metric=metric,
                            verbose_eval=False)
        booster.predict(dtrain, training=True)
        assert predicted_inside == [ROWS] * ROUNDS
        telemetry.flush()
        assert telemetry.spans.get_finished_spans() == ()
        assert telemetry.rows() == 0


def test_xgbclassifier_reports_once_as_the_scikit_learn_estimator() -> None:
    rng = np.random.default_rng(5)
    X, y = _frame(rng)
    with instrumented(SklearnInstrumentor(), XGBoostInstrumentor()) as [sk, booster]:
        model = xgb.XGBClassifier(n_estimators=ROUNDS).fit(X, y)
        model.predict_proba(X)
        model.predict(X.iloc[:40])
        assert [s.name for s in sk.spans.get_finished_spans()] == [
            "predict_proba XGBClassifier", "predict XGBClassifier"]
        assert booster.spans.get_finished_spans() == ()
        sk.flush()
        booster.flush()
        assert sk.rows() == ROWS + 40
        assert booster.metrics.exported == []


def test_a_refused_input_raises_xgboosts_own_error_and_counts_the_call() -> None:
    rng = np.random.default_rng(8)
    X = rng.normal(size=(ROWS, 2))
    booster = xgb.train({**PARAMS, "objective": "reg:squarederror"},
                        xgb.DMatrix(X, label=X[:, 0]), 2)
    with pytest.raises(Exception) as plain:
        booster.predict(X)  # an array where a DMatrix is expected
    with instrumented(XGBoostInstrumentor()) as [telemetry]:
        with pytest.raises(type(plain.value)) as observed:
            booster.predict(X)
        assert str(observed.value) == str(plain.value)
        telemetry.flush()
        assert telemetry.instrumentor.recorder.failed_aggregations == 0
        [duration] = list(telemetry.metrics.points(semconv.ML_PREDICT_DURATION))
        assert duration.attributes[semconv.ERROR_TYPE] == type(plain.value).__qualname__


def test_uninstrument_restores_the_booster_methods() -> None:
    rng = np.random.default_rng(6)
    X = rng.normal(size=(ROWS, 2))
    booster = xgb.train({**PARAMS, "objective": "reg:squarederror"},
                        xgb.DMatrix(X, label=X[:, 0]), 2)
    originals = {name: xgb.Booster.__dict__[name]
                 for name in ("predict", "inplace_predict", "update", "eval_set")}
    with instrumented(XGBoostInstrumentor()) as [telemetry]:
        assert all(xgb.Booster.__dict__[n] is not f for n, f in originals.items())
    # Identity, not ==: a wrapt proxy left in place compares equal to what it wraps.
    assert all(xgb.Booster.__dict__[name] is f for name, f in originals.items())
    booster.inplace_predict(X)
    assert telemetry.spans.get_finished_spans() == ()
