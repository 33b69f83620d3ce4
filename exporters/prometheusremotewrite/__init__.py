"""The ``prometheusremotewrite`` exporter: config, factory and component in ``exporter``,
the protobuf message in ``proto``."""

from __future__ import annotations
