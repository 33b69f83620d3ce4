"""Drift statistics computed from exponential histograms and category counts.

Reference and current histograms are first put on their common scale (exact bin alignment),
so no raw data is needed at comparison time. Defaults follow Evidently, the best-known open
tool: normed Wasserstein 0.1 for numeric columns, Jensen-Shannon distance 0.1 for categorical
ones, PSI 0.1, and dataset drift when at least half of the columns drift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from driftline import semconv
from driftline.exphist import Bins, ExpHistogram, bin_moments, clipped_edges, common_bins

DEFAULT_WASSERSTEIN_THRESHOLD = 0.1
DEFAULT_PSI_THRESHOLD = 0.1
DEFAULT_JENSENSHANNON_THRESHOLD = 0.1
DEFAULT_DATASET_DRIFT_SHARE = 0.5
# PSI bins are merged until each holds at least this share of the reference rows (deciles),
# so sparse tails cannot dominate the sum.
DEFAULT_PSI_MIN_BIN_SHARE = 0.1
# Floor for empty bins in PSI/KL, as in Evidently, so one empty bin cannot make a score infinite.
PROBABILITY_FLOOR = 1e-4
# Floor for the reference standard deviation when norming Wasserstein (constant columns).
MIN_NORM_STD = 1e-3


@dataclass(frozen=True, slots=True)
class DriftScore:
    """One statistic for one column: its value, the threshold and the verdict."""

    column: str
    kind: str
    method: str
    score: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.score >= self.threshold


def wasserstein_normed(reference: ExpHistogram, current: ExpHistogram) -> float:
    """Wasserstein-1 distance divided by the reference standard deviation.

    Both CDFs are piecewise linear (values uniform within a bucket, buckets narrowed to the
    observed min and max), so the integral of their absolute difference is exact for them.
    """
    _, ref_std = bin_moments(reference)
    return wasserstein(reference, current) / max(ref_std, MIN_NORM_STD)


def wasserstein(reference: ExpHistogram, current: ExpHistogram) -> float:
    knots = []
    cdfs = []
    for hist in (reference, current):
        bins = common_bins([hist])
        knots.append(np.concatenate([bins.low, bins.high]))
        cdfs.append((bins, hist))
    grid = np.unique(np.concatenate(knots))
    left_ref, right_ref = _cdf(grid, *cdfs[0])
    left_cur, right_cur = _cdf(grid, *cdfs[1])
    # On each segment between grid points both CDFs are linear: integrate |difference| exactly.
    start = right_ref[:-1] - right_cur[:-1]
    end = left_ref[1:] - left_cur[1:]
    width = np.diff(grid)
    same_sign = start * end >= 0
    magnitude = np.abs(start) + np.abs(end)
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = np.where(magnitude > 0, (start**2 + end**2) / (2 * magnitude), 0.0)
    area = np.where(same_sign, magnitude / 2, crossing) * width
    return float(area.sum())


def _cdf(grid: np.ndarray, bins: Bins, hist: ExpHistogram) -> tuple[np.ndarray, np.ndarray]:
    """Left and right limits of the CDF at each grid point (they differ at the zero bucket)."""
    counts = bins.counts[0].astype(np.float64)
    low, high = clipped_edges(bins.low, bins.high, bins.counts[0], hist.min, hist.max)
    total = counts.sum()
    width = high - low
    point_mass = width == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.clip((grid[:, None] - low[None, :]) / width[None, :], 0.0, 1.0)
    spread = np.where(point_mass[None, :], 0.0, fraction) @ counts
    below = (grid[:, None] > low[None, :]) & point_mass[None, :]
    at_or_below = (grid[:, None] >= low[None, :]) & point_mass[None, :]
    left = (spread + below @ counts) / total
    right = (spread + at_or_below @ counts) / total
    return left, right


def psi(
    reference: ExpHistogram,
    current: ExpHistogram,
    min_bin_share: float = DEFAULT_PSI_MIN_BIN_SHARE,
) -> float:
    """Population stability index over bins holding at least ``min_bin_share`` of the reference."""
    counts = common_bins([reference, current]).counts
    merged = _merge_sparse_bins(counts, min_bin_share)
    return _psi_from_counts(merged[0], merged[1])


def _merge_sparse_bins(counts: np.ndarray, min_share: float) -> np.ndarray:
    """Join neighbouring bins left to right until each holds ``min_share`` of row 0's mass."""
    reference = counts[0]
    target = min_share * reference.sum()
    groups = np.zeros(reference.size, dtype=np.int64)
    group, filled = 0, 0
    for i, mass in enumerate(reference):
        groups[i] = group
        filled += mass
        if filled >= target and i < reference.size - 1:
            group, filled = group + 1, 0
    if filled < target and group > 0:
        groups[groups == group] = group - 1  # a thin last group joins its neighbour
    return np.vstack([np.bincount(groups, weights=row) for row in counts])


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    shares = counts / total if total else np.zeros_like(counts, dtype=np.float64)
    return np.maximum(shares, PROBABILITY_FLOOR)


