"""The ``otlp`` receiver's OTLP/HTTP server, against the official SDK exporters and raw requests.

The integration tests run ``driftline collector`` as a subprocess writing to a ``file``
exporter and read the points back; the others run the receiver in process with a consumer
that records what it got, and speak HTTP with ``urllib``/``http.client``.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import logging
import re
import socket
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
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

from driftline import semconv
from driftline.collector_config import shipped
from driftline.exporters.file.exporter import read_logs, read_metrics, read_traces
from driftline.processor.component import ComponentError, DataRefusedError, PartialRejection
from driftline.processor.component import otlp_json as _otlp_json
from driftline.processor.otlp_receiver.config import (
    DEFAULT_HTTP_ENDPOINT,
    DEFAULT_MAX_REQUEST_BODY_SIZE,
    GrpcConfig,
    HttpConfig,
    OtlpReceiverConfig,
    ProtocolsConfig,
)
from driftline.processor.otlp_receiver.receiver import OtlpReceiver
from driftline.processor.service.config import ComponentID, load_config, parse_config
from tests._collector import (
    LOOPBACK,
    PROTOCOL_GRPC,
    PROTOCOL_HTTP,
    file_pipeline_config,
    running_collector,
)
from tests._consumers import ALL_SIGNALS, Recorder, RefusesOnce
from tests._otel import emit_ground_truth

EXPORT_TIMEOUT_S = 5.0
HTTP_TIMEOUT_S = 5.0
SMALL_LIMIT_BYTES = 64 * 1024
MODEL = {semconv.ML_MODEL_NAME: "churn", semconv.ML_MODEL_VERSION: "3",
         semconv.ML_MODEL_FRAMEWORK: "sklearn", semconv.ML_OPERATION: "predict"}
TRACE_ID_HEX = "5b8efff798038103d269b633813fc60c"
SPAN_ID_HEX = "eee19b7ec3c1b174"
JSON = "application/json"
PROTOBUF = "application/x-protobuf"

HTTP_TEST_SIGNALS = ("metrics", "traces")  # what most receivers here serve


def own_metrics(requests: Sequence[Any]) -> list[Any]:
    """The requests that are not the processor's self-telemetry (``driftline.processor.*``)."""
    return [r for r in requests
            if not all(m.name.startswith(semconv.PROCESSOR_METRIC_PREFIX)
                       for rm in r.resource_metrics for sm in rm.scope_metrics
                       for m in sm.metrics)]


def attributes_of(key_values: Any) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in key_values}


# --- the service as a subprocess, fed by the SDK's OTLP/HTTP exporters -------------------


def sdk_metrics(time_ns: int) -> MetricsData:
    """A delta row counter and an exponential histogram with negative and zero values."""
    rows = Sum([NumberDataPoint(MODEL, time_ns - 1000, time_ns, 120)],
               AggregationTemporality.DELTA, True)
    hist = ExponentialHistogramDataPoint(
        attributes={**MODEL, semconv.ML_FEATURE_NAME: "age"},
        start_time_unix_nano=time_ns - 1000, time_unix_nano=time_ns, count=7, sum=1.5,
        scale=2, zero_count=1, positive=Buckets(3, [1, 0, 2]), negative=Buckets(-1, [3]),
        flags=0, min=-0.9, max=2.6)
    metrics = [
        Metric(semconv.ML_PREDICT_ROWS, "rows", semconv.UNIT_ROWS, rows),
        Metric(semconv.ML_FEATURE_VALUE, "values", semconv.UNIT_DIMENSIONLESS,
               ExponentialHistogram([hist], AggregationTemporality.DELTA)),
    ]
    scope = InstrumentationScope(f"{semconv.SCOPE_PREFIX}sklearn")
    resource = Resource.create({semconv.SERVICE_NAME: "churn-api"})
    return MetricsData([ResourceMetrics(resource, [ScopeMetrics(scope, metrics, "")], "")])


