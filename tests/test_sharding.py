"""Sharded processors (docs/scale.md): the invariant the load-balanced deployment rests on,
and what a processor does with a model whose traffic was split by a rebalance.

Three real processor processes: ``all`` gets every model, ``a`` and ``b`` disjoint halves,
from the official OpenTelemetry SDK (metrics with cumulative temporality, as the sharded
deployment delivers them, and ``ml.prediction`` / ``ml.ground_truth`` log records). A
fan-out exporter hands the very same export to ``all`` and, split by ``ml.model.name`` as
the collector's ``loadbalancing`` exporter routes it, to ``a`` and ``b``.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import Counter as SdkCounter
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from driftline import profile, semconv
from driftline.exporters.file.exporter import read_metrics
from tests._collector import LOOPBACK, PROTOCOL_HTTP, STOP_TIMEOUT_S, Collector, spawn

pytestmark = pytest.mark.integration

WINDOW_S = 2
WINDOW_NS = WINDOW_S * 1_000_000_000
WAIT_S = 60.0
START_TIMEOUT_S = 90.0
NEVER_MS = 3_600_000  # exports are flushed by hand
SHARDS = {"a": ("alpha", "gamma"), "b": ("beta", "delta")}
MODELS = tuple(m for models in SHARDS.values() for m in models)
# Models the rebalance test moves from a to b (the next one if a move crossed a window).
MOVED = ("epsilon", "zeta", "eta")
DRIFTING = {"beta", "gamma"}
ROWS = 300
LABELED = 40
FEATURES = {"age": (40.0, 10.0), "income": (50.0, 5.0)}
CUMULATIVE = {Histogram: AggregationTemporality.CUMULATIVE,
              SdkCounter: AggregationTemporality.CUMULATIVE}
# Gauges that are the processors' verdicts (self-telemetry differs per process).
VERDICT_SCOPES = (semconv.PROCESSOR_SCOPE, semconv.PERFORMANCE_SCOPE)


def _model(name: str) -> dict[str, str]:
    return {semconv.ML_MODEL_NAME: name, semconv.ML_MODEL_VERSION: "1",
            semconv.ML_MODEL_FRAMEWORK: "sklearn", semconv.ML_OPERATION: "predict"}


def _config(workdir: Path, profiles: Path) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {
            "ml_drift": {"profiles": str(profiles), "window": f"{WINDOW_S}s", "grace": "0.5s",
                         "min_rows": 50},
            "ml_performance": {"store": {"path": str(workdir / "predictions.sqlite")},
                               "window": f"{WINDOW_S}s", "grace": "3s", "min_labels": 5}},
        "exporters": {"file": {"path": str(workdir / "metrics.jsonl"), "flush_interval": 0}},
        "service": {
            "telemetry": {"metrics": {"level": "basic", "interval": "1s"}},
            "pipelines": {
                "metrics": {"receivers": ["otlp"], "processors": ["ml_drift"],
                            "exporters": ["file"]},
                "logs": {"receivers": ["otlp"], "processors": ["ml_performance"],
                         "exporters": ["file"]}}},
    }


@pytest.fixture(scope="module")
def processors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Collector]]:
    """The processors ``all``, ``a`` and ``b``, started together."""
    profiles = tmp_path_factory.mktemp("profiles")
    rng = np.random.default_rng(5)
    for name in (*MODELS, *MOVED):
        reference = pd.DataFrame({f: rng.normal(mu, sd, 5000) for f, (mu, sd) in FEATURES.items()})
        profile.save(profile.capture(reference, model=name, version="1"),
                     profiles / f"{name}.json")
    running: dict[str, Collector] = {}
    try:
        for name in ("all", *SHARDS):
            workdir = tmp_path_factory.mktemp(f"processor_{name}")
            running[name] = spawn(_config(workdir, profiles), workdir)
        for collector in running.values():
            _wait_started(collector)
        yield running
    finally:
        for collector in running.values():
            collector.process.terminate()
        for collector in running.values():
            try:
                collector.process.wait(STOP_TIMEOUT_S)
            except Exception:
                collector.process.kill()
                collector.process.wait()


def _wait_started(collector: Collector) -> None:
    """``wait_for`` with room for three processes starting at once on a busy machine."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            collector.wait_for((PROTOCOL_HTTP,))
            return
        except AssertionError:
            if collector.process.poll() is not None or time.monotonic() > deadline:
                raise


