"""Structured fuzzing of the collector (issue 14): wire-valid OTLP with extreme values.

Hypothesis builds OTLP metrics, logs and traces that decode fine but carry what real
senders rarely do: exponential-histogram scales and bucket offsets at and past their
limits, counts up to 2**64-1, NaN and infinities, timestamps 0 and far in the future, huge
and control-character attributes, explicit bounds out of order, prediction records with
odd scores. Each example goes over OTLP/HTTP or OTLP/gRPC to one real ``driftline
collector`` (``ml_drift`` with its checkpoint, ``ml_performance``, the Prometheus and file
exporters), and the test asserts what the issue asks of a collector:

- every answer is 200 (perhaps with ``partial_success``) or 400, never a retryable code
  (429, 503, gRPC ``RESOURCE_EXHAUSTED``/``UNAVAILABLE``) for data that can never succeed;
- the process stays up and serves, its memory (RSS) under ``RSS_BOUND_BYTES``;
- a canary model's window, sent after the flood, is evaluated and exported with its rows.

``DRIFTLINE_FUZZ_EXAMPLES`` sets the number of examples (default ``SHORT_EXAMPLES``, a
few seconds; ``make fuzz`` runs ``LONG_EXAMPLES``).
"""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    AGGREGATION_TEMPORALITY_DELTA,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from driftline import semconv
from driftline.processor.component import otlp_json as _otlp_json
from tests._collector import PROTOCOL_GRPC, PROTOCOL_HTTP, Collector, running_collector

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"
MIB = 1 << 20
SHORT_EXAMPLES = 100
HUGE_BUCKETS = 200_000
LONG_EXAMPLES = 3000
EXAMPLES = int(os.environ.get("DRIFTLINE_FUZZ_EXAMPLES", SHORT_EXAMPLES))
MAX_BODY_BYTES = 8 * MIB
TIMEOUT_S = 30.0
WINDOW_S = 1
# The collector after start is about 70 MiB; a poison point once took it to 10.6 GiB. The
# flood here (huge attributes, a million-bucket point) stays far below this bound.
RSS_BOUND_BYTES = 768 * MIB
CANARY_TIMEOUT_S = 30.0
NS = 1_000_000_000
UINT64_MAX = 2**64 - 1
INT64_MAX = 2**63 - 1
STATUS_OK = (200, 400)
GRPC_OK = (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)

# --- strategies -----------------------------------------------------------------------------

uint64 = st.one_of(st.sampled_from([0, 1, 2**53, 2**53 + 1, 2**62, 2**63 - 1, 2**63,
                                    UINT64_MAX]), st.integers(0, UINT64_MAX))
int64 = st.one_of(st.sampled_from([0, -1, 1, 2**53, INT64_MAX, -(2**63)]),
                  st.integers(-(2**63), INT64_MAX))
int32 = st.one_of(st.sampled_from([0, -1, 2**31 - 1, -(2**31), 1024 << 20, -(1075 << 20)]),
                  st.integers(-(2**31), 2**31 - 1))
double = st.floats(allow_nan=True, allow_infinity=True)
scale = st.one_of(st.sampled_from([-10, 0, 20, -11, 21, -100, 100]), st.integers(-20, 30))
# Relative to the send time: 0 (none), the epoch, now, the far past and future, the last ns.
time_offset = st.sampled_from(["zero", "one", "now", "now", "now", "past", "future", "max"])
text = st.one_of(st.text(max_size=40), st.sampled_from([
    "churn", "x" * 100_000, "line\nforged=1", "nul\x00", "\x1b[31mred", "__other__", ""]))
model_name = st.one_of(st.sampled_from(["fuzz-a", "fuzz-b", "fuzz\nforged", "\x00", ""]),
                       st.text(max_size=12))
feature_name = st.one_of(st.sampled_from(["age", "income", "x" * 10_000]), st.text(max_size=12))


def _time(kind: str) -> int:
    now = time.time_ns()
    return {"zero": 0, "one": 1, "now": now, "past": now - 10**17, "future": now + 10**17,
            "max": UINT64_MAX}[kind]


