"""Drift statistics on aligned count vectors, and the two distributions their p-values need.

The statistics take two count (or weight) vectors over the same bins or categories; the
callers in ``drift`` align histograms and category mappings first (with ``_merge_sparse_bins``
and ``_cdf`` from here). The Kolmogorov and
chi-square survival functions are written here in NumPy and ``math`` so that SciPy stays a
test-only dependency.
"""

from __future__ import annotations

import math

import numpy as np

from driftline.exphist import Bins, ExpHistogram, clipped_edges

# Floor for empty bins in PSI/KL, as in Evidently, so one empty bin cannot make a score infinite.
PROBABILITY_FLOOR = 1e-4
# Series lengths and tolerances of the special functions; both converge far sooner in practice.
_KOLMOGOROV_TERMS = 100
_GAMMA_MAX_ITERATIONS = 10_000
_GAMMA_EPSILON = 1e-15
_TINY = 1e-300
# Below this argument the Kolmogorov series in exp(-2 k^2 x^2) converges slowly; the
# Jacobi-transformed series in exp(-(2k-1)^2 pi^2 / 8x^2) converges fast there instead.
_KOLMOGOROV_SWITCH = 1.0
# Stephens' small-sample correction of the KS argument (Numerical Recipes, 3rd ed., 14.3.3),
# so the asymptotic p-value tracks the finite-n distribution scipy's "asymp" method uses.
_STEPHENS_OFFSET = 0.12
_STEPHENS_SLOPE = 0.11


def shares(counts: np.ndarray, floor: float = PROBABILITY_FLOOR) -> np.ndarray:
    """Counts as shares of their total, floored so logarithms stay finite."""
    total = counts.sum()
    result = counts / total if total else np.zeros_like(counts, dtype=np.float64)
    return np.maximum(result, floor)


def _proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros_like(counts, dtype=np.float64)


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


def _cdf(grid: np.ndarray, bins: Bins, hist: ExpHistogram) -> tuple[np.ndarray, np.ndarray]:
    """Left and right limits of the CDF at each grid point (they differ at point masses:
    the zero bucket, a bucket narrowed to one value).

    Bins are ordered along the line and disjoint, so each grid point needs only the bin
    just below it: two binary searches, not a grid x bins matrix (1280-bucket profiles).
    """
    counts = bins.counts[0].astype(np.float64)
    low, high = clipped_edges(bins.low, bins.high, bins.counts[0], hist.min, hist.max)
    total = counts.sum()
    before = np.concatenate([[0.0], np.cumsum(counts)])  # mass of the bins below bin i
    width = high - low

    def limit(side: str) -> np.ndarray:
        # The last bin starting below (left) or at (right) each grid point, and its share.
        last = np.searchsorted(low, grid, side=side) - 1  # type: ignore[call-overload]
        inside = np.maximum(last, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(width[inside] > 0,
                                np.clip((grid - low[inside]) / width[inside], 0.0, 1.0), 1.0)
        mass = before[inside] + counts[inside] * fraction
        return np.where(last >= 0, mass, 0.0) / total

    return limit("left"), limit("right")


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index: sum of (q - p) ln(q / p) over floored shares."""
    p, q = shares(reference), shares(current)
    return float(np.sum((q - p) * np.log(q / p)))


def kl(reference: np.ndarray, current: np.ndarray) -> float:
    """Kullback-Leibler divergence KL(reference || current) over floored shares (nats)."""
    p, q = shares(reference), shares(current)
    return float(np.sum(p * np.log(p / q)))


def jensen_shannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log, as ``scipy.spatial.distance.jensenshannon``)."""
    p, q = _proportions(reference), _proportions(current)
    m = (p + q) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        kl_pm = np.where(p > 0, p * np.log(p / m), 0.0).sum()
        kl_qm = np.where(q > 0, q * np.log(q / m), 0.0).sum()
    return math.sqrt(max((kl_pm + kl_qm) / 2, 0.0))


def hellinger(reference: np.ndarray, current: np.ndarray) -> float:
    """Hellinger distance, in [0, 1]: sqrt(1 - sum sqrt(p q))."""
    p, q = _proportions(reference), _proportions(current)
    return math.sqrt(max(1.0 - float(np.sum(np.sqrt(p * q))), 0.0))


def total_variation(reference: np.ndarray, current: np.ndarray) -> float:
    """Total variation distance, in [0, 1]: half the L1 distance of the shares."""
    p, q = _proportions(reference), _proportions(current)
    return float(np.abs(p - q).sum() / 2)


def chi_square(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity on the 2 x K table (statistic, p-value).

    Both sides are samples, so this is ``scipy.stats.chi2_contingency`` without Yates'
    correction; categories empty on both sides add no degree of freedom.
    """
    table = np.vstack([reference, current]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    total = table.sum()
    if table.shape[1] < 2 or not (table.sum(axis=1) > 0).all():
        return 0.0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, chi2_sf(statistic, table.shape[1] - 1)


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """Asymptotic two-sample KS p-value with effective size n m / (n + m)."""
    if n <= 0 or m <= 0:
        return 1.0
    root = math.sqrt(n * m / (n + m))
    return kolmogorov_sf((root + _STEPHENS_OFFSET + _STEPHENS_SLOPE / root) * statistic)


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution (as ``scipy.special.kolmogorov``)."""
    if x <= 0:
        return 1.0
    k = np.arange(1, _KOLMOGOROV_TERMS + 1, dtype=np.float64)
    if x < _KOLMOGOROV_SWITCH:
        odd = 2 * k - 1
        cdf = math.sqrt(2 * math.pi) / x * np.exp(-(odd**2) * math.pi**2 / (8 * x * x)).sum()
        return float(min(max(1.0 - cdf, 0.0), 1.0))
    signs = np.where(k % 2 == 1, 1.0, -1.0)
    return float(min(max(2 * np.sum(signs * np.exp(-2 * k * k * x * x)), 0.0), 1.0))


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X > statistic) for a chi-square variable with ``dof`` degrees of freedom."""
    return gammaincc(dof / 2, statistic / 2)


def gammaincc(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) (as ``scipy.special.gammaincc``).

    The power series of P for x < a + 1, Lentz's continued fraction of Q above it
    (Numerical Recipes 6.2): each converges quickly on its side.
    """
    if x <= 0:
        return 1.0
    log_prefactor = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        denominator = a
        for _ in range(_GAMMA_MAX_ITERATIONS):
            denominator += 1
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * _GAMMA_EPSILON:
                break
        return min(max(1.0 - total * math.exp(log_prefactor), 0.0), 1.0)
    b = x + 1 - a
    c = 1 / _TINY
    d = 1 / b
    h = d
    for i in range(1, _GAMMA_MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < _GAMMA_EPSILON:
            break
    return min(max(math.exp(log_prefactor) * h, 0.0), 1.0)
