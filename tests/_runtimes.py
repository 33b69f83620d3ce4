"""Helpers of the model runtimes' instrumentation tests (not fixtures; imported by tests)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from driftline import semconv
from tests._otel import InMemoryMetricExporter


@dataclass
class Telemetry:
    """An instrumentor with its in-memory spans and metrics."""

    instrumentor: Any
    spans: InMemorySpanExporter
    metrics: InMemoryMetricExporter

    def flush(self) -> None:
        assert self.instrumentor.recorder.force_flush()

    def features(self) -> dict[str, Any]:
        return {p.attributes[semconv.ML_FEATURE_NAME]: p
                for p in self.metrics.points(semconv.ML_FEATURE_VALUE)}

    def classes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for point in self.metrics.points(semconv.ML_PREDICTION_CLASS_METRIC):
            label = point.attributes[semconv.ML_PREDICTION_CLASS]
            counts[label] = counts.get(label, 0) + point.value
        return counts

    def rows(self) -> int:
        return sum(p.value for p in self.metrics.points(semconv.ML_PREDICT_ROWS))

    def one(self, name: str) -> Any:
        [point] = list(self.metrics.points(name))
        return point


@contextlib.contextmanager
def instrumented(*instrumentors: Any, **kwargs: Any) -> Iterator[list[Telemetry]]:
    """Each instrumentor instrumented with its own span and metric exporters; uninstrumented
    on exit, last first."""
    telemetry = []
    try:
        for instrumentor in instrumentors:
            spans = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(spans))
            metrics = InMemoryMetricExporter()
            instrumentor.instrument(tracer_provider=provider, metric_exporter=metrics, **kwargs)
            telemetry.append(Telemetry(instrumentor, spans, metrics))
        yield telemetry
    finally:
        for found in reversed(telemetry):
            found.instrumentor.uninstrument()
