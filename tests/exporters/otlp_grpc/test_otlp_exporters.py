"""The ``otlp`` / ``otlphttp`` exporters and their retry and queue chain, with real processes.

An upstream processor forwards to a downstream processor (both real ``driftline collector``
subprocesses) that writes what it receives to a file; every data point carries a sequence
number, so the test counts each one end to end. The SDK's own OTLP exporter is the client.
Backends that answer 429 or RESOURCE_EXHAUSTED are small in-test servers on real sockets:
no backend that can be told to refuse on cue runs here.
"""

from __future__ import annotations

import gzip
import itertools
import random
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from driftline.collector_config import shipped
from driftline.exporters.file.exporter import read_metrics
from driftline.exporters.sending import queue as _sending
from driftline.exporters.sending.http import retry_after_s
from driftline.exporters.sending.queue import Backoff, RetryConfig
from driftline.processor.component import DataRefusedError
from driftline.processor.service.config import load_config, parse_config
from driftline.processor.service.pipeline import build
from tests._collector import PROTOCOL_GRPC, PROTOCOL_HTTP, running_collector, spawn
from tests._pki import make_pki
from tests.conftest import reserve_port

METRIC = "test.sequence"
POINTS_PER_REQUEST = 50
DEADLINE_S = 60.0


def _batch(first: int, count: int) -> MetricsData:
    points = [NumberDataPoint(attributes={"seq": i}, start_time_unix_nano=0,
                              time_unix_nano=time.time_ns(), value=i)
              for i in range(first, first + count)]
    metric = Metric(METRIC, None, "1", Gauge(points))
    return MetricsData([ResourceMetrics(
        Resource.create({"service.name": "sender"}),
        [ScopeMetrics(InstrumentationScope("test"), [metric], "")], "")])


def _send(endpoint: str, requests: int) -> int:
    """``requests`` exports of 50 numbered points through the SDK's OTLP/HTTP exporter."""
    exporter = OTLPMetricExporter(endpoint=f"http://{endpoint}/v1/metrics", timeout=10)
    for n in range(requests):
        result = exporter.export(_batch(n * POINTS_PER_REQUEST, POINTS_PER_REQUEST))
        assert result is MetricExportResult.SUCCESS
    exporter.shutdown()
    return requests * POINTS_PER_REQUEST


def _received(path: Path) -> list[int]:
    """Sequence numbers of the test's points in a file exporter's output (duplicates kept)."""
    if not path.exists():
        return []
    return [int(kv.value.int_value) for request in read_metrics(path)
            for resource in request.resource_metrics for scope in resource.scope_metrics
            for metric in scope.metrics if metric.name == METRIC
            for point in metric.gauge.data_points for kv in point.attributes if kv.key == "seq"]


def _wait_for_count(path: Path, expected: int, timeout_s: float = DEADLINE_S) -> list[int]:
    deadline = time.monotonic() + timeout_s
    seen = _received(path)
    while len(set(seen)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = _received(path)
    return seen


def _downstream(output: Path, http: str = "127.0.0.1:0") -> dict[str, Any]:
    """A collector writing what it receives to ``output``; its gRPC port is the OS's pick,
    its HTTP one too unless the upstream must know it before it starts."""
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": http},
                                             "grpc": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}},
                    "telemetry": {"metrics": {"level": "none"}}},
    }


BOTH = (PROTOCOL_HTTP, PROTOCOL_GRPC)