@pytest.mark.integration
@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_collector_receives_sdk_http_exports_into_the_file(
    tmp_path: Path, compression: Compression
) -> None:
    output = tmp_path / "out.jsonl"
    config = file_pipeline_config(output, {"http": {"endpoint": f"{LOOPBACK}:0"}})
    time_ns = time.time_ns()

    with running_collector(config, tmp_path) as collector:
        base = f"http://{collector.endpoints[PROTOCOL_HTTP]}"
        metric_exporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics",
                                             timeout=EXPORT_TIMEOUT_S, compression=compression)
        assert metric_exporter.export(sdk_metrics(time_ns)) == MetricExportResult.SUCCESS
        tracer_provider = TracerProvider(resource=Resource.create({semconv.SERVICE_NAME:
                                                                   "churn-api"}))
        tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
            endpoint=f"{base}/v1/traces", timeout=EXPORT_TIMEOUT_S, compression=compression)))
        tracer = tracer_provider.get_tracer("driftline.instrumentation.sklearn")
        with tracer.start_as_current_span("predict churn", attributes=MODEL) as span:
            context = span.get_span_context()
        metric_exporter.shutdown()
        tracer_provider.shutdown()

    assert collector.returncode == 0, collector.stderr()
    assert PROTOCOL_GRPC not in collector.endpoints  # only what `protocols` names is served
    [request] = own_metrics(read_metrics(output))
    [resource_metrics] = request.resource_metrics
    assert attributes_of(resource_metrics.resource.attributes)[semconv.SERVICE_NAME] == \
        "churn-api"
    [scope_metrics] = resource_metrics.scope_metrics
    assert scope_metrics.scope.name == "driftline.instrumentation.sklearn"
    rows, values = scope_metrics.metrics
    assert (rows.name, rows.unit) == (semconv.ML_PREDICT_ROWS, semconv.UNIT_ROWS)
    [point] = rows.sum.data_points
    assert (point.as_int, point.start_time_unix_nano, point.time_unix_nano) == \
        (120, time_ns - 1000, time_ns)
    assert attributes_of(point.attributes) == MODEL
    assert rows.sum.is_monotonic
    assert rows.sum.aggregation_temporality == AggregationTemporality.DELTA.value
    [hist] = values.exponential_histogram.data_points
    assert attributes_of(hist.attributes) == {**MODEL, semconv.ML_FEATURE_NAME: "age"}
    assert (hist.count, hist.sum, hist.scale, hist.zero_count, hist.min, hist.max) == \
        (7, 1.5, 2, 1, -0.9, 2.6)
    assert (hist.positive.offset, list(hist.positive.bucket_counts)) == (3, [1, 0, 2])
    assert (hist.negative.offset, list(hist.negative.bucket_counts)) == (-1, [3])

    [traces] = read_traces(output)
    [span_proto] = [s for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert span_proto.name == "predict churn"
    assert span_proto.trace_id == context.trace_id.to_bytes(16, "big")
    assert span_proto.span_id == context.span_id.to_bytes(8, "big")
    assert attributes_of(span_proto.attributes) == MODEL


@pytest.mark.integration
def test_collector_prints_one_listening_line_per_protocol(tmp_path: Path) -> None:
    config = file_pipeline_config(tmp_path / "out.jsonl",
                                  {"grpc": {"endpoint": f"{LOOPBACK}:0"},
                                   "http": {"endpoint": f"{LOOPBACK}:0"}})

    with running_collector(config, tmp_path, (PROTOCOL_GRPC, PROTOCOL_HTTP)) as collector:
        grpc_endpoint = collector.endpoints[PROTOCOL_GRPC]
        http_endpoint = collector.endpoints[PROTOCOL_HTTP]

    assert collector.returncode == 0, collector.stderr()
    assert re.fullmatch(rf"{LOOPBACK}:\d+", grpc_endpoint)
    assert re.fullmatch(rf"{LOOPBACK}:\d+", http_endpoint)
    assert grpc_endpoint != http_endpoint


# --- the receiver in process ---------------------------------------------------------------


def http_config(**overrides: Any) -> OtlpReceiverConfig:
    return OtlpReceiverConfig(ProtocolsConfig(http=HttpConfig(**{
        "endpoint": f"{LOOPBACK}:0", **overrides})))


@contextlib.contextmanager
def serving(consumer: Any, config: OtlpReceiverConfig | None = None) -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver(config or http_config(), consumer)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()


def post(receiver: OtlpReceiver, path: str, body: bytes | None,
         headers: dict[str, str] | None = None, method: str = "POST"
         ) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://{receiver.http_endpoint}{path}", data=body,
                                     method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def metrics_json(name: str = "m", value: int = 3) -> dict[str, Any]:
    return {"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": "svc"}}]},
        "scopeMetrics": [{"metrics": [{"name": name, "sum": {
            "aggregationTemporality": 1, "isMonotonic": True,
            "dataPoints": [{"asInt": str(value), "timeUnixNano": "1700000000000000000"}]}}]}],
    }]}


