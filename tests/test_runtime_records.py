"""``ml.prediction`` records from the model runtimes: one per row, with the row's ID, inputs
(a DMatrix read back, an ONNX feed) and outputs (class, scores, classes), as from
scikit-learn."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import xgboost as xgb
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

import driftline
from driftline import semconv
from driftline.instrumentation import Recorder
from driftline.instrumentation._records import PredictionRecords, RecordSettings
from driftline.instrumentation.onnxruntime import OnnxRuntimeInstrumentor
from driftline.instrumentation.xgboost import XGBoostInstrumentor
from tests._otel import InMemoryMetricExporter

ROWS = 30


def _records_of(instrumentor: object, call: object) -> tuple[list, list[str]]:
    """(records, the call's prediction IDs) of ``call()`` with every row recorded."""
    logs = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    records = PredictionRecords(provider.get_logger("test"),
                                RecordSettings(ratio=1.0, per_second=1e6),
                                rng=np.random.default_rng(5))
    recorder = Recorder(InMemoryMetricExporter(), records=records)
    instrumentor.instrument(tracer_provider=TracerProvider(), recorder=recorder)
    try:
        call()
        ids = list(driftline.last_prediction_ids())
        assert recorder.force_flush()
    finally:
        instrumentor.uninstrument()
        recorder.shutdown()
    assert recorder.failed_records == 0
    return [r.log_record for r in logs.get_finished_logs()
            if r.log_record.event_name == semconv.EVENT_PREDICTION], ids


def test_dmatrix_rows_are_read_back_into_records() -> None:
    rng = np.random.default_rng(31)
    X = rng.normal(size=(ROWS, 2))
    X[3, 1] = np.nan
    booster = driftline.register(
        xgb.train({"objective": "binary:logistic", "nthread": 1},
                  xgb.DMatrix(X, label=(X[:, 0] > 0).astype(int)), 3), name="fraud")
    out = {}
    records, ids = _records_of(XGBoostInstrumentor(), lambda: out.setdefault(
        "p", booster.predict(xgb.DMatrix(X))))
    assert [r.attributes[semconv.ML_PREDICTION_ID] for r in records] == ids
    assert len(set(ids)) == ROWS
    positive = out["p"]
    for row, record in enumerate(records):
        assert record.attributes[semconv.ML_MODEL_FRAMEWORK] == "xgboost"
        assert record.attributes[semconv.ML_PREDICTION_LABEL] == str(int(positive[row] > 0.5))
        assert list(record.attributes[semconv.ML_PREDICTION_SCORES]) == pytest.approx(
            [1 - positive[row], positive[row]], rel=1e-6)
        assert record.body["f0"] == pytest.approx(X[row, 0], rel=1e-6)  # stored as float32
    assert records[3].body["f1"] == "nan"


def test_onnx_zipmap_records_carry_the_maps_classes_and_the_feed() -> None:
    rng = np.random.default_rng(32)
    X = rng.normal(size=(ROWS, 3)).astype(np.float32)
    model = LogisticRegression().fit(X, np.where(X[:, 0] > 0, "churn", "stay"))
    session = driftline.register(
        ort.InferenceSession(to_onnx(model, X[:1]).SerializeToString(),
                             providers=["CPUExecutionProvider"]), name="churn")
    out = {}
    records, ids = _records_of(OnnxRuntimeInstrumentor(), lambda: out.setdefault(
        "r", session.run(None, {"X": X})))
    labels, maps = out["r"]
    assert [r.attributes[semconv.ML_PREDICTION_ID] for r in records] == ids
    for row, record in enumerate(records):
        attributes = record.attributes
        assert attributes[semconv.ML_PREDICTION_LABEL] == labels[row]
        assert list(attributes[semconv.ML_PREDICTION_CLASSES]) == list(maps[row])
        assert list(attributes[semconv.ML_PREDICTION_SCORES]) == pytest.approx(
            list(maps[row].values()))
        assert record.body == pytest.approx({f"f{i}": float(X[row, i]) for i in range(3)})
