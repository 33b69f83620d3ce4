"""``import driftline.auto``: one line instruments every model call of the process.

It sets up a tracer provider and a meter provider with exporters from the standard
``OTEL_*`` variables unless the application configured its own, then instruments
scikit-learn and PyTorch, each when the application imports it (at once if it already has):
neither is imported here, so a torch-only service does not pay scikit-learn's second of
import time at a cold start, and the other way round. Under ``opentelemetry-instrument`` the distro
configures the providers and the instrumentors are found through the
``opentelemetry_instrumentor`` entry point instead.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import wrapt

from driftline._sdk_setup import configure_providers_from_env

SKLEARN_MODULE = "sklearn"
TORCH_MODULE = "torch"


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken install, or a module stubbed out as None
        return False


def _instrument_sklearn(_sklearn: Any) -> None:
    from driftline.instrumentation.sklearn import SklearnInstrumentor

    SklearnInstrumentor().instrument()


def _instrument_torch(_torch: Any) -> None:
    from driftline.instrumentation.torch import TorchInstrumentor

    TorchInstrumentor().instrument()


configure_providers_from_env()
for _module, _instrument in ((SKLEARN_MODULE, _instrument_sklearn),
                             (TORCH_MODULE, _instrument_torch)):
    if _installed(_module):
        wrapt.register_post_import_hook(_instrument, _module)
