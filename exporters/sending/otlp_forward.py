"""What the ``otlp`` (gRPC) and ``otlphttp`` exporters share: requests per signal and their
responses' partial success."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from driftline.exporters.sending.push import PushExporter
from driftline.exporters.sending.queue import Item
from driftline.processor.component.signals import (
    SIGNAL_LOGS,
    SIGNAL_METRICS,
    SIGNAL_TRACES,
    item_count,
)

COMPRESSIONS = ("none", "gzip")
RESPONSES = {SIGNAL_METRICS: ExportMetricsServiceResponse,
             SIGNAL_TRACES: ExportTraceServiceResponse,
             SIGNAL_LOGS: ExportLogsServiceResponse}


def encode(signal: str, batch: Sequence[Any]) -> Item:
    """The export request of ``batch`` and how many points, spans or records it holds."""
    if signal == SIGNAL_METRICS:
        request: Any = ExportMetricsServiceRequest(resource_metrics=batch)
    elif signal == SIGNAL_TRACES:
        request = ExportTraceServiceRequest(resource_spans=batch)
    else:
        request = ExportLogsServiceRequest(resource_logs=batch)
    return Item(signal, request.SerializeToString(), item_count(signal, batch))


def rejected_of(signal: str, response: Any) -> tuple[int, str]:
    """The partial-success rejection a response carries: (count, message)."""
    partial = response.partial_success
    field = {SIGNAL_METRICS: "rejected_data_points", SIGNAL_TRACES: "rejected_spans",
             SIGNAL_LOGS: "rejected_log_records"}[signal]
    return int(getattr(partial, field)), partial.error_message


class ForwardingExporter(PushExporter):
    """Sends each batch of any signal as its OTLP export request."""

    def _submit(self, signal: str, batch: Sequence[Any]) -> None:
        item = encode(signal, batch)
        if item.count:
            self._submit_item(item)

    def consume_metrics(self, batch: Sequence[Any]) -> None:
        self._submit(SIGNAL_METRICS, batch)

    def consume_traces(self, batch: Sequence[Any]) -> None:
        self._submit(SIGNAL_TRACES, batch)

    def consume_logs(self, batch: Sequence[Any]) -> None:
        self._submit(SIGNAL_LOGS, batch)
