"""Exporters: where Driftline's metrics, traces and logs leave the processor.

Each module holds one exporter and its collector-style ``Factory`` (``TYPE``, ``CONFIG``,
``SIGNALS``, ``default_config()``, ``create(config, next_consumer)``); ``factories()`` lists
them by type for the processor's config loader.
"""

from __future__ import annotations

from typing import Any

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
    "factories",
    "file",
    "prometheus",
    "read_logs",
    "read_metrics",
    "read_traces",
]


def factories() -> dict[str, Any]:
    """The exporter factories by their YAML ``type``; a new dict per call, nothing global."""
    return {factory.TYPE: factory for factory in (prometheus.Factory, file.Factory)}
