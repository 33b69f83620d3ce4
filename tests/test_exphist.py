"""Exponential-histogram math against the OpenTelemetry SDK's own aggregation and raw data."""

from __future__ import annotations

import numpy as np
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

from driftline import _indexing, exphist

RNG = np.random.default_rng(7)

# The SDK's Histogram API drops negative values, so SDK parity is checked on magnitudes.
SDK_CASES = {
    "lognormal wide": RNG.lognormal(0, 2, 5000),
    "exact powers of two": np.array([0.25, 0.5, 1.0, 2.0, 4.0, 3.0, 1024.0]),
    "tiny values": RNG.uniform(0, 1e-3, 300),
    "with zeros": np.r_[RNG.exponential(1, 1000), 0.0, 0.0, 0.0],
    "subnormal and one": np.array([1e-310, 1.0]),
    "huge range": np.array([1e-200, 1e200]),
    "single value": np.array([3.14159]),
}


def _sdk_point(values: np.ndarray):
    reader = InMemoryMetricReader()
    view = View(instrument_name="h", aggregation=ExponentialBucketHistogramAggregation())
    provider = MeterProvider(metric_readers=[reader], views=[view])
    histogram = provider.get_meter("test").create_histogram("h")
    for value in values:
        histogram.record(float(value))
    data = reader.get_metrics_data()
    provider.shutdown()
    return data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]


def _trim(counts) -> list[int]:
    counts = [int(c) for c in counts]
    while counts and counts[-1] == 0:
        counts.pop()
    return counts


@pytest.mark.parametrize("case", sorted(SDK_CASES))
def test_indexing_matches_the_sdk_aggregation(case: str) -> None:
    values = SDK_CASES[case]
    sdk = _sdk_point(values)
    mine = exphist.from_values(values)
    assert mine.scale == sdk.scale
    assert mine.zero_count == sdk.zero_count
    assert mine.positive.offset == sdk.positive.offset
    assert _trim(mine.positive.counts) == _trim(sdk.positive.bucket_counts)
    assert mine.count == sdk.count
    assert mine.sum == pytest.approx(sdk.sum)
    assert (mine.min, mine.max) == (sdk.min, sdk.max)


def test_every_value_lies_inside_its_bucket_boundaries() -> None:
    values = np.r_[RNG.lognormal(0, 3, 20000), 2.0 ** np.arange(-30, 30)]
    for scale in (-3, 0, 3, 8, 20):
        index = exphist.map_to_index(values, scale)
        lower = exphist.lower_boundary(index, scale)
        upper = exphist.lower_boundary(index + 1, scale)
        # Upper-inclusive buckets; allow one ulp where exp2 rounds a boundary.
        assert np.all(values > lower * (1 - 1e-15))
        assert np.all(values <= upper * (1 + 1e-15))


def test_negative_values_mirror_positive_ones() -> None:
    values = RNG.normal(0, 1, 10000)
    both = exphist.from_values(values)
    assert both.count == 10000
    assert both.negative.counts.sum() == np.sum(values < 0)
    assert both.positive.counts.sum() == np.sum(values > 0)
    mirrored = exphist.from_values(-values)
    assert mirrored.scale == both.scale
    assert mirrored.negative.offset == both.positive.offset
    assert np.array_equal(mirrored.negative.counts, both.positive.counts)
    assert both.min == values.min() and both.max == values.max()


def test_buckets_never_exceed_max_size() -> None:
    values = np.r_[RNG.lognormal(0, 8, 5000), -RNG.lognormal(0, 8, 5000)]
    for max_size in (20, 160):
        hist = exphist.from_values(values, max_size=max_size)
        assert hist.positive.counts.size <= max_size
        assert hist.negative.counts.size <= max_size
        # ... and one scale finer would not fit.
        finer = exphist.map_to_index(np.abs(values[values > 0]), hist.scale + 1)
        assert finer.max() - finer.min() + 1 > max_size or hist.scale == exphist.MAX_SCALE


def test_downscale_equals_indexing_at_the_coarser_scale() -> None:
    values = RNG.lognormal(0, 1, 5000)
    hist = exphist.from_values(values)
    coarser = exphist.downscale(hist, hist.scale - 3)
    index = exphist.map_to_index(values, hist.scale - 3)
    assert coarser.positive.offset == index.min()
    assert np.array_equal(coarser.positive.counts, np.bincount(index - index.min()))
    with pytest.raises(ValueError, match="cannot upscale"):
        exphist.downscale(hist, hist.scale + 1)


