"""OTLP data points as the values ml_drift windows: histograms, explicit buckets, counts.

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
from driftline.processor import _explicit
from driftline.processor._ml_window import Part
from driftline.processor._temporality import Value

_EMPTY = np.zeros(0, dtype=np.int64)


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
    if not exphist.MIN_SCALE <= scale <= exphist.MAX_SCALE:
        raise ValueError(f"scale {scale} outside {exphist.MIN_SCALE}..{exphist.MAX_SCALE}")
    return ExpHistogram(
        scale=scale,
        zero_count=point.zero_count,
        positive=_buckets(point.positive),
        negative=_buckets(point.negative),
        count=point.count,
        sum=point.sum if point.HasField("sum") else math.nan,
        min=point.min if point.HasField("min") else math.inf,
        max=point.max if point.HasField("max") else -math.inf,
    )


def _counts(buckets: Any) -> np.ndarray:
    """One sign's bucket counts; ``np.fromiter`` reads a repeated field about twice as fast
    as ``np.asarray``, and an empty one is not read at all."""
    counts = buckets.bucket_counts
    size = len(counts)
    return np.fromiter(counts, dtype=np.int64, count=size) if size else _EMPTY


def _buckets(buckets: Any) -> Buckets:
    return Buckets(buckets.offset, _counts(buckets))


def part_from_point(point: Any) -> Part:
    """An OTLP ``ExponentialHistogramDataPoint`` as the ``Part`` a window queues: what
    ``histogram_from_point`` gives, without building its objects (the per-point hot path)."""
    scale = point.scale
    if not exphist.MIN_SCALE <= scale <= exphist.MAX_SCALE:
        raise ValueError(f"scale {scale} outside {exphist.MIN_SCALE}..{exphist.MAX_SCALE}")
    positive, negative = point.positive, point.negative
    return (scale, point.zero_count, positive.offset, _counts(positive), negative.offset,
            _counts(negative), point.count,
            point.sum if point.HasField("sum") else math.nan,
            point.min if point.HasField("min") else math.inf,
            point.max if point.HasField("max") else -math.inf)


def number(point: NumberDataPoint) -> float:
    """A sum point's value, int or double."""
    return point.as_int if point.WhichOneof("value") == "as_int" else point.as_double


def point_value(kind: str, point: Any, cumulative: bool = True) -> Value | Part:
    """The point's value; raises ``ValueError`` on a malformed one. A delta exponential
    histogram (``cumulative`` False) comes as a ``Part``, the form windows queue."""
    if kind == "exponential_histogram":
        return histogram_from_point(point) if cumulative else part_from_point(point)
    if kind == "histogram":
        return _explicit.from_point(point)
    value = number(point)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"count {value!r} is not a finite number of rows, 0 or more")
    return value


def resource_text(attributes: Sequence[KeyValue]) -> str:
    """The resource attributes as a stable text, part of a cumulative stream's identity."""
    return json.dumps(sorted((kv.key, kv.value.SerializeToString().hex())
                             for kv in attributes))
