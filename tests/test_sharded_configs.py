"""The shipped sharded deployment (docs/scale.md): the processors' config validates, and the
load balancer's config routes every Driftline signal by model to the processors' port.

The load balancer's config is for an OpenTelemetry Collector contrib build; the collector
binary in the dev dependencies carries too few components to load it, so its shape is
checked here against what the processors expect.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from driftline import semconv
from driftline.collector_config import shipped
from driftline.processor.service.config import load_config

PROCESSOR = "sharded-processor.yaml"
BALANCER = "otelcol/sharded-loadbalancer.yaml"
DRIFTLINE_METRICS = (semconv.ML_FEATURE_VALUE, semconv.ML_FEATURE_CATEGORY_METRIC,
                     semconv.ML_PREDICTION_VALUE, semconv.ML_PREDICTION_CLASS_METRIC,
                     semconv.ML_PREDICTION_CONFIDENCE, semconv.ML_PREDICT_ROWS)


def _environ(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "profiles").mkdir()
    return {**os.environ, "DRIFTLINE_PROFILES": str(tmp_path / "profiles"),
            "DRIFTLINE_OUTPUT": str(tmp_path / "out")}


def test_the_sharded_processor_config_validates(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "driftline", "validate",
                           str(shipped(PROCESSOR))], env=_environ(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _balancer() -> dict[str, Any]:
    return yaml.safe_load(shipped(BALANCER).read_text())


def test_the_load_balancer_routes_by_model_to_the_processors_port(tmp_path: Path) -> None:
    balancer = _balancer()
    exporter = balancer["exporters"]["loadbalancing"]
    assert exporter["routing_key"] == "attributes"
    assert exporter["routing_attributes"] == [semconv.ML_MODEL_NAME]
    processors = load_config(shipped(PROCESSOR), environ=_environ(tmp_path))
    [receiver] = [c for i, c in processors.receivers.items() if str(i).startswith("otlp")]
    grpc_port = int(receiver.protocols.grpc.endpoint.rsplit(":", 1)[1])
    assert exporter["resolver"]["dns"]["port"] == grpc_port
    pipelines = balancer["service"]["pipelines"]
    for signal in ("metrics", "logs"):  # drift metrics, and prediction / label records
        assert pipelines[signal]["exporters"] == ["loadbalancing"]
    # Deltas become cumulative before routing (a processor detects a moved model only on a
    # cumulative stream), and the processors get every Driftline metric and nothing else.
    metrics = pipelines["metrics"]["processors"]
    assert metrics.index("filter/ml") < metrics.index("deltatocumulative")
    [condition] = balancer["processors"]["filter/ml"]["metrics"]["metric"]
    pattern = re.search(r'IsMatch\(name, "(.*)"\)', condition).group(1).replace("\\\\", "\\")
    assert condition.startswith("not ")
    assert all(re.search(pattern, name) for name in DRIFTLINE_METRICS)
    assert not re.search(pattern, "http.server.request.duration")
    defined = {kind: set(balancer[kind]) for kind in ("receivers", "processors", "exporters")}
    for pipeline in pipelines.values():
        for kind in defined:
            assert set(pipeline.get(kind, [])) <= defined[kind]
