"""The collector's config rules and standard keys, with the values they give (the
compatibility table in docs/config.md checks accept/refuse; these check what is done).

Loader: repeated sources merged in order, ``--set``, ``${file:...}``, env values holding
YAML, bare-number durations. Components: the ``otlphttp`` exporter's ``compression`` and
``encoding`` on the wire (a capturing HTTP server decodes with zlib and cramjam), the OTLP
receiver's ``keepalive`` and ``max_concurrent_streams`` as gRPC server options, serving.
"""

from __future__ import annotations

import gzip
import json
import signal
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cramjam
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics.export import MetricExportResult

from driftline import cli
from driftline.exporters.file.exporter import read_metrics
from driftline.exporters.otlp_http.exporter import Factory as OtlpHttpFactory
from driftline.processor.component import otlp_json as _otlp_json
from driftline.processor.otlp_receiver.receiver import OtlpReceiver
from driftline.processor.service.config import ConfigError, load_config, parse_config
from driftline.processor.service.pipeline import build
from tests._collector import (
    LOOPBACK,
    PROTOCOL_GRPC,
    PROTOCOL_HTTP,
    STOP_TIMEOUT_S,
    post_metrics,
    spawn_cli,
)
from tests._consumers import Recorder
from tests.processor.otlp_receiver.test_otlp_http_receiver import sdk_metrics

DATA = Path(__file__).parent / "testdata" / "compat"
BASE = DATA / "base_driftline.yaml"
CAPTURE_TIMEOUT_S = 10.0

DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "zstd": lambda body: bytes(cramjam.zstd.decompress(body)),
    "zlib": zlib.decompress,
    "deflate": zlib.decompress,
    "snappy": lambda body: bytes(cramjam.snappy.decompress_raw(body)),
    "lz4": lambda body: bytes(cramjam.lz4.decompress(body)),
}


# --- the loader ---------------------------------------------------------------------------


def test_later_sources_merge_maps_and_replace_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DATA)
    config = load_config([BASE, "file:timeout.yaml", "later_list.yaml",
                          "yaml:processors::batch::send_batch_size: 77"],
                         sets=["processors::memory_limiter::limit_mib=300"], environ={})

    [pipeline] = config.pipelines.values()
    assert [str(p) for p in pipeline.processors] == ["batch"]  # replaced, not appended
    batch = next(c for cid, c in config.processors.items() if cid.type == "batch")
    limiter = next(c for cid, c in config.processors.items() if cid.type == "memory_limiter")
    assert (batch.timeout_s, batch.send_batch_size) == (3.0, 77)
    assert (limiter.limit_mib, limiter.check_interval_s) == (300, 1.0)  # base's kept


def test_set_value_is_yaml_and_later_set_wins() -> None:
    config = load_config(BASE, sets=["processors::batch::metadata_keys=[tenant, region]",
                                     "processors::batch::timeout=1s",
                                     "processors::batch::timeout=250ms"], environ={})
    batch = next(c for cid, c in config.processors.items() if cid.type == "batch")
    assert batch.metadata_keys == ("tenant", "region")
    assert batch.timeout_s == 0.25
    assert any("processors::batch::metadata_keys" in w for w in config.warnings)


def test_set_without_equals_says_how_to_write_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(BASE, sets=["processors::batch::timeout"], environ={})
    assert caught.value.problems == ["--set 'processors::batch::timeout': write --set "
                                     "key::path=value, e.g. --set processors::batch::timeout=2s"]


def test_env_value_holding_yaml_and_file_reference_give_their_values(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(DATA)
    config = load_config([BASE, "yaml:processors::batch::metadata_keys: ${KEYS}",
                          "yaml:processors::batch::timeout: ${file:timeout.txt}"],
                         environ={"KEYS": "[tenant, region]"})
    batch = next(c for cid, c in config.processors.items() if cid.type == "batch")
    assert (batch.metadata_keys, batch.timeout_s) == (("tenant", "region"), 4.0)


@pytest.mark.parametrize(("value", "accepted"), [(2, False), ("2", False), (2.5, False),
                                                 (0, True), ("2s", True)])
def test_bare_number_durations_are_refused_saying_why(value: Any, accepted: bool) -> None:
    data = {"receivers": {"otlp": None},
            "processors": {"batch": {"timeout": value}},
            "exporters": {"file": {"path": "out.jsonl"}},
            "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                                  "processors": ["batch"],
                                                  "exporters": ["file"]}}}}
    if accepted:
        parse_config(data, environ={})
        return
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ={})
    [problem] = caught.value.problems
    number = float(value) if "." in str(value) else int(value)
    assert problem == (f"processors::batch::timeout: a bare number is not a duration: the "
                       f"collector reads {number!r} as {number!r} nanoseconds; write the unit, "
                       f"e.g. '{number!r}s' for seconds (or ms, m, h)")


