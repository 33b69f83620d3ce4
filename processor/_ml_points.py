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
from driftline.processor._temporality import Value


def _attribute_text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind in ("int_value", "double_value", "bool_value"):
        return str(getattr(value, kind))
    return ""


def attributes_of(point: Any) -> dict[str, str]:
    """A point's attributes as text (numbers and booleans spelled out, others empty)."""
    return {kv.key: _attribute_text(kv.value) for kv in point.attributes}


def histogram_from_point(point: Any) -> ExpHistogram:
    """An OTLP ``ExponentialHistogramDataPoint`` as an ``ExpHistogram``.

    Absent ``min``/``max`` become infinities (ignored when clipping) and an absent ``sum``
    becomes NaN: drift statistics never use the current window's sum.
    """
    if not exphist.MIN_SCALE <= point.scale <= exphist.MAX_SCALE:
        raise ValueError(f"scale {point.scale} outside {exphist.MIN_SCALE}..{exphist.MAX_SCALE}")
    return ExpHistogram(
        scale=point.scale,
        zero_count=point.zero_count,
        positive=Buckets(point.positive.offset,
                         np.asarray(point.positive.bucket_counts, dtype=np.int64)),
        negative=Buckets(point.negative.offset,
                         np.asarray(point.negative.bucket_counts, dtype=np.int64)),
        count=point.count,
        sum=point.sum if point.HasField("sum") else math.nan,
        min=point.min if point.HasField("min") else math.inf,
        max=point.max if point.HasField("max") else -math.inf,
    )


def number(point: NumberDataPoint) -> float:
    """A sum point's value, int or double."""
    return point.as_int if point.WhichOneof("value") == "as_int" else point.as_double


def point_value(kind: str, point: Any) -> Value:
    """The point's value; raises ``ValueError`` on a malformed one."""
    if kind == "exponential_histogram":
        return histogram_from_point(point)
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
