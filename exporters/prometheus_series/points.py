"""The state of one exposed series (a scalar, a classic histogram, a summary, with their
exemplars), its label key, the drop reasons and the size a series adds to the exposition:
what accumulating and rendering share."""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from driftline.exporters.prometheus_series import text

# Bytes a sample line adds besides its labels (name, value, timestamp, punctuation).
_LINE_OVERHEAD_BYTES = 64
# OpenMetrics caps an exemplar's label set at 128 UTF-8 characters; trace and span IDs
# (48 with their names) always fit, filtered attributes only while they do.
EXEMPLAR_LABELS_MAX_CHARS = 128
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
LabelKey = tuple[tuple[str, str], ...]
# Label sets (and routes of exponential points) cached at most: all are forgotten past it.
LABEL_CACHE_SIZE = 65_536


@dataclass(frozen=True, slots=True)
class Exemplar:
    """The latest exemplar of a counter or histogram bucket (OpenMetrics exposition)."""

    labels: LabelKey  # trace_id, span_id and the exemplar's filtered attributes
    value: float
    time_unix_nano: int


@dataclass(frozen=True, slots=True)
class Scalar:
    value: float
    time_unix_nano: int
    seen_s: float
    exemplar: Exemplar | None = None


@dataclass(frozen=True, slots=True)
class Histogram:
    bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]  # per bucket, len(bounds) + 1, or empty
    count: int
    sum: float | None
    time_unix_nano: int
    seen_s: float
    exemplars: tuple[Exemplar | None, ...] = ()  # per bucket, like bucket_counts


@dataclass(frozen=True, slots=True)
class Summary:
    quantiles: tuple[tuple[float, float], ...]
    count: int
    sum: float
    time_unix_nano: int
    seen_s: float


Point = Scalar | Histogram | Summary


@dataclass(frozen=True, slots=True)
class Sample:
    """One exposed sample: its name, labels, value and the time of the point behind it."""

    name: str
    labels: LabelKey
    value: float
    time_unix_nano: int


@dataclass(slots=True)
class Family:
    """One metric family's state: its Prometheus type, HELP and latest point per label set."""

    name: str
    kind: str
    help: str
    series: dict[LabelKey, Point] = field(default_factory=dict)


def exposition_cost(key: LabelKey, lines: int) -> int:
    """The estimated bytes ``lines`` sample lines of labels ``key`` take in the exposition."""
    return lines * (sum(len(k) + len(v) + 4 for k, v in key) + _LINE_OVERHEAD_BYTES)


def line_count(point: Any) -> int:
    """Sample lines of one series: a histogram's buckets, sum and count; a summary's
    quantiles, sum and count; else one."""
    if isinstance(point, Histogram):
        return len(point.bounds) + 3
    if isinstance(point, Summary):
        return len(point.quantiles) + 2
    return 1


def label_key(labels: Mapping[str, str]) -> LabelKey:
    # An empty label value means "no such label" to Prometheus, so it is left out.
    return tuple(sorted((name, value) for name, value in labels.items() if value != ""))


def _exemplar(exemplar: Any) -> Exemplar:
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
    return Exemplar(tuple(labels), value, exemplar.time_unix_nano)


def latest_exemplar(exemplars: Sequence[Any]) -> Exemplar | None:
    return _exemplar(max(exemplars, key=lambda e: e.time_unix_nano)) if exemplars else None


def bucket_exemplars(bounds: tuple[float, ...], exemplars: Sequence[Any],
                      previous: Point | None) -> tuple[Exemplar | None, ...]:
    """Per bucket, the newest exemplar whose value falls in it (kept from ``previous``)."""
    kept: list[Exemplar | None] = (
        list(previous.exemplars) if isinstance(previous, Histogram) and previous.exemplars
        and previous.bounds == bounds else [None] * (len(bounds) + 1))
    for exemplar in sorted(exemplars, key=lambda e: e.time_unix_nano):
        converted = _exemplar(exemplar)
        kept[bisect.bisect_left(bounds, converted.value)] = converted
    return tuple(kept) if any(kept) else ()
