"""``parts_from_points`` (issue 21): a metric's delta exponential points read in one pass give
exactly what ``part_from_point`` gives point by point: the same parts, and for a malformed
point the same ``ValueError`` message, in order, with the good points around it kept."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import ExponentialHistogramDataPoint

from driftline import exphist
from driftline.processor.ml_drift.points import part_from_point, parts_from_points
from driftline.processor.ml_drift.window import Part

Buckets = ExponentialHistogramDataPoint.Buckets


def _point(scale: int = 2, positive: tuple[int, list[int]] | None = (-3, [3, 1]),
           negative: tuple[int, list[int]] | None = None, **fields: Any
           ) -> ExponentialHistogramDataPoint:
    counts = sum(positive[1]) if positive else 0
    counts += sum(negative[1]) if negative else 0
    point = ExponentialHistogramDataPoint(time_unix_nano=1, scale=scale,
                                          count=fields.pop("count", counts), **fields)
    if positive is not None:
        point.positive.CopyFrom(Buckets(offset=positive[0], bucket_counts=positive[1]))
    if negative is not None:
        point.negative.CopyFrom(Buckets(offset=negative[0], bucket_counts=negative[1]))
    return point


def _one_by_one(points: list[ExponentialHistogramDataPoint]) -> list[Part | str]:
    out: list[Part | str] = []
    for point in points:
        try:
            out.append(part_from_point(point))
        except ValueError as exc:
            out.append(str(exc))
    return out


def _assert_same(got: list[Part | ValueError], want: list[Part | str]) -> None:
    assert len(got) == len(want)
    for got_one, want_one in zip(got, want, strict=True):
        if isinstance(want_one, str):
            assert isinstance(got_one, ValueError) and str(got_one) == want_one
            continue
        assert not isinstance(got_one, ValueError)
        for field, expected in zip(got_one, want_one, strict=True):
            if isinstance(expected, np.ndarray):
                assert field.dtype == np.int64 and field.tolist() == expected.tolist()
            elif isinstance(expected, float) and math.isnan(expected):
                assert math.isnan(field)
            else:
                assert field == expected
                assert type(field) is type(expected)


GOOD = [
    _point(),
    _point(sum=0.0, min=0.0, max=0.0),  # set to what an unset one reads as
    _point(sum=-0.0, min=-2.5, max=7.0),
    _point(sum=math.nan),
    _point(negative=(4, [])),  # present, no counts
    _point(negative=(-2, [5, 0, 2]), zero_count=3, count=13),
    _point(positive=None, negative=(1, [1, 2])),
    _point(positive=None),  # empty
    _point(scale=-10, positive=(-2, [1])),
    _point(scale=20, positive=(-1_000_000, [7, 0, 0, 1])),
]

BAD = [
    _point(scale=21),
    _point(scale=-11, positive=None),
    _point(count=exphist.MAX_COUNT + 1),
    _point(zero_count=exphist.MAX_COUNT + 1),
    _point(positive=(0, [exphist.MAX_COUNT + 1])),
    _point(negative=(0, [2**64 - 1]), count=5),  # a valid uint64 past int64
    _point(scale=0, positive=(1023, [1, 1])),  # past the largest float64
    _point(scale=0, negative=(-1076, [1])),  # below the smallest one
]


def test_good_points_read_in_one_pass_are_the_parts_read_one_by_one() -> None:
    _assert_same(parts_from_points(GOOD), _one_by_one(GOOD))
    assert parts_from_points([]) == []


@pytest.mark.parametrize("bad", range(len(BAD)))
def test_a_malformed_point_gets_its_own_error_and_its_neighbours_their_parts(bad: int) -> None:
    points = [*GOOD[:3], BAD[bad], *GOOD[3:]]
    want = _one_by_one(points)
    assert isinstance(want[3], str)  # the point is malformed indeed
    _assert_same(parts_from_points(points), want)


def test_parts_own_their_counts() -> None:
    """A part waits in its window for up to ``PENDING_MERGE_LIMIT`` requests; it must not keep
    the array of every other point of its metric alive (a view would)."""
    parts = parts_from_points(GOOD)
    for part in parts:
        assert not isinstance(part, ValueError)
        for counts in (part[3], part[5]):
            assert counts.base is None or counts.size == 0
