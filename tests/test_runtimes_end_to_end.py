"""A service serving an XGBoost booster, a LightGBM booster and an ONNX Runtime session,
instrumented only by ``import driftline.auto``, sends OTLP/gRPC to a real processor
subprocess, which gives each model its drift verdicts: the shifted feature drifts, the others
do not. (One service process for the three: their imports cost more than their models.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation

from driftline import profile, semconv
from tests._collector import LOOPBACK, PROTOCOL_GRPC, processor_gauges, running_collector
from tests.apps import fraud_data, runtime_models
from tests.conftest import ReservedPort

REPO = Path(__file__).resolve().parent.parent
APP_TIMEOUT_S = 120
VERDICT_TIMEOUT_S = 30.0
POLL_S = 0.2
METHOD = semconv.DRIFT_METHOD_WASSERSTEIN
SHIFTED = f"f{fraud_data.SHIFTED_FEATURE}"
CALM = [f"f{i}" for i in range(fraud_data.FEATURES) if i != fraud_data.SHIFTED_FEATURE]


def _train(directory: Path, models: Path) -> None:
    """Each model saved under ``models/{runtime}/`` with its profile in ``directory``."""
    X, y = fraud_data.training_rows()
    with suppress_instrumentation():
        for runtime in runtime_models.RUNTIMES:
            model = runtime_models.train(runtime, X, y)
            (models / runtime).mkdir(parents=True)
            runtime_models.save(runtime, model, models / runtime)
            labels, probabilities = runtime_models.serve(runtime, model, X)
            profile.save(profile.capture(X, labels, probabilities=probabilities,
                                         model=runtime_models.model_name(runtime),
                                         version=fraud_data.MODEL_VERSION),
                         directory / f"{runtime}.profile.json")


def _verdicts(path: Path) -> tuple[dict[str, int], dict[tuple[str, str], set[int]]]:
    """Window rows per model and {(model, feature): detected values} for METHOD."""
    rows: dict[str, int] = {}
    detected: dict[tuple[str, str], set[int]] = {}
    for name, attrs, point in processor_gauges(path):
        model = attrs.get(semconv.ML_MODEL_NAME, "")
        if name == semconv.ML_WINDOW_ROWS:
            rows[model] = rows.get(model, 0) + point.as_int
        elif name == semconv.ML_DRIFT_DETECTED and attrs[semconv.ML_DRIFT_METHOD] == METHOD:
            detected.setdefault((model, attrs[semconv.ML_FEATURE_NAME]), set()).add(point.as_int)
    return rows, detected


@pytest.mark.integration
def test_each_runtime_service_gets_drift_verdicts_from_one_processor(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    _train(tmp_path / "profiles", tmp_path / "models")
    output = tmp_path / "metrics.jsonl"
    # Each recorder exports once, at the service's exit: one window per model.
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"ml_drift": {"profiles": str(tmp_path / "profiles"), "window": "1s",
                                    "grace": "1s", "min_rows": 100}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"pipelines": {"metrics": {
            "receivers": ["otlp"], "processors": ["ml_drift"], "exporters": ["file"]}}},
    }
    names = [runtime_models.model_name(r) for r in runtime_models.RUNTIMES]
    # Held (refusing) until the processor starts: the app's exporter retries meanwhile.
    reserved = ReservedPort()
    endpoint = reserved.endpoint
    config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = endpoint
    env = {**os.environ, "OTEL_SERVICE_NAME": "runtime-service",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{endpoint}",
           "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_TRACES_EXPORTER": "none",
           "OTEL_LOGS_EXPORTER": "none",
           "OTEL_METRIC_EXPORT_INTERVAL": "60000"}  # everything leaves at exit
    # The service starts beside the processor (its imports take longer than the processor's
    # start; the OTLP exporter retries until the processor listens).
    app = subprocess.Popen([sys.executable, "-m", "tests.apps.runtime_app",
                            str(tmp_path / "models")], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        reserved.release()
        with running_collector(config, tmp_path, (PROTOCOL_GRPC,)) as collector:
            _, stderr = app.communicate(timeout=APP_TIMEOUT_S)
            assert app.returncode == 0, stderr
            deadline = time.monotonic() + VERDICT_TIMEOUT_S
            while time.monotonic() < deadline and not all(
                    (name, SHIFTED) in _verdicts(output)[1] for name in names):
                time.sleep(POLL_S)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()

    rows, detected = _verdicts(output)
    assert rows == {name: fraud_data.ROWS for name in names}, collector.stderr()
    for name in names:
        assert detected[(name, SHIFTED)] == {1}, (name, detected)
        for calm in CALM:
            assert detected[(name, calm)] == {0}, (name, calm, detected)
