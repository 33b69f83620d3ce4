"""Global tracer and meter providers from ``OTEL_*`` variables, unless already configured."""

from __future__ import annotations

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from driftline.instrumentation import _env


def _tracer_provider_is_set() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _meter_provider_is_set() -> bool:
    from opentelemetry.metrics import _internal as metrics_internal

    return not isinstance(metrics.get_meter_provider(), metrics_internal._ProxyMeterProvider)


def configure_providers_from_env() -> None:
    """Install SDK providers exporting where ``OTEL_*`` says; leave the app's own alone."""
    resource = Resource.create()
    if not _tracer_provider_is_set():
        provider = TracerProvider(resource=resource)
        for exporter in _env.exporters_from_env("traces"):
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    if not _meter_provider_is_set():
        readers = [PeriodicExportingMetricReader(e) for e in _env.exporters_from_env("metrics")]
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
