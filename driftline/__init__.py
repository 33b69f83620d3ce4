"""Driftline: OpenTelemetry-native drift and performance monitoring for ML models.

``import driftline.auto`` instruments model calls; ``driftline.monitor`` and
``driftline.observe`` report any other model call explicitly; ``driftline.profile.capture``
records a reference profile; ``driftline collector`` runs the processor. ``prediction_ids``
/ ``last_prediction_ids`` name a call's rows and ``record_ground_truth`` sends their labels.
"""

from __future__ import annotations

from typing import Any

from driftline.identity import ModelIdentity, register
from driftline.predictions import (
    GroundTruthNotDelivered,
    last_prediction_ids,
    prediction_ids,
    record_ground_truth,
)

__version__ = "0.1.0"

__all__ = ["GroundTruthNotDelivered", "ModelIdentity", "__version__", "last_prediction_ids",
           "monitor", "observe", "prediction_ids", "record_ground_truth", "register"]

# Imported at first use: the explicit API loads the OpenTelemetry SDK and the recorder,
# which ``import driftline`` (a profile script, the CLI) must not pay for.
_LAZY = {"monitor": "driftline.instrumentation.explicit",
         "observe": "driftline.instrumentation.explicit"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'driftline' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
