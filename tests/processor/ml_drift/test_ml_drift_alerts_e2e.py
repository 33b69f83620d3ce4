"""End to end: a real collector whose ml_drift processor sends ``ml.drift.alert`` records into
a logs pipeline (receivers: [otlp], exporters: [file]); drifted data goes in as raw OTLP/HTTP
protobuf, the alert comes out of the logs file as OTLP/JSON."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from driftline import semconv
from driftline.exporters.file.exporter import read_logs
from driftline.profile import save
from tests._collector import LOOPBACK, PROTOCOL_HTTP, post_metrics, running_collector
from tests.processor.ml_drift.test_ml_drift import app_batch, reference

WINDOW_S = 2
NS = 1_000_000_000
WAIT_S = 30.0


def alert_records(path: Path) -> list:
    if not path.exists():
        return []
    return [record for request in read_logs(path) for rl in request.resource_logs
            for scope in rl.scope_logs for record in scope.log_records]


def test_drift_alert_reaches_the_logs_pipelines_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    save(reference(rng), tmp_path / "profiles" / "churn.json")
    logs_path = tmp_path / "logs.jsonl"
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"ml_drift": {"profiles": str(tmp_path / "profiles"),
                                    "window": f"{WINDOW_S}s", "grace": "0.5s",
                                    "min_rows": 100}},
        "exporters": {"file": {"path": str(tmp_path / "metrics.jsonl"), "flush_interval": 0},
                      "file/logs": {"path": str(logs_path), "flush_interval": 0}},
        "service": {"pipelines": {
            "metrics": {"receivers": ["otlp"], "processors": ["ml_drift"],
                        "exporters": ["file"]},
            "logs": {"receivers": ["otlp"], "exporters": ["file/logs"]}}},
    }
    with running_collector(config, tmp_path) as collector:
        post_metrics(collector.endpoints[PROTOCOL_HTTP], app_batch(
            time.time_ns(), {"age": rng.normal(75, 10, 500), "income": rng.normal(50, 5, 500)}))
        deadline = time.monotonic() + WAIT_S
        while len(alert_records(logs_path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)

    records = alert_records(logs_path)
    assert [r.event_name for r in records] == [semconv.EVENT_DRIFT_ALERT] * 2, \
        collector.stderr()
    attributes = [{kv.key: kv.value for kv in r.attributes} for r in records]
    assert attributes[0][semconv.ML_FEATURE_NAME].string_value == "age"
    assert attributes[0][semconv.ML_MODEL_NAME].string_value == "churn"
    assert attributes[1][semconv.ML_DRIFT_SUBJECT].string_value == semconv.DRIFT_SUBJECT_DATASET
    assert "drift in column 'age'" in records[0].body.string_value