def test_non_empty_connectors_are_refused_naming_the_connector() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config([BASE, "yaml:connectors: {forward/x: {}}"], environ={})
    assert caught.value.problems[0].startswith(
        "connectors::forward/x: unknown connector type 'forward'; Driftline has no connectors")


# --- the otlphttp exporter on the wire ----------------------------------------------------


@contextmanager
def capturing_backend() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """An HTTP server keeping each request's headers and raw body, answering 200 empty."""
    seen: list[tuple[dict[str, str], bytes]] = []
    arrived = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
            arrived.set()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def sdk_request() -> ExportMetricsServiceRequest:
    """The SDK's test metrics (a row counter, an exponential histogram) as one request."""
    return encode_metrics(sdk_metrics(1_700_000_000_000_000_000))


def _forward(url: str, settings: dict[str, Any]) -> None:
    config = parse_config({
        "receivers": {"otlp": None},
        "exporters": {"otlphttp": {"endpoint": url, **settings}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                              "exporters": ["otlphttp"]}}}}, environ={})
    [exporter_config] = config.exporters.values()
    exporter = OtlpHttpFactory().create(exporter_config)
    exporter.start()
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="wire.rows")
    metric.sum.data_points.add(as_int=42)
    exporter.consume_metrics(list(request.resource_metrics))
    exporter.shutdown()  # drains the queue


@pytest.mark.parametrize("compression", sorted(DECODERS))
def test_otlphttp_exporter_sends_each_collector_compression(compression: str) -> None:
    with capturing_backend() as (url, seen):
        _forward(url, {"compression": compression})

    [(headers, body)] = seen
    assert headers["content-encoding"] == compression
    assert headers["content-type"] == "application/x-protobuf"
    request = ExportMetricsServiceRequest.FromString(DECODERS[compression](body))
    metric = request.resource_metrics[0].scope_metrics[0].metrics[0]
    assert (metric.name, metric.sum.data_points[0].as_int) == ("wire.rows", 42)


def test_otlphttp_exporter_encoding_json_sends_otlp_json() -> None:
    with capturing_backend() as (url, seen):
        _forward(url, {"encoding": "json", "compression": "none"})

    [(headers, body)] = seen
    assert headers["content-type"] == "application/json"
    assert "content-encoding" not in headers
    decoded = json.loads(body)
    assert decoded["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["name"] == "wire.rows"
    request = _otlp_json.decode_dict(decoded, ExportMetricsServiceRequest)
    assert request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].as_int \
        == 42


# --- the OTLP receiver's gRPC keys --------------------------------------------------------


def test_grpc_keepalive_and_streams_become_server_options_and_serve() -> None:
    config = load_config([BASE, "yaml:receivers::otlp::protocols::grpc: {endpoint: "
                          "'127.0.0.1:0', max_concurrent_streams: 16, keepalive: "
                          "{server_parameters: {time: 30s, timeout: 5s, max_connection_idle: "
                          "1m}, enforcement_policy: {min_time: 10s, permit_without_stream: "
                          "true}}}"], environ={})
    [receiver_config] = config.receivers.values()
    grpc_config = receiver_config.protocols.grpc
    assert dict(grpc_config.server_options()) == {
        "grpc.max_receive_message_length": 4 * 1024 * 1024,
        "grpc.max_concurrent_streams": 16,
        "grpc.max_connection_idle_ms": 60_000,
        "grpc.keepalive_time_ms": 30_000,
        "grpc.keepalive_timeout_ms": 5_000,
        "grpc.keepalive_permit_without_calls": 1,
        "grpc.http2.min_ping_interval_without_data_ms": 10_000,
    }
    recorder = Recorder(("metrics",))
    receiver = OtlpReceiver(receiver_config, recorder)
    receiver.start()
    try:
        exporter = OTLPMetricExporter(endpoint=f"http://{receiver.endpoint}", insecure=True)
        assert exporter.export(sdk_metrics(1_700_000_000_000_000_000)) \
            is MetricExportResult.SUCCESS
        exporter.shutdown()
    finally:
        receiver.shutdown()
    names = [m.name for batch in recorder.metrics for rm in batch for sm in rm.scope_metrics
             for m in sm.metrics]
    assert "ml.predict.rows" in names


# --- driftline collector with several sources ---------------------------------------------


