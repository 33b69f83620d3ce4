"""Every scikit-learn predict path: searches, column transformers, categorical and missing
inputs, identity through pickling, cardinality caps, and a backend that is down."""

from __future__ import annotations

import pickle
import threading
from collections import Counter

import joblib
import numpy as np
import pandas as pd
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

import driftline
from driftline import exphist, semconv
from driftline.instrumentation import Limits, Recorder
from driftline.instrumentation.sklearn import SklearnInstrumentor
from tests._otel import InMemoryMetricExporter

RNG = np.random.default_rng(21)


class Telemetry:
    def __init__(self, exporter=None, **recorder_options) -> None:
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = exporter or InMemoryMetricExporter()
        self.recorder = Recorder(self.metrics, **recorder_options)
        self.instrumentor = SklearnInstrumentor()
        self.instrumentor.instrument(tracer_provider=provider, recorder=self.recorder)

    def span_names(self) -> list[str]:
        return [s.name for s in self.spans.get_finished_spans()]

    def points(self, name: str) -> list:
        assert self.recorder.force_flush()
        return list(self.metrics.points(name))

    def close(self) -> None:
        self.instrumentor.uninstrument()
        self.recorder.shutdown()


@pytest.fixture()
def telemetry():
    created: list[Telemetry] = []

    def make(**kwargs) -> Telemetry:
        created.append(Telemetry(**kwargs))
        return created[-1]

    yield make
    for t in created:
        t.close()


def _customers(rows: int) -> pd.DataFrame:
    frame = pd.DataFrame({
        "spend": RNG.normal(50, 10, rows),
        "visits": RNG.poisson(3, rows).astype(float),
        "plan": pd.Categorical(RNG.choice(["basic", "pro", "team"], rows)),
        "region": RNG.choice(["north", "south"], rows).astype(object),
        "promo": RNG.choice([True, False], rows),
    })
    return frame


@pytest.mark.parametrize("search", ["grid", "randomized"])
def test_search_fit_is_silent_and_predict_reports_once(telemetry, search: str) -> None:
    t = telemetry()
    X = RNG.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    grid = {"C": [0.1, 1.0]}
    model = (GridSearchCV(LogisticRegression(), grid, cv=3) if search == "grid"
             else RandomizedSearchCV(LogisticRegression(), grid, n_iter=2, cv=3,
                                     random_state=0)).fit(X, y)
    assert t.span_names() == []  # cross-validation predictions are training, not traffic
    model.predict(X[:17])
    name = type(model).__name__
    assert t.span_names() == [f"predict {name}"]
    [rows] = t.points(semconv.ML_PREDICT_ROWS)
    assert rows.value == 17 and rows.attributes[semconv.ML_MODEL_NAME] == name


def test_column_transformer_pipeline_with_categorical_and_missing_inputs(telemetry) -> None:
    t = telemetry()
    train = _customers(300)
    model = Pipeline([
        ("columns", ColumnTransformer([
            ("numbers", StandardScaler(), ["spend", "visits"]),
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["plan", "region", "promo"]),
        ])),
        ("forest", RandomForestClassifier(n_estimators=5, random_state=0)),
    ]).fit(train, RNG.choice(["churn", "stay"], 300))
    live = _customers(120)
    live.loc[:4, "region"] = None  # missing categories are counted, never an error
    model.predict_proba(live)
    model.predict(live)
    assert t.span_names() == ["predict_proba Pipeline", "predict Pipeline"]

    categories = Counter()
    for point in t.points(semconv.ML_FEATURE_CATEGORY_METRIC):
        if point.attributes[semconv.ML_OPERATION] == "predict":
            categories[(point.attributes[semconv.ML_FEATURE_NAME],
                        point.attributes[semconv.ML_FEATURE_CATEGORY])] += point.value
    expected = Counter()
    for column in ("plan", "region", "promo"):
        for value, count in live[column].dropna().astype(str).value_counts().items():
            expected[(column, value)] += count
    assert categories == expected
    missing = {p.attributes[semconv.ML_FEATURE_NAME]: p.value
               for p in t.points(semconv.ML_FEATURE_MISSING)
               if p.attributes[semconv.ML_OPERATION] == "predict"}
    assert missing == {"region": 5}
    spend = [p for p in t.metrics.points(semconv.ML_FEATURE_VALUE)
             if p.attributes[semconv.ML_FEATURE_NAME] == "spend"
             and p.attributes[semconv.ML_OPERATION] == "predict"]
    assert spend[0].count == 120


