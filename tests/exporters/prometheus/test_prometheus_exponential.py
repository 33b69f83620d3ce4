"""Exponential histograms in the prometheus exporter: the fast paths of its hot loop.

A point finds its series by the attribute bytes expected at its position (``_Routes``) and
its buckets are queued serialized, decoded at fold time with numpy (``_classic_bins``).
These tests feed orders, attribute sets and bucket layouts where a wrong fast path would
count a point in the wrong series or bucket.
"""

from __future__ import annotations

import bisect
import random

import numpy as np
import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import ExponentialHistogramDataPoint, Metric

from driftline import semconv
from driftline.exporters.prometheus.exporter import PrometheusExporter, PrometheusExporterConfig
from driftline.exporters.prometheus_series import classic_bins
from driftline.exporters.prometheus_series import series as prometheus
from tests.exporters.prometheus.test_prometheus_exporter import (
    CUMULATIVE,
    DELTA,
    attrs,
    batch,
    samples,
)

Buckets = ExponentialHistogramDataPoint.Buckets


def exponential(points: list[ExponentialHistogramDataPoint], temporality: int = DELTA
                ) -> Metric:
    metric = Metric(name=semconv.ML_FEATURE_VALUE, unit=semconv.UNIT_DIMENSIONLESS)
    metric.exponential_histogram.aggregation_temporality = temporality
    metric.exponential_histogram.data_points.extend(points)
    return metric


def point(count: int = 1, *, time_unix_nano: int = 1, scale: int = 0,
          **labels: str) -> ExponentialHistogramDataPoint:
    """``count`` values in (2, 4] (bucket 1 at scale 0)."""
    found = ExponentialHistogramDataPoint(
        count=count, scale=scale, sum=3.0 * count, min=3.0, max=3.0,
        time_unix_nano=time_unix_nano, attributes=attrs(**labels))
    found.positive.offset = 1
    found.positive.bucket_counts.append(count)
    return found


def counts(exporter: PrometheusExporter) -> dict[str, int]:
    """``_count`` per series, keyed by the series' labels."""
    return {line.split("{")[1].split("}")[0]: int(line.rsplit(" ", 1)[1])
            for line in samples(exporter.render()) if line.startswith("ml_feature_value_count")}


def expected_labels(**labels: str) -> str:
    names = {"ML_FEATURE_NAME": "ml_feature_name", "ML_MODEL_NAME": "ml_model_name"}
    pairs = [(names[k], v) for k, v in labels.items()] + [
        ("job", "churn-api"), ("otel_scope_name", semconv.PROCESSOR_SCOPE),
        ("otel_scope_version", "0.1.0")]
    return ",".join(f'{name}="{value}"' for name, value in sorted(pairs))


def test_points_find_their_series_whatever_the_order_and_attribute_prefixes() -> None:
    # {age} is a prefix of {age, m1}'s attribute bytes; {tenure} has the same length as {age}.
    series = [{"ML_FEATURE_NAME": "age"},
              {"ML_FEATURE_NAME": "age", "ML_MODEL_NAME": "m1"},
              {"ML_FEATURE_NAME": "tenure"},
              {"ML_FEATURE_NAME": "agf"}]
    orders = [[0, 1, 2], [1, 0, 2], [2, 0], [0, 1, 2, 3], [3, 1, 0, 2], [0, 0, 1], [0, 1, 2]]
    exporter = PrometheusExporter(PrometheusExporterConfig())
    for order in orders:
        exporter.consume_metrics(batch(exponential([point(**series[i]) for i in order])))

    expected = {expected_labels(**labels): sum(order.count(i) for order in orders)
                for i, labels in enumerate(series)}
    assert counts(exporter) == expected


def test_cumulative_points_replace_and_late_ones_are_ignored() -> None:
    exporter = PrometheusExporter(PrometheusExporterConfig())
    for count, time_unix_nano in ((5, 20), (2, 10), (7, 30), (9, 30)):
        exporter.consume_metrics(batch(exponential(
            [point(count, time_unix_nano=time_unix_nano, ML_FEATURE_NAME="age")], CUMULATIVE)))

    lines = [line for line in samples(exporter.render()) if line.startswith("ml_feature_value")]
    labels = expected_labels(ML_FEATURE_NAME="age")
    assert lines == [f'ml_feature_value_bucket{{{labels},le="2"}} 0',
                     f'ml_feature_value_bucket{{{labels},le="4"}} 9',
                     f'ml_feature_value_bucket{{{labels},le="+Inf"}} 9',
                     f"ml_feature_value_sum{{{labels}}} 27",
                     f"ml_feature_value_count{{{labels}}} 9"]


