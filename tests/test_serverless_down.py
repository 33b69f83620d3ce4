"""Serverless with the collector down (issue 14, finding 8): each invocation waited out the
whole flush budget (median 5 009 ms) where a refused connection answers in milliseconds."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from driftline import serverless
from tests.conftest import reserve_port

NEVER_MS = 3_600_000


class _CountingExporter(OTLPSpanExporter):
    calls = 0

    def export(self, spans):  # type: ignore[no-untyped-def]
        _CountingExporter.calls += 1
        return super().export(spans)


@pytest.fixture
def down_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with reserve_port() as closed:  # held, never listening, for the test: nothing listens
        yield _down_env(monkeypatch, f"http://{closed.endpoint}")


def _down_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> str:
    monkeypatch.setenv(serverless.ENV_SERVERLESS, "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER",
                 "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    serverless.forget_probes()
    return endpoint


def test_a_flush_with_nothing_listening_gives_up_without_exporting(
        down_env: str, caplog: pytest.LogCaptureFixture) -> None:
    """With every OTLP/HTTP endpoint refusing connections, the flush does not run (it would
    retry until its budget is spent); the spans stay queued for the next invocation."""
    provider = TracerProvider()
    exporter = _CountingExporter(endpoint=f"{down_env}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=NEVER_MS))
    _CountingExporter.calls = 0
    try:
        provider.get_tracer("t").start_span("predict fraud").end()
        with caplog.at_level(logging.WARNING):
            sent = serverless.flush(5.0, tracer_provider=provider)
        assert sent is False
        assert _CountingExporter.calls == 0
        assert any("nothing listens" in r.getMessage() and down_env.split("//")[1]
                   in r.getMessage() for r in caplog.records)
    finally:
        provider.shutdown()


def test_only_otlp_http_exporters_are_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A console exporter, or OTLP over gRPC, is not a connection to probe: the flush runs."""
    monkeypatch.setenv(serverless.ENV_SERVERLESS, "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert serverless.otlp_http_targets() is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert serverless.otlp_http_targets() is None
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "https://logs.example:4443/v1/logs")
    assert serverless.otlp_http_targets() == {("127.0.0.1", 9), ("logs.example", 4443)}
    monkeypatch.setenv(serverless.ENV_SERVERLESS, "false")
    assert serverless.otlp_http_targets() is None


def test_a_listening_collector_is_flushed_to(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        monkeypatch.setenv(serverless.ENV_SERVERLESS, "true")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        serverless.forget_probes()
        assert serverless.nothing_listens() == []  # someone does: flush as usual