def metrics_proto(name: str = "m") -> bytes:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    request.resource_metrics.add().scope_metrics.add().metrics.add(name=name)
    return request.SerializeToString()


def test_json_request_is_decoded_and_answered_in_json() -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS)
    with serving(recorder) as receiver:
        status, headers, body = post(receiver, "/v1/metrics",
                                     json.dumps(metrics_json("rows", 42)).encode(),
                                     {"Content-Type": JSON})

    assert (status, headers["Content-Type"], json.loads(body)) == (200, JSON, {})
    [[resource_metrics]] = recorder.metrics
    assert attributes_of(resource_metrics.resource.attributes) == {"service.name": "svc"}
    [metric] = resource_metrics.scope_metrics[0].metrics
    assert metric.name == "rows"
    [point] = metric.sum.data_points
    assert (point.as_int, point.time_unix_nano) == (42, 1700000000000000000)
    assert metric.sum.aggregation_temporality == 1


def test_json_trace_ids_are_hex_and_unknown_fields_are_ignored() -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS)
    payload = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": TRACE_ID_HEX, "spanId": SPAN_ID_HEX, "name": "predict churn", "kind": 1,
        "someFieldFromTheFuture": {"x": 1}}]}]}]}
    with serving(recorder) as receiver:
        status, _, _ = post(receiver, "/v1/traces", json.dumps(payload).encode(),
                            {"Content-Type": "application/json; charset=utf-8"})

    assert status == 200
    [[resource_spans]] = recorder.traces
    [span] = resource_spans.scope_spans[0].spans
    assert (span.trace_id.hex(), span.span_id.hex(), span.name, span.kind) == \
        (TRACE_ID_HEX, SPAN_ID_HEX, "predict churn", 1)


def test_protobuf_request_gets_an_empty_protobuf_response() -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS)
    with serving(recorder) as receiver:
        status, headers, body = post(receiver, "/v1/metrics", metrics_proto("a"),
                                     {"Content-Type": PROTOBUF})

    assert (status, headers["Content-Type"], body) == (200, PROTOBUF, b"")
    assert metrics_service_pb2.ExportMetricsServiceResponse.FromString(body) == \
        metrics_service_pb2.ExportMetricsServiceResponse()
    assert recorder.metrics[0][0].scope_metrics[0].metrics[0].name == "a"


@pytest.mark.parametrize(("encoding", "compress"), [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
])
def test_compressed_bodies_are_accepted(encoding: str, compress: Any) -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS)
    with serving(recorder) as receiver:
        status, _, _ = post(receiver, "/v1/metrics",
                            compress(json.dumps(metrics_json("zipped", 5)).encode()),
                            {"Content-Type": JSON, "Content-Encoding": encoding})

    assert status == 200
    [[resource_metrics]] = recorder.metrics
    metric = resource_metrics.scope_metrics[0].metrics[0]
    assert (metric.name, metric.sum.data_points[0].as_int) == ("zipped", 5)


def test_undecodable_protobuf_is_400_with_a_status_body() -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS)
    with serving(recorder) as receiver:
        status, headers, body = post(receiver, "/v1/metrics", b"\xff\xff\xff",
                                     {"Content-Type": PROTOBUF})
        stats = receiver.stats()

    assert (status, headers["Content-Type"]) == (400, PROTOBUF)
    rpc_status = status_pb2.Status.FromString(body)
    assert rpc_status.code == 3  # INVALID_ARGUMENT
    assert "cannot decode the body" in rpc_status.message
    assert recorder.metrics == []
    assert stats.rejected_requests == 1


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]",
                                  b'{"resourceMetrics": [{"scopeMetrics": 7}]}',
                                  b'{"resourceSpans": [{"scopeSpans": [{"spans": '
                                  b'[{"traceId": "zz"}]}]}]}'])
