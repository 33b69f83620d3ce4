"""The ``batch`` processor: config rules, counting, cutting, and when batches leave.

The next consumer here is a list-keeping consumer (the role the SDK's in-memory exporters
play): it records exactly what the processor hands on, which the assertions compare.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Gauge,
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

from driftline.processor.batch.processor import (
    BatchConfig,
    BatchProcessor,
    Factory,
    item_count,
    split,
)
from driftline.processor.component import ComponentError
from driftline.processor.service.config import ConfigError, parse_config
from driftline.processor.service.pipeline import build
from tests._consumers import Recorder

WAIT_S = 10.0
POLL_S = 0.01




class Failing:
    def consume_metrics(self, batch: Any) -> None:
        raise ComponentError("downstream is broken")


def _resource(service: str) -> Resource:
    return Resource(attributes=[KeyValue(key="service.name",
                                         value=AnyValue(string_value=service))])


def gauge_resource(service: str, values: list[float], name: str = "g") -> ResourceMetrics:
    points = [NumberDataPoint(as_double=v, time_unix_nano=i + 1) for i, v in enumerate(values)]
    metric = Metric(name=name, unit="1", gauge=Gauge(data_points=points))
    return ResourceMetrics(resource=_resource(service), scope_metrics=[
        ScopeMetrics(scope=InstrumentationScope(name="test"), metrics=[metric])])


def values_of(batch: list[ResourceMetrics]) -> list[float]:
    return [p.as_double for rm in batch for sm in rm.scope_metrics for m in sm.metrics
            for p in m.gauge.data_points]


def spans_resource(names: list[str]) -> ResourceSpans:
    return ResourceSpans(resource=_resource("traced"), scope_spans=[
        ScopeSpans(scope=InstrumentationScope(name="a"), spans=[Span(name=n) for n in names])])


def logs_resource(bodies: list[str]) -> ResourceLogs:
    records = [LogRecord(body=AnyValue(string_value=b)) for b in bodies]
    return ResourceLogs(resource=_resource("logged"), scope_logs=[ScopeLogs(log_records=records)])


def processor(recorder: Any, **settings: Any) -> BatchProcessor:
    config = BatchConfig(**{"timeout": "60s", **settings})
    batcher = Factory().create(config, recorder)
    batcher.start()
    return batcher


def wait_until(condition: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(POLL_S)


# --- config --------------------------------------------------------------------------------


def _problems(settings: dict[str, Any]) -> list[str]:
    data = {"receivers": {"otlp": {"protocols": {"http": {}}}},
            "processors": {"batch": settings},
            "exporters": {"file": {"path": "out.jsonl"}},
            "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                                  "processors": ["batch"],
                                                  "exporters": ["file"]}}}}
    with pytest.raises(ConfigError) as err:
        parse_config(data, environ={})
    return err.value.problems


def test_defaults_are_the_collectors() -> None:
    config = Factory().default_config()
    assert (config.timeout_s, config.send_batch_size, config.send_batch_max_size) == \
        (0.2, 8192, 0)
    assert config.validate() == []
    assert Factory.SIGNALS == ("metrics", "traces", "logs")


def test_negative_timeout_is_named() -> None:
    assert _problems({"timeout": "-1s"}) == [
        "processors::batch::timeout: must be a duration of zero or more, got '-1s'"]


def test_unparsable_timeout_is_named() -> None:
    [problem] = _problems({"timeout": "soon"})
    assert problem.startswith("processors::batch::timeout: must be a duration such as")


def test_send_batch_size_must_be_positive() -> None:
    assert _problems({"send_batch_size": 0}) == [
        "processors::batch::send_batch_size: must be a positive number of items (data "
        "points, spans or log records), got 0"]


def test_max_size_below_size_is_named() -> None:
    assert _problems({"send_batch_size": 100, "send_batch_max_size": 10}) == [
        "processors::batch::send_batch_max_size: must be 0 (no limit) or at least "
        "send_batch_size (100), got 10"]


def test_max_size_negative_is_named() -> None:
    assert _problems({"send_batch_max_size": -1}) == [
        "processors::batch::send_batch_max_size: must be 0 (no limit) or a positive number "
        "of items, got -1"]


def test_the_registry_finds_batch_for_every_signal(tmp_path: Any) -> None:
    pipeline = {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["file"]}
    data = {"receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
            "processors": {"batch": {"timeout": "1s", "send_batch_size": 10}},
            "exporters": {"file": {"path": str(tmp_path / "out.jsonl")}},
            "service": {"pipelines": {"metrics": pipeline, "traces": pipeline,
                                      "logs": pipeline}}}
    config = parse_config(data, environ={})
    batch_configs = list(config.processors.values())
    assert batch_configs == [BatchConfig(timeout="1s", send_batch_size=10)]
    pipelines = build(config)
    created = [n.component for n in pipelines.nodes() if n.kind == "processor"]
    assert len(created) == 3 and all(isinstance(c, BatchProcessor) for c in created)


# --- counting and cutting ------------------------------------------------------------------


def test_counts_data_points_spans_and_log_records() -> None:
    histogram = Metric(name="h", histogram=Histogram(data_points=[HistogramDataPoint()] * 2))
    total = Metric(name="s", sum=Sum(data_points=[NumberDataPoint()] * 3))
    empty = Metric(name="e")
    rm = ResourceMetrics(scope_metrics=[ScopeMetrics(metrics=[histogram, total, empty])])
    assert item_count("metrics", [rm, gauge_resource("x", [1.0, 2.0])]) == 7
    assert item_count("traces", [spans_resource(["a", "b", "c"])]) == 3
    assert item_count("logs", [logs_resource(["x"]), logs_resource(["y", "z"])]) == 3


def test_split_cuts_inside_a_metric_and_keeps_descriptors() -> None:
    first = gauge_resource("one", [1.0, 2.0, 3.0])
    second = gauge_resource("two", [4.0, 5.0, 6.0, 7.0])
    head, rest = split("metrics", [first, second], 5)
    assert values_of(head) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert values_of(rest) == [6.0, 7.0]
    assert head[0] is first  # whole resources are passed on, not copied
    assert rest[0].resource == second.resource
    assert rest[0].scope_metrics[0].scope.name == "test"
    assert rest[0].scope_metrics[0].metrics[0].name == "g"
    assert values_of([second]) == [4.0, 5.0, 6.0, 7.0]  # the input is left as it was


def test_split_drops_metrics_left_without_points() -> None:
    rm = ResourceMetrics(resource=_resource("m"), scope_metrics=[ScopeMetrics(metrics=[
        Metric(name="a", gauge=Gauge(data_points=[NumberDataPoint(as_double=1.0)])),
        Metric(name="b", sum=Sum(data_points=[NumberDataPoint(as_int=2),
                                              NumberDataPoint(as_int=3)]))])])
    head, rest = split("metrics", [rm], 1)
    assert [m.name for m in head[0].scope_metrics[0].metrics] == ["a"]
    assert [m.name for m in rest[0].scope_metrics[0].metrics] == ["b"]
    assert [p.as_int for p in rest[0].scope_metrics[0].metrics[0].sum.data_points] == [2, 3]


def test_split_spans_and_log_records() -> None:
    head, rest = split("traces", [spans_resource(["a", "b", "c"])], 2)
    assert [s.name for s in head[0].scope_spans[0].spans] == ["a", "b"]
    assert [s.name for s in rest[0].scope_spans[0].spans] == ["c"]
    head, rest = split("logs", [logs_resource(["x"]), logs_resource(["y", "z"])], 2)
    assert [r.body.string_value for rl in head for sl in rl.scope_logs
            for r in sl.log_records] == ["x", "y"]
    assert [r.body.string_value for rl in rest for sl in rl.scope_logs
            for r in sl.log_records] == ["z"]


# --- when batches leave --------------------------------------------------------------------


def test_nothing_leaves_below_send_batch_size_then_one_merged_batch() -> None:
    recorder = Recorder()
    batcher = processor(recorder, send_batch_size=5)
    try:
        batcher.consume_metrics([gauge_resource("a", [1.0, 2.0, 3.0])])
        assert recorder.metrics == []
        assert batcher.stats().current_pending_items == 3
        batcher.consume_metrics([gauge_resource("b", [4.0, 5.0, 6.0])])
        assert len(recorder.metrics) == 1
        assert values_of(recorder.metrics[0]) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        stats = batcher.stats()
        assert (stats.size_trigger_sends, stats.items_sent,
                stats.current_pending_items) == (1, 6, 0)
    finally:
        batcher.shutdown()


def test_send_batch_max_size_cuts_and_shutdown_sends_the_rest() -> None:
    recorder = Recorder()
    batcher = processor(recorder, send_batch_size=4, send_batch_max_size=4)
    batcher.consume_metrics([gauge_resource("a", [float(v) for v in range(10)])])
    assert [values_of(b) for b in recorder.metrics] == [[0.0, 1.0, 2.0, 3.0],
                                                        [4.0, 5.0, 6.0, 7.0]]
    assert batcher.stats().current_pending_items == 2
    batcher.shutdown()
    assert values_of(recorder.metrics[2]) == [8.0, 9.0]
    stats = batcher.stats()
    assert (stats.size_trigger_sends, stats.shutdown_sends, stats.items_sent) == (2, 1, 10)


def test_timeout_sends_what_is_pending() -> None:
    recorder = Recorder()
    batcher = processor(recorder, timeout="50ms", send_batch_size=1000)
    try:
        batcher.consume_traces([spans_resource(["a", "b"])])
        wait_until(lambda: len(recorder.traces) == 1)
        assert [s.name for s in recorder.traces[0][0].scope_spans[0].spans] == ["a", "b"]
        assert batcher.stats().timeout_trigger_sends == 1
        batcher.consume_traces([spans_resource(["c"])])  # a new batch gets a new deadline
        wait_until(lambda: len(recorder.traces) == 2)
        assert batcher.stats().timeout_trigger_sends == 2
    finally:
        batcher.shutdown()


def test_timeout_zero_sends_each_batch_at_once() -> None:
    recorder = Recorder()
    batcher = processor(recorder, timeout=0, send_batch_size=100, send_batch_max_size=100)
    batcher.consume_logs([logs_resource(["x"])])
    assert len(recorder.logs) == 1
    batcher.shutdown()


def test_signals_are_batched_separately() -> None:
    recorder = Recorder()
    batcher = processor(recorder, send_batch_size=3)
    batcher.consume_logs([logs_resource(["x", "y"])])
    batcher.consume_traces([spans_resource(["a", "b"])])
    assert (recorder.logs, recorder.traces) == ([], [])
    batcher.consume_logs([logs_resource(["z"])])
    assert len(recorder.logs) == 1 and recorder.traces == []
    batcher.shutdown()
    assert [s.name for s in recorder.traces[0][0].scope_spans[0].spans] == ["a", "b"]


def test_shutdown_refuses_new_data_and_is_idempotent() -> None:
    recorder = Recorder()
    batcher = processor(recorder)
    batcher.consume_metrics([gauge_resource("a", [1.0])])
    batcher.shutdown()
    batcher.shutdown()
    assert [values_of(b) for b in recorder.metrics] == [[1.0]]
    with pytest.raises(ComponentError, match="shut down"):
        batcher.consume_metrics([gauge_resource("a", [2.0])])


def test_a_failing_next_consumer_is_counted_not_raised() -> None:
    batcher = processor(Failing(), send_batch_size=2)
    batcher.consume_metrics([gauge_resource("a", [1.0, 2.0, 3.0])])
    stats = batcher.stats()
    assert (stats.items_failed, stats.items_sent,
            stats.current_pending_items) == (3, 0, 0)
    batcher.shutdown()


def test_concurrent_senders_lose_nothing() -> None:
    recorder = Recorder()
    batcher = processor(recorder, send_batch_size=7, send_batch_max_size=7)
    threads = [threading.Thread(target=lambda t=t: [
        batcher.consume_metrics([gauge_resource(f"t{t}", [float(t * 1000 + i)])])
        for i in range(50)]) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.shutdown()
    sent = sorted(v for batch in recorder.metrics for v in values_of(batch))
    assert sent == sorted(float(t * 1000 + i) for t in range(4) for i in range(50))
    assert all(len(values_of(b)) == 7 for b in recorder.metrics[:-1])


def test_split_places_empty_metrics_and_scopes_once() -> None:
    full = Metric(name="a", gauge=Gauge(data_points=[NumberDataPoint(as_double=1.0),
                                                     NumberDataPoint(as_double=2.0)]))
    empty = Metric(name="empty")
    other = Metric(name="b", gauge=Gauge(data_points=[NumberDataPoint(as_double=3.0),
                                                      NumberDataPoint(as_double=4.0)]))
    rm = ResourceMetrics(scope_metrics=[
        ScopeMetrics(scope=InstrumentationScope(name="A"), metrics=[full, empty]),
        ScopeMetrics(scope=InstrumentationScope(name="B"), metrics=[other])])

    def layout(batch: list[ResourceMetrics]) -> list[tuple[str, list[str]]]:
        return [(sm.scope.name, [m.name for m in sm.metrics])
                for r in batch for sm in r.scope_metrics]

    head, rest = split("metrics", [rm], 3)
    assert layout(head) == [("A", ["a", "empty"]), ("B", ["b"])]
    assert layout(rest) == [("B", ["b"])]
    assert (values_of(head), values_of(rest)) == ([1.0, 2.0, 3.0], [4.0])
    head, rest = split("metrics", [rm], 1)
    assert layout(head) == [("A", ["a"])]
    assert layout(rest) == [("A", ["a", "empty"]), ("B", ["b"])]
    assert (values_of(head), values_of(rest)) == ([1.0], [2.0, 3.0, 4.0])
