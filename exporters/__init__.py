"""Exporters: where Driftline's metrics, traces and logs leave the processor.

Each folder holds one exporter: its config, its collector-style ``Factory`` (``TYPE``,
``CONFIG``, ``SIGNALS``, ``default_config()``, ``create(config, next_consumer)``) and the
component, in ``exporter.py``. ``sending/`` and ``prometheus_series/`` are libraries the
exporters share. The service's registry (``driftline.processor.service.registry``) is the
one list of component types. This package re-exports the file and Prometheus exporters'
public names.
"""

from __future__ import annotations

from driftline.exporters.file import exporter as file
from driftline.exporters.file.exporter import (
    FileExporter,
    FileExporterConfig,
    read_logs,
    read_metrics,
    read_traces,
)
from driftline.exporters.prometheus import exporter as prometheus
from driftline.exporters.prometheus.exporter import PrometheusExporter, PrometheusExporterConfig
from driftline.processor.component.otlp_json import OtlpJsonError

__all__ = [
    "FileExporter",
    "FileExporterConfig",
    "OtlpJsonError",
    "PrometheusExporter",
    "PrometheusExporterConfig",
    "file",
    "prometheus",
    "read_logs",
    "read_metrics",
    "read_traces",
]