def test_nan_and_infinities_are_missing_never_values(telemetry) -> None:
    t = telemetry()
    X = RNG.normal(size=(100, 2))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    model.predict_proba(X)  # a clean call, then the recorder sees a dirty batch handed over
    dirty = X.copy()
    dirty[:3, 0] = np.nan
    dirty[3, 0] = np.inf
    dirty[4, 0] = -np.inf
    dirty[5:9, 1] = 0.0
    t.recorder.force_flush()
    t.metrics.exported.clear()
    with pytest.raises(ValueError):
        model.predict_proba(dirty)  # sklearn refuses NaN: the call fails, inputs still count
    [f0, f1] = sorted(t.points(semconv.ML_FEATURE_VALUE),
                      key=lambda p: p.attributes[semconv.ML_FEATURE_NAME])
    assert f0.count == 95 and f1.count == 100
    assert f1.zero_count == 4
    expected = exphist.from_values(dirty[np.isfinite(dirty[:, 0]), 0])
    assert list(f0.positive.bucket_counts) == list(expected.positive.counts)
    assert list(f0.negative.bucket_counts) == list(expected.negative.counts)
    missing = {p.attributes[semconv.ML_FEATURE_NAME]: p.value
               for p in t.points(semconv.ML_FEATURE_MISSING)}
    assert missing == {"f0": 5}


def test_log_proba_and_decision_function_are_operations(telemetry) -> None:
    t = telemetry()
    X = RNG.normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(int)
    LogisticRegression().fit(X, y).predict_log_proba(X)
    SVC().fit(X, y).decision_function(X)
    assert t.span_names() == ["predict_log_proba LogisticRegression",
                              "decision_function SVC"]
    operations = {p.attributes[semconv.ML_OPERATION] for p in t.points(semconv.ML_PREDICT_ROWS)}
    assert operations == {"predict_log_proba", "decision_function"}


def test_identity_survives_pickle_and_joblib_and_env_names_the_rest(telemetry, tmp_path,
                                                                    monkeypatch) -> None:
    X = RNG.normal(size=(50, 2))
    trained = driftline.register(LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)),
                                 name="churn", version="7")
    pickled = pickle.dumps(trained)  # saved before instrumentation, loaded after
    joblib.dump(trained, tmp_path / "model.joblib")
    t = telemetry()
    pickle.loads(pickled).predict(X)
    joblib.load(tmp_path / "model.joblib").predict(X)
    monkeypatch.setenv(semconv.ENV_MODEL_NAME, "scorer")
    monkeypatch.setenv(semconv.ENV_MODEL_VERSION, "2024-06")
    LogisticRegression().fit(X, (X[:, 1] > 0).astype(int)).predict(X)
    assert t.span_names() == ["predict churn", "predict churn", "predict scorer"]
    versions = {(p.attributes[semconv.ML_MODEL_NAME], p.attributes[semconv.ML_MODEL_VERSION])
                for p in t.points(semconv.ML_PREDICT_ROWS)}
    assert versions == {("churn", "7"), ("scorer", "2024-06")}


