"""Serverless mode: a Lambda-like function writes nothing and flushes before it returns.

The integration test runs ``tests/apps/lambda_app.py`` in a subprocess whose audit hook
refuses every file opened for writing, against a real collector subprocess with an OTLP/HTTP
receiver and a ``file`` exporter. The app leaves with ``os._exit(0)`` right after its last
invocation and both the recorder's and the span processor's schedules are ten minutes, so
only ``driftline.serverless.handler``'s flush can have delivered what the processor wrote.

Bytecode caches: ``PYTHONDONTWRITEBYTECODE`` is deliberately left unset, as it is in Lambda,
so the import system tries to write ``__pycache__/*.pyc`` for modules not compiled yet. The
hook refuses those too (the import system swallows the error and imports from source), so
nothing at all is written; the test tolerates those attempts because they are the
interpreter's, inside ``__pycache__``, and fails on any other, Driftline's included.
Pre-compiling instead would make the test depend on the state of every ``__pycache__``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sklearn.linear_model import LogisticRegression

import driftline
from driftline import semconv, serverless
from driftline.exporters.file.exporter import read_metrics, read_traces
from driftline.instrumentation import _env
from driftline.instrumentation.recorder import Recorder
from driftline.instrumentation.sklearn import SklearnInstrumentor
from tests._collector import LOOPBACK, PROTOCOL_HTTP, file_pipeline_config, running_collector
from tests._otel import InMemoryMetricExporter
from tests.apps import fraud_data

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_TIMEOUT_S = 120.0
FUNCTION_NAME = "fraud-fn"
# Long enough that no periodic export can happen while a test runs.
NEVER_MS = 600_000
NEVER_S = NEVER_MS / 1e3
FLUSH_TIMEOUT_S = 0.3
# How late a handler whose flush hangs may return, beyond its flush timeout.
RETURN_SLACK_S = 0.7
BYTECODE_DIR = "__pycache__"
# Rows per invocation of the Lambda-like app (its command line).
BATCHES = (50, 70)
_ENV_PREFIXES = ("OTEL_", "AWS_", "DRIFTLINE_", "K_SERVICE", "FUNCTIONS_WORKER_RUNTIME")


def app_environment(**overrides: str) -> dict[str, str]:
    """This process's environment without telemetry, serverless or bytecode settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(_ENV_PREFIXES) and k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **overrides}


def resource_attributes(resource: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in resource.attributes}


# --- the Lambda-like function against a real processor --------------------------------------


