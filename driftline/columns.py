"""Named columns of a table, and the bounded accumulators both profiles and the recorder use.

In the app this runs in the recorder thread, never in ``predict``. Numeric columns come out
as float64 (NaN for missing); categorical ones (category, object, string, bool) as objects.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline import exphist

NUMERIC_KINDS = "iuf"
# Candidates held per top-K slot while streaming, so the final top K is nearly exact.
CANDIDATES_PER_TOP_K = 4
# Categorical columns usually repeat a few objects (readers and pandas share them): the first
# rows are sampled for them, and up to this many are counted by address before hashing.
IDENTITY_SAMPLE_ROWS = 1024
IDENTITY_MAX_CANDIDATES = 64


def is_numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in NUMERIC_KINDS


def table_columns(inputs: Any, feature_names: Sequence[str] | None = None
                  ) -> Iterator[tuple[str, np.ndarray]]:
    """(name, values) per column of a DataFrame, a 2-D array or a list of rows.

    Names come from DataFrame columns, else ``feature_names`` (an estimator's
    ``feature_names_in_``) when the count matches, else ``f0..fN``.
    """
    if hasattr(inputs, "dtypes") and hasattr(inputs, "columns"):  # pandas DataFrame
        for name in inputs.columns:
            yield str(name), _series_values(inputs[name])
        return
    array = np.asarray(inputs)
    if array.ndim == 0:
        return
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    array = array.reshape(array.shape[0], -1)
    names = (list(feature_names) if feature_names is not None
             and len(feature_names) == array.shape[1]
             else [f"f{i}" for i in range(array.shape[1])])
    numeric = is_numeric(array)
    values = array.astype(np.float64, copy=False) if numeric else array.astype(object)
    for i, name in enumerate(names):
        yield str(name), values[:, i]


def _series_values(series: Any) -> np.ndarray:
    kind = series.dtype.kind
    if kind in NUMERIC_KINDS:
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.to_numpy(dtype=object, na_value=None)


def missing_mask(values: np.ndarray) -> np.ndarray:
    """True where a value is missing: NaN, infinities, None, pandas NA, float NaN in objects."""
    if is_numeric(values):
        return ~np.isfinite(values)
    return np.fromiter((_missing(v) for v in values), dtype=bool, count=values.size)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return not np.isfinite(value)
    try:
        return bool(value != value)  # NaN-like objects (pd.NA raises, handled below)
    except (TypeError, ValueError):
        return True


def _distinct_values(values: np.ndarray) -> Counter[Any]:
    """Rows per distinct value of an object array, as ``Counter(values.tolist())`` counts.

    Rows holding one of a few repeated objects are counted by comparing object addresses
    (vectorised, a pass per object) instead of hashing each row; the remaining rows are
    hashed. Equal objects at different addresses still merge in the Counter.
    """
    flat = np.ascontiguousarray(values.ravel())
    if flat.size < 4 * IDENTITY_SAMPLE_ROWS:
        return Counter(flat.tolist())
    # The addresses of the row objects, read in place (``flat`` keeps them alive).
    addresses = np.ctypeslib.as_array(
        (ctypes.c_size_t * flat.size).from_address(flat.ctypes.data))
    candidates, first = np.unique(addresses[:IDENTITY_SAMPLE_ROWS], return_index=True)
    if candidates.size > IDENTITY_MAX_CANDIDATES:
        return Counter(flat.tolist())
    counts: Counter[Any] = Counter()
    matched = np.zeros(flat.size, dtype=bool)
    for address, position in zip(candidates.tolist(), first.tolist(), strict=True):
        hits = addresses == address
        counts[flat[position]] += int(np.count_nonzero(hits))
        matched |= hits
    counts.update(flat[~matched].tolist())
    return counts


# A profile keeps a numeric column's exact value counts while it has at most this many
# distinct values, so columns of codes and flags can be judged as categories.
MAX_DISTINCT_VALUES = 20
# The one-pass sum of squared deviations is used while mean^2 / variance is below this
# (its rounding, about 1e-13 of the sum of squares, stays under 1e-9 of the result).
FAST_M2_MAX_RATIO = 1e4
# Rows sampled for the candidate distinct values of a chunk (see NumericColumn).
DISTINCT_SAMPLE_ROWS = 1024


class NumericColumn:
    """A numeric column's distribution so far: rows, missing and an exponential histogram.

    With ``exact`` (profiles, which see the raw data once) it also keeps the exact mean and
    sum of squared deviations (``m2``, merged by Chan's formula, stable far from zero) and
    the exact value counts while there are at most ``MAX_DISTINCT_VALUES`` of them.
    """

    __slots__ = ("count", "distinct", "exact", "histogram", "m2", "max_size", "mean",
                 "missing")

    def __init__(self, max_size: int = exphist.DEFAULT_MAX_SIZE, exact: bool = False) -> None:
        self.max_size = max_size
        self.exact = exact
        self.count = 0
        self.missing = 0
        self.histogram = exphist.empty()
        self.mean = 0.0
        self.m2 = 0.0
        self.distinct: Counter[float] | None = Counter() if exact else None

    def add(self, values: np.ndarray) -> None:
        numeric = np.asarray(values, dtype=np.float64)
        finite_mask = np.isfinite(numeric)
        # Most columns have no missing values: skip the copy a selection would make.
        finite = numeric if finite_mask.all() else numeric[finite_mask]
        self.count += numeric.size
        self.missing += numeric.size - finite.size
        if finite.size:
            before = self.histogram.count
            chunk = exphist.from_values(finite, self.max_size)
            self.histogram = (chunk if not self.histogram.count
                              else exphist.merge([self.histogram, chunk], self.max_size))
            if self.exact:
                chunk_mean, chunk_m2 = _moments(finite, chunk.sum)
                self.mean, self.m2 = merge_moments(before, self.mean, self.m2, finite.size,
                                                   chunk_mean, chunk_m2)
                self._count_values(finite, chunk)

    def _count_values(self, finite: np.ndarray, chunk: exphist.ExpHistogram) -> None:
        """Exact value counts while few; a chunk occupying more buckets than the cap has
        more distinct values, and is rejected without sorting it."""
        if self.distinct is None:
            return
        occupied = (np.count_nonzero(chunk.positive.counts)
                    + np.count_nonzero(chunk.negative.counts) + bool(chunk.zero_count))
        if occupied > MAX_DISTINCT_VALUES:
            self.distinct = None
            return
        # The values of the first rows are usually all of them: count each in one pass
        # rather than sort the chunk, and sort only when some row holds another value.
        candidates = np.unique(finite[:DISTINCT_SAMPLE_ROWS])
        counts = [int(np.count_nonzero(finite == v)) for v in candidates] \
            if candidates.size <= MAX_DISTINCT_VALUES else []
        if sum(counts) == finite.size:
            found = dict(zip(candidates.tolist(), counts, strict=True))
        else:
            values, all_counts = np.unique(finite, return_counts=True)
            found = dict(zip(values.tolist(), all_counts.tolist(), strict=True))
        self.distinct.update(found)
        if len(self.distinct) > MAX_DISTINCT_VALUES:
            self.distinct = None

    def merge(self, other: NumericColumn) -> None:
        """Add what ``other`` accumulated from other rows (a partition profiled elsewhere):
        the same buckets and counts as if its chunks had been added here."""
        before = self.histogram.count
        self.count += other.count
        self.missing += other.missing
        if not other.histogram.count:
            return
        self.histogram = (other.histogram if not before
                          else exphist.merge([self.histogram, other.histogram], self.max_size))
        if not self.exact:
            return
        self.mean, self.m2 = merge_moments(before, self.mean, self.m2, other.histogram.count,
                                           other.mean, other.m2)
        if self.distinct is not None and other.distinct is not None:
            self.distinct.update(other.distinct)
            if len(self.distinct) > MAX_DISTINCT_VALUES:
                self.distinct = None
        else:
            self.distinct = None


def _moments(values: np.ndarray, total: float) -> tuple[float, float]:
    """Mean and sum of squared deviations of a chunk.

    One pass (the sum of squares minus n mean^2) while mean^2 / variance is below
    ``FAST_M2_MAX_RATIO``, so rounding stays below 1e-9 of the result; two passes (around
    the mean) for columns far from zero (1e9 with unit spread), where that would cancel.
    """
    mean = total / values.size
    m2 = _sum_of_squares(values) - values.size * mean * mean
    if m2 <= 0 or values.size * mean * mean > FAST_M2_MAX_RATIO * m2:
        m2 = _sum_of_squares(values - mean)
    return mean, m2


def _sum_of_squares(values: np.ndarray) -> float:
    """``values @ values`` without BLAS: OpenBLAS threads spin on a busy machine, and a
    million-value dot took 8 to 16 ms there instead of 0.3 (profiles run in threads)."""
    return float(np.einsum("i,i->", values, values))


def merge_moments(n_a: int, mean_a: float, m2_a: float, n_b: int, mean_b: float, m2_b: float
                  ) -> tuple[float, float]:
    """Mean and sum of squared deviations of two parts (Chan et al.): no squares of raw
    values are subtracted, so a column at 1e9 with unit spread keeps its variance."""
    n = n_a + n_b
    if n == 0:
        return 0.0, 0.0
    delta = mean_b - mean_a
    return mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n


@dataclass(frozen=True, slots=True)
class ValueCounts:
    """A categorical chunk already counted: rows per label, missing rows and all rows.

    What a Parquet dictionary column becomes: its indices are counted, so its rows never
    turn into Python strings.
    """

    counts: dict[str, int]
    missing: int
    rows: int

    def __len__(self) -> int:
        return self.rows


class CategoryColumn:
    """Value counts with memory bounded by ``top_k``: at most ``4 * top_k`` candidates are
    held while streaming; rarer values are folded into ``other`` and counted as overflow."""

    __slots__ = ("count", "counts", "missing", "other", "top_k")

    def __init__(self, top_k: int) -> None:
        self.top_k = top_k
        self.count = 0
        self.missing = 0
        self.counts: Counter[str] = Counter()
        self.other = 0

    def add(self, values: np.ndarray | ValueCounts) -> None:
        if isinstance(values, ValueCounts):
            self.count += values.rows
            self.missing += values.missing
            if values.counts:
                self.add_counts(dict(sorted(values.counts.items())))
            return
        values = np.asarray(values, dtype=object)
        if not self._add_strings(values):
            self._add_any(values)

    def _add_strings(self, values: np.ndarray) -> bool:
        """Count a column of ``str`` (and missing) values by hashing, not sorting.

        Missing-ness and labels are decided once per distinct value instead of per row.
        Returns False, having changed nothing, when a value is neither missing nor a plain
        ``str``: equal values of other types may print differently (``1``, ``1.0``, ``True``),
        so those columns take the per-row path.
        """
        try:
            distinct = _distinct_values(values)
        except TypeError:  # unhashable values
            return False
        present: dict[str, int] = {}
        missing = 0
        for value, count in distinct.items():
            # NumPy's str conversion drops trailing NULs; such labels take the per-row path.
            if type(value) is str and not value.endswith("\x00"):
                present[value] = count
            elif _missing(value):
                missing += count
            else:
                return False
        self.count += values.size
        self.missing += missing
        if present:
            # Sorted like np.unique's labels, so ties in the top-K break the same way.
            self.add_counts(dict(sorted(present.items())))
        return True

    def _add_any(self, values: np.ndarray) -> None:
        missing = missing_mask(values)
        present = values[~missing]
        self.count += values.size
        self.missing += int(missing.sum())
        if present.size:
            labels, counts = np.unique(present.astype(str), return_counts=True)
            self.add_counts(dict(zip(labels.tolist(), counts.tolist(), strict=True)))

    def add_counts(self, counts: dict[str, int]) -> None:
        self.counts.update(counts)
        if len(self.counts) > CANDIDATES_PER_TOP_K * self.top_k:
            self._fold(self.top_k)

    def merge(self, other: CategoryColumn) -> None:
        """Add what ``other`` counted from other rows (a partition profiled elsewhere),
        folding past ``4 * top_k`` candidates as ``add_counts`` does."""
        self.count += other.count
        self.missing += other.missing
        self.other += other.other
        if other.counts:
            self.add_counts(dict(other.counts))

    def _most_common(self, keep: int) -> dict[str, int]:
        """The ``keep`` largest counts, ties broken by label: the same values whatever
        order the rows (or the partitions of a distributed profile) came in."""
        return dict(sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))[:keep])

    def _fold(self, keep: int) -> None:
        kept = self._most_common(keep)
        self.other += sum(self.counts.values()) - sum(kept.values())
        self.counts = Counter(kept)

    def top(self) -> tuple[dict[str, int], int]:
        """The ``top_k`` most frequent values and the count of all others."""
        kept = self._most_common(self.top_k)
        return kept, self.other + sum(self.counts.values()) - sum(kept.values())