@pytest.mark.integration
def test_collector_cli_merges_configs_and_sets_and_logs_warnings(tmp_path: Path) -> None:
    output = tmp_path / "merged.jsonl"
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"file": {"path": str(tmp_path / "not-this.jsonl")}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}},
                    "telemetry": {"metrics": {"level": "none"}}},
    }))
    args = ["--config", "base.yaml",
            "--config", f"yaml:receivers::otlp::protocols::http::endpoint: {LOOPBACK}:0",
            "--config", "yaml:processors::batch::metadata_keys: [tenant]",
            "--set", f"exporters::file::path={output}",
            "--set", "exporters::file::flush_interval=0",
            "--set", "service::pipelines::metrics::processors=[batch]"]
    collector = spawn_cli(args, tmp_path)
    try:
        collector.wait_for((PROTOCOL_GRPC, PROTOCOL_HTTP))
        post_metrics(collector.endpoints[PROTOCOL_HTTP], sdk_request().resource_metrics)
    finally:
        collector.process.send_signal(signal.SIGTERM)
        returncode = collector.process.wait(STOP_TIMEOUT_S)
    stderr = collector.stderr()

    assert returncode == 0, stderr
    names = [m.name for request in read_metrics(output) for rm in request.resource_metrics
             for sm in rm.scope_metrics for m in sm.metrics]
    assert "ml.predict.rows" in names
    assert not (tmp_path / "not-this.jsonl").exists()
    assert "processors::batch::metadata_keys: accepted as the collector reads it, but not " \
           "used by Driftline" in stderr


def test_validate_places_each_problem_where_the_merge_took_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text(BASE.read_text())
    (tmp_path / "site.yaml").write_text("# site overrides\nprocessors:\n  batch:\n"
                                        "    timeout: soon\n")

    status = cli.main(["validate", "base.yaml", "--config", "site.yaml",
                       "--config", "yaml:processors::memory_limiter::check_interval: 5",
                       "--set", "processors::batch::send_batch_size=lots"])
    err = capsys.readouterr().err.splitlines()

    assert status == cli.EXIT_INVALID_CONFIG
    assert len(err) == 3, err
    assert any(line.startswith("site.yaml:4: processors::batch::timeout: must be a duration")
               for line in err), err
    assert ("--set 'processors::batch::send_batch_size=lots': "
            "processors::batch::send_batch_size: must be an integer, got 'lots'") in err
    assert any(line.startswith("'yaml:processors::memory_limiter::check_interval: 5': "
                               "processors::memory_limiter::check_interval: a bare number")
               for line in err), err


def test_env_yaml_list_stays_text_for_a_string_setting() -> None:
    config = load_config([BASE, "yaml:exporters::otlphttp::headers::x-tags: ${env:TAGS}",
                          "yaml:processors::batch::metadata_keys: ${env:TAGS}"],
                         environ={"TAGS": "[a, b]"})
    [exporter] = config.exporters.values()
    batch = next(c for cid, c in config.processors.items() if cid.type == "batch")
    assert exporter.headers == {"x-tags": "[a, b]"}
    assert batch.metadata_keys == ("a", "b")


def test_telemetry_resource_sets_the_self_telemetry_resource(tmp_path: Path) -> None:
    output = tmp_path / "own.jsonl"
    config = parse_config({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"telemetry": {"metrics": {"level": "basic", "interval": "1h"},
                                  "resource": {"deployment.environment.name": "prod",
                                               "service.name": None, "shard": 3}},
                    "pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }, environ={})
    assert config.warnings == ()
    pipelines = build(config)
    pipelines.start()
    pipelines.shutdown()  # one final collection

    own = [rm for request in read_metrics(output) for rm in request.resource_metrics]
    assert own, "no self-telemetry was written"
    assert {tuple(sorted((kv.key, kv.value.string_value) for kv in rm.resource.attributes))
            for rm in own} == {(("deployment.environment.name", "prod"), ("shard", "3"))}


@pytest.mark.integration
def test_logs_encoding_json_makes_every_log_line_a_json_object(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"file": {"path": str(tmp_path / "out.jsonl")}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}},
                    "telemetry": {"metrics": {"level": "none"}}},
    }))
    collector = spawn_cli(["--config", "base.yaml",
                           "--set", "service::telemetry::logs::encoding=json",
                           "--set", "service::telemetry::logs::development=true"], tmp_path)
    try:
        collector.wait_for((PROTOCOL_HTTP,))
    finally:
        collector.process.send_signal(signal.SIGTERM)
        returncode = collector.process.wait(STOP_TIMEOUT_S)

    lines = [json.loads(line) for line in collector.stderr().splitlines()]
    assert returncode == 0
    assert {tuple(sorted(line)) for line in lines} == {("level", "logger", "msg", "ts")}
    assert any(line["msg"].startswith("driftline collector running") for line in lines)
    assert any(line["level"] == "warning" and line["msg"].startswith(
        "service::telemetry::logs::development: accepted as the collector reads it")
        for line in lines)


def test_validate_without_a_config_says_how_to_give_one(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["validate"]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err == ("driftline validate: give a config: driftline validate "
                                       "FILE or --config FILE\n")
