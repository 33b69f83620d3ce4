"""Exponential histograms as classic (explicit-bucket) ones, for Prometheus and Grafana.

The text format has no exponential histograms, so a feature's distribution is exposed on a
few fixed bounds; points are folded onto them many at a time (``PendingPoints``). With a
reference profile the bounds are the reference's deciles, each moved to the upper edge of
its bucket at the reference's scale: production histograms come at that scale or a finer
one, so their counts at those bounds are exact (bucket edges line up, "perfect
subsetting"); the reference's own counts are exposed on the same bounds, so a dashboard
draws one over the other. Without a profile the bounds are powers of two over the values'
range. Where a bound falls inside a bucket (a production histogram coarser than the
reference) the whole bucket goes to the classic bucket of its far end.
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any

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
    pending = PendingPoints()
    pending.add(hist.scale, hist.zero_count, hist.positive.offset,
                hist.positive.counts.tolist(), hist.negative.offset,
                hist.negative.counts.tolist())
    return tuple(int(c) for c in pending.fold(bounds))


@dataclass(slots=True)
class PendingPoints:
    """Exponential-histogram buckets waiting to be counted on classic bounds, folded for many
    points at once: one vectorised pass, whatever their scales and offsets.

    Each exponential bucket goes whole to the classic bucket its values lie in; one that a
    classic bound cuts (a point coarser than the reference the bounds came from) goes to
    the bucket holding its upper end (its lower end, towards zero, on the negative side).

    Per point only a tuple of ints is queued (scale, offsets and bucket numbers); the counts
    of all points go to one flat array of uint64 per side (OTLP's type), which numpy reads
    without a copy: a list per point would leave thousands of containers for the garbage
    collector to scan (it cost more than the queuing itself), and a list of Python ints
    costs more to convert than to fill.
    """

    # (scale, positive offset, positive buckets, negative offset, negative buckets) per point
    points: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    positive_counts: array[int] = field(default_factory=lambda: array("Q"))
    negative_counts: array[int] = field(default_factory=lambda: array("Q"))
    zero_count: int = 0

    def __len__(self) -> int:
        return len(self.points)

    def add(self, scale: int, zero_count: int, positive_offset: int, positive_counts: Any,
            negative_offset: int, negative_counts: Any) -> int:
        """Queue one point's buckets; the number now queued (its caller folds past a limit)."""
        points = self.points
        points.append((scale, positive_offset, len(positive_counts), negative_offset,
                       len(negative_counts)))
        self.zero_count += zero_count
        # A slice is the cheapest copy of a protobuf repeated field (extending the array
        # from the field itself goes element by element).
        self.positive_counts.fromlist(positive_counts[:])
        if negative_counts:
            self.negative_counts.fromlist(negative_counts[:])
        return len(points)

    def fold(self, bounds: tuple[float, ...]) -> np.ndarray:
        """The counts per classic bucket of every pending point, summed; then empty."""
        limits = np.asarray(bounds, dtype=np.float64)
        totals = np.zeros(limits.size + 1, dtype=np.int64)
        totals[np.searchsorted(limits, 0.0, side="left")] += self.zero_count
        scales, positive_offsets, positive_sizes, negative_offsets, negative_sizes = (
            np.array(self.points, dtype=np.int64).reshape(-1, 5).T)
        for offsets, sizes, counts, sign in (
            (positive_offsets, positive_sizes, self.positive_counts, 1),
            (negative_offsets, negative_sizes, self.negative_counts, -1),
        ):
            if counts:
                edges = _bucket_edges(scales, offsets, sizes, upper=sign > 0)
                where = np.searchsorted(limits, sign * edges, side="left")
                weights = np.frombuffer(counts, dtype=np.uint64).astype(np.float64)
                totals += np.bincount(where, weights=weights,
                                      minlength=limits.size + 1).astype(np.int64)
        self.__init__()  # type: ignore[misc]
        return totals


def _bucket_edges(scales: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
                  upper: bool) -> np.ndarray:
    """The upper (or lower) magnitude edge of every queued bucket, point after point."""
    total = int(sizes.sum())
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    index = np.repeat(offsets, sizes) + np.arange(total) - starts
    if upper:
        index += 1
    exponent = np.ldexp(index.astype(np.float64), -np.repeat(scales, sizes))
    return np.exp2(exponent)
