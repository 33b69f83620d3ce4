"""The ``memory_limiter`` processor: config rules, limits, refusing and accepting again.

Unit tests drive the limiter with an injected memory-reading function: a pure seam that
replaces "how much memory is in use" by a number the test sets (no real part is mocked;
allocating hundreds of MiB in the test process to move RSS would be slow and flaky). The
integration test runs a real collector subprocess whose limit sits just above its own idle
RSS and makes it cross the limit with a large request held half-sent.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics import export as sdk_export
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from driftline.exporters.file.exporter import read_metrics
from driftline.processor.component import ComponentError, DataRefusedError
from driftline.processor.memory_limiter.processor import (
    MIB,
    Factory,
    Limits,
    MemoryLimiter,
    MemoryLimiterConfig,
    limits_of,
    read_rss_bytes,
    total_memory_bytes,
)
from driftline.processor.service.config import ConfigError, parse_config
from tests._collector import LOOPBACK, PROTOCOL_GRPC, PROTOCOL_HTTP, running_collector
from tests._consumers import Recorder

POLL_S = 0.05
WAIT_S = 30.0
EXPORT_TIMEOUT_S = 10.0




class Memory:
    """The injected reading: the "memory in use" the limiter sees, set by the test."""

    def __init__(self, used_bytes: int, freed_by_release: int = 0) -> None:
        self.used_bytes = used_bytes
        self.freed_by_release = freed_by_release
        self.releases = 0

    def read(self) -> int:
        return self.used_bytes

    def release(self) -> None:
        self.releases += 1
        self.used_bytes -= self.freed_by_release


def points(*values: float) -> list[ResourceMetrics]:
    metric = Metric(name="m", gauge=Gauge(data_points=[NumberDataPoint(as_double=v)
                                                       for v in values]))
    return [ResourceMetrics(scope_metrics=[ScopeMetrics(metrics=[metric])])]


def limiter(memory: Memory, recorder: Recorder, **settings: Any) -> MemoryLimiter:
    config = MemoryLimiterConfig(**{"check_interval": "1h", **settings})
    assert config.validate() == []
    return MemoryLimiter(config, recorder, read_memory=memory.read,
                         total_memory=lambda: 1000 * MIB, release=memory.release)


# --- config --------------------------------------------------------------------------------


def _problems(settings: dict[str, Any]) -> list[str]:
    data = {"receivers": {"otlp": {"protocols": {"http": {}}}},
            "processors": {"memory_limiter": settings},
            "exporters": {"file": {"path": "out.jsonl"}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"],
                                                 "processors": ["memory_limiter"],
                                                 "exporters": ["file"]}}}}
    with pytest.raises(ConfigError) as err:
        parse_config(data, environ={})
    return err.value.problems


def test_check_interval_is_required() -> None:
    assert _problems({"limit_mib": 100}) == [
        "processors::memory_limiter::check_interval: required: how often to measure the "
        "memory in use, e.g. 1s"]


def test_negative_check_interval_is_named() -> None:
    assert _problems({"check_interval": "-1s", "limit_mib": 100}) == [
        "processors::memory_limiter::check_interval: must be a positive duration, got '-1s'"]


def test_a_limit_is_required() -> None:
    assert _problems({"check_interval": "1s"}) == [
        "processors::memory_limiter::limit_mib: required: set limit_mib (MiB) or "
        "limit_percentage (% of the memory available to the process)"]


def test_spike_must_stay_below_the_limit() -> None:
    assert _problems({"check_interval": "1s", "limit_mib": 100, "spike_limit_mib": 100}) == [
        "processors::memory_limiter::spike_limit_mib: must be less than limit_mib (100), "
        "got 100"]
    assert _problems({"check_interval": "1s", "limit_percentage": 50,
                      "spike_limit_percentage": 60}) == [
        "processors::memory_limiter::spike_limit_percentage: must be less than "
        "limit_percentage (50), got 60"]


def test_percentages_are_bounded() -> None:
    assert _problems({"check_interval": "1s", "limit_percentage": 120}) == [
        "processors::memory_limiter::limit_percentage: must be an integer of 0 or more up "
        "to 100, got 120"]


def test_a_valid_config_loads_for_every_signal() -> None:
    pipeline = {"receivers": ["otlp"], "processors": ["memory_limiter"], "exporters": ["file"]}
    data = {"receivers": {"otlp": {"protocols": {"http": {}}}},
            "processors": {"memory_limiter": {"check_interval": "1s", "limit_mib": 512}},
            "exporters": {"file": {"path": "out.jsonl"}},
            "service": {"pipelines": {"metrics": pipeline, "traces": pipeline,
                                      "logs": pipeline}}}
    config = parse_config(data, environ={})
    [limiter_config] = config.processors.values()
    assert limiter_config == MemoryLimiterConfig(check_interval="1s", limit_mib=512)
    assert limiter_config.check_interval_s == 1.0


# --- limits --------------------------------------------------------------------------------


def test_spike_defaults_to_a_fifth_of_the_limit() -> None:
    config = MemoryLimiterConfig(check_interval="1s", limit_mib=500)
    assert limits_of(config, lambda: 0) == Limits(500 * MIB, 400 * MIB)
    config = MemoryLimiterConfig(check_interval="1s", limit_mib=500, spike_limit_mib=50)
    assert limits_of(config, lambda: 0) == Limits(500 * MIB, 450 * MIB)


def test_percentages_are_of_the_total_memory_and_limit_mib_wins() -> None:
    config = MemoryLimiterConfig(check_interval="1s", limit_percentage=50,
                                 spike_limit_percentage=10)
    assert limits_of(config, lambda: 2000 * MIB) == Limits(1000 * MIB, 800 * MIB)
    both = MemoryLimiterConfig(check_interval="1s", limit_mib=300, limit_percentage=50)
    assert limits_of(both, lambda: 2000 * MIB).hard_bytes == 300 * MIB


def test_rss_and_total_memory_come_from_proc() -> None:
    status = Path("/proc/self/status").read_text()
    [vm_rss_kib] = [int(line.split()[1]) for line in status.splitlines()
                    if line.startswith("VmRSS:")]
    # Two readings of the same resident set a moment apart; allow for a little allocation.
    assert abs(read_rss_bytes() - vm_rss_kib * 1024) < 8 * MIB
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    [mem_total_kib] = [int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:")]
    assert 0 < total_memory_bytes() <= mem_total_kib * 1024


# --- refusing and accepting ----------------------------------------------------------------


def test_refuses_above_the_soft_limit_and_accepts_again_below() -> None:
    memory, recorder = Memory(100 * MIB), Recorder()
    ml = limiter(memory, recorder, limit_mib=500, spike_limit_mib=100)  # soft: 400 MiB
    ml.start()
    try:
        ml.consume_metrics(points(1.0, 2.0))
        memory.used_bytes = 401 * MIB
        ml.check()
        with pytest.raises(DataRefusedError, match="401 MiB in use is above the soft limit "
                                                   "of 400 MiB; retry later"):
            ml.consume_metrics(points(3.0, 4.0, 5.0))
        with pytest.raises(DataRefusedError):
            ml.consume_traces([])
        assert memory.releases == 1  # memory is handed back while refusing
        stats = ml.stats()
        assert (stats.refused_metric_points, stats.accepted_metric_points,
                stats.current_refusing, stats.current_memory_bytes) == (3, 2, 1, 401 * MIB)
        memory.used_bytes = 400 * MIB  # at the soft limit is not above it
        ml.check()
        ml.consume_metrics(points(6.0))
    finally:
        ml.shutdown()
    assert [b[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double
            for b in recorder.metrics] == [1.0, 6.0]
    stats = ml.stats()
    assert (stats.accepted_metric_points, stats.current_refusing, stats.memory_checks,
            stats.hard_limit_bytes, stats.soft_limit_bytes) == (3, 0, 3, 500 * MIB, 400 * MIB)


def test_memory_freed_by_the_forced_collection_is_seen_by_the_same_check() -> None:
    memory, recorder = Memory(450 * MIB, freed_by_release=100 * MIB), Recorder()
    ml = limiter(memory, recorder, limit_mib=500, spike_limit_mib=100)  # soft: 400 MiB
    ml.start()
    try:
        ml.check()  # 450 MiB, then 350 MiB once the collection handed 100 MiB back
        ml.consume_metrics(points(1.0))
        stats = ml.stats()
        assert (memory.releases, stats.current_refusing, stats.current_memory_bytes,
                stats.forced_collections) == (1, 0, 350 * MIB, 1)
    finally:
        ml.shutdown()
    assert len(recorder.metrics) == 1


def test_counts_refused_spans_and_log_records() -> None:
    from tests.processor.batch.test_batch import logs_resource, spans_resource

    memory, recorder = Memory(900 * MIB), Recorder()
    ml = limiter(memory, recorder, limit_mib=500)
    ml.start()
    with pytest.raises(DataRefusedError):
        ml.consume_traces([spans_resource(["a", "b"])])
    with pytest.raises(DataRefusedError):
        ml.consume_logs([logs_resource(["x", "y", "z"])])
    ml.shutdown()
    stats = ml.stats()
    assert (stats.refused_spans, stats.refused_log_records) == (2, 3)
    assert recorder.traces == recorder.logs == []


def test_a_failed_measurement_keeps_the_state() -> None:
    memory, recorder = Memory(900 * MIB), Recorder()
    ml = limiter(memory, recorder, limit_mib=500)
    ml.start()

    def broken() -> int:
        raise OSError("no /proc here")

    ml._read_memory = broken  # the seam, swapped for a reading that fails
    ml.check()
    with pytest.raises(DataRefusedError):
        ml.consume_metrics(points(1.0))
    assert ml.stats().memory_check_failures == 1
    ml.shutdown()


def test_percentage_without_total_memory_fails_at_start() -> None:
    def unreadable() -> int:
        raise OSError("no /proc/meminfo")

    config = MemoryLimiterConfig(check_interval="1s", limit_percentage=50)
    ml = MemoryLimiter(config, Recorder(), total_memory=unreadable)
    with pytest.raises(ComponentError, match="cannot read the total memory for "
                                             "limit_percentage: no /proc/meminfo; set "
                                             "limit_mib instead"):
        ml.start()


def test_factory_rejects_an_invalid_config() -> None:
    with pytest.raises(ComponentError, match="check_interval: required"):
        Factory().create(MemoryLimiterConfig(limit_mib=10), Recorder())


# --- a real collector under memory pressure ------------------------------------------------

HEADROOM_MIB = 60  # hard limit above the idle RSS
SPIKE_MIB = 20  # so the soft limit is 40 MiB above idle
HELD_BODY_BYTES = 120 * MIB  # announced; the server allocates it and fills it as it arrives
SENT_BYTES = 100 * MIB
MAX_BODY_BYTES = 256 * MIB


def limiter_config(output: Path, limit_mib: int, spike_limit_mib: int) -> dict[str, Any]:
    pipeline = {"receivers": ["otlp"], "processors": ["memory_limiter"], "exporters": ["file"]}
    return {
        "receivers": {"otlp": {"protocols": {
            "http": {"endpoint": f"{LOOPBACK}:0", "max_request_body_size": MAX_BODY_BYTES},
            "grpc": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"memory_limiter": {"check_interval": "100ms", "limit_mib": limit_mib,
                                          "spike_limit_mib": spike_limit_mib}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"pipelines": {"metrics": pipeline}},
    }


def vm_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def request_body(value: float) -> bytes:
    return metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=points(value)) \
        .SerializeToString()


def post(base: str, value: float) -> tuple[int, bytes]:
    request = urllib.request.Request(f"{base}/v1/metrics", data=request_body(value),
                                     headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(request, timeout=EXPORT_TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def post_until(base: str, status: int, first_value: float) -> dict[float, int]:
    """POST one point at a time until one is answered ``status``; each value's answer."""
    deadline = time.monotonic() + WAIT_S
    answers: dict[float, int] = {}
    value = first_value
    while time.monotonic() < deadline:
        answers[value], _ = post(base, value)
        if answers[value] == status:
            return answers
        value += 1
        time.sleep(POLL_S)
    raise AssertionError(f"no answer {status} within {WAIT_S}s")


