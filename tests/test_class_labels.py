"""One class label whatever the source: profiles from CSV/Parquet/pandas/NumPy, the recorder
and the processor agree on the text of a class, and classification is inferred."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from sklearn.linear_model import LogisticRegression

from driftline import labels, profile, semconv
from driftline.instrumentation import Recorder
from driftline.instrumentation.sklearn import SklearnInstrumentor
from driftline.processor.ml_drift.processor import MlDriftConfig, MlDriftProcessor
from tests._otel import InMemoryMetricExporter
from tests.processor.ml_drift.test_ml_drift import Capture, app_batch, gauges

NS = 1_000_000_000
CLASS = semconv.PROFILE_COLUMN_PREDICTION_CLASS


@pytest.mark.parametrize(("values", "expected"), [
    ([0, 1, 2], ["0", "1", "2"]),
    (np.array([0, 1], dtype=np.int8), ["0", "1"]),
    (np.array([0, 1], dtype=np.uint64), ["0", "1"]),
    (np.array([0.0, 1.0, -2.0]), ["0", "1", "-2"]),
    (np.array([0.0, 1.0], dtype=np.float32), ["0", "1"]),
    (np.array([0.5, np.nan, np.inf]), ["0.5", None, None]),
    (np.array([True, False]), ["true", "false"]),
    (np.array(["0.0", "1.0", "yes", "01", "1", "1e0", "0.50", "12345678901234567891"]),
     ["0", "1", "yes", "1", "1", "1", "0.5", "12345678901234567891"]),
    (np.array([np.int64(1), 1.0, "1.0", None, True], dtype=object),
     ["1", "1", "1", None, "true"]),
    (pd.array([1, None, 0], dtype="Int64").to_numpy(dtype=object), ["1", None, "0"]),
])
def test_every_source_of_a_label_gives_one_text(values, expected) -> None:
    assert labels.class_labels(values).tolist() == expected
    assert [labels.class_label(v) for v in np.asarray(values).tolist()] == expected


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("dtype", ["int", "float", "bool-as-int", "str"])
def test_file_prediction_columns_are_profiled_with_canonical_classes(
        tmp_path: Path, suffix: str, dtype: str) -> None:
    rng = np.random.default_rng(3)
    predicted = rng.choice([0, 1], 300)
    column = {"int": predicted, "float": predicted.astype(float),
              "bool-as-int": predicted.astype(np.int8),
              "str": np.array([f"{v}.0" for v in predicted])}[dtype]
    frame = pd.DataFrame({"age": rng.normal(40, 10, 300), "prediction": column})
    path = _write(frame, tmp_path / f"train{suffix}")
    # Floats need --task classification (a float column may be a regressor's output), and
    # CSV has no types (pandas reads "1.0" as a float); the others are classes by dtype.
    task = "classification" if dtype == "float" or (dtype, suffix) == ("str", ".csv") \
        else None
    built = profile.profile_file(path, model="m", prediction_column="prediction", task=task)
    classes = built.columns[CLASS]
    assert classes.kind == profile.KIND_CATEGORICAL
    assert classes.frequencies == {"0": int((predicted == 0).sum()),
                                   "1": int((predicted == 1).sum())}
    assert semconv.ML_PREDICTION_VALUE not in built.columns
    assert "prediction" not in built.columns


def test_capture_with_probabilities_is_a_classifier_even_with_float_labels() -> None:
    rng = np.random.default_rng(4)
    scores = rng.dirichlet([1, 1], 500)
    predicted = scores.argmax(axis=1).astype(float)  # 0.0 / 1.0, as some pipelines return
    built = profile.capture(rng.normal(size=(500, 2)), predicted, probabilities=scores,
                            model="m")
    assert semconv.ML_PREDICTION_VALUE not in built.columns
    assert built.columns[CLASS].frequencies == {"0": int((predicted == 0).sum()),
                                                "1": int((predicted == 1).sum())}


def test_the_target_follows_the_model_outputs() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 2))
    # A classifier's target read from a file as floats: classes, spelled as predictions are.
    classified = profile.capture(X, rng.choice([0, 1], 200), target=rng.choice([0.0, 1.0], 200),
                                 model="m").columns[profile.DEFAULT_TARGET_NAME]
    assert classified.kind == profile.KIND_CATEGORICAL
    assert set(classified.frequencies) == {"0", "1"}
    # A regressor's integer target (counts) stays numeric.
    counted = profile.capture(X, rng.normal(size=200), target=rng.poisson(3, 200),
                              model="m").columns[profile.DEFAULT_TARGET_NAME]
    assert counted.kind == profile.KIND_NUMERIC and counted.histogram.count == 200


def test_task_regression_overrides_an_integer_column() -> None:
    built = profile.capture(np.zeros((10, 1)), np.arange(10), model="m", task="regression")
    assert built.columns[semconv.ML_PREDICTION_VALUE].histogram.count == 10
    assert CLASS not in built.columns


def test_old_profile_with_float_class_texts_matches_integer_traffic() -> None:
    """Profiles written before the canonical label held ``"0.0"``; they are read as ``"0"``."""
    built = profile.capture(np.zeros((4, 1)), np.array(["0", "1", "1", "1"]), model="m")
    data = built.to_dict()
    [column] = [c for c in data["columns"] if c["name"] == CLASS]
    column["frequencies"] = {"0.0": 1, "1.0": 3}
    assert profile.from_dict(data).columns[CLASS].frequencies == {"0": 1, "1": 3}


def _service_traffic(model: LogisticRegression, X: np.ndarray) -> list:
    """What the real recorder exports for ``model.predict(X)``, as OTLP protobuf."""
    exporter = InMemoryMetricExporter()
    recorder = Recorder(exporter)
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(recorder=recorder)
    try:
        model.predict(X)
        assert recorder.force_flush()
    finally:
        instrumentor.uninstrument()
        recorder.shutdown()
    return [rm for data in exporter.exported
            for rm in encode_metrics(data).resource_metrics]


def _processor(built: profile.Profile, now_ns: list[int], capture: Capture
               ) -> MlDriftProcessor:
    config = MlDriftConfig(window="10s", grace="1s", min_rows=100)
    return MlDriftProcessor(config, capture, clock=lambda: now_ns[0],
                            profiles={(built.model_name, built.model_version): built})


def test_csv_profile_with_float_labels_and_int_traffic_shows_no_prediction_drift(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    X_train = rng.normal(size=(4000, 3))
    y = (X_train[:, 0] + rng.normal(0, 0.5, 4000) > 0).astype(int)
    model = LogisticRegression().fit(X_train, y)
    frame = pd.DataFrame(X_train, columns=["f0", "f1", "f2"])
    frame["prediction"] = model.predict(X_train).astype(float)  # written as 0.0 / 1.0
    path = _write(frame, tmp_path / "train.csv")
    assert "0.0" in path.read_text()
    built = profile.profile_file(path, model=type(model).__name__,
                                 prediction_column="prediction", task="classification")

    now_ns = [time.time_ns()]
    capture = Capture()
    proc = _processor(built, now_ns, capture)
    for batch in _service_traffic(model, rng.normal(size=(2000, 3))):
        proc.consume_metrics([batch])
    now_ns[0] += 30 * NS
    values = gauges(proc.evaluate_due())
    detected = {k: v for k, v in values.items() if k[0] == semconv.ML_DRIFT_DETECTED}
    assert detected[(semconv.ML_DRIFT_DETECTED, CLASS, semconv.DRIFT_METHOD_JENSENSHANNON)] \
        == 0, values
    assert values[(semconv.ML_DRIFT_SCORE, CLASS, semconv.DRIFT_METHOD_JENSENSHANNON)] < 0.05


def test_profile_and_traffic_without_a_shared_prediction_column_are_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(12)
    # Profiled as a regressor (float labels, no --task), served as a classifier.
    built = profile.capture(pd.DataFrame({"age": rng.normal(40, 10, 2000)}),
                            rng.choice([0.0, 1.0], 2000), model="churn", version="3")
    assert semconv.ML_PREDICTION_VALUE in built.columns
    now_ns = [1_700_000_000 * NS]
    capture = Capture()
    proc = _processor(built, now_ns, capture)
    caplog.set_level(logging.WARNING, logger="driftline.processor.ml_drift.processor")
    for window in range(3):
        start = now_ns[0] + window * 10 * NS
        proc.consume_metrics(app_batch(start + NS, {"age": rng.normal(40, 10, 300)},
                                       classes={"0": 150, "1": 150}))
    now_ns[0] += 60 * NS
    proc.evaluate_due()
    warnings = [r.getMessage() for r in caplog.records
                if semconv.ML_PREDICTION_CLASS_METRIC in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert "--task classification" in warnings[0]
    assert "churn" in warnings[0]


def test_profile_and_traffic_with_disjoint_classes_are_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(13)
    built = profile.capture(pd.DataFrame({"age": rng.normal(40, 10, 2000)}),
                            rng.choice(["no", "yes"], 2000), model="churn", version="3")
    now_ns = [1_700_000_000 * NS]
    proc = _processor(built, now_ns, Capture())
    caplog.set_level(logging.WARNING, logger="driftline.processor.ml_drift.processor")
    for window in range(2):
        start = now_ns[0] + window * 10 * NS
        proc.consume_metrics(app_batch(start + NS, {"age": rng.normal(40, 10, 300)},
                                       classes={"0": 150, "1": 150}))
    now_ns[0] += 60 * NS
    proc.evaluate_due()
    warnings = [r.getMessage() for r in caplog.records if "no class in common" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