def test_merge_of_parts_equals_histogram_of_whole() -> None:
    values = np.r_[RNG.normal(0, 1, 20000), RNG.lognormal(3, 1, 5000), np.zeros(50)]
    RNG.shuffle(values)
    parts = [exphist.from_values(chunk) for chunk in np.array_split(values, 7)]
    merged = exphist.merge(parts)
    whole = exphist.from_values(values)
    assert merged.scale == whole.scale
    assert merged.zero_count == whole.zero_count == 50
    for sign in ("positive", "negative"):
        assert getattr(merged, sign).offset == getattr(whole, sign).offset
        assert np.array_equal(getattr(merged, sign).counts, getattr(whole, sign).counts)
    assert merged.sum == pytest.approx(whole.sum)
    assert (merged.min, merged.max, merged.count) == (whole.min, whole.max, whole.count)


def test_dict_round_trip() -> None:
    hist = exphist.from_values(RNG.normal(0, 1, 1000))
    back = exphist.ExpHistogram.from_dict(hist.to_dict())
    assert back.to_dict() == hist.to_dict()


def test_moments_from_buckets_are_close_to_raw_ones() -> None:
    # Values are taken as uniform within a bucket; buckets at scale >= 2 are at most 19 %
    # wide relative to their position, so the standard deviation is within a few percent.
    # Both moments come from the buckets (see test_drift_exactness for far-off columns).
    for values in (RNG.normal(3, 2, 50000), RNG.lognormal(0, 0.7, 50000)):
        mean, std = exphist.bin_moments(exphist.from_values(values))
        assert abs(mean - values.mean()) <= 0.01 * values.std()
        assert std == pytest.approx(values.std(), rel=0.03)


@pytest.mark.parametrize("name", ["normal", "lognormal", "with zeros", "negative only"])
def test_quantiles_match_numpy_within_a_bucket_width(name: str) -> None:
    values = {
        "normal": RNG.normal(3, 2, 50_000),
        "lognormal": RNG.lognormal(0, 1.5, 50_000),
        "with zeros": np.r_[RNG.exponential(1, 20_000), np.zeros(5_000)],
        "negative only": -RNG.lognormal(2, 0.5, 20_000),
    }[name]
    hist = exphist.from_values(values)
    levels = np.array([0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99])
    estimated = exphist.quantile(hist, levels)
    exact = np.quantile(values, levels)
    # The estimate lies in the bucket of the true quantile: within one bucket width, i.e.
    # (base - 1) relative to the value, base = 2 ** 2 ** -scale.
    relative_width = 2.0 ** 2.0 ** -hist.scale - 1
    assert np.all(np.abs(estimated - exact) <= relative_width * np.abs(exact) + 1e-12)
    assert exphist.quantile(hist, 0.5) == pytest.approx(float(estimated[3]))


def test_quantile_edges_are_min_max_and_empty_is_nan() -> None:
    values = RNG.normal(0, 1, 1000)
    hist = exphist.from_values(values)
    assert exphist.quantile(hist, 0.0) == values.min()
    assert exphist.quantile(hist, 1.0) == values.max()
    assert np.all(np.diff(exphist.quantile(hist, np.linspace(0, 1, 101))) >= 0)
    assert np.isnan(exphist.quantile(exphist.empty(), 0.5))
    assert np.isnan(exphist.quantile(exphist.empty(), [0.1, 0.9])).all()
    # Zeros are a point mass: every level inside the zero bucket's mass is exactly 0.
    zeros = exphist.from_values(np.r_[-np.ones(10), np.zeros(80), np.ones(10)])
    assert exphist.quantile(zeros, [0.2, 0.5, 0.8]).tolist() == [0.0, 0.0, 0.0]
    single = exphist.from_values(np.array([7.5]))
    assert exphist.quantile(single, [0.0, 0.3, 1.0]).tolist() == [7.5, 7.5, 7.5]
    with pytest.raises(ValueError, match="quantile levels"):
        exphist.quantile(hist, 1.5)


GRID_CASES = {
    "normal": RNG.normal(0, 1, 50_000),
    "lognormal": RNG.lognormal(0, 1, 50_000),
    "negative only": -RNG.gamma(2, 3, 50_000),
    "small integers with zeros": RNG.integers(0, 10, 50_000).astype(float),
    "signed integers": RNG.integers(-40, 40, 50_000).astype(float),
    "powers of two and neighbours": np.concatenate([
        2.0 ** RNG.integers(-30, 30, 20_000),
        np.nextafter(2.0 ** RNG.integers(-30, 30, 20_000), 0),
        np.nextafter(2.0 ** RNG.integers(-30, 30, 20_000), np.inf)]),
    "zeros of both signs": np.r_[RNG.exponential(1, 20_000), np.zeros(500), -np.zeros(500)],
    "signed with zeros": np.r_[RNG.normal(0, 1, 20_000), np.zeros(300), -np.zeros(300)],
    "narrow": RNG.normal(1e6, 3, 50_000),
    "rounded money": np.round(RNG.lognormal(4, 1.2, 50_000), 2),
    "subnormal": np.r_[5e-324, 1e-310, RNG.lognormal(0, 1, 1000)],
}


