"""End to end: an instrumented scikit-learn classifier exports over OTLP/HTTP (the official
SDK exporters) to a real collector whose ml_drift holds the model's calibrated profile; the
window's ``ml.performance.estimated.*`` gauges come out of the metrics file with their band,
and an estimate below its threshold comes out of the logs file as ``ml.performance.alert``.
The app also sends its prediction records and, later, the labels: ml_performance's realised
accuracy of the same window comes out beside the estimate, with the same window times.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score

import driftline
from driftline import semconv
from driftline.exporters.file.exporter import read_logs, read_metrics
from driftline.instrumentation._records import RECORDS_SCOPE, PredictionRecords, RecordSettings
from driftline.instrumentation.recorder import Recorder
from driftline.instrumentation.sklearn import SklearnInstrumentor
from driftline.profile import capture, save
from tests._collector import LOOPBACK, PROTOCOL_HTTP, running_collector
from tests.test_estimation import _binary

WAIT_S = 30.0
ROWS = 2_000
WINDOW_NS = 3_000_000_000  # both processors' window below
NEVER_S = 3600.0  # the test flushes by hand
ESTIMATED = semconv.ML_PERFORMANCE_ESTIMATED_PREFIX


def gauges(path: Path) -> dict[str, tuple[float, int, int]]:
    """ml.performance.* gauges (unaveraged, or binary ROC AUC): (value, start, end)."""
    found: dict[str, tuple[float, int, int]] = {}
    if not path.exists():
        return found
    for request in read_metrics(path):
        for rm in request.resource_metrics:
            for scope in rm.scope_metrics:
                for metric in scope.metrics:
                    if metric.name.startswith(semconv.ML_PERFORMANCE_PREFIX):
                        p = metric.gauge.data_points[0]
                        value = p.as_double if p.WhichOneof("value") == "as_double" \
                            else p.as_int
                        found[metric.name] = (value, p.start_time_unix_nano, p.time_unix_nano)
    return found


def alerts(path: Path) -> list:
    if not path.exists():
        return []
    return [record for request in read_logs(path) for rl in request.resource_logs
            for scope in rl.scope_logs for record in scope.log_records
            if record.event_name == semconv.EVENT_PERFORMANCE_ALERT]


@pytest.mark.integration
def test_estimated_performance_and_its_alert_through_a_real_collector(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    x, y = _binary(rng, 60_000, 0.0)
    model = LogisticRegression().fit(x[:20_000], y[:20_000])
    driftline.register(model, name="scorer", version="2")
    reference = x[20_000:]
    save(capture(reference, model.predict(reference),
                 probabilities=model.predict_proba(reference), target=y[20_000:],
                 model="scorer", version="2", classes=model.classes_),
         tmp_path / "profiles" / "scorer.json")
    xs, ys = _binary(rng, ROWS, 1.5)  # shifted: the accuracy drops below the threshold
    metrics_path, logs_path = tmp_path / "metrics.jsonl", tmp_path / "logs.jsonl"
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"ml_drift": {"profiles": str(tmp_path / "profiles"), "window": "3s",
                                    # Room for a slow export on a busy machine: a point past
                                    # end + grace would count in the next window.
                                    "grace": "5s", "min_rows": 100,
                                    "estimation": {"thresholds": {"accuracy": 0.95}}},
                       "ml_performance": {"store": {"path": str(tmp_path / "store.sqlite")},
                                          "window": "3s", "grace": "0.5s", "min_labels": 5}},
        "exporters": {"file": {"path": str(metrics_path), "flush_interval": 0},
                      "file/logs": {"path": str(logs_path), "flush_interval": 0}},
        "service": {"pipelines": {
            "metrics": {"receivers": ["otlp"], "processors": ["ml_drift"],
                        "exporters": ["file"]},
            "logs": {"receivers": ["otlp"], "processors": ["ml_performance"],
                     "exporters": ["file/logs"]}}},
    }
    with running_collector(config, tmp_path) as collector:
        endpoint = f"http://{collector.endpoints[PROTOCOL_HTTP]}"
        logs = LoggerProvider()
        logs.add_log_record_processor(BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", timeout=10)))
        # ml_drift windows a point by its time, the export's; ml_performance a record by its
        # prediction time. The recorder's clock stops short of the window the calls fall in,
        # so this export (however late on a busy machine) counts in that window.
        window_end_ns = (time.time_ns() // WINDOW_NS + 1) * WINDOW_NS
        recorder = Recorder(OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"),
                            export_interval_s=NEVER_S, records=PredictionRecords(
                                logs.get_logger(RECORDS_SCOPE),
                                RecordSettings(ratio=1.0, per_second=1e9),
                                flush=logs.force_flush),
                            clock_ns=lambda: min(time.time_ns(), window_end_ns - 1_000_000))
        instrumentor = SklearnInstrumentor()
        instrumentor.instrument(tracer_provider=TracerProvider(), recorder=recorder)
        ids = [f"r{i}" for i in range(ROWS)]
        if time.time_ns() > window_end_ns - 1_000_000:  # too late for that window: the next
            window_end_ns += WINDOW_NS
        try:
            with driftline.prediction_ids(ids):
                scores = model.predict_proba(xs)
            assert recorder.force_flush()
        finally:
            instrumentor.uninstrument()
            recorder.shutdown()
        assert logs.force_flush(10_000)
        # The labels arrive later, from another sender.
        assert driftline.record_ground_truth(ids, ys, model="scorer", version="2",
                                             logger_provider=logs) == ROWS
        logs.shutdown()
        deadline = time.monotonic() + WAIT_S
        while ({ESTIMATED + "roc_auc", semconv.ML_PERFORMANCE_ACCURACY}
               - set(gauges(metrics_path)) or not alerts(logs_path)) \
                and time.monotonic() < deadline:
            time.sleep(0.2)

    timed = gauges(metrics_path)
    found = {name: value for name, (value, _, _) in timed.items()}
    predicted = model.classes_[scores.argmax(axis=1)]
    accuracy = accuracy_score(ys, predicted)
    wanted = {ESTIMATED + m + s for m in ("accuracy", "precision", "recall", "f1", "roc_auc")
              for s in ("", semconv.ML_PERFORMANCE_LOWER_SUFFIX,
                        semconv.ML_PERFORMANCE_UPPER_SUFFIX)}
    assert set(found) >= {semconv.ML_PERFORMANCE_ACCURACY} | wanted, collector.stderr()
    assert found[ESTIMATED + "accuracy"] == pytest.approx(accuracy, abs=0.015)
    assert found[ESTIMATED + "accuracy.lower"] < accuracy < found[ESTIMATED + "accuracy.upper"]
    assert found[ESTIMATED + "roc_auc"] == pytest.approx(roc_auc_score(ys, scores[:, 1]),
                                                         abs=0.015)
    records = alerts(logs_path)
    assert len(records) == 1, collector.stderr()
    # Realised (ml_performance, from the labels) and estimated (ml_drift) side by side: the
    # same window, the realised value sklearn's.
    realised, start_ns, end_ns = timed[semconv.ML_PERFORMANCE_ACCURACY]
    assert realised == pytest.approx(accuracy, abs=1e-12)
    assert timed[ESTIMATED + "accuracy"][1:] == (start_ns, end_ns)
    assert end_ns - start_ns == WINDOW_NS
    attributes = {kv.key: kv.value for kv in records[0].attributes}
    assert attributes[semconv.ML_PERFORMANCE_METRIC].string_value == ESTIMATED + "accuracy"
    assert attributes[semconv.ML_PERFORMANCE_VALUE_ATTRIBUTE].double_value == pytest.approx(
        found[ESTIMATED + "accuracy"])
    assert attributes[semconv.ML_MODEL_NAME].string_value == "scorer"
    assert "without labels" in records[0].body.string_value


def test_estimation_thresholds_are_validated_with_their_yaml_path() -> None:
    from driftline.processor.service.config import ConfigError, parse_config

    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"ml_drift": {"profiles": ".", "estimation": {
            "level": 1.5, "thresholds": {"accuracy": 2, "roc_auc": "high"}}}},
        "exporters": {"file": {"path": "out.jsonl"}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "processors": ["ml_drift"],
                                              "exporters": ["file"]}}},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(config, environ={})
    text = str(caught.value)
    for key in ("processors::ml_drift::estimation::level",
                "processors::ml_drift::estimation::thresholds::accuracy",
                "processors::ml_drift::estimation::thresholds::roc_auc"):
        assert key in text, text
