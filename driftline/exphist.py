"""Base-2 exponential histograms, the structure every numeric distribution travels in.

Index mapping is the OpenTelemetry SDK's, vectorised with NumPy: at scale ``s`` the base is
``2 ** 2 ** -s`` and bucket ``i`` holds values in ``(base**i, base**(i+1)]`` (upper-inclusive),
mirrored for negatives. Two histograms compare exactly after both are downscaled to the
smaller scale ("perfect subsetting" in the OTLP data model).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_SCALE = 20
MIN_SCALE = -10
DEFAULT_MAX_SIZE = 160  # the SDK's default bucket count per sign
_MANTISSA_BITS = 52
_MANTISSA_MASK = np.uint64((1 << _MANTISSA_BITS) - 1)
_EXPONENT_BIAS = 1023
_MAX_EXPONENT_FIELD = 2046  # 2047 is infinity and NaN
# Above one exact power of two in this many values, correct them in bulk, not by selection.
_DENSE_POWERS_OF_TWO = 16
_MIN_NORMAL = sys.float_info.min
_MIN_NORMAL_EXPONENT = -1022
_MAX_NORMAL_EXPONENT = 1023
_EMPTY = np.zeros(0, dtype=np.int64)
# Stands in for the index of zeros while the positives' range is taken; far from overflow
# after the shift and offset applied to it before it is overwritten.
_ZERO_SENTINEL = 1 << 62


@dataclass(frozen=True, slots=True)
class Buckets:
    """Consecutive bucket counts starting at index ``offset``."""

    offset: int
    counts: np.ndarray

    @property
    def is_empty(self) -> bool:
        return not self.counts.any()


@dataclass(frozen=True, slots=True)
class ExpHistogram:
    """One distribution: OTLP exponential-histogram fields plus min, max and sum."""

    scale: int
    zero_count: int
    positive: Buckets
    negative: Buckets
    count: int
    sum: float
    min: float
    max: float

    @property
    def total(self) -> int:
        return int(self.zero_count + self.positive.counts.sum() + self.negative.counts.sum())

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "zero_count": int(self.zero_count),
            "positive": {"offset": self.positive.offset, "counts": _trimmed(self.positive)},
            "negative": {"offset": self.negative.offset, "counts": _trimmed(self.negative)},
            "count": int(self.count),
            "sum": float(self.sum),
            "min": float(self.min),
            "max": float(self.max),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExpHistogram:
        return cls(
            scale=int(data["scale"]),
            zero_count=int(data["zero_count"]),
            positive=_buckets(data["positive"]["offset"], data["positive"]["counts"]),
            negative=_buckets(data["negative"]["offset"], data["negative"]["counts"]),
            count=int(data["count"]),
            sum=float(data["sum"]),
            min=float(data["min"]),
            max=float(data["max"]),
        )


def empty(scale: int = MAX_SCALE) -> ExpHistogram:
    return ExpHistogram(scale, 0, Buckets(0, _EMPTY), Buckets(0, _EMPTY), 0, 0.0, math.inf,
                        -math.inf)


def _buckets(offset: int, counts: Any) -> Buckets:
    return Buckets(int(offset), np.asarray(counts, dtype=np.int64))


def _trimmed(buckets: Buckets) -> list[int]:
    return [int(c) for c in buckets.counts]


def map_to_index(magnitudes: np.ndarray, scale: int) -> np.ndarray:
    """Bucket index of each positive value at ``scale``, as the OpenTelemetry SDK maps it."""
    values = np.asarray(magnitudes, dtype=np.float64)
    if values.ndim == 0:
        return map_to_index(values.reshape(1), scale).reshape(())
    if scale <= 0:
        mantissa, exponent = np.frexp(values)  # values = mantissa * 2**exponent
        ieee_exponent = exponent.astype(np.int64) - 1
        shift = -scale
        index = (ieee_exponent - (mantissa == 0.5)) >> shift
        min_index = _MIN_NORMAL_EXPONENT >> shift
        if shift < 2:
            min_index -= 1
        return np.where(values < _MIN_NORMAL, min_index, index)
    scale_factor = math.ldexp(1 / math.log(2), scale)
    # One log pass, then in place: this runs over every value of every numeric column.
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.log(values)
        scaled *= scale_factor
        np.floor(scaled, out=scaled)
        index = scaled.astype(np.int64)
    # Exact powers of two sit on a bucket's upper edge, which log() may miss by a rounding:
    # a normal value with no mantissa bits gets (exponent << scale) - 1, the exponent read
    # from its bits. (``scaled`` is spent: its memory holds the bits instead of a new array.)
    bits = values.view(np.uint64)
    spare = np.bitwise_and(bits, _MANTISSA_MASK, out=scaled.view(np.uint64))
    exact = spare == 0
    exact_count = int(np.count_nonzero(exact))
    if exact_count > values.size // _DENSE_POWERS_OF_TWO:  # integer-valued columns: in bulk
        np.right_shift(bits, _MANTISSA_BITS, out=spare)
        field = spare.view(np.int64)  # the biased exponent; a sign bit puts it past 2047
        exact &= (field >= 1) & (field <= _MAX_EXPONENT_FIELD)
        field -= _EXPONENT_BIAS
        field <<= scale
        field -= 1
        np.copyto(index, field, where=exact)
    elif exact_count:
        candidates = np.flatnonzero(exact)
        field = (bits[candidates] >> np.uint64(_MANTISSA_BITS)).astype(np.int64)
        normal = (field >= 1) & (field <= _MAX_EXPONENT_FIELD)
        index[candidates[normal]] = ((field[normal] - _EXPONENT_BIAS) << scale) - 1
    max_index = ((_MAX_NORMAL_EXPONENT + 1) << scale) - 1
    np.minimum(index, max_index, out=index)
    if values.size and values.min() <= _MIN_NORMAL:
        index[values <= _MIN_NORMAL] = (_MIN_NORMAL_EXPONENT << scale) - 1
    return index


def lower_boundary(index: np.ndarray | int, scale: int) -> np.ndarray:
    """Lower boundary of bucket ``index`` (its upper boundary is that of ``index + 1``)."""
    return np.exp2(np.ldexp(np.asarray(index, dtype=np.float64), -scale))


def _scale_reduction(low: int, high: int, max_size: int) -> int:
    """How many halvings make indexes ``low..high`` fit into ``max_size`` buckets."""
    shift = 0
    while (high >> shift) - (low >> shift) + 1 > max_size:
        shift += 1
    return shift


def from_values(
    values: np.ndarray, max_size: int = DEFAULT_MAX_SIZE, max_scale: int = MAX_SCALE
) -> ExpHistogram:
    """The finest histogram of at most ``max_size`` buckets per sign that holds ``values``.

    ``values`` must be finite; callers count NaN and infinities as missing beforehand.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return empty(max_scale)
    lowest, highest = float(values.min()), float(values.max())
    # Both signs are indexed in one pass over the magnitudes and counted in one bincount;
    # the result is the same as indexing and counting each sign on its own. A column of one
    # sign (most are) needs no sign masks at all.
    positive: np.ndarray | None = None
    negative: np.ndarray | None = None
    zeros: np.ndarray | None = None  # set for columns of zeros and positives only
    if lowest > 0:
        positive_count, negative_count, magnitudes = values.size, 0, values
    elif highest < 0:
        positive_count, negative_count, magnitudes = 0, values.size, -values
    elif lowest == 0:
        zeros = values == 0
        positive_count = values.size - int(np.count_nonzero(zeros))
        negative_count, magnitudes = 0, values
    else:
        positive = values > 0
        negative = values < 0
        positive_count = int(np.count_nonzero(positive))
        negative_count = int(np.count_nonzero(negative))
        magnitudes = np.abs(values)
    zero_count = int(values.size - positive_count - negative_count)
    index = map_to_index(magnitudes, max_scale)
    spans: dict[str, tuple[int, int]] = {}
    for sign, mask, count in (("positive", positive, positive_count),
                              ("negative", negative, negative_count)):
        if count and zeros is not None:
            # Zeros get the lowest index of all, so they cannot be the maximum; set aside,
            # they cannot be the minimum either.
            high = int(index.max())
            index[zeros] = _ZERO_SENTINEL
            spans[sign] = (int(index.min()), high)
        elif count:
            # A boolean selection and plain min/max beat a masked reduction several times.
            own = index if count == values.size else index[mask]
            spans[sign] = (int(own.min()), int(own.max()))
    index_ranges = [_scale_reduction(low, high, max_size) for low, high in spans.values()]
    shift = min(max(index_ranges, default=0), max_scale - MIN_SCALE)
    buckets = _count_signs(index, positive, negative, zeros, zero_count, spans, shift)
    return ExpHistogram(
        scale=max_scale - shift,
        zero_count=zero_count,
        positive=buckets["positive"],
        negative=buckets["negative"],
        count=int(values.size),
        sum=float(values.sum()),
        min=lowest,
        max=highest,
    )


