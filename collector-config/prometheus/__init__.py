"""Prometheus alert rules for Driftline's metrics (``alerts.yaml``) and their promtool unit
tests (``alerts.test.yaml``), shipped as package data: ``shipped("prometheus/alerts.yaml")``."""
