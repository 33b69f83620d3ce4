"""The Grafana dashboard over Driftline's Prometheus metrics (``driftline.json``), shipped as
package data: ``shipped("grafana/driftline.json")``."""

from __future__ import annotations

__all__: list[str] = []  # data only: the files beside this one