def test_undecodable_json_is_400_with_a_json_status_body(body: bytes) -> None:
    path = "/v1/traces" if b"resourceSpans" in body else "/v1/metrics"
    with serving(Recorder(HTTP_TEST_SIGNALS)) as receiver:
        status, headers, answer = post(receiver, path, body, {"Content-Type": JSON})

    assert (status, headers["Content-Type"]) == (400, JSON)
    decoded = json.loads(answer)
    assert decoded["code"] == 3
    assert decoded["message"].startswith("cannot decode the body as application/json")


def test_corrupt_gzip_is_400() -> None:
    with serving(Recorder(HTTP_TEST_SIGNALS)) as receiver:
        status, _, body = post(receiver, "/v1/metrics", gzip.compress(b"{}")[:-6],
                               {"Content-Type": JSON, "Content-Encoding": "gzip"})

    assert status == 400
    assert "cannot decompress the body" in json.loads(body)["message"]


def test_unknown_path_is_404_and_an_unconsumed_signal_too() -> None:
    recorder = Recorder(("metrics",))
    with serving(recorder) as receiver:
        unknown = post(receiver, "/v2/metrics", b"{}", {"Content-Type": JSON})
        traces = post(receiver, "/v1/traces", b"{}", {"Content-Type": JSON})

    assert unknown[0] == 404
    assert b"/v1/metrics" in unknown[2]
    assert traces[0] == 404
    assert b"no pipeline of this processor takes traces" in traces[2]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405_naming_post(method: str) -> None:
    with serving(Recorder(HTTP_TEST_SIGNALS)) as receiver:
        status, headers, _ = post(receiver, "/v1/metrics", None, method=method)

    assert status == 405
    assert headers["Allow"] == "POST"


def test_unsupported_content_type_is_415() -> None:
    with serving(Recorder(HTTP_TEST_SIGNALS)) as receiver:
        status, _, body = post(receiver, "/v1/metrics", b"m 1", {"Content-Type": "text/plain"})
        missing, _, _ = post(receiver, "/v1/metrics", b"", {})

    assert status == 415
    assert b"application/x-protobuf" in body and b"application/json" in body
    assert missing == 415


def test_unsupported_content_encoding_is_415() -> None:
    with serving(Recorder(HTTP_TEST_SIGNALS)) as receiver:
        status, _, body = post(receiver, "/v1/metrics", b"{}",
                               {"Content-Type": JSON, "Content-Encoding": "br"})

    assert status == 415
    assert "unsupported Content-Encoding 'br'" in json.loads(body)["message"]


def test_body_over_the_limit_is_413() -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS)
    with serving(recorder, http_config(max_request_body_size=SMALL_LIMIT_BYTES)) as receiver:
        status, _, body = post(receiver, "/v1/metrics", b" " * (SMALL_LIMIT_BYTES + 1),
                               {"Content-Type": JSON})
        at_limit = json.dumps(metrics_json()).encode().ljust(SMALL_LIMIT_BYTES)
        accepted, _, _ = post(receiver, "/v1/metrics", at_limit, {"Content-Type": JSON})

    assert status == 413
    assert json.loads(body)["code"] == 8  # RESOURCE_EXHAUSTED
    assert accepted == 200
    assert len(recorder.metrics) == 1


def test_gzip_bomb_is_413_by_its_decompressed_size() -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS)
    bomb = gzip.compress(b" " * (100 * SMALL_LIMIT_BYTES))
    assert len(bomb) < SMALL_LIMIT_BYTES
    with serving(recorder, http_config(max_request_body_size=SMALL_LIMIT_BYTES)) as receiver:
        status, _, body = post(receiver, "/v1/metrics", bomb,
                               {"Content-Type": JSON, "Content-Encoding": "gzip"})

    assert status == 413
    assert "decompressed body exceeds max_request_body_size" in json.loads(body)["message"]
    assert recorder.metrics == []


@pytest.mark.parametrize(("error", "expected"), [
    (RuntimeError("disk full"), 503),  # transient: the SDK exporter retries
    (ValueError("bad point"), 400),  # the data itself: retrying cannot help
])
def test_consumer_failure_maps_to_a_status_and_the_server_keeps_serving(
    error: Exception, expected: int
) -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS, error=error)
    with serving(recorder) as receiver:
        status, _, body = post(receiver, "/v1/metrics", metrics_proto(),
                               {"Content-Type": PROTOBUF})
        recorder.error = None
        again, _, _ = post(receiver, "/v1/metrics", metrics_proto(), {"Content-Type": PROTOBUF})
        stats = receiver.stats()

    assert status == expected
    assert str(error) in status_pb2.Status.FromString(body).message
    assert again == 200
    assert (stats.accepted_requests, stats.refused_requests) == (1, 1)


