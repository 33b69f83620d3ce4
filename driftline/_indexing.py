"""Bucket indexes at one scale: the OpenTelemetry SDK's mapping, and counts of many values.

``map_to_index`` is the SDK's mapping, vectorised: at scale ``s`` the base is ``2 ** 2 ** -s``
and bucket ``i`` holds values in ``(base**i, base**(i+1)]``. ``count_buckets`` gives the
counts that mapping would produce for a whole column without a logarithm per value: values
are counted on a fine grid read straight from their float64 bits (sign, exponent and the
top mantissa bits, ``2 ** CELL_BITS_ABOVE_SCALE`` cells per bucket), a cell inside one
bucket gives all its values to it, and only the values of cells a bucket boundary crosses
(powers of two included) are mapped one by one.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache

import numpy as np

_MANTISSA_BITS = 52
_MANTISSA_MASK = np.uint64((1 << _MANTISSA_BITS) - 1)
_EXPONENT_BIAS = 1023
_MAX_EXPONENT_FIELD = 2046  # 2047 is infinity and NaN
# Above one exact power of two in this many values, correct them in bulk, not by selection.
_DENSE_POWERS_OF_TWO = 16
_MIN_NORMAL = sys.float_info.min
_MIN_NORMAL_EXPONENT = -1022
_MAX_NORMAL_EXPONENT = 1023
# Cells per bucket of the counting grid, as a power of two: about one cell in 2**this is
# crossed by a boundary and its values mapped one by one.
CELL_BITS_ABOVE_SCALE = 5
_MAX_CELLS = 1 << 21  # 16 MB of counts; wider grids (two signs at fine scales) go exact
# The grid's bincount and scans cost per cell whatever the number of values, the exact path
# per value: the grid pays off only for many values and not too many cells per value
# (measured, thread CPU: 1 000 normal values take 0.02 ms exactly and 1.3 ms on the grid;
# 50 000 take 0.3-0.4 ms and 0.8-1.6 ms; 250 000 take 2.1-2.6 ms either way; a million 11-22
# ms and 5.6 ms).
GRID_MIN_VALUES = 1 << 16
GRID_CELLS_PER_VALUE = 8
# A boundary this close (in bucket-index units) to a cell marks the cell as crossed. The
# SDK's float64 log is off by under 3e-7 index units even at scale 20 and exponent +-1022.
_BOUNDARY_MARGIN = 1e-6
_SIGN_FIELD = 1 << 11  # sign bit above the 11 exponent bits
# A crossed cell starting at a power of two and holding over 1/this of the values is checked
# for holding only that value (one pass each, for at most this many cells).
_CROWDED_CELL = 64
_MAX_SETTLED_CELLS = 8


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


def count_buckets(values: np.ndarray, scale: int, positive: tuple[int, int] | None,
                  negative: tuple[int, int] | None, zero_count: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Counts of the positive and of the negative ``values`` over their index ranges.

    ``positive`` and ``negative`` are the inclusive ranges of indexes at ``scale`` that the
    sign's magnitudes take (None for an absent sign), and ``zero_count`` the zeros among
    ``values``. The result equals ``np.bincount(map_to_index(magnitudes, scale) - low)``
    per sign.
    """
    pos_low, pos_size = _range(positive)
    neg_low, neg_size = _range(negative)
    if pos_size <= 1 and neg_size <= 1:  # one bucket per sign (a constant, 0/1 flags)
        signed = values.size - zero_count
        if pos_size and neg_size:
            pos_count = int(np.count_nonzero(values > 0))
        else:  # one sign: all of them, or none (a constant negative column)
            pos_count = signed if pos_size else 0
        return (np.array([pos_count] if pos_size else [], dtype=np.int64),
                np.array([signed - pos_count] if neg_size else [], dtype=np.int64))
    layout = (pos_low, pos_size, neg_low, neg_size)
    has_zeros = zero_count > 0
    if has_zeros and negative is None and values.view(np.int64).min() < 0:
        values = np.abs(values)  # -0.0 would sit in a cell far above the positives
    grid = _cell_grid(values, scale, positive, negative, has_zeros)
    if grid is None and scale > 0 and (has_zeros or (positive and negative)):
        # One grid over both signs spans the sign bit's 2048 octaves, and one over zeros
        # reaches down to exponent 0: too many cells at the finer scales of profiles. A
        # selection and a grid per sign cost less than a log per value.
        pos = count_buckets(values[values > 0], scale, positive, None, 0)[0] \
            if positive else np.zeros(0, dtype=np.int64)
        neg = count_buckets(values[values < 0], scale, None, negative, 0)[1] \
            if negative else np.zeros(0, dtype=np.int64)
        return pos, neg
    if grid is None:
        counts = _exact_counts(values, scale, layout, has_zeros)
    else:
        counts = _grid_counts(values, scale, layout, *grid)
    return counts[:pos_size], counts[pos_size:pos_size + neg_size]


def _range(span: tuple[int, int] | None) -> tuple[int, int]:
    return (0, 0) if span is None else (span[0], span[1] - span[0] + 1)


