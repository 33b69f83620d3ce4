"""Test helpers around the OpenTelemetry SDK (not fixtures; imported by tests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource

from driftline import semconv


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
