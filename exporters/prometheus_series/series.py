"""OTLP metrics as Prometheus series: what the ``prometheus`` and ``prometheusremotewrite``
exporters share (the collector's ``pkg/translator/prometheus``).

OTLP metrics come in and the last state of every series is kept behind a lock (this
module); ``render`` writes it in the text format 0.0.4 (or OpenMetrics) or hands it out as
samples; ``exponential`` keeps exponential histograms as classic ones, re-binned on the
reference profiles; ``points`` is the state of one series; ``config`` the YAML keys. Names and
labels follow the OpenTelemetry "Prometheus and OpenMetrics compatibility" specification
(see ``text``); the resource's ``service.name`` becomes ``job`` and its
``service.instance.id`` ``instance``, so series from several services stay apart.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    DataPointFlags,
    Metric,
    ResourceMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from driftline import semconv
from driftline.durations import parse_non_negative_duration
from driftline.exporters.prometheus_series import text
from driftline.exporters.prometheus_series.config import (  # noqa: F401  (re-exported)
    DEFAULT_ADD_RATIO_SUFFIX,
    DEFAULT_ENABLE_OPEN_METRICS,
    DEFAULT_ENDPOINT,
    DEFAULT_MAX_EXPOSITION_BYTES,
    DEFAULT_MAX_SERIES,
    DEFAULT_METRIC_EXPIRATION,
    DEFAULT_NAMESPACE,
    OPENMETRICS_TYPE,
    TYPE,
    PrometheusExporterConfig,
    split_endpoint,
)
from driftline.exporters.prometheus_series.exponential import (  # noqa: F401  (re-exported)
    FOLD_EVERY_POINTS,
    ExponentialHistograms,
)
from driftline.exporters.prometheus_series.points import (  # noqa: F401  (re-exported)
    DROP_REASONS,
    EXEMPLAR_LABELS_MAX_CHARS,
    KIND_COUNTER,
    KIND_GAUGE,
    KIND_HISTOGRAM,
    KIND_SUMMARY,
    LABEL_CACHE_SIZE,
    REASON_DELTA_NON_MONOTONIC_SUM,
    REASON_EXPONENTIAL_HISTOGRAM,
    REASON_MALFORMED,
    REASON_SERIES_BYTES,
    REASON_SERIES_LIMIT,
    REASON_TYPE_CONFLICT,
    Exemplar,
    Family,
    Histogram,
    LabelKey,
    Point,
    Sample,
    Scalar,
    Summary,
    bucket_exemplars,
    exposition_cost,
    label_key,
    latest_exemplar,
    line_count,
)
from driftline.exporters.prometheus_series.render import exposition_lines, samples_since
from driftline.processor.component import ComponentError
from driftline.processor.component.attribute_bytes import attribute_bytes

_LOG = logging.getLogger(__name__)
JOB_LABEL = "job"
INSTANCE_LABEL = "instance"
SCOPE_NAME_LABEL = "otel_scope_name"
SCOPE_VERSION_LABEL = "otel_scope_version"
TARGET_INFO = "target_info"
TARGET_INFO_HELP = "Target metadata"
_DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
_NO_RECORDED_VALUE = DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
# Resource attributes that become job/instance rather than target_info labels.
_IDENTIFYING_RESOURCE_KEYS = frozenset(
    {semconv.SERVICE_NAME, semconv.SERVICE_NAMESPACE, semconv.SERVICE_INSTANCE_ID}
)


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
        self._families: dict[str, Family] = {}
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._conflicts_logged: set[str] = set()
        self._label_cache: dict[Any, LabelKey] = {}
        self._exponential = ExponentialHistograms(self, config.reference_profiles)
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
        family = self.family(TARGET_INFO, KIND_GAUGE, TARGET_INFO_HELP)
        key = label_key(labels)
        if family is not None and (key in family.series or self.admit(key)):
            family.series[key] = Scalar(1, 0, now)

    def family(self, name: str, kind: str, help_text: str) -> Family | None:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = Family(name, kind, help_text)
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

    def labels(self, point: Any, base: Mapping[str, str]) -> LabelKey:
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
            labels = self._label_cache[raw] = label_key(
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
        family = self.family(name, kind, metric.description)
        if family is None:
            self._dropped[REASON_TYPE_CONFLICT] += len(points)
            return
        for point in points:
            key = self.labels(point, base)
            if point.flags & _NO_RECORDED_VALUE:
                family.series.pop(key, None)
                continue
            which = point.WhichOneof("value")
            if which is None:
                self._dropped[REASON_MALFORMED] += 1
                continue
            value = getattr(point, which)
            previous = family.series.get(key)
            if accumulate and isinstance(previous, Scalar):
                value = previous.value + value
            elif isinstance(previous, Scalar) and point.time_unix_nano < previous.time_unix_nano:
                continue  # an older point arriving late must not replace a newer one
            if previous is None and not self.admit(key):
                continue
            exemplar = latest_exemplar(point.exemplars) if kind == KIND_COUNTER else None
            if exemplar is None and isinstance(previous, Scalar):
                exemplar = previous.exemplar
            family.series[key] = Scalar(value, point.time_unix_nano, now, exemplar)

    def _consume_histogram(self, metric: Metric, base: Mapping[str, str], now: float) -> None:
        points = metric.histogram.data_points
        family = self.family(self._name(metric), KIND_HISTOGRAM, metric.description)
        if family is None:
            self._dropped[REASON_TYPE_CONFLICT] += len(points)
            return
        delta = metric.histogram.aggregation_temporality == _DELTA
        for point in points:
            key = self.labels(point, base)
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
            if delta and isinstance(previous, Histogram) and previous.bounds == bounds:
                count += previous.count
                if previous.bucket_counts and counts:
                    counts = tuple(
                        a + b for a, b in zip(previous.bucket_counts, counts, strict=True)
                    )
                if total is not None and previous.sum is not None:
                    total += previous.sum
            elif (
                not delta
                and isinstance(previous, Histogram)
                and point.time_unix_nano < previous.time_unix_nano
            ):
                continue
            if previous is None and not self.admit(key, len(bounds) + 3):
                continue
            family.series[key] = Histogram(
                bounds, counts, count, total, point.time_unix_nano, now,
                bucket_exemplars(bounds, point.exemplars, previous))

    @property
    def open_metrics_enabled(self) -> bool:
        return self._config.enable_open_metrics

    def load_reference_profiles(self) -> None:
        """Read ``reference_profiles`` (at start); a bad directory stops the exporter."""
        self._exponential.load_reference_profiles()

    def _consume_exponential(self, metric: Metric, base: Mapping[str, str], now: float) -> None:
        name = self._name(metric)
        family = self.family(name, KIND_HISTOGRAM, metric.description)
        if family is None:
            self._dropped[REASON_TYPE_CONFLICT] += len(metric.exponential_histogram.data_points)
            return
        self._exponential.consume(metric, name, family, base, now)

    def admit(self, key: LabelKey, lines: int = 1) -> bool:
        """Whether a new series fits under ``max_series`` and, with its ``lines`` sample lines
        of labels ``key``, under ``max_exposition_bytes``; if not its point is dropped and
        counted, so a flood of distinct (or huge) label values cannot grow memory without
        bound."""
        cost = exposition_cost(key, lines)
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

    def unadmit(self, key: LabelKey, lines: int) -> None:
        """Take back an admission whose series could not be created after all."""
        self._series_total -= 1
        self._exposition_bytes -= exposition_cost(key, lines)

    def drop(self, reason: str, count: int = 1) -> None:
        self._dropped[reason] += count

    def exposed(self, name: str) -> Family | None:
        """The family exposed as ``name``, if any."""
        return self._families.get(name)

    def _consume_summary(self, metric: Metric, base: Mapping[str, str], now: float) -> None:
        points = metric.summary.data_points
        family = self.family(self._name(metric), KIND_SUMMARY, metric.description)
        if family is None:
            self._dropped[REASON_TYPE_CONFLICT] += len(points)
            return
        for point in points:
            key = self.labels(point, base)
            if point.flags & _NO_RECORDED_VALUE:
                family.series.pop(key, None)
                continue
            if key not in family.series and not self.admit(key, len(point.quantile_values) + 2):
                continue
            quantiles = tuple(sorted((q.quantile, q.value) for q in point.quantile_values))
            family.series[key] = Summary(
                quantiles, point.count, point.sum, point.time_unix_nano, now
            )

    # --- exposition -----------------------------------------------------------------------
    def render(self, *, openmetrics: bool = False) -> str:
        """The current state in the Prometheus text format 0.0.4, families sorted by name, or
        in OpenMetrics 1.0 with exemplars (counters' TYPE names drop ``_total``; ``# EOF``)."""
        now = self._clock()
        with self._lock:
            self._exponential.fold_all()
            self._expire(now)
            lines = exposition_lines(self._families, self._dropped, openmetrics=openmetrics)
        return "\n".join(lines) + "\n"

    def snapshot(self, seen_since_s: float = -math.inf) -> list[Sample]:
        """Every exposed sample of the series updated at or after ``seen_since_s`` (the
        exporter's clock), for pushing them elsewhere (remote write)."""
        now = self._clock()
        with self._lock:
            self._exponential.fold_all()
            self._expire(now)
            return samples_since(self._families, seen_since_s)

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
        self._exponential.expire(self._families)
        unexposed = list(self._exponential.unexposed(self._families))
        self._series_total = sum(len(f.series) for f in self._families.values()) + len(
            unexposed)
        self._exposition_bytes = sum(
            exposition_cost(key, line_count(point)) for f in self._families.values()
            for key, point in f.series.items()) + sum(
            exposition_cost(series.key, series.line_count) for series in unexposed)