def _exact_counts(values: np.ndarray, scale: int, layout: tuple[int, int, int, int],
                  has_zeros: bool) -> np.ndarray:
    """Counts with each value mapped by ``map_to_index``, in one code range: positives,
    then negatives, then one slot for zeros."""
    pos_low, pos_size, neg_low, neg_size = layout
    code = map_to_index(np.abs(values), scale)
    if neg_size and pos_size:
        code -= np.where(values < 0, neg_low - pos_size, pos_low)
    else:
        code -= neg_low - pos_size if neg_size else pos_low
    if has_zeros:
        code[values == 0] = pos_size + neg_size
    return np.bincount(code, minlength=pos_size + neg_size + 1)


def _cell_grid(values: np.ndarray, scale: int, positive: tuple[int, int] | None,
               negative: tuple[int, int] | None, has_zeros: bool) -> tuple[int, int] | None:
    """(mantissa bits per cell, first cell) of the counting grid, or None to map exactly.

    Cells are the top bits of a value (sign, exponent, mantissa); positives come first, and
    zeros, if any, sit in the cells of exponent field 0 below each sign's values.
    """
    if scale <= 0 or not values.flags.c_contiguous or values.size < GRID_MIN_VALUES:
        return None  # no log to save, or too few values to pay for the grid
    spans = [s for s in (positive, negative) if s is not None]
    lowest_index = (_MIN_NORMAL_EXPONENT << scale) - 1
    highest_index = ((_MAX_NORMAL_EXPONENT + 1) << scale) - 1
    if any(low <= lowest_index or high >= highest_index for low, high in spans):
        return None  # subnormals and the top of float64: the SDK's special cases
    bits = scale + CELL_BITS_ABOVE_SCALE
    cells_per_octave = 1 << bits
    # Exponent fields around each sign's index range, one wider each side: the log-based
    # index of a value a few ulps from a power of two may fall in the neighbouring octave.
    fields = [((low >> scale) + _EXPONENT_BIAS - 1, (high >> scale) + _EXPONENT_BIAS + 1)
              for low, high in (positive or negative, negative or positive)]
    first = 0 if has_zeros else fields[0][0] + (0 if positive else _SIGN_FIELD)
    last = fields[1][1] + (_SIGN_FIELD if negative else 0)
    if (last - first + 1) * cells_per_octave > min(_MAX_CELLS, values.size * GRID_CELLS_PER_VALUE):
        return None
    return bits, first * cells_per_octave


def _grid_counts(values: np.ndarray, scale: int, layout: tuple[int, int, int, int],
                 bits: int, first: int) -> np.ndarray:
    pos_low, pos_size, neg_low, neg_size = layout
    cells = values.view(np.uint64) >> np.uint64(_MANTISSA_BITS - bits)
    cells -= np.uint64(first)
    cells = cells.view(np.int64)
    per_cell = np.bincount(cells)
    occupied = np.flatnonzero(per_cell)
    cell = occupied + first
    field = (cell >> bits) & (_SIGN_FIELD - 1)
    negative = cell >= (_SIGN_FIELD << bits)
    within = cell & ((1 << bits) - 1)
    in_octave, crossed = _octave_table(bits, scale)
    index = ((field - _EXPONENT_BIAS) << scale) + in_octave[within]
    code = np.where(negative, index - neg_low + pos_size, index - pos_low)
    zeros = field == 0  # only zeros: subnormals took the exact path
    code[zeros] = pos_size + neg_size
    whole = zeros | ~crossed[within]
    _settle_powers_of_two(values, scale, layout, bits, cell, per_cell[occupied], code, whole)
    counts = np.bincount(code[whole], weights=per_cell[occupied[whole]],
                         minlength=pos_size + neg_size + 1).round().astype(np.int64)
    if not whole.all():
        pick = np.zeros(per_cell.size, dtype=bool)
        pick[occupied[~whole]] = True
        counts += _exact_counts(values[pick[cells]], scale,
                                (pos_low, pos_size, neg_low, neg_size), False)
    return counts


def _settle_powers_of_two(values: np.ndarray, scale: int, layout: tuple[int, int, int, int],
                          bits: int, cell: np.ndarray, mass: np.ndarray, code: np.ndarray,
                          whole: np.ndarray) -> None:
    """Let a crowded cell that starts at a power of two and holds only that value (integer
    columns) give its values to that value's bucket, rather than map each one."""
    pos_low, pos_size, neg_low, _ = layout
    at_power = (cell & ((1 << bits) - 1)) == 0
    candidates = np.flatnonzero(~whole & at_power & (mass > values.size // _CROWDED_CELL))
    for position in candidates[np.argsort(-mass[candidates])][:_MAX_SETTLED_CELLS]:
        edge = float(np.uint64(cell[position] << (_MANTISSA_BITS - bits)).view(np.float64))
        if np.count_nonzero(values == edge) == mass[position]:
            index = int(map_to_index(abs(edge), scale))
            code[position] = index - neg_low + pos_size if edge < 0 else index - pos_low
            whole[position] = True


@lru_cache(maxsize=64)
def _octave_table(bits: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cell of one octave: its bucket counted from the octave's first, and whether a
    boundary crosses it (the octave's edges always do: powers of two are boundaries)."""
    edges = np.log2(1.0 + np.arange((1 << bits) + 1) / (1 << bits)) * (1 << scale)
    below = np.floor(edges[:-1] - _BOUNDARY_MARGIN)
    above = np.floor(edges[1:] + _BOUNDARY_MARGIN)
    return np.floor(edges[:-1]).astype(np.int64), below != above
