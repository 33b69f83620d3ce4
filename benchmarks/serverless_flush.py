"""What ``driftline.serverless.flush`` adds to one invocation: collector up, down, slow.

Run: ``.venv/bin/python benchmarks/serverless_flush.py``. One span per invocation, exported
over OTLP/HTTP by the SDK's exporter as serverless mode configures it:

- **up**: Driftline's own OTLP receiver listens (in this process);
- **down**: nothing listens on the port (connections are refused);
- **slow**: a socket accepts connections and never answers (the flush budget must hold).

Prints a Markdown table of the median and the slowest invocation per case.
"""

from __future__ import annotations

import os
import socket
import statistics
import time

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from driftline import serverless
from driftline.processor.otlp_receiver.config import (
    HttpConfig,
    OtlpReceiverConfig,
    ProtocolsConfig,
)
from driftline.processor.otlp_receiver.receiver import OtlpReceiver

INVOCATIONS = 20
SLOW_INVOCATIONS = 3
FLUSH_BUDGET_S = 1.0
NEVER_MS = 3_600_000


class _Sink:
    signals = ("metrics", "traces", "logs")

    def consume_traces(self, batch: object) -> None:
        pass

    consume_metrics = consume_logs = consume_traces


def _invocations(endpoint: str, count: int) -> list[float]:
    """Seconds ``flush`` took after each of ``count`` invocations ending one span."""
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    serverless.forget_probes()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=FLUSH_BUDGET_S),
        schedule_delay_millis=NEVER_MS))
    tracer = provider.get_tracer("bench")
    took = []
    for _ in range(count):
        tracer.start_span("predict fraud").end()
        started = time.perf_counter()
        serverless.flush(FLUSH_BUDGET_S, tracer_provider=provider)
        took.append(time.perf_counter() - started)
    provider.shutdown()
    return took


def main() -> None:
    os.environ[serverless.ENV_SERVERLESS] = "true"
    results = {}
    receiver = OtlpReceiver(OtlpReceiverConfig(ProtocolsConfig(
        http=HttpConfig(endpoint="127.0.0.1:0"))), _Sink())
    receiver.start()
    try:
        results["up (receiver listening)"] = _invocations(
            f"http://127.0.0.1:{receiver.http_port}", INVOCATIONS)
    finally:
        receiver.shutdown()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    results["down (connection refused)"] = _invocations(f"http://127.0.0.1:{port}",
                                                        INVOCATIONS)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        results[f"slow (accepts, never answers; budget {FLUSH_BUDGET_S:g} s)"] = \
            _invocations(f"http://127.0.0.1:{silent.getsockname()[1]}", SLOW_INVOCATIONS)
    print("| collector | invocations | median ms added | slowest ms |")
    print("|---|---|---|---|")
    for case, took in results.items():
        print(f"| {case} | {len(took)} | {statistics.median(took) * 1e3:.1f} | "
              f"{max(took) * 1e3:.1f} |")


if __name__ == "__main__":
    main()
