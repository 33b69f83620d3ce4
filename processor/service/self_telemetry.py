"""The processor's own metrics, sent through its own metrics pipelines.

Like the collector's internal telemetry, but without a second exporter path: every
``interval`` a thread reads the ``stats()`` of each component that has one (a dataclass of
numbers) and turns each field into an OTLP metric ``driftline.processor.<field>``, handed to
the entry of every metrics pipeline, so operators find the processor in the same Prometheus
(or file, or OTLP backend) as the models it watches.

Naming rule (which fields are gauges): a field whose name starts with ``current_`` or
``last_``, or ends with one of ``GAUGE_SUFFIXES`` (``_size``, ``_queued``, ``_bytes``, ...), is
a level and becomes a gauge; every other field counts events since start and becomes a
cumulative monotonic sum. Booleans and non-numbers are not exported.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Metric,
    ResourceMetrics,
    ScopeMetrics,
)

from driftline import semconv
from driftline.processor.component.otlp_build import processor_resource
from driftline.processor.component.settings import (  # noqa: F401  (re-exported)
    DEFAULT_INTERVAL_S,
    DEFAULT_LEVEL,
    LEVEL_BASIC,
    LEVEL_DETAILED,
    LEVEL_NONE,
    LEVEL_NORMAL,
    LEVELS,
    TelemetrySettings,
)

_log = logging.getLogger(__name__)

# How long shutdown waits for a collection in progress to finish.
STOP_TIMEOUT_S = 5.0

GAUGE_PREFIXES = ("current_", "last_")
GAUGE_SUFFIXES = ("_size", "_queued", "_items_queued", "_bytes", "_capacity", "_limit")
# Stats fields of time spent, in nanoseconds; exported in seconds.
NANOSECONDS_SUFFIX = "_nanoseconds_total"
NS_PER_S = 1_000_000_000

_CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def is_gauge_field(name: str) -> bool:
    """Whether stats field ``name`` is a level (gauge) rather than a running count (sum)."""
    return name.startswith(GAUGE_PREFIXES) or name.endswith(GAUGE_SUFFIXES)


def metric_name(field_name: str) -> str:
    """The OTLP metric name of stats field ``field_name``: a ``*_nanoseconds_total`` field is
    sent in seconds (Prometheus' base unit) under its name without that suffix."""
    if field_name.endswith(NANOSECONDS_SUFFIX):
        field_name = field_name[: -len(NANOSECONDS_SUFFIX)]
    return f"{semconv.PROCESSOR_METRIC_PREFIX}{field_name}"


def metric_unit(field_name: str) -> str:
    """``s`` for time fields (``*_nanoseconds_total``); no unit for the rest, which count."""
    return semconv.UNIT_SECONDS if field_name.endswith(NANOSECONDS_SUFFIX) else ""


def metric_help(field_name: str) -> str:
    """HELP text of a stats field: what it counts, read from its name, and whether it is a
    running count or a level."""
    words = metric_name(field_name)[len(semconv.PROCESSOR_METRIC_PREFIX):].replace("_", " ")
    if field_name.endswith(NANOSECONDS_SUFFIX):
        return f"Driftline processor: seconds spent in {words}, since start"
    if is_gauge_field(field_name):
        return f"Driftline processor: {words} (current level)"
    return f"Driftline processor: {words}, counted since start"


def _sample_value(field_name: str, value: int | float) -> int | float:
    return value / NS_PER_S if field_name.endswith(NANOSECONDS_SUFFIX) else value


@dataclass(frozen=True, slots=True)
class StatsSource:
    """A component whose ``stats()`` is exported, and where it sits in the config.

    ``pipeline`` is set for processors (one instance per pipeline) and empty for receivers,
    exporters and extensions, which pipelines share.
    """

    kind: str
    id: str
    pipeline: str
    component: Any


def stats_sources(nodes: Sequence[Any]) -> list[StatsSource]:
    """The nodes (``kind``, ``id``, ``pipeline``, ``component``) that define ``stats()``."""
    return [StatsSource(node.kind, str(node.id), str(node.pipeline or ""), node.component)
            for node in nodes if callable(getattr(node.component, "stats", None))]


def _string(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _source_attributes(source: StatsSource) -> list[KeyValue]:
    attributes = [_string(semconv.DRIFTLINE_COMPONENT_KIND, source.kind),
                  _string(semconv.DRIFTLINE_COMPONENT_ID, source.id)]
    if source.pipeline:
        attributes.append(_string(semconv.DRIFTLINE_PIPELINE, source.pipeline))
    return attributes


def numeric_fields(stats: Any) -> list[tuple[str, int | float]]:
    """``(name, value)`` of every numeric field of the dataclass ``stats`` (not booleans)."""
    if not dataclasses.is_dataclass(stats) or isinstance(stats, type):
        raise TypeError(f"stats() must return a dataclass instance, got {type(stats).__name__}")
    found = []
    for item in dataclasses.fields(stats):
        value = getattr(stats, item.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        found.append((item.name, value))
    return found


Sample = tuple[StatsSource, Sequence[tuple[str, int | float]]]


def build_metrics(samples: Sequence[Sample], start_time_unix_nano: int,
                  time_unix_nano: int,
                  resource_attributes: Sequence[tuple[str, str | None]] = ()
                  ) -> ResourceMetrics:
    """One ``ResourceMetrics`` holding a metric per stats field, a point per component;
    ``resource_attributes`` (``service::telemetry::resource``) are laid over the default
    ``service.name``, a ``None`` value removing one."""
    metrics: dict[str, Metric] = {}
    for source, fields in samples:
        attributes = _source_attributes(source)
        for field_name, value in fields:
            metric = metrics.get(field_name)
            if metric is None:
                metric = Metric(name=metric_name(field_name), unit=metric_unit(field_name),
                                description=metric_help(field_name))
                if not is_gauge_field(field_name):
                    metric.sum.is_monotonic = True
                    metric.sum.aggregation_temporality = _CUMULATIVE
                metrics[field_name] = metric
            if is_gauge_field(field_name):
                point = metric.gauge.data_points.add(time_unix_nano=time_unix_nano)
            else:
                point = metric.sum.data_points.add(start_time_unix_nano=start_time_unix_nano,
                                                   time_unix_nano=time_unix_nano)
            point.attributes.extend(attributes)
            value = _sample_value(field_name, value)
            if isinstance(value, int):
                point.as_int = value
            else:
                point.as_double = value
    resource = processor_resource(resource_attributes)
    scope = InstrumentationScope(name=semconv.PROCESSOR_SELF_TELEMETRY_SCOPE)
    return ResourceMetrics(resource=resource, scope_metrics=[
        ScopeMetrics(scope=scope, metrics=list(metrics.values()))])


class SelfTelemetry:
    """Polls ``sources`` every ``interval_s`` and feeds their stats to ``consumers``.

    ``start()`` after every component runs, ``shutdown()`` before any stops: shutdown sends
    one last collection (so a file exporter ends with the final counts), then joins.
    """

    def __init__(self, sources: Sequence[StatsSource], consumers: Sequence[Any],
                 interval_s: float = DEFAULT_INTERVAL_S,
                 clock_ns: Callable[[], int] = time.time_ns,
                 resource: Sequence[tuple[str, str | None]] = ()) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self._resource = tuple(resource)
        self._sources = tuple(sources)
        self._consumers = tuple(consumers)
        self._interval_s = interval_s
        self._clock_ns = clock_ns
        self._start_ns = clock_ns()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failed: set[tuple[str, ...]] = set()
        self.collections = 0
        self.failures = 0

    def start(self) -> None:
        self._start_ns = self._clock_ns()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="driftline-self-telemetry",
                                        daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the thread, then send one final collection. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(STOP_TIMEOUT_S)
        self.collect()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.collect()

    def collect(self) -> None:
        """Read every source once and hand the result to every consumer; never raises."""
        with self._lock:
            samples: list[Sample] = []
            for source in self._sources:
                try:
                    samples.append((source, numeric_fields(source.component.stats())))
                except Exception as exc:
                    self.failures += 1
                    self._warn_once(("stats", source.kind, source.id, source.pipeline),
                                    "self-telemetry: stats() of %s '%s' failed, skipped: %s",
                                    source.kind, source.id, exc)
            batch = [build_metrics(samples, self._start_ns, self._clock_ns(), self._resource)]
            for consumer in self._consumers:
                try:
                    consumer.consume_metrics(batch)
                except Exception as exc:
                    self.failures += 1
                    self._warn_once(("consume", str(id(consumer))), "self-telemetry: a metrics "
                                    "pipeline refused the processor's own metrics: %s", exc)
            self.collections += 1

    def _warn_once(self, key: tuple[str, ...], message: str, *args: Any) -> None:
        if key not in self._failed:
            self._failed.add(key)
            _log.warning(message + " (logged once)", *args)
