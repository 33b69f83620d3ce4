"""ml_drift's windowing shortcuts compute what the plain per-point reading computes.

Attribute keys guessed from the last request, attribute sets found by their bytes, columns
and resources remembered per open window, and the point reader's skips: each is checked
against the slow path it replaces.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    AGGREGATION_TEMPORALITY_DELTA,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from driftline import semconv
from driftline.processor.component import PartialRejection
from driftline.processor.component.attribute_bytes import attribute_bytes, attribute_key
from driftline.processor.component.ml_points import histogram_from_point
from driftline.processor.ml_drift.config import LimitsConfig, MlDriftConfig
from driftline.processor.ml_drift.points import part_from_point
from driftline.processor.ml_drift.processor import MlDriftProcessor
from driftline.processor.ml_drift.window import part_of

NS = 1_000_000_000
WINDOW_S = 10
T0 = 1_700_000_000 * NS


def _kv(attributes: Sequence[tuple[str, Any]]) -> list[KeyValue]:
    out = []
    for key, value in attributes:
        any_value = AnyValue(int_value=value) if isinstance(value, int) \
            else AnyValue(string_value=value)
        out.append(KeyValue(key=key, value=any_value))
    return out


def _point(attributes: Sequence[tuple[str, Any]], time_ns: int = T0, counts: Sequence[int] = (3, 1),
           **fields: Any) -> ExponentialHistogramDataPoint:
    point = ExponentialHistogramDataPoint(attributes=_kv(attributes), time_unix_nano=time_ns,
                                          count=sum(counts), scale=2, **fields)
    point.positive.offset = -3
    point.positive.bucket_counts.extend(counts)
    return point


MODEL = [(semconv.ML_MODEL_NAME, "churn"), (semconv.ML_MODEL_VERSION, "3"),
         (semconv.ML_OPERATION, "predict")]


@pytest.mark.parametrize("previous_attributes", [
    None,
    MODEL,  # the same set
    MODEL[:2],  # a prefix of the point's set: one more attribute follows in the point
    [*MODEL, ("extra", "x")],  # longer than the point's set
    [(semconv.ML_MODEL_NAME, "churn2"), *MODEL[1:]],
    [],
])
def test_an_attribute_key_guess_is_taken_only_when_it_is_the_key(
        previous_attributes: list[tuple[str, Any]] | None) -> None:
    point = _point(MODEL, sum=1.5)
    previous = None if previous_attributes is None \
        else attribute_key(_point(previous_attributes, time_ns=T0 + 5, counts=(9,)))
    assert attribute_key(point, previous) == (attribute_bytes(point), len(MODEL))


def test_an_attribute_key_guess_from_another_point_kind_is_checked() -> None:
    guess = attribute_key(_point(MODEL))
    number = NumberDataPoint(attributes=_kv(MODEL), time_unix_nano=T0, as_int=4)
    assert attribute_key(number, guess) == (attribute_bytes(number), len(MODEL))
    empty = ExponentialHistogramDataPoint(time_unix_nano=T0, count=1, zero_count=1)
    assert attribute_key(empty, guess) == (b"", 0)


@pytest.mark.parametrize("fields", [
    {},  # no sum, min or max
    {"sum": 0.0, "min": 0.0, "max": 0.0},  # set to the value an unset one reads as
    {"sum": -0.0, "min": -2.5, "max": 7.0},
    {"sum": math.nan},
    {"negative": ExponentialHistogramDataPoint.Buckets(offset=4)},  # present, no counts
    {"negative": ExponentialHistogramDataPoint.Buckets(offset=-2, bucket_counts=[5, 0, 2])},
])
def test_part_from_point_is_histogram_from_point(fields: dict[str, Any]) -> None:
    point = _point(MODEL, zero_count=2, **fields)
    part = part_from_point(point)
    expected = part_of(histogram_from_point(point))
    assert len(part) == len(expected)
    for got, want in zip(part, expected, strict=True):
        if isinstance(want, np.ndarray):
            assert got.dtype == np.int64 and got.tolist() == want.tolist()
        elif isinstance(want, float) and math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == want and math.copysign(1, got) == math.copysign(1, want)


class _Uncached(MlDriftProcessor):
    """The processor with every windowing shortcut turned off: attributes read per point,
    the resource added and columns checked in every batch."""

    def _attributes(self, point: Any, key: bytes | None) -> Any:
        return super()._attributes(point, None)

    def _add_resource(self, memo: Any, resource: Sequence[KeyValue]) -> None:
        memo.window.add_resource(resource)

    def _column_in(self, memo: Any, column: str) -> str:
        column = super()._column_in(memo, column)
        memo.columns.clear()
        return column


class _Discard:
    def consume_metrics(self, batch: Sequence[ResourceMetrics]) -> None:
        pass


def _request(resource: Mapping[str, Any], points: Sequence[ExponentialHistogramDataPoint],
             rows: Sequence[NumberDataPoint] = (),
             temporality: int = AGGREGATION_TEMPORALITY_DELTA) -> list[ResourceMetrics]:
    metrics = [Metric(name=semconv.ML_FEATURE_VALUE, exponential_histogram=ExponentialHistogram(
        data_points=points, aggregation_temporality=temporality))]
    if rows:
        metrics.append(Metric(name=semconv.ML_PREDICT_ROWS, sum=Sum(
            data_points=rows, aggregation_temporality=temporality, is_monotonic=True)))
    return [ResourceMetrics(resource=Resource(attributes=_kv(list(resource.items()))),
                            scope_metrics=[ScopeMetrics(metrics=metrics)])]


def _requests() -> list[list[ResourceMetrics]]:
    """Requests where the shortcuts' guesses hold, then fail: the same sets in the same order,
    reordered, with attributes in another order or added, other resources, late points,
    models past ``max_streams`` and features past ``max_features``, frameworks changing."""
    app = {semconv.SERVICE_NAME: "churn-api", "service.instance.id": "pod-1"}
    other_pod = {**app, "service.instance.id": "pod-2"}

    def feature(model: str, name: str, **extra: Any) -> list[tuple[str, Any]]:
        return [(semconv.ML_MODEL_NAME, model), (semconv.ML_MODEL_VERSION, "3"),
                (semconv.ML_MODEL_FRAMEWORK, extra.pop("framework", "sklearn")),
                (semconv.ML_OPERATION, "predict"), (semconv.ML_FEATURE_NAME, name),
                *extra.items()]

    sets = [feature(m, f) for m in ("a", "b") for f in ("f1", "f2", "f3", "f4")]
    requests = []
    for step in range(12):
        time_ns = T0 + step * 3 * NS
        ordered = sets if step % 4 != 2 else list(reversed(sets))
        points = [_point(s, time_ns, counts=(step + i, 1)) for i, s in enumerate(ordered)]
        if step == 5:
            points.append(_point(list(reversed(sets[0])), time_ns))  # same set, other order
            points.append(_point(feature("a", "f1", run=7), time_ns))  # one more attribute
            points.append(_point(feature("a", "f1", framework="xgboost"), time_ns))
        if step in (6, 7):
            points.append(_point(feature("c", "f1"), time_ns))  # past max_streams
            points.append(_point(sets[0], time_ns - 2 * WINDOW_S * NS))  # late
        if step == 8:
            points.append(_point([(semconv.ML_FEATURE_NAME, "f1")], time_ns))  # no model
        if step in (8, 9):
            points.append(_point(feature("a", "f9"), time_ns))  # past max_features
        rows = [NumberDataPoint(attributes=_kv(feature(m, "")[:4]), time_unix_nano=time_ns,
                                as_int=100 + step) for m in ("a", "b")]
        resource = other_pod if step in (3, 4, 9) else app
        requests.append(_request(resource, points, rows))
    cumulative = [_point(sets[0], T0 + (20 + i) * NS, counts=(5 * (i + 1), i),
                         start_time_unix_nano=T0) for i in range(3)]
    requests += [_request(app, [p], temporality=AGGREGATION_TEMPORALITY_CUMULATIVE)
                 for p in cumulative]
    return requests


def _state(processor: MlDriftProcessor) -> tuple[Any, ...]:
    """The counters and the open windows (as JSON: an unset sum is NaN, unequal to itself)."""
    windows = {(key.text(), index): json.dumps(window.to_dict(), sort_keys=True)
               for (key, index), window in processor._windowing.windows.items()}
    return processor.stats(), windows


def test_the_shortcuts_window_what_the_plain_reading_windows() -> None:
    config = MlDriftConfig(window=f"{WINDOW_S}s", grace="1s",
                           limits=LimitsConfig(max_streams=2, max_features=4))
    clock_ns = [T0]
    fast = MlDriftProcessor(config, _Discard(), clock=lambda: clock_ns[0], profiles={})
    plain = _Uncached(config, _Discard(), clock=lambda: clock_ns[0], profiles={})
    for step, request in enumerate(_requests()):
        clock_ns[0] = T0 + step * 3 * NS
        rejected = []
        for processor in (fast, plain):
            try:
                processor.consume_metrics(request)
                rejected.append(0)
            except PartialRejection as exc:  # the point without a model
                rejected.append(exc.rejected)
        assert rejected[0] == rejected[1] == (1 if step == 8 else 0), f"request {step}"
        assert _state(fast) == _state(plain), f"request {step}"
    stats = fast.stats()
    assert stats.late_points and stats.stream_overflow_points
    assert stats.feature_overflow_points and stats.invalid_points