def test_logs_are_answered_200_and_counted_as_dropped_without_a_logs_pipeline() -> None:
    payload = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"eventName": "ml.prediction", "body": {"stringValue": "a"}},
        {"eventName": "ml.prediction", "body": {"stringValue": "b"}}]}]}]}
    with serving(Recorder(HTTP_TEST_SIGNALS)) as receiver:
        status, headers, body = post(receiver, "/v1/logs", json.dumps(payload).encode(),
                                     {"Content-Type": JSON})
        stats = receiver.stats()

    assert (status, headers["Content-Type"], json.loads(body)) == (200, JSON, {})
    assert stats.dropped_log_records == 2


LOGS_PAYLOAD = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
    {"eventName": "ml.prediction", "body": {"stringValue": "a"}}]}]}]}
TRACES_PAYLOAD = {"resourceSpans": [{"scopeSpans": [{"spans": [
    {"traceId": TRACE_ID_HEX, "spanId": SPAN_ID_HEX, "name": "predict churn"}]}]}]}


def test_sdk_http_log_exporter_reaches_the_logs_consumer() -> None:
    recorder = Recorder(ALL_SIGNALS)
    with serving(recorder) as receiver:
        emit_ground_truth(OTLPLogExporter(endpoint=f"http://{receiver.http_endpoint}/v1/logs",
                                          timeout=EXPORT_TIMEOUT_S), "p-17", "churned")
        stats = receiver.stats()

    [[resource_logs]] = recorder.logs
    assert attributes_of(resource_logs.resource.attributes)[semconv.SERVICE_NAME] == \
        "churn-api"
    [record] = resource_logs.scope_logs[0].log_records
    assert (record.event_name, record.body.string_value) == ("ml.ground_truth", "churned")
    assert attributes_of(record.attributes) == {"ml.prediction.id": "p-17"}
    assert (stats.accepted_requests, stats.dropped_log_records) == (1, 0)


@pytest.mark.parametrize(("path", "payload", "response_type", "field"), [
    ("/v1/metrics", metrics_json(), metrics_service_pb2.ExportMetricsServiceResponse,
     "rejected_data_points"),
    ("/v1/traces", TRACES_PAYLOAD, trace_service_pb2.ExportTraceServiceResponse,
     "rejected_spans"),
    ("/v1/logs", LOGS_PAYLOAD, logs_service_pb2.ExportLogsServiceResponse,
     "rejected_log_records"),
])
@pytest.mark.parametrize("media_type", [JSON, PROTOBUF])
def test_partial_rejection_is_200_with_partial_success(
    path: str, payload: dict[str, Any], response_type: Any, field: str, media_type: str
) -> None:
    recorder = Recorder(ALL_SIGNALS, error=PartialRejection(2, "2 points lack ml.model.name"))
    request_type = {"/v1/metrics": metrics_service_pb2.ExportMetricsServiceRequest,
                    "/v1/traces": trace_service_pb2.ExportTraceServiceRequest,
                    "/v1/logs": logs_service_pb2.ExportLogsServiceRequest}[path]
    body = (json.dumps(payload).encode() if media_type == JSON
            else _otlp_request(payload, request_type).SerializeToString())
    with serving(recorder) as receiver:
        status, headers, answer = post(receiver, path, body, {"Content-Type": media_type})
        stats = receiver.stats()

    assert (status, headers["Content-Type"]) == (200, media_type)
    if media_type == JSON:
        camel = "".join(w.capitalize() if i else w for i, w in enumerate(field.split("_")))
        assert json.loads(answer) == {"partialSuccess": {
            camel: "2", "errorMessage": "2 points lack ml.model.name"}}
    else:
        partial = response_type.FromString(answer).partial_success
        assert (getattr(partial, field), partial.error_message) == \
            (2, "2 points lack ml.model.name")
    assert (stats.accepted_requests, stats.refused_requests, stats.partial_requests,
            stats.rejected_items) == (1, 0, 1, 2)


def _otlp_request(payload: dict[str, Any], request_type: Any) -> Any:
    return _otlp_json.decode_dict(payload, request_type)


