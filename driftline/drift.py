"""Drift statistics computed from exponential histograms and category counts.

Reference and current histograms are first put on their common scale (exact bin alignment),
so no raw data is needed at comparison time. Defaults follow Evidently, the best-known open
tool: on references over 1000 rows the verdict is normed Wasserstein >= 0.1 for numeric columns
and Jensen-Shannon distance >= 0.1 for categorical ones; on smaller references it is the
Kolmogorov-Smirnov or chi-square test at p < 0.05. The dataset drifts when at least half of
the columns drift. Binned methods (PSI, KL, Jensen-Shannon, Hellinger) merge neighbouring
buckets until each holds a tenth of the reference, so sparse tails cannot dominate them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from driftline import _drift_methods as methods
from driftline import semconv
from driftline._drift_methods import _cdf, _merge_sparse_bins
from driftline._indexing import map_to_index
from driftline.columns import MAX_DISTINCT_VALUES
from driftline.exphist import Buckets, ExpHistogram, bin_moments, common_bins, downscale

# Floor for empty bins in PSI/KL, as in Evidently, so one empty bin cannot make a score infinite.
PROBABILITY_FLOOR = methods.PROBABILITY_FLOOR

DEFAULT_WASSERSTEIN_THRESHOLD = 0.1
DEFAULT_PSI_THRESHOLD = 0.1
DEFAULT_JENSENSHANNON_THRESHOLD = 0.1
DEFAULT_KL_THRESHOLD = 0.1
DEFAULT_HELLINGER_THRESHOLD = 0.1
DEFAULT_TOTAL_VARIATION_THRESHOLD = 0.1
# p-value methods: a column drifts when the test rejects "same distribution" at this level.
DEFAULT_KS_P_VALUE = 0.05
DEFAULT_CHISQUARE_P_VALUE = 0.05
DEFAULT_DATASET_DRIFT_SHARE = 0.5
# References of at most this many rows get a statistical test as the verdict; larger ones a
# distance, because at large n a test flags differences too small to matter.
DEFAULT_SMALL_REFERENCE_ROWS = 1000
# Binned methods merge bins until each holds at least this share of the reference rows
# (about deciles), so sparse tails cannot dominate the sum.
DEFAULT_MIN_BIN_SHARE = 0.1
DEFAULT_PSI_MIN_BIN_SHARE = DEFAULT_MIN_BIN_SHARE
# Floor for the reference standard deviation when norming Wasserstein (constant columns).
MIN_NORM_STD = 1e-3
# Numeric columns whose reference has at most this many distinct values (codes, flags) are
# judged as categories, as Evidently does; 0 turns it off. At most MAX_DISTINCT_VALUES,
# the number of exact value counts a profile keeps.
DEFAULT_LOW_CARDINALITY_VALUES = 5
MAX_LOW_CARDINALITY_VALUES = MAX_DISTINCT_VALUES
# Where a bucket is wider than this many reference spreads (unit spread at 1e7 and beyond),
# the normed Wasserstein is the exact mean gap over the spread instead of the buckets' one.
UNRESOLVED_SPREADS = 1.0

# The column kinds of driftline.profile (not imported from there: it pulls in the readers).
KIND_NUMERIC = "numeric"
KIND_CATEGORICAL = "categorical"
P_VALUE_METHODS = frozenset({semconv.DRIFT_METHOD_KS, semconv.DRIFT_METHOD_CHISQUARE})
NUMERIC_METHODS = (semconv.DRIFT_METHOD_WASSERSTEIN, semconv.DRIFT_METHOD_KS,
                   semconv.DRIFT_METHOD_PSI, semconv.DRIFT_METHOD_KL,
                   semconv.DRIFT_METHOD_JENSENSHANNON, semconv.DRIFT_METHOD_HELLINGER)
CATEGORICAL_METHODS = (semconv.DRIFT_METHOD_JENSENSHANNON, semconv.DRIFT_METHOD_CHISQUARE,
                       semconv.DRIFT_METHOD_PSI, semconv.DRIFT_METHOD_KL,
                       semconv.DRIFT_METHOD_HELLINGER, semconv.DRIFT_METHOD_TOTAL_VARIATION)
# Scores reported after the verdict, for context (the verdict method is not repeated).
DEFAULT_NUMERIC_CONTEXT = (semconv.DRIFT_METHOD_WASSERSTEIN, semconv.DRIFT_METHOD_KS,
                           semconv.DRIFT_METHOD_PSI)
DEFAULT_CATEGORICAL_CONTEXT = (semconv.DRIFT_METHOD_JENSENSHANNON,
                               semconv.DRIFT_METHOD_CHISQUARE, semconv.DRIFT_METHOD_PSI)


class DriftMethodError(ValueError):
    """A drift method that does not exist or does not apply to the column's kind."""