def test_cardinality_caps_fold_into_other_and_count_the_overflow(telemetry) -> None:
    t = telemetry(limits=Limits(max_features=3, top_k_categories=4, max_streams=2))
    frame = pd.DataFrame({f"x{i}": RNG.normal(size=400) for i in range(4)})
    frame["sku"] = [f"sku-{i % 40}" for i in range(400)]  # 40 distinct values, top-K is 4
    model = Pipeline([
        ("columns", ColumnTransformer([("n", "passthrough", ["x0", "x1", "x2", "x3"])])),
        ("clf", LogisticRegression()),
    ]).fit(frame, (frame["x0"] > 0).astype(int))
    model.predict(frame)
    by_name = {p.attributes[semconv.ML_FEATURE_NAME]: p
               for p in t.points(semconv.ML_FEATURE_VALUE)}
    # x0..x2 keep their names; x3 and sku fold into one __other__ column of each kind.
    assert set(by_name) == {"x0", "x1", "x2", semconv.OVERFLOW_VALUE}
    assert by_name[semconv.OVERFLOW_VALUE].count == 400
    categories = {p.attributes[semconv.ML_FEATURE_CATEGORY]: p.value
                  for p in t.metrics.points(semconv.ML_FEATURE_CATEGORY_METRIC)}
    overflow = {p.attributes[semconv.ML_CARDINALITY_ATTRIBUTE]: p.value
                for p in t.metrics.points(semconv.ML_CARDINALITY_OVERFLOW)}
    assert sum(categories.values()) == 400
    # With the feature cap at 3, x3 and sku both went to __other__ columns.
    assert overflow[semconv.ML_FEATURE_NAME] == 800
    t.metrics.exported.clear()
    for name in ("a", "b", "c"):
        driftline.register(LogisticRegression().fit(frame[["x0"]], frame["x0"] > 0),
                           name=name).predict(frame[["x0"]])
    models = Counter()
    for point in t.points(semconv.ML_PREDICT_ROWS):
        models[point.attributes[semconv.ML_MODEL_NAME]] += point.value
    assert models == {"a": 400, "b": 400, semconv.OVERFLOW_VALUE: 400}


def test_top_k_categories_fold_the_rest_into_other(telemetry) -> None:
    t = telemetry(limits=Limits(top_k_categories=4))
    values = np.array([f"v{i}" for i in RNG.zipf(1.5, 2000) % 30], dtype=object)
    frame = pd.DataFrame({"x": RNG.normal(size=2000), "cat": values})
    model = Pipeline([("columns", ColumnTransformer([("n", "passthrough", ["x"])])),
                      ("clf", LogisticRegression())]).fit(frame, frame["x"] > 0)
    model.predict(frame)
    categories = {p.attributes[semconv.ML_FEATURE_CATEGORY]: p.value
                  for p in t.points(semconv.ML_FEATURE_CATEGORY_METRIC)}
    top = Counter(values.tolist()).most_common(4)
    assert {k: v for k, v in categories.items() if k != semconv.OVERFLOW_VALUE} == dict(top)
    folded = 2000 - sum(count for _, count in top)
    assert categories[semconv.OVERFLOW_VALUE] == folded
    [overflow] = [p for p in t.metrics.points(semconv.ML_CARDINALITY_OVERFLOW)
                  if p.attributes[semconv.ML_CARDINALITY_ATTRIBUTE] == semconv.ML_FEATURE_CATEGORY]
    assert overflow.value == folded


class _BlockedExporter(InMemoryMetricExporter):
    """A backend that hangs until released: the recorder thread is stuck in export()."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs):
        self.entered.set()
        self.release.wait(60)  # bounded, so a failing test cannot hang its teardown
        return super().export(metrics_data)


def test_a_hung_backend_never_blocks_predict_and_memory_stays_bounded(telemetry) -> None:
    exporter = _BlockedExporter()
    t = telemetry(exporter=exporter, export_interval_s=0.05, max_pending_calls=500)
    X = RNG.normal(size=(8, 2))
    model = LogisticRegression().fit(X, [0, 1] * 4)
    model.predict(X)
    assert exporter.entered.wait(30)  # the recorder thread now hangs in export()
    for _ in range(3000):
        model.predict(X)  # each returns although nothing can be exported
    assert t.recorder.pending_calls == 500
    assert t.recorder.dropped_value_rows == (3000 - 500) * 8
    exporter.release.set()
    rows = sum(p.value for p in t.points(semconv.ML_PREDICT_ROWS))
    assert rows == 8 + 3000 * 8  # row counts stay exact through the overload


def test_an_unreachable_collector_never_raises_into_predict(telemetry) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    from tests.conftest import reserve_port

    with reserve_port() as unreachable:  # held, never listening: connections are refused
        exporter = OTLPMetricExporter(endpoint=unreachable.endpoint, insecure=True, timeout=1)
        t = telemetry(exporter=exporter)
        X = RNG.normal(size=(8, 2))
        model = LogisticRegression().fit(X, [0, 1] * 4)
        expected = model.predict(X)
        for _ in range(20):
            assert np.array_equal(model.predict(X), expected)
        assert not t.recorder.force_flush(timeout_s=1)  # the export failed, and said so
    assert t.recorder.failed_exports == 1
