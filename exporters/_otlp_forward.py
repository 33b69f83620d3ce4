"""What the ``otlp`` (gRPC) and ``otlphttp`` exporters share: requests per signal, client TLS,
and the component that feeds batches through the sending chain (``_sending.Sender``)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
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

from driftline.exporters._sending import Item, Sender, SendingConfig, storage_directory
from driftline.processor.component import Host

SIGNAL_METRICS = "metrics"
SIGNAL_TRACES = "traces"
SIGNAL_LOGS = "logs"
SIGNALS = (SIGNAL_METRICS, SIGNAL_TRACES, SIGNAL_LOGS)
COMPRESSIONS = ("none", "gzip")
RESPONSES = {SIGNAL_METRICS: ExportMetricsServiceResponse,
             SIGNAL_TRACES: ExportTraceServiceResponse,
             SIGNAL_LOGS: ExportLogsServiceResponse}


@dataclass(slots=True)
class ClientTlsConfig:
    """``tls`` of an exporter, as the collector's ``configtls`` client settings."""

    insecure: bool = False  # gRPC: plaintext (an http:// endpoint is plaintext anyway)
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False

    def validate(self) -> list[str]:
        problems = [f"{key}: file {value} does not exist"
                    for key, value in (("ca_file", self.ca_file), ("cert_file", self.cert_file),
                                       ("key_file", self.key_file))
                    if value and not Path(value).is_file()]
        if bool(self.cert_file) != bool(self.key_file):
            problems.append("cert_file: a client certificate needs both cert_file and key_file")
        return problems

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file or None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def encode(signal: str, batch: Sequence[Any]) -> Item:
    """The export request of ``batch`` and how many points, spans or records it holds."""
    if signal == SIGNAL_METRICS:
        request: Any = ExportMetricsServiceRequest(resource_metrics=batch)
        count = sum(len(getattr(m, m.WhichOneof("data")).data_points)
                    for r in batch for s in r.scope_metrics for m in s.metrics
                    if m.WhichOneof("data"))
    elif signal == SIGNAL_TRACES:
        request = ExportTraceServiceRequest(resource_spans=batch)
        count = sum(len(s.spans) for r in batch for s in r.scope_spans)
    else:
        request = ExportLogsServiceRequest(resource_logs=batch)
        count = sum(len(s.log_records) for r in batch for s in r.scope_logs)
    return Item(signal, request.SerializeToString(), count)


def rejected_of(signal: str, response: Any) -> tuple[int, str]:
    """The partial-success rejection a response carries: (count, message)."""
    partial = response.partial_success
    field = {SIGNAL_METRICS: "rejected_data_points", SIGNAL_TRACES: "rejected_spans",
             SIGNAL_LOGS: "rejected_log_records"}[signal]
    return int(getattr(partial, field)), partial.error_message


class ForwardingExporter:
    """Hands each batch to the sending chain; the protocol's ``send`` does the rest."""

    def __init__(self, name: str, sending: SendingConfig,
                 send: Callable[[Item, float], None]) -> None:
        self._name = name
        self._sending = sending
        self._send = send
        self._sender: Sender | None = None
        self._host = Host()

    def set_host(self, host: Host) -> None:
        self._host = host

    def start(self) -> None:
        directory = storage_directory(self._host, self._sending.sending_queue.storage,
                                      self._name, f"exporters::{self._name}::sending_queue"
                                      "::storage")
        self._sender = Sender(self._name, self._send, self._sending, directory)
        self._sender.start()

    def shutdown(self) -> None:
        if self._sender is not None:
            self._sender.shutdown()

    def stats(self) -> Any:
        return self._sender.stats() if self._sender is not None else None

    def _submit(self, signal: str, batch: Sequence[Any]) -> None:
        item = encode(signal, batch)
        if item.count:
            self._submit_item(item)

    def _submit_item(self, item: Item) -> None:
        if self._sender is None:
            raise RuntimeError(f"{self._name} is not started")
        self._sender.submit(item)

    def consume_metrics(self, batch: Sequence[Any]) -> None:
        self._submit(SIGNAL_METRICS, batch)

    def consume_traces(self, batch: Sequence[Any]) -> None:
        self._submit(SIGNAL_TRACES, batch)

    def consume_logs(self, batch: Sequence[Any]) -> None:
        self._submit(SIGNAL_LOGS, batch)
