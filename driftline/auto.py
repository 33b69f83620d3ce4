"""``import driftline.auto``: one line instruments every model call of the process.

It sets up a tracer provider and a meter provider with exporters from the standard
``OTEL_*`` variables unless the application configured its own, then instruments
scikit-learn, PyTorch, XGBoost, LightGBM and ONNX Runtime, each when the application imports
it (at once if it already has): none is imported here, so a torch-only service does not pay
scikit-learn's second of import time at a cold start, and the other way round. Under
``opentelemetry-instrument`` the distro configures the providers and the instrumentors are
found through the ``opentelemetry_instrumentor`` entry point instead (scikit-learn's and
PyTorch's import their library then; XGBoost's, LightGBM's and ONNX Runtime's wait for the
application to import theirs).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import wrapt

from driftline._sdk_setup import configure_providers_from_env

SKLEARN_MODULE = "sklearn"
TORCH_MODULE = "torch"
XGBOOST_MODULE = "xgboost"
LIGHTGBM_MODULE = "lightgbm"
ONNXRUNTIME_MODULE = "onnxruntime"


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


def _instrument_xgboost(_xgboost: Any) -> None:
    from driftline.instrumentation.xgboost import XGBoostInstrumentor

    XGBoostInstrumentor().instrument()


def _instrument_lightgbm(_lightgbm: Any) -> None:
    from driftline.instrumentation.lightgbm import LightGBMInstrumentor

    LightGBMInstrumentor().instrument()


def _instrument_onnxruntime(_onnxruntime: Any) -> None:
    from driftline.instrumentation.onnxruntime import OnnxRuntimeInstrumentor

    OnnxRuntimeInstrumentor().instrument()


configure_providers_from_env()
for _module, _instrument in ((SKLEARN_MODULE, _instrument_sklearn),
                             (TORCH_MODULE, _instrument_torch),
                             (XGBOOST_MODULE, _instrument_xgboost),
                             (LIGHTGBM_MODULE, _instrument_lightgbm),
                             (ONNXRUNTIME_MODULE, _instrument_onnxruntime)):
    if _installed(_module):
        wrapt.register_post_import_hook(_instrument, _module)
