"""Instrumentors for ML libraries and the batching recorder they hand calls to."""

from __future__ import annotations

from driftline.instrumentation.recorder import ModelTraits, PredictCall, Recorder

__all__ = ["ModelTraits", "PredictCall", "Recorder"]
