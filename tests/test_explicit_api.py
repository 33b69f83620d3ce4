"""The explicit API (issue 19): ``driftline.monitor(...).log`` and ``@driftline.observe``
report through the instrumentors' recorder, wire format and names; text columns travel as
descriptors, sequences as their projection; library calls inside report once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sklearn.linear_model import LogisticRegression

import driftline
from driftline import profile, semconv, text
from driftline.derived import LoggedDataError
from driftline.instrumentation import Limits, Recorder
from driftline.instrumentation._records import PredictionRecords, RecordSettings
from driftline.instrumentation.explicit import SCOPE, Explicit, MonitorError
from driftline.instrumentation.sklearn import SklearnInstrumentor
from driftline.projection import DEFAULT_COMPONENTS, DEFAULT_SEED, Projection
from tests._otel import InMemoryMetricExporter

RNG = np.random.default_rng(19)
NEVER_S = 3600.0  # the tests flush by hand


class App:
    """An ``Explicit`` with in-memory spans and metrics (and records when asked)."""

    def __init__(self, limits: Limits | None = None, records: bool = False) -> None:
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricExporter()
        self.logs = InMemoryLogRecordExporter()
        prediction_records = None
        if records:
            logger_provider = LoggerProvider()
            logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
            prediction_records = PredictionRecords(logger_provider.get_logger("t"),
                                                   RecordSettings(ratio=1.0, per_second=1e9))
        self.recorder = Recorder(self.metrics, export_interval_s=NEVER_S, limits=limits,
                                 records=prediction_records)
        self.api = Explicit(tracer_provider=provider, recorder=self.recorder)

    def flush(self) -> None:
        assert self.recorder.force_flush()

    def points(self, name: str) -> list[Any]:
        return list(self.metrics.points(name))

    def by_feature(self, name: str) -> dict[str, Any]:
        return {p.attributes[semconv.ML_FEATURE_NAME]: p for p in self.points(name)}

    def categories(self, feature: str) -> dict[str, int]:
        return {p.attributes[semconv.ML_FEATURE_CATEGORY]: p.value
                for p in self.points(semconv.ML_FEATURE_CATEGORY_METRIC)
                if p.attributes[semconv.ML_FEATURE_NAME] == feature}


@pytest.fixture
def app() -> Iterator[App]:
    built = App()
    yield built
    built.recorder.shutdown()


def _model_attributes(name: str, version: str) -> dict[str, str]:
    return {semconv.ML_MODEL_NAME: name, semconv.ML_MODEL_VERSION: version,
            semconv.ML_MODEL_FRAMEWORK: semconv.FRAMEWORK_CUSTOM,
            semconv.ML_OPERATION: semconv.OPERATION_PREDICT}


def test_monitor_log_reports_a_batch_like_an_instrumented_call(app: App) -> None:
    frame = pd.DataFrame({"age": RNG.normal(40, 5, 300),
                          "plan": RNG.choice(["basic", "pro"], 300)})
    labels = RNG.choice(["stay", "churn"], 300)
    with app.api.monitor("churn", version="3") as mon:
        mon.log(frame)
        mon.log(labels, role="prediction")
    app.flush()

    [rows] = app.points(semconv.ML_PREDICT_ROWS)
    assert rows.value == 300
    assert dict(rows.attributes) == _model_attributes("churn", "3")
    age = app.by_feature(semconv.ML_FEATURE_VALUE)["age"]
    assert age.count == 300 and age.sum == pytest.approx(frame["age"].sum(), rel=1e-12)
    assert age.min == frame["age"].min() and age.max == frame["age"].max()
    assert app.categories("plan") == frame["plan"].value_counts().to_dict()
    classes = {p.attributes[semconv.ML_PREDICTION_CLASS]: p.value
               for p in app.points(semconv.ML_PREDICTION_CLASS_METRIC)}
    assert classes == pd.Series(labels).value_counts().to_dict()
    [span] = app.spans.get_finished_spans()
    assert span.name == "predict churn"
    assert span.instrumentation_scope.name == SCOPE
    assert span.attributes[semconv.ML_BATCH_SIZE] == 300
    assert span.attributes[semconv.ML_FEATURE_COUNT] == 2
    assert span.attributes[semconv.ML_MODEL_FRAMEWORK] == semconv.FRAMEWORK_CUSTOM


def test_scalars_logged_call_by_call_add_up(app: App) -> None:
    values = RNG.normal(size=50)
    for value in values:
        with app.api.monitor("score", version="1") as mon:
            mon.log(float(value), name="x")
            mon.log(float(value) * 2, role="prediction")
    app.flush()
    [rows] = app.points(semconv.ML_PREDICT_ROWS)
    assert rows.value == 50
    x = app.by_feature(semconv.ML_FEATURE_VALUE)["x"]
    assert x.count == 50 and x.sum == pytest.approx(values.sum(), abs=1e-9)
    [prediction] = app.points(semconv.ML_PREDICTION_VALUE)
    assert prediction.sum == pytest.approx(2 * values.sum(), abs=1e-9)
    assert len(app.spans.get_finished_spans()) == 50


class Watched:
    """An array-like that counts how often it is read."""

    def __init__(self, values: np.ndarray) -> None:
        self.values, self.reads = values, 0

    def __len__(self) -> int:
        return len(self.values)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        self.reads += 1
        return self.values if dtype is None else self.values.astype(dtype)


def test_the_caller_only_hands_references_over(app: App) -> None:
    watched = Watched(RNG.normal(size=100))
    with app.api.monitor("lazy") as mon:
        mon.log(watched, name="x")
    assert watched.reads == 0  # nothing read in the caller
    app.flush()
    assert watched.reads >= 1
    assert app.by_feature(semconv.ML_FEATURE_VALUE)["x"].count == 100


def test_an_error_in_the_block_marks_the_span_and_the_duration_and_propagates(
        app: App) -> None:
    with pytest.raises(KeyError), app.api.monitor("broken") as mon:
        mon.log([1.0, 2.0], name="x")
        raise KeyError("missing")
    app.flush()
    [span] = app.spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[semconv.ERROR_TYPE] == "KeyError"
    [duration] = app.points(semconv.ML_PREDICT_DURATION)
    assert duration.attributes[semconv.ERROR_TYPE] == "KeyError"


@pytest.mark.parametrize("role, data_type, message", [
    ("label", None, "unknown role 'label'"),
    ("target", None, "record_ground_truth"),
    ("feature", "image", "unknown data type 'image'"),
])
def test_a_bad_role_or_data_type_fails_in_the_caller(app: App, role: str,
                                                     data_type: str | None,
                                                     message: str) -> None:
    with pytest.raises((MonitorError, LoggedDataError), match=message), \
            app.api.monitor("m") as mon:
        mon.log([1.0], name="x", role=role, data_type=data_type)


def test_a_second_prediction_in_one_call_is_refused(app: App) -> None:
    with pytest.raises(MonitorError, match="one prediction per call"), \
            app.api.monitor("m") as mon:
        mon.log([1], role="prediction")
        mon.log([2], role="prediction")


@pytest.mark.parametrize("inputs, expected", [
    (pd.DataFrame({"a": [1.0, 3.0], "b": ["x", "y"]}), {"a": 4.0, "b": {"x": 1, "y": 1}}),
    (np.array([[1.0, 5.0], [3.0, 7.0]]), {"f0": 4.0, "f1": 12.0}),
    ({"a": 2.5, "b": "x"}, {"a": 2.5, "b": {"x": 1}}),
    ([{"a": 1.0, "b": "x"}, {"a": 2.0, "b": "x"}], {"a": 3.0, "b": {"x": 2}}),
], ids=["dataframe", "ndarray", "dict", "list_of_dicts"])
def test_observe_reads_the_first_argument_as_features_and_the_result_as_prediction(
        app: App, inputs: Any, expected: dict[str, Any]) -> None:
    @app.api.observe(model="pricing", version="2")
    def predict(x: Any) -> np.ndarray:
        return np.full(len(x) if not isinstance(x, dict) else 1, 9.5)

    assert list(predict(inputs)) == [9.5] * (1 if isinstance(inputs, dict) else 2)
    app.flush()
    numeric = app.by_feature(semconv.ML_FEATURE_VALUE)
    for name, value in expected.items():
        if isinstance(value, dict):
            assert app.categories(name) == value
        else:
            assert numeric[name].sum == value
    [prediction] = app.points(semconv.ML_PREDICTION_VALUE)
    assert prediction.sum == 9.5 * prediction.count
    [span] = app.spans.get_finished_spans()
    assert span.name == "predict pricing"


def test_observe_on_a_method_reads_its_first_argument_not_self(app: App) -> None:
    class Service:
        @app.api.observe(model="svc", prediction_type="categorical")
        def predict(self, rows: np.ndarray) -> np.ndarray:
            return (rows[:, 0] > 0).astype(float)

    Service().predict(np.array([[1.0], [-1.0], [2.0]]))
    app.flush()
    assert app.by_feature(semconv.ML_FEATURE_VALUE)["f0"].sum == 2.0
    classes = {p.attributes[semconv.ML_PREDICTION_CLASS]: p.value
               for p in app.points(semconv.ML_PREDICTION_CLASS_METRIC)}
    assert classes == {"1": 2, "0": 1}  # declared categorical: labels, not values


def test_observe_around_an_instrumented_sklearn_predict_reports_once(app: App) -> None:
    X = RNG.normal(size=(200, 3))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    inner = InMemoryMetricExporter()
    inner_spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(inner_spans))
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=provider, metric_exporter=inner)
    try:
        @app.api.observe(model="wrapped")
        def predict(rows: np.ndarray) -> np.ndarray:
            return model.predict(rows)

        predict(X[:10])
        model.predict(X[:5])  # outside: sklearn reports this one
    finally:
        instrumentor.uninstrument()
    app.flush()
    [outer] = app.points(semconv.ML_PREDICT_ROWS)
    assert outer.value == 10
    assert [p.value for p in inner.points(semconv.ML_PREDICT_ROWS)] == [5]
    assert [s.name for s in inner_spans.get_finished_spans()] == ["predict LogisticRegression"]
    assert [s.name for s in app.spans.get_finished_spans()] == ["predict wrapped"]


def test_text_travels_as_descriptors_never_as_text() -> None:
    app = App(records=True)
    reviews = ["Great product, works well", "", "Très bien", "bad", None]
    vocabulary = frozenset({"great", "product", "works", "well", "bad"})
    reference = profile.Profile("shop", "1", 0, 0, {},
                                text={"review": text.Vocabulary(tuple(vocabulary),
                                                                (1,) * len(vocabulary))})
    with app.api.monitor("shop", version="1", reference=reference) as mon:
        mon.log(reviews, name="review", data_type="text")
        mon.log([1, 0, 1, 0, 1], role="prediction")
    app.flush()
    numeric = app.by_feature(semconv.ML_FEATURE_VALUE)
    expected = dict(text.descriptors("review", reviews, vocabulary))
    # Checked by hand: the descriptors of the four present rows.
    assert list(expected["review.chars"][:4]) == [25, 0, 9, 3]
    assert list(expected["review.tokens"][:4]) == [4, 0, 2, 1]
    assert list(expected["review.oov_share"][[0, 2, 3]]) == [0.0, 1.0, 0.0]
    assert list(expected["review.empty"][:4]) == [0, 1, 0, 0]
    assert expected["review.non_ascii_share"][2] == pytest.approx(1 / 9)
    for name, values in expected.items():
        present = values[np.isfinite(values)]
        assert numeric[name].count == present.size, name
        assert numeric[name].sum == pytest.approx(present.sum()), name
    missing = {p.attributes[semconv.ML_FEATURE_NAME]: p.value
               for p in app.points(semconv.ML_FEATURE_MISSING)}
    # None is missing everywhere; "" has no tokens, so no share of unknown ones.
    assert missing["review.chars"] == 1 and missing["review.oov_share"] == 2
    assert not app.categories("review")
    # The records carry the descriptors, and no text anywhere.
    records = [r.log_record for r in app.logs.get_finished_logs()]
    assert len(records) == 5
    assert {r.attributes[semconv.ML_PREDICTION_ID] for r in records} == set(mon.prediction_ids)
    for record in records:
        assert "review" not in record.body and "review.chars" in record.body
        assert not any(isinstance(v, str) and "bien" in v for v in record.body.values())
    app.recorder.shutdown()


def test_a_mostly_distinct_string_column_is_text_and_stays_text(app: App) -> None:
    sentences = [f"order {i} arrived late" for i in range(40)]
    plans = ["basic", "pro"] * 20
    with app.api.monitor("support") as mon:
        mon.log(pd.DataFrame({"message": sentences, "plan": plans}))
    with app.api.monitor("support") as mon:  # one row: text because the column was text
        mon.log({"message": "a new one", "plan": "pro"})
    app.flush()
    numeric = app.by_feature(semconv.ML_FEATURE_VALUE)
    assert numeric["message.chars"].count == 41
    assert numeric["message.tokens"].sum == 4 * 40 + 3
    assert "message.oov_share" not in numeric  # no reference vocabulary given
    assert not app.categories("message")
    assert app.categories("plan") == {"basic": 20, "pro": 21}


def test_a_logged_sequence_is_projected_like_a_wide_torch_input(app: App) -> None:
    embeddings = RNG.normal(size=(64, 96))
    with app.api.monitor("search") as mon:
        mon.log(embeddings, name="query", data_type="numerical_sequence")
    app.flush()
    numeric = app.by_feature(semconv.ML_FEATURE_VALUE)
    expected = dict(Projection(DEFAULT_SEED, 96, DEFAULT_COMPONENTS).apply(embeddings))
    assert len(expected) == DEFAULT_COMPONENTS + 1
    for name, values in expected.items():
        column = numeric[f"query.{name}"]
        assert column.sum == pytest.approx(values.sum(), rel=1e-9, abs=1e-9)
        assert column.count == 64


def test_cardinality_caps_fold_names_and_models(app: App) -> None:
    capped = App(Limits(max_features=3, top_k_categories=2, max_streams=2))
    for model in ("a", "b", "c", "d"):
        with capped.api.monitor(model) as mon:
            mon.log(pd.Series(["p", "q", "r", "r"], name="cat"))
            mon.log({f"x{i}": float(i) for i in range(5)})  # one value for the 4 rows
    capped.flush()
    models = {p.attributes[semconv.ML_MODEL_NAME]
              for p in capped.points(semconv.ML_PREDICT_ROWS)}
    assert models == {"a", "b", semconv.OVERFLOW_VALUE}
    names = {p.attributes[semconv.ML_FEATURE_NAME]
             for p in capped.points(semconv.ML_FEATURE_VALUE)}
    assert names == {"x0", "x1", semconv.OVERFLOW_VALUE}  # cat, x0, x1: three names
    categories = {p.attributes[semconv.ML_FEATURE_CATEGORY]: p.value
                  for p in capped.points(semconv.ML_FEATURE_CATEGORY_METRIC)
                  if p.attributes[semconv.ML_MODEL_NAME] == "a"}
    assert categories["r"] == 2 and categories[semconv.OVERFLOW_VALUE] == 1
    assert len(categories) == 3  # top 2 and the rest
    overflow = {p.attributes[semconv.ML_CARDINALITY_ATTRIBUTE]
                for p in capped.points(semconv.ML_CARDINALITY_OVERFLOW)}
    assert {semconv.ML_FEATURE_NAME, semconv.ML_FEATURE_CATEGORY} <= overflow
    capped.recorder.shutdown()


def test_profile_capture_takes_what_log_takes_and_names_columns_alike(app: App) -> None:
    rows = 400
    data = {"age": RNG.normal(40, 5, rows),
            "review": [f"item {i} was fine" for i in range(rows)],
            "query": RNG.normal(size=(rows, 80))}
    reference = profile.capture(data, RNG.choice(["a", "b"], rows), model="m",
                                data_types={"review": "text"})
    with app.api.monitor("m", reference=reference) as mon:
        mon.log(data["age"], name="age")
        mon.log(data["review"], name="review", data_type="text")
        mon.log(data["query"], name="query")
    app.flush()
    logged = set(app.by_feature(semconv.ML_FEATURE_VALUE))
    assert logged == {c.name for c in reference.features()}
    assert reference.sequences == {"query": Projection(DEFAULT_SEED, 80)}
    assert set(reference.text) == {"review"}
    again = profile.from_dict(reference.to_dict())
    assert again.text == reference.text and again.sequences == reference.sequences


def test_the_reference_oov_share_is_measured_on_held_out_rows() -> None:
    """Rare tokens: a vocabulary learned from rows that are then scored would call them
    known; held-out rows score as unseen production text from the same source does."""
    def corpus(rng: np.random.Generator, rows: int) -> list[str]:
        common = [f"w{i}" for i in range(50)]
        return [" ".join([*rng.choice(common, 6), f"rare{rng.integers(10**9)}"])
                for _ in range(rows)]

    reference = profile.capture({"t": corpus(np.random.default_rng(1), 3000)}, model="m")
    vocabulary = reference.vocabularies()["t"]
    production = dict(text.descriptors("t", corpus(np.random.default_rng(2), 1000),
                                       vocabulary))["t.oov_share"]
    column = reference.columns["t.oov_share"]
    assert column.mean == pytest.approx(production.mean(), abs=0.01)  # 1/7 each
    assert column.mean == pytest.approx(1 / 7, abs=0.01)


def test_importing_driftline_loads_neither_the_sdk_nor_the_recorder() -> None:
    code = ("import sys, driftline; "
            "print(sorted(m for m in sys.modules if m.startswith(("
            "'driftline.instrumentation', 'opentelemetry.sdk'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
    assert callable(driftline.monitor) and callable(driftline.observe)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_profile_command_reads_declared_and_detected_text_columns(tmp_path: Any,
                                                                       suffix: str) -> None:
    from driftline.cli import main

    rows = 300
    frame = pd.DataFrame({"amount": RNG.normal(size=rows),
                          "review": [f"review number {i} " + "x" * (i % 7) for i in range(rows)],
                          "note": ["short"] * rows})
    data = tmp_path / f"train{suffix}"
    frame.to_csv(data, index=False) if suffix == ".csv" else frame.to_parquet(data)
    out = tmp_path / "p.json"
    assert main(["profile", str(data), "-o", str(out), "--model", "m",
                 "--data-type", "note=text"]) == 0
    built = profile.load(out)
    expected = dict(text.descriptors("review", frame["review"]))
    chars = built.columns["review.chars"]
    assert chars.count == rows and chars.mean == pytest.approx(expected["review.chars"].mean())
    assert set(built.text) == {"review", "note"}  # detected, and declared
    assert built.columns["note.chars"].mean == 5.0
    assert "review" not in built.columns and "note" not in built.columns
    assert main(["profile", str(data), "-o", str(out), "--model", "m",
                 "--data-type", "note=words"]) == 2
    assert main(["profile", str(data), "-o", str(out), "--model", "m",
                 "--data-type", "note"]) == 2


def test_a_reference_path_is_read_once_per_model_not_per_call(app: App, tmp_path: Any,
                                                              monkeypatch: Any) -> None:
    path = tmp_path / "m.json"
    profile.save(profile.capture({"t": [f"text {i}" for i in range(50)]}, model="m"), path)
    loads = []
    real_load = profile.load
    monkeypatch.setattr(profile, "load", lambda p: loads.append(p) or real_load(p))

    @app.api.observe(model="m", data_types={"t": "text"}, reference=path)
    def predict(row: dict[str, str]) -> int:
        return 1

    for i in range(5):
        with app.api.monitor("m", reference=path) as mon:
            mon.log([f"text {i + 1}"], name="t", data_type="text")  # row 0 was held out
        predict({"t": "text 1"})
    assert len(loads) == 2  # one state for monitor(), one for the decorated function
    app.flush()
    numeric = app.by_feature(semconv.ML_FEATURE_VALUE)
    assert numeric["t.oov_share"].count == 10 and numeric["t.oov_share"].sum == 0.0


def test_a_text_column_of_an_instrumented_sklearn_pipeline_travels_as_descriptors() -> None:
    """The profile of a DataFrame with a text column holds its descriptors, so production
    through the scikit-learn instrumentor must send them too, never the text as categories."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    rows = 60
    frame = pd.DataFrame({"amount": RNG.normal(size=rows),
                          "review": [f"parcel {i} came {'late' if i % 2 else 'early'}"
                                     for i in range(rows)]})
    model = make_pipeline(
        ColumnTransformer([("text", TfidfVectorizer(), "review"),
                           ("number", "passthrough", ["amount"])]),
        LogisticRegression()).fit(frame, np.arange(rows) % 2)
    reference = profile.capture(frame, model.predict(frame), model="m")
    assert "review.chars" in reference.columns and "review" not in reference.columns
    exporter = InMemoryMetricExporter()
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(metric_exporter=exporter)
    try:
        model.predict(frame)
    finally:
        instrumentor.uninstrument()
    names = {p.attributes[semconv.ML_FEATURE_NAME]
             for p in exporter.points(semconv.ML_FEATURE_VALUE)}
    assert names == {c.name for c in reference.features()} - {"review.oov_share"}
    assert not [p for p in exporter.points(semconv.ML_FEATURE_CATEGORY_METRIC)
                if p.attributes[semconv.ML_FEATURE_NAME] == "review"]


