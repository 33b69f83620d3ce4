"""``opentelemetry-instrument python app.py``: no code change, telemetry reaches a real
processor over OTLP/gRPC through the entry points of the distro and of Driftline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from driftline import semconv
from driftline.exporters.file.exporter import read_metrics, read_traces
from tests._collector import PROTOCOL_GRPC, spawn_cli
from tests.apps import plain_app

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_opentelemetry_instrument_needs_no_code_change(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (tmp_path / "profiles").mkdir()
    config = tmp_path / "collector.yaml"
    config.write_text(f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
exporters:
  file/metrics:
    path: {out / "metrics.jsonl"}
    flush_interval: 0
  file/traces:
    path: {out / "traces.jsonl"}
    flush_interval: 0
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file/metrics]
    traces:
      receivers: [otlp]
      exporters: [file/traces]
""")
    collector = spawn_cli(["--config", str(config)], tmp_path)  # on a port the OS picks
    processor = collector.process
    try:
        collector.wait_for((PROTOCOL_GRPC,))
        otlp = collector.endpoints[PROTOCOL_GRPC]
        env = {**os.environ, "OTEL_SERVICE_NAME": "plain-service",
               "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp}",
               "OTEL_EXPORTER_OTLP_INSECURE": "true",
               "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
               "OTEL_LOGS_EXPORTER": "none",
               semconv.ENV_MODEL_NAME: "plain", semconv.ENV_MODEL_VERSION: "9"}
        instrument = Path(sys.executable).parent / "opentelemetry-instrument"
        app = subprocess.run([str(instrument), sys.executable, "-m", "tests.apps.plain_app"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert app.returncode == 0, app.stderr
    finally:
        processor.send_signal(signal.SIGTERM)
        assert processor.wait(timeout=20) == 0
    spans = [span for request in read_traces(out / "traces.jsonl")
             for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    assert [s.name for s in spans] == ["predict plain"] * plain_app.CALLS
    rows = [point for request in read_metrics(out / "metrics.jsonl")
            for rm in request.resource_metrics for sm in rm.scope_metrics
            for metric in sm.metrics if metric.name == semconv.ML_PREDICT_ROWS
            for point in metric.sum.data_points]
    assert sum(p.as_int for p in rows) == plain_app.ROWS
    versions = {kv.value.string_value for p in rows for kv in p.attributes
                if kv.key == semconv.ML_MODEL_VERSION}
    assert versions == {"9"}