@dataclass(frozen=True, slots=True)
class DriftScore:
    """One statistic for one column: its value, the threshold and the verdict.

    For test methods (KS, chi-square) ``p_value`` is set and ``threshold`` is a significance
    level: the column drifts when ``p_value < threshold``. Otherwise it drifts when
    ``score >= threshold``.
    """

    column: str
    kind: str
    method: str
    score: float
    threshold: float
    p_value: float | None = None

    @property
    def drifted(self) -> bool:
        if self.p_value is not None:
            return self.p_value < self.threshold
        return self.score >= self.threshold


def wasserstein_normed(reference: ExpHistogram, current: ExpHistogram,
                       reference_std: float | None = None) -> float:
    """Wasserstein-1 distance divided by the reference standard deviation (as Evidently).

    Both CDFs are piecewise linear (values uniform within a bucket, buckets narrowed to the
    observed min and max), so the integral of their absolute difference is exact for them.
    ``reference_std`` is the exact one where the raw reference was seen (a profile's
    moments); without it, the standard deviation of the reference's buckets is used.
    """
    if reference_std is None or not math.isfinite(reference_std):
        _, reference_std = bin_moments(reference)
    distance = _mean_gap(reference, current) if _unresolved(reference, current, reference_std) \
        else wasserstein(reference, current)
    return distance / max(reference_std, MIN_NORM_STD)


def _unresolved(reference: ExpHistogram, current: ExpHistogram, spread: float) -> bool:
    """Whether a bucket at the common scale is wider than ``UNRESOLVED_SPREADS`` reference
    spreads where the values are: the finest scale (20) makes buckets 6.6e-7 of their
    position, so unit spread at 1e7 or more sits in a bucket or two, and the buckets say
    nothing of the shape (the uniform model then reads noise in min and max as drift)."""
    if not (reference.count and current.count):
        return False
    scale = min(reference.scale, current.scale)
    # Where the mass is (the means), not the extremes: a heavy tail is resolved near zero.
    magnitude = max(abs(reference.sum / reference.count), abs(current.sum / current.count))
    return magnitude * (2.0 ** 2.0 ** -scale - 1) > UNRESOLVED_SPREADS * spread


def _mean_gap(reference: ExpHistogram, current: ExpHistogram) -> float:
    """|mean difference| from the exact sums: a lower bound of the Wasserstein-1 distance."""
    if not (reference.count and current.count):
        return 0.0
    return abs(reference.sum / reference.count - current.sum / current.count)


def wasserstein(reference: ExpHistogram, current: ExpHistogram) -> float:
    """Wasserstein-1 distance between the piecewise-linear CDFs of the two histograms."""
    grid, (left_ref, right_ref), (left_cur, right_cur) = _cdfs(reference, current)
    # On each segment between grid points both CDFs are linear: integrate |difference| exactly.
    start = right_ref[:-1] - right_cur[:-1]
    end = left_ref[1:] - left_cur[1:]
    width = np.diff(grid)
    same_sign = start * end >= 0
    magnitude = np.abs(start) + np.abs(end)
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = np.where(magnitude > 0, (start**2 + end**2) / (2 * magnitude), 0.0)
    area = np.where(same_sign, magnitude / 2, crossing) * width
    # W1 >= |mean difference|, and the sums are exact: where buckets are too coarse for the
    # spread (unit spread at 1e9 fills one bucket), the exact bound is the better estimate.
    return max(float(area.sum()), _mean_gap(reference, current))