def _psi_from_counts(reference: np.ndarray, current: np.ndarray) -> float:
    ref, cur = _shares(reference), _shares(current)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _aligned_categories(
    reference: Mapping[str, float], current: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(set(reference) | set(current))
    return (np.array([reference.get(k, 0) for k in keys], dtype=np.float64),
            np.array([current.get(k, 0) for k in keys], dtype=np.float64))


def categorical_psi(reference: Mapping[str, float], current: Mapping[str, float]) -> float:
    return _psi_from_counts(*_aligned_categories(reference, current))


def jensen_shannon(reference: Mapping[str, float], current: Mapping[str, float]) -> float:
    """Jensen-Shannon distance (natural log, as ``scipy.spatial.distance.jensenshannon``)."""
    ref, cur = _aligned_categories(reference, current)
    p, q = ref / ref.sum(), cur / cur.sum()
    m = (p + q) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        kl_pm = np.where(p > 0, p * np.log(p / m), 0.0).sum()
        kl_qm = np.where(q > 0, q * np.log(q / m), 0.0).sum()
    return math.sqrt(max((kl_pm + kl_qm) / 2, 0.0))


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Per-method thresholds; every value is configurable in the processor config."""

    wasserstein: float = DEFAULT_WASSERSTEIN_THRESHOLD
    psi: float = DEFAULT_PSI_THRESHOLD
    jensenshannon: float = DEFAULT_JENSENSHANNON_THRESHOLD
    dataset_share: float = DEFAULT_DATASET_DRIFT_SHARE


def numeric_scores(
    column: str, reference: ExpHistogram, current: ExpHistogram, thresholds: Thresholds
) -> list[DriftScore]:
    """The verdict statistic (normed Wasserstein) first, then PSI for context."""
    return [
        DriftScore(column, "numeric", semconv.DRIFT_METHOD_WASSERSTEIN,
                   wasserstein_normed(reference, current), thresholds.wasserstein),
        DriftScore(column, "numeric", semconv.DRIFT_METHOD_PSI,
                   psi(reference, current), thresholds.psi),
    ]


def categorical_scores(
    column: str,
    reference: Mapping[str, float],
    current: Mapping[str, float],
    thresholds: Thresholds,
) -> list[DriftScore]:
    """The verdict statistic (Jensen-Shannon distance) first, then PSI for context."""
    return [
        DriftScore(column, "categorical", semconv.DRIFT_METHOD_JENSENSHANNON,
                   jensen_shannon(reference, current), thresholds.jensenshannon),
        DriftScore(column, "categorical", semconv.DRIFT_METHOD_PSI,
                   categorical_psi(reference, current), thresholds.psi),
    ]


def dataset_share(verdicts: list[DriftScore]) -> float:
    """Share of columns whose verdict statistic (the first score per column) drifted."""
    primary: dict[str, bool] = {}
    for score in verdicts:
        primary.setdefault(score.column, score.drifted)
    return sum(primary.values()) / len(primary) if primary else 0.0
