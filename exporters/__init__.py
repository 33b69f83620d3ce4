"""Exporters: where Driftline's metrics, traces and logs leave the processor.

Each folder holds one exporter: its config, its collector-style ``Factory`` (``TYPE``,
``CONFIG``, ``SIGNALS``, ``default_config()``, ``create(config, next_consumer)``) and the
component, in ``exporter.py``. ``sending/`` and ``prometheus_series/`` are libraries the
exporters share. The service's registry (``driftline.processor.service.registry``) is the
one list of component types. This package re-exports the file and Prometheus exporters'
public names, imported on first use so that importing one exporter loads no other.
"""

from __future__ import annotations

import importlib
from typing import Any

_FILE = "driftline.exporters.file.exporter"
_PROMETHEUS = "driftline.exporters.prometheus.exporter"
# public name -> (module, attribute; None for the module itself)
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "FileExporter": (_FILE, "FileExporter"),
    "FileExporterConfig": (_FILE, "FileExporterConfig"),
    "OtlpJsonError": ("driftline.processor.component.otlp_json", "OtlpJsonError"),
    "PrometheusExporter": (_PROMETHEUS, "PrometheusExporter"),
    "PrometheusExporterConfig": (_PROMETHEUS, "PrometheusExporterConfig"),
    "file": ("driftline.exporters.file", None),
    "prometheus": ("driftline.exporters.prometheus", None),
    "read_logs": (_FILE, "read_logs"),
    "read_metrics": (_FILE, "read_metrics"),
    "read_traces": (_FILE, "read_traces"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """A re-exported name, its module imported on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)
