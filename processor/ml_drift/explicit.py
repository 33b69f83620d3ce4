"""Explicit-bucket histograms (an app's own SDK views) and how they meet a profile.

A profile stores an exponential histogram; a window of explicit buckets cannot be turned
into one. So the comparison happens on the explicit bounds: the profile's histogram is
projected onto them (values uniform within each of its buckets, the outermost buckets
narrowed to the observed min and max, zeros a point mass at 0) and both sides become
counts per explicit bucket, compared like categories (Jensen-Shannon, chi-square, PSI).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.exphist import ExpHistogram, clipped_edges, common_bins


@dataclass(frozen=True, slots=True)
class ExplicitHistogram:
    """OTLP ``HistogramDataPoint`` fields: ``len(counts) == len(bounds) + 1``; bucket ``i``
    holds values in ``(bounds[i-1], bounds[i]]``."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    sum: float
    min: float
    max: float

    def to_dict(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "count": self.count,
                "sum": _finite_or_none(self.sum), "min": _finite_or_none(self.min),
                "max": _finite_or_none(self.max)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExplicitHistogram:
        return cls(tuple(float(b) for b in data["bounds"]),
                   tuple(int(c) for c in data["counts"]), int(data["count"]),
                   _float(data.get("sum"), math.nan), _float(data.get("min"), math.inf),
                   _float(data.get("max"), -math.inf))


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _float(value: Any, missing: float) -> float:
    return missing if value is None else float(value)


def from_point(point: Any) -> ExplicitHistogram:
    """An OTLP ``HistogramDataPoint``; raises ``ValueError`` when its shape is inconsistent."""
    bounds = tuple(float(b) for b in point.explicit_bounds)
    counts = tuple(int(c) for c in point.bucket_counts)
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"{len(counts)} bucket counts for {len(bounds)} explicit bounds "
                         "(must be one more)")
    if any(not math.isfinite(b) for b in bounds) or any(
            b >= c for b, c in itertools.pairwise(bounds)):
        raise ValueError("explicit bounds must be finite and strictly increasing")
    return ExplicitHistogram(
        bounds, counts, int(point.count), point.sum if point.HasField("sum") else math.nan,
        point.min if point.HasField("min") else math.inf,
        point.max if point.HasField("max") else -math.inf)


def merge(a: ExplicitHistogram, b: ExplicitHistogram) -> ExplicitHistogram:
    """The histogram of both; raises ``ValueError`` when their bounds differ."""
    if a.bounds != b.bounds:
        raise ValueError("explicit bounds differ between points of one column")
    return ExplicitHistogram(a.bounds, tuple(x + y for x, y in zip(a.counts, b.counts,
                                                                     strict=True)),
                             a.count + b.count, a.sum + b.sum, min(a.min, b.min),
                             max(a.max, b.max))


def bucket_labels(bounds: tuple[float, ...]) -> list[str]:
    """``(-inf, 1]``, ``(1, 5]``, ..., ``(20, +inf)``: the category names of the buckets."""
    edges = [-math.inf, *bounds, math.inf]
    return [f"({_g(lo)}, {_g(hi)}{')' if hi == math.inf else ']'}"
            for lo, hi in itertools.pairwise(edges)]


def _g(value: float) -> str:
    return "-inf" if value == -math.inf else "+inf" if value == math.inf else f"{value:g}"


def reference_cdf(hist: ExpHistogram, points: np.ndarray) -> np.ndarray:
    """Share of ``hist`` at or below each of ``points`` (uniform within a bucket)."""
    if hist.count == 0 or hist.total == 0:
        return np.zeros(points.shape)
    bins = common_bins([hist])
    counts = bins.counts[0].astype(np.float64)
    low, high = clipped_edges(bins.low, bins.high, bins.counts[0], hist.min, hist.max)
    width = high - low
    x = points[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(width > 0, (x - low) / np.where(width > 0, width, 1.0),
                            (x >= low).astype(np.float64))
    fraction = np.clip(fraction, 0.0, 1.0)
    return (fraction * counts).sum(axis=1) / counts.sum()


def project(hist: ExpHistogram, bounds: tuple[float, ...]) -> np.ndarray:
    """Expected rows of ``hist`` in each explicit bucket (sums to ``hist``'s total)."""
    cdf = reference_cdf(hist, np.asarray(bounds, dtype=np.float64))
    shares = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return np.clip(shares, 0.0, None) * hist.total


def as_categories(hist: ExpHistogram, current: ExplicitHistogram
                  ) -> tuple[dict[str, float], dict[str, float]]:
    """Reference (projected) and current counts keyed by bucket label."""
    labels = bucket_labels(current.bounds)
    reference = dict(zip(labels, (float(v) for v in project(hist, current.bounds)),
                         strict=True))
    return reference, dict(zip(labels, (float(c) for c in current.counts), strict=True))
