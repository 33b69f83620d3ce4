"""``import driftline.auto``: one line instruments every model call of the process.

It sets up a tracer provider and a meter provider with exporters from the standard
``OTEL_*`` variables unless the application configured its own, then instruments
scikit-learn, and PyTorch when it is installed. Under ``opentelemetry-instrument`` the distro
configures the providers and the instrumentors are found through the
``opentelemetry_instrumentor`` entry point instead.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import wrapt

from driftline._sdk_setup import configure_providers_from_env
from driftline.instrumentation.sklearn import SklearnInstrumentor

TORCH_MODULE = "torch"


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken install, or a module stubbed out as None
        return False


def _instrument_torch(_torch: Any) -> None:
    from driftline.instrumentation.torch import TorchInstrumentor

    TorchInstrumentor().instrument()


configure_providers_from_env()
SklearnInstrumentor().instrument()
if _installed(TORCH_MODULE):
    # Instrumented when the application imports torch (at once if it already has): importing
    # it here would cost a scikit-learn-only service seconds and hundreds of megabytes.
    wrapt.register_post_import_hook(_instrument_torch, TORCH_MODULE)
