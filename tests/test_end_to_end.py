"""The whole path with real processes: an app instrumented only by ``import driftline.auto``
sends OTLP/gRPC to a real processor subprocess, and a real Prometheus scraping the
processor's exporter returns the drift score of the shifted feature."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

from driftline import profile, semconv
from driftline.exporters.file.exporter import read_traces
from tests._collector import PROMETHEUS_EXPORTER, PROTOCOL_GRPC, spawn_cli
from tests.apps import fraud_data
from tests.conftest import run_prometheus

REPO = Path(__file__).resolve().parent.parent
WINDOW = "2s"
GRACE = "1s"
APP_TIMEOUT_S = 60
BATCHES = 30  # tests/apps/shifted_app.py serves the live rows in 30 calls


def _write_profile(directory: Path) -> None:
    X, y = fraud_data.training_rows()
    model = LogisticRegression().fit(X, y)
    reference = profile.capture(X, model.predict(X), probabilities=model.predict_proba(X),
                                model=fraud_data.MODEL_NAME, version=fraud_data.MODEL_VERSION)
    profile.save(reference, directory / "fraud.profile.json")


def _config(tmp_path: Path, otlp: str, prometheus: str) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {otlp}
processors:
  ml_drift:
    profiles: {tmp_path / "profiles"}
    window: {WINDOW}
    grace: {GRACE}
    min_rows: 100
exporters:
  prometheus:
    endpoint: {prometheus}
  file/traces:
    path: {tmp_path / "out" / "traces.jsonl"}
service:
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [ml_drift]
      exporters: [prometheus]
    traces:
      receivers: [otlp]
      exporters: [file/traces]
""")
    return path


@pytest.mark.integration
def test_auto_instrumented_app_to_processor_to_prometheus(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    _write_profile(tmp_path / "profiles")
    # Ports the OS picks; the collector prints them.
    config = _config(tmp_path, "127.0.0.1:0", "127.0.0.1:0")
    collector = spawn_cli(["--config", str(config)], tmp_path)
    processor = collector.process
    try:
        collector.wait_for((PROTOCOL_GRPC,), (PROMETHEUS_EXPORTER,))
        otlp = collector.endpoints[PROTOCOL_GRPC]
        exporter = collector.listening[PROMETHEUS_EXPORTER]
        with run_prometheus([exporter], tmp_path) as prometheus:
            env = {**os.environ,
                   "OTEL_SERVICE_NAME": "fraud-service",
                   "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp}",
                   "OTEL_EXPORTER_OTLP_INSECURE": "true",
                   "OTEL_METRIC_EXPORT_INTERVAL": "60000"}  # everything leaves at exit
            app = subprocess.run([sys.executable, "-m", "tests.apps.shifted_app"], cwd=REPO,
                                 env=env, capture_output=True, text=True,
                                 timeout=APP_TIMEOUT_S)
            assert app.returncode == 0, app.stderr

            shifted = f"f{fraud_data.SHIFTED_FEATURE}"
            selector = (f'ml_drift_score{{ml_feature_name="{shifted}",'
                        f'ml_drift_method="{semconv.DRIFT_METHOD_WASSERSTEIN}"}}')
            [series] = prometheus.wait_for(selector, timeout_s=30)
            # A shift of two standard deviations: normed Wasserstein close to 2.
            assert float(series["value"][1]) == pytest.approx(fraud_data.SHIFT_IN_STD, abs=0.2)
            assert series["metric"]["ml_model_name"] == fraud_data.MODEL_NAME
            assert series["metric"]["ml_model_version"] == fraud_data.MODEL_VERSION
            # The verdict is the model's: the processor's job, not the app instance's.
            assert series["metric"]["job"] == semconv.PROCESSOR_SERVICE_NAME
            # No app instance label: Prometheus fills in its scrape target.
            assert series["metric"]["instance"] == exporter

            scores = {r["metric"]["ml_feature_name"]: float(r["value"][1]) for r in
                      prometheus.query('ml_drift_score{ml_drift_method="wasserstein"}')}
            for calm in ("f0", "f1", "f3"):
                assert scores[calm] < 0.1, scores
            detected = {r["metric"]["ml_feature_name"]: float(r["value"][1]) for r in
                        prometheus.query('ml_drift_detected{ml_drift_method="wasserstein"}')}
            assert detected["f2"] == 1.0 and detected["f0"] == 0.0
            [share] = prometheus.query("ml_drift_dataset_share")
            assert float(share["value"][1]) == pytest.approx(0.25)
            [rows] = prometheus.query("ml_window_rows")
            assert float(rows["value"][1]) == fraud_data.ROWS
    finally:
        processor.send_signal(signal.SIGTERM)
        assert processor.wait(timeout=20) == 0
    spans = [span for request in read_traces(tmp_path / "out" / "traces.jsonl")
             for resource_spans in request.resource_spans
             for scope_spans in resource_spans.scope_spans for span in scope_spans.spans]
    assert [s.name for s in spans].count(f"predict_proba {fraud_data.MODEL_NAME}") == BATCHES
