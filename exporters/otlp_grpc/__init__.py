"""The ``otlp`` (gRPC) exporter: config, factory and component in ``exporter``."""

from __future__ import annotations
