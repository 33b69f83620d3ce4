"""``ml.prediction`` records and ground truth from the app: IDs chosen or generated, one
record per sampled row with the row's inputs and outputs, sampling and the per-second cap,
``ml.ground_truth`` records; end to end into a real processor's logs pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.trace import TracerProvider
from sklearn.linear_model import LinearRegression, LogisticRegression

import driftline
from driftline import semconv
from driftline.exporters import read_logs
from driftline.instrumentation import Recorder
from driftline.instrumentation._env import prediction_records_from_kwargs
from driftline.instrumentation._records import PredictionRecords, RecordSettings
from driftline.instrumentation.sklearn import SklearnInstrumentor
from driftline.instrumentation.torch import TorchInstrumentor
from driftline.predictions import GeneratedIds
from tests._collector import LOOPBACK, PROTOCOL_GRPC, running_collector
from tests._otel import InMemoryMetricExporter
from tests.conftest import require_torch

REPO = Path(__file__).resolve().parents[3]


class _Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def logs() -> InMemoryLogRecordExporter:
    return InMemoryLogRecordExporter()


def _instrumented(logs: InMemoryLogRecordExporter, settings: RecordSettings,
                  clock: _Clock | None = None):
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    records = PredictionRecords(provider.get_logger("test"), settings,
                                rng=np.random.default_rng(5), clock=clock or _Clock())
    recorder = Recorder(InMemoryMetricExporter(), records=records)
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), recorder=recorder)
    return instrumentor, recorder, records


def _records(logs: InMemoryLogRecordExporter, event: str = semconv.EVENT_PREDICTION):
    found = [r.log_record for r in logs.get_finished_logs()]
    return [r for r in found if r.event_name == event]


def test_one_record_per_row_with_id_inputs_label_and_scores(
        logs: InMemoryLogRecordExporter) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 2))
    model = LogisticRegression().fit(X, np.where(X[:, 0] > 0, "churn", "stay"))
    driftline.register(model, name="churn", version="4")
    instrumentor, recorder, _ = _instrumented(logs, RecordSettings(ratio=1.0, per_second=1e6))
    try:
        probabilities = model.predict_proba(X)
        ids = list(driftline.last_prediction_ids())
        assert recorder.force_flush()
    finally:
        instrumentor.uninstrument()
    records = _records(logs)
    assert [r.attributes[semconv.ML_PREDICTION_ID] for r in records] == ids
    assert len(set(ids)) == 30
    for row, record in enumerate(records):
        attributes = record.attributes
        assert attributes[semconv.ML_MODEL_NAME] == "churn"
        assert attributes[semconv.ML_MODEL_VERSION] == "4"
        assert attributes[semconv.ML_OPERATION] == "predict_proba"
        assert list(attributes[semconv.ML_PREDICTION_CLASSES]) == ["churn", "stay"]
        assert list(attributes[semconv.ML_PREDICTION_SCORES]) == pytest.approx(
            probabilities[row])
        expected = ["churn", "stay"][int(np.argmax(probabilities[row]))]
        assert attributes[semconv.ML_PREDICTION_LABEL] == expected
        assert record.body == {"f0": pytest.approx(X[row, 0]), "f1": pytest.approx(X[row, 1])}


def test_chosen_ids_are_used_and_a_length_mismatch_gets_generated_ones(
        logs: InMemoryLogRecordExporter) -> None:
    X = np.arange(12, dtype=float).reshape(6, 2)
    model = LinearRegression().fit(X, X.sum(axis=1))
    instrumentor, recorder, _ = _instrumented(logs, RecordSettings(ratio=1.0, per_second=1e6))
    try:
        with driftline.prediction_ids(["a", "b", "c"]):
            predictions = model.predict(X[:3])
            assert list(driftline.last_prediction_ids()) == ["a", "b", "c"]
            model.predict(X)  # 6 rows, 3 IDs: generated instead
            generated = driftline.last_prediction_ids()
        assert recorder.force_flush()
    finally:
        instrumentor.uninstrument()
    assert isinstance(generated, GeneratedIds) and len(generated) == 6
    records = _records(logs)
    assert [r.attributes[semconv.ML_PREDICTION_ID] for r in records] == [
        "a", "b", "c", *generated]
    assert [r.attributes[semconv.ML_PREDICTION_VALUE_ATTRIBUTE] for r in records[:3]] == \
        pytest.approx(predictions)


def test_ratio_samples_rows_and_the_per_second_cap_holds(
        logs: InMemoryLogRecordExporter) -> None:
    X = np.random.default_rng(2).normal(size=(2000, 1))
    model = LinearRegression().fit(X, X[:, 0])
    clock = _Clock()
    instrumentor, recorder, records = _instrumented(
        logs, RecordSettings(ratio=0.25, per_second=300), clock)
    try:
        model.predict(X)  # about 500 sampled, 300 allowed
        assert recorder.force_flush()
        first = len(_records(logs))
        model.predict(X)  # the same second: the bucket is empty
        assert recorder.force_flush()
        second = len(_records(logs)) - first
        clock.now_s += 1.0
        model.predict(X[:400])  # a second later: about 100 sampled, all allowed
        assert recorder.force_flush()
    finally:
        instrumentor.uninstrument()
    assert first == 300 and second == 0
    third = len(_records(logs)) - 300
    assert 60 <= third <= 140  # binomial(400, 0.25): mean 100, sd 8.7
    assert records.capped > 0 and records.emitted == len(_records(logs))


def test_a_cap_below_one_per_second_lets_one_record_through_now_and_then(
        logs: InMemoryLogRecordExporter) -> None:
    X = np.arange(10, dtype=float).reshape(10, 1)
    model = LinearRegression().fit(X, X[:, 0])
    clock = _Clock()
    instrumentor, recorder, _ = _instrumented(
        logs, RecordSettings(ratio=1.0, per_second=0.5), clock)
    emitted = []
    try:
        for now_s in (0.0, 1.0, 1.5, 3.0, 3.5):
            clock.now_s = now_s
            model.predict(X)
            assert recorder.force_flush()
            emitted.append(len(_records(logs)))
    finally:
        instrumentor.uninstrument()
    assert emitted == [0, 1, 1, 2, 2]  # half a token to start, one more every two seconds


def test_records_are_off_by_default_and_ids_cost_nothing_then(
        logs: InMemoryLogRecordExporter) -> None:
    assert not RecordSettings.from_env({}).enabled
    assert RecordSettings.from_env({"DRIFTLINE_PREDICTION_RECORDS_RATIO": "0.5"}).ratio == 0.5
    with pytest.raises(ValueError, match="DRIFTLINE_PREDICTION_RECORDS_RATIO='2'"):
        RecordSettings.from_env({"DRIFTLINE_PREDICTION_RECORDS_RATIO": "2"})
    X = np.arange(6, dtype=float).reshape(3, 2)
    model = LinearRegression().fit(X, X.sum(axis=1))
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(),
                            metric_exporter=InMemoryMetricExporter())
    seen: list[Any] = []
    try:  # a new thread starts with no IDs of earlier calls in its context
        thread = threading.Thread(target=lambda: (model.predict(X),
                                                  seen.append(driftline.last_prediction_ids())))
        thread.start()
        thread.join()
    finally:
        instrumentor.uninstrument()
    assert list(seen[0]) == []


def test_a_bad_records_setting_turns_records_off_without_stopping_the_app(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DRIFTLINE_PREDICTION_RECORDS_RATIO", "lots")
    with caplog.at_level("WARNING"):
        assert prediction_records_from_kwargs({}) is None
    assert "DRIFTLINE_PREDICTION_RECORDS_RATIO='lots'" in caplog.text
    assert "ml.prediction records are off" in caplog.text


def test_ground_truth_records_carry_ids_and_labels_or_values(
        logs: InMemoryLogRecordExporter) -> None:
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    sent = driftline.record_ground_truth(["a", "b"], np.array([1, 0]), model="churn",
                                         logger_provider=provider)
    driftline.record_ground_truth(["c"], [12.5], logger_provider=provider)
    records = _records(logs, semconv.EVENT_GROUND_TRUTH)
    assert sent == 2
    assert [dict(r.attributes) for r in records] == [
        {semconv.ML_MODEL_NAME: "churn", semconv.ML_PREDICTION_ID: "a",
         semconv.ML_GROUND_TRUTH_LABEL: "1"},
        {semconv.ML_MODEL_NAME: "churn", semconv.ML_PREDICTION_ID: "b",
         semconv.ML_GROUND_TRUTH_LABEL: "0"},
        {semconv.ML_PREDICTION_ID: "c", semconv.ML_GROUND_TRUTH_VALUE: 12.5},
    ]
    with pytest.raises(ValueError):
        driftline.record_ground_truth(["a"], [1, 2], logger_provider=provider)


def test_ground_truth_without_an_sdk_logger_provider_is_an_error_not_a_silent_loss() -> None:
    from opentelemetry._logs import NoOpLoggerProvider

    with pytest.raises(driftline.GroundTruthNotDelivered, match="OTEL_LOGS_EXPORTER") as info:
        driftline.record_ground_truth(["a"], [1], logger_provider=NoOpLoggerProvider())
    assert info.value.delivered == 0


def test_ground_truth_that_cannot_be_flushed_raises_with_what_was_delivered(
        logs: InMemoryLogRecordExporter) -> None:
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(logs))
    assert driftline.record_ground_truth(["a", "b"], [1, 0], logger_provider=provider) == 2
    assert len(_records(logs, semconv.EVENT_GROUND_TRUTH)) == 2  # exported before returning
    provider.shutdown()  # the SDK now ignores records and its flush returns False
    with pytest.raises(driftline.GroundTruthNotDelivered, match="0 label") as info:
        driftline.record_ground_truth(["c"], [1], logger_provider=provider)
    assert info.value.delivered == 0


def test_ground_truth_is_flushed_in_chunks_the_log_queue_holds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from driftline.predictions import LOG_QUEUE_CHUNK, log_queue_chunk

    assert log_queue_chunk({}) == LOG_QUEUE_CHUNK
    assert log_queue_chunk({"OTEL_BLRP_MAX_QUEUE_SIZE": "100"}) == 100
    assert log_queue_chunk({"OTEL_BLRP_MAX_QUEUE_SIZE": "lots"}) == LOG_QUEUE_CHUNK
    # A queue of 100 and 1000 labels: nothing is dropped (the SDK would drop 900).
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "100")
    logs = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(
        logs, schedule_delay_millis=60_000, max_export_batch_size=50))
    ids = [f"p{i}" for i in range(1000)]
    assert driftline.record_ground_truth(ids, [1] * 1000, logger_provider=provider) == 1000
    assert [dict(r.attributes)[semconv.ML_PREDICTION_ID]
            for r in _records(logs, semconv.EVENT_GROUND_TRUTH)] == ids


@pytest.mark.integration
def test_app_records_and_labels_reach_the_processor_logs_pipeline(tmp_path: Path) -> None:
    output = tmp_path / "logs.jsonl"
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["file"]}},
                    "telemetry": {"metrics": {"level": "none"}}},
    }
    with running_collector(config, tmp_path, protocols=(PROTOCOL_GRPC,)) as collector:
        env = {**os.environ, "OTEL_SERVICE_NAME": "churn-api",
               "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{collector.endpoints[PROTOCOL_GRPC]}",
               "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_METRICS_EXPORTER": "none",
               "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "otlp",
               "DRIFTLINE_PREDICTION_RECORDS_RATIO": "1"}
        app = subprocess.run([sys.executable, "-m", "tests.apps.labelled_app"], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=60)
        assert app.returncode == 0, app.stderr
    used = json.loads(app.stdout.strip().splitlines()[-1])
    records = [record for request in read_logs(output) for resource in request.resource_logs
               for scope in resource.scope_logs for record in scope.log_records]
    by_event: dict[str, list] = {}
    for record in records:
        by_event.setdefault(record.event_name, []).append(
            {kv.key: kv.value for kv in record.attributes})
    predicted = [a[semconv.ML_PREDICTION_ID].string_value
                 for a in by_event[semconv.EVENT_PREDICTION]]
    labelled = [a[semconv.ML_PREDICTION_ID].string_value
                for a in by_event[semconv.EVENT_GROUND_TRUTH]]
    assert sorted(predicted) == sorted(labelled) == sorted(used["chosen"] + used["generated"])
    assert all(a[semconv.ML_MODEL_NAME].string_value == "churn"
               for a in by_event[semconv.EVENT_PREDICTION])


def test_torch_records_carry_the_sampled_rows_inputs_and_softmax_scores(
        logs: InMemoryLogRecordExporter) -> None:
    torch = require_torch()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    records = PredictionRecords(provider.get_logger("test"),
                                RecordSettings(ratio=0.5, per_second=1e6),
                                rng=np.random.default_rng(3))
    recorder = Recorder(InMemoryMetricExporter(), records=records)
    instrumentor = TorchInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), recorder=recorder)
    try:
        model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Softmax(dim=1)).eval()
        inputs = torch.randn(40, 3)
        with torch.no_grad():
            outputs = model(inputs)
        ids = list(driftline.last_prediction_ids())
        assert recorder.force_flush()
    finally:
        instrumentor.uninstrument()
    found = _records(logs)
    assert 5 < len(found) < 35  # about half of 40 rows
    for record in found:
        row = ids.index(record.attributes[semconv.ML_PREDICTION_ID])
        assert list(record.attributes[semconv.ML_PREDICTION_SCORES]) == pytest.approx(
            outputs[row].tolist())
        assert record.body == {f"f{i}": pytest.approx(float(inputs[row, i])) for i in range(3)}


def test_binary_decision_scores_are_recorded_with_the_predicted_label(
        logs: InMemoryLogRecordExporter) -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 2))
    model = LogisticRegression().fit(X, np.where(X[:, 0] > 0, "churn", "stay"))
    instrumentor, recorder, _ = _instrumented(logs, RecordSettings(ratio=1.0, per_second=1e6))
    try:
        scores = model.decision_function(X)
        assert recorder.force_flush()
    finally:
        instrumentor.uninstrument()
    predicted = model.predict(X)
    records = _records(logs)
    assert [r.attributes[semconv.ML_PREDICTION_LABEL] for r in records] == list(predicted)
    recorded = np.array([list(r.attributes[semconv.ML_PREDICTION_SCORES]) for r in records])
    np.testing.assert_allclose(recorded, np.column_stack((-scores, scores)))


def _dropped(metrics: InMemoryMetricExporter) -> dict[str, int]:
    """ml.prediction.records.dropped per reason (error.type), summed over the exports."""
    found: dict[str, int] = {}
    for point in metrics.points(semconv.ML_PREDICTION_RECORDS_DROPPED):
        reason = point.attributes[semconv.ERROR_TYPE]
        found[reason] = found.get(reason, 0) + point.value
    return found


def test_records_past_the_rate_cap_are_counted_in_a_metric_and_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    X = np.arange(100, dtype=float).reshape(100, 1)
    model = LinearRegression().fit(X, X[:, 0])
    logs, metrics = InMemoryLogRecordExporter(), InMemoryMetricExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    records = PredictionRecords(provider.get_logger("test"),
                                RecordSettings(ratio=1.0, per_second=10),
                                rng=np.random.default_rng(5), clock=_Clock())
    recorder = Recorder(metrics, records=records)
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), recorder=recorder)
    try:
        with caplog.at_level("WARNING", logger="driftline"):
            model.predict(X)  # 10 allowed, 90 over the cap
            model.predict(X)  # the same second: 100 over the cap
            assert recorder.force_flush()
    finally:
        instrumentor.uninstrument()
        recorder.shutdown()
    assert len(_records(logs)) == 10
    assert _dropped(metrics) == {semconv.DROP_REASON_RATE_LIMITED: 190}
    [point] = list(metrics.points(semconv.ML_PREDICTION_RECORDS_DROPPED))
    assert point.attributes[semconv.ML_MODEL_NAME] == "LinearRegression"
    warnings = [r for r in caplog.records if semconv.ML_PREDICTION_RECORDS_DROPPED
                in r.getMessage()]
    assert len(warnings) == 1 and "DRIFTLINE_PREDICTION_RECORDS_PER_SECOND" in \
        warnings[0].getMessage()


def test_records_of_calls_the_full_recorder_queue_dropped_are_counted() -> None:
    X = np.arange(50, dtype=float).reshape(50, 1)
    model = LinearRegression().fit(X, X[:, 0])
    logs, metrics = InMemoryLogRecordExporter(), InMemoryMetricExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    records = PredictionRecords(provider.get_logger("test"),
                                RecordSettings(ratio=1.0, per_second=1e6),
                                rng=np.random.default_rng(5), clock=_Clock())
    # 50 rows never fit 10 pending rows: the call's values (and records) are dropped.
    recorder = Recorder(metrics, records=records, max_pending_rows=10)
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), recorder=recorder)
    try:
        model.predict(X)
        assert recorder.force_flush()
    finally:
        instrumentor.uninstrument()
        recorder.shutdown()
    assert _records(logs) == []
    assert _dropped(metrics) == {semconv.DROP_REASON_QUEUE_FULL: 50}


class _SlowExporter(InMemoryLogRecordExporter):
    """An exporter slower than the app emits: the SDK's batch queue (2048) fills up."""

    def export(self, batch):  # type: ignore[no-untyped-def]
        threading.Event().wait(0.05)
        return super().export(batch)


def test_no_prediction_record_is_lost_to_the_sdk_log_queue_with_default_settings() -> None:
    rows = 6000
    X = np.arange(rows, dtype=float).reshape(rows, 1)
    model = LinearRegression().fit(X, X[:, 0])
    logs, metrics = _SlowExporter(), InMemoryMetricExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(logs))  # the SDK's defaults
    records = prediction_records_from_kwargs({
        "logger_provider": provider,
        "prediction_records": RecordSettings(ratio=1.0, per_second=1e6)})
    recorder = Recorder(metrics, records=records)
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), recorder=recorder)
    try:
        model.predict(X)
        assert recorder.force_flush()
        assert provider.force_flush()
    finally:
        instrumentor.uninstrument()
        recorder.shutdown()
        provider.shutdown()
    assert len(_records(logs)) == rows
    assert _dropped(metrics) == {}
