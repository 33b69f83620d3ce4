"""Prometheus alert rules for Driftline's metrics (``alerts.yaml``) and their promtool unit
tests (``alerts.test.yaml``), shipped as package data: ``shipped("prometheus/alerts.yaml")``."""

from __future__ import annotations

__all__: list[str] = []  # data only: the files beside this one
