"""Sampling a stream's rows in ``predict``, before they are handed to the recorder.

Once a stream samples (its volume passed the recorder's budget), each of its rows is kept with
probability ``rate``, independently. Drawn as geometric gaps between kept rows that run
*across* the stream's calls, a call whose rows all fall inside the current gap costs one
subtraction and hands over its counts only: no random draw, no array held until the drain.
At a sample rate of 1/1000, a one-row call keeps a row once in a thousand calls.

The gap is shared by the threads calling the stream's model without a lock: two calls racing
may read the same gap, so one row in a race may be kept or skipped twice; inclusion stays
Bernoulli(rate) per row otherwise (gaps are memoryless).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from driftline.instrumentation._aggregation import MASKED_SAMPLE_ROWS, sample_positions

# Calls expecting at most this many kept rows draw their positions one by one in plain
# Python (a few small NumPy calls right after a large predict cost more than the whole draw).
PYTHON_DRAW_ROWS = 32


class HandOffSample:
    """One sampling stream's hand-off sample at ``rate`` (0 < rate < 1)."""

    __slots__ = ("_log_skip", "_rng", "_uniform", "gap", "rate")

    def __init__(self, rate: float, uniform: Callable[[], float],
                 rng: np.random.Generator) -> None:
        self.rate = rate
        self._log_skip = math.log1p(-rate)
        self._uniform, self._rng = uniform, rng
        self.gap = self._next_gap()  # rows to skip before the next kept row

    def _next_gap(self) -> int:
        return int(math.log(1.0 - self._uniform()) / self._log_skip)

    def first_kept(self, rows: int) -> int:
        """The first kept of a call's next ``rows`` rows (the gap is below ``rows``), the
        others left to ``rows_after``; the gap starts afresh past the call (memoryless)."""
        first, self.gap = self.gap, self._next_gap()
        return first

    def positions(self, rows: int) -> list[int] | np.ndarray:
        """Positions kept among a call's next ``rows`` rows, sorted; advances the gap."""
        gap = self.gap
        if gap >= rows:
            self.gap = gap - rows
            return []  # the common case (the recorder tests it first): nothing kept
        if (rows - gap) * self.rate <= PYTHON_DRAW_ROWS:
            kept = [gap]
            position = gap + self._next_gap() + 1
            while position < rows:
                kept.append(position)
                position += self._next_gap() + 1
            self.gap = position - rows
            return kept
        # Many kept rows: the first at ``gap``, the rest drawn with NumPy; past the last kept
        # row the gap starts afresh (memoryless).
        rest = sample_positions(self._rng, rows - gap - 1, self.rate) + (gap + 1)
        self.gap = self._next_gap()
        return np.concatenate(([gap], rest))


def rows_after(rng: np.random.Generator, first: int, rows: int, rate: float) -> np.ndarray:
    """Positions kept of a call's ``rows`` rows whose first kept one is ``first``: it, and
    each later row with probability ``rate``."""
    rest = sample_positions(rng, rows - first - 1, rate) + (first + 1) \
        if first + 1 < rows else np.empty(0, dtype=np.intp)
    return np.concatenate(([first], rest)).astype(np.intp)


def kept_rows(array: np.ndarray, positions: list[int] | np.ndarray) -> np.ndarray:
    """A copy of ``array``'s rows at ``positions`` (never a view holding the caller's array)."""
    if len(positions) == 1:
        first = positions[0]
        return array[first:first + 1].copy()
    return array[positions]


def thinned(uniform: Callable[[], float], rng: np.random.Generator, rows: int,
            ratio: float) -> list[int] | np.ndarray:
    """Positions kept of ``rows`` sampled rows when their sample is thinned to a lower rate:
    each with probability ``ratio``."""
    if rows <= MASKED_SAMPLE_ROWS:
        return [row for row in range(rows) if uniform() < ratio]
    return sample_positions(rng, rows, ratio)
