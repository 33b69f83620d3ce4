"""End to end: a real collector (subprocess) whose logs pipeline runs ml_performance; the
OpenTelemetry SDK's OTLP/HTTP log exporter sends ml.prediction and ml.ground_truth records
(the SDK 1.45 Logger.emit sets event_name), the ml.performance gauges come out of the
metrics pipeline's file exporter. One test SIGKILLs the collector between the predictions
and the labels and restarts it on the same store."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from sklearn import metrics as skm

from driftline import semconv
from driftline.exporters.file.exporter import read_logs, read_metrics
from tests._collector import LOOPBACK, PROTOCOL_HTTP, STOP_TIMEOUT_S, running_collector, spawn

pytestmark = pytest.mark.integration

WAIT_S = 30.0
WINDOW_NS = 2_000_000_000  # the processor's window below
CLASSES = ["no", "yes"]
MODEL = {semconv.ML_MODEL_NAME: "churn", semconv.ML_MODEL_VERSION: "3",
         semconv.ML_MODEL_FRAMEWORK: "sklearn", semconv.ML_OPERATION: "predict_proba"}


def _config(tmp_path: Path, **processor: Any) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"ml_performance": {
            "store": {"path": str(tmp_path / "predictions.sqlite")}, "window": "2s",
            "grace": "0.5s", "min_labels": 5, **processor}},
        "exporters": {"file": {"path": str(tmp_path / "metrics.jsonl"), "flush_interval": 0},
                      "file/logs": {"path": str(tmp_path / "logs.jsonl"),
                                    "flush_interval": 0}},
        "service": {"pipelines": {
            "logs": {"receivers": ["otlp"], "processors": ["ml_performance"],
                     "exporters": ["file/logs"]},
            "metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }


def _emit(endpoint: str, records: Sequence[dict[str, Any]]) -> None:
    """Send ``records`` (Logger.emit keyword arguments) through the SDK and flush them."""
    provider = LoggerProvider(resource=Resource.create({semconv.SERVICE_NAME: "churn-api"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=f"http://{endpoint}/v1/logs", timeout=10)))
    logger = provider.get_logger("driftline.test")
    for record in records:
        logger.emit(**record)
    assert provider.force_flush(10_000)
    provider.shutdown()


def _predictions(y_pred: Sequence[str], yes: np.ndarray, time_ns: int) -> list[dict[str, Any]]:
    return [{"event_name": semconv.EVENT_PREDICTION, "timestamp": time_ns + i * 1000,
             "body": {"age": 30.0 + i, "plan": "pro"},
             "attributes": {**MODEL, semconv.ML_PREDICTION_ID: f"p{i}",
                            semconv.ML_PREDICTION_LABEL: y_pred[i],
                            semconv.ML_PREDICTION_SCORES: [float(1 - yes[i]), float(yes[i])],
                            semconv.ML_PREDICTION_CLASSES: CLASSES}}
            for i in range(len(y_pred))]


def _window_start() -> int:
    """The start of the current 2 s window: the rows' few microseconds stay in one window."""
    return time.time_ns() // WINDOW_NS * WINDOW_NS


def _labels(y_true: Sequence[str]) -> list[dict[str, Any]]:
    return [{"event_name": semconv.EVENT_GROUND_TRUTH,
             "attributes": {semconv.ML_PREDICTION_ID: f"p{i}",
                            semconv.ML_GROUND_TRUTH_LABEL: y_true[i]}}
            for i in range(len(y_true))]


def _gauges(path: Path) -> dict[tuple[str, str, str], float]:
    """The latest value per (metric, average, class) in the metrics file."""
    found: dict[tuple[str, str, str], float] = {}
    if not path.exists():
        return found
    for request in read_metrics(path):
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if not metric.name.startswith(semconv.ML_PERFORMANCE_PREFIX):
                        continue
                    for p in metric.gauge.data_points:
                        attrs = {kv.key: kv.value.string_value for kv in p.attributes}
                        value = p.as_double if p.WhichOneof("value") == "as_double" \
                            else p.as_int
                        found[(metric.name, attrs.get(semconv.ML_PERFORMANCE_AVERAGE, ""),
                               attrs.get(semconv.ML_CLASS, ""))] = value
    return found


def _wait_for_labels(path: Path, count: int) -> dict[tuple[str, str, str], float]:
    deadline = time.monotonic() + WAIT_S
    key = (semconv.ML_PERFORMANCE_LABELS, "", "")
    while time.monotonic() < deadline:
        gauges = _gauges(path)
        if gauges.get(key) == count:
            return gauges
        time.sleep(0.2)
    return _gauges(path)