def _url(collector: Collector, signal: str) -> str:
    return f"http://{collector.endpoints[PROTOCOL_HTTP]}/v1/{signal}"


def _only(data: MetricsData, models: Sequence[str]) -> MetricsData:
    """The points of ``models`` in ``data``: what the load balancer routes to one shard."""
    resources = []
    for rm in data.resource_metrics:
        scopes = []
        for sm in rm.scope_metrics:
            metrics = []
            for metric in sm.metrics:
                points = [p for p in metric.data.data_points
                          if p.attributes.get(semconv.ML_MODEL_NAME) in models]
                if points:
                    metrics.append(dataclasses.replace(
                        metric, data=dataclasses.replace(metric.data, data_points=points)))
            if metrics:
                scopes.append(dataclasses.replace(sm, metrics=metrics))
        if scopes:
            resources.append(dataclasses.replace(rm, scope_metrics=scopes))
    return MetricsData(resource_metrics=resources)


class FanOutMetrics(MetricExporter):
    """One SDK export to several processors: all of it, or only the models of a shard."""

    def __init__(self, routes: Sequence[tuple[OTLPMetricExporter, Sequence[str] | None]]
                 ) -> None:
        super().__init__(preferred_temporality=CUMULATIVE)
        self.routes = list(routes)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        results = [exporter.export(metrics_data if models is None
                                   else _only(metrics_data, models))
                   for exporter, models in self.routes]
        ok = all(r is MetricExportResult.SUCCESS for r in results)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        for exporter, _ in self.routes:
            exporter.shutdown()


class FanOutLogs(LogRecordExporter):
    """Log records to several processors, by ``ml.model.name`` like the metrics."""

    def __init__(self, routes: Sequence[tuple[OTLPLogExporter, Sequence[str] | None]]) -> None:
        self.routes = list(routes)

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        for exporter, models in self.routes:
            mine = [r for r in batch if models is None
                    or r.log_record.attributes.get(semconv.ML_MODEL_NAME) in models]
            if mine and exporter.export(mine) is not LogRecordExportResult.SUCCESS:
                return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        return True

    def shutdown(self) -> None:
        for exporter, _ in self.routes:
            exporter.shutdown()


def _meter(exporter: MetricExporter) -> tuple[MeterProvider, Any, Any]:
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=NEVER_MS)
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({semconv.SERVICE_NAME: "api"}),
        views=[View(instrument_name=semconv.ML_FEATURE_VALUE,
                    aggregation=ExponentialBucketHistogramAggregation())])
    meter = provider.get_meter("app")
    return (provider, meter.create_histogram(semconv.ML_FEATURE_VALUE),
            meter.create_counter(semconv.ML_PREDICT_ROWS))


def _record(histogram: Any, rows: Any, name: str, rng: np.random.Generator) -> None:
    shift = 3.0 if name in DRIFTING else 0.0
    for feature, (mu, sd) in FEATURES.items():
        for value in rng.normal(mu + shift * sd, sd, ROWS):
            histogram.record(float(value), {**_model(name), semconv.ML_FEATURE_NAME: feature})
    rows.add(ROWS, _model(name))


