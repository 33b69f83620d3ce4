"""Configs for the OpenTelemetry Collector (contrib) in front of Driftline, not for
``driftline collector``: the load-balancing tier of a sharded deployment
(``otelcol/sharded-loadbalancer.yaml``, docs/scale.md), shipped as package data."""

from __future__ import annotations

__all__: list[str] = []  # data only: the files beside this one
