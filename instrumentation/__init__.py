"""Instrumentors for ML libraries and the batching recorder they hand calls to."""

from __future__ import annotations

from driftline.instrumentation.recorder import PredictCall, Recorder

__all__ = ["PredictCall", "Recorder"]