def _upstream(exporter: dict[str, Any], extensions: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    service: dict[str, Any] = {
        "pipelines": {"metrics": {"receivers": ["otlp"], "exporters": list(exporter)}},
        "telemetry": {"metrics": {"level": "none"}}}
    config: dict[str, Any] = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": exporter, "service": service}
    if extensions:
        config["extensions"] = extensions
        service["extensions"] = list(extensions)
    return config


FAST_RETRY = {"initial_interval": "200ms", "max_interval": "1s", "max_elapsed_time": "300s"}


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["otlp", "otlphttp"])
def test_forwarding_delivers_every_point_once(tmp_path: Path, kind: str) -> None:
    output = tmp_path / "downstream.jsonl"
    (tmp_path / "down").mkdir()
    (tmp_path / "up").mkdir()
    with running_collector(_downstream(output), tmp_path / "down", BOTH) as downstream:
        endpoint = (downstream.endpoints[PROTOCOL_GRPC] if kind == "otlp"
                    else f"http://{downstream.endpoints[PROTOCOL_HTTP]}")
        exporter = {kind: {"endpoint": endpoint, "tls": {"insecure": True},
                           "headers": {"x-tenant": "t1"}, "retry_on_failure": FAST_RETRY}}
        with running_collector(_upstream(exporter), tmp_path / "up") as upstream:
            sent = _send(upstream.endpoints[PROTOCOL_HTTP], 20)
            seen = _wait_for_count(output, sent)
    assert sorted(seen) == list(range(sent))  # every point, none twice


@pytest.mark.integration
def test_backend_down_for_sixty_seconds_then_back_loses_nothing(tmp_path: Path) -> None:
    """The downstream is down while data arrives and for 60 s; the queue holds it and the
    retries deliver all of it once the downstream is back."""
    output = tmp_path / "downstream.jsonl"
    (tmp_path / "down").mkdir()
    (tmp_path / "up").mkdir()
    # Held while the downstream is down (connections to it are refused), released as it
    # starts: a port merely free when picked was taken by another worker within the minute.
    with reserve_port() as downstream_port:
        exporter = {"otlphttp": {"endpoint": f"http://{downstream_port.endpoint}",
                                 "retry_on_failure": {"initial_interval": "1s",
                                                      "max_interval": "5s"}}}
        with running_collector(_upstream(exporter), tmp_path / "up") as upstream:
            sent = _send(upstream.endpoints[PROTOCOL_HTTP], 20)
            time.sleep(60)
            assert _received(output) == []
            downstream_port.release()
            with running_collector(_downstream(output, downstream_port.endpoint),
                                   tmp_path / "down"):
                seen = _wait_for_count(output, sent)
    assert sorted(seen) == list(range(sent))


@pytest.mark.integration
def test_persistent_queue_survives_sigkill(tmp_path: Path) -> None:
    """Data accepted by the upstream while the downstream is down is on disk; the upstream
    is SIGKILLed, restarted with the same storage, and delivers every point. Nothing was
    sent before the kill, so there can be no duplicate: the test asserts exactly once."""
    output = tmp_path / "downstream.jsonl"
    storage = tmp_path / "queue"
    (tmp_path / "down").mkdir()
    (tmp_path / "up").mkdir()
    with reserve_port() as downstream_port:  # held (refusing) while the downstream is down
        exporter = {"otlphttp": {"endpoint": f"http://{downstream_port.endpoint}",
                                 "retry_on_failure": FAST_RETRY,
                                 "sending_queue": {"storage": "file_storage"}}}
        extensions = {"file_storage": {"directory": str(storage)}}
        config = _upstream(exporter, extensions)
        first = spawn(config, tmp_path / "up")
        try:
            first.wait_for((PROTOCOL_HTTP,))
            sent = _send(first.endpoints[PROTOCOL_HTTP], 20)
        finally:
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
        assert len(list(storage.rglob("*.item"))) == 20  # one file per accepted request
        downstream_port.release()
        with running_collector(_downstream(output, downstream_port.endpoint),
                               tmp_path / "down"), running_collector(config, tmp_path / "up"):
            seen = _wait_for_count(output, sent)
    assert sorted(seen) == list(range(sent))
    assert list(storage.rglob("*.item")) == []


