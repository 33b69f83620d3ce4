"""Instrumentors for ML libraries and the batching recorder they hand calls to."""

from __future__ import annotations

from driftline.instrumentation._aggregation import Limits, ModelTraits
from driftline.instrumentation.recorder import PredictCall, Recorder

__all__ = ["Limits", "ModelTraits", "PredictCall", "Recorder"]