def with_status(answers: dict[float, int], status: int) -> list[float]:
    return [value for value, got in answers.items() if got == status]


@contextlib.contextmanager
def held_request(endpoint: str) -> Iterator[None]:
    """A big POST whose body is sent only in part: the server holds the bytes received."""
    host, port = endpoint.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=EXPORT_TIMEOUT_S)
    connection.putrequest("POST", "/v1/metrics")
    connection.putheader("Content-Type", "application/x-protobuf")
    connection.putheader("Content-Length", str(HELD_BODY_BYTES))
    connection.endheaders()
    chunk = b"\x00" * MIB
    for _ in range(SENT_BYTES // MIB):
        connection.send(chunk)
    try:
        yield
    finally:
        assert connection.sock is not None
        connection.sock.shutdown(socket.SHUT_RDWR)  # the rest never comes: the server drops it
        connection.close()


def sdk_point(value: float) -> sdk_export.MetricsData:
    point = sdk_export.NumberDataPoint({}, 0, time.time_ns(), value)
    metric = sdk_export.Metric("m", "", "1", sdk_export.Gauge([point]))
    scope = sdk_export.ScopeMetrics(InstrumentationScope("memory-test"), [metric], "")
    return sdk_export.MetricsData([sdk_export.ResourceMetrics(Resource.create({}), [scope],
                                                              "")])


def values_in(output: Path) -> list[float]:
    return [p.as_double for request in read_metrics(output) for rm in request.resource_metrics
            for sm in rm.scope_metrics for m in sm.metrics if m.name == "m"
            for p in m.gauge.data_points]


@pytest.mark.integration
def test_collector_refuses_over_its_limit_stays_up_and_recovers(tmp_path: Path) -> None:
    # 1. The idle RSS of the same collector, with a limit it never reaches.
    idle_dir = tmp_path / "idle"
    idle_dir.mkdir()
    with running_collector(limiter_config(idle_dir / "out.jsonl", 1_000_000, 0), idle_dir,
                           (PROTOCOL_HTTP, PROTOCOL_GRPC)) as idle:
        assert post(f"http://{idle.endpoints[PROTOCOL_HTTP]}", 0.0)[0] == 200  # warm up
        idle_mib = vm_rss_mib(idle.process.pid)

    # 2. The same collector with its soft limit 40 MiB above that.
    output = tmp_path / "out.jsonl"
    limit_mib = int(idle_mib) + HEADROOM_MIB
    config = limiter_config(output, limit_mib, SPIKE_MIB)
    with running_collector(config, tmp_path, (PROTOCOL_HTTP, PROTOCOL_GRPC)) as collector:
        base = f"http://{collector.endpoints[PROTOCOL_HTTP]}"
        assert post(base, 1.0)[0] == 200

        with held_request(collector.endpoints[PROTOCOL_HTTP]):
            # Until the next check sees the held bytes, requests are still accepted.
            before = post_until(base, 429, 100.0)
            status, body = post(base, 200.0)
            assert status == 429
            answer = status_pb2.Status.FromString(body)
            assert answer.code == code_pb2.RESOURCE_EXHAUSTED
            assert "memory_limiter" in answer.message
            assert "above the soft limit" in answer.message

            with grpc.insecure_channel(collector.endpoints[PROTOCOL_GRPC]) as channel:
                stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
                with pytest.raises(grpc.RpcError) as err:
                    stub.Export(metrics_service_pb2.ExportMetricsServiceRequest(
                        resource_metrics=points(300.0)), timeout=EXPORT_TIMEOUT_S)
                assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert collector.process.poll() is None

        # The held bytes are dropped with the connection; memory goes down, data flows.
        after = post_until(base, 200, 1000.0)
        exporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=EXPORT_TIMEOUT_S)
        assert exporter.export(sdk_point(5000.0)) == sdk_export.MetricExportResult.SUCCESS
        exporter.shutdown()
        assert collector.process.poll() is None

    assert collector.returncode == 0, collector.stderr()
    log = collector.stderr()
    assert "refusing data until it drops" in log
    assert "again; accepting data" in log
    # Exactly the points answered 200 were stored; none answered 429 or RESOURCE_EXHAUSTED.
    assert values_in(output) == [1.0, *with_status(before, 200), *with_status(after, 200),
                                 5000.0]
    assert with_status(after, 200) == [max(after)]
    assert set(before.values()) | set(after.values()) == {200, 429}