@pytest.mark.integration
def test_lambda_function_writes_nothing_and_its_flush_delivers_everything(
    tmp_path: Path
) -> None:
    output = tmp_path / "out.jsonl"
    config = file_pipeline_config(output, {"http": {"endpoint": f"{LOOPBACK}:0"}})

    with running_collector(config, tmp_path) as collector:
        env = app_environment(
            AWS_LAMBDA_FUNCTION_NAME=FUNCTION_NAME,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{collector.endpoints[PROTOCOL_HTTP]}",
            OTEL_METRIC_EXPORT_INTERVAL=str(NEVER_MS),
            OTEL_BSP_SCHEDULE_DELAY=str(NEVER_MS),
        )
        app = subprocess.run([sys.executable, "-m", "tests.apps.lambda_app", *map(str, BATCHES)],
                             cwd=REPO_ROOT,
                             env=env, capture_output=True, text=True, timeout=APP_TIMEOUT_S)

    assert app.returncode == 0, app.stderr
    assert collector.returncode == 0, collector.stderr()
    report = json.loads(app.stdout.strip().splitlines()[-1])
    assert report["hook_works"] is True  # the hook does refuse writes
    assert [r["rows"] for r in report["results"]] == list(BATCHES)
    not_bytecode = [a for a in report["write_attempts"]
                    if BYTECODE_DIR not in Path(a["path"]).parts]
    assert not_bytecode == []
    assert "flush did not finish" not in app.stderr

    spans = [(span, rs.resource) for request in read_traces(output)
             for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    span_name = f"{semconv.OPERATION_PREDICT_PROBA} {fraud_data.MODEL_NAME}"
    assert [span.name for span, _ in spans] == [span_name] * len(BATCHES)
    assert {resource_attributes(r)[semconv.SERVICE_NAME] for _, r in spans} == {FUNCTION_NAME}

    rows = [(point, rm.resource) for request in read_metrics(output)
            for rm in request.resource_metrics for sm in rm.scope_metrics
            for metric in sm.metrics if metric.name == semconv.ML_PREDICT_ROWS
            for point in metric.sum.data_points]
    # One delta point per invocation: each handler's flush exported its own rows.
    assert [point.as_int for point, _ in rows] == list(BATCHES)
    assert sum(point.as_int for point, _ in rows) == sum(BATCHES)
    assert {resource_attributes(r)[semconv.SERVICE_NAME] for _, r in rows} == {FUNCTION_NAME}


# --- serverless detection and defaults ------------------------------------------------------


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, False),
    ({"AWS_LAMBDA_FUNCTION_NAME": "fn"}, True),
    ({"K_SERVICE": "fn"}, True),
    ({"FUNCTIONS_WORKER_RUNTIME": "python"}, True),
    ({"DRIFTLINE_SERVERLESS": "true"}, True),
    ({"DRIFTLINE_SERVERLESS": "1"}, True),
    ({"DRIFTLINE_SERVERLESS": "yes"}, False),
    ({"DRIFTLINE_SERVERLESS": "false", "AWS_LAMBDA_FUNCTION_NAME": "fn"}, False),
    ({"AWS_LAMBDA_FUNCTION_NAME": ""}, False),
])
def test_is_serverless(environ: dict[str, str], expected: bool) -> None:
    assert serverless.is_serverless(environ) is expected


@pytest.mark.parametrize(("environ", "expected"), [
    ({"AWS_LAMBDA_FUNCTION_NAME": "fn"}, "fn"),
    ({"AWS_LAMBDA_FUNCTION_NAME": "fn", "OTEL_SERVICE_NAME": "api"}, None),
    ({"AWS_LAMBDA_FUNCTION_NAME": "fn", "OTEL_RESOURCE_ATTRIBUTES": "a=b, service.name=x"},
     None),
    ({"AWS_LAMBDA_FUNCTION_NAME": "fn", "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=x"},
     "fn"),
    ({"DRIFTLINE_SERVERLESS": "true"}, None),
])
def test_service_name_defaults_to_the_lambda_function_name(
    environ: dict[str, str], expected: str | None
) -> None:
    assert serverless.default_service_name(environ) == expected
    applied = dict(environ)
    serverless.apply_environment_defaults(applied)
    assert applied.get("OTEL_SERVICE_NAME") == environ.get("OTEL_SERVICE_NAME", expected)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name)
    return monkeypatch


def exporter_types(signal: str) -> list[type]:
    exporters = _env.exporters_from_env(signal)
    for exporter in exporters:
        exporter.shutdown()
    return [type(e) for e in exporters]


def test_serverless_mode_exports_otlp_over_http(clean_env: pytest.MonkeyPatch) -> None:
    assert exporter_types("metrics") == [GrpcMetricExporter]  # the SDK's default otherwise

    clean_env.setenv("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME)
    assert exporter_types("metrics") == [HttpMetricExporter]
    assert exporter_types("traces") == [HttpSpanExporter]
    assert exporter_types("logs") == [HttpLogExporter]


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_PROTOCOL",
                                      "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"])
def test_serverless_mode_keeps_grpc_when_asked_for(clean_env: pytest.MonkeyPatch,
                                                   variable: str) -> None:
    clean_env.setenv("DRIFTLINE_SERVERLESS", "true")
    clean_env.setenv(variable, "grpc")

    assert exporter_types("metrics") == [GrpcMetricExporter]


