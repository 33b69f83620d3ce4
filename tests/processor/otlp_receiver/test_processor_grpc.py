"""The OTLP/gRPC receiver and the whole service, fed by the official OpenTelemetry SDK exporter.

Integration tests start ``driftline collector`` as a real subprocess on a port the OS picks,
send metrics with ``OTLPMetricExporter`` and read the drift verdicts back from the file
exporter's OTLP/JSON lines.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics as ProtoResourceMetrics
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from driftline import exphist, semconv
from driftline.exporters.file.exporter import read_logs, read_metrics, read_traces
from driftline.processor.component import ComponentError, DataRefusedError, PartialRejection
from driftline.processor.otlp_receiver.config import (
    GrpcConfig,
    OtlpReceiverConfig,
    ProtocolsConfig,
)
from driftline.processor.otlp_receiver.receiver import Factory as OtlpFactory
from driftline.processor.otlp_receiver.receiver import OtlpReceiver
from driftline.processor.service.config import parse_config
from driftline.processor.service.pipeline import build
from driftline.processor.service.registry import Factories
from driftline.profile import ProfileBuilder, save
from tests._collector import PROTOCOL_GRPC, START_TIMEOUT_S, running_collector, spawn
from tests._consumers import Recorder, RefusesOnce
from tests._otel import emit_ground_truth

LOOPBACK = "127.0.0.1"
VERDICT_TIMEOUT_S = 10.0
EXPORT_TIMEOUT_S = 5.0
MODEL = {semconv.ML_MODEL_NAME: "churn", semconv.ML_MODEL_VERSION: "3",
         semconv.ML_MODEL_FRAMEWORK: "sklearn", semconv.ML_OPERATION: "predict"}

METRICS_ONLY = ("metrics",)  # the services most receivers here serve
METRICS_AND_LOGS = ("metrics", "logs")


# --- helpers ------------------------------------------------------------------------------


def taken_port() -> socket.socket:
    """A listening socket on a free port: binding that port again must fail."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen()
    return sock


def sdk_point(values: np.ndarray, attributes: dict[str, str],
              time_ns: int) -> ExponentialHistogramDataPoint:
    hist = exphist.from_values(values)
    return ExponentialHistogramDataPoint(
        attributes=attributes, start_time_unix_nano=time_ns - 1, time_unix_nano=time_ns,
        count=hist.count, sum=hist.sum, scale=hist.scale, zero_count=hist.zero_count,
        positive=Buckets(hist.positive.offset, [int(c) for c in hist.positive.counts]),
        negative=Buckets(hist.negative.offset, [int(c) for c in hist.negative.counts]),
        flags=0, min=hist.min, max=hist.max)


def sdk_metrics(features: dict[str, np.ndarray], time_ns: int) -> MetricsData:
    """What the app-side recorder exports: feature histograms and the row count, as delta."""
    rows = len(next(iter(features.values())))
    points = [sdk_point(v, {**MODEL, semconv.ML_FEATURE_NAME: k}, time_ns)
              for k, v in features.items()]
    metrics = [
        Metric(semconv.ML_FEATURE_VALUE, None, semconv.UNIT_DIMENSIONLESS,
               ExponentialHistogram(points, AggregationTemporality.DELTA)),
        Metric(semconv.ML_PREDICT_ROWS, None, semconv.UNIT_ROWS,
               Sum([NumberDataPoint(MODEL, time_ns - 1, time_ns, rows)],
                   AggregationTemporality.DELTA, True)),
    ]
    scope = InstrumentationScope(f"{semconv.SCOPE_PREFIX}sklearn")
    resource = Resource.create({semconv.SERVICE_NAME: "churn-api"})
    return MetricsData([ResourceMetrics(resource, [ScopeMetrics(scope, metrics, "")], "")])


def write_profile(directory: Path, rng: np.random.Generator) -> None:
    builder = ProfileBuilder("churn", "3")
    builder.add_column("age", rng.normal(40, 10, 3000))
    builder.add_column("income", rng.normal(50, 5, 3000))
    builder.add_rows(3000)
    save(builder.build(), directory / "churn.json")


def write_config(tmp_path: Path, endpoint: str = f"{LOOPBACK}:0") -> dict[str, Any]:
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": endpoint}}}},
        "processors": {"ml_drift": {"profiles": str(profiles), "window": "1s",
                                    "grace": "200ms", "min_rows": 10}},
        "exporters": {"file": {"path": str(tmp_path / "out.jsonl"), "flush_interval": 0}},
        "service": {"pipelines": {
            "metrics": {"receivers": ["otlp"], "processors": ["ml_drift"],
                        "exporters": ["file"]},
            "traces": {"receivers": ["otlp"], "exporters": ["file"]},
        }},
    }