def ks(reference: ExpHistogram, current: ExpHistogram) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic at the common bucket edges, and its p-value.

    Both histograms are put on their common scale; at each bucket edge there the cumulative
    counts are both empirical CDFs at the same point, exactly. So the statistic never
    exceeds the one on the raw values, and falls short of it by at most one bucket's mass
    (both CDFs move by no more inside a bucket). Nothing is interpolated within a bucket or
    clamped to min and max: those made jumps where the two sides differ in scale or extremes.
    The asymptotic p-value of a statistic taken on a subset of points is conservative, as
    it is for the exact statistic on tied (integer) values.
    """
    counts = common_bins([reference, current]).counts.astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    if not (totals > 0).all():
        return 0.0, 1.0
    cdf = np.cumsum(counts, axis=1) / totals
    statistic = float(np.abs(cdf[0] - cdf[1]).max())
    return statistic, methods.ks_p_value(statistic, reference.count, current.count)


def _cdfs(
    reference: ExpHistogram, current: ExpHistogram
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The union grid of both histograms' own bucket edges, and each CDF's limits on it."""
    knots = []
    own = []
    scale = min(reference.scale, current.scale)
    for hist in (reference, current):
        bins = common_bins([downscale(hist, scale)])
        knots.append(np.concatenate([bins.low, bins.high, [hist.min, hist.max]]))
        own.append((bins, hist))
    grid = np.unique(np.concatenate(knots))
    return grid, _cdf(grid, *own[0]), _cdf(grid, *own[1])


def psi(
    reference: ExpHistogram,
    current: ExpHistogram,
    min_bin_share: float = DEFAULT_PSI_MIN_BIN_SHARE,
) -> float:
    """Population stability index over bins holding at least ``min_bin_share`` of the reference."""
    return methods.psi(*merged_bins(reference, current, min_bin_share))


def kl(
    reference: ExpHistogram, current: ExpHistogram, min_bin_share: float = DEFAULT_MIN_BIN_SHARE
) -> float:
    """KL divergence KL(reference || current) on merged bins, shares floored."""
    return methods.kl(*merged_bins(reference, current, min_bin_share))


def jensen_shannon_numeric(
    reference: ExpHistogram, current: ExpHistogram, min_bin_share: float = DEFAULT_MIN_BIN_SHARE
) -> float:
    """Jensen-Shannon distance (natural log) on merged bins."""
    return methods.jensen_shannon(*merged_bins(reference, current, min_bin_share))


def hellinger(
    reference: ExpHistogram, current: ExpHistogram, min_bin_share: float = DEFAULT_MIN_BIN_SHARE
) -> float:
    """Hellinger distance on merged bins."""
    return methods.hellinger(*merged_bins(reference, current, min_bin_share))


def merged_bins(
    reference: ExpHistogram, current: ExpHistogram, min_bin_share: float = DEFAULT_MIN_BIN_SHARE
) -> tuple[np.ndarray, np.ndarray]:
    """Reference and current counts on the common grid, merged to ``min_bin_share`` bins."""
    merged = _merge_sparse_bins(common_bins([reference, current]).counts, min_bin_share)
    return merged[0], merged[1]


