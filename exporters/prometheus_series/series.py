"""OTLP metrics as Prometheus series: what the ``prometheus`` and ``prometheusremotewrite``
exporters share (the collector's ``pkg/translator/prometheus``).

OTLP metrics come in, the last state of every series is kept behind a lock, and is rendered
in the text format 0.0.4 (or OpenMetrics) or handed out as samples. Names and
labels follow the OpenTelemetry "Prometheus and OpenMetrics compatibility" specification
(see ``text``); the resource's ``service.name`` becomes ``job`` and its
``service.instance.id`` ``instance``, so series from several services stay apart.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    DataPointFlags,
    Metric,
    ResourceMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from driftline import semconv
from driftline.durations import parse_non_negative_duration
from driftline.exphist import ExpHistogram
from driftline.exporters.prometheus_series import classic_bins, text
from driftline.processor.component import ComponentError
from driftline.processor.component.attribute_bytes import (
    AttributeKey,
    attribute_bytes,
    has_attribute_key,
)
from driftline.processor.component.endpoints import MAX_PORT
from driftline.processor.component.ml_points import check_header, histogram_from_point
from driftline.profile import Profile, ProfileError, load_directory

_LOG = logging.getLogger(__name__)

TYPE = "prometheus"
DEFAULT_ENDPOINT = "127.0.0.1:9464"
DEFAULT_NAMESPACE = ""
# Series not updated for this long disappear from /metrics, as in the collector's exporter.
# It must exceed the processor's window, or drift gauges blink between windows.
DEFAULT_METRIC_EXPIRATION = "5m"
# Unit "1" on a gauge becomes "_ratio" only when enabled: Driftline's dimensionless gauges
# (ml.drift.score, ml.drift.detected) are scores and flags, and keep their plain names.
DEFAULT_ADD_RATIO_SUFFIX = False
# Exponential points wait in a queue per series and are folded in one vectorised pass this
# often (and before every scrape), so each costs an append, not a conversion. A fold's fixed
# cost is spread over this many points; a queued point holds its serialized buckets (tens of
# bytes for tens of buckets), so a full queue takes about 50 kB per series.
FOLD_EVERY_POINTS = 512
LABEL_CACHE_SIZE = 65_536
OPENMETRICS_TYPE = "application/openmetrics-text"
DEFAULT_ENABLE_OPEN_METRICS = False
# Series exposed at most; beyond, points of new series are dropped and counted (reason
# "series_limit") until old series expire.
DEFAULT_MAX_SERIES = 50_000
# The exposition's size bound, estimated per series when it is admitted (its label bytes
# times its lines): a count alone let 300 series of 1 MB labels make a 300 MiB /metrics.
DEFAULT_MAX_EXPOSITION_BYTES = 64 * 1024 * 1024
# Bytes a sample line adds besides its labels (name, value, timestamp, punctuation).
_LINE_OVERHEAD_BYTES = 64
# OpenMetrics caps an exemplar's label set at 128 UTF-8 characters; trace and span IDs
# (48 with their names) always fit, filtered attributes only while they do.
EXEMPLAR_LABELS_MAX_CHARS = 128

JOB_LABEL = "job"
INSTANCE_LABEL = "instance"
SCOPE_NAME_LABEL = "otel_scope_name"
SCOPE_VERSION_LABEL = "otel_scope_version"
TARGET_INFO = "target_info"
TARGET_INFO_HELP = "Target metadata"
DROPPED_POINTS_METRIC = "driftline_exporter_prometheus_dropped_points_total"
DROPPED_POINTS_HELP = "OTLP data points received by the prometheus exporter but not exposed."

REASON_EXPONENTIAL_HISTOGRAM = "exponential_histogram"
REASON_DELTA_NON_MONOTONIC_SUM = "delta_non_monotonic_sum"
REASON_TYPE_CONFLICT = "type_conflict"
REASON_MALFORMED = "malformed"
REASON_SERIES_LIMIT = "series_limit"
REASON_SERIES_BYTES = "series_bytes"
DROP_REASONS = (
    REASON_DELTA_NON_MONOTONIC_SUM,
    REASON_EXPONENTIAL_HISTOGRAM,
    REASON_MALFORMED,
    REASON_SERIES_LIMIT,
    REASON_SERIES_BYTES,
    REASON_TYPE_CONFLICT,
)

KIND_GAUGE = "gauge"
KIND_COUNTER = "counter"
KIND_HISTOGRAM = "histogram"
KIND_SUMMARY = "summary"

_DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
_NO_RECORDED_VALUE = DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_RESERVED_LABEL_PREFIX = "__"
# Resource attributes that become job/instance rather than target_info labels.
_IDENTIFYING_RESOURCE_KEYS = frozenset(
    {semconv.SERVICE_NAME, semconv.SERVICE_NAMESPACE, semconv.SERVICE_INSTANCE_ID}
)

LabelKey = tuple[tuple[str, str], ...]


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as its parts; ``ValueError`` when it is not one."""
    host, sep, port_text = endpoint.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > MAX_PORT:
        raise ValueError(f"must be host:port, got {endpoint!r}")
    return host, int(port_text)