AUTO_PROBE = """
import json, driftline.auto
from opentelemetry import _logs, trace
print(json.dumps({
    "service_name": trace.get_tracer_provider().resource.attributes["service.name"],
    "logger_provider": type(_logs.get_logger_provider()).__module__ + "."
                       + type(_logs.get_logger_provider()).__name__,
}))
"""


@pytest.mark.parametrize(("overrides", "service_name", "logger_provider"), [  # name: a regex
    ({"AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME}, FUNCTION_NAME,
     "opentelemetry.sdk._logs._internal.LoggerProvider"),
    ({"AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME, "OTEL_SERVICE_NAME": "fraud-api"},
     "fraud-api", "opentelemetry.sdk._logs._internal.LoggerProvider"),
    ({"OTEL_LOGS_EXPORTER": "none"}, r"unknown_service:.+",  # the SDK adds the executable
     "opentelemetry._logs._internal.ProxyLoggerProvider"),
])
def test_auto_sets_up_logs_and_the_lambda_service_name(
    overrides: dict[str, str], service_name: str, logger_provider: str
) -> None:
    env = app_environment(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                          **overrides)
    result = subprocess.run([sys.executable, "-c", AUTO_PROBE], env=env, capture_output=True,
                            text=True, timeout=APP_TIMEOUT_S, check=True)

    probe = json.loads(result.stdout)
    assert re.fullmatch(service_name, probe["service_name"])
    assert probe["logger_provider"] == logger_provider


# --- the handler ----------------------------------------------------------------------------


class FakeProvider:
    """A provider recording each ``force_flush`` timeout; it may raise or hang instead."""

    def __init__(self, error: Exception | None = None, hang: bool = False) -> None:
        self.error = error
        self.hang = hang
        self.release = threading.Event()
        self.timeouts_ms: list[float] = []

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        self.timeouts_ms.append(timeout_millis)
        if self.error is not None:
            raise self.error
        if self.hang:
            self.release.wait(NEVER_S)  # ignores its timeout, as a buggy exporter may
        return True


class LambdaContext:
    """The one method of Lambda's context object the handler uses."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


class Telemetry:
    """SDK providers whose exports wait ten minutes unless flushed, and what they exported."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(
            BatchSpanProcessor(self.spans, schedule_delay_millis=NEVER_MS))
        self.metrics = InMemoryMetricExporter()
        self.meter_provider = MeterProvider(metric_readers=[
            PeriodicExportingMetricReader(self.metrics, export_interval_millis=NEVER_MS)])
        self.logs = InMemoryLogRecordExporter()
        self.logger_provider = LoggerProvider()
        self.logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(self.logs, schedule_delay_millis=NEVER_MS))

    def providers(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider,
                "logger_provider": self.logger_provider}

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    providers = Telemetry()
    try:
        yield providers
    finally:
        providers.shutdown()


@pytest.fixture
def instrumented() -> Iterator[InMemoryMetricExporter]:
    """scikit-learn instrumented with a recorder that exports only when flushed."""
    exporter = InMemoryMetricExporter()
    recorder = Recorder(exporter, export_interval_s=NEVER_S)
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), recorder=recorder)
    try:
        yield exporter
    finally:
        instrumentor.uninstrument()
        recorder.shutdown()


class HandlerFailed(Exception):
    """What the test handler raises."""


