"""Global tracer, meter and logger providers from ``OTEL_*`` variables, unless already set.

In serverless mode (``driftline.serverless.is_serverless``) the OTLP exporters default to
HTTP and, under AWS Lambda, ``service.name`` defaults to the function's name.
"""

from __future__ import annotations

import logging

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from driftline import serverless
from driftline.instrumentation import _env

_logger = logging.getLogger(__name__)

SIGNAL_LOGS = "logs"


def _tracer_provider_is_set() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _meter_provider_is_set() -> bool:
    from opentelemetry.metrics import _internal as metrics_internal

    return not isinstance(metrics.get_meter_provider(), metrics_internal._ProxyMeterProvider)


def _logger_provider_is_set() -> bool:
    from opentelemetry._logs import _internal as logs_internal

    unset = (logs_internal.ProxyLoggerProvider, logs_internal.NoOpLoggerProvider)
    return not isinstance(_logs.get_logger_provider(), unset)


def configure_logger_provider(resource: Resource) -> None:
    """Install an SDK LoggerProvider exporting where ``OTEL_LOGS_EXPORTER`` says.

    Prediction records travel as OTLP log records. Guarded: the SDK's logs API is still
    marked experimental, so a missing module or exporter is logged, never an error; with no
    exporter configured no provider is installed and the app may set its own later.
    """
    if _logger_provider_is_set():
        return
    try:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        exporters = _env.exporters_from_env(SIGNAL_LOGS, deferred=True)
        if not exporters:
            return
        provider = LoggerProvider(resource=resource)
        for exporter in exporters:
            provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    except Exception:
        _logger.warning("driftline: cannot set up the logs exporter; prediction records "
                        "will not be exported", exc_info=True)
        return
    _logs.set_logger_provider(provider)


def configure_providers_from_env() -> None:
    """Install SDK providers exporting where ``OTEL_*`` says; leave the app's own alone."""
    if serverless.is_serverless():
        serverless.apply_environment_defaults()
    resource = Resource.create()
    if not _tracer_provider_is_set():
        provider = TracerProvider(resource=resource)
        for exporter in _env.exporters_from_env("traces", deferred=True):
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    if not _meter_provider_is_set():
        readers = [PeriodicExportingMetricReader(e)
                   for e in _env.exporters_from_env("metrics", deferred=True)]
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    configure_logger_provider(resource)
