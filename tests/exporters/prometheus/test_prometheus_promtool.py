"""What Prometheus gets from a real ``driftline collector`` fed by the OpenTelemetry SDK:
``promtool check metrics`` accepts the live exposition (HELP on every family, base units),
verdict gauges carry the processor's own job, not the app instance's, and there is one
``ml_drift_detected`` series per column."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import driftline
from driftline import profile, semconv
from tests._collector import (
    LOOPBACK,
    PROMETHEUS_EXPORTER,
    PROTOCOL_HTTP,
    running_collector,
)
from tests._otel import instrumented_app
from tests.conftest import require_binary

pytestmark = pytest.mark.integration

PROMTOOL_MISSING = "needs promtool, from the Debian package prometheus (apt-get install prometheus)"
WAIT_S = 40.0
SCRAPE_TIMEOUT_S = 10.0
MODEL = "churn"
APP_INSTANCES = ("pod-1", "pod-2")
# Families the exposition must hold before it is checked: every kind of output is there.
EXPECTED = ("ml_drift_score", "ml_drift_detected", "ml_window_rows",
            "ml_performance_accuracy", "driftline_processor_")


def _scrape(endpoint: str) -> str:
    with urllib.request.urlopen(f"http://{endpoint}/metrics",
                                timeout=SCRAPE_TIMEOUT_S) as response:
        return response.read().decode()


def _config(tmp_path: Path) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {
            "ml_drift": {"profiles": str(tmp_path / "profiles"), "window": "2s",
                         "grace": "0.5s", "min_rows": 50},
            "ml_performance": {"window": "2s", "grace": "0.5s", "min_labels": 5}},
        "exporters": {"prometheus": {"endpoint": f"{LOOPBACK}:0"},
                      "file": {"path": str(tmp_path / "logs.jsonl"), "flush_interval": 0}},
        "service": {
            "pipelines": {
                "metrics": {"receivers": ["otlp"], "processors": ["ml_drift"],
                            "exporters": ["prometheus"]},
                "logs": {"receivers": ["otlp"], "processors": ["ml_performance"],
                         "exporters": ["file"]}},
            "telemetry": {"metrics": {"level": "basic", "interval": "0.5s"}}},
    }


def _serve(endpoint: str, instance: str, model: LogisticRegression, X: np.ndarray,
           y: np.ndarray) -> None:
    """One app replica: the recorder and prediction records over the SDK's OTLP/HTTP
    exporters, then the labels of its predictions."""
    with instrumented_app(endpoint, instance, 1e6) as (recorder, logs):
        model.predict(X)
        ids = list(driftline.last_prediction_ids())
        assert recorder.force_flush()
        assert logs.force_flush()
        driftline.record_ground_truth(ids, y, logger_provider=logs)


def test_live_exposition_passes_promtool_and_verdicts_are_series_of_the_model(
        tmp_path: Path) -> None:
    promtool = require_binary("promtool", PROMTOOL_MISSING)
    rng = np.random.default_rng(9)
    X_train = rng.normal(size=(3000, 3))
    y_train = (X_train[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X_train, y_train)
    driftline.register(model, name=MODEL, version="1")
    reference = profile.capture(X_train, model.predict(X_train), model=MODEL, version="1")
    profile.save(reference, tmp_path / "profiles" / "churn.json")

    with running_collector(_config(tmp_path), tmp_path, (PROTOCOL_HTTP,)) as collector:
        metrics_endpoint = collector.endpoint_of(PROMETHEUS_EXPORTER)
        for instance in APP_INSTANCES:  # two replicas of the app, one after the other
            X = rng.normal(size=(400, 3))
            _serve(collector.endpoints[PROTOCOL_HTTP], instance, model, X,
                   (X[:, 0] > 0).astype(int))
        deadline = time.monotonic() + WAIT_S
        text = _scrape(metrics_endpoint)
        while not all(f"\n{name}" in text for name in EXPECTED) and \
                time.monotonic() < deadline:
            time.sleep(0.3)
            text = _scrape(metrics_endpoint)
    assert all(f"\n{name}" in text for name in EXPECTED), collector.stderr()[-3000:] + text

    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, f"{check.stdout}{check.stderr}"

    # Verdicts are the model's: the processor's job, no app instance, one series per column
    # whichever replica sent the rows.
    verdicts = [line for line in text.splitlines()
                if re.match(r"(ml_drift_|ml_window_rows|ml_performance_)", line)]
    assert verdicts
    for line in verdicts:
        assert f'job="{semconv.PROCESSOR_SERVICE_NAME}"' in line, line
        assert "pod-" not in line and "churn-api" not in line, line
    detected = [line for line in verdicts if line.startswith("ml_drift_detected{")]
    columns = [re.search(r'ml_feature_name="([^"]+)"', line).group(1)  # type: ignore[union-attr]
               for line in detected]
    assert sorted(columns) == sorted(set(columns)) == sorted(
        [*[f"f{i}" for i in range(3)], semconv.PROFILE_COLUMN_PREDICTION_CLASS])