def _kv(values: dict[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in values.items()]


def _model(name: str) -> dict[str, str]:
    return {semconv.ML_MODEL_NAME: name, semconv.ML_MODEL_VERSION: "1",
            semconv.ML_MODEL_FRAMEWORK: "sklearn", semconv.ML_OPERATION: "predict"}


@st.composite
def exp_point(draw: st.DrawFn) -> ExponentialHistogramDataPoint:
    point = ExponentialHistogramDataPoint(
        attributes=_kv({**_model(draw(model_name)), semconv.ML_FEATURE_NAME: draw(feature_name)}),
        start_time_unix_nano=_time(draw(time_offset)), time_unix_nano=_time(draw(time_offset)),
        count=draw(uint64), zero_count=draw(uint64), scale=draw(scale))
    for name in ("sum", "min", "max"):
        if draw(st.booleans()):
            setattr(point, name, draw(double))
    point.positive.offset = draw(int32)
    point.positive.bucket_counts.extend(draw(st.lists(uint64, max_size=12)))
    if draw(st.integers(0, 100)) == 0:  # now and then a huge point
        point.positive.bucket_counts.extend([1] * HUGE_BUCKETS)
    if draw(st.booleans()):
        point.negative.offset = draw(int32)
        point.negative.bucket_counts.extend(draw(st.lists(uint64, max_size=6)))
    return point


@st.composite
def sum_point(draw: st.DrawFn, attributes: dict[str, str]) -> NumberDataPoint:
    point = NumberDataPoint(attributes=_kv(attributes),
                            start_time_unix_nano=_time(draw(time_offset)),
                            time_unix_nano=_time(draw(time_offset)))
    if draw(st.booleans()):
        point.as_int = draw(int64)
    else:
        point.as_double = draw(double)
    return point


@st.composite
def explicit_point(draw: st.DrawFn) -> HistogramDataPoint:
    bounds = draw(st.lists(double, max_size=6))
    counts = draw(st.lists(uint64, min_size=0, max_size=len(bounds) + 2))
    return HistogramDataPoint(
        attributes=_kv({**_model(draw(model_name)), semconv.ML_FEATURE_NAME: draw(feature_name)}),
        start_time_unix_nano=_time(draw(time_offset)), time_unix_nano=_time(draw(time_offset)),
        count=draw(uint64), explicit_bounds=bounds, bucket_counts=counts)


temporality = st.sampled_from([AGGREGATION_TEMPORALITY_DELTA, AGGREGATION_TEMPORALITY_CUMULATIVE,
                               0])


@st.composite
def metric(draw: st.DrawFn) -> Metric:
    kind = draw(st.sampled_from(["exp", "exp", "rows", "category", "explicit"]))
    if kind == "exp":
        name = draw(st.sampled_from([semconv.ML_FEATURE_VALUE, semconv.ML_PREDICTION_VALUE,
                                     semconv.ML_PREDICTION_CONFIDENCE]))
        return Metric(name=name, exponential_histogram=ExponentialHistogram(
            data_points=draw(st.lists(exp_point(), min_size=1, max_size=4)),
            aggregation_temporality=draw(temporality)))
    if kind == "explicit":
        return Metric(name=semconv.ML_FEATURE_VALUE, histogram=Histogram(
            data_points=draw(st.lists(explicit_point(), min_size=1, max_size=3)),
            aggregation_temporality=draw(temporality)))
    name = semconv.ML_PREDICT_ROWS if kind == "rows" else semconv.ML_FEATURE_CATEGORY_METRIC
    attributes = _model(draw(model_name))
    if kind == "category":
        attributes |= {semconv.ML_FEATURE_NAME: draw(feature_name),
                       semconv.ML_FEATURE_CATEGORY: draw(text)}
    return Metric(name=name, sum=Sum(
        data_points=draw(st.lists(sum_point(attributes), min_size=1, max_size=4)),
        aggregation_temporality=draw(temporality), is_monotonic=draw(st.booleans())))


@st.composite
def metrics_request(draw: st.DrawFn) -> metrics_service_pb2.ExportMetricsServiceRequest:
    resource = Resource(attributes=_kv({semconv.SERVICE_NAME: draw(text),
                                        "fuzz.attr": draw(text)}))
    return metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        resource=resource,
        scope_metrics=[ScopeMetrics(metrics=draw(st.lists(metric(), min_size=1, max_size=4)))])])


any_value = st.one_of(
    st.builds(lambda s: AnyValue(string_value=s), text),
    st.builds(lambda d: AnyValue(double_value=d), double),
    st.builds(lambda i: AnyValue(int_value=i), int64),
    st.builds(lambda values: AnyValue(array_value=ArrayValue(
        values=[AnyValue(double_value=v) for v in values])), st.lists(double, max_size=4)),
    st.builds(lambda values: AnyValue(array_value=ArrayValue(
        values=[AnyValue(string_value=v) for v in values])), st.lists(text, max_size=4)),
)


