"""OTLP metric data points read and checked: exponential histograms, numbers, attributes.

Malformed points raise ``ValueError`` with the reason, so the processor counts and skips them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import NumberDataPoint

from driftline import exphist
from driftline.exphist import Buckets, ExpHistogram

EMPTY_COUNTS = np.zeros(0, dtype=np.int64)


def _attribute_text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind in ("int_value", "double_value", "bool_value"):
        return str(getattr(value, kind))
    return ""


def attributes_of(point: Any) -> dict[str, str]:
    """A point's attributes as text (numbers and booleans spelled out, others empty)."""
    out = {}
    for kv in point.attributes:
        value = kv.value
        text = value.string_value  # most are strings: one read instead of WhichOneof first
        out[kv.key] = text if text else _attribute_text(value)
    return out


def histogram_from_point(point: Any) -> ExpHistogram:
    """An OTLP ``ExponentialHistogramDataPoint`` as an ``ExpHistogram``.

    Absent ``min``/``max`` become infinities (ignored when clipping) and an absent ``sum``
    becomes NaN: drift statistics never use the current window's sum.
    """
    scale = point.scale
    positive, negative = _buckets(point.positive), _buckets(point.negative)
    check_point(scale, point.zero_count, positive.offset, positive.counts, negative.offset,
           negative.counts, point.count)
    return ExpHistogram(
        scale=scale,
        zero_count=point.zero_count,
        positive=positive,
        negative=negative,
        count=point.count,
        sum=point.sum if point.HasField("sum") else math.nan,
        min=point.min if point.HasField("min") else math.inf,
        max=point.max if point.HasField("max") else -math.inf,
    )


def bucket_counts(buckets: Any) -> np.ndarray:
    """One sign's bucket counts. Slicing the repeated field to a list in C and converting
    that list is about 15% cheaper than ``np.fromiter`` over the field (and much cheaper
    than ``np.asarray`` on it); an empty one is not converted at all."""
    counts = buckets.bucket_counts[:]
    if not counts:
        return EMPTY_COUNTS
    try:
        return np.array(counts, dtype=np.int64)
    except OverflowError:  # a valid uint64 past int64: beyond MAX_COUNT anyway
        raise ValueError(f"a bucket count is over {exphist.MAX_COUNT}") from None


def check_header(point: Any) -> None:
    """Raise ``ValueError`` when an ``ExponentialHistogramDataPoint`` is beyond sane limits
    by its scalars alone: an unsupported scale, buckets no float64 can fall in
    (``exphist.check_buckets``: they would cost memory over their whole span), or a count or
    zero count past ``exphist.MAX_COUNT``. Cheap: no bucket count is read."""
    _check_scalars(point.scale, point.zero_count, point.positive.offset,
                   len(point.positive.bucket_counts), point.negative.offset,
                   len(point.negative.bucket_counts), point.count)


def _check_scalars(scale: int, zero_count: int, positive_offset: int, positive_size: int,
                   negative_offset: int, negative_size: int, count: int) -> None:
    exphist.check_buckets(scale, positive_offset, positive_size)
    exphist.check_buckets(scale, negative_offset, negative_size)
    if count > exphist.MAX_COUNT or zero_count > exphist.MAX_COUNT:
        raise ValueError(f"count {count} or zero count {zero_count} is over "
                         f"{exphist.MAX_COUNT}")


def check_point(scale: int, zero_count: int, positive_offset: int, positive: np.ndarray,
           negative_offset: int, negative: np.ndarray, count: int) -> None:
    """``check_header``, and every bucket count at most ``exphist.MAX_COUNT`` (past it the
    sums would overflow)."""
    _check_scalars(scale, zero_count, positive_offset, positive.size, negative_offset,
                   negative.size, count)
    for counts in (positive, negative):
        if counts.size and int(counts.max()) > exphist.MAX_COUNT:
            raise ValueError(f"a bucket count is over {exphist.MAX_COUNT}")


def _buckets(buckets: Any) -> Buckets:
    return Buckets(buckets.offset, bucket_counts(buckets))


def number(point: NumberDataPoint) -> float:
    """A sum point's value, int or double."""
    return point.as_int if point.WhichOneof("value") == "as_int" else point.as_double


def resource_text(attributes: Sequence[KeyValue]) -> str:
    """The resource attributes as a stable text, part of a cumulative stream's identity."""
    return json.dumps(sorted((kv.key, kv.value.SerializeToString().hex())
                             for kv in attributes))