@dataclass(slots=True)
class PrometheusExporterConfig:
    """The YAML node of a ``prometheus`` exporter; field names are the keys."""

    endpoint: str = DEFAULT_ENDPOINT
    namespace: str = DEFAULT_NAMESPACE
    const_labels: dict[str, str] = field(default_factory=dict)
    metric_expiration: str | float = DEFAULT_METRIC_EXPIRATION
    add_ratio_suffix: bool = DEFAULT_ADD_RATIO_SUFFIX
    reference_profiles: str = ""  # a directory of profiles: feature histograms on their bins
    enable_open_metrics: bool = DEFAULT_ENABLE_OPEN_METRICS  # with exemplars, when asked
    max_series: int = DEFAULT_MAX_SERIES
    max_exposition_bytes: int = DEFAULT_MAX_EXPOSITION_BYTES

    def validate(self) -> list[str]:
        """Every problem as ``key: message``, relative to this exporter's node."""
        problems: list[str] = []
        if self.reference_profiles and not Path(self.reference_profiles).is_dir():
            problems.append(f"reference_profiles: {self.reference_profiles!r} is not a "
                            "directory of profiles")
        if not isinstance(self.endpoint, str):
            problems.append(f"endpoint: must be host:port, got {self.endpoint!r}")
        else:
            try:
                split_endpoint(self.endpoint)
            except ValueError as err:
                problems.append(f"endpoint: {err}")
        if not isinstance(self.namespace, str):
            problems.append(f"namespace: must be a string, got {self.namespace!r}")
        if not isinstance(self.const_labels, Mapping):
            problems.append(f"const_labels: must be a mapping, got {self.const_labels!r}")
        else:
            for name, value in self.const_labels.items():
                if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) or name.startswith(
                    _RESERVED_LABEL_PREFIX
                ):
                    problems.append(
                        f"const_labels::{name}: must be a label name matching "
                        f"[a-zA-Z_][a-zA-Z0-9_]* and not starting with '__'"
                    )
                if not isinstance(value, str | int | float) or isinstance(value, bool):
                    problems.append(f"const_labels::{name}: must be a string, got {value!r}")
        if not isinstance(self.max_series, int) or self.max_series < 1:
            problems.append(f"max_series: must be a positive integer, got {self.max_series!r}")
        if isinstance(self.max_exposition_bytes, bool) or not isinstance(
                self.max_exposition_bytes, int) or self.max_exposition_bytes < 1:
            problems.append(f"max_exposition_bytes: must be a positive integer, got "
                            f"{self.max_exposition_bytes!r}")
        if not isinstance(self.add_ratio_suffix, bool):
            problems.append(
                f"add_ratio_suffix: must be true or false, got {self.add_ratio_suffix!r}"
            )
        try:
            parse_non_negative_duration(self.metric_expiration)
        except ValueError as err:
            problems.append(f"metric_expiration: {err}")
        return problems


@dataclass(frozen=True, slots=True)
class _Exemplar:
    """The latest exemplar of a counter or histogram bucket (OpenMetrics exposition)."""

    labels: LabelKey  # trace_id, span_id and the exemplar's filtered attributes
    value: float
    time_unix_nano: int


@dataclass(frozen=True, slots=True)
class _Scalar:
    value: float
    time_unix_nano: int
    seen_s: float
    exemplar: _Exemplar | None = None


@dataclass(frozen=True, slots=True)
class _Histogram:
    bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]  # per bucket, len(bounds) + 1, or empty
    count: int
    sum: float | None
    time_unix_nano: int
    seen_s: float
    exemplars: tuple[_Exemplar | None, ...] = ()  # per bucket, like bucket_counts


@dataclass(frozen=True, slots=True)
class _Summary:
    quantiles: tuple[tuple[float, float], ...]
    count: int
    sum: float
    time_unix_nano: int
    seen_s: float


_Point = _Scalar | _Histogram | _Summary


