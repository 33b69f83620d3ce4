"""Logged data as named columns, and the columns derived from them.

What ``driftline.monitor().log``, ``@driftline.observe`` and ``driftline.profile.capture``
accept (scalars, lists, NumPy arrays, pandas Series and DataFrames, a dict as one row, a
list of dicts as rows, a dict of columns) becomes named columns here, and each column is
read by its data type:

* ``numerical``: float64 values;
* ``categorical``: labels (counted per value, top-K);
* ``text``: descriptors (``driftline.text``): the text never becomes a column itself;
* ``numerical_sequence``: an embedding or fixed-length sequence per row, ``[N, width]``,
  monitored through the seeded random projection (``driftline.projection``) as
  ``<column>.proj0..`` and ``<column>.l2_norm``.

Undeclared columns are read from their values: numbers are numerical, 2-D numbers wider
than ``max_features`` are sequences, strings are text when the batch has at least
``TEXT_MIN_ROWS`` rows, mostly distinct (``TEXT_MIN_DISTINCT_SHARE``) and mostly of several
words (``TEXT_MIN_MULTIWORD_SHARE``), else categorical. A column once read as text stays
text for the reader's life.

A *derivation* turns one logged column into numeric columns. Text and sequences are the
built-in ones; ``ColumnReader(derivations={"my_type": fn})`` adds others (``fn(name,
values, reader)`` returns ``(name, values)`` pairs). A *table derivation* sees all the
monitored columns of one call and adds columns computed across them (a reconstruction
error, a row norm): ``ColumnReader(table_derivations=[fn])``, ``fn(columns)`` returning the
added ``(name, values)`` pairs. All run in the recorder thread in the app, never in the
caller, and in the profile builder on the training rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from driftline import semconv, text
from driftline.columns import NUMERIC_KINDS, table_columns
from driftline.projection import Projections

_logger = logging.getLogger(__name__)

DATA_TYPE_NUMERICAL = "numerical"
DATA_TYPE_CATEGORICAL = "categorical"
DATA_TYPE_TEXT = "text"
DATA_TYPE_SEQUENCE = "numerical_sequence"
DATA_TYPES = (DATA_TYPE_NUMERICAL, DATA_TYPE_CATEGORICAL, DATA_TYPE_TEXT, DATA_TYPE_SEQUENCE)
# A string column is text when a batch of at least this many rows ...
TEXT_MIN_ROWS = 20
# ... has at least this share of distinct values among its present ones (among the first
# TEXT_SAMPLE_ROWS, so a large categorical chunk is ruled out without hashing all of it).
TEXT_MIN_DISTINCT_SHARE = 0.5
TEXT_SAMPLE_ROWS = 1000
# ... and at least this share of them hold several words: identifiers, codes, e-mail
# addresses and URLs are distinct too, but single tokens, and stay categorical.
TEXT_MIN_MULTIWORD_SHARE = 0.5
# Text columns remembered per reader (sticky detection); more are judged batch by batch.
MAX_REMEMBERED_TEXT_COLUMNS = 256

Columns = list[tuple[str, np.ndarray]]
Derivation = Callable[[str, np.ndarray, "ColumnReader"], Columns]
TableDerivation = Callable[[Columns], Columns]


class LoggedDataError(ValueError):
    """Data that cannot be read as columns, with what to pass instead."""


def _is_dataframe(data: Any) -> bool:
    return hasattr(data, "dtypes") and hasattr(data, "columns")


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bytes | int | float | bool | np.generic)


def raw_columns(data: Any, name: str | None = None, whole: bool = False) -> Columns:
    """(name, values) per logged column; values are 1-D, or 2-D numbers for a column of
    sequences. ``name`` names a single column (a scalar, a list, a 1-D array or Series, or a
    2-D array taken as one column of sequences); tables bring their own names. An unnamed
    array is a table of columns ``f0..`` as scikit-learn's are, or with ``whole`` one
    unnamed block of sequences (``[N, ...]`` flattened per row)."""
    if _is_dataframe(data):
        return [(str(column), unnested(values)) for column, values in table_columns(data)]
    if isinstance(data, Mapping):
        if any(_is_scalar(v) for v in data.values()):  # one row
            return [(str(k), _one_row(v)) for k, v in data.items()]
        return [(str(k), unnested(np.asarray(v) if not _is_dataframe(v) else v))
                for k, v in data.items()]
    if isinstance(data, list | tuple) and data and isinstance(data[0], Mapping):
        keys: dict[str, None] = {}
        for row in data:
            keys.update(dict.fromkeys(row))
        return [(str(k), unnested(np.array([row.get(k) for row in data], dtype=object)))
                for k in keys]
    if hasattr(data, "to_numpy") and hasattr(data, "name") and not hasattr(data, "columns"):
        series_name = name if name is not None else data.name
        [(_, values)] = table_columns(data.to_frame(name="_"))
        return [(str(series_name) if series_name is not None else "f0", unnested(values))]
    if _is_scalar(data):
        return [(name or "f0", _one_row(data))]
    array = np.asarray(data)
    if name is None:
        if whole and array.ndim >= 1:
            return [("", array.reshape(array.shape[0], -1))]
        return [(column, unnested(values)) for column, values in table_columns(array)]
    if array.ndim == 0:
        return [(name, _one_row(array.item()))]
    if array.ndim == 1:
        return [(name, unnested(array))]
    return [(name, array.reshape(array.shape[0], -1))]


def _one_row(value: Any) -> np.ndarray:
    if _is_scalar(value):
        out = np.empty(1, dtype=object)
        out[0] = value
        return _typed(out)
    return np.asarray(value).reshape(1, -1)  # one sequence


def _typed(values: np.ndarray) -> np.ndarray:
    """An object column of plain numbers as float64 (NaN for None); others as they are
    (decided at the first value that is not a number: a text column costs one look)."""
    if values.dtype != object:
        return values
    found = False
    for value in values.flat:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer
                                                     | np.floating):
            return values
        found = True
    if not found:
        return values
    return np.array([np.nan if v is None else v for v in values.tolist()], dtype=np.float64)


def unnested(values: Any) -> np.ndarray:
    """A column whose cells are sequences (lists, arrays) as one ``[N, width]`` array."""
    array = np.asarray(values)
    if array.dtype != object or array.ndim != 1 or not array.size:
        return array
    first = array[0]
    if isinstance(first, list | tuple | np.ndarray):
        try:
            return np.stack([np.asarray(cell, dtype=np.float64) for cell in array])
        except ValueError as exc:
            raise LoggedDataError(
                "a column of sequences must hold sequences of one length (pad or cut them "
                f"first): {exc}") from exc
    return _typed(array)


def text_like(values: np.ndarray) -> bool:
    """Strings of several words, mostly distinct, over a batch large enough to tell."""
    if values.ndim != 1 or values.dtype.kind not in "OUS":
        return False
    present = [v for v in values[:TEXT_SAMPLE_ROWS].tolist() if isinstance(v, str)]
    if len(present) < TEXT_MIN_ROWS:
        return False
    if len(set(present)) < TEXT_MIN_DISTINCT_SHARE * len(present):
        return False  # the usual categorical column: decided by one set of the sample
    multiword = sum(1 for v in present if len(v.split(maxsplit=1)) > 1)
    return multiword >= TEXT_MIN_MULTIWORD_SHARE * len(present)


def _text_columns(name: str, values: np.ndarray, reader: ColumnReader) -> Columns:
    return text.descriptors(name, values.ravel().tolist(), reader.vocabularies.get(name))


def _sequence_columns(name: str, values: np.ndarray, reader: ColumnReader) -> Columns:
    """A ``[N, width]`` block (``[N, ...]`` flattened per row); 1-D values are one row."""
    rows = np.asarray(values, dtype=np.float64)
    rows = rows.reshape(rows.shape[0], -1) if rows.ndim > 1 else rows.reshape(1, -1)
    projected = reader.projections.of_width(rows.shape[1]).apply(rows)
    return [(derived_name(name, column), array) for column, array in projected]


def derived_name(column: str, derivation: str) -> str:
    """``embedding.proj0``; an unnamed input (a whole wide array) keeps ``proj0``, as the
    PyTorch instrumentation names it."""
    return f"{column}{semconv.DERIVED_SEPARATOR}{derivation}" if column else derivation


BUILT_IN_DERIVATIONS: Mapping[str, Derivation] = MappingProxyType({
    DATA_TYPE_TEXT: _text_columns,
    DATA_TYPE_SEQUENCE: _sequence_columns,
})


class ColumnReader:
    """Reads logged data into monitored columns for one model: declared data types,
    the reference's text vocabularies, the shared projections, and text columns already
    seen (so a one-row call of a text column is still read as text)."""

    def __init__(self, data_types: Mapping[str, str] | None = None,
                 vocabularies: Mapping[str, frozenset[str]] | None = None,
                 projections: Projections | None = None,
                 derivations: Mapping[str, Derivation] | None = None,
                 table_derivations: Sequence[TableDerivation] = ()) -> None:
        self.derivations = {**BUILT_IN_DERIVATIONS, **(derivations or {})}
        self.table_derivations = tuple(table_derivations)
        self.data_types = dict(data_types or {})
        for column, data_type in self.data_types.items():
            check_data_type(data_type, self.derivations, f"data_types[{column!r}]")
        self.vocabularies = dict(vocabularies or {})
        self.projections = projections or Projections()
        self._text: set[str] = set(self.vocabularies)

    def data_type(self, name: str, values: np.ndarray, declared: str | None = None) -> str:
        """The data type ``name`` is read as: declared, or read from its values."""
        declared = declared or self.data_types.get(name)
        if declared is not None:
            return declared
        if name in self._text:
            return DATA_TYPE_TEXT
        if values.ndim == 2:
            return DATA_TYPE_SEQUENCE if values.shape[1] > self.projections.max_features \
                else DATA_TYPE_NUMERICAL
        if values.dtype.kind in NUMERIC_KINDS:
            return DATA_TYPE_NUMERICAL
        if text_like(values):
            if len(self._text) < MAX_REMEMBERED_TEXT_COLUMNS:
                self._text.add(name)
            return DATA_TYPE_TEXT
        return DATA_TYPE_CATEGORICAL

    def derive(self, name: str, values: np.ndarray, declared: str | None = None) -> Columns:
        """The monitored columns of one logged column."""
        data_type = self.data_type(name, values, declared)
        derivation = self.derivations.get(data_type)
        if derivation is not None:
            return derivation(name, values, self)
        if values.ndim == 2:  # a narrow block of numbers under one name: one column each
            return [(derived_name(name, str(i)) if name else f"f{i}",
                     values[:, i].astype(np.float64))
                    for i in range(values.shape[1])]
        if data_type == DATA_TYPE_NUMERICAL:
            return [(name, np.asarray(values, dtype=np.float64))]
        return [(name, values if values.dtype == object else values.astype(object))]

    def columns(self, data: Any, name: str | None = None,
                data_type: str | None = None) -> Columns:
        """The monitored columns of one logged item, without table derivations."""
        out: Columns = []
        for column, values in raw_columns(data, name, whole=data_type == DATA_TYPE_SEQUENCE):
            out += self.derive(column, values, data_type)
        return out

    def read(self, items: Iterable[tuple[Any, str | None, str | None]],
             rows: int | None = None) -> Columns:
        """The monitored columns of one call: each ``(data, name, data_type)`` item's, then
        the table derivations' over all of them. With ``rows`` (the call's), a one-row item
        (a scalar, a dict) holds for every row, and another count is refused."""
        out: Columns = []
        for data, name, data_type in items:
            out += self.columns(data, name, data_type)
        if rows is not None:
            for i, (name, values) in enumerate(out):
                if len(values) == rows:
                    continue
                if len(values) != 1:
                    raise LoggedDataError(
                        f"column '{name}' has {len(values)} rows, the call has {rows} (its "
                        "first logged item's): log items of one batch, or one value for all")
                out[i] = (name, np.repeat(values, rows, axis=0))
        return self.with_table_derivations(out)

    def with_table_derivations(self, columns: Columns) -> Columns:
        for derivation in self.table_derivations:
            columns = columns + derivation(columns)
        return columns


def check_data_type(data_type: str | None, derivations: Mapping[str, Any],
                    where: str = "data_type") -> None:
    """A clear error for an unknown data type, in the caller (a set lookup)."""
    if data_type is not None and data_type not in DATA_TYPES and data_type not in derivations:
        known = ", ".join(sorted({*DATA_TYPES, *derivations}))
        raise LoggedDataError(f"{where}: unknown data type {data_type!r}; use one of {known} "
                              "(or register a derivation for it)")
