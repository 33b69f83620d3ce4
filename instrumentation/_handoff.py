"""Sampling a stream's rows in ``predict``, before they are handed to the recorder.

Once a stream samples (its volume passed the recorder's budget), each of its rows is kept with
probability ``rate``, independently. Drawn as geometric gaps between kept rows that run
*across* the stream's calls, a call whose rows all fall inside the current gap costs one
subtraction and hands over its counts only: no random draw, no array held until the drain.
At a sample rate of 1/1000, a one-row call keeps a row once in a thousand calls.

The gaps themselves are drawn ahead by the recorder thread (``refill``, at each drain): right
after a large ``predict`` even one ``random()`` and ``log()`` cost about 4 us in the caller's
thread, where popping a drawn gap costs a fraction of it (issue 17).

The gap is shared by the threads calling the stream's model without a lock: two calls racing
may read the same gap, so one row in a race may be kept or skipped twice; inclusion stays
Bernoulli(rate) per row otherwise (gaps are memoryless).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable

import numpy as np

from driftline.instrumentation._aggregation import MASKED_SAMPLE_ROWS, sample_positions

# Calls expecting at most this many kept rows draw their positions one by one in plain
# Python (a few small NumPy calls right after a large predict cost more than the whole draw).
PYTHON_DRAW_ROWS = 32
# Gaps a sampling stream keeps drawn ahead (``HandOffSample.refill``): 8 bytes each.
MIN_GAPS_AHEAD, MAX_GAPS_AHEAD = 64, 16384


class HandOffSample:
    """One stream's hand-off sample at ``rate``. Below rate 1, ``gap`` counts the rows to
    skip before the next kept row; at rate 1 (a stream within its budget, or one whose
    prediction records need every row) ``gap`` is -1, below any call's rows: every call is
    handed over whole. A stream keeps its one sample object while its rate changes, so the
    call sites holding it never look it up again."""

    __slots__ = ("_drawn_late", "_exponentials", "_left_at_refill", "_reserve", "_rng",
                 "_scale", "_uniform", "gap", "rate")

    def __init__(self, rate: float, uniform: Callable[[], float],
                 rng: np.random.Generator) -> None:
        self._uniform, self._rng = uniform, rng
        # Standard exponential variates drawn ahead; a gap at any rate is one of them scaled
        # (floor(E / -log(1 - rate)) is Geometric(rate) - 1), so a new rate keeps them.
        self._exponentials = array("d")
        self._reserve, self._left_at_refill, self._drawn_late = 0, 0, 0
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        """Sample at ``rate`` from now on, from a fresh gap (memoryless)."""
        self.rate = min(rate, 1.0)
        if self.rate >= 1.0:
            self._scale, self.gap = 0.0, -1
        else:
            self._scale = -1.0 / math.log1p(-self.rate)
            self.gap = self.next_gap()

    def refill(self) -> None:
        """Draw gaps ahead for the calls until the next refill (the recorder thread, after a
        drain). The reserve only grows: to twice what the calls took since the last refill,
        within MIN_GAPS_AHEAD and MAX_GAPS_AHEAD. Appended in place while callers may pop:
        each variate is used once."""
        if self.rate >= 1.0:
            return
        exponentials, uniform = self._exponentials, self._uniform
        taken = max(self._left_at_refill - len(exponentials), 0) + self._drawn_late
        self._reserve = min(max(self._reserve, 2 * taken, MIN_GAPS_AHEAD), MAX_GAPS_AHEAD)
        exponentials.extend([-math.log(1.0 - uniform())
                             for _ in range(self._reserve - len(exponentials))])
        self._left_at_refill, self._drawn_late = len(exponentials), 0

    def next_gap(self) -> int:
        """A gap from the variates drawn ahead, or drawn now when they have run out."""
        try:
            return int(self._exponentials.pop() * self._scale)
        except IndexError:
            self._drawn_late += 1  # counted for the next refill (a race may miss one)
            return int(-math.log(1.0 - self._uniform()) * self._scale)

    def first_kept(self, rows: int) -> int:
        """The first kept of a call's next ``rows`` rows (the gap is below ``rows``), the
        others left to ``rows_after``; the gap starts afresh past the call (memoryless)."""
        first, self.gap = self.gap, self.next_gap()
        return first

    def positions(self, rows: int) -> list[int] | np.ndarray:
        """Positions kept among a call's next ``rows`` rows, sorted; advances the gap. One
        frame for the common case of one kept row (each frame costs about a microsecond
        right after a large ``predict``)."""
        first = self.gap
        if first >= rows:
            self.gap = first - rows
            return []  # the common case (the recorder tests it first): nothing kept
        try:
            second = first + 1 + int(self._exponentials.pop() * self._scale)
        except IndexError:
            second = first + 1 + self.next_gap()
        if second >= rows:
            self.gap = second - rows
            return [first]
        if (rows - second) * self.rate <= PYTHON_DRAW_ROWS:
            kept, beyond = _drawn_from(second, rows, self.next_gap)
            self.gap = beyond - rows
            return [first, *kept]
        # Many kept rows: the rest drawn with NumPy; past the last kept row the gap starts
        # afresh (memoryless).
        rest = sample_positions(self._rng, rows - second - 1, self.rate) + (second + 1)
        self.gap = self.next_gap()
        return np.concatenate(([first, second], rest))


def rows_after(uniform: Callable[[], float], rng: np.random.Generator, first: int, rows: int,
               rate: float) -> list[int] | np.ndarray:
    """Positions kept of a call's ``rows`` rows whose first kept one is ``first``: it, and
    each later row with probability ``rate``. Drawn one by one in plain Python when few are
    expected: the drain picks one call at a time, and each NumPy draw releases the GIL, whose
    taking back waits for the model's thread (a 100-row call cost 10 us of the recorder's
    CPU and 15 of its caller's that way)."""
    if (rows - first - 1) * rate <= PYTHON_DRAW_ROWS:
        log_skip = math.log1p(-rate)
        return _drawn_from(first, rows,
                           lambda: int(math.log(1.0 - uniform()) / log_skip))[0]
    rest = sample_positions(rng, rows - first - 1, rate) + (first + 1)
    return np.concatenate(([first], rest)).astype(np.intp)


def _drawn_from(first: int, rows: int, next_gap: Callable[[], int]
                ) -> tuple[list[int], int]:
    """Kept positions below ``rows`` from ``first`` (kept) on, by geometric gaps taken one
    at a time, and the first kept position beyond them."""
    kept = [first]
    position = first + next_gap() + 1
    while position < rows:
        kept.append(position)
        position += next_gap() + 1
    return kept, position


def thinned(uniform: Callable[[], float], rng: np.random.Generator, rows: int,
            ratio: float) -> list[int] | np.ndarray:
    """Positions kept of ``rows`` sampled rows when their sample is thinned to a lower rate:
    each with probability ``ratio``."""
    if rows <= MASKED_SAMPLE_ROWS:
        return [row for row in range(rows) if uniform() < ratio]
    return sample_positions(rng, rows, ratio)