def _aligned_categories(
    reference: Mapping[str, float], current: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(set(reference) | set(current))
    return (np.array([reference.get(k, 0) for k in keys], dtype=np.float64),
            np.array([current.get(k, 0) for k in keys], dtype=np.float64))


def categorical_psi(reference: Mapping[str, float], current: Mapping[str, float]) -> float:
    return methods.psi(*_aligned_categories(reference, current))


def jensen_shannon(reference: Mapping[str, float], current: Mapping[str, float]) -> float:
    """Jensen-Shannon distance (natural log, as ``scipy.spatial.distance.jensenshannon``)."""
    return methods.jensen_shannon(*_aligned_categories(reference, current))


def chi_square(
    reference: Mapping[str, float], current: Mapping[str, float]
) -> tuple[float, float]:
    """Chi-square test of homogeneity of the two category counts: statistic and p-value."""
    return methods.chi_square(*_aligned_categories(reference, current))


def total_variation(reference: Mapping[str, float], current: Mapping[str, float]) -> float:
    """Total variation distance between the category shares."""
    return methods.total_variation(*_aligned_categories(reference, current))


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Per-method thresholds, and per-column overrides of the verdict method.

    Distances drift at or above their threshold; tests (``ks``, ``chisquare``) below their
    p-value. ``overrides`` maps a column to ``(method, threshold)`` and replaces the
    default choice of verdict for that column. Every value is configurable.
    """

    wasserstein: float = DEFAULT_WASSERSTEIN_THRESHOLD
    psi: float = DEFAULT_PSI_THRESHOLD
    jensenshannon: float = DEFAULT_JENSENSHANNON_THRESHOLD
    dataset_share: float = DEFAULT_DATASET_DRIFT_SHARE
    ks: float = DEFAULT_KS_P_VALUE
    chisquare: float = DEFAULT_CHISQUARE_P_VALUE
    kl: float = DEFAULT_KL_THRESHOLD
    hellinger: float = DEFAULT_HELLINGER_THRESHOLD
    total_variation: float = DEFAULT_TOTAL_VARIATION_THRESHOLD
    small_reference_rows: int = DEFAULT_SMALL_REFERENCE_ROWS
    low_cardinality_values: int = DEFAULT_LOW_CARDINALITY_VALUES
    overrides: Mapping[str, tuple[str, float]] = field(default_factory=dict)

    def judges_as_categories(self, column: str, reference_values: Mapping[float, int] | None
                             ) -> bool:
        """Whether a numeric column is judged as categories: its reference has at most
        ``low_cardinality_values`` distinct values, and no numeric method is forced on it."""
        if reference_values is None or not 0 < len(reference_values) \
                <= self.low_cardinality_values:
            return False
        override = self.overrides.get(column)
        return override is None or override[0] in CATEGORICAL_METHODS

    def threshold(self, method: str) -> float:
        """The threshold of ``method`` (its semconv name)."""
        by_method = {
            semconv.DRIFT_METHOD_WASSERSTEIN: self.wasserstein,
            semconv.DRIFT_METHOD_PSI: self.psi,
            semconv.DRIFT_METHOD_JENSENSHANNON: self.jensenshannon,
            semconv.DRIFT_METHOD_KS: self.ks,
            semconv.DRIFT_METHOD_CHISQUARE: self.chisquare,
            semconv.DRIFT_METHOD_KL: self.kl,
            semconv.DRIFT_METHOD_HELLINGER: self.hellinger,
            semconv.DRIFT_METHOD_TOTAL_VARIATION: self.total_variation,
        }
        if method not in by_method:
            raise DriftMethodError(f"unknown drift method {method!r}; use one of "
                                   f"{', '.join(sorted(by_method))}")
        return by_method[method]

    def method_for(
        self,
        column: str,
        kind: str = KIND_NUMERIC,
        reference_rows: int | None = None,
        small_reference_rows: int | None = None,
    ) -> tuple[str, float]:
        """The verdict method of ``column`` and its threshold: the override, else the default.

        The default is a test (KS, chi-square) on references of at most
        ``small_reference_rows`` rows (None: ``self.small_reference_rows``) and a distance
        (normed Wasserstein, Jensen-Shannon) on larger ones; ``reference_rows=None`` means a
        large reference.
        """
        if small_reference_rows is None:
            small_reference_rows = self.small_reference_rows
        allowed = NUMERIC_METHODS if kind == KIND_NUMERIC else CATEGORICAL_METHODS
        if column in self.overrides:
            method, threshold = self.overrides[column]
            if method not in allowed:
                raise DriftMethodError(
                    f"drift method override for column {column!r}: {method!r} does not apply "
                    f"to {kind} columns; use one of {', '.join(allowed)}")
            return method, float(threshold)
        small = reference_rows is not None and reference_rows <= small_reference_rows
        if kind == KIND_NUMERIC:
            method = semconv.DRIFT_METHOD_KS if small else semconv.DRIFT_METHOD_WASSERSTEIN
        else:
            method = semconv.DRIFT_METHOD_CHISQUARE if small \
                else semconv.DRIFT_METHOD_JENSENSHANNON
        return method, self.threshold(method)


def _ordered(verdict: str, context: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """The verdict method, then the context methods without repeats."""
    unknown = [m for m in context if m not in allowed]
    if unknown:
        raise DriftMethodError(f"drift methods {unknown} do not apply here; use some of "
                               f"{', '.join(allowed)}")
    return [verdict, *(m for m in dict.fromkeys(context) if m != verdict)]


_NUMERIC: dict[str, Callable[[ExpHistogram, ExpHistogram], float | tuple[float, float]]] = {
    semconv.DRIFT_METHOD_WASSERSTEIN: wasserstein_normed,
    semconv.DRIFT_METHOD_KS: ks,
    semconv.DRIFT_METHOD_PSI: psi,
    semconv.DRIFT_METHOD_KL: kl,
    semconv.DRIFT_METHOD_JENSENSHANNON: jensen_shannon_numeric,
    semconv.DRIFT_METHOD_HELLINGER: hellinger,
}
_CATEGORICAL: dict[str, Callable[[np.ndarray, np.ndarray], float | tuple[float, float]]] = {
    semconv.DRIFT_METHOD_JENSENSHANNON: methods.jensen_shannon,
    semconv.DRIFT_METHOD_CHISQUARE: methods.chi_square,
    semconv.DRIFT_METHOD_PSI: methods.psi,
    semconv.DRIFT_METHOD_KL: methods.kl,
    semconv.DRIFT_METHOD_HELLINGER: methods.hellinger,
    semconv.DRIFT_METHOD_TOTAL_VARIATION: methods.total_variation,
}


def _score(column: str, kind: str, method: str, value: float | tuple[float, float],
           threshold: float) -> DriftScore:
    """A test's (statistic, p-value) or a distance as one score."""
    if method in P_VALUE_METHODS and isinstance(value, tuple):
        return DriftScore(column, kind, method, value[0], threshold, p_value=value[1])
    return DriftScore(column, kind, method, float(value), threshold)


def numeric_scores(
    column: str,
    reference: ExpHistogram,
    current: ExpHistogram,
    thresholds: Thresholds,
    small_reference_rows: int | None = None,
    context: Sequence[str] = DEFAULT_NUMERIC_CONTEXT,
    reference_std: float | None = None,
) -> list[DriftScore]:
    """The verdict statistic first (see ``Thresholds.method_for``), then ``context`` scores.

    ``small_reference_rows`` (None: the one in ``thresholds``) picks a test or a distance.
    ``reference_std`` is the reference's exact standard deviation when known (profiles):
    the normed Wasserstein divides by it instead of the buckets' one.
    """
    verdict, verdict_threshold = thresholds.method_for(
        column, KIND_NUMERIC, reference.count, small_reference_rows)

    def value(method: str) -> float | tuple[float, float]:
        if method == semconv.DRIFT_METHOD_WASSERSTEIN:
            return wasserstein_normed(reference, current, reference_std)
        return _NUMERIC[method](reference, current)

    return [
        _score(column, KIND_NUMERIC, method, value(method),
               verdict_threshold if i == 0 else thresholds.threshold(method))
        for i, method in enumerate(_ordered(verdict, context, NUMERIC_METHODS))
    ]


def value_label(value: float) -> str:
    """A numeric value as a category name: whole numbers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def value_categories(
    reference_values: Mapping[float, int],
    current: ExpHistogram | None,
    current_values: Mapping[float, int] | None = None,
) -> tuple[dict[str, int], dict[str, int]]:
    """A low-cardinality numeric column as category counts on both sides.

    The reference's exact values are the categories. The current side is counted exactly
    from ``current_values`` when known (a profile), else from its histogram: the bucket
    holding a reference value (at the histogram's scale; integer codes keep buckets of
    their own) counts as that value, reference values sharing a bucket are joined into one
    category (``"1|2"``), and every other bucket counts as ``__other__``.
    """
    reference = {value_label(v): int(c) for v, c in sorted(reference_values.items())}
    if current_values is not None:
        counts = {value_label(v): int(c) for v, c in current_values.items()}
        return reference, fold_unknown(counts, reference)
    if current is None:
        return reference, {}
    groups: dict[tuple[int, int], list[float]] = {}
    for value in sorted(reference_values):
        sign = (value > 0) - (value < 0)
        index = int(map_to_index(abs(value), current.scale)) if sign else 0
        groups.setdefault((sign, index), []).append(value)
    ref_counts: dict[str, int] = {}
    cur_counts: dict[str, int] = {}
    assigned = 0
    for (sign, index), values in groups.items():
        label = "|".join(value_label(v) for v in values)
        ref_counts[label] = sum(int(reference_values[v]) for v in values)
        count = current.zero_count if sign == 0 else _bucket_count(
            current.positive if sign > 0 else current.negative, index)
        cur_counts[label] = int(count)
        assigned += int(count)
    if current.total > assigned:
        cur_counts[semconv.OVERFLOW_VALUE] = current.total - assigned
    return ref_counts, cur_counts


def _bucket_count(buckets: Buckets, index: int) -> int:
    position = index - buckets.offset
    return int(buckets.counts[position]) if 0 <= position < buckets.counts.size else 0


def fold_unknown(current: Mapping[str, float], reference: Mapping[str, float]
                 ) -> dict[str, float]:
    """Current counts with values the reference does not know (past its top-K, or new)
    folded into ``__other__``, so both sides define "other" the same way."""
    folded: Counter[str] = Counter()
    for value, count in current.items():
        folded[value if value in reference else semconv.OVERFLOW_VALUE] += count
    return dict(folded)


def categorical_scores(
    column: str,
    reference: Mapping[str, float],
    current: Mapping[str, float],
    thresholds: Thresholds,
    small_reference_rows: int | None = None,
    context: Sequence[str] = DEFAULT_CATEGORICAL_CONTEXT,
) -> list[DriftScore]:
    """The verdict statistic first (see ``Thresholds.method_for``), then ``context`` scores.

    ``reference`` and ``current`` map categories to row counts, not shares: the reference's
    total picks a test or a distance (``small_reference_rows``, None: the one in
    ``thresholds``), and chi-square needs counts.
    """
    ref, cur = _aligned_categories(reference, current)
    verdict, verdict_threshold = thresholds.method_for(
        column, KIND_CATEGORICAL, math.ceil(ref.sum()), small_reference_rows)
    return [
        _score(column, KIND_CATEGORICAL, method, _CATEGORICAL[method](ref, cur),
               verdict_threshold if i == 0 else thresholds.threshold(method))
        for i, method in enumerate(_ordered(verdict, context, CATEGORICAL_METHODS))
    ]


def dataset_share(verdicts: list[DriftScore]) -> float:
    """Share of columns whose verdict statistic (the first score per column) drifted."""
    primary: dict[str, bool] = {}
    for score in verdicts:
        primary.setdefault(score.column, score.drifted)
    return sum(primary.values()) / len(primary) if primary else 0.0
