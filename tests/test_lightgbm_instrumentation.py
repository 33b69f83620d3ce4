"""LightGBM instrumentation with the real library, on boosters trained here."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

import driftline
from driftline import exphist, semconv
from driftline.instrumentation.lightgbm import LightGBMInstrumentor
from driftline.instrumentation.sklearn import SklearnInstrumentor
from tests._runtimes import instrumented

ROWS = 300
PARAMS = {"verbose": -1, "num_threads": 1, "min_data_in_leaf": 5}
ROUNDS = 4


def test_booster_predict_span_features_from_the_booster_and_classes() -> None:
    rng = np.random.default_rng(11)
    X = pd.DataFrame({"age": rng.normal(40, 10, ROWS), "income": rng.normal(50, 5, ROWS)})
    y = (X["age"] > 40).astype(int)
    booster = driftline.register(
        lgb.train({**PARAMS, "objective": "binary"}, lgb.Dataset(X, y), ROUNDS),
        name="credit", version="7")
    with instrumented(LightGBMInstrumentor()) as [telemetry]:
        # An array: its columns are named after the booster's features.
        probabilities = booster.predict(X.to_numpy())
        [span] = telemetry.spans.get_finished_spans()
        assert span.name == "predict credit"
        assert dict(span.attributes) == {
            semconv.ML_MODEL_NAME: "credit", semconv.ML_MODEL_VERSION: "7",
            semconv.ML_MODEL_FRAMEWORK: "lightgbm", semconv.ML_OPERATION: "predict",
            semconv.ML_BATCH_SIZE: ROWS, semconv.ML_FEATURE_COUNT: 2}
        telemetry.flush()
        features = telemetry.features()
        assert set(features) == {"age", "income"}
        expected = exphist.from_values(X["age"].to_numpy())
        assert (features["age"].count, features["age"].scale,
                list(features["age"].positive.bucket_counts)) == (
            expected.count, expected.scale, list(expected.positive.counts))
        labels = (probabilities > 0.5).astype(int)
        assert telemetry.classes() == {str(c): int((labels == c).sum()) for c in (0, 1)}
        confidence = telemetry.one(semconv.ML_PREDICTION_CONFIDENCE)
        assert confidence.sum == pytest.approx(np.maximum(probabilities,
                                                          1 - probabilities).sum())


def test_multiclass_raw_scores_placeholder_names_and_leaf_indexes() -> None:
    rng = np.random.default_rng(12)
    X = rng.normal(size=(ROWS, 3))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    booster = lgb.train({**PARAMS, "objective": "multiclass", "num_class": 3},
                        lgb.Dataset(X, y), ROUNDS)
    assert booster.feature_name() == ["Column_0", "Column_1", "Column_2"]
    with instrumented(LightGBMInstrumentor()) as [telemetry]:
        scores = booster.predict(X)
        raw = booster.predict(X[:100], raw_score=True)
        booster.predict(X[:50], pred_leaf=True)
        telemetry.flush()
        # LightGBM's placeholders read as the names an array has everywhere in Driftline.
        assert set(telemetry.features()) == {"f0", "f1", "f2"}
        assert telemetry.features()["f0"].count == ROWS + 150
        assert telemetry.rows() == ROWS + 150
        labels = np.concatenate([scores.argmax(axis=1), raw.argmax(axis=1)])
        assert telemetry.classes() == {str(c): int((labels == c).sum())
                                       for c in np.unique(labels)}
        exp = np.exp(raw - raw.max(axis=1, keepdims=True))
        top = np.concatenate([scores.max(axis=1), (exp / exp.sum(axis=1, keepdims=True)).max(
            axis=1)])
        confidence = telemetry.one(semconv.ML_PREDICTION_CONFIDENCE)
        assert confidence.count == ROWS + 100 and confidence.sum == pytest.approx(top.sum())


def test_one_vs_all_probabilities_are_read_as_the_model_gives_them() -> None:
    rng = np.random.default_rng(16)
    X = rng.normal(size=(ROWS, 3))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    booster = lgb.train({**PARAMS, "objective": "multiclassova", "num_class": 3},
                        lgb.Dataset(X, y), ROUNDS)
    with instrumented(LightGBMInstrumentor()) as [telemetry]:
        scores = booster.predict(X)
        telemetry.flush()
        assert not np.allclose(scores.sum(axis=1), 1.0)  # one-vs-all: not a distribution
        labels = scores.argmax(axis=1)
        assert telemetry.classes() == {str(c): int((labels == c).sum())
                                       for c in np.unique(labels)}
        confidence = telemetry.one(semconv.ML_PREDICTION_CONFIDENCE)
        assert confidence.sum == pytest.approx(scores.max(axis=1).sum())


def test_regression_values_from_a_model_loaded_from_text() -> None:
    rng = np.random.default_rng(13)
    X = rng.normal(size=(ROWS, 2))
    trained = lgb.train({**PARAMS, "objective": "regression"}, lgb.Dataset(X, X @ [2.0, 1.0]),
                        ROUNDS)
    booster = lgb.Booster(model_str=trained.model_to_string())
    with instrumented(LightGBMInstrumentor()) as [telemetry]:
        values = booster.predict(X)
        telemetry.flush()
        assert list(telemetry.metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)) == []
        point = telemetry.one(semconv.ML_PREDICTION_VALUE)
        assert point.count == ROWS and point.sum == pytest.approx(values.sum())


def test_lgbmclassifier_reports_once_as_the_scikit_learn_estimator() -> None:
    rng = np.random.default_rng(14)
    X = rng.normal(size=(ROWS, 2))
    y = np.where(X[:, 0] > 0, "churned", "stayed")
    with instrumented(SklearnInstrumentor(), LightGBMInstrumentor()) as [sk, booster]:
        model = lgb.LGBMClassifier(n_estimators=ROUNDS, **PARAMS).fit(X, y)
        labels = model.predict(X)
        assert [s.name for s in sk.spans.get_finished_spans()] == ["predict LGBMClassifier"]
        assert booster.spans.get_finished_spans() == ()
        sk.flush()
        booster.flush()
        assert sk.classes() == {c: int((labels == c).sum()) for c in np.unique(labels)}
        assert booster.metrics.exported == []


def test_uninstrument_restores_booster_predict() -> None:
    rng = np.random.default_rng(15)
    X = rng.normal(size=(ROWS, 2))
    booster = lgb.train({**PARAMS, "objective": "regression"}, lgb.Dataset(X, X[:, 0]), 2)
    original = lgb.Booster.__dict__["predict"]
    with instrumented(LightGBMInstrumentor()) as [telemetry]:
        assert lgb.Booster.__dict__["predict"] is not original
    assert lgb.Booster.__dict__["predict"] is original
    booster.predict(X)
    assert telemetry.spans.get_finished_spans() == ()