def test_a_table_derivation_adds_a_column_in_the_recorder_and_in_the_profile() -> None:
    """The mechanism another derived column (a reconstruction error) plugs into: computed
    over all of a call's columns, in the recorder thread, and alike in the profile."""
    def row_norm(columns: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
        numeric = [v for _, v in columns if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
        return [("row_norm", np.sqrt(sum(v * v for v in numeric)))]

    exporter = InMemoryMetricExporter()
    recorder = Recorder(exporter, export_interval_s=NEVER_S)
    api = Explicit(recorder=recorder, table_derivations=[row_norm])
    X = RNG.normal(size=(30, 2))
    with api.monitor("m") as mon:
        mon.log(X)  # a plain array: read by the reader, not staged whole
    assert recorder.force_flush()
    recorder.shutdown()
    norms = {p.attributes[semconv.ML_FEATURE_NAME]: p
             for p in exporter.points(semconv.ML_FEATURE_VALUE)}["row_norm"]
    assert norms.sum == pytest.approx(np.linalg.norm(X, axis=1).sum(), rel=1e-12)
    builder = profile.ProfileBuilder("m", table_derivations=[row_norm])
    profile.add_chunk(builder, X)
    column = builder.build().columns["row_norm"]
    assert column.mean == pytest.approx(np.linalg.norm(X, axis=1).mean(), rel=1e-12)


def test_compare_reads_the_current_files_text_against_the_references_vocabulary(
        tmp_path: Any) -> None:
    """Each side's own vocabulary would make a new vocabulary look familiar; production
    is scored against the reference's, and so is the current side of a comparison."""
    from driftline import compare

    def reviews(words: list[str], rows: int) -> pd.DataFrame:
        rng = np.random.default_rng(len(words))
        return pd.DataFrame({"review": [" ".join(rng.choice(words, 8)) for _ in range(rows)]})

    old = [f"old{i:02d}" for i in range(40)]  # one length: only the vocabulary changes
    new = [f"new{i:02d}" for i in range(40)]
    reviews(old, 2000).to_csv(tmp_path / "train.csv", index=False)
    reviews(old[:20] + new[:20], 2000).to_csv(tmp_path / "live.csv", index=False)
    reference, current = compare.load_pair(tmp_path / "train.csv", tmp_path / "live.csv")
    oov = current.columns["review.oov_share"]
    assert oov.count == 2000  # every row scored, none held out
    assert oov.mean == pytest.approx(0.5, abs=0.03)  # half the words are not the reference's
    assert reference.columns["review.oov_share"].mean == 0.0
    verdicts = {r.column: r.drifted for r in compare.compare(reference, current).columns}
    assert verdicts["review.oov_share"] and not verdicts["review.chars"]


def test_a_monitored_block_around_an_instrumented_torch_model_reports_once(app: App) -> None:
    import torch

    from driftline.instrumentation.torch import TorchInstrumentor

    module = torch.nn.Linear(4, 3).eval()
    inner = InMemoryMetricExporter()
    instrumentor = TorchInstrumentor()
    instrumentor.instrument(metric_exporter=inner)
    try:
        x = torch.randn(8, 4)
        with torch.no_grad(), app.api.monitor("classifier") as mon:
            scores = module(x)
            mon.log(x.numpy())
            mon.log(scores.argmax(dim=1).numpy(), role="prediction")
        with torch.no_grad():
            module(x[:2])  # outside: the instrumentor reports this one
    finally:
        instrumentor.uninstrument()
    app.flush()
    assert [p.value for p in app.points(semconv.ML_PREDICT_ROWS)] == [8]
    assert [p.value for p in inner.points(semconv.ML_PREDICT_ROWS)] == [2]


def test_a_scalar_logged_with_a_batch_holds_for_every_row_and_a_mismatch_is_counted(
        app: App, caplog: Any) -> None:
    with app.api.monitor("m") as mon:
        mon.log(np.arange(4.0), name="x")
        mon.log("eu-west", name="region")  # one value for the whole batch
    with app.api.monitor("m") as mon:
        mon.log(np.arange(4.0), name="x")
        mon.log([1.0, 2.0], name="y")  # two rows for a call of four: refused, counted
    app.flush()
    assert app.categories("region") == {"eu-west": 4}
    assert app.by_feature(semconv.ML_FEATURE_VALUE)["x"].count == 4
    assert app.recorder.failed_aggregations == 1
    assert "2 rows, the call has 4" in caplog.text
    [rows] = app.points(semconv.ML_PREDICT_ROWS)
    assert rows.value == 8  # the refused call's rows still count


def test_distinct_single_token_strings_stay_categorical(app: App) -> None:
    """Identifiers are distinct too; read as text they would cost a Python loop per row
    in every profile and drift by their lengths."""
    ids = [f"cust-{i:06d}" for i in range(100)]
    built = profile.capture(pd.DataFrame({"customer_id": ids}), model="m")
    assert built.columns["customer_id"].kind == profile.KIND_CATEGORICAL and not built.text
    with app.api.monitor("m") as mon:
        mon.log(ids, name="customer_id")
    app.flush()
    assert sum(app.categories("customer_id").values()) == 100


def test_one_sequence_logged_for_a_one_row_call_is_one_row(app: App) -> None:
    embedding = list(RNG.normal(size=96))
    with app.api.monitor("search") as mon:
        mon.log(embedding, name="query", data_type="numerical_sequence")
        mon.log(0.5, name="score")
    app.flush()
    [rows] = app.points(semconv.ML_PREDICT_ROWS)
    assert rows.value == 1
    numeric = app.by_feature(semconv.ML_FEATURE_VALUE)
    [(_, norm)] = [c for c in Projection(DEFAULT_SEED, 96).apply(np.array([embedding]))
                   if c[0] == semconv.FEATURE_L2_NORM]
    assert numeric["query.l2_norm"].count == 1
    assert numeric["query.l2_norm"].sum == pytest.approx(norm[0])
    assert numeric["score"].count == 1


def test_records_of_an_observed_one_row_call_carry_its_row_and_label() -> None:
    app = App(records=True)

    @app.api.observe(model="refunds")
    def predict_one(row: dict[str, Any]) -> str:
        return "refund"

    predict_one({"amount": 61.0, "region": "eu"})
    app.flush()
    [record] = [r.log_record for r in app.logs.get_finished_logs()]
    assert record.attributes[semconv.ML_PREDICTION_LABEL] == "refund"
    assert dict(record.body) == {"amount": 61.0, "region": "eu"}
    assert app.recorder.failed_records == 0
    app.recorder.shutdown()
