"""attribute_bytes: equal bytes exactly when the points carry the same attributes in order."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    NumberDataPoint,
)

from driftline.processor.component.attribute_bytes import attribute_bytes


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


ATTRIBUTES = [_kv("ml.model.name", AnyValue(string_value="fraud")),
              _kv("ml.feature.name", AnyValue(string_value="x" * 300)),  # two-byte length
              _kv("n", AnyValue(int_value=-5)),
              _kv("flag", AnyValue(bool_value=True))]


@pytest.mark.parametrize("kind", [ExponentialHistogramDataPoint, HistogramDataPoint,
                                  NumberDataPoint])
def test_the_bytes_read_back_as_the_attributes(kind: type) -> None:
    point = kind(attributes=ATTRIBUTES, time_unix_nano=7, count=3) \
        if kind is not NumberDataPoint else kind(attributes=ATTRIBUTES, as_int=3)
    key = attribute_bytes(point)
    assert key is not None
    assert list(kind.FromString(key).attributes) == ATTRIBUTES


def test_points_differing_only_outside_their_attributes_share_the_key() -> None:
    a = ExponentialHistogramDataPoint(attributes=ATTRIBUTES, count=1, scale=3)
    b = ExponentialHistogramDataPoint(attributes=ATTRIBUTES, count=900, scale=-2, sum=4.5)
    a.positive.bucket_counts.extend([1, 2, 3])
    assert attribute_bytes(a) == attribute_bytes(b)


@pytest.mark.parametrize("change", ["value", "key", "kind", "missing", "extra"])
def test_different_attributes_give_different_keys(change: str) -> None:
    other = [KeyValue(key=kv.key, value=kv.value) for kv in ATTRIBUTES]
    if change == "value":
        other[0].value.string_value = "fraud2"
    elif change == "key":
        other[0].key = "ml.model.nam"
    elif change == "kind":
        other[2].value.Clear()
        other[2].value.string_value = "-5"
    elif change == "missing":
        other.pop()
    else:
        other.append(_kv("extra", AnyValue(string_value="")))
    a = NumberDataPoint(attributes=ATTRIBUTES, as_int=1)
    b = NumberDataPoint(attributes=other, as_int=1)
    assert attribute_bytes(a) != attribute_bytes(b)


def test_a_point_without_attributes_has_the_empty_key() -> None:
    assert attribute_bytes(NumberDataPoint(as_double=1.0, time_unix_nano=5)) == b""