@st.composite
def log_record(draw: st.DrawFn) -> LogRecord:
    event = draw(st.sampled_from([semconv.EVENT_PREDICTION, semconv.EVENT_GROUND_TRUTH, "other"]))
    attributes = [KeyValue(key=k, value=AnyValue(string_value=v))
                  for k, v in _model(draw(model_name)).items()]
    attributes.append(KeyValue(key=semconv.ML_PREDICTION_ID,
                               value=draw(any_value) if draw(st.booleans())
                               else AnyValue(string_value=f"p{draw(st.integers(0, 30))}")))
    for key in (semconv.ML_PREDICTION_LABEL, semconv.ML_PREDICTION_SCORES,
                semconv.ML_PREDICTION_CLASSES, semconv.ML_PREDICTION_VALUE_ATTRIBUTE,
                semconv.ML_GROUND_TRUTH_LABEL):
        if draw(st.booleans()):
            attributes.append(KeyValue(key=key, value=draw(any_value)))
    return LogRecord(event_name=event, time_unix_nano=_time(draw(time_offset)),
                     observed_time_unix_nano=_time(draw(time_offset)), attributes=attributes,
                     body=draw(any_value))


@st.composite
def logs_request(draw: st.DrawFn) -> logs_service_pb2.ExportLogsServiceRequest:
    return logs_service_pb2.ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=Resource(attributes=_kv({semconv.SERVICE_NAME: draw(text)})),
        scope_logs=[ScopeLogs(log_records=draw(st.lists(log_record(), max_size=5)))])])


@st.composite
def span(draw: st.DrawFn) -> Span:
    return Span(trace_id=draw(st.binary(max_size=20)), span_id=draw(st.binary(max_size=10)),
                name=draw(text), start_time_unix_nano=_time(draw(time_offset)),
                end_time_unix_nano=_time(draw(time_offset)),
                attributes=[KeyValue(key=draw(text), value=draw(any_value))])


@st.composite
def traces_request(draw: st.DrawFn) -> trace_service_pb2.ExportTraceServiceRequest:
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=_kv({semconv.SERVICE_NAME: draw(text)})),
        scope_spans=[ScopeSpans(spans=draw(st.lists(span(), max_size=4)))])])


# --- the collector --------------------------------------------------------------------------


@dataclass
class Fuzzed:
    collector: Collector
    workdir: Path
    http: http.client.HTTPConnection
    channel: grpc.Channel
    answers: dict[str, int] = field(default_factory=dict)
    peak_rss_bytes: int = 0


def _config(workdir: Path) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": f"{LOOPBACK}:0", "max_recv_msg_size_mib": 16},
            "http": {"endpoint": f"{LOOPBACK}:0", "max_request_body_size": MAX_BODY_BYTES},
        }}},
        "processors": {
            "ml_drift": {"profiles": str(workdir / "profiles"), "window": f"{WINDOW_S}s",
                         "grace": "0.2s", "min_rows": 1,
                         "checkpoint": {"path": str(workdir / "ml_drift.sqlite")}},
            "ml_performance": {"store": {"path": str(workdir / "predictions.sqlite")},
                               "window": f"{WINDOW_S}s", "grace": "0.2s", "min_labels": 1},
        },
        "exporters": {
            "prometheus": {"endpoint": f"{LOOPBACK}:0"},
            "file": {"path": str(workdir / "metrics.jsonl"), "flush_interval": 0},
            "file/logs": {"path": str(workdir / "logs.jsonl")},
            "file/traces": {"path": str(workdir / "traces.jsonl")},
        },
        "service": {"pipelines": {
            "metrics": {"receivers": ["otlp"], "processors": ["ml_drift"],
                        "exporters": ["prometheus", "file"]},
            "logs": {"receivers": ["otlp"], "processors": ["ml_performance"],
                     "exporters": ["file/logs"]},
            "traces": {"receivers": ["otlp"], "exporters": ["file/traces"]},
        }},
    }


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    workdir = tmp_path_factory.mktemp("fuzz")
    (workdir / "profiles").mkdir()
    with running_collector(_config(workdir), workdir, (PROTOCOL_HTTP, PROTOCOL_GRPC)) \
            as collector:
        host, port = collector.endpoints[PROTOCOL_HTTP].rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
        with grpc.insecure_channel(collector.endpoints[PROTOCOL_GRPC], options=[
                ("grpc.max_send_message_length", 16 * MIB)]) as channel:
            yield Fuzzed(collector, workdir, connection, channel)
        connection.close()
    assert collector.returncode == 0, collector.stderr()[-4000:]


_PATHS = {"metrics": "/v1/metrics", "logs": "/v1/logs", "traces": "/v1/traces"}


def _post(fuzzed: Fuzzed, signal: str, body: bytes) -> tuple[int, bytes]:
    for attempt in range(2):  # the server may close a kept-alive connection (a 413 does)
        try:
            fuzzed.http.request("POST", _PATHS[signal], body,
                                {"Content-Type": "application/x-protobuf"})
            response = fuzzed.http.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, ConnectionError):
            fuzzed.http.close()
            if attempt:
                raise
    raise AssertionError("unreachable")


