"""ml_drift with cumulative streams and explicit-bucket histograms.

The explicit-bucket test uses the real OpenTelemetry SDK: a MeterProvider with an
explicit-bucket View and cumulative temporality, its points encoded by the SDK's own OTLP
encoder, fed to the processor.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    ExponentialHistogram,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource as SdkResource

from driftline import drift, exphist, semconv
from driftline.processor.ml_drift import explicit as _explicit
from driftline.processor.ml_drift.temporality import CumulativeToDelta
from driftline.profile import KIND_CATEGORICAL, ProfileBuilder
from tests.processor.ml_drift.test_ml_drift import (
    APP,
    MODEL,
    NS,
    T0,
    Capture,
    Clock,
    _kv,
    exp_point,
    gauges,
    processor,
    reference,
    rows_point,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


BOUNDS = (10.0, 20.0, 30.0, 35.0, 40.0, 45.0, 50.0, 60.0, 70.0, 80.0)


def cumulative_rows(points: list[tuple[int, int, int]]) -> list[ResourceMetrics]:
    """``ml.predict.rows`` as cumulative points ``(start_ns, time_ns, total)``."""
    return [ResourceMetrics(resource=Resource(attributes=_kv(APP)), scope_metrics=[
        ScopeMetrics(metrics=[Metric(name=semconv.ML_PREDICT_ROWS, sum=Sum(
            aggregation_temporality=AGGREGATION_TEMPORALITY_CUMULATIVE, is_monotonic=True,
            data_points=[NumberDataPoint(attributes=_kv(MODEL), start_time_unix_nano=s,
                                         time_unix_nano=t, as_int=v)
                         for s, t, v in points]))])])]


def test_cumulative_rows_become_deltas_with_reset_and_out_of_order() -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({}, clock, capture)
    start = T0 + NS // 2  # the app started after the processor: its first point counts
    clock.at(5)
    proc.consume_metrics(cumulative_rows([(start, T0 + 1 * NS, 100)]))
    proc.consume_metrics(cumulative_rows([(start, T0 + 2 * NS, 250)]))
    proc.consume_metrics(cumulative_rows([(start, T0 + 1 * NS + 5, 180)]))  # out of order
    proc.consume_metrics(cumulative_rows([(start, T0 + 3 * NS, 400)]))
    restart = T0 + 4 * NS  # the app restarted: a new start time, the point is the delta
    proc.consume_metrics(cumulative_rows([(restart, T0 + 5 * NS, 30)]))
    proc.consume_metrics(cumulative_rows([(restart, T0 + 6 * NS, 10)]))  # went down: reset
    clock.at(12)

    assert rows_point(proc.evaluate_due()).as_int == 400 + 30 + 10
    stats = proc.stats()
    assert (stats.cumulative_out_of_order, stats.cumulative_resets) == (1, 2)
    assert (stats.cumulative_initial_dropped, stats.current_cumulative_streams) == (0, 1)


def test_first_cumulative_point_of_an_older_stream_is_only_a_base() -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({}, clock, capture)
    started_before = T0 - 3600 * NS  # running before the processor: its total is history
    clock.at(5)
    proc.consume_metrics(cumulative_rows([(started_before, T0 + 1 * NS, 10_000)]))
    proc.consume_metrics(cumulative_rows([(started_before, T0 + 2 * NS, 10_120)]))
    clock.at(12)

    assert rows_point(proc.evaluate_due()).as_int == 120
    assert proc.stats().cumulative_initial_dropped == 1


def test_cumulative_exponential_histograms_subtract_bucketwise_across_scales(
    rng: np.random.Generator,
) -> None:
    first, second = rng.normal(40, 10, 3000), rng.uniform(0.01, 5000, 2000)
    total = exphist.merge([exphist.from_values(first), exphist.from_values(second)])
    before = exphist.from_values(first)
    assert before.scale > total.scale  # the conversion really has to align scales
    table = CumulativeToDelta(component_start_ns=0)

    assert table.delta("s", 1, 10, before) is before  # first point, start after component
    delta = table.delta("s", 1, 20, total)

    expected = exphist.downscale(exphist.from_values(second), total.scale)
    assert delta.scale == total.scale
    assert delta.count == 2000
    dense = exphist.common_bins([delta, expected]).counts
    assert (dense[0] == dense[1]).all()


def test_exponential_points_with_cumulative_temporality_are_windowed(
    rng: np.random.Generator,
) -> None:
    profile = reference(rng)
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): profile}, clock, capture)
    values = [rng.normal(70, 10, 300), rng.normal(70, 10, 300)]
    cumulative = [exphist.from_values(values[0]), exphist.merge(
        [exphist.from_values(values[0]), exphist.from_values(values[1])])]
    clock.at(5)
    for i, hist in enumerate(cumulative):
        point = exp_point(hist, {**MODEL, semconv.ML_FEATURE_NAME: "age"}, T0 + (i + 1) * NS)
        point.start_time_unix_nano = T0 + NS // 2
        proc.consume_metrics([ResourceMetrics(scope_metrics=[ScopeMetrics(metrics=[Metric(
            name=semconv.ML_FEATURE_VALUE, exponential_histogram=ExponentialHistogram(
                aggregation_temporality=AGGREGATION_TEMPORALITY_CUMULATIVE,
                data_points=[point]))])])])
    clock.at(12)
    values_out = gauges(proc.evaluate_due())

    expected = drift.wasserstein_normed(profile.columns["age"].histogram, cumulative[1],
                                        profile.columns["age"].std)
    assert values_out[(semconv.ML_DRIFT_SCORE, "age", semconv.DRIFT_METHOD_WASSERSTEIN)] == \
        pytest.approx(expected, rel=1e-9)


def sdk_explicit_batches(samples: list[dict[str, np.ndarray]]) -> list[list[ResourceMetrics]]:
    """What an app with its own explicit-bucket View exports (cumulative), per collection."""
    reader = InMemoryMetricReader(
        preferred_temporality={Histogram: AggregationTemporality.CUMULATIVE})
    provider = MeterProvider(
        metric_readers=[reader], resource=SdkResource.create(APP),
        views=[View(instrument_name=semconv.ML_FEATURE_VALUE,
                    aggregation=ExplicitBucketHistogramAggregation(boundaries=BOUNDS))])
    histogram = provider.get_meter("app").create_histogram(semconv.ML_FEATURE_VALUE)
    batches = []
    for sample in samples:
        for name, values in sample.items():
            for value in values:
                histogram.record(float(value), {**MODEL, semconv.ML_FEATURE_NAME: name})
        request = encode_metrics(reader.get_metrics_data())
        batches.append(list(request.resource_metrics))
    provider.shutdown()
    return batches


def test_sdk_explicit_bucket_histograms_are_compared_on_their_bounds(
    rng: np.random.Generator,
) -> None:
    profile = reference(rng)
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): profile}, clock, capture)
    ages = [rng.normal(55, 10, 200), rng.normal(55, 10, 200)]  # +1.5 std: drifted
    incomes = [rng.normal(50, 5, 200), rng.normal(50, 5, 200)]
    batches = sdk_explicit_batches([{"age": ages[0], "income": incomes[0]},
                                    {"age": ages[1], "income": incomes[1]}])
    # The SDK stamps points with the wall clock: the test clock follows it.
    now = max(p.time_unix_nano for b in batches for rm in b for sm in rm.scope_metrics
              for m in sm.metrics for p in m.histogram.data_points)
    clock.now_ns = now
    for batch in batches:
        proc.consume_metrics(batch)
    clock.now_ns = now + 20 * NS
    values = gauges(proc.evaluate_due())

    js = semconv.DRIFT_METHOD_JENSENSHANNON
    expected = {}
    for name, data in (("age", ages), ("income", incomes)):
        counts = np.histogram(np.concatenate(data), bins=[-math.inf, *BOUNDS, math.inf])[0]
        current = _explicit.ExplicitHistogram(BOUNDS, tuple(int(c) for c in counts),
                                              int(counts.sum()), 0.0, math.inf, -math.inf)
        ref, cur = _explicit.as_categories(profile.columns[name].histogram, current)
        expected[name] = drift.jensen_shannon(ref, cur)
    assert values[(semconv.ML_DRIFT_SCORE, "age", js)] == pytest.approx(expected["age"],
                                                                       rel=1e-9)
    assert values[(semconv.ML_DRIFT_SCORE, "income", js)] == pytest.approx(
        expected["income"], rel=1e-9)
    assert values[(semconv.ML_DRIFT_DETECTED, "age", js)] == 1
    assert values[(semconv.ML_DRIFT_DETECTED, "income", js)] == 0
    assert expected["age"] > 0.1 > expected["income"]


def test_projection_of_a_profile_onto_explicit_bounds_matches_the_data(
    rng: np.random.Generator,
) -> None:
    values = rng.normal(40, 10, 100_000)
    hist = exphist.from_values(values)

    projected = _explicit.project(hist, BOUNDS)

    actual = np.histogram(values, bins=[-math.inf, *BOUNDS, math.inf])[0]
    assert projected.sum() == pytest.approx(100_000)
    # Within a bucket values are taken as uniform: the share per explicit bucket is close.
    assert np.abs(projected - actual).max() / 100_000 < 0.01


def category_counts(totals: dict[str, int], time_ns: int, start_ns: int) -> list[ResourceMetrics]:
    """``ml.feature.category`` of feature ``plan`` as cumulative counters per category."""
    points = [NumberDataPoint(attributes=_kv({**MODEL, semconv.ML_FEATURE_NAME: "plan",
                                              semconv.ML_FEATURE_CATEGORY: category}),
                              start_time_unix_nano=start_ns, time_unix_nano=time_ns, as_int=n)
              for category, n in totals.items()]
    return [ResourceMetrics(resource=Resource(attributes=_kv(APP)), scope_metrics=[
        ScopeMetrics(metrics=[Metric(name=semconv.ML_FEATURE_CATEGORY_METRIC, sum=Sum(
            aggregation_temporality=AGGREGATION_TEMPORALITY_CUMULATIVE, is_monotonic=True,
            data_points=points))])])]


def test_cumulative_categorical_counters_are_compared_as_deltas(
    rng: np.random.Generator,
) -> None:
    builder = ProfileBuilder("churn", "3")
    builder.add_column("plan", rng.choice(["basic", "pro", "team"], 4000, p=[0.6, 0.3, 0.1]),
                       kind=KIND_CATEGORICAL)
    builder.add_rows(4000)
    profile = builder.build()
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): profile}, clock, capture)
    start = T0 + NS // 2
    clock.at(5)
    proc.consume_metrics(category_counts({"basic": 60, "pro": 30, "team": 10}, T0 + NS, start))
    # Window 2's deltas: basic +40, pro +100, team +60: the mix moved towards pro and team.
    clock.at(12)
    proc.consume_metrics(category_counts({"basic": 100, "pro": 130, "team": 70},
                                         T0 + 11 * NS, start))
    first = gauges(proc.evaluate_due())
    clock.at(22)
    second = gauges(proc.evaluate_due())

    js = semconv.DRIFT_METHOD_JENSENSHANNON
    reference_counts = profile.columns["plan"].category_counts()
    assert first[(semconv.ML_DRIFT_SCORE, "plan", js)] == pytest.approx(
        drift.jensen_shannon(reference_counts, {"basic": 60, "pro": 30, "team": 10}))
    assert second[(semconv.ML_DRIFT_SCORE, "plan", js)] == pytest.approx(
        drift.jensen_shannon(reference_counts, {"basic": 40, "pro": 100, "team": 60}))
    assert (first[(semconv.ML_DRIFT_DETECTED, "plan", js)],
            second[(semconv.ML_DRIFT_DETECTED, "plan", js)]) == (0, 1)
    assert (first[(semconv.ML_WINDOW_ROWS, "", "")],
            second[(semconv.ML_WINDOW_ROWS, "", "")]) == (100, 200)


def test_first_point_without_a_usable_start_time_is_only_a_base() -> None:
    table = CumulativeToDelta(component_start_ns=100)

    assert table.delta("unknown start", 0, 200, 5.0) is None
    assert table.delta("start == time", 200, 200, 5.0) is None
    assert table.delta("started before us", 50, 200, 5.0) is None
    assert table.delta("started after us", 150, 200, 5.0) == 5.0
    assert table.delta("unknown start", 0, 300, 12.0) == 7.0  # later points are deltas
    assert table.stats["cumulative_initial_dropped"] == 3


def test_stream_table_is_bounded_by_count_and_staleness() -> None:
    table = CumulativeToDelta(component_start_ns=0, max_streams=2, staleness_ns=1000)
    table.delta("a", 1, 10, 1.0)
    table.delta("b", 1, 10, 1.0)
    table.delta("a", 1, 20, 3.0)  # a is now the most recently seen
    table.delta("c", 1, 30, 1.0)  # evicts b, the least recently seen

    assert len(table) == 2
    assert table.stats["cumulative_streams_evicted"] == 1
    assert table.delta("b", 1, 40, 9.0) == 9.0  # b starts anew (and evicts a)
    assert table.stats["cumulative_streams_evicted"] == 2
    table.expire(now_ns=1035)  # c (last seen at 30) is stale, b (40) is not
    assert table.stats["cumulative_streams_evicted"] == 3
    assert (table.entry("a"), table.entry("c")) == (None, None)
    assert table.entry("b") is not None


def test_explicit_bounds_change_is_a_reset() -> None:
    table = CumulativeToDelta(component_start_ns=0)
    first = _explicit.ExplicitHistogram((1.0, 2.0), (1, 2, 3), 6, 9.0, 0.5, 3.0)
    more = _explicit.ExplicitHistogram((1.0, 2.0), (2, 2, 5), 9, 15.0, 0.5, 3.5)
    rebinned = _explicit.ExplicitHistogram((1.0, 5.0), (4, 4, 4), 12, 30.0, 0.5, 9.0)

    table.delta("s", 1, 10, first)
    delta = table.delta("s", 1, 20, more)
    assert (delta.counts, delta.count, delta.sum) == ((1, 0, 2), 3, 6.0)
    assert table.delta("s", 1, 30, rebinned) is rebinned
    assert table.stats["cumulative_resets"] == 1