def test_data_refused_is_429_with_a_status_body() -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS, error=DataRefusedError("memory limit reached"))
    with serving(recorder) as receiver:
        status, headers, body = post(receiver, "/v1/metrics", metrics_proto(),
                                     {"Content-Type": PROTOBUF})

    assert (status, headers["Retry-After"]) == (429, "1")
    assert "memory limit reached" in status_pb2.Status.FromString(body).message


def test_sdk_exporter_retries_a_429_and_delivers() -> None:
    recorder = RefusesOnce(HTTP_TEST_SIGNALS)
    with serving(recorder) as receiver:
        exporter = OTLPMetricExporter(endpoint=f"http://{receiver.http_endpoint}/v1/metrics",
                                      timeout=EXPORT_TIMEOUT_S)
        result = exporter.export(sdk_metrics(time.time_ns()))
        exporter.shutdown()
        stats = receiver.stats()

    assert result == MetricExportResult.SUCCESS
    assert len(recorder.metrics) == 1
    assert (stats.accepted_requests, stats.refused_requests) == (1, 1)


@pytest.mark.integration
def test_collector_writes_sdk_http_logs_to_a_logs_pipeline(tmp_path: Path) -> None:
    output = tmp_path / "logs.jsonl"
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }
    with running_collector(config, tmp_path) as collector:
        endpoint = collector.endpoints[PROTOCOL_HTTP]
        emit_ground_truth(OTLPLogExporter(endpoint=f"http://{endpoint}/v1/logs",
                                          timeout=EXPORT_TIMEOUT_S), "p-9", "stayed")

    assert collector.returncode == 0, collector.stderr()
    [request] = read_logs(output)
    [record] = request.resource_logs[0].scope_logs[0].log_records
    assert (record.event_name, record.body.string_value) == ("ml.ground_truth", "stayed")
    assert attributes_of(record.attributes) == {"ml.prediction.id": "p-9"}


def test_keep_alive_connection_is_reused_and_closed_promptly_at_shutdown(
        caplog: pytest.LogCaptureFixture) -> None:
    """The idle kept-alive connection is closed at once, not left to the grace's cut (no
    'still busy' warning; a wall-clock budget here failed on a loaded machine)."""
    receiver = OtlpReceiver(http_config(), Recorder(HTTP_TEST_SIGNALS))
    receiver.start()
    connection = http.client.HTTPConnection(LOOPBACK, receiver.http_port,
                                            timeout=HTTP_TIMEOUT_S)
    try:
        for name in ("first", "second"):
            connection.request("POST", "/v1/metrics", metrics_proto(name),
                               {"Content-Type": PROTOBUF})
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"")
        sock = connection.sock
        assert sock is not None  # still open: the same connection served both
        with caplog.at_level(logging.WARNING):
            receiver.shutdown()
        assert sock.recv(1) == b""  # the server closed the idle connection
    finally:
        connection.close()
        receiver.shutdown()

    assert not [r for r in caplog.records if "still busy" in r.getMessage()]
    assert receiver.stats().accepted_requests == 2


def test_port_zero_binds_a_free_port_and_names_it() -> None:
    with serving(Recorder(HTTP_TEST_SIGNALS)) as receiver:
        assert receiver.http_port is not None and receiver.http_port > 0
        assert receiver.http_endpoint == f"{LOOPBACK}:{receiver.http_port}"
        assert receiver.endpoints() == [f"{receiver.http_endpoint} (OTLP/HTTP)"]
        assert receiver.endpoint is None  # no gRPC server was asked for
    assert receiver.http_endpoint is None


def test_port_in_use_is_a_component_error_and_nothing_stays_bound() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        endpoint = f"{LOOPBACK}:{taken.getsockname()[1]}"
        config = OtlpReceiverConfig(ProtocolsConfig(grpc=GrpcConfig(f"{LOOPBACK}:0"),
                                                    http=HttpConfig(endpoint)))
        receiver = OtlpReceiver(config, Recorder(HTTP_TEST_SIGNALS))
        with pytest.raises(ComponentError, match=re.escape(f"cannot listen on {endpoint}")) \
                as caught:
            receiver.start()

    assert "protocols::http::endpoint" in str(caught.value)
    assert receiver.endpoints() == []  # the gRPC server started first was stopped again


# --- config ---------------------------------------------------------------------------------


