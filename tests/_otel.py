"""Test helpers around the OpenTelemetry SDK (not fixtures; imported by tests)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource

from driftline import semconv
from driftline.instrumentation import Recorder
from driftline.instrumentation._env import prediction_records_from_kwargs
from driftline.instrumentation._records import RecordSettings
from driftline.instrumentation.sklearn import SklearnInstrumentor


class InMemoryMetricExporter(MetricExporter):
    """Keeps what it was asked to export: the SDK ships a reader, not an exporter, for this."""

    def __init__(self) -> None:
        super().__init__()
        self.exported: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass

    def points(self, name: str) -> Iterator[Any]:
        for data in self.exported:
            for resource_metrics in data.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        if metric.name == name:
                            yield from metric.data.data_points


def emit_ground_truth(exporter: Any, prediction_id: str, label: str) -> None:
    """One ``ml.ground_truth`` event through the SDK's logs pipeline into ``exporter``."""
    provider = LoggerProvider(resource=Resource.create({semconv.SERVICE_NAME: "churn-api"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger("driftline.test").emit(
        event_name="ml.ground_truth", body=label,
        attributes={"ml.prediction.id": prediction_id})
    provider.shutdown()


@contextlib.contextmanager
def instrumented_app(endpoint: str, instance: str, records_per_second: float
                     ) -> Iterator[tuple[Recorder, LoggerProvider]]:
    """An app replica ``instance`` of churn-api with scikit-learn instrumented: its recorder
    and its prediction records (every prediction, up to ``records_per_second``) over the
    SDK's OTLP/HTTP exporters to ``endpoint``; yields the recorder and logger provider."""
    resource = Resource.create({semconv.SERVICE_NAME: "churn-api",
                                semconv.SERVICE_INSTANCE_ID: instance})
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=f"http://{endpoint}/v1/logs")))
    records = prediction_records_from_kwargs(
        {"logger_provider": logs,
         "prediction_records": RecordSettings(ratio=1.0, per_second=records_per_second)})
    recorder = Recorder(OTLPMetricExporter(endpoint=f"http://{endpoint}/v1/metrics"),
                        resource=resource, records=records)
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(recorder=recorder)
    try:
        yield recorder, logs
    finally:
        instrumentor.uninstrument()
        recorder.shutdown()
        logs.shutdown()
