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
    """One stream's hand-off sample at ``rate``. Below rate 1, ``gap`` counts the rows to
    skip before the next kept row; at rate 1 (a stream within its budget, or one whose
    prediction records need every row) ``gap`` is -1, below any call's rows: every call is
    handed over whole. A stream keeps its one sample object while its rate changes, so the
    call sites holding it never look it up again."""

    __slots__ = ("_log_skip", "_rng", "_uniform", "gap", "rate")

    def __init__(self, rate: float, uniform: Callable[[], float],
                 rng: np.random.Generator) -> None:
        self._uniform, self._rng = uniform, rng
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        """Sample at ``rate`` from now on, from a fresh gap (memoryless)."""
        self.rate = min(rate, 1.0)
        if self.rate >= 1.0:
            self._log_skip, self.gap = 0.0, -1
        else:
            self._log_skip = math.log1p(-self.rate)
            self.gap = self._next_gap()

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
            kept, beyond = _drawn_from(gap, rows, self._log_skip, self._uniform)
            self.gap = beyond - rows
            return kept
        # Many kept rows: the first at ``gap``, the rest drawn with NumPy; past the last kept
        # row the gap starts afresh (memoryless).
        rest = sample_positions(self._rng, rows - gap - 1, self.rate) + (gap + 1)
        self.gap = self._next_gap()
        return np.concatenate(([gap], rest))


def rows_after(uniform: Callable[[], float], rng: np.random.Generator, first: int, rows: int,
               rate: float) -> list[int] | np.ndarray:
    """Positions kept of a call's ``rows`` rows whose first kept one is ``first``: it, and
    each later row with probability ``rate``. Drawn one by one in plain Python when few are
    expected: the drain picks one call at a time, and each NumPy draw releases the GIL, whose
    taking back waits for the model's thread (a 100-row call cost 10 us of the recorder's
    CPU and 15 of its caller's that way)."""
    if (rows - first - 1) * rate <= PYTHON_DRAW_ROWS:
        return _drawn_from(first, rows, math.log1p(-rate), uniform)[0]
    rest = sample_positions(rng, rows - first - 1, rate) + (first + 1)
    return np.concatenate(([first], rest)).astype(np.intp)


def _drawn_from(first: int, rows: int, log_skip: float, uniform: Callable[[], float]
                ) -> tuple[list[int], int]:
    """Kept positions below ``rows`` from ``first`` (kept) on, by geometric gaps drawn one
    at a time (``log_skip`` is log(1 - rate)), and the first kept position beyond them."""
    kept = [first]
    position = first + int(math.log(1.0 - uniform()) / log_skip) + 1
    while position < rows:
        kept.append(position)
        position += int(math.log(1.0 - uniform()) / log_skip) + 1
    return kept, position


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
