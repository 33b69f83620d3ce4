"""Cumulative to delta, per stream, as the collector's ``cumulativetodelta`` processor does.

A stream is resource + scope + metric name + point attributes. For each the last cumulative
point is kept; the delta is the current point minus it. A reset (start time changed, or any
count went down) makes the point its own delta. A point not newer than the last one is
dropped (out of order or a duplicate). The first point of a stream follows ``initial_value:
auto``: it is its own delta only when its start time is set, after this component started and
differs from its time; otherwise it only becomes the base of the next delta.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline import exphist
from driftline.exphist import Buckets, ExpHistogram
from driftline.processor.ml_drift.explicit import ExplicitHistogram

# Streams kept; past it the least recently seen is forgotten (its next point is a first one).
DEFAULT_MAX_STREAMS = 100_000
# A stream unseen this long is forgotten.
DEFAULT_STALENESS_S = 3600.0
NS_PER_S = 1_000_000_000

Value = float | ExpHistogram | ExplicitHistogram


@dataclass(frozen=True, slots=True)
class _Last:
    start_ns: int
    time_ns: int
    value: Value


class _Reset(Exception):
    """The current cumulative value is below the last one: the counter restarted."""


def _subtract_numbers(current: float, last: float) -> float:
    if current < last:
        raise _Reset
    return current - last


def _subtract_buckets(current: Buckets, last: Buckets) -> Buckets:
    if not last.counts.size:
        return current
    if not current.counts.size:
        raise _Reset
    low = min(current.offset, last.offset)
    high = max(current.offset + current.counts.size, last.offset + last.counts.size)
    out = np.zeros(high - low, dtype=np.int64)
    out[current.offset - low: current.offset - low + current.counts.size] += current.counts
    out[last.offset - low: last.offset - low + last.counts.size] -= last.counts
    if (out < 0).any():
        raise _Reset
    return Buckets(low, out)


def _subtract_exponential(current: ExpHistogram, last: ExpHistogram) -> ExpHistogram:
    scale = min(current.scale, last.scale)
    cur, prev = exphist.downscale(current, scale), exphist.downscale(last, scale)
    if cur.count < prev.count or cur.zero_count < prev.zero_count:
        raise _Reset
    # The cumulative min and max still bound every value of the delta: the clipping in the
    # drift statistics only needs bounds.
    return ExpHistogram(scale, cur.zero_count - prev.zero_count,
                        _subtract_buckets(cur.positive, prev.positive),
                        _subtract_buckets(cur.negative, prev.negative),
                        cur.count - prev.count, cur.sum - prev.sum, cur.min, cur.max)


def _subtract_explicit(current: ExplicitHistogram, last: ExplicitHistogram
                       ) -> ExplicitHistogram:
    if current.bounds != last.bounds or current.count < last.count:
        raise _Reset
    counts = tuple(c - p for c, p in zip(current.counts, last.counts, strict=True))
    if min(counts) < 0:
        raise _Reset
    return ExplicitHistogram(current.bounds, counts, current.count - last.count,
                             current.sum - last.sum, current.min, current.max)


def subtract(current: Value, last: Value) -> Value:
    """``current - last``; raises ``_Reset`` when ``current`` cannot follow ``last``."""
    if isinstance(current, ExpHistogram) and isinstance(last, ExpHistogram):
        return _subtract_exponential(current, last)
    if isinstance(current, ExplicitHistogram) and isinstance(last, ExplicitHistogram):
        return _subtract_explicit(current, last)
    if isinstance(current, int | float) and isinstance(last, int | float):
        return _subtract_numbers(current, last)
    raise _Reset  # the stream changed its point type


class CumulativeToDelta:
    """The per-stream table; not thread-safe (the processor holds its lock around it).

    ``stats`` counts ``cumulative_resets``, ``cumulative_out_of_order``,
    ``cumulative_initial_dropped`` and ``cumulative_streams_evicted``.
    """

    def __init__(self, component_start_ns: int, max_streams: int = DEFAULT_MAX_STREAMS,
                 staleness_ns: int = round(DEFAULT_STALENESS_S * NS_PER_S),
                 moved: Callable[[int, int], bool] | None = None) -> None:
        """``moved(start_ns, time_ns)`` says whether a stream's first point here shows it
        was sent to another processor before (``split.SplitDetector.moved``): that point is
        then only a base, and ``self.moved`` is True after the call."""
        self._start_ns = component_start_ns
        self._moved = moved
        self.moved = False
        self._max_streams = max_streams
        self._staleness_ns = staleness_ns
        self._streams: OrderedDict[Hashable, _Last] = OrderedDict()
        self.stats: Counter[str] = Counter()
        self.touched: set[Hashable] = set()  # since the last checkpoint
        self.forgotten: set[Hashable] = set()

    def clear(self) -> None:
        """Forget every stream (before reloading the table from the checkpoint)."""
        self._streams.clear()
        self.touched.clear()
        self.forgotten.clear()

    def __len__(self) -> int:
        return len(self._streams)

    def delta(self, stream: Hashable, start_ns: int, time_ns: int, value: Value
              ) -> Value | None:
        """The delta of this cumulative point, or None when it yields none (first point
        under ``auto``, out of order)."""
        last = self._streams.get(stream)
        self.moved = False
        if last is not None and time_ns <= last.time_ns:
            self.stats["cumulative_out_of_order"] += 1
            return None
        self._remember(stream, _Last(start_ns, time_ns, value))
        if last is None:
            if self._moved is not None and self._moved(start_ns, time_ns):
                self.moved = True
                return None
            if start_ns > 0 and start_ns >= self._start_ns and start_ns != time_ns:
                return value
            self.stats["cumulative_initial_dropped"] += 1
            return None
        if start_ns != last.start_ns:
            self.stats["cumulative_resets"] += 1
            return value
        try:
            return subtract(value, last.value)
        except _Reset:
            self.stats["cumulative_resets"] += 1
            return value

    def _remember(self, stream: Hashable, last: _Last) -> None:
        self._streams[stream] = last
        self._streams.move_to_end(stream)
        self.touched.add(stream)
        self.forgotten.discard(stream)
        while len(self._streams) > self._max_streams:
            evicted, _ = self._streams.popitem(last=False)
            self._forget(evicted)

    def _forget(self, stream: Hashable) -> None:
        self.stats["cumulative_streams_evicted"] += 1
        self.touched.discard(stream)
        self.forgotten.add(stream)

    def expire(self, now_ns: int) -> None:
        """Forget streams unseen for the staleness period (their next point starts anew)."""
        if self._staleness_ns <= 0:
            return
        while self._streams:
            stream, last = next(iter(self._streams.items()))
            if now_ns - last.time_ns <= self._staleness_ns:
                break
            del self._streams[stream]
            self._forget(stream)

    # --- checkpoint form ------------------------------------------------------------------

    def entry(self, stream: Hashable) -> dict[str, Any] | None:
        last = self._streams.get(stream)
        if last is None:
            return None
        return {"start_ns": last.start_ns, "time_ns": last.time_ns,
                "value": value_to_dict(last.value)}

    def load_entry(self, stream: Hashable, data: dict[str, Any]) -> None:
        self._streams[stream] = _Last(int(data["start_ns"]), int(data["time_ns"]),
                                      value_from_dict(data["value"]))


def value_to_dict(value: Value) -> dict[str, Any]:
    if isinstance(value, ExpHistogram):
        return {"exponential": value.to_dict()}
    if isinstance(value, ExplicitHistogram):
        return {"explicit": value.to_dict()}
    return {"number": value}


def value_from_dict(data: dict[str, Any]) -> Value:
    if "exponential" in data:
        return ExpHistogram.from_dict(data["exponential"])
    if "explicit" in data:
        return ExplicitHistogram.from_dict(data["explicit"])
    number = data["number"]
    return number if isinstance(number, int) else float(number)