def _records(name: str, start_ns: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``LABELED`` predictions of ``name`` and their labels, as Logger.emit arguments."""
    truth = rng.choice(["no", "yes"], LABELED)
    predicted = np.where(rng.random(LABELED) < 0.8, truth, "no")
    predictions = [{"event_name": semconv.EVENT_PREDICTION, "timestamp": start_ns + i * 1000,
                    "attributes": {**_model(name), semconv.ML_PREDICTION_ID: f"{name}-{i}",
                                   semconv.ML_PREDICTION_LABEL: str(predicted[i])}}
                   for i in range(LABELED)]
    labels = [{"event_name": semconv.EVENT_GROUND_TRUTH,
               "attributes": {semconv.ML_MODEL_NAME: name, semconv.ML_MODEL_VERSION: "1",
                              semconv.ML_PREDICTION_ID: f"{name}-{i}",
                              semconv.ML_GROUND_TRUTH_LABEL: str(truth[i])}}
              for i in range(LABELED)]
    return predictions + labels


def _gauges(collector: Collector, scopes: Sequence[str]) -> dict[tuple[Any, ...], float]:
    """The last value of every gauge of ``scopes`` in a processor's output file, by
    (scope, metric, attributes, window start, window end): ml_performance emits a window
    again as more labels arrive, at times that differ between processes."""
    found: dict[tuple[Any, ...], float] = {}
    path = Path(collector.process.args[-1]).parent / "metrics.jsonl"
    if not path.exists():
        return found
    for request in read_metrics(path):
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                if sm.scope.name not in scopes:
                    continue
                for metric in sm.metrics:
                    for p in metric.gauge.data_points:
                        attrs = tuple(sorted((kv.key, kv.value.string_value)
                                             for kv in p.attributes))
                        found[(sm.scope.name, metric.name, attrs, p.start_time_unix_nano,
                               p.time_unix_nano)] = (
                            p.as_double if p.WhichOneof("value") == "as_double" else p.as_int)
    return found


def _self_telemetry(collector: Collector, name: str) -> float:
    """The last value of a self-telemetry sum in a processor's output file."""
    path = Path(collector.process.args[-1]).parent / "metrics.jsonl"
    last = 0.0
    for request in read_metrics(path):
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        last = max([p.as_int or p.as_double for p in metric.sum.data_points],
                                   default=last)
    return last


def _sum_by_model(gauges: dict[tuple[Any, ...], float], name: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for (_, metric, attrs, _, _), value in gauges.items():
        if metric == name and semconv.ML_CLASS not in dict(attrs):  # per-class ones: parts
            total[dict(attrs)[semconv.ML_MODEL_NAME]] += value
    return total


def _wait_until_complete(collectors: Sequence[Collector], models: Sequence[str],
                         rows: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        gauges: dict[tuple[Any, ...], float] = {}
        for collector in collectors:
            gauges.update(_gauges(collector, VERDICT_SCOPES))
        if (all(_sum_by_model(gauges, semconv.ML_WINDOW_ROWS)[m] == rows for m in models)
                and all(_sum_by_model(gauges, semconv.ML_PERFORMANCE_LABELS)[m] == LABELED
                        for m in models)):
            return
        time.sleep(0.2)
    raise AssertionError("the processors did not judge every window in time:\n"
                         + "\n".join(c.stderr()[-2000:] for c in collectors))


def test_shards_produce_exactly_what_one_processor_produces(
        processors: dict[str, Collector]) -> None:
    everything, shards = processors["all"], [processors[s] for s in SHARDS]
    metric_routes = [(OTLPMetricExporter(endpoint=_url(everything, "metrics")), None)] + [
        (OTLPMetricExporter(endpoint=_url(processors[s], "metrics")), SHARDS[s])
        for s in SHARDS]
    provider, histogram, rows = _meter(FanOutMetrics(metric_routes))
    logs = LoggerProvider(resource=Resource.create({semconv.SERVICE_NAME: "api"}))
    logs.add_log_record_processor(BatchLogRecordProcessor(FanOutLogs(
        [(OTLPLogExporter(endpoint=_url(everything, "logs")), None)]
        + [(OTLPLogExporter(endpoint=_url(processors[s], "logs")), SHARDS[s])
           for s in SHARDS])))
    rng = np.random.default_rng(17)
    start_ns = time.time_ns() // WINDOW_NS * WINDOW_NS
    logger = logs.get_logger("app")
    for name in MODELS:
        for record in _records(name, start_ns, rng):
            logger.emit(**record)
    for _ in range(2):  # two cumulative exports: the second one counts only its delta
        for name in MODELS:
            _record(histogram, rows, name, rng)
        assert provider.force_flush()
    provider.shutdown()
    assert logs.force_flush()
    logs.shutdown()

    _wait_until_complete([everything], MODELS, 2 * ROWS)
    _wait_until_complete(shards, MODELS, 2 * ROWS)
    alone = _gauges(everything, VERDICT_SCOPES)
    sharded = _gauges(shards[0], VERDICT_SCOPES) | _gauges(shards[1], VERDICT_SCOPES)
    assert len(sharded) == len(_gauges(shards[0], VERDICT_SCOPES)) + len(
        _gauges(shards[1], VERDICT_SCOPES))  # disjoint: no model judged twice
    # The label lag measures when each process evaluated (wall clock), not what it found:
    # present for every window on both sides, compared exactly for everything else.
    lag = semconv.ML_PERFORMANCE_LABELS_LAG
    assert {k for k in sharded if k[1] == lag} == {k for k in alone if k[1] == lag} != set()
    assert {k: v for k, v in sharded.items() if k[1] != lag} == \
        {k: v for k, v in alone.items() if k[1] != lag}
    # The verdicts compared are real ones: drift where the data moved, performance for all.
    detected = {dict(attrs)[semconv.ML_MODEL_NAME]: value
                for (_, metric, attrs, _, _), value in alone.items()
                if metric == semconv.ML_DRIFT_DATASET_DETECTED}
    assert detected == {m: int(m in DRIFTING) for m in MODELS}
    accuracy = [key for key in alone if key[1] == semconv.ML_PERFORMANCE_ACCURACY]
    assert {dict(key[2])[semconv.ML_MODEL_NAME] for key in accuracy} == set(MODELS)
    for collector in processors.values():
        assert "split across processors" not in collector.stderr()


def _move(old: Collector, new: Collector, model: str) -> int | None:
    """Start ``model``'s cumulative streams on ``old``; two windows later send them to
    ``new`` (two exports just after a window boundary). Returns the window index of the
    exports to ``new``, or None when they crossed a window after all (a busy machine)."""
    to_old = OTLPMetricExporter(endpoint=_url(old, "metrics"))
    to_new = OTLPMetricExporter(endpoint=_url(new, "metrics"))
    fan_out = FanOutMetrics([(to_old, None)])
    provider, histogram, rows = _meter(fan_out)
    rng = np.random.default_rng(23)
    _record(histogram, rows, model, rng)
    assert provider.force_flush()
    first_index = time.time_ns() // WINDOW_NS
    while not (time.time_ns() // WINDOW_NS >= first_index + 2
               and time.time_ns() % WINDOW_NS < WINDOW_NS // 4):
        time.sleep(0.02)
    fan_out.routes = [(to_new, None)]
    moved_index = time.time_ns() // WINDOW_NS
    for _ in range(2):
        _record(histogram, rows, model, rng)
        assert provider.force_flush()
    crossed = time.time_ns() // WINDOW_NS != moved_index
    provider.shutdown()
    return None if crossed else moved_index


def test_a_model_moved_mid_window_is_reported_not_judged(
        processors: dict[str, Collector]) -> None:
    """A cumulative stream starts on ``a``; two windows later the load balancer sends it to
    ``b``. ``b`` must not count its whole cumulative value, nor judge the window."""
    old, new = processors["a"], processors["b"]
    for model in MOVED:
        moved_index = _move(old, new, model)
        if moved_index is not None:
            break
    else:
        pytest.fail(f"the exports to b crossed a window boundary {len(MOVED)} times")
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and (
            _sum_by_model(_gauges(new, VERDICT_SCOPES), semconv.ML_WINDOW_ROWS)[model] < ROWS
            or _self_telemetry(new, semconv.PROCESSOR_SPLIT_WINDOWS) < 1):
        time.sleep(0.2)
    window = [(*key, value) for key, value in _gauges(new, VERDICT_SCOPES).items()
              if dict(key[2]).get(semconv.ML_MODEL_NAME) == model]
    # b counted only what it received after its first point (the last export's delta) ...
    assert [(k[1], k[5]) for k in window if k[3] == moved_index * WINDOW_NS] == [
        (semconv.ML_WINDOW_ROWS, ROWS)], new.stderr()[-3000:]
    assert not [k for k in window if k[1].startswith("ml.drift.")]
    # ... judged nothing on it, and said so: a log line and two counters.
    assert f"model {model}: window starting at {moved_index * WINDOW_NS} ns is split " \
           "across processors" in new.stderr()
    assert _self_telemetry(new, semconv.PROCESSOR_SPLIT_WINDOWS) == 1
    # One per stream: a histogram per feature and the rows counter.
    attempts = MOVED.index(model) + 1
    assert _self_telemetry(new, semconv.PROCESSOR_SPLIT_STREAMS) == attempts * (
        len(FEATURES) + 1)
    # a, which saw the stream from its start, judged its own window of it.
    assert _sum_by_model(_gauges(old, VERDICT_SCOPES), semconv.ML_WINDOW_ROWS)[model] == ROWS
