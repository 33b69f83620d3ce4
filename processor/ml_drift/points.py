"""OTLP data points as the values ml_drift windows: delta parts, explicit buckets, counts.

Malformed points raise ``ValueError`` with the reason, so the processor counts and skips them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.metrics.v1.metrics_pb2 import NumberDataPoint

from driftline import exphist
from driftline.processor.component.ml_points import (
    EMPTY_COUNTS,
    bucket_counts,
    check_point,
    histogram_from_point,
    number,
)
from driftline.processor.ml_drift import explicit as _explicit
from driftline.processor.ml_drift.temporality import Value
from driftline.processor.ml_drift.window import Part


def part_from_point(point: Any) -> Part:
    """An OTLP ``ExponentialHistogramDataPoint`` as the ``Part`` a window queues: what
    ``histogram_from_point`` gives, without building its objects (the per-point hot path).
    An absent negative side is not read (its offset and counts are the defaults)."""
    scale = point.scale
    positive = point.positive
    if point.HasField("negative"):
        negative = point.negative
        negative_offset, negative_counts = negative.offset, bucket_counts(negative)
    else:
        negative_offset, negative_counts = 0, EMPTY_COUNTS
    positive_offset, positive_counts = positive.offset, bucket_counts(positive)
    zero_count, count = point.zero_count, point.count
    check_point(scale, zero_count, positive_offset, positive_counts, negative_offset,
           negative_counts, count)
    total, low, high = _sum_min_max(point)
    return (scale, zero_count, positive_offset, positive_counts, negative_offset,
            negative_counts, count, total, low, high)


def _sum_min_max(point: Any) -> tuple[float, float, float]:
    """The optional ``sum``, ``min`` and ``max`` of ``point`` (NaN, inf and -inf when unset).
    A value other than 0.0 can only have been set, so ``HasField`` is asked only about 0.0."""
    total, low, high = point.sum, point.min, point.max
    if not total and not point.HasField("sum"):
        total = math.nan
    if not low and not point.HasField("min"):
        low = math.inf
    if not high and not point.HasField("max"):
        high = -math.inf
    return total, low, high


def _rows_value(point: NumberDataPoint) -> float:
    value = number(point)
    if not math.isfinite(value) or not 0 <= value <= exphist.MAX_COUNT:
        raise ValueError(f"count {value!r} is not a number of rows from 0 to "
                         f"{exphist.MAX_COUNT}")
    return value


def point_reader(kind: str, cumulative: bool = True) -> Callable[[Any], Value | Part]:
    """What reads the value of a point of data ``kind`` (chosen once per metric, not per
    point); it raises ``ValueError`` on a malformed point. A delta exponential histogram
    (``cumulative`` False) comes as a ``Part``, the form windows queue."""
    if kind == "exponential_histogram":
        return histogram_from_point if cumulative else part_from_point
    if kind == "histogram":
        return _explicit.from_point
    return _rows_value
