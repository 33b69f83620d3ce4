"""End to end: an instrumented scikit-learn classifier exports over OTLP/HTTP (the official
SDK exporter) to a real collector whose ml_drift holds the model's calibrated profile; the
window's ``ml.performance.estimated.*`` gauges come out of the metrics file with their band,
and an estimate below its threshold comes out of the logs file as ``ml.performance.alert``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.trace import TracerProvider
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score

import driftline
from driftline import semconv
from driftline.exporters.file.exporter import read_logs, read_metrics
from driftline.instrumentation.recorder import Recorder
from driftline.instrumentation.sklearn import SklearnInstrumentor
from driftline.profile import capture, save
from tests._collector import LOOPBACK, PROTOCOL_HTTP, running_collector
from tests.test_estimation import _binary

WAIT_S = 30.0
ROWS = 5_000
NEVER_S = 3600.0  # the test flushes by hand
ESTIMATED = semconv.ML_PERFORMANCE_ESTIMATED_PREFIX


def gauges(path: Path) -> dict[str, float]:
    found: dict[str, float] = {}
    if not path.exists():
        return found
    for request in read_metrics(path):
        for rm in request.resource_metrics:
            for scope in rm.scope_metrics:
                for metric in scope.metrics:
                    if metric.name.startswith(ESTIMATED):
                        found[metric.name] = metric.gauge.data_points[0].as_double
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
        "processors": {"ml_drift": {"profiles": str(tmp_path / "profiles"), "window": "2s",
                                    "grace": "0.5s", "min_rows": 100,
                                    "estimation": {"thresholds": {"accuracy": 0.95}}}},
        "exporters": {"file": {"path": str(metrics_path), "flush_interval": 0},
                      "file/logs": {"path": str(logs_path), "flush_interval": 0}},
        "service": {"pipelines": {
            "metrics": {"receivers": ["otlp"], "processors": ["ml_drift"],
                        "exporters": ["file"]},
            "logs": {"receivers": ["otlp"], "exporters": ["file/logs"]}}},
    }
    with running_collector(config, tmp_path) as collector:
        exporter = OTLPMetricExporter(
            endpoint=f"http://{collector.endpoints[PROTOCOL_HTTP]}/v1/metrics")
        recorder = Recorder(exporter, export_interval_s=NEVER_S)
        instrumentor = SklearnInstrumentor()
        instrumentor.instrument(tracer_provider=TracerProvider(), recorder=recorder)
        try:
            scores = model.predict_proba(xs)
            assert recorder.force_flush()
        finally:
            instrumentor.uninstrument()
            recorder.shutdown()
        deadline = time.monotonic() + WAIT_S
        while (ESTIMATED + "roc_auc" not in gauges(metrics_path) or not alerts(logs_path)) \
                and time.monotonic() < deadline:
            time.sleep(0.2)

    found = gauges(metrics_path)
    predicted = model.classes_[scores.argmax(axis=1)]
    accuracy = accuracy_score(ys, predicted)
    assert set(found) >= {ESTIMATED + m + s for m in ("accuracy", "precision", "recall", "f1",
                                                      "roc_auc")
                          for s in ("", semconv.ML_PERFORMANCE_LOWER_SUFFIX,
                                    semconv.ML_PERFORMANCE_UPPER_SUFFIX)}, collector.stderr()
    assert found[ESTIMATED + "accuracy"] == pytest.approx(accuracy, abs=0.015)
    assert found[ESTIMATED + "accuracy.lower"] < accuracy < found[ESTIMATED + "accuracy.upper"]
    assert found[ESTIMATED + "roc_auc"] == pytest.approx(roc_auc_score(ys, scores[:, 1]),
                                                         abs=0.015)
    records = alerts(logs_path)
    assert len(records) == 1, collector.stderr()
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