def _rows(seed: int, n: int) -> tuple[list[str], list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = [str(v) for v in rng.choice(CLASSES, n)]
    yes = np.round(np.clip(rng.normal([0.7 if t == "yes" else 0.3 for t in y_true], 0.25),
                           0, 1), 2)
    return y_true, ["yes" if s >= 0.5 else "no" for s in yes], yes


def _check(gauges: dict[tuple[str, str, str], float], y_true: list[str], y_pred: list[str],
           yes: np.ndarray, stderr: str) -> None:
    assert gauges.get((semconv.ML_PERFORMANCE_LABELS, "", "")) == len(y_true), stderr
    assert gauges[(semconv.ML_PERFORMANCE_ACCURACY, "", "")] == pytest.approx(
        skm.accuracy_score(y_true, y_pred))
    assert gauges[(semconv.ML_PERFORMANCE_F1, semconv.AVERAGE_MACRO, "")] == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert gauges[(semconv.ML_PERFORMANCE_RECALL, semconv.AVERAGE_CLASS, "yes")] == \
        pytest.approx(skm.recall_score(y_true, y_pred, pos_label="yes"))
    assert gauges[(semconv.ML_PERFORMANCE_ROC_AUC, semconv.AVERAGE_BINARY, "yes")] == \
        pytest.approx(skm.roc_auc_score(np.array(y_true) == "yes", yes))


def test_sdk_records_become_performance_gauges(tmp_path: Path) -> None:
    y_true, y_pred, yes = _rows(1, 60)
    # Accuracy is about 0.8 here: a threshold of 0.99 must alert, into the logs pipeline.
    config = _config(tmp_path, thresholds={"accuracy": 0.99})
    with running_collector(config, tmp_path) as collector:
        endpoint = collector.endpoints[PROTOCOL_HTTP]
        _emit(endpoint, _predictions(y_pred, yes, _window_start()))
        _emit(endpoint, _labels(y_true))
        gauges = _wait_for_labels(tmp_path / "metrics.jsonl", 60)
    _check(gauges, y_true, y_pred, yes, collector.stderr())
    # The records passed through to the logs pipeline's exporter unchanged.
    records = [r for request in read_logs(tmp_path / "logs.jsonl")
               for rl in request.resource_logs for s in rl.scope_logs for r in s.log_records]
    assert [r.event_name for r in records].count(semconv.EVENT_PREDICTION) == 60
    assert [r.event_name for r in records].count(semconv.EVENT_GROUND_TRUTH) == 60
    first = next(r for r in records if r.event_name == semconv.EVENT_PREDICTION)
    assert {kv.key: kv.value.double_value for kv in first.body.kvlist_value.values
            if kv.key == "age"} == {"age": 30.0}
    [alert] = [r for r in records if r.event_name == semconv.EVENT_PERFORMANCE_ALERT]
    attributes = {kv.key: kv.value for kv in alert.attributes}
    assert attributes[semconv.ML_PERFORMANCE_VALUE_ATTRIBUTE].double_value == pytest.approx(
        skm.accuracy_score(y_true, y_pred))
    assert attributes[semconv.ML_PERFORMANCE_LABEL_COUNT].int_value == 60


def test_sigkill_between_predictions_and_labels_loses_nothing(tmp_path: Path) -> None:
    y_true, y_pred, yes = _rows(2, 40)
    config = _config(tmp_path)
    first = spawn(config, tmp_path)
    try:
        first.wait_for((PROTOCOL_HTTP,))
        # force_flush returns once the collector answered 200: the store has committed.
        _emit(first.endpoints[PROTOCOL_HTTP], _predictions(y_pred, yes, _window_start()))
        # Half the labels too, so the restart resumes a join in progress.
        _emit(first.endpoints[PROTOCOL_HTTP], _labels(y_true[:20]))
    finally:
        first.process.kill()  # SIGKILL: no shutdown, no flush
        first.process.wait(STOP_TIMEOUT_S)
    assert first.process.returncode == -9
    with running_collector(config, tmp_path) as second:
        _emit(second.endpoints[PROTOCOL_HTTP], _labels(y_true)[20:])
        gauges = _wait_for_labels(tmp_path / "metrics.jsonl", 40)
    _check(gauges, y_true, y_pred, yes, second.stderr())


MANY_LABELS = 50_000
# Enough queue and batch for the test's own prediction records (not what is under test).
PREDICTION_QUEUE = MANY_LABELS + 1
PREDICTION_BATCH = 5000


def test_record_ground_truth_delivers_every_label_with_default_sdk_settings(
        tmp_path: Path) -> None:
    """50 000 labels through a LoggerProvider with the SDK's default BatchLogRecordProcessor
    (a queue of 2048): every one reaches the processor and joins its prediction."""
    import driftline

    with running_collector(_config(tmp_path), tmp_path) as collector:
        endpoint = f"http://{collector.endpoints[PROTOCOL_HTTP]}/v1/logs"
        predictions = LoggerProvider(resource=Resource.create({semconv.SERVICE_NAME: "api"}))
        predictions.add_log_record_processor(BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=endpoint, timeout=30), max_queue_size=PREDICTION_QUEUE,
            max_export_batch_size=PREDICTION_BATCH))
        logger = predictions.get_logger("driftline.test")
        start = _window_start()
        labels = np.resize(np.array(CLASSES), MANY_LABELS)
        for i in range(MANY_LABELS):
            logger.emit(timestamp=start + i * 1000, event_name=semconv.EVENT_PREDICTION,
                        attributes={**MODEL, semconv.ML_PREDICTION_ID: f"p{i}",
                                    semconv.ML_PREDICTION_LABEL: str(labels[i])})
        assert predictions.force_flush(60_000)
        predictions.shutdown()

        provider = LoggerProvider(resource=Resource.create({semconv.SERVICE_NAME: "labels"}))
        provider.add_log_record_processor(BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=endpoint)))  # the SDK's defaults
        sent = driftline.record_ground_truth([f"p{i}" for i in range(MANY_LABELS)], labels,
                                             logger_provider=provider)
        gauges = _wait_for_labels(tmp_path / "metrics.jsonl", MANY_LABELS)
        provider.shutdown()
    assert sent == MANY_LABELS
    assert gauges.get((semconv.ML_PERFORMANCE_LABELS, "", "")) == MANY_LABELS, \
        collector.stderr()[-2000:]
    assert gauges[(semconv.ML_PERFORMANCE_ACCURACY, "", "")] == 1.0
