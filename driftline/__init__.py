"""Driftline: OpenTelemetry-native drift and performance monitoring for ML models.

``import driftline.auto`` instruments model calls; ``driftline.profile.capture`` records a
reference profile; ``driftline collector`` runs the processor. ``prediction_ids`` /
``last_prediction_ids`` name a call's rows and ``record_ground_truth`` sends their labels.
"""

from __future__ import annotations

from driftline.identity import ModelIdentity, register
from driftline.predictions import (
    GroundTruthNotDelivered,
    last_prediction_ids,
    prediction_ids,
    record_ground_truth,
)

__version__ = "0.1.0"

__all__ = ["GroundTruthNotDelivered", "ModelIdentity", "__version__", "last_prediction_ids",
           "prediction_ids", "record_ground_truth", "register"]