@dataclass(slots=True)
class _ExponentialSeries:
    """An exponential-histogram series exposed as a classic one: its fixed bounds, the counts
    folded so far and the points still queued (``_classic_bins.PendingPoints``)."""

    name: str
    key: LabelKey
    bounds: tuple[float, ...]
    counts: np.ndarray
    pending: classic_bins.PendingPoints = field(default_factory=classic_bins.PendingPoints)
    count: int = 0
    sum: float | None = 0.0
    time_unix_nano: int = 0
    seen_s: float = 0.0
    exemplars: tuple[_Exemplar | None, ...] = ()
    # The queue length at which this series folds: spread over the upper half of
    # FOLD_EVERY_POINTS by its labels' hash, so series fed at the same pace (all of one
    # app's) do not all fold in the same request.
    fold_at: int = FOLD_EVERY_POINTS

    def __post_init__(self) -> None:
        half = FOLD_EVERY_POINTS // 2
        self.fold_at = half + hash(self.key) % (half + 1)

    def restart(self) -> None:
        """Forget what was folded: a cumulative point replaces the state."""
        self.counts[:] = 0
        self.pending = classic_bins.PendingPoints()
        self.count = 0
        self.sum = 0.0


# A point's attribute key (bytes and number of attributes) and its series.
_Route = tuple[AttributeKey, _ExponentialSeries]
_RouteKey = tuple[str, LabelKey]  # a metric's name and the labels all its points share
_UNREADABLE = -1  # the attribute count of a route whose bytes could not be read: never matches


@dataclass(slots=True)
class _Routes:
    """How the points of one metric (under the same base labels) find their series.

    ``by_attributes`` maps a point's attribute bytes (``attribute_bytes``) to its series.
    Clients send the same series in the same order request after request, so
    ``by_position`` keeps the last request's route at each position: whether a point has
    the attributes expected at its position is checked without walking its wire bytes
    (``has_attribute_key``).
    """

    by_attributes: dict[bytes, _ExponentialSeries] = field(default_factory=dict)
    by_position: list[_Route | None] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Sample:
    """One exposed sample: its name, labels, value and the time of the point behind it."""

    name: str
    labels: LabelKey
    value: float
    time_unix_nano: int


@dataclass(slots=True)
class _Family:
    """One metric family's state: its Prometheus type, HELP and latest point per label set."""

    name: str
    kind: str
    help: str
    series: dict[LabelKey, _Point] = field(default_factory=dict)