def _count_signs(index: np.ndarray, positive: np.ndarray | None, negative: np.ndarray | None,
                 zeros: np.ndarray | None, zero_count: int, spans: dict[str, tuple[int, int]],
                 shift: int) -> dict[str, Buckets]:
    """Bucket counts per sign at ``shift`` halvings below the indexing scale.

    Each sign's shifted indexes land in its own block of one code range (positives first,
    then negatives, zeros in a last slot), so a single bincount counts both.
    """
    index >>= shift  # the shifted minimum is the minimum shifted: offsets need no new pass
    offsets = {sign: (low >> shift, (high >> shift) - (low >> shift) + 1)
               for sign, (low, high) in spans.items()}
    pos_offset, pos_size = offsets.get("positive", (0, 0))
    neg_offset, neg_size = offsets.get("negative", (0, 0))
    if zeros is not None:  # zeros and positives: no sign masks
        index -= pos_offset
        index[zeros] = pos_size
    elif pos_size and not neg_size and not zero_count:
        index -= pos_offset
    elif neg_size and not pos_size and not zero_count:
        index -= neg_offset
    else:  # both signs, or zeros: the masks exist
        assert positive is not None and negative is not None
        index -= np.where(positive, pos_offset, neg_offset - pos_size)
        if zero_count:
            index[~(positive | negative)] = pos_size + neg_size
    counts = np.bincount(index, minlength=pos_size + neg_size + 1).astype(np.int64)
    return {
        "positive": (Buckets(pos_offset, counts[:pos_size]) if pos_size
                     else Buckets(0, _EMPTY)),
        "negative": (Buckets(neg_offset, counts[pos_size:pos_size + neg_size]) if neg_size
                     else Buckets(0, _EMPTY)),
    }


