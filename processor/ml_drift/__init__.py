"""The ``ml_drift`` processor: drift per model and feature over time windows. Config in
``config``, factory and component in ``processor``; its private helpers beside them."""

from __future__ import annotations
