"""Exponential histograms as classic (explicit-bucket) ones, for Prometheus and Grafana.

The text format has no exponential histograms, so a feature's distribution is exposed on a
few fixed bounds. With a reference profile the bounds are the reference's deciles, each
moved to the upper edge of its bucket at the reference's scale: production histograms come
at that scale or a finer one, so their counts at those bounds are exact (bucket edges line
up, "perfect subsetting"); the reference's own counts are exposed on the same bounds, so a
dashboard draws one over the other. Without a profile the bounds are powers of two over the
values' range. Where a bound falls inside a bucket (a production histogram coarser than the
reference, or the negative side, whose bucket edges are exclusive the other way round) the
bucket's values are taken as uniform within it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from driftline import exphist
from driftline.exphist import ExpHistogram

REFERENCE_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MAX_DEFAULT_BOUNDS = 40


def reference_bounds(reference: ExpHistogram) -> tuple[float, ...]:
    """The reference's deciles snapped to its bucket edges, distinct and sorted."""
    if reference.total == 0:
        return ()
    deciles = np.atleast_1d(exphist.quantile(reference, list(REFERENCE_QUANTILES)))
    return tuple(sorted({_bucket_upper_edge(float(v), reference.scale) for v in deciles}))


def _bucket_upper_edge(value: float, scale: int) -> float:
    if value == 0 or not math.isfinite(value):
        return 0.0
    index = int(exphist.map_to_index(np.array([abs(value)]), scale)[0])
    if value > 0:
        return float(exphist.lower_boundary(index + 1, scale))
    return -float(exphist.lower_boundary(index, scale))


def default_bounds(hist: ExpHistogram) -> tuple[float, ...]:
    """Powers of two (every second or fourth one for wide ranges) over the values, and 0."""
    bounds: set[float] = set()
    if hist.zero_count or (hist.min <= 0 <= hist.max):
        bounds.add(0.0)
    for sign, low, high in ((1, hist.min, hist.max), (-1, -hist.max, -hist.min)):
        smallest, largest = max(low, 0.0), high
        if largest <= 0 or not math.isfinite(largest):
            continue
        top = math.ceil(math.log2(largest))
        bottom = math.floor(math.log2(smallest)) if smallest > 0 else top - MAX_DEFAULT_BOUNDS
        step = max(1, math.ceil((top - bottom + 1) / (MAX_DEFAULT_BOUNDS // 2)))
        bounds.update(sign * 2.0 ** k for k in range(top, bottom - 1, -step))
    return tuple(sorted(bounds))


def bucket_counts(hist: ExpHistogram, bounds: tuple[float, ...]) -> tuple[int, ...]:
    """Counts per explicit bucket ``(-inf, b0], (b0, b1], ..., (bn, +inf)`` of ``hist``."""
    if hist.total == 0:
        return (0,) * (len(bounds) + 1)
    bins = exphist.common_bins([hist])
    counts = bins.counts[0].astype(np.float64)
    cumulative = []
    for bound in bounds:
        below = counts[bins.high <= bound].sum()
        inside = (bins.low < bound) & (bound < bins.high)
        if inside.any():
            share = (bound - bins.low[inside]) / (bins.high[inside] - bins.low[inside])
            below += float((counts[inside] * share).sum())
        cumulative.append(round(below))
    edges = [0, *cumulative, hist.total]
    return tuple(int(b - a) for a, b in itertools.pairwise(edges))