def downscale_buckets(buckets: Buckets, shift: int) -> Buckets:
    """Merge each run of ``2**shift`` buckets into one (OTLP "perfect subsetting")."""
    if shift == 0 or buckets.counts.size == 0:
        return buckets
    index = np.arange(buckets.offset, buckets.offset + buckets.counts.size) >> shift
    offset = int(index[0])
    return Buckets(offset, np.bincount(index - offset, weights=buckets.counts).astype(np.int64))


def downscale(hist: ExpHistogram, scale: int) -> ExpHistogram:
    if scale > hist.scale:
        raise ValueError(f"cannot upscale a histogram from scale {hist.scale} to {scale}")
    shift = hist.scale - scale
    return ExpHistogram(scale, hist.zero_count, downscale_buckets(hist.positive, shift),
                        downscale_buckets(hist.negative, shift), hist.count, hist.sum,
                        hist.min, hist.max)


def _bucket_span(buckets: list[Buckets]) -> tuple[int, int] | None:
    spans = [(b.offset, b.offset + b.counts.size - 1) for b in buckets if b.counts.size]
    if not spans:
        return None
    return min(s[0] for s in spans), max(s[1] for s in spans)


def _add(buckets: list[Buckets]) -> Buckets:
    span = _bucket_span(buckets)
    if span is None:
        return Buckets(0, _EMPTY)
    low, high = span
    total = np.zeros(high - low + 1, dtype=np.int64)
    for b in buckets:
        if b.counts.size:
            total[b.offset - low : b.offset - low + b.counts.size] += b.counts
    return Buckets(low, total)


def merge(hists: list[ExpHistogram], max_size: int = DEFAULT_MAX_SIZE) -> ExpHistogram:
    """The histogram of all values of ``hists``, at the finest scale that fits ``max_size``."""
    hists = [h for h in hists if h.count]
    if not hists:
        return empty()
    scale = min(h.scale for h in hists)
    aligned = [downscale(h, scale) for h in hists]
    shift = 0
    for sign in ("positive", "negative"):
        span = _bucket_span([getattr(h, sign) for h in aligned])
        if span is not None:
            shift = max(shift, _scale_reduction(span[0], span[1], max_size))
    if shift:
        scale = max(scale - shift, MIN_SCALE)
        aligned = [downscale(h, scale) for h in aligned]
    return ExpHistogram(
        scale=scale,
        zero_count=sum(h.zero_count for h in aligned),
        positive=_add([h.positive for h in aligned]),
        negative=_add([h.negative for h in aligned]),
        count=sum(h.count for h in aligned),
        sum=float(sum(h.sum for h in aligned)),
        min=min(h.min for h in aligned),
        max=max(h.max for h in aligned),
    )


@dataclass(frozen=True, slots=True)
class Bins:
    """Histograms on one shared grid, ordered along the real line.

    ``low``/``high`` are bin edges (equal for the zero bucket); ``counts`` has one row per
    histogram. Bins that hold no mass in any histogram are dropped.
    """

    low: np.ndarray
    high: np.ndarray
    counts: np.ndarray