class _Refusing(BaseHTTPRequestHandler):
    """Answers the first ``refusals`` requests ``status`` with Retry-After, then 200."""

    refusals = 2
    status = 429
    retry_after = "1"
    times: list[float] = []
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).times.append(time.monotonic())
        if len(type(self).times) <= type(self).refusals:
            self.send_response(type(self).status)
            self.send_header("Retry-After", type(self).retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        type(self).bodies.append(gzip.decompress(body))
        payload = ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        """Quiet: the test asserts on what was received."""


@pytest.fixture
def refusing_backend() -> Iterator[tuple[str, type[_Refusing]]]:
    handler = type("Handler", (_Refusing,), {"times": [], "bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
@pytest.mark.parametrize("status", [429, 503])
def test_refusal_with_retry_after_is_retried_after_the_asked_wait(
        tmp_path: Path, refusing_backend: tuple[str, type[_Refusing]], status: int) -> None:
    url, handler = refusing_backend
    handler.status = status
    exporter = {"otlphttp": {"endpoint": url, "sending_queue": {"num_consumers": 1},
                             "retry_on_failure": {"initial_interval": "10ms",
                                                  "max_interval": "20ms"}}}
    with running_collector(_upstream(exporter), tmp_path) as upstream:
        sent = _send(upstream.endpoints[PROTOCOL_HTTP], 1)
        deadline = time.monotonic() + DEADLINE_S
        while not handler.bodies and time.monotonic() < deadline:
            time.sleep(0.1)
    assert len(handler.times) == 3  # refused twice, then accepted
    gaps = [b - a for a, b in itertools.pairwise(handler.times)]
    # The backoff alone would wait 10-20 ms; Retry-After asked for a second each time.
    assert all(gap >= 0.95 for gap in gaps), gaps
    request = ExportMetricsServiceRequest.FromString(handler.bodies[0])
    points = request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points
    assert len(points) == sent


def _grpc_backend(refusals: int, delay_s: float) -> tuple[grpc.Server, int, list[float]]:
    """A gRPC metrics service answering RESOURCE_EXHAUSTED with a RetryInfo ``refusals``
    times, then OK."""
    times: list[float] = []
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(
        seconds=int(delay_s), nanos=int(delay_s % 1 * 1e9)))
    detail = any_pb2.Any()
    detail.Pack(retry)
    status = status_pb2.Status(code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
                               message="slow down", details=[detail])

    def export(request: bytes, context: grpc.ServicerContext) -> bytes:
        times.append(time.monotonic())
        if len(times) <= refusals:
            context.set_trailing_metadata(
                (("grpc-status-details-bin", status.SerializeToString()),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
        return ExportMetricsServiceResponse().SerializeToString()

    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)})
    server = grpc.server(ThreadPoolExecutor(2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, times


@pytest.mark.integration
def test_grpc_resource_exhausted_with_retry_info_waits_the_server_delay(
        tmp_path: Path) -> None:
    server, port, times = _grpc_backend(refusals=2, delay_s=1.0)
    try:
        exporter = {"otlp": {"endpoint": f"127.0.0.1:{port}", "tls": {"insecure": True},
                             "retry_on_failure": {"initial_interval": "10ms",
                                                  "max_interval": "20ms"}}}
        with running_collector(_upstream(exporter), tmp_path) as upstream:
            _send(upstream.endpoints[PROTOCOL_HTTP], 1)
            deadline = time.monotonic() + DEADLINE_S
            while len(times) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        server.stop(0)
    assert len(times) == 3
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(times))


def test_backoff_grows_by_the_multiplier_within_the_jitter_and_caps() -> None:
    config = RetryConfig(initial_interval="1s", multiplier=2.0, max_interval="5s",
                         randomization_factor=0.5)
    backoff = Backoff(config, random.Random(1))
    waits = [backoff.next_wait_s() for _ in range(6)]
    for wait, base in zip(waits, [1, 2, 4, 5, 5, 5], strict=True):
        assert base * 0.5 <= wait <= base * 1.5
    unjittered = Backoff(RetryConfig(initial_interval="1s", multiplier=2.0,
                                     max_interval="5s", randomization_factor=0.0))
    assert [unjittered.next_wait_s() for _ in range(5)] == [1, 2, 4, 5, 5]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT",
                         now_s=1445412480.0) == pytest.approx(10.0)
    assert retry_after_s("soon") is None
    assert retry_after_s(None) is None


def test_full_queue_refuses_and_counts() -> None:
    """With the only consumer stuck on a send, the queue fills and then refuses."""
    release = threading.Event()

    def stuck_send(item: _sending.Item, timeout_s: float) -> None:
        release.wait(10)

    config = _sending.SendingConfig()
    config.sending_queue.num_consumers = 1
    config.sending_queue.queue_size = 3
    sender = _sending.Sender("test", stuck_send, config)
    sender.start()
    try:
        for _ in range(3):
            sender.submit(_sending.Item("metrics", b"", 5))
        with pytest.raises(DataRefusedError, match="sending queue is full"):
            sender.submit(_sending.Item("metrics", b"", 5))
        assert sender.stats().refused_items == 5
    finally:
        release.set()
        sender.shutdown()
    stats = sender.stats()
    assert (stats.sent_items, stats.queue_size) == (15, 0)


def test_vendor_examples_validate_with_their_endpoints_and_headers(tmp_path: Path) -> None:
    environ = {"DRIFTLINE_PROFILES": str(tmp_path), "DD_API_KEY": "dd-key",
               "HONEYCOMB_API_KEY": "hc-key", "GRAFANA_OTLP_BASIC_AUTH": "aWQ6dG9rZW4=",
               "ARIZE_SPACE_ID": "space", "ARIZE_API_KEY": "arize-key",
               "DRIFTLINE_STATE": str(tmp_path / "state")}
    config = load_config(shipped("vendors.yaml"), environ=environ)
    exporters = {str(cid): c for cid, c in config.exporters.items()}
    datadog = exporters["otlphttp/datadog"]
    assert datadog.url("metrics") == "https://otlp.datadoghq.com/v1/metrics"
    assert datadog.headers == {"dd-api-key": "dd-key"}
    assert datadog.sending_queue.storage == "file_storage"
    assert exporters["otlp/honeycomb"].endpoint == "api.honeycomb.io:443"
    assert exporters["otlp/honeycomb"].headers["x-honeycomb-team"] == "hc-key"
    grafana = exporters["otlphttp/grafana"]
    assert grafana.url("traces") == ("https://otlp-gateway-prod-eu-west-2.grafana.net"
                                     "/otlp/v1/traces")
    assert grafana.headers == {"Authorization": "Basic aWQ6dG9rZW4="}
    assert exporters["otlp/arize"].headers == {"space_id": "space", "api_key": "arize-key"}


TOKEN = "forwarding-token-42"


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["otlp", "otlphttp"])
def test_forwarding_over_mutual_tls_with_a_bearer_token_header(tmp_path: Path,
                                                              kind: str) -> None:
    """The downstream requires a client certificate of its CA and a bearer token, so the
    points arrive only if the exporter's TLS settings and headers are applied."""
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    output = tmp_path / "downstream.jsonl"
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
           "client_ca_file": str(pki.ca)}
    auth = {"authenticator": "bearertokenauth"}
    downstream = _downstream(output)
    protocols = downstream["receivers"]["otlp"]["protocols"]
    for protocol in protocols.values():
        protocol.update(tls=tls, auth=auth)
    downstream["extensions"] = {"bearertokenauth": {"token": TOKEN}}
    downstream["service"]["extensions"] = ["bearertokenauth"]
    client_tls = {"ca_file": str(pki.ca), "cert_file": str(pki.client_cert),
                  "key_file": str(pki.client_key)}
    (tmp_path / "down").mkdir()
    (tmp_path / "up").mkdir()
    with running_collector(downstream, tmp_path / "down", BOTH) as down:
        # The certificate names localhost: the same port, by that name.
        port = down.endpoints[PROTOCOL_GRPC if kind == "otlp" else PROTOCOL_HTTP].rpartition(
            ":")[2]
        endpoint = f"localhost:{port}" if kind == "otlp" else f"https://localhost:{port}"
        exporter = {kind: {"endpoint": endpoint, "tls": client_tls,
                           "headers": {"Authorization": f"Bearer {TOKEN}"},
                           "retry_on_failure": FAST_RETRY}}
        with running_collector(_upstream(exporter), tmp_path / "up") as upstream:
            sent = _send(upstream.endpoints[PROTOCOL_HTTP], 5)
            seen = _wait_for_count(output, sent)
    assert sorted(seen) == list(range(sent))


