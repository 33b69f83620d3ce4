"""Driftline: OpenTelemetry-native drift and performance monitoring for ML models.

``import driftline.auto`` instruments model calls; ``driftline.profile.capture`` records a
reference profile; ``driftline collector`` runs the processor.
"""

from __future__ import annotations

from driftline.identity import ModelIdentity, register

__version__ = "0.1.0"

__all__ = ["ModelIdentity", "__version__", "register"]