class PrometheusSeries:
    """Keeps the latest state of every series and serves it on ``GET /metrics``.

    Exponential histograms (feature and prediction distributions) are exposed as classic
    histograms (``classic_bins``): on the reference profile's deciles when
    ``reference_profiles`` names the profiles' directory, the reference's own counts next to
    them as ``<name>_reference``, else on powers of two. A point that cannot be read (a
    scale out of range) is counted in ``dropped_points``.
    """

    def __init__(
        self, config: PrometheusExporterConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        problems = config.validate()
        if problems:
            raise ComponentError("prometheus exporter: invalid config: " + "; ".join(problems))
        self._config = config
        self._expiration_s = parse_non_negative_duration(config.metric_expiration)
        self._const_labels = {name: str(value) for name, value in config.const_labels.items()}
        self._clock = clock
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._conflicts_logged: set[str] = set()
        self._profiles: Mapping[tuple[str, str], Profile] = {}
        self._exponential: dict[tuple[str, LabelKey], _ExponentialSeries] = {}
        self._label_cache: dict[Any, LabelKey] = {}
        # Per (metric name, base labels): a point's attribute bytes to its series.
        self._routes: dict[_RouteKey, _Routes] = {}
        self._route_count = 0
        self._series_limit_logged = False
        self._series_total = 0  # admitted series; recounted exactly at every scrape
        self._exposition_bytes = 0  # their estimated exposition size; recounted likewise
        self._bytes_limit_logged = False

    # --- ingest ---------------------------------------------------------------------------
    @property
    def dropped_points(self) -> Mapping[str, int]:
        """Data points received but not exposed, by reason (a copy)."""
        with self._lock:
            return dict(self._dropped)

    def consume_metrics(self, batch: Sequence[ResourceMetrics]) -> None:
        """Fold a batch into the state: gauges replace, deltas accumulate, cumulatives replace."""
        now = self._clock()
        with self._lock:
            for resource_metrics in batch:
                target = self._target_labels(resource_metrics.resource)
                self._update_target_info(resource_metrics.resource, target, now)
                for scope_metrics in resource_metrics.scope_metrics:
                    scope = {
                        SCOPE_NAME_LABEL: scope_metrics.scope.name,
                        SCOPE_VERSION_LABEL: scope_metrics.scope.version,
                    }
                    for metric in scope_metrics.metrics:
                        self._consume_metric(metric, {**scope, **target}, now)

    def _target_labels(self, resource: Resource) -> dict[str, str]:
        attributes = {item.key: text.attribute_value(item.value) for item in resource.attributes}
        labels: dict[str, str] = {}
        name = attributes.get(semconv.SERVICE_NAME, "")
        namespace = attributes.get(semconv.SERVICE_NAMESPACE, "")
        if name:
            labels[JOB_LABEL] = f"{namespace}/{name}" if namespace else name
        instance = attributes.get(semconv.SERVICE_INSTANCE_ID, "")
        if instance:
            labels[INSTANCE_LABEL] = instance
        return labels

    def _update_target_info(self, resource: Resource, target: dict[str, str], now: float) -> None:
        """Resource attributes other than job/instance as one ``target_info`` series (spec)."""
        others = [
            item for item in resource.attributes if item.key not in _IDENTIFYING_RESOURCE_KEYS
        ]
        if not others:
            return
        labels = {**text.labels_from_attributes(others), **target}
        family = self._family(TARGET_INFO, KIND_GAUGE, TARGET_INFO_HELP)
        key = _key(labels)
        if family is not None and (key in family.series or self._admit(key)):
            family.series[key] = _Scalar(1, 0, now)

    def _family(self, name: str, kind: str, help_text: str) -> _Family | None:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = _Family(name, kind, help_text)
        elif family.kind != kind:
            if name not in self._conflicts_logged:
                self._conflicts_logged.add(name)
                _LOG.warning(
                    "prometheus exporter: metric %s arrives as %s but is exposed as %s; "
                    "dropping the %s points (rename one of the two metrics)",
                    name, kind, family.kind, kind,
                )
            return None
        elif not family.help and help_text:
            family.help = help_text
        return family

    def _consume_metric(self, metric: Metric, base: Mapping[str, str], now: float) -> None:
        data = metric.WhichOneof("data")
        if data == "exponential_histogram":
            self._consume_exponential(metric, base, now)
            return
        if data == "gauge":
            self._consume_numbers(
                metric, metric.gauge.data_points, KIND_GAUGE, False, base, now, otlp_gauge=True
            )
        elif data == "sum":
            self._consume_sum(metric, base, now)
        elif data == "histogram":
            self._consume_histogram(metric, base, now)
        elif data == "summary":
            self._consume_summary(metric, base, now)

    def _name(self, metric: Metric, *, otlp_gauge: bool = False, is_counter: bool = False) -> str:
        return text.metric_name(
            metric.name,
            metric.unit,
            namespace=self._config.namespace,
            ratio=otlp_gauge and self._config.add_ratio_suffix,
            is_counter=is_counter,
        )

    def _labels(self, point: Any, base: Mapping[str, str]) -> LabelKey:
        # Later sources win: point attributes < scope < job/instance < configured const_labels.
        # Sanitising names is costly and the same few attribute sets repeat: cached, keyed by
        # the base and the point's attribute bytes (else each attribute's; bounded: cleared
        # when it grows past its limit).
        attributes = attribute_bytes(point)
        if attributes is None:
            attributes = tuple(kv.SerializeToString() for kv in point.attributes)
        raw = (tuple(base.items()), attributes)
        labels = self._label_cache.get(raw)
        if labels is None:
            if len(self._label_cache) >= LABEL_CACHE_SIZE:
                self._label_cache.clear()
            labels = self._label_cache[raw] = _key(
                {**text.labels_from_attributes(point.attributes), **base, **self._const_labels})
        return labels

    def _consume_sum(self, metric: Metric, base: Mapping[str, str], now: float) -> None:
        points = metric.sum.data_points
        delta = metric.sum.aggregation_temporality == _DELTA
        if metric.sum.is_monotonic:
            self._consume_numbers(metric, points, KIND_COUNTER, delta, base, now)
        elif delta:
            # The spec drops delta up-down sums: their absolute level is unknown to a scraper.
            self._dropped[REASON_DELTA_NON_MONOTONIC_SUM] += len(points)
        else:
            self._consume_numbers(metric, points, KIND_GAUGE, False, base, now)

    def _consume_numbers(
        self,
        metric: Metric,
        points: Iterable[Any],
        kind: str,
        accumulate: bool,
        base: Mapping[str, str],
        now: float,
        *,
        otlp_gauge: bool = False,
    ) -> None:
        name = self._name(metric, otlp_gauge=otlp_gauge, is_counter=kind == KIND_COUNTER)
        points = list(points)
        family = self._family(name, kind, metric.description)
        if family is None:
            self._dropped[REASON_TYPE_CONFLICT] += len(points)
            return
        for point in points:
            key = self._labels(point, base)
            if point.flags & _NO_RECORDED_VALUE:
                family.series.pop(key, None)
                continue
            which = point.WhichOneof("value")
            if which is None:
                self._dropped[REASON_MALFORMED] += 1
                continue
            value = getattr(point, which)
            previous = family.series.get(key)
            if accumulate and isinstance(previous, _Scalar):
                value = previous.value + value
            elif isinstance(previous, _Scalar) and point.time_unix_nano < previous.time_unix_nano:
                continue  # an older point arriving late must not replace a newer one
            if previous is None and not self._admit(key):
                continue
            exemplar = _latest_exemplar(point.exemplars) if kind == KIND_COUNTER else None
            if exemplar is None and isinstance(previous, _Scalar):
                exemplar = previous.exemplar
            family.series[key] = _Scalar(value, point.time_unix_nano, now, exemplar)

    def _consume_histogram(self, metric: Metric, base: Mapping[str, str], now: float) -> None:
        points = metric.histogram.data_points
        family = self._family(self._name(metric), KIND_HISTOGRAM, metric.description)
        if family is None:
            self._dropped[REASON_TYPE_CONFLICT] += len(points)
            return
        delta = metric.histogram.aggregation_temporality == _DELTA
        for point in points:
            key = self._labels(point, base)
            if point.flags & _NO_RECORDED_VALUE:
                family.series.pop(key, None)
                continue
            bounds = tuple(point.explicit_bounds)
            counts = tuple(point.bucket_counts)
            if counts and len(counts) != len(bounds) + 1:
                self._dropped[REASON_MALFORMED] += 1
                continue
            total = point.sum if point.HasField("sum") else None
            count = point.count
            previous = family.series.get(key)
            if delta and isinstance(previous, _Histogram) and previous.bounds == bounds:
                count += previous.count
                if previous.bucket_counts and counts:
                    counts = tuple(
                        a + b for a, b in zip(previous.bucket_counts, counts, strict=True)
                    )
                if total is not None and previous.sum is not None:
                    total += previous.sum
            elif (
                not delta
                and isinstance(previous, _Histogram)
                and point.time_unix_nano < previous.time_unix_nano
            ):
                continue
            if previous is None and not self._admit(key, len(bounds) + 3):
                continue
            family.series[key] = _Histogram(
                bounds, counts, count, total, point.time_unix_nano, now,
                _bucket_exemplars(bounds, point.exemplars, previous))

    @property
    def open_metrics_enabled(self) -> bool:
        return self._config.enable_open_metrics

    def load_reference_profiles(self) -> None:
        """Read ``reference_profiles`` (at start); a bad directory stops the exporter."""
        if not self._config.reference_profiles:
            return
        try:
            self._profiles = load_directory(self._config.reference_profiles)
        except (ProfileError, OSError) as exc:
            raise ComponentError(f"prometheus exporter: cannot load reference_profiles "
                                 f"{self._config.reference_profiles!r}: {exc}") from exc

    def _reference(self, metric: Metric, point: Any) -> ExpHistogram | None:
        attributes = {kv.key: text.attribute_value(kv.value) for kv in point.attributes}
        profile = self._profiles.get((attributes.get(semconv.ML_MODEL_NAME, ""),
                                      attributes.get(semconv.ML_MODEL_VERSION, "")))
        column = attributes.get(semconv.ML_FEATURE_NAME) or metric.name
        found = profile.columns.get(column) if profile is not None else None
        return found.histogram if found is not None else None

    def _consume_exponential(self, metric: Metric, base: Mapping[str, str], now: float) -> None:
        """Each point queued for its series' classic buckets (see the class docstring); the
        queue is folded every ``fold_at`` points (at most ``FOLD_EVERY_POINTS``) and before
        every scrape.

        This is the exporter's hot loop: a point finds its series through ``_Routes`` and
        each field is read once.
        """
        name = self._name(metric)
        family = self._family(name, KIND_HISTOGRAM, metric.description)
        points = metric.exponential_histogram.data_points
        if family is None:
            self._dropped[REASON_TYPE_CONFLICT] += len(points)
            return
        delta = metric.exponential_histogram.aggregation_temporality == _DELTA
        route_key = (name, tuple(base.items()))
        routes = self._routes.get(route_key) or _Routes()
        expected = routes.by_position
        known = len(expected)
        order: list[_Route | None] = []
        for position, point in enumerate(points):
            scale = point.scale
            try:
                check_header(point)
            except ValueError:  # beyond sane limits (ml_drift rejects it as partial success)
                self._dropped[REASON_EXPONENTIAL_HISTOGRAM] += 1
                order.append(None)
                continue
            route = expected[position] if position < known else None
            if route is None or not has_attribute_key(point, route[0]):
                route = self._route(routes, route_key, metric, name, base, point, now)
            order.append(route)
            if route is None:
                continue
            series = route[1]
            time_unix_nano = point.time_unix_nano
            if delta:
                if time_unix_nano > series.time_unix_nano:
                    series.time_unix_nano = time_unix_nano
            elif time_unix_nano < series.time_unix_nano:
                continue  # an older cumulative point arriving late
            else:  # cumulative: the newest point is the whole state
                series.restart()
                series.time_unix_nano = time_unix_nano
            negative = point.negative.SerializeToString() if point.HasField("negative") else b""
            queued = series.pending.add(scale, point.zero_count,
                                        point.positive.SerializeToString(), negative)
            series.count += point.count
            if series.sum is not None:
                series.sum = series.sum + point.sum if point.HasField("sum") else None
            series.seen_s = now
            if point.exemplars:
                series.exemplars = _bucket_exemplars(series.bounds, point.exemplars,
                                                     family.series.get(series.key))
            if queued >= series.fold_at:
                self._fold(series)
        routes.by_position = order

    def _route(self, routes: _Routes, route_key: _RouteKey, metric: Metric, name: str,
               base: Mapping[str, str], point: Any, now: float) -> _Route | None:
        """The route of a point not at its expected position: found by its attribute bytes,
        else by its labels (the series created if admitted; None if not)."""
        attributes = attribute_bytes(point)
        series = routes.by_attributes.get(attributes) if attributes is not None else None
        if series is None:
            key = self._labels(point, base)
            series = self._exponential.get((name, key))
            if series is None:
                lines = classic_bins.MAX_DEFAULT_BOUNDS + 3
                if not self._admit(key, lines):
                    return None
                try:
                    series = self._new_series(metric, name, key, point, now)
                except ValueError:  # counts past sane limits: never exportable, dropped
                    self._series_total -= 1
                    self._exposition_bytes -= _exposition_cost(key, lines)
                    self._dropped[REASON_EXPONENTIAL_HISTOGRAM] += 1
                    return None
                self._exponential[(name, key)] = series
            if attributes is not None:
                self._remember_route(routes, route_key, attributes, series)
        if attributes is None:
            return (b"", _UNREADABLE), series
        return (attributes, len(point.attributes)), series

    def _remember_route(self, routes: _Routes, route_key: _RouteKey, attributes: bytes,
                        series: _ExponentialSeries) -> None:
        """Route ``attributes`` to ``series`` from now on.

        Bounded like the label cache: all routes are forgotten past ``LABEL_CACHE_SIZE``
        (attribute bytes that differ yet give the same labels could grow it without end).
        """
        if self._route_count >= LABEL_CACHE_SIZE:
            self._forget_routes()
            routes.by_attributes.clear()
        self._routes[route_key] = routes
        routes.by_attributes[attributes] = series
        self._route_count += 1

    def _forget_routes(self) -> None:
        self._routes = {}
        self._route_count = 0

    def _admit(self, key: LabelKey, lines: int = 1) -> bool:
        """Whether a new series fits under ``max_series`` and, with its ``lines`` sample lines
        of labels ``key``, under ``max_exposition_bytes``; if not its point is dropped and
        counted, so a flood of distinct (or huge) label values cannot grow memory without
        bound."""
        cost = _exposition_cost(key, lines)
        if self._exposition_bytes + cost > self._config.max_exposition_bytes:
            self._dropped[REASON_SERIES_BYTES] += 1
            if not self._bytes_limit_logged:
                self._bytes_limit_logged = True
                _LOG.warning("prometheus exporter: the exposition would exceed "
                             "max_exposition_bytes (%d); points of new series are dropped and "
                             "counted until old ones expire", self._config.max_exposition_bytes)
            return False
        if self._series_total < self._config.max_series:
            self._series_total += 1
            self._exposition_bytes += cost
            return True
        self._dropped[REASON_SERIES_LIMIT] += 1
        if not self._series_limit_logged:
            self._series_limit_logged = True
            _LOG.warning("prometheus exporter: %d series exposed (max_series); points of new "
                         "series are dropped and counted until old ones expire",
                         self._config.max_series)
        return False

    def _new_series(self, metric: Metric, name: str, key: LabelKey, point: Any,
                    now: float) -> _ExponentialSeries:
        """A series' state, its bounds chosen from its profile or its first point."""
        reference = self._reference(metric, point)
        if reference is not None:
            bounds = classic_bins.reference_bounds(reference)
            self._expose_reference(f"{name}_reference", key, reference, bounds, now)
        else:
            bounds = classic_bins.default_bounds(histogram_from_point(point))
        return _ExponentialSeries(name, key, bounds,
                                  np.zeros(len(bounds) + 1, dtype=np.int64))

    def _fold(self, series: _ExponentialSeries) -> None:
        if len(series.pending):
            series.counts += series.pending.fold(series.bounds)
        family = self._families.get(series.name)
        if family is not None:
            family.series[series.key] = _Histogram(
                series.bounds, tuple(int(c) for c in series.counts), series.count, series.sum,
                series.time_unix_nano, series.seen_s, series.exemplars)

    def _fold_all(self) -> None:
        for series in self._exponential.values():
            if len(series.pending):
                self._fold(series)

    def _expose_reference(self, name: str, key: LabelKey, reference: ExpHistogram,
                          bounds: tuple[float, ...], now: float) -> None:
        family = self._family(name, KIND_HISTOGRAM, "The reference profile's distribution "
                              "on the same buckets")
        if family is not None:
            family.series[key] = _Histogram(bounds, classic_bins.bucket_counts(reference, bounds),
                                            reference.total, reference.sum, 0, now)

    def _consume_summary(self, metric: Metric, base: Mapping[str, str], now: float) -> None:
        points = metric.summary.data_points
        family = self._family(self._name(metric), KIND_SUMMARY, metric.description)
        if family is None:
            self._dropped[REASON_TYPE_CONFLICT] += len(points)
            return
        for point in points:
            key = self._labels(point, base)
            if point.flags & _NO_RECORDED_VALUE:
                family.series.pop(key, None)
                continue
            if key not in family.series and not self._admit(key, len(point.quantile_values) + 2):
                continue
            quantiles = tuple(sorted((q.quantile, q.value) for q in point.quantile_values))
            family.series[key] = _Summary(
                quantiles, point.count, point.sum, point.time_unix_nano, now
            )

    # --- exposition -----------------------------------------------------------------------
    def render(self, *, openmetrics: bool = False) -> str:
        """The current state in the Prometheus text format 0.0.4, families sorted by name, or
        in OpenMetrics 1.0 with exemplars (counters' TYPE names drop ``_total``; ``# EOF``)."""
        now = self._clock()
        lines: list[str] = []
        with self._lock:
            self._fold_all()
            self._expire(now)
            for name in sorted(self._families):
                family = self._families[name]
                lines += _family_header(name, family.kind, family.help, openmetrics)
                for key in sorted(family.series):
                    lines.extend(_sample_lines(name, key, family.series[key],
                                               openmetrics=openmetrics))
            lines += _family_header(DROPPED_POINTS_METRIC, KIND_COUNTER, DROPPED_POINTS_HELP,
                                    openmetrics)
            for reason in DROP_REASONS:
                labels = text.format_labels([("reason", reason)])
                lines.append(f"{DROPPED_POINTS_METRIC}{labels} {self._dropped[reason]}")
        if openmetrics:
            lines.append("# EOF")
        return "\n".join(lines) + "\n"

    def snapshot(self, seen_since_s: float = -math.inf) -> list[Sample]:
        """Every exposed sample of the series updated at or after ``seen_since_s`` (the
        exporter's clock), for pushing them elsewhere (remote write)."""
        now = self._clock()
        samples = []
        with self._lock:
            self._fold_all()
            self._expire(now)
            for name, family in self._families.items():
                for key, point in family.series.items():
                    if point.seen_s >= seen_since_s:
                        samples += [Sample(sample, labels, float(value), point.time_unix_nano)
                                    for sample, labels, value, _ in _samples(name, key, point)]
        return samples

    def clock(self) -> float:
        return self._clock()

    def _expire(self, now: float) -> None:
        if self._expiration_s <= 0:
            return
        oldest = now - self._expiration_s
        for name in list(self._families):
            family = self._families[name]
            family.series = {k: p for k, p in family.series.items() if p.seen_s >= oldest}
            if not family.series:
                del self._families[name]
        kept = {(name, key): series for (name, key), series in self._exponential.items()
                if key in getattr(self._families.get(name), "series", {})}
        if len(kept) < len(self._exponential):
            self._forget_routes()  # they may lead to expired series
        self._exponential = kept
        self._series_total = sum(len(f.series) for f in self._families.values()) + sum(
            1 for (name, key) in self._exponential
            if key not in getattr(self._families.get(name), "series", {}))
        self._exposition_bytes = sum(
            _exposition_cost(key, _lines(point)) for f in self._families.values()
            for key, point in f.series.items()) + sum(
            _exposition_cost(key, len(series.bounds) + 3)
            for (name, key), series in self._exponential.items()
            if key not in getattr(self._families.get(name), "series", {}))


def _exposition_cost(key: LabelKey, lines: int) -> int:
    """The estimated bytes ``lines`` sample lines of labels ``key`` take in the exposition."""
    return lines * (sum(len(k) + len(v) + 4 for k, v in key) + _LINE_OVERHEAD_BYTES)


def _lines(point: Any) -> int:
    """Sample lines of one series: a histogram's buckets, sum and count; a summary's
    quantiles, sum and count; else one."""
    if isinstance(point, _Histogram):
        return len(point.bounds) + 3
    if isinstance(point, _Summary):
        return len(point.quantiles) + 2
    return 1


def _family_header(name: str, kind: str, help_text: str, openmetrics: bool) -> list[str]:
    if openmetrics and kind == KIND_COUNTER and name.endswith(text.TOTAL_SUFFIX):
        name = name[: -len(text.TOTAL_SUFFIX)]
    header = [f"# HELP {name} {text.escape_help(help_text)}"] if help_text else []
    return [*header, f"# TYPE {name} {kind}"]


def _key(labels: Mapping[str, str]) -> LabelKey:
    # An empty label value means "no such label" to Prometheus, so it is left out.
    return tuple(sorted((name, value) for name, value in labels.items() if value != ""))


_SampleRow = tuple[str, LabelKey, float, "_Exemplar | None"]


def _samples(name: str, key: LabelKey, point: _Point) -> list[_SampleRow]:
    """The samples of one series: (sample name, labels, value, exemplar); histograms and
    summaries give their ``_bucket``/quantile, ``_sum`` and ``_count`` samples."""
    if isinstance(point, _Scalar):
        return [(name, key, point.value, point.exemplar)]
    if isinstance(point, _Histogram):
        samples: list[_SampleRow] = []
        cumulative = 0
        exemplars = point.exemplars or (None,) * (len(point.bounds) + 1)
        for bound, count, exemplar in zip(point.bounds, point.bucket_counts, exemplars,
                                          strict=False):
            cumulative += count
            samples.append((f"{name}_bucket", (*key, ("le", text.format_value(bound))),
                            cumulative, exemplar))
        samples.append((f"{name}_bucket", (*key, ("le", "+Inf")), point.count, exemplars[-1]))
        if point.sum is not None:
            samples.append((f"{name}_sum", key, point.sum, None))
        samples.append((f"{name}_count", key, point.count, None))
        return samples
    samples = [(name, (*key, ("quantile", text.format_value(q))), v, None)
               for q, v in point.quantiles]
    samples.append((f"{name}_sum", key, point.sum, None))
    samples.append((f"{name}_count", key, point.count, None))
    return samples


def _sample_lines(name: str, key: LabelKey, point: _Point, *, openmetrics: bool = False
                  ) -> list[str]:
    lines = []
    for sample, labels, value, exemplar in _samples(name, key, point):
        line = f"{sample}{text.format_labels(labels)} {text.format_value(value)}"
        if openmetrics and exemplar is not None:
            line += (f" # {text.format_labels(exemplar.labels) or '{}'} "
                     f"{text.format_value(exemplar.value)} "
                     f"{exemplar.time_unix_nano / 1e9:.3f}")
        lines.append(line)
    return lines


def _exemplar(exemplar: Any) -> _Exemplar:
    labels: list[tuple[str, str]] = []
    if exemplar.trace_id:
        labels.append(("trace_id", exemplar.trace_id.hex()))
    if exemplar.span_id:
        labels.append(("span_id", exemplar.span_id.hex()))
    used = sum(len(n) + len(v) for n, v in labels)
    for name, value in text.labels_from_attributes(exemplar.filtered_attributes).items():
        if used + len(name) + len(value) > EXEMPLAR_LABELS_MAX_CHARS:
            break
        labels.append((name, value))
        used += len(name) + len(value)
    which = exemplar.WhichOneof("value")
    value = float(getattr(exemplar, which)) if which else math.nan
    return _Exemplar(tuple(labels), value, exemplar.time_unix_nano)


def _latest_exemplar(exemplars: Sequence[Any]) -> _Exemplar | None:
    return _exemplar(max(exemplars, key=lambda e: e.time_unix_nano)) if exemplars else None


def _bucket_exemplars(bounds: tuple[float, ...], exemplars: Sequence[Any],
                      previous: _Point | None) -> tuple[_Exemplar | None, ...]:
    """Per bucket, the newest exemplar whose value falls in it (kept from ``previous``)."""
    kept: list[_Exemplar | None] = (
        list(previous.exemplars) if isinstance(previous, _Histogram) and previous.exemplars
        and previous.bounds == bounds else [None] * (len(bounds) + 1))
    for exemplar in sorted(exemplars, key=lambda e: e.time_unix_nano):
        converted = _exemplar(exemplar)
        kept[bisect.bisect_left(bounds, converted.value)] = converted
    return tuple(kept) if any(kept) else ()
