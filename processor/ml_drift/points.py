"""OTLP data points as the values ml_drift windows: delta parts, explicit buckets, counts.

Malformed points raise ``ValueError`` with the reason, so the processor counts and skips them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
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


def parts_from_points(points: Sequence[Any]) -> list[Part | ValueError]:
    """``part_from_point`` of every point of one metric, each part or the ``ValueError`` it
    raises, read in one pass: the bucket counts of all points become one NumPy array and are
    checked at once, instead of one conversion and a few reductions per point (about 10 us
    a point). Parts own copies of their counts (a view would keep the whole metric's array
    alive while any one part waits in a window). When a check fails, the points are read one
    by one, so every error is the one ``part_from_point`` gives."""
    rows = []
    flat: list[int] = []
    extend = flat.extend
    for point in points:
        positive = point.positive
        positive_counts = positive.bucket_counts[:]
        extend(positive_counts)
        if point.HasField("negative"):
            negative = point.negative
            negative_counts = negative.bucket_counts[:]
            extend(negative_counts)
            negative_offset, negative_size = negative.offset, len(negative_counts)
        else:
            negative_offset = negative_size = 0
        total, low, high = point.sum, point.min, point.max  # ``_sum_min_max``, inlined
        if not total and not point.HasField("sum"):
            total = math.nan
        if not low and not point.HasField("min"):
            low = math.inf
        if not high and not point.HasField("max"):
            high = -math.inf
        rows.append((point.scale, point.zero_count, positive.offset, len(positive_counts),
                     negative_offset, negative_size, point.count, total, low, high))
    if not rows:
        return []
    try:
        counts = np.array(flat, dtype=np.int64) if flat else EMPTY_COUNTS
    except OverflowError:  # a count past int64: found (and named) point by point
        return _one_by_one(points)
    (scales, zero_counts, positive_offsets, positive_sizes, negative_offsets, negative_sizes,
     totals) = list(zip(*rows, strict=True))[:7]
    if (max(zero_counts) > exphist.MAX_COUNT or max(totals) > exphist.MAX_COUNT
            or (counts.size and int(counts.max()) > exphist.MAX_COUNT)
            or not _buckets_within_limits(scales, positive_offsets, positive_sizes)
            or not _buckets_within_limits(scales, negative_offsets, negative_sizes)):
        return _one_by_one(points)
    out: list[Part | ValueError] = []
    start = 0
    for (scale, zero_count, positive_offset, positive_size, negative_offset, negative_size,
         count, total, low, high) in rows:
        middle = start + positive_size
        end = middle + negative_size
        out.append((scale, zero_count, positive_offset,
                    counts[start:middle].copy() if positive_size else EMPTY_COUNTS,
                    negative_offset,
                    counts[middle:end].copy() if negative_size else EMPTY_COUNTS,
                    count, total, low, high))
        start = end
    return out


def _buckets_within_limits(scales: Sequence[int], offsets: Sequence[int],
                           sizes: Sequence[int]) -> bool:
    """False when ``exphist.check_buckets`` would raise for any one of these buckets (one
    sign of every point): checked per distinct scale, of which a metric has few."""
    scale_of = np.array(scales, dtype=np.int64)
    offset_of = np.array(offsets, dtype=np.int64)
    size_of = np.array(sizes, dtype=np.int64)
    used = size_of > 0
    for scale in set(scales):
        if not exphist.MIN_SCALE <= scale <= exphist.MAX_SCALE:
            return False
        low, high = exphist.index_limits(scale)
        mine = used & (scale_of == scale)
        if ((offset_of < low) & mine).any() or ((offset_of + size_of - 1 > high) & mine).any():
            return False
    return True


def _one_by_one(points: Sequence[Any]) -> list[Part | ValueError]:
    out: list[Part | ValueError] = []
    for point in points:
        try:
            out.append(part_from_point(point))
        except ValueError as exc:
            # Without its traceback: its frames (and their callers', holding the whole
            # metric's counts) would otherwise live on in a cycle until the next collection.
            out.append(exc.with_traceback(None))
    return out


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