@pytest.mark.parametrize("case", sorted(GRID_CASES))
def test_column_counts_equal_mapping_each_value(case: str) -> None:
    """The fast counting grid gives exactly the counts of mapping every value on its own."""
    values = GRID_CASES[case]
    for scale in (-2, 0, 1, 3, 6, 10, 14):
        spans, expected = {}, {}
        for sign, own in (("positive", values[values > 0]), ("negative", -values[values < 0])):
            if own.size:
                index = exphist.map_to_index(own, scale)
                spans[sign] = (int(index.min()), int(index.max()))
                expected[sign] = np.bincount(index - index.min())
        zeros = int(np.count_nonzero(values == 0))
        positive, negative = _indexing.count_buckets(
            values, scale, spans.get("positive"), spans.get("negative"), zeros)
        for sign, counts in (("positive", positive), ("negative", negative)):
            assert np.array_equal(counts, expected.get(sign, np.zeros(0))), (case, scale, sign)


def test_histogram_of_a_column_keeps_every_value() -> None:
    values = np.r_[GRID_CASES["signed with zeros"], GRID_CASES["signed integers"]]
    hist = exphist.from_values(values)
    assert hist.total == hist.count == values.size
    assert hist.zero_count == np.count_nonzero(values == 0)
    assert hist.negative.counts.sum() == np.count_nonzero(values < 0)


# --- bounds: what one histogram may cost ----------------------------------------------------

# Address-space cap for the child that puts far-apart histograms on one grid: the grid of
# their whole index span at scale 20 (1e-300 to 1e300: about 2**31 bins) would need 16 GiB.
COMMON_BINS_ADDRESS_SPACE_BYTES = 1536 << 20
_FAR_APART_CHILD = """
import numpy as np
from driftline import exphist
low = exphist.from_values(np.array([1e-300]))
high = exphist.from_values(np.array([1e300]))
bins = exphist.common_bins([low, high])
print(bins.counts.tolist(), bins.low.tolist() == sorted(bins.low.tolist()))
"""


def test_common_bins_of_far_apart_histograms_costs_their_buckets_not_their_span() -> None:
    import resource
    import subprocess
    import sys

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (COMMON_BINS_ADDRESS_SPACE_BYTES,) * 2)

    done = subprocess.run([sys.executable, "-c", _FAR_APART_CHILD], capture_output=True,
                          text=True, preexec_fn=cap, timeout=120,
                          env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[[1,", "0],", "[0,", "1]]", "True"]


def test_common_bins_keeps_the_occupied_bins_with_their_edges() -> None:
    a = exphist.from_values(np.array([-3.0, 0.0, 1.0, 1e6]))
    b = exphist.from_values(np.array([-1e-3, 2.0, 2.0]))
    bins = exphist.common_bins([a, b])
    scale = min(a.scale, b.scale)
    values = np.array([-3.0, 0.0, 1.0, 1e6, -1e-3, 2.0, 2.0])
    # Every value lies in the bin whose row counts it, edges ordered along the real line.
    for row, data in ((0, values[:4]), (1, values[4:])):
        assert bins.counts[row].sum() == data.size
    assert np.all(np.diff(bins.low) > 0)
    for value in values:
        inside = np.flatnonzero(((bins.low < value) & (value <= bins.high))
                                | ((bins.low == value) & (bins.high == value)))
        assert inside.size == 1, value
    assert bins.counts.shape[1] == np.count_nonzero(bins.counts.sum(axis=0))
    assert scale == min(a.scale, b.scale)


@pytest.mark.parametrize("scale", [exphist.MIN_SCALE, -1, 0, 3, exphist.MAX_SCALE])
def test_index_limits_hold_every_float_and_nothing_past_it(scale: int) -> None:
    low, high = exphist.index_limits(scale)
    extremes = np.array([np.nextafter(0, 1), np.finfo(np.float64).max])
    index = _indexing.map_to_index(extremes, scale)
    assert low <= int(index[0]) and int(index[1]) <= high
    # Beyond the limits no float64 could lie: the bucket's lower edge is past the largest.
    with np.errstate(over="ignore"):
        assert exphist.lower_boundary(high + 1, scale) == np.inf
    assert exphist.lower_boundary(low, scale) == 0.0
    exphist.check_buckets(scale, low, high - low + 1)
    for offset, size in ((high + 1, 1), (low - 1, 1), (low, high - low + 2)):
        with pytest.raises(ValueError, match=f"scale {scale}"):
            exphist.check_buckets(scale, offset, size)


@pytest.mark.parametrize("values", [[-3.0, -3.0], [-3.0, 0.0, -3.0], [-2.5], [4.0, 4.0]])
def test_a_constant_column_of_one_sign_keeps_its_counts(values: list[float]) -> None:
    """One bucket per sign takes a shortcut; a constant negative column came out of it with
    a count of 0 (two rows recorded, none in any bucket)."""
    hist = exphist.from_values(np.array(values))
    assert hist.total == hist.count == len(values)
    assert int(hist.negative.counts.sum()) == sum(v < 0 for v in values)