def test_points_beyond_max_series_or_out_of_scale_are_dropped_and_counted() -> None:
    exporter = PrometheusExporter(PrometheusExporterConfig(max_series=2))
    for _ in range(2):
        exporter.consume_metrics(batch(exponential([
            point(ML_FEATURE_NAME="a"), point(ML_FEATURE_NAME="b", scale=99),
            point(ML_FEATURE_NAME="c"), point(ML_FEATURE_NAME="d")])))

    assert counts(exporter) == {expected_labels(ML_FEATURE_NAME="a"): 2,
                                expected_labels(ML_FEATURE_NAME="c"): 2}
    assert exporter.dropped_points[prometheus.REASON_SERIES_LIMIT] == 2
    assert exporter.dropped_points[prometheus.REASON_EXPONENTIAL_HISTOGRAM] == 2


def random_buckets(rng: random.Random) -> Buckets:
    buckets = Buckets()
    if rng.random() < 0.8:
        buckets.offset = rng.choice([0, 1, -1, 27, -200, 2**31 - 1, -2**31,
                                     rng.randint(-10**6, 10**6)])
    if rng.random() < 0.8:
        buckets.bucket_counts.extend(
            rng.choice([0, 1, 127, 128, 300, 2**40, 2**63, 2**64 - 1, rng.randint(0, 10**9)])
            for _ in range(rng.randint(0, 50)))
    return buckets


def test_serialized_buckets_decode_as_protobuf_reads_them() -> None:
    rng = random.Random(5)
    for _ in range(500):
        messages = [random_buckets(rng) for _ in range(rng.randint(0, 6))]
        offsets, sizes, counts_ = classic_bins._decode_buckets(
            [m.SerializeToString() for m in messages])
        assert offsets.tolist() == [m.offset for m in messages]
        assert sizes.tolist() == [len(m.bucket_counts) for m in messages]
        assert counts_.tolist() == [c for m in messages for c in m.bucket_counts]


def test_buckets_with_unknown_fields_are_decoded_by_protobuf() -> None:
    plain = Buckets(offset=3, bucket_counts=[1, 2]).SerializeToString()
    unknown_fixed64 = plain + bytes([3 << 3 | 1]) + b"\xff" * 8  # field 3, not a varint
    assert classic_bins._decode_canonical_buckets([plain, unknown_fixed64]) is None
    offsets, sizes, counts_ = classic_bins._decode_buckets([unknown_fixed64, plain])
    assert (offsets.tolist(), sizes.tolist(), counts_.tolist()) == ([3, 3], [2, 2], [1, 2, 1, 2])


# Narrow ranges put the edges on a grid of (scale, index), wide ones compute them one by one.
@pytest.mark.parametrize(("scales", "offsets"), [((-2, 5), (-10, 20)), ((0, 5), (-900, 900))])
def test_a_fold_counts_every_bucket_where_its_edge_falls(scales: tuple[int, int],
                                                         offsets: tuple[int, int]) -> None:
    rng = np.random.default_rng(8)
    bounds = tuple(sorted(set(rng.normal(0, 20, 12).round(3))))
    pending = classic_bins.PendingPoints()
    expected = [0] * (len(bounds) + 1)
    zero_bucket = bisect.bisect_left(bounds, 0.0)
    for _ in range(300):
        scale = int(rng.integers(*scales))
        zero_count = int(rng.integers(0, 3))
        sides = []
        for sign in (1, -1):
            offset = int(rng.integers(*offsets))
            bucket_counts = rng.integers(0, 9, int(rng.integers(0, 6))).tolist()
            sides.append(Buckets(offset=offset, bucket_counts=bucket_counts).SerializeToString())
            for i, count in enumerate(bucket_counts):
                # The upper edge of a positive bucket, the lower edge of a negative one.
                index = offset + i + (1 if sign > 0 else 0)
                edge = sign * float(np.exp2(np.ldexp(float(index), -scale)))
                expected[bisect.bisect_left(bounds, edge)] += count
        expected[zero_bucket] += zero_count
        pending.add(scale, zero_count, *sides)

    assert pending.fold(bounds).tolist() == expected
    assert len(pending) == 0