def wait_for_verdicts(path: Path) -> list[ProtoResourceMetrics]:
    deadline = time.monotonic() + VERDICT_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists():
            found = [rm for request in read_metrics(path) for rm in request.resource_metrics
                     if any(s.scope.name == semconv.PROCESSOR_SCOPE for s in rm.scope_metrics)]
            if found:
                return found
        time.sleep(0.05)
    raise AssertionError(f"no drift verdicts in {path} within {VERDICT_TIMEOUT_S}s")


def gauge_values(resource_metrics: ProtoResourceMetrics) -> dict[tuple[str, str, str], float]:
    values = {}
    for scope in resource_metrics.scope_metrics:
        for metric in scope.metrics:
            for point in metric.gauge.data_points:
                attrs = {kv.key: kv.value.string_value for kv in point.attributes}
                value = point.as_int if point.WhichOneof("value") == "as_int" \
                    else point.as_double
                values[(metric.name, attrs.get(semconv.ML_FEATURE_NAME, ""),
                        attrs.get(semconv.ML_DRIFT_METHOD, ""))] = value
    return values


# --- the service as a subprocess ----------------------------------------------------------


@pytest.mark.integration
def test_collector_turns_sdk_metrics_into_drift_verdicts(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    config = write_config(tmp_path)
    write_profile(tmp_path / "profiles", rng)

    with running_collector(config, tmp_path, (PROTOCOL_GRPC,)) as collector:
        endpoint = collector.endpoints[PROTOCOL_GRPC]
        exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True,
                                      timeout=EXPORT_TIMEOUT_S)
        data = sdk_metrics({"age": rng.normal(60, 10, 400), "income": rng.normal(50, 5, 400)},
                           time.time_ns())
        assert exporter.export(data) == MetricExportResult.SUCCESS
        tracer = TracerProvider()
        span_exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True,
                                         timeout=EXPORT_TIMEOUT_S)
        tracer.add_span_processor(SimpleSpanProcessor(span_exporter))
        with tracer.get_tracer("test").start_as_current_span("predict churn"):
            pass
        verdicts = wait_for_verdicts(tmp_path / "out.jsonl")
        exporter.shutdown()
        tracer.shutdown()

    assert collector.returncode == 0, collector.stderr()
    [window] = verdicts
    values = gauge_values(window)
    wasserstein = semconv.DRIFT_METHOD_WASSERSTEIN
    assert values[(semconv.ML_DRIFT_DETECTED, "age", wasserstein)] == 1
    assert values[(semconv.ML_DRIFT_DETECTED, "income", wasserstein)] == 0
    assert values[(semconv.ML_WINDOW_ROWS, "", "")] == 400
    assert values[(semconv.ML_DRIFT_DATASET_SHARE, "", "")] == 0.5
    resource = {kv.key: kv.value.string_value for kv in window.resource.attributes}
    assert resource == {semconv.SERVICE_NAME: semconv.PROCESSOR_SERVICE_NAME}
    # The app's own metrics passed through to the exporter too, and so did the span.
    names = {m.name for request in read_metrics(tmp_path / "out.jsonl")
             for rm in request.resource_metrics for s in rm.scope_metrics for m in s.metrics}
    assert {semconv.ML_FEATURE_VALUE, semconv.ML_PREDICT_ROWS} <= names
    spans = [s.name for request in read_traces(tmp_path / "out.jsonl")
             for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert spans == ["predict churn"]
    assert "ml_drift: model=churn version=3 operation=predict" in collector.stderr()


@pytest.mark.integration
def test_collector_exits_1_naming_the_endpoint_when_the_port_is_taken(tmp_path: Path) -> None:
    with taken_port() as sock:
        endpoint = f"{LOOPBACK}:{sock.getsockname()[1]}"
        collector = spawn(write_config(tmp_path, endpoint), tmp_path)
        try:
            returncode = collector.process.wait(START_TIMEOUT_S)
        finally:
            if collector.process.poll() is None:
                collector.process.kill()

    assert returncode == 1
    assert f"cannot listen on {endpoint}" in collector.stderr()


@pytest.mark.integration
def test_collector_exits_1_listing_config_problems(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("receivers: {otlp: {protocols: {grpc: {endpoint: nowhere}}}}\n"
                      "exporters: {file: {path: out.jsonl}}\n"
                      "service: {pipelines: {metrics: {receivers: [otlp], exporters: [fil]}}}\n")

    result = subprocess.run(
        [sys.executable, "-m", "driftline.cli", "collector", "--config", str(config)],
        capture_output=True, text=True, timeout=START_TIMEOUT_S, cwd=tmp_path)

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{config}:1: receivers::otlp::protocols::grpc::endpoint: ")
    assert lines[1].startswith(f"{config}:3: service::pipelines::metrics::exporters: "
                               "references exporter 'fil' which is not configured")
    assert result.stdout == ""


# --- the receiver in process --------------------------------------------------------------


def receiver_config(endpoint: str = f"{LOOPBACK}:0", **grpc_settings: Any
                    ) -> OtlpReceiverConfig:
    return OtlpReceiverConfig(protocols=ProtocolsConfig(grpc=GrpcConfig(endpoint=endpoint,
                                                                        **grpc_settings)))


@contextlib.contextmanager
def serving(consumer: Any, config: OtlpReceiverConfig | None = None) -> Iterator[OtlpReceiver]:
    receiver = OtlpFactory().create(config or receiver_config(), consumer)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()


def export(endpoint: str, request: Any) -> Any:
    with grpc.insecure_channel(endpoint) as channel:
        stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
        return stub.Export(request, timeout=EXPORT_TIMEOUT_S)


def proto_request(name: str = "m") -> metrics_service_pb2.ExportMetricsServiceRequest:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    request.resource_metrics.add().scope_metrics.add().metrics.add(name=name)
    return request


def test_receiver_on_port_zero_exposes_the_bound_port() -> None:
    recorder = Recorder(METRICS_ONLY)
    with serving(recorder) as receiver:
        assert receiver.port is not None and receiver.port > 0
        assert receiver.endpoint == f"{LOOPBACK}:{receiver.port}"
        response = export(receiver.endpoint, proto_request("a"))

    assert response == metrics_service_pb2.ExportMetricsServiceResponse()
    [[resource_metrics]] = recorder.metrics
    assert resource_metrics.scope_metrics[0].metrics[0].name == "a"


def test_receiver_port_in_use_is_a_component_error_naming_the_endpoint() -> None:
    with taken_port() as sock:
        endpoint = f"{LOOPBACK}:{sock.getsockname()[1]}"
        receiver = OtlpReceiver(receiver_config(endpoint), Recorder(METRICS_ONLY))
        with pytest.raises(ComponentError, match=f"cannot listen on {re.escape(endpoint)}"):
            receiver.start()


@pytest.mark.parametrize(("error", "code"), [
    (ValueError("bad point"), grpc.StatusCode.INVALID_ARGUMENT),
    (RuntimeError("disk full"), grpc.StatusCode.UNAVAILABLE),
])
def test_consumer_error_becomes_a_status_and_the_server_keeps_serving(
    error: Exception, code: grpc.StatusCode
) -> None:
    recorder = Recorder(METRICS_ONLY, error)
    with serving(recorder) as receiver:
        with pytest.raises(grpc.RpcError) as caught:
            export(receiver.endpoint, proto_request())
        assert caught.value.code() == code
        assert str(error) in caught.value.details()

        recorder.error = None
        export(receiver.endpoint, proto_request())  # still serving
        stats = receiver.stats()

    assert (stats.accepted_requests, stats.refused_requests) == (1, 1)
    assert len(recorder.metrics) == 1


# --- the pipeline graph -------------------------------------------------------------------


@dataclass
class _CaptureConfig:
    label: str = ""

    def validate(self) -> list[str]:
        return []


class _CaptureExporter:
    def __init__(self, label: str, events: list[str]) -> None:
        self.label, self.events = label, events
        self.metrics: list[Sequence[Any]] = []

    def start(self) -> None:
        self.events.append(f"start {self.label}")

    def shutdown(self) -> None:
        self.events.append(f"shutdown {self.label}")

    def consume_metrics(self, batch: Sequence[Any]) -> None:
        self.metrics.append(batch)


class _CaptureFactory:
    """A test-only exporter type, ``capture``, that keeps what it receives."""

    TYPE = "capture"
    CONFIG = _CaptureConfig
    SIGNALS = ("metrics",)

    def __init__(self) -> None:
        self.events: list[str] = []
        self.created: dict[str, _CaptureExporter] = {}

    def create(self, config: _CaptureConfig, next_consumer: Any = None,
               settings: Any = None) -> _CaptureExporter:
        exporter = _CaptureExporter(config.label, self.events)
        self.created[config.label] = exporter
        return exporter


class _RecordingOtlpFactory(OtlpFactory):
    """The real receiver, noting when it starts and stops."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def create(self, config: OtlpReceiverConfig, next_consumer: Any = None,
               settings: Any = None) -> OtlpReceiver:
        events = self.events

        class Recording(OtlpReceiver):
            def start(self) -> None:
                super().start()
                events.append("start otlp")

            def shutdown(self) -> None:
                events.append("shutdown otlp")
                super().shutdown()

        return Recording(config, next_consumer)


def test_receiver_fans_out_to_every_pipeline_it_feeds() -> None:
    capture = _CaptureFactory()
    factories = Factories.of(receivers=[_RecordingOtlpFactory(capture.events)],
                             exporters=[capture])
    config = parse_config({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"capture/a": {"label": "a"}, "capture/b": {"label": "b"}},
        "service": {"pipelines": {
            "metrics/one": {"receivers": ["otlp"], "exporters": ["capture/a"]},
            "metrics/two": {"receivers": ["otlp"], "exporters": ["capture/b"]},
        }},
    }, environ={}, factories=factories)
    pipelines = build(config, factories)
    pipelines.start()
    try:
        [receiver] = [n.component for n in pipelines.nodes() if n.kind == "receiver"]
        export(receiver.endpoint, proto_request("fanned"))
    finally:
        pipelines.shutdown()

    for label in ("a", "b"):
        # The processor's own metrics (driftline.processor.*) go through the pipelines too.
        [[resource_metrics]] = [
            batch for batch in capture.created[label].metrics
            if not all(m.name.startswith(semconv.PROCESSOR_METRIC_PREFIX)
                       for rm in batch for sm in rm.scope_metrics for m in sm.metrics)]
        assert resource_metrics.scope_metrics[0].metrics[0].name == "fanned"
    # Exporters start before the receiver feeding them and stop after it.
    assert capture.events == ["start a", "start b", "start otlp",
                              "shutdown otlp", "shutdown a", "shutdown b"]


# --- logs, partial success, refusals, sizes -----------------------------------------------


def test_sdk_grpc_log_exporter_reaches_the_logs_consumer() -> None:
    recorder = Recorder(METRICS_AND_LOGS)
    with serving(recorder) as receiver:
        emit_ground_truth(OTLPLogExporter(endpoint=receiver.endpoint, insecure=True,
                                          timeout=EXPORT_TIMEOUT_S), "p-17", "churned")
        stats = receiver.stats()

    [[resource_logs]] = recorder.logs
    [record] = resource_logs.scope_logs[0].log_records
    assert (record.event_name, record.body.string_value) == ("ml.ground_truth", "churned")
    assert {kv.key: kv.value.string_value for kv in record.attributes} == \
        {"ml.prediction.id": "p-17"}
    assert (stats.accepted_requests, stats.dropped_log_records) == (1, 0)


def logs_request(count: int) -> logs_service_pb2.ExportLogsServiceRequest:
    request = logs_service_pb2.ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for index in range(count):
        scope.log_records.add().body.string_value = f"r{index}"
    return request


def test_logs_without_a_logs_pipeline_are_answered_ok_and_counted_as_dropped() -> None:
    with (serving(Recorder(METRICS_ONLY)) as receiver,
          grpc.insecure_channel(receiver.endpoint) as channel):
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        response = stub.Export(logs_request(3), timeout=EXPORT_TIMEOUT_S)
        stats = receiver.stats()

    assert response == logs_service_pb2.ExportLogsServiceResponse()
    assert stats.dropped_log_records == 3


def test_partial_rejection_is_ok_with_partial_success_in_the_response() -> None:
    recorder = Recorder(METRICS_AND_LOGS, PartialRejection(2, "2 records lack ml.prediction.id"))
    with serving(recorder) as receiver, grpc.insecure_channel(receiver.endpoint) as channel:
        metrics = metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(
            proto_request(), timeout=EXPORT_TIMEOUT_S)
        logs = logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            logs_request(5), timeout=EXPORT_TIMEOUT_S)
        # The SDK exporter takes a partial success as delivered: no retry, no failure.
        sdk = OTLPMetricExporter(endpoint=receiver.endpoint, insecure=True,
                                 timeout=EXPORT_TIMEOUT_S)
        result = sdk.export(sdk_metrics({"age": np.array([1.0, 2.0])}, time.time_ns()))
        sdk.shutdown()
        stats = receiver.stats()

    assert (metrics.partial_success.rejected_data_points,
            metrics.partial_success.error_message) == (2, "2 records lack ml.prediction.id")
    assert (logs.partial_success.rejected_log_records,
            logs.partial_success.error_message) == (2, "2 records lack ml.prediction.id")
    assert result == MetricExportResult.SUCCESS
    assert (stats.accepted_requests, stats.refused_requests, stats.partial_requests,
            stats.rejected_items) == (3, 0, 3, 6)


def test_data_refused_is_resource_exhausted() -> None:
    with (serving(Recorder(METRICS_ONLY, DataRefusedError("memory limit reached"))) as receiver,
          pytest.raises(grpc.RpcError) as caught):
        export(receiver.endpoint, proto_request())

    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "memory limit reached" in caught.value.details()
    # RetryInfo tells OTLP clients the refusal is temporary, and when to try again.
    retry_info = error_details_pb2.RetryInfo.FromString(
        dict(caught.value.trailing_metadata())["google.rpc.retryinfo-bin"])
    assert retry_info.retry_delay.seconds == 1


def test_sdk_exporter_retries_a_refusal_after_the_retry_info_delay() -> None:
    recorder = RefusesOnce(METRICS_ONLY)
    with serving(recorder) as receiver:
        exporter = OTLPMetricExporter(endpoint=receiver.endpoint, insecure=True,
                                      timeout=EXPORT_TIMEOUT_S)
        result = exporter.export(sdk_metrics({"age": np.array([1.0])}, time.time_ns()))
        exporter.shutdown()
        stats = receiver.stats()

    assert result == MetricExportResult.SUCCESS
    assert len(recorder.metrics) == 1
    assert (stats.accepted_requests, stats.refused_requests) == (1, 1)


def test_message_over_max_recv_msg_size_is_resource_exhausted() -> None:
    recorder = Recorder(METRICS_ONLY)
    oversized = proto_request("x" * (1024 * 1024 + 1))  # just over 1 MiB
    with serving(recorder, receiver_config(max_recv_msg_size_mib=1)) as receiver:
        with pytest.raises(grpc.RpcError) as caught:
            export(receiver.endpoint, oversized)
        export(receiver.endpoint, proto_request("small"))  # still serving

    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    [[resource_metrics]] = recorder.metrics
    assert resource_metrics.scope_metrics[0].metrics[0].name == "small"


# --- the gRPC health service --------------------------------------------------------------

METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def test_health_service_is_serving_while_running_and_not_serving_at_shutdown() -> None:
    serving_status = health_pb2.HealthCheckResponse.SERVING
    receiver = OtlpFactory().create(receiver_config(), Recorder(METRICS_ONLY))
    receiver.start()
    try:
        channel = grpc.insecure_channel(receiver.endpoint)
        stub = health_pb2_grpc.HealthStub(channel)
        overall = stub.Check(health_pb2.HealthCheckRequest(service=""),
                             timeout=EXPORT_TIMEOUT_S).status
        metrics = stub.Check(health_pb2.HealthCheckRequest(service=METRICS_SERVICE),
                             timeout=EXPORT_TIMEOUT_S).status
        with pytest.raises(grpc.RpcError) as unknown:
            # Only metrics are consumed here: the trace service is not registered.
            stub.Check(health_pb2.HealthCheckRequest(service=TRACE_SERVICE),
                       timeout=EXPORT_TIMEOUT_S)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""),
                           timeout=EXPORT_TIMEOUT_S)
        first = next(watch).status
        stopper = threading.Thread(target=receiver.shutdown)
        stopper.start()
        second = next(watch).status  # sent as shutdown begins, before the server stops
        watch.cancel()
        stopper.join()
        channel.close()
    finally:
        receiver.shutdown()

    assert (overall, metrics, first) == (serving_status, serving_status, serving_status)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert second == health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.integration
def test_collector_writes_sdk_grpc_logs_to_a_logs_pipeline(tmp_path: Path) -> None:
    output = tmp_path / "logs.jsonl"
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }
    with running_collector(config, tmp_path, (PROTOCOL_GRPC,)) as collector:
        endpoint = collector.endpoints[PROTOCOL_GRPC]
        emit_ground_truth(OTLPLogExporter(endpoint=endpoint, insecure=True,
                                          timeout=EXPORT_TIMEOUT_S), "p-9", "stayed")
        with grpc.insecure_channel(endpoint) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=EXPORT_TIMEOUT_S)

    assert collector.returncode == 0, collector.stderr()
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    [request] = read_logs(output)
    [record] = request.resource_logs[0].scope_logs[0].log_records
    assert (record.event_name, record.body.string_value) == ("ml.ground_truth", "stayed")
