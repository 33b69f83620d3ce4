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
from dataclasses import dataclass, field

import numpy as np
from opentelemetry.proto.metrics.v1.metrics_pb2 import ExponentialHistogramDataPoint

from driftline import exphist
from driftline.exphist import ExpHistogram

_OtlpBuckets = ExponentialHistogramDataPoint.Buckets

REFERENCE_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MAX_DEFAULT_BOUNDS = 40
# Edges are computed on a grid of (scale, index) of at most this many cells more than the
# buckets folded (see _classic_positions).
_MIN_GRID_CELLS = 4096


def reference_bounds(reference: ExpHistogram) -> tuple[float, ...]:
    """The reference's deciles snapped to its bucket edges, distinct and sorted.

    Edges are those of the reference in the SDK's 160 buckets: profiles keep finer buckets,
    whose edges production histograms would not have.
    """
    if reference.total == 0:
        return ()
    reference = exphist.merge([reference], exphist.DEFAULT_MAX_SIZE)
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
        # An absent or inconsistent min (inf, NaN, above the max: found by tests/test_fuzz.py)
        # gives the default depth below the top, as 0 does.
        bottom = math.floor(math.log2(smallest)) if 0 < smallest <= largest \
            else top - MAX_DEFAULT_BOUNDS
        step = max(1, math.ceil((top - bottom + 1) / (MAX_DEFAULT_BOUNDS // 2)))
        bounds.update(sign * 2.0 ** k for k in range(top, bottom - 1, -step))
    return tuple(sorted(bounds))


def bucket_counts(hist: ExpHistogram, bounds: tuple[float, ...]) -> tuple[int, ...]:
    """Counts per explicit bucket ``(-inf, b0], (b0, b1], ..., (bn, +inf)`` of ``hist``."""
    pending = PendingPoints()
    pending.add(hist.scale, hist.zero_count, _serialized(hist.positive),
                _serialized(hist.negative))
    return tuple(int(c) for c in pending.fold(bounds))


def _serialized(buckets: exphist.Buckets) -> bytes:
    return _OtlpBuckets(offset=buckets.offset,
                        bucket_counts=buckets.counts.tolist()).SerializeToString()


@dataclass(slots=True)
class PendingPoints:
    """Exponential-histogram buckets waiting to be counted on classic bounds, folded for many
    points at once: one vectorised pass, whatever their scales and offsets.

    Each exponential bucket goes whole to the classic bucket its values lie in; one that a
    classic bound cuts (a point coarser than the reference the bounds came from) goes to
    the bucket holding its upper end (its lower end, towards zero, on the negative side).

    A point's buckets are queued as their OTLP ``Buckets`` messages, serialized: one C call
    each, where copying the counts out of protobuf builds a Python int per bucket (that cost
    more than all else per point). The fold decodes them all at once (``_decode_buckets``).
    """

    scales: list[int] = field(default_factory=list)
    positive: list[bytes] = field(default_factory=list)
    negative: list[bytes] = field(default_factory=list)
    zero_count: int = 0

    def __len__(self) -> int:
        return len(self.scales)

    def add(self, scale: int, zero_count: int, positive: bytes, negative: bytes) -> int:
        """Queue one point: its scale, zero count and serialized positive and negative
        ``Buckets``; the number now queued (its caller folds past a limit)."""
        scales = self.scales
        scales.append(scale)
        self.zero_count += zero_count
        self.positive.append(positive)
        self.negative.append(negative)
        return len(scales)

    def fold(self, bounds: tuple[float, ...]) -> np.ndarray:
        """The counts per classic bucket of every pending point, summed; then empty."""
        limits = np.asarray(bounds, dtype=np.float64)
        totals = np.zeros(limits.size + 1, dtype=np.int64)
        totals[np.searchsorted(limits, 0.0, side="left")] += self.zero_count
        scales = np.asarray(self.scales, dtype=np.int64)
        for messages, sign in ((self.positive, 1), (self.negative, -1)):
            offsets, sizes, counts = _decode_buckets(messages)
            if counts.size:
                where = _classic_positions(limits, scales, offsets, sizes, sign)
                totals += np.bincount(where, weights=counts.astype(np.float64),
                                      minlength=limits.size + 1).astype(np.int64)
        self.__init__()  # type: ignore[misc]
        return totals


def _classic_positions(limits: np.ndarray, scales: np.ndarray, offsets: np.ndarray,
                       sizes: np.ndarray, sign: int) -> np.ndarray:
    """Per queued bucket, point after point, the classic bucket its edge falls in.

    The edge is computed once per distinct (scale, index), on a grid over their ranges,
    when that grid is not much larger than the buckets themselves: the points of a series
    share most of their buckets, and the edge and its search cost more than a lookup.
    """
    ramp = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    index = np.repeat(offsets + (1 if sign > 0 else 0), sizes) + ramp
    scale = np.repeat(scales, sizes)
    lowest_index, lowest_scale = int(index.min()), int(scale.min())
    span = int(index.max()) - lowest_index + 1
    cells = (int(scale.max()) - lowest_scale + 1) * span
    if cells > index.size + _MIN_GRID_CELLS:
        return _positions(limits, index, scale, sign)
    grid = np.arange(cells)
    on_grid = _positions(limits, grid % span + lowest_index, grid // span + lowest_scale, sign)
    return on_grid[(scale - lowest_scale) * span + (index - lowest_index)]


def _positions(limits: np.ndarray, index: np.ndarray, scale: np.ndarray,
               sign: int) -> np.ndarray:
    """The classic bucket of each exponential bucket edge ``sign * 2**(index / 2**scale)``."""
    edges = np.exp2(np.ldexp(index.astype(np.float64), -scale))
    return np.searchsorted(limits, sign * edges, side="left")


# The wire bytes of a Buckets message as protobuf writes it: [offset], [counts, packed].
_OFFSET_TAG = 1 << 3 | 0  # field 1 (sint32 offset), varint
_COUNTS_TAG = 2 << 3 | 2  # field 2 (repeated uint64 bucket_counts), packed
_VARINT_BITS = 7
_VARINT_MORE = 0x80  # the high bit: more bytes follow
_VARINT_PAYLOAD = 0x7F
_MAX_VARINT_BYTES = 10


def _decode_buckets(messages: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per message its offset and number of buckets, and all counts one after the other.

    In the layout protobuf writes (tags, offset, length and counts are all varints) every
    message is decoded at once with numpy; any other (unknown fields, say) by protobuf.
    """
    decoded = _decode_canonical_buckets(messages)
    if decoded is not None:
        return decoded
    parsed = [_OtlpBuckets.FromString(message) for message in messages]
    return (np.array([b.offset for b in parsed], dtype=np.int64),
            np.array([len(b.bucket_counts) for b in parsed], dtype=np.int64),
            np.array([c for b in parsed for c in b.bucket_counts], dtype=np.uint64))


def _decode_canonical_buckets(
        messages: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``_decode_buckets`` when every message is ``[offset tag, offset] [counts tag, byte
    length, counts...]`` (either part absent), else None."""
    blob = b"".join(messages)
    lengths = np.fromiter(map(len, messages), dtype=np.int64, count=len(messages))
    if not blob:
        return lengths, lengths, np.zeros(0, dtype=np.uint64)
    data = np.frombuffer(blob, dtype=np.uint8)
    ends = np.cumsum(lengths)
    values, last_bytes = _decode_varints(data)
    if values is None or not (data[ends[lengths > 0] - 1] < _VARINT_MORE).all():
        return None  # a varint too long, or running past its message: not all varints
    # Per message: its first varint, how many, whether it starts with an offset.
    first = np.searchsorted(last_bytes, ends - lengths)
    count = np.searchsorted(last_bytes, ends) - first
    # Read as int64 to compare with tags and lengths (reads past the end find zeros).
    padded = np.concatenate((values, np.zeros(4, np.uint64))).view(np.int64)
    has_offset = (count >= 2) & (padded[first] == _OFFSET_TAG)
    zigzag = np.where(has_offset, padded[first + 1], 0)
    offsets = (zigzag >> 1) ^ -(zigzag & 1)
    header = np.where(has_offset, 2, 0)
    has_counts = count > header
    tag_at = first + header
    counts_start_byte = np.append(last_bytes, np.zeros(4, np.int64))[tag_at + 1] + 1
    canonical = ~has_counts | ((padded[tag_at] == _COUNTS_TAG) & (count >= header + 2)
                               & (padded[tag_at + 1] == ends - counts_start_byte))
    if not canonical.all():
        return None
    sizes = np.where(has_counts, count - header - 2, 0)
    before = np.cumsum(sizes) - sizes
    counts_at = np.repeat(tag_at + 2 - before, sizes) + np.arange(int(sizes.sum()))
    return offsets, sizes, values[counts_at]


def _decode_varints(data: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Every varint of ``data`` (unsigned) and the position of its last byte; None for the
    values if one runs past 64 bits. Each is built from its last byte back to its first,
    one step per byte of the longest (two or three for bucket counts)."""
    last_bytes = np.flatnonzero(data < _VARINT_MORE)
    values = data[last_bytes].astype(np.uint64)
    at = last_bytes - 1
    more = np.flatnonzero((at >= 0) & (data[at] >= _VARINT_MORE))
    for _ in range(_MAX_VARINT_BYTES - 1):
        if not more.size:
            return values, last_bytes
        before = at[more]
        values[more] = (values[more] << np.uint64(_VARINT_BITS)) | (
            data[before] & _VARINT_PAYLOAD).astype(np.uint64)
        at[more] = before - 1
        more = more[(before > 0) & (data[before - 1] >= _VARINT_MORE)]
    return (None if more.size else values), last_bytes