def common_bins(hists: list[ExpHistogram]) -> Bins:
    """Put ``hists`` on the grid of their smallest scale, so their bins line up exactly."""
    scale = min(h.scale for h in hists)
    aligned = [downscale(h, scale) for h in hists]
    rows: list[np.ndarray] = []
    neg_span = _bucket_span([h.negative for h in aligned])
    pos_span = _bucket_span([h.positive for h in aligned])
    neg_index = np.arange(neg_span[1], neg_span[0] - 1, -1) if neg_span else _EMPTY
    pos_index = np.arange(pos_span[0], pos_span[1] + 1) if pos_span else _EMPTY
    for h in aligned:
        rows.append(np.concatenate([
            _dense(h.negative, neg_index), [h.zero_count], _dense(h.positive, pos_index)]))
    low = np.concatenate([-lower_boundary(neg_index + 1, scale), [0.0],
                          lower_boundary(pos_index, scale)])
    high = np.concatenate([-lower_boundary(neg_index, scale), [0.0],
                           lower_boundary(pos_index + 1, scale)])
    counts = np.vstack(rows)
    keep = counts.sum(axis=0) > 0
    return Bins(low[keep], high[keep], counts[:, keep])


def _dense(buckets: Buckets, index: np.ndarray) -> np.ndarray:
    out = np.zeros(index.size, dtype=np.int64)
    if buckets.counts.size == 0 or index.size == 0:
        return out
    position = index - buckets.offset
    inside = (position >= 0) & (position < buckets.counts.size)
    out[inside] = buckets.counts[position[inside]]
    return out


def bin_moments(hist: ExpHistogram) -> tuple[float, float]:
    """Mean (exact, from the sum) and standard deviation (values uniform within a bucket)."""
    if hist.count == 0:
        return math.nan, math.nan
    bins = common_bins([hist])
    low, high = clipped_edges(bins.low, bins.high, bins.counts[0], hist.min, hist.max)
    mean = hist.sum / hist.count
    second_moment = float(np.sum(bins.counts[0] * (low * low + low * high + high * high) / 3.0))
    variance = max(second_moment / hist.count - mean * mean, 0.0)
    return mean, math.sqrt(variance)


def clipped_edges(
    low: np.ndarray, high: np.ndarray, counts: np.ndarray, minimum: float, maximum: float
) -> tuple[np.ndarray, np.ndarray]:
    """Edges with the outermost occupied bins narrowed to the observed min and max."""
    low = low.copy()
    high = high.copy()
    occupied = np.flatnonzero(counts)
    if occupied.size and math.isfinite(minimum) and math.isfinite(maximum):
        first, last = occupied[0], occupied[-1]
        low[first] = min(max(low[first], minimum), high[first])
        high[last] = max(min(high[last], maximum), low[last])
    return low, high


def quantile(hist: ExpHistogram, q: float | np.ndarray | list[float]) -> float | np.ndarray:
    """The value at which the histogram's CDF reaches ``q`` (a float or an array of them).

    Values are taken as uniform within a bucket, the outermost occupied buckets narrowed to
    the observed min and max, and the zero bucket as a point mass at 0. ``q = 0`` gives the
    min and ``q = 1`` the max; an empty histogram gives NaN. The result lies in the bucket
    holding the true quantile, so it is within one bucket width of it: a relative error of
    at most ``2 ** 2 ** -scale - 1`` (about 4.4 % at scale 4, 0.27 % at scale 8).
    """
    qs = np.asarray(q, dtype=np.float64)
    if np.any((qs < 0) | (qs > 1) | np.isnan(qs)):
        raise ValueError(f"quantile levels must be in [0, 1], got {q!r}")
    if hist.count == 0 or hist.total == 0:
        result = np.full(qs.shape, math.nan)
        return float(result) if qs.ndim == 0 else result
    bins = common_bins([hist])
    counts = bins.counts[0].astype(np.float64)
    low, high = clipped_edges(bins.low, bins.high, bins.counts[0], hist.min, hist.max)
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    target = qs * total
    # The first bin whose cumulative count reaches the target holds the quantile.
    position = np.minimum(np.searchsorted(cumulative, target, side="left"), counts.size - 1)
    before = cumulative[position] - counts[position]
    fraction = np.clip((target - before) / counts[position], 0.0, 1.0)
    values = low[position] + fraction * (high[position] - low[position])
    values = np.clip(values, hist.min, hist.max)
    values = np.where(qs == 0, hist.min, np.where(qs == 1, hist.max, values))
    return float(values) if qs.ndim == 0 else values