def receiver_config_of(protocols: Any) -> Any:
    return parse_config({
        "receivers": {"otlp": {"protocols": protocols}},
        "exporters": {"file": {"path": "/tmp/unused.jsonl"}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }, environ={}).receivers[ComponentID("otlp")]


def problems_of(protocols: Any) -> list[str]:
    try:
        receiver_config_of(protocols)
    except ValueError as exc:
        return list(getattr(exc, "problems", [str(exc)]))
    return []


def test_config_serves_only_the_protocols_written() -> None:
    http_only = receiver_config_of({"http": {"endpoint": f"{LOOPBACK}:9999"}})
    both = receiver_config_of({"grpc": None, "http": None})

    assert http_only.protocols.grpc is None
    assert http_only.protocols.http == HttpConfig(f"{LOOPBACK}:9999",
                                                  DEFAULT_MAX_REQUEST_BODY_SIZE)
    assert both.protocols == ProtocolsConfig(GrpcConfig(), HttpConfig())
    assert both.protocols.http.endpoint == DEFAULT_HTTP_ENDPOINT


def test_config_without_any_protocol_names_the_path() -> None:
    [problem] = problems_of({})

    assert problem.startswith("receivers::otlp::protocols: must enable at least one protocol")


@pytest.mark.parametrize(("http", "expected"), [
    ({"max_request_body_size": 0},
     "receivers::otlp::protocols::http::max_request_body_size: must be a positive number of "
     "bytes, got 0"),
    ({"max_request_body_size": "20MiB"},
     "receivers::otlp::protocols::http::max_request_body_size: must be an integer, "
     "got '20MiB'"),
    ({"endpoint": "nowhere"},
     "receivers::otlp::protocols::http::endpoint: must be 'host:port'"),
    ({"endpont": "127.0.0.1:1"},
     "receivers::otlp::protocols::http::endpont: unknown key 'endpont'; did you mean "
     "'endpoint'?"),
])
def test_config_http_problems_name_their_key(http: dict[str, Any], expected: str) -> None:
    [problem] = problems_of({"http": http})

    assert problem.startswith(expected)


@pytest.mark.parametrize(("grpc_node", "expected"), [
    ({"max_recv_msg_size_mib": 0},
     "receivers::otlp::protocols::grpc::max_recv_msg_size_mib: must be a positive number of "
     "MiB, got 0"),
    ({"max_recv_msg_size_mib": True},
     "receivers::otlp::protocols::grpc::max_recv_msg_size_mib: must be"),
    ({"tls": {"cert_file": "", "key_file": ""}},
     "receivers::otlp::protocols::grpc::tls::cert_file: required when tls is set"),
    ({"auth": {"authenticator": "  "}},
     "receivers::otlp::protocols::grpc::auth::authenticator: required"),
])
def test_config_grpc_problems_name_their_key(grpc_node: dict[str, Any], expected: str) -> None:
    problems = problems_of({"grpc": grpc_node})

    assert problems[0].startswith(expected), problems


def test_config_same_port_for_both_protocols_is_a_problem() -> None:
    endpoint = f"{LOOPBACK}:4999"
    [problem] = problems_of({"grpc": {"endpoint": endpoint}, "http": {"endpoint": endpoint}})

    assert problem.startswith("receivers::otlp::protocols::http::endpoint: "
                              f"'{endpoint}' is also protocols::grpc::endpoint")


def test_default_config_listens_for_grpc_and_http_overridable_from_env(
    tmp_path: Path
) -> None:
    default_yaml = shipped("default.yaml")
    environ = {"DRIFTLINE_PROFILES": str(tmp_path), "DRIFTLINE_OUTPUT": str(tmp_path),
               "DRIFTLINE_OTLP_HTTP_ENDPOINT": f"{LOOPBACK}:14318"}

    overridden = load_config(default_yaml, environ=environ).receivers[ComponentID("otlp")]
    defaults = load_config(default_yaml, environ={
        k: v for k, v in environ.items() if k != "DRIFTLINE_OTLP_HTTP_ENDPOINT"
    }).receivers[ComponentID("otlp")]

    assert overridden.protocols.http.endpoint == f"{LOOPBACK}:14318"
    assert defaults.protocols.http.endpoint == "127.0.0.1:4318"
    assert defaults.protocols.grpc.endpoint == "127.0.0.1:4317"