def test_handler_flushes_spans_metrics_logs_and_the_recorder_even_when_it_raises(
    telemetry: Telemetry, instrumented: InMemoryMetricExporter
) -> None:
    X, y = fraud_data.training_rows()
    model = driftline.register(LogisticRegression().fit(X, y), name="fraud")
    error = HandlerFailed("model store unreachable")
    counter = telemetry.meter_provider.get_meter("app").create_counter("invocations")
    logger = telemetry.logger_provider.get_logger("app")

    @serverless.handler(**telemetry.providers())
    def handle(event: dict[str, Any], context: Any) -> None:
        with telemetry.tracer_provider.get_tracer("app").start_as_current_span("handle"):
            model.predict(X[:event["rows"]])
            counter.add(1)
            logger.emit(event_name=semconv.EVENT_PREDICTION, body="scored")
        raise error

    with pytest.raises(HandlerFailed) as caught:
        handle({"rows": 25}, LambdaContext(remaining_ms=10_000))

    assert caught.value is error  # re-raised unchanged
    assert caught.value.__context__ is None  # and not chained onto a flush problem
    assert [s.name for s in telemetry.spans.get_finished_spans()] == ["handle"]
    assert [p.value for p in telemetry.metrics.points("invocations")] == [1]
    assert [r.log_record.event_name for r in telemetry.logs.get_finished_logs()] == \
        [semconv.EVENT_PREDICTION]
    assert [p.value for p in instrumented.points(semconv.ML_PREDICT_ROWS)] == [25]


def test_handler_returns_its_result_when_a_flush_fails(
    caplog: pytest.LogCaptureFixture
) -> None:
    broken = FakeProvider(error=RuntimeError("exporter exploded"))
    healthy = FakeProvider()

    @serverless.handler(tracer_provider=broken, meter_provider=healthy,
                        logger_provider=healthy)
    def handle(event: dict[str, Any], context: Any) -> dict[str, int]:
        return {"status": 200}

    with caplog.at_level(logging.WARNING, logger="driftline.serverless"):
        assert handle({}, None) == {"status": 200}

    assert len(broken.timeouts_ms) == 1
    assert len(healthy.timeouts_ms) == 2  # the failure did not stop the other flushes
    assert "flushing the tracer provider failed" in caplog.text


@pytest.mark.parametrize(("flush_timeout_s", "remaining_ms", "at_most_ms"), [
    (5.0, 900, 900 - serverless.INVOCATION_RESERVE_S * 1e3),  # the invocation ends first
    (0.3, 60_000, 300),  # the configured timeout is shorter
])
def test_flush_timeout_is_capped_by_the_remaining_invocation_time(
    flush_timeout_s: float, remaining_ms: int, at_most_ms: float
) -> None:
    provider = FakeProvider()

    @serverless.handler(flush_timeout_s=flush_timeout_s, tracer_provider=provider,
                        meter_provider=provider, logger_provider=provider)
    def handle(event: Any, context: Any) -> str:
        return "ok"

    assert handle({}, LambdaContext(remaining_ms)) == "ok"

    assert len(provider.timeouts_ms) == 3
    assert all(0 < t <= at_most_ms for t in provider.timeouts_ms)
    assert provider.timeouts_ms[0] > at_most_ms - 100  # most of the budget, not a token


def test_no_flush_when_the_invocation_has_no_time_left(
    caplog: pytest.LogCaptureFixture
) -> None:
    provider = FakeProvider()

    @serverless.handler(tracer_provider=provider, meter_provider=provider,
                        logger_provider=provider)
    def handle(event: Any, context: Any) -> str:
        return "ok"

    with caplog.at_level(logging.WARNING, logger="driftline.serverless"):
        assert handle({}, LambdaContext(remaining_ms=50)) == "ok"

    assert provider.timeouts_ms == []
    assert "no time left to flush" in caplog.text


def test_a_flush_ignoring_its_timeout_does_not_hold_the_handler() -> None:
    hanging = FakeProvider(hang=True)

    @serverless.handler(flush_timeout_s=FLUSH_TIMEOUT_S, tracer_provider=hanging,
                        meter_provider=FakeProvider(), logger_provider=FakeProvider())
    def handle(event: Any, context: Any) -> str:
        return "ok"

    started = time.monotonic()
    try:
        assert handle({}, None) == "ok"
        elapsed = time.monotonic() - started
    finally:
        hanging.release.set()

    assert FLUSH_TIMEOUT_S <= elapsed < FLUSH_TIMEOUT_S + RETURN_SLACK_S


