"""The public API of each package is what its ``__all__`` says, and all of it exists."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

PUBLIC = {
    "driftline": ["GroundTruthNotDelivered", "ModelIdentity", "__version__",
                  "last_prediction_ids", "monitor", "observe", "prediction_ids",
                  "record_ground_truth", "register"],
    "driftline.instrumentation": ["Limits", "ModelTraits", "PredictCall", "Recorder"],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_pinned_and_importable(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name}"


def test_sklearn_instrumentor_is_registered_for_opentelemetry_instrument() -> None:
    from driftline.instrumentation.sklearn import SklearnInstrumentor

    found = {ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor")}
    assert found["sklearn"].load() is SklearnInstrumentor


def test_app_side_import_does_not_load_the_processor_or_exporters() -> None:
    code = ("import sys, driftline.auto; "
            "print(sorted(m for m in sys.modules if m.startswith(('driftline.processor', "
            "'driftline.exporters'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env={"OTEL_TRACES_EXPORTER": "none",
                                             "OTEL_METRICS_EXPORTER": "none",
                                             "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "[]"