def _export_grpc(fuzzed: Fuzzed, signal: str, request: Any) -> grpc.StatusCode:
    stub = {"metrics": metrics_service_pb2_grpc.MetricsServiceStub,
            "logs": logs_service_pb2_grpc.LogsServiceStub,
            "traces": trace_service_pb2_grpc.TraceServiceStub}[signal](fuzzed.channel)
    try:
        stub.Export(request, timeout=TIMEOUT_S)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def _check_alive(fuzzed: Fuzzed) -> None:
    process = fuzzed.collector.process
    assert process.poll() is None, fuzzed.collector.stderr()[-4000:]
    rss = rss_bytes(process.pid)
    fuzzed.peak_rss_bytes = max(fuzzed.peak_rss_bytes, rss)
    assert rss < RSS_BOUND_BYTES, f"RSS {rss / MIB:.0f} MiB"


# --- the properties -------------------------------------------------------------------------


@settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(signal_request=st.one_of(
           st.tuples(st.just("metrics"), metrics_request()),
           st.tuples(st.just("metrics"), metrics_request()),
           st.tuples(st.just("logs"), logs_request()),
           st.tuples(st.just("traces"), traces_request())),
       over_grpc=st.booleans())
def test_extreme_wire_valid_otlp_is_answered_for_good_and_the_collector_lives(
        fuzzed: Fuzzed, signal_request: tuple[str, Any], over_grpc: bool) -> None:
    signal, request = signal_request
    body = request.SerializeToString()
    if over_grpc:
        code = _export_grpc(fuzzed, signal, request)
        fuzzed.answers[f"gRPC {code.name}"] = fuzzed.answers.get(f"gRPC {code.name}", 0) + 1
        assert code in GRPC_OK, (code, fuzzed.collector.stderr()[-3000:])
    else:
        status, answer = _post(fuzzed, signal, body)
        key = f"HTTP {status}"
        if status == 200 and signal == "metrics":
            rejected = metrics_service_pb2.ExportMetricsServiceResponse.FromString(
                answer).partial_success.rejected_data_points
            key += " partial" if rejected else ""
        fuzzed.answers[key] = fuzzed.answers.get(key, 0) + 1
        allowed = (*STATUS_OK, 413) if len(body) > MAX_BODY_BYTES else STATUS_OK
        assert status in allowed, (status, answer[:300], fuzzed.collector.stderr()[-3000:])
    _check_alive(fuzzed)


def _canary_rows(path: Path, name: str) -> list[int]:
    """The ``ml.window.rows`` values of model ``name`` in the file exporter's output. Only
    lines naming the model are decoded: the flood makes the file hundreds of MB."""
    if not path.exists():
        return []
    needle = json.dumps(name).encode()
    rows = []
    with path.open("rb") as lines:
        for line in lines:
            if needle not in line:
                continue
            request = _otlp_json.decode_dict(json.loads(line), ExportMetricsServiceRequest)
            rows += [point.as_int for rm in request.resource_metrics
                     for sm in rm.scope_metrics for m in sm.metrics
                     if m.name == semconv.ML_WINDOW_ROWS for point in m.gauge.data_points
                     if {kv.key: kv.value.string_value for kv in point.attributes}.get(
                         semconv.ML_MODEL_NAME) == name]
    return rows


def test_after_the_flood_another_models_window_is_evaluated_and_exported(
        fuzzed: Fuzzed) -> None:
    """Runs after the fuzz test (file order): the collector still windows, evaluates and
    exports a healthy model's data, with the exact row count."""
    canary = "canary"
    rows = Metric(name=semconv.ML_PREDICT_ROWS, sum=Sum(
        data_points=[NumberDataPoint(attributes=_kv(_model(canary)), as_int=1234,
                                     time_unix_nano=time.time_ns())],
        aggregation_temporality=AGGREGATION_TEMPORALITY_DELTA, is_monotonic=True))
    request = metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=[
        ResourceMetrics(scope_metrics=[ScopeMetrics(metrics=[rows])])])
    status, answer = _post(fuzzed, "metrics", request.SerializeToString())
    assert status == 200, answer[:300]
    deadline = time.monotonic() + CANARY_TIMEOUT_S
    found: list[int] = []
    while time.monotonic() < deadline and not found:
        time.sleep(0.2)
        found = _canary_rows(fuzzed.workdir / "metrics.jsonl", canary)
    errors = [line for line in fuzzed.collector.stderr().splitlines()
              if " ERROR " in line or "Traceback" in line]
    assert found == [1234], "\n".join(errors[-20:])
    _check_alive(fuzzed)
    # What the flood got, for the results table (pytest -s shows it).
    print(json.dumps({"examples": EXAMPLES, "answers": fuzzed.answers,
                      "peak_rss_mib": round(fuzzed.peak_rss_bytes / MIB)}))