def test_handler_decorates_with_and_without_arguments() -> None:
    provider = FakeProvider()

    @serverless.handler
    def bare(event: Any, context: Any) -> Any:
        """Bare."""
        return event

    @serverless.handler(flush_timeout_s=1, tracer_provider=provider, meter_provider=provider,
                        logger_provider=provider)
    def configured(event: Any, context: Any) -> Any:
        return event

    assert bare("e", None) == "e"
    assert (bare.__name__, bare.__doc__) == ("bare", "Bare.")
    assert configured(np.int64(3), None) == 3
    assert len(provider.timeouts_ms) == 3


class FakeRecorder:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.timeouts_s: list[float] = []

    def force_flush(self, timeout_s: float | None = None) -> bool:
        if self.error is not None:
            raise self.error
        self.timeouts_s.append(timeout_s)
        return True


def fake_instrumentor_module(recorder: Any, instrumented: bool = True) -> types.ModuleType:
    """A stand-in for ``driftline.instrumentation.torch``: a singleton with a recorder."""

    class TorchInstrumentor:
        _instance: TorchInstrumentor | None = None
        is_instrumented_by_opentelemetry = instrumented

        def __new__(cls) -> TorchInstrumentor:
            if cls._instance is None:
                cls._instance = super().__new__(cls)
            return cls._instance

        @property
        def recorder(self) -> Any:
            if isinstance(recorder, Exception):
                raise recorder
            return recorder

    module = types.ModuleType("driftline.instrumentation.torch")
    module.TorchInstrumentor = TorchInstrumentor  # type: ignore[attr-defined]
    return module


def test_recorders_of_every_imported_instrumentor_are_flushed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    provider = FakeProvider()
    recorder = FakeRecorder()
    monkeypatch.setitem(sys.modules, "driftline.instrumentation.torch",
                        fake_instrumentor_module(recorder))

    assert serverless.flush(FLUSH_TIMEOUT_S, tracer_provider=provider,
                            meter_provider=provider, logger_provider=provider)
    assert len(recorder.timeouts_s) == 1
    assert 0 < recorder.timeouts_s[0] <= FLUSH_TIMEOUT_S

    # Not instrumented: left alone; broken: logged, the flush goes on and says it failed.
    monkeypatch.setitem(sys.modules, "driftline.instrumentation.torch",
                        fake_instrumentor_module(recorder, instrumented=False))
    assert serverless.flush(FLUSH_TIMEOUT_S, tracer_provider=provider,
                            meter_provider=provider, logger_provider=provider)
    assert len(recorder.timeouts_s) == 1
    monkeypatch.setitem(sys.modules, "driftline.instrumentation.torch",
                        fake_instrumentor_module(FakeRecorder(RuntimeError("stuck"))))
    with caplog.at_level(logging.WARNING, logger="driftline.serverless"):
        assert not serverless.flush(FLUSH_TIMEOUT_S, tracer_provider=provider,
                                    meter_provider=provider, logger_provider=provider)
    assert "flushing the recorder failed" in caplog.text
    assert len(provider.timeouts_ms) == 9  # every provider flushed in all three rounds


@pytest.mark.parametrize("timeout", [0, -1.0, True, "2"])
def test_handler_rejects_a_non_positive_flush_timeout(timeout: Any) -> None:
    with pytest.raises(ValueError, match="flush_timeout_s must be a positive number"):
        serverless.handler(flush_timeout_s=timeout)


def test_handler_refuses_coroutine_functions() -> None:
    async def handle(event: Any, context: Any) -> None:
        await asyncio.sleep(0)

    with pytest.raises(TypeError, match="synchronous handlers"):
        serverless.handler(handle)