def test_each_exporter_keeps_its_persistent_queue_in_its_own_directory(tmp_path: Path) -> None:
    exporter = {"endpoint": "http://127.0.0.1:9", "sending_queue": {"storage": "file_storage"}}
    config = parse_config({
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {"otlphttp/a": exporter, "otlphttp/b": exporter},
        "extensions": {"file_storage": {"directory": str(tmp_path / "state")}},
        "service": {"extensions": ["file_storage"],
                    "pipelines": {"metrics": {"receivers": ["otlp"],
                                              "exporters": ["otlphttp/a", "otlphttp/b"]}},
                    "telemetry": {"metrics": {"level": "none"}}},
    })
    pipelines = build(config)
    pipelines.start()
    try:
        assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
            "otlphttp_a", "otlphttp_b"]
    finally:
        pipelines.shutdown()


def test_shutdown_waits_a_bounded_time_and_counts_what_it_could_not_send(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer stuck in a send: shutdown returns after JOIN_TIMEOUT_S (shortened here),
    counts the queued items as dropped, and refuses what arrives later."""
    monkeypatch.setattr(_sending, "JOIN_TIMEOUT_S", 0.3)
    release = threading.Event()
    sent: list[int] = []

    def stuck_send(item: _sending.Item, timeout_s: float) -> None:
        release.wait(10)
        sent.append(item.count)

    config = _sending.SendingConfig()
    config.sending_queue.num_consumers = 1
    sender = _sending.Sender("test", stuck_send, config)
    sender.start()
    try:
        for count in (1, 2, 3):  # the first is in flight, two wait
            sender.submit(_sending.Item("metrics", b"", count))
        time.sleep(0.1)
        sender.shutdown()
        assert sent == []  # it returned while the send was still stuck (a 2 s budget here
        # failed on a loaded machine; the stuck send waits for release, up to 10 s)
        assert sender.stats().dropped_items == 5
        with pytest.raises(DataRefusedError, match="shutting down"):
            sender.submit(_sending.Item("metrics", b"", 4))
    finally:
        release.set()
    time.sleep(0.2)
    assert sent == [1]  # the dropped ones are not sent late by the released consumer


def test_a_stray_file_in_the_queue_directory_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "notes.item").write_text("not a queued request")
    sender = _sending.Sender("test", lambda item, timeout_s: None, _sending.SendingConfig(),
                             storage_directory=tmp_path)
    sender.start()
    sender.submit(_sending.Item("metrics", b"x", 1))
    sender.shutdown()
    assert sender.stats().sent_items == 1


def test_storage_needs_the_queue() -> None:
    queue = _sending.QueueConfig(enabled=False, storage="file_storage")
    assert queue.validate() == ["storage: 'file_storage' needs the queue (enabled: true); "
                                "without it nothing would send what the storage holds"]


def test_skipping_verification_is_refused_where_grpc_cannot_do_it() -> None:
    from driftline.exporters.otlp_grpc.exporter import OtlpGrpcExporterConfig
    from driftline.exporters.otlp_http.exporter import OtlpHttpExporterConfig

    grpc_config = OtlpGrpcExporterConfig(endpoint="collector:4317")
    grpc_config.tls.insecure_skip_verify = True
    assert grpc_config.validate() == [
        "tls::insecure_skip_verify: not supported by the otlp (gRPC) exporter; give "
        "tls::ca_file, or use otlphttp"]
    http_config = OtlpHttpExporterConfig(endpoint="https://collector:4318")
    http_config.tls.insecure_skip_verify = True
    assert http_config.validate() == []
