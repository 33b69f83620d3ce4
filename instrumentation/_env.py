"""SDK exporters chosen from the standard ``OTEL_*`` variables, as the SDK's own
auto-configuration chooses them (exporter names resolved through the same entry points)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import _logs
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace.export import SpanExporter

from driftline.instrumentation._records import RECORDS_SCOPE, PredictionRecords, RecordSettings
from driftline.instrumentation.recorder import (
    DEFAULT_EXPORT_INTERVAL_S,
    DEFAULT_EXPORT_TIMEOUT_S,
    Recorder,
)
from driftline.serverless import is_serverless

_logger = logging.getLogger(__name__)

_OTLP = "otlp"
_METRICS = "metrics"
_DEFERRED_ENTRY_POINTS = ("otlp_proto_grpc", "otlp_proto_http")
# Read by the OTLP metric exporters when built; unset, they prefer the SDK's defaults.
_METRIC_PREFERENCES = ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                       "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION")
_NONE = "none"
_HTTP_PROTOCOLS = ("http/protobuf", "http/json")
_GRPC = "grpc"
# Serverless functions export over HTTP: no long-lived gRPC channel to keep across freezes,
# and the Lambda collector extension's default receiver is OTLP/HTTP.
_SERVERLESS_PROTOCOL = "http/protobuf"


def _exporter_names(signal: str) -> list[str]:
    raw = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", _OTLP)
    return [n.strip() for n in raw.split(",") if n.strip() and n.strip() != _NONE]


def default_otlp_protocol() -> str:
    """``grpc`` as the SDK defaults, ``http/protobuf`` in serverless mode."""
    return _SERVERLESS_PROTOCOL if is_serverless() else _GRPC


def _entry_point_name(name: str, signal: str) -> str:
    if name != _OTLP:
        return name
    protocol = (os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or default_otlp_protocol())
    return "otlp_proto_http" if protocol.strip() in _HTTP_PROTOCOLS else "otlp_proto_grpc"


def exporters_from_env(signal: str, deferred: bool = False) -> list[Any]:
    """Instances of the exporters ``OTEL_<SIGNAL>_EXPORTER`` names (``traces``, ``metrics``,
    ``logs``); ``otlp`` is gRPC unless the protocol variables or serverless mode say HTTP.

    ``deferred``: OTLP exporters are ``DeferredExporter``s, imported and built at their
    first export (in the exporting thread), not in the application's start.
    """
    group = f"opentelemetry_{signal}_exporter"
    exporters = []
    for name in _exporter_names(signal):
        entry_point_name = _entry_point_name(name, signal)
        found = entry_points(group=group, name=entry_point_name)
        if not found:
            _logger.warning("driftline: no %s exporter named %r is installed", signal, name)
            continue
        entry_point = next(iter(found))
        if deferred and entry_point_name in _DEFERRED_ENTRY_POINTS and not (
                signal == _METRICS and any(os.environ.get(v) for v in _METRIC_PREFERENCES)):
            exporters.append(DeferredExporter(entry_point.load))
        else:
            exporters.append(entry_point.load()())
    return exporters


class DeferredExporter(MetricExporter, SpanExporter):
    """An exporter imported and built at its first export, by the thread exporting.

    The OTLP exporters import gRPC or protobuf and requests, about half of what
    ``import driftline.auto`` cost a scikit-learn application's start. As a metric exporter
    it prefers the SDK's defaults (cumulative, explicit buckets), which is what the OTLP
    metric exporters prefer unless the two ``OTEL_EXPORTER_OTLP_METRICS_*`` preference
    variables are set; then they are built at once instead.
    """

    def __init__(self, load: Callable[[], Callable[[], Any]]) -> None:
        MetricExporter.__init__(self)
        self._load = load
        self._exporter: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._exporter is not None

    def _built(self) -> Any:
        with self._lock:
            if self._exporter is None:
                self._exporter = self._load()()
            return self._exporter

    def export(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        return self._built().export(data, *args, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._exporter is None or self._exporter.force_flush(timeout_millis)

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        if self._exporter is not None:
            self._exporter.shutdown(*args, **kwargs)


class FanOutMetricExporter(MetricExporter):
    """Exports to every exporter named in ``OTEL_METRICS_EXPORTER`` (e.g. ``otlp,console``)."""

    def __init__(self, exporters: Sequence[MetricExporter]) -> None:
        super().__init__()
        self._exporters = list(exporters)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        results = [e.export(metrics_data, timeout_millis=timeout_millis)
                   for e in self._exporters]
        failed = any(r is not MetricExportResult.SUCCESS for r in results)
        return MetricExportResult.FAILURE if failed else MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return all(e.force_flush(timeout_millis) for e in self._exporters)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        for exporter in self._exporters:
            exporter.shutdown()


def metric_exporter_from_env() -> MetricExporter:
    exporters = exporters_from_env(_METRICS, deferred=True)
    return exporters[0] if len(exporters) == 1 else FanOutMetricExporter(exporters)


def _millis_env(name: str, default_s: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default_s
    try:
        return float(raw) / 1000.0
    except ValueError:
        _logger.warning("driftline: %s=%r is not a number of milliseconds; using %s s",
                        name, raw, default_s)
        return default_s


def export_interval_s_from_env() -> float:
    return _millis_env("OTEL_METRIC_EXPORT_INTERVAL", DEFAULT_EXPORT_INTERVAL_S)


def export_timeout_s_from_env() -> float:
    return _millis_env("OTEL_METRIC_EXPORT_TIMEOUT", DEFAULT_EXPORT_TIMEOUT_S)


def recorder_from_kwargs(kwargs: Mapping[str, Any]) -> tuple[Recorder, bool]:
    """The recorder an instrumentor hands calls to, and whether the instrumentor owns it.

    ``recorder=`` is the caller's (flushed, never shut down, on uninstrument); otherwise a new
    one exports through ``metric_exporter=`` or the exporter ``OTEL_*`` choose.
    """
    given = kwargs.get("recorder")
    if given is not None:
        return given, False
    return Recorder(kwargs.get("metric_exporter") or metric_exporter_from_env(),
                    export_interval_s=export_interval_s_from_env(),
                    export_timeout_s=export_timeout_s_from_env(),
                    records=prediction_records_from_kwargs(kwargs)), True


def prediction_records_from_kwargs(kwargs: Mapping[str, Any]) -> PredictionRecords | None:
    """``ml.prediction`` records when enabled (``prediction_records=RecordSettings(...)`` or
    the ``DRIFTLINE_PREDICTION_RECORDS_*`` variables), through ``logger_provider=`` or the
    global logger provider."""
    settings = kwargs.get("prediction_records")
    if settings is None:
        try:
            settings = RecordSettings.from_env()
        except ValueError as exc:  # bad telemetry settings must not stop the app
            _logger.warning("driftline: %s; ml.prediction records are off", exc)
            return None
    if not settings.enabled:
        return None
    provider = kwargs.get("logger_provider") or _logs.get_logger_provider()
    flush = getattr(provider, "force_flush", None)
    return PredictionRecords(provider.get_logger(RECORDS_SCOPE), settings,
                             flush=flush if callable(flush) else None)


def release_recorder(recorder: Recorder, owned: bool) -> None:
    """Shut down a recorder the instrumentor made; only flush one it was given."""
    if owned:
        recorder.shutdown()
    else:
        recorder.force_flush()
