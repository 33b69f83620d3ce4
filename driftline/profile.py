"""Reference profiles: the training data's distributions, captured once, compared forever.

A profile is a versioned JSON document (DESIGN.md "Reference profiles"): per column its
role, kind, counts and either an exponential histogram (numeric) or value frequencies
(categorical, top-K plus other). It is built in one streaming pass over chunks with bounded
memory, and two profiles of parts of a data set merge into the profile of the whole.

Wide inputs (images, embeddings) are profiled through a ``driftline.projection.Projection``;
its seed and shape are stored under the optional top-level key ``projection`` so production
is projected the same way. Files without the key are profiles of plain columns.

A profile captured with the class probabilities holds, under the optional top-level key
``calibration``, per class the bins and isotonic map of correctness on confidence
(``driftline.calibration``, docs/estimation.md) with the names of the probability, prediction
and target columns. Files without it (older ones) work as before, without estimation.
Likewise the optional key ``multivariate`` holds a PCA of the numeric features whose per-row
reconstruction errors are profiled as one more column (``driftline.multivariate``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from driftline import calibration as calib
from driftline import derived, exphist, semconv
from driftline.calibration import Calibration, CalibrationBuilder, CalibrationError
from driftline.columns import (
    MAX_DISTINCT_VALUES,
    NUMERIC_KINDS,
    CategoryColumn,
    NumericColumn,
    ValueCounts,
    is_numeric,
    merge_moments,
    table_columns,
)
from driftline.exphist import ExpHistogram
from driftline.labels import (
    TASK_CLASSIFICATION,
    TASKS,
    class_label,
    class_labels,
    is_label_dtype,
)
from driftline.multivariate import (
    RECONSTRUCTION_ERROR_COLUMN,
    CovarianceBuilder,
    MultivariateError,
    Pca,
    numeric_columns,
)
from driftline.projection import Projection, ProjectionError
from driftline.text import DEFAULT_MAX_VOCABULARY, TextProfiler, Vocabulary

FORMAT_NAME = "driftline.profile"
FORMAT_VERSION = 1
DEFAULT_TOP_K = 50
# Buckets per sign of a profile's histograms: eight times the SDK's 160 (three scales finer),
# since a profile is written once from the raw data. ``compare`` of two profiles then reads
# Wasserstein and KS from buckets an eighth as wide; against the processor's windows the
# comparison happens at the window's (coarser) scale anyway.
DEFAULT_MAX_BUCKETS = 8 * exphist.DEFAULT_MAX_SIZE
DEFAULT_CHUNK_ROWS = 100_000
# Parquet batches are whole row groups up to this many rows (memory: a batch at a time).
MAX_ALIGNED_CHUNK_ROWS = 1_000_000
# A target given as an array (not a column of X) is profiled under its Series name, else this.
DEFAULT_TARGET_NAME = "target"
# Probabilities given as an array are named this + the column index in the calibration.
PROBABILITY_COLUMN_PREFIX = "proba_"
# Arrow datasets read ahead this many batches and files: enough to overlap I/O with the
# NumPy work on two cores, and the resident set stays a few batches whatever the data size.
DATASET_BATCH_READAHEAD = 1
DATASET_FRAGMENT_READAHEAD = 1
# Columns of a chunk are profiled in this many threads: NumPy releases the GIL while it
# histograms, so a wide table is profiled on every core.
# The CPUs this process may run on (a container's share, not the host's count).
PROFILE_THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
    else os.cpu_count() or 1
# A new profile file's mode before the umask, as for any file a program creates.
NEW_FILE_MODE = 0o666
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".txt")

ROLE_FEATURE = "feature"
ROLE_PREDICTION = "prediction"
ROLE_TARGET = "target"
KIND_NUMERIC = "numeric"
KIND_CATEGORICAL = "categorical"
_ROLES = (ROLE_FEATURE, ROLE_PREDICTION, ROLE_TARGET)
_KINDS = (KIND_NUMERIC, KIND_CATEGORICAL)


_log = logging.getLogger(__name__)


class ProfileError(ValueError):
    """A profile file that cannot be used, with the reason and where."""


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    """One column's distribution. ``histogram`` for numeric, ``frequencies`` for categorical.

    Numeric columns profiled from raw data also carry the exact ``mean`` and ``m2`` (sum of
    squared deviations from the mean) of their finite values, and ``values`` (exact counts
    per value) while they have at most ``MAX_DISTINCT_VALUES`` distinct values. Profiles
    written before these existed, and baselines built from histograms, have None.
    """

    name: str
    role: str
    kind: str
    count: int
    missing: int
    histogram: ExpHistogram | None = None
    frequencies: Mapping[str, int] = field(default_factory=dict)
    other: int = 0
    mean: float | None = None
    m2: float | None = None
    values: Mapping[float, int] | None = None

    @property
    def std(self) -> float | None:
        """The exact (population) standard deviation of the finite values, when known."""
        if self.m2 is None or self.histogram is None or not self.histogram.count:
            return None
        return math.sqrt(max(self.m2, 0.0) / self.histogram.count)

    def category_counts(self) -> dict[str, int]:
        """Rows per category, the values past the top-K counted as ``__other__``."""
        counts = dict(self.frequencies)
        if self.other:
            counts[semconv.OVERFLOW_VALUE] = counts.get(semconv.OVERFLOW_VALUE, 0) + self.other
        return counts

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "role": self.role, "kind": self.kind,
                                "count": self.count, "missing": self.missing}
        if self.kind == KIND_NUMERIC:
            data["histogram"] = (self.histogram or exphist.empty()).to_dict()
            if self.mean is not None and self.m2 is not None:
                data["moments"] = {"mean": self.mean, "m2": self.m2}
            if self.values is not None:
                data["values"] = [[v, int(c)] for v, c in sorted(self.values.items())]
        else:
            data["frequencies"] = dict(self.frequencies)
            data["other"] = self.other
        return data


@dataclass(frozen=True, slots=True)
class Profile:
    model_name: str
    model_version: str
    created_time_unix_nano: int
    row_count: int
    columns: Mapping[str, ColumnProfile]
    # Set when the features are a projection of wide inputs (see driftline.projection).
    projection: Projection | None = None
    # Set when captured with class probabilities (see driftline.calibration).
    calibration: Calibration | None = None
    # Set when captured with multivariate=True (see driftline.multivariate).
    multivariate: Pca | None = None
    # Per text column, its bounded vocabulary (its descriptors are columns, see text.py).
    text: Mapping[str, Vocabulary] = field(default_factory=dict)
    # Per column of sequences (embeddings), the projection its columns came through.
    sequences: Mapping[str, Projection] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "model": {"name": self.model_name, "version": self.model_version},
            "created_time_unix_nano": self.created_time_unix_nano,
            "row_count": self.row_count,
            "columns": [c.to_dict() for c in self.columns.values()],
        }
        if self.projection is not None:
            data["projection"] = self.projection.to_dict()
        if self.calibration is not None:
            data["calibration"] = self.calibration.to_dict()
        if self.multivariate is not None:
            data["multivariate"] = self.multivariate.to_dict()
        if self.text:
            data["text"] = {name: vocabulary.to_dict() for name, vocabulary in self.text.items()}
        if self.sequences:
            data["sequences"] = {name: p.to_dict() for name, p in self.sequences.items()}
        return data

    def vocabularies(self) -> dict[str, frozenset[str]]:
        """Each text column's vocabulary as the app's recorder looks tokens up in it."""
        return {name: frozenset(vocabulary.tokens) for name, vocabulary in self.text.items()}

    def features(self) -> list[ColumnProfile]:
        return [c for c in self.columns.values() if c.role == ROLE_FEATURE]


# --- building -----------------------------------------------------------------------------


class _ColumnBuilder:
    """One column of a profile being built; memory is bounded by bucket count and top-K."""

    def __init__(self, name: str, role: str, kind: str, max_size: int, top_k: int) -> None:
        self.name, self.role, self.kind = name, role, kind
        self.values = NumericColumn(max_size, exact=True) if kind == KIND_NUMERIC \
            else CategoryColumn(top_k)

    def add(self, values: np.ndarray | ValueCounts) -> None:
        self.values.add(values)

    def build(self) -> ColumnProfile:
        column = self.values
        if isinstance(column, NumericColumn):
            finite = column.histogram.count
            return ColumnProfile(self.name, self.role, self.kind, column.count, column.missing,
                                 histogram=column.histogram,
                                 mean=column.mean if finite else None,
                                 m2=column.m2 if finite else None,
                                 values=None if column.distinct is None
                                 else dict(sorted(column.distinct.items())))
        kept, other = column.top()
        return ColumnProfile(self.name, self.role, self.kind, column.count, column.missing,
                             frequencies=kept, other=other)


def _kind_of(values: np.ndarray | ValueCounts) -> str:
    if isinstance(values, ValueCounts):
        return KIND_CATEGORICAL
    return KIND_NUMERIC if is_numeric(np.asarray(values)) else KIND_CATEGORICAL


class ProfileBuilder:
    """Streaming builder: feed chunks of columns, then ``build()``.

    With a ``projection``, ``add_chunk`` profiles the projected columns of ``X``.
    """

    def __init__(self, model_name: str, model_version: str = "",
                 max_size: int = DEFAULT_MAX_BUCKETS, top_k: int = DEFAULT_TOP_K,
                 projection: Projection | None = None,
                 data_types: Mapping[str, str] | None = None,
                 max_vocabulary: int = DEFAULT_MAX_VOCABULARY,
                 derivations: Mapping[str, derived.Derivation] | None = None,
                 table_derivations: Sequence[derived.TableDerivation] = (),
                 vocabularies: Mapping[str, frozenset[str]] | None = None) -> None:
        """``vocabularies`` (a reference's, ``Profile.vocabularies()``) read those text
        columns as production is read: ``oov_share`` of every row against the reference's
        vocabulary, no vocabulary of their own (``driftline compare``'s current side)."""
        self.model_name, self.model_version = model_name, model_version
        self.max_size, self.top_k = max_size, top_k
        self.projection = projection
        try:
            self._reader = derived.ColumnReader(data_types, vocabularies,
                                                derivations=derivations,
                                                table_derivations=table_derivations)
        except derived.LoggedDataError as exc:
            raise ProfileError(str(exc)) from exc
        self._max_vocabulary = max_vocabulary
        self._text: dict[str, TextProfiler] = {}
        self._sequences: dict[str, Projection] = {}
        self._columns: dict[str, _ColumnBuilder] = {}
        self.row_count = 0
        self.calibration: CalibrationBuilder | None = None
        # Probability columns named by the caller: a calibration that cannot be built is an
        # error. From arrays (capture), it is left out with a warning instead.
        self.calibration_required = False
        # Multivariate drift: the PCA whose reconstruction errors are profiled per chunk, or
        # the sums a PCA is being fitted from (the errors then need a second pass).
        self.pca: Pca | None = None
        self.covariance: CovarianceBuilder | None = None
        # The classes of the probability columns, in order, when the caller knows them.
        self.classes: Sequence[Any] | None = None

    def derived(self, columns: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """The monitored columns of named input columns, read as ``driftline.derived``
        reads production: text as descriptors (learning its vocabulary), sequences through
        their projection (kept in the profile), declared types as declared."""
        out: list[tuple[str, Any]] = []
        for name, values in columns:
            declared = self._reader.data_types.get(name)
            if declared is None and name not in self._text \
                    and name not in self._reader.vocabularies and (
                    (isinstance(values, np.ndarray) and values.ndim == 1
                     and values.dtype.kind in NUMERIC_KINDS)
                    or (isinstance(values, ValueCounts)
                        and len(values.counts) < derived.TEXT_MIN_DISTINCT_SHARE
                        * (values.rows - values.missing))):
                out.append((name, values))  # the common case, as it is
                continue
            if isinstance(values, ValueCounts):
                values = _rows_of_counts(values)
            try:
                values = derived.unnested(values)
                data_type = self._reader.data_type(name, values, declared)
                if data_type == derived.DATA_TYPE_TEXT \
                        and name not in self._reader.vocabularies:
                    profiler = self._text.get(name)
                    if profiler is None:
                        profiler = self._text[name] = TextProfiler(name, self._max_vocabulary)
                    out += profiler.add(values.ravel().tolist())
                    continue
                if data_type == derived.DATA_TYPE_SEQUENCE:
                    self._sequence_projection(name, values)
                out += self._reader.derive(name, values, data_type)
            except (derived.LoggedDataError, ProjectionError) as exc:
                raise ProfileError(f"column '{name}': {exc}") from exc
        return self._reader.with_table_derivations(out)

    def _sequence_projection(self, name: str, values: np.ndarray) -> None:
        width = values.shape[1] if values.ndim == 2 else 1
        projection = self._reader.projections.of_width(width)
        known = self._sequences.setdefault(name, projection)
        if known != projection:
            raise ProfileError(f"column '{name}': sequences of {width} values, earlier rows "
                               f"had {known.input_features}; give every row the same length")

    def add_column(self, name: str, values: Any, role: str = ROLE_FEATURE,
                   kind: str | None = None) -> None:
        array = np.asarray(values)
        self._column(name, array, role, kind).add(array)

    def add_columns(self, columns: Iterable[tuple[str, Any]], role: str = ROLE_FEATURE) -> None:
        """Add one chunk of several columns, profiled in parallel threads."""
        arrays = [(name, values if isinstance(values, ValueCounts) else np.asarray(values))
                  for name, values in columns]
        work = [(self._column(name, values, role, None), values) for name, values in arrays]
        if len(work) < 2 or PROFILE_THREADS < 2:
            for builder, values in work:
                builder.add(values)
            return
        with ThreadPoolExecutor(min(PROFILE_THREADS, len(work))) as pool:
            for done in [pool.submit(builder.add, values) for builder, values in work]:
                done.result()

    def _column(self, name: str, values: np.ndarray, role: str, kind: str | None
                ) -> _ColumnBuilder:
        builder = self._columns.get(name)
        if builder is None:
            builder = _ColumnBuilder(name, role, kind or _kind_of(values), self.max_size,
                                     self.top_k)
            self._columns[name] = builder
        return builder

    def add_rows(self, rows: int) -> None:
        self.row_count += rows

    def merge(self, other: ProfileBuilder) -> None:
        """Add the rows ``other`` was fed (another partition of the same data set): the
        same buckets and counts as one builder fed both (docs/scale.md: top-K, float sums).
        """
        if (other.model_name, other.model_version, other.top_k, other.max_size) != (
                self.model_name, self.model_version, self.top_k, self.max_size):
            raise ProfileError("cannot merge profile builders of different models or "
                               "settings (model, version, top_k, max_size)")
        for name, theirs in other._columns.items():
            mine = self._columns.get(name)
            if mine is None:
                self._columns[name] = theirs
            elif (mine.role, mine.kind) != (theirs.role, theirs.kind):
                raise ProfileError(f"column '{name}': cannot merge {mine.role}/{mine.kind} "
                                   f"with {theirs.role}/{theirs.kind}")
            else:
                mine.values.merge(theirs.values)  # type: ignore[arg-type]
        self.row_count += other.row_count

    def columns(self) -> dict[str, str]:
        """The kind of each column added so far."""
        return {name: b.kind for name, b in self._columns.items()}

    def add_probabilities(self, probabilities: np.ndarray, names: Sequence[str],
                          predictions: Any, target: Any, prediction_column: str | None,
                          target_column: str | None) -> None:
        """Bin one chunk's class probabilities for the calibration (docs/estimation.md)."""
        if self.calibration is None:
            self.calibration = CalibrationBuilder(names, prediction_column, target_column)
        try:
            self.calibration.add(probabilities, predictions, target)
        except CalibrationError as exc:
            raise ProfileError(str(exc)) from exc

    def build(self) -> Profile:
        calibration = None
        if self.calibration is not None:
            labels = None if self.classes is None else \
                [str(c) for c in class_labels(np.asarray(self.classes, dtype=object))]
            try:
                calibration = self.calibration.build(labels)
            except CalibrationError as exc:
                if self.calibration_required:
                    raise ProfileError(f"calibration: {exc}") from exc
                _log.warning("profile of model %r: no calibration, so no performance "
                             "estimate: %s", self.model_name, exc)
        vocabularies = {}
        for name, profiler in self._text.items():
            vocabulary, oov = profiler.finish()
            vocabularies[name] = vocabulary
            oov_name = derived.derived_name(name, semconv.TEXT_OOV_SHARE)
            oov_column = _ColumnBuilder(oov_name, ROLE_FEATURE, KIND_NUMERIC, self.max_size,
                                        self.top_k)
            oov_column.add(oov)
            self._columns[oov_name] = oov_column
        return Profile(self.model_name, self.model_version, time.time_ns(), self.row_count,
                       {name: b.build() for name, b in self._columns.items()},
                       self.projection, calibration=calibration, multivariate=self.pca,
                       text=vocabularies, sequences=dict(self._sequences))

    def add_reconstruction_errors(self, columns: Mapping[str, Any]) -> None:
        """Profile one chunk's reconstruction errors by ``pca`` (a column like any)."""
        assert self.pca is not None
        errors = self.pca.column_errors(columns)
        if errors is None:
            raise ProfileError(f"multivariate: the profile's PCA needs the numeric columns "
                               f"{', '.join(self.pca.columns)}; the data lacks some")
        self.add_column(RECONSTRUCTION_ERROR_COLUMN, errors, ROLE_FEATURE, KIND_NUMERIC)


def _rows_of_counts(counts: ValueCounts) -> np.ndarray:
    """A counted string column as its rows again (in value order): text is read per row."""
    labels = np.array(list(counts.counts), dtype=object)
    rows = np.repeat(labels, list(counts.counts.values()))
    return np.concatenate([rows, np.full(counts.missing, None, dtype=object)])


def _feature_columns(data: Any, decoded: Collection[str] = ()
                     ) -> Iterator[tuple[str, np.ndarray | ValueCounts]]:
    """(name, values) per column of a DataFrame, Arrow table or batch, or 2-D array.

    Arrow string dictionary columns come out counted (``ValueCounts``) unless named in
    ``decoded`` (a prediction or target column, read as values).
    """
    if hasattr(data, "column_names") and hasattr(data, "column"):  # pyarrow Table/RecordBatch
        for name in data.column_names:
            yield str(name), _arrow_values(data.column(name), counted=name not in decoded)
        return
    if isinstance(data, Mapping) or (isinstance(data, list | tuple) and data
                                     and isinstance(data[0], Mapping)):
        yield from derived.raw_columns(data)  # as driftline.monitor().log reads them
        return
    yield from table_columns(data)


def _arrow_values(column: Any, counted: bool) -> np.ndarray | ValueCounts:
    """An Arrow column without pandas: a string dictionary counted from its indices, a
    numeric column as a NumPy view of its buffer (a float64 copy with NaN for nulls)."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_dictionary(kind):
        if counted and _is_text(kind.value_type):
            return _dictionary_counts(column)
        # Other dictionary columns are decoded first: a chunked dictionary column's
        # to_numpy() can turn nulls into the first category (pyarrow 26).
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        chunks = [_buffer_view(chunk) if not chunk.null_count else _with_nan(chunk)
                  for chunk in getattr(column, "chunks", [column])]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks or [np.empty(0)])
    values = column.to_numpy(zero_copy_only=False)
    return values if is_numeric(values) else values.astype(object)


def _buffer_view(array: Any) -> np.ndarray:
    """A null-free numeric Arrow array's values, read in place from its data buffer
    (``to_numpy`` imports pandas, even when it copies nothing)."""
    import pyarrow as pa

    kind = array.type
    code = "f" if pa.types.is_floating(kind) else \
        "i" if pa.types.is_signed_integer(kind) else "u"
    dtype = np.dtype(f"{code}{kind.bit_width // 8}")
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array),
                         offset=array.offset * dtype.itemsize)


def _with_nan(array: Any) -> np.ndarray:
    """A numeric Arrow array with nulls as float64, NaN where null (from its validity bits;
    ``fill_null`` would import pandas)."""
    import pyarrow as pa

    values = _buffer_view(array.cast(pa.float64())).copy()
    bits = np.unpackbits(np.frombuffer(array.buffers()[0], dtype=np.uint8), bitorder="little")
    values[bits[array.offset:array.offset + len(array)] == 0] = math.nan
    return values


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _dictionary_counts(column: Any) -> ValueCounts:
    """Rows per label of a string dictionary column, from a ``bincount`` of its indices."""
    counts: Counter[str] = Counter()
    missing = rows = 0
    for chunk in getattr(column, "chunks", [column]):
        rows += len(chunk)
        indices = chunk.indices
        if chunk.null_count:
            missing += chunk.null_count
            indices = indices.drop_null()
        dictionary = chunk.dictionary.to_pylist()
        per_label = np.bincount(_buffer_view(indices), minlength=len(dictionary))
        for label, count in zip(dictionary, per_label.tolist(), strict=True):
            if not count:
                continue
            if label is None:
                missing += count
            else:  # as NumPy's str conversion reads the decoded labels
                counts[label.rstrip("\x00")] += count
    return ValueCounts(dict(counts), missing, rows)


def _text_columns(schema: Any) -> list[str]:
    """Plain string columns of a Parquet file, to read as dictionaries (``read_dictionary``):
    their dictionary pages become Arrow dictionaries instead of a string per row."""
    return [field.name for field in schema if _is_text(field.type)]


def _is_arrow_dataset(data: Any) -> bool:
    """A ``pyarrow.dataset.Dataset``, told apart without importing pyarrow for other inputs."""
    return (type(data).__module__.startswith("pyarrow")
            and hasattr(data, "get_fragments") and hasattr(data, "to_batches"))


def _dataset_batches(dataset: Any, chunk_rows: int) -> Iterator[Any]:
    """Record batches of an Arrow dataset, streamed: never ``to_table()``.

    Parquet is read without pre-buffering: pyarrow's pre-buffer cache keeps every row
    group's raw bytes until the scan ends, so resident memory grew with the file (1.4 GB
    for a 1 GB file) instead of staying at a few batches.
    """
    import pyarrow.dataset as ds

    options: dict[str, Any] = {}
    if isinstance(dataset.format, ds.ParquetFileFormat):
        options["fragment_scan_options"] = ds.ParquetFragmentScanOptions(pre_buffer=False)
    yield from dataset.to_batches(batch_size=chunk_rows,
                                  batch_readahead=DATASET_BATCH_READAHEAD,
                                  fragment_readahead=DATASET_FRAGMENT_READAHEAD, **options)


def _row_slice(values: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of an array aligned with X; None and column names pass through."""
    if values is None or isinstance(values, str):
        return values
    return np.asarray(values)[start:stop]


def capture(
    X: Any,
    predictions: Any = None,
    *,
    probabilities: Any = None,
    target: Any = None,
    model: str,
    version: str = "",
    task: str | None = None,
    top_k: int = DEFAULT_TOP_K,
    projection: Projection | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    classes: Sequence[Any] | None = None,
    multivariate: bool | Pca = False,
    data_types: Mapping[str, str] | None = None,
) -> Profile:
    """Profile features ``X`` and the model's outputs on them.

    ``X`` is a pandas DataFrame, a NumPy array, a ``pyarrow.Table`` or ``RecordBatch``, or a
    ``pyarrow.dataset.Dataset`` (streamed in batches of ``chunk_rows``, never loaded whole).
    ``predictions`` are labels for a classifier (profiled as ``ml.prediction.class``, each
    label as ``driftline.labels.class_label`` writes it) or values for a regressor
    (``ml.prediction.value``). A classifier is recognised by ``probabilities`` or by
    integer, boolean or text predictions; floats without probabilities are a regressor's.
    ``task`` ("classification" or "regression") overrides that. ``probabilities`` (rows x
    classes) give ``ml.prediction.confidence``, the top class probability. ``target`` is
    the true label or value, profiled with role ``target``. ``predictions`` and ``target``
    are arrays aligned with the rows of ``X`` or names of columns of ``X`` (then not
    profiled as features).
    With ``projection``, ``X`` (``[N, ...]``, flattened per row) is profiled as the
    projection's columns, as the PyTorch instrumentation monitors wide inputs.
    ``probabilities`` also give the calibration (docs/estimation.md): with ``target``, how
    often each predicted class is right at each confidence. ``probabilities`` may name
    columns of ``X`` (in class order, then not profiled as features); ``classes`` (the
    model's ``classes_``) name the class of each, else the predictions do.
    ``multivariate=True`` also fits a PCA of the numeric features and profiles each row's
    reconstruction error (a second pass over ``X``); a ``Pca`` profiles the errors by it.

    ``X`` may also be what ``driftline.monitor().log`` takes: a dict of columns or a list of
    dicts (rows). Its columns are read as production reads them (``driftline.derived``):
    ``data_types`` (column -> ``numerical``, ``categorical``, ``text``,
    ``numerical_sequence``) declares them, text columns become descriptors with a bounded
    vocabulary kept in the profile, sequences become their projection (kept too).

    A ``pyspark.sql.DataFrame`` is profiled per partition on the cluster
    (``driftline.spark.capture``; ``predictions`` and ``target`` are then column names).
    """
    from driftline import spark

    if spark.is_spark_dataframe(X):
        if probabilities is not None or projection is not None or multivariate \
                or data_types or classes is not None:
            raise ProfileError("a Spark DataFrame is profiled from its columns: pass "
                               "predictions and target as column names, without "
                               "probabilities, classes, a projection, multivariate or "
                               "data_types (not supported on Spark yet)")
        return spark.capture(X, predictions, target=target, model=model, version=version,
                             task=task, top_k=top_k, chunk_rows=chunk_rows)
    builder = ProfileBuilder(model, version, top_k=top_k, projection=projection,
                             data_types=data_types)
    builder.classes = classes
    _start_multivariate(builder, multivariate)
    if not _is_arrow_dataset(X):
        add_chunk(builder, X, predictions, probabilities=probabilities, target=target,
                  task=task)
        if _fit_multivariate(builder):
            builder.add_reconstruction_errors(dict(_feature_columns(X)))
        return builder.build()
    if _names_columns(probabilities):
        raise ProfileError("for a dataset, probabilities must be an array, not column names")
    start = 0
    for batch in _dataset_batches(X, chunk_rows):
        stop = start + batch.num_rows
        add_chunk(builder, batch, _row_slice(predictions, start, stop),
                  probabilities=_row_slice(probabilities, start, stop),
                  target=_row_slice(target, start, stop), task=task)
        start = stop
    if _fit_multivariate(builder):
        for batch in _dataset_batches(X, chunk_rows):
            builder.add_reconstruction_errors(dict(_feature_columns(batch)))
    return builder.build()


def _start_multivariate(builder: ProfileBuilder, multivariate: bool | Pca) -> None:
    """``True``: fit a PCA over this data; a ``Pca`` (another profile's): profile the
    reconstruction errors by it."""
    if isinstance(multivariate, Pca):
        builder.pca = multivariate
    elif multivariate:
        if builder.projection is not None:
            raise ProfileError("multivariate drift of projected inputs is not supported")
        builder.covariance = CovarianceBuilder()


def _fit_multivariate(builder: ProfileBuilder) -> bool:
    """Fit the PCA after the first pass; True when the errors need a second one."""
    if builder.covariance is None:
        return False
    try:
        builder.pca = builder.covariance.fit()
    except MultivariateError as exc:
        raise ProfileError(f"multivariate: {exc}") from exc
    builder.covariance = None
    if builder.pca is None:
        _log.warning("profile of model %r: fewer than two varying numeric features, so no "
                     "multivariate drift", builder.model_name)
    return builder.pca is not None


def _take_column(columns: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in columns:
        raise ProfileError(f"no column '{name}' (columns: {', '.join(columns)})")
    return columns.pop(name)


def add_chunk(builder: ProfileBuilder, X: Any, predictions: Any = None, *,
              probabilities: Any = None, target: Any = None,
              task: str | None = None) -> None:
    """Add one chunk of rows (features and, optionally, model outputs) to ``builder``.

    ``predictions`` and ``target`` are arrays aligned with ``X`` or names of its columns.
    """
    if task is not None and task not in TASKS:
        raise ProfileError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    target_name = getattr(target, "name", None) or DEFAULT_TARGET_NAME
    prediction_column = predictions if isinstance(predictions, str) else None
    target_column = target if isinstance(target, str) else None
    probability_names = [str(c) for c in probabilities] if _names_columns(probabilities) \
        else None
    if builder.projection is None:
        columns = dict(_feature_columns(X, decoded=[name for name in (predictions, target)
                                                     if isinstance(name, str)]))
        if isinstance(predictions, str):
            _take_column(columns, predictions)
            predictions = _own_dtype_column(X, predictions)
        if isinstance(target, str):
            _take_column(columns, target)
            target_name, target = target, _own_dtype_column(X, target)
        if probability_names is not None:
            probabilities = np.column_stack(
                [np.asarray(_take_column(columns, name), dtype=np.float64)
                 for name in probability_names])
    else:
        if isinstance(predictions, str) or isinstance(target, str) or probability_names:
            raise ProfileError("with a projection, predictions, probabilities and target "
                               "must be arrays, not column names")
        columns = dict(builder.projection.apply(np.asarray(X)))
    builder.add_columns(builder.derived(columns.items()) if builder.projection is None
                        else columns.items())
    if builder.pca is not None:
        builder.add_reconstruction_errors(columns)
    elif builder.covariance is not None:
        builder.covariance.add(numeric_columns(columns))
    rows = len(next(iter(columns.values()))) if columns else 0
    classifies = _classifies(builder, task, predictions, probabilities)
    output_rows = _add_outputs(builder, predictions, probabilities, classifies)
    target_rows = _add_target(builder, str(target_name), target, task, classifies)
    builder.add_rows(rows or output_rows or target_rows)
    # A calibration needs labels to learn from, or the classes (a current side in compare).
    if probabilities is not None and (target is not None or builder.classes is not None
                                      or probability_names is not None):
        builder.calibration_required |= probability_names is not None
        scores = np.asarray(probabilities, dtype=np.float64)
        names = probability_names or [f"{PROBABILITY_COLUMN_PREFIX}{j}"
                                      for j in range(scores.shape[-1])]
        builder.add_probabilities(scores, names, predictions, target, prediction_column,
                                  target_column)


def _names_columns(probabilities: Any) -> bool:
    """Whether ``probabilities`` is a list of column names rather than an array."""
    return isinstance(probabilities, list | tuple) and bool(probabilities) \
        and all(isinstance(name, str) for name in probabilities)


def _own_dtype_column(data: Any, name: str) -> np.ndarray:
    """Column ``name`` of a DataFrame or Arrow table/batch with its own dtype.

    Feature columns are read as float64, which would turn integer class labels into values;
    integer columns with missing values come as objects (the integers and None).
    """
    if hasattr(data, "column_names") and hasattr(data, "column"):  # pyarrow
        column = data.column(name)
        if hasattr(column.type, "value_type") and hasattr(column.type, "index_type"):
            column = column.cast(column.type.value_type)
        if column.null_count:
            return np.array(column.to_pylist(), dtype=object)
        return column.to_numpy(zero_copy_only=False)
    series = data[name]
    if isinstance(series.dtype, np.dtype):
        return series.to_numpy()
    return series.to_numpy(dtype=object, na_value=None)  # pandas extension dtypes


def _classifies(builder: ProfileBuilder, task: str | None, predictions: Any,
                probabilities: Any) -> bool | None:
    """Whether the outputs are a classifier's: ``task`` if given, else ``probabilities``
    or label-typed predictions, else what earlier chunks decided (None: no outputs yet)."""
    if task is not None:
        return task == TASK_CLASSIFICATION
    if semconv.PROFILE_COLUMN_PREDICTION_CLASS in builder.columns():
        return True
    if probabilities is not None:
        return True
    if predictions is not None:
        return is_label_dtype(predictions)
    return None


def _add_target(builder: ProfileBuilder, name: str, target: Any, task: str | None,
                classifies: bool | None) -> int:
    """Profile the true labels or values (role ``target``); returns how many rows.

    Class labels when the model's outputs are a classifier's (or, without outputs, when
    ``task`` or the target's dtype says so), else values.
    """
    if target is None:
        return 0
    values = np.asarray(target)
    existing = builder.columns().get(name)
    if existing is not None:
        categorical = existing == KIND_CATEGORICAL
    elif task is not None:
        categorical = task == TASK_CLASSIFICATION
    elif classifies is not None:  # a regressor's target is numeric unless it is text
        categorical = classifies or not is_numeric(values)
    else:
        categorical = is_label_dtype(values)
    if categorical:
        builder.add_column(name, class_labels(values), ROLE_TARGET, KIND_CATEGORICAL)
    else:
        builder.add_column(name, values, ROLE_TARGET, KIND_NUMERIC)
    return len(values)


def _add_outputs(builder: ProfileBuilder, predictions: Any, probabilities: Any,
                 classifies: bool | None) -> int:
    """Profile the model's outputs; returns how many rows they cover."""
    rows = 0
    if predictions is not None:
        labels = np.asarray(predictions)
        rows = len(labels)
        if classifies:
            builder.add_column(semconv.PROFILE_COLUMN_PREDICTION_CLASS,
                               class_labels(labels), ROLE_PREDICTION, KIND_CATEGORICAL)
        else:
            builder.add_column(semconv.ML_PREDICTION_VALUE, labels, ROLE_PREDICTION,
                               KIND_NUMERIC)
    if probabilities is not None:
        scores = np.asarray(probabilities, dtype=np.float64)
        rows = len(scores)
        builder.add_column(semconv.PROFILE_COLUMN_PREDICTION_CONFIDENCE, scores.max(axis=1),
                           ROLE_PREDICTION, KIND_NUMERIC)
    return rows


# --- files --------------------------------------------------------------------------------


def iter_file_chunks(path: str | os.PathLike[str],
                     chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Any]:
    """Chunks of a CSV or Parquet file, or of a directory of Parquet files (an Arrow
    dataset), as DataFrames / Arrow batches, never the whole file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        import pyarrow.dataset as ds

        text = _text_columns(ds.dataset(path, format="parquet").schema)
        parquet = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(
            dictionary_columns=text))
        yield from _dataset_batches(ds.dataset(path, format=parquet), chunk_rows)
    elif suffix in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        # No pre-buffering: its cache holds each row group's bytes until the reader is
        # closed, so memory grew with the file size (see _dataset_batches).
        reader = pq.ParquetFile(path, pre_buffer=False,
                                read_dictionary=_text_columns(pq.read_schema(path)))
        yield from reader.iter_batches(batch_size=_whole_row_groups(reader.metadata,
                                                                    chunk_rows))
    elif suffix in CSV_SUFFIXES:
        import pandas as pd

        yield from pd.read_csv(path, chunksize=chunk_rows)
    else:
        raise ProfileError(f"{path}: unsupported data file type '{suffix}' "
                           "(expected .csv, .parquet or a directory of .parquet files)")


def _read_ahead(chunks: Iterator[Any]) -> Iterator[Any]:
    """``chunks``, the next one read in a thread while the caller profiles this one: Arrow
    decodes Parquet without the GIL, so reading overlaps the histograms (one more chunk in
    memory)."""
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(next, chunks, None)
        while (chunk := pending.result()) is not None:
            pending = pool.submit(next, chunks, None)
            yield chunk


def _whole_row_groups(metadata: Any, chunk_rows: int) -> int:
    """``chunk_rows`` rounded up to whole row groups (up to ``MAX_ALIGNED_CHUNK_ROWS``):
    batches that cut row groups are read about twice as slowly (0.53 s instead of 0.18 s
    for 1M rows x 25 columns in row groups of 250 000, batches of 100 000)."""
    if not metadata.num_row_groups:
        return chunk_rows
    group_rows = metadata.row_group(0).num_rows
    aligned = group_rows * math.ceil(chunk_rows / group_rows) if group_rows else chunk_rows
    return aligned if aligned <= MAX_ALIGNED_CHUNK_ROWS else chunk_rows


def profile_file(path: str | os.PathLike[str], *, model: str, version: str = "",
                 prediction_column: str | None = None, target_column: str | None = None,
                 task: str | None = None,
                 top_k: int = DEFAULT_TOP_K,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 on_rows: Callable[[int], None] | None = None,
                 probability_columns: Sequence[str] | None = None,
                 classes: Sequence[Any] | None = None,
                 multivariate: bool | Pca = False,
                 data_types: Mapping[str, str] | None = None,
                 vocabularies: Mapping[str, frozenset[str]] | None = None) -> Profile:
    """Profile a CSV or Parquet file, or a directory of Parquet files, in one streaming pass.

    ``prediction_column`` and ``target_column`` name the model's output and the true label
    or value; both are profiled in their roles, not as features. ``on_rows`` is called with
    the rows read so far after each chunk (progress bars). ``probability_columns`` (the
    class probabilities, in class order) give the calibration; ``classes`` name their classes
    (else the prediction column does). ``data_types`` declares columns as in ``capture``;
    ``vocabularies`` as in ``ProfileBuilder``.
    """
    builder = ProfileBuilder(model, version, top_k=top_k, data_types=data_types,
                             vocabularies=vocabularies)
    builder.classes = classes
    _start_multivariate(builder, multivariate)
    for chunk in _read_ahead(iter_file_chunks(path, chunk_rows)):
        try:
            add_chunk(builder, chunk, prediction_column, target=target_column, task=task,
                      probabilities=list(probability_columns) if probability_columns
                      else None)
        except ProfileError as exc:
            raise ProfileError(f"{path}: {exc}") from exc
        if on_rows is not None:
            on_rows(builder.row_count)
    if _fit_multivariate(builder):  # a second pass: each row's error by the fitted PCA
        for chunk in _read_ahead(iter_file_chunks(path, chunk_rows)):
            builder.add_reconstruction_errors(dict(_feature_columns(chunk)))
    return builder.build()


def merge(left: Profile, right: Profile) -> Profile:
    """The profile of the union of the rows behind ``left`` and ``right``."""
    if (left.model_name, left.model_version) != (right.model_name, right.model_version):
        raise ProfileError(f"cannot merge profiles of different models: "
                           f"{left.model_name}:{left.model_version} and "
                           f"{right.model_name}:{right.model_version}")
    if left.multivariate != right.multivariate:
        raise ProfileError("cannot merge profiles with different multivariate PCAs: capture "
                           "the parts with the same one (capture(..., multivariate=pca))")
    if left.projection != right.projection:
        raise ProfileError(f"cannot merge profiles projected differently: {left.projection} "
                           f"and {right.projection}")
    for name in left.sequences.keys() & right.sequences.keys():
        if left.sequences[name] != right.sequences[name]:
            raise ProfileError(f"cannot merge profiles whose column '{name}' was projected "
                               f"differently: {left.sequences[name]} and "
                               f"{right.sequences[name]}")
    columns = dict(left.columns)
    for name, col in right.columns.items():
        mine = columns.get(name)
        columns[name] = col if mine is None else _merge_columns(mine, col)
    calibration = left.calibration or right.calibration
    if left.calibration is not None and right.calibration is not None:
        try:
            calibration = calib.merge(left.calibration, right.calibration)
        except CalibrationError as exc:
            raise ProfileError(str(exc)) from exc
    text = dict(left.text)
    for name, vocabulary in right.text.items():
        mine_text = text.get(name)
        text[name] = vocabulary if mine_text is None else mine_text.merged(
            vocabulary, max(len(mine_text.tokens), len(vocabulary.tokens)))
    return replace(left, row_count=left.row_count + right.row_count, columns=columns,
                   created_time_unix_nano=time.time_ns(), calibration=calibration, text=text,
                   sequences={**left.sequences, **right.sequences})


def _merge_columns(a: ColumnProfile, b: ColumnProfile) -> ColumnProfile:
    if (a.kind, a.role) != (b.kind, b.role):
        raise ProfileError(f"column '{a.name}': cannot merge {a.role}/{a.kind} with "
                           f"{b.role}/{b.kind}")
    if a.kind == KIND_NUMERIC:
        assert a.histogram is not None and b.histogram is not None
        return replace(a, count=a.count + b.count, missing=a.missing + b.missing,
                       histogram=exphist.merge([a.histogram, b.histogram],
                                               DEFAULT_MAX_BUCKETS),
                       **_merged_exact(a, b))
    freq = Counter(a.frequencies)
    freq.update(b.frequencies)
    top_k = max(len(a.frequencies), len(b.frequencies))
    kept = dict(freq.most_common(top_k))
    other = a.other + b.other + sum(freq.values()) - sum(kept.values())
    return replace(a, count=a.count + b.count, missing=a.missing + b.missing,
                   frequencies=kept, other=other)


def _merged_exact(a: ColumnProfile, b: ColumnProfile) -> dict[str, Any]:
    """The exact moments and value counts of two numeric columns' union; None where a side
    lacks them (an old profile) or the values are no longer few."""
    assert a.histogram is not None and b.histogram is not None
    n_a, n_b = a.histogram.count, b.histogram.count
    mean, m2 = None, None
    if (a.mean is None or a.m2 is None) and n_a == 0:
        mean, m2 = b.mean, b.m2
    elif (b.mean is None or b.m2 is None) and n_b == 0:
        mean, m2 = a.mean, a.m2
    elif None not in (a.mean, a.m2, b.mean, b.m2):
        mean, m2 = merge_moments(n_a, a.mean, a.m2, n_b, b.mean, b.m2)  # type: ignore[arg-type]
    values = None
    if a.values is not None and b.values is not None:
        counts = Counter(a.values)
        counts.update(b.values)
        values = dict(sorted(counts.items())) if len(counts) <= MAX_DISTINCT_VALUES else None
    return {"mean": mean, "m2": m2, "values": values}


def save(profile: Profile, path: str | os.PathLike[str]) -> None:
    """Write atomically: a reader never sees a half-written profile.

    The file gets the permissions of any file the user creates (0666 less the umask), not
    ``mkstemp``'s 0600: a collector running as another user must be able to read a profile
    built in CI.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(profile.to_dict(), out, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike[str]) -> Profile:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from exc
    except RecursionError:
        raise ProfileError(f"{path}: not a profile: JSON nested deeper than Python can "
                           "read") from None
    return from_dict(data, source=str(path))


def from_dict(data: Any, source: str = "profile") -> Profile:
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise ProfileError(f"{source}: not a Driftline profile (missing format '{FORMAT_NAME}')")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ProfileError(f"{source}: unsupported format_version {version!r}; this Driftline "
                           f"reads version {FORMAT_VERSION}")
    try:
        columns = {}
        for i, col in enumerate(data["columns"]):
            where = f"{source}: columns[{i}]"
            if col["role"] not in _ROLES:
                raise ProfileError(f"{where}.role: unknown role {col['role']!r}")
            if col["kind"] not in _KINDS:
                raise ProfileError(f"{where}.kind: unknown kind {col['kind']!r}")
            numeric = col["kind"] == KIND_NUMERIC
            columns[col["name"]] = ColumnProfile(
                name=col["name"], role=col["role"], kind=col["kind"], count=int(col["count"]),
                missing=int(col["missing"]),
                histogram=_histogram(col["histogram"], f"{where}.histogram") if numeric
                else None,
                frequencies=_frequencies(col.get("frequencies", {}), col["role"]),
                other=int(col.get("other", 0)),
                **(_exact(col, where) if numeric else {}))
        projection = (Projection.from_dict(data["projection"], f"{source}: projection")
                      if data.get("projection") is not None else None)
        calibration = (Calibration.from_dict(data["calibration"], f"{source}: calibration")
                       if data.get("calibration") is not None else None)
        pca = (Pca.from_dict(data["multivariate"], f"{source}: multivariate")
               if data.get("multivariate") is not None else None)
        text = {str(name): Vocabulary.from_dict(vocabulary, f"{source}: text.{name}")
                for name, vocabulary in _object(data, "text", source).items()}
        sequences = {str(name): Projection.from_dict(p, f"{source}: sequences.{name}")
                     for name, p in _object(data, "sequences", source).items()}
        return Profile(str(data["model"]["name"]), str(data["model"].get("version", "")),
                       int(data["created_time_unix_nano"]), int(data["row_count"]), columns,
                       projection, calibration=calibration, multivariate=pca, text=text,
                       sequences=sequences)
    except (ProjectionError, CalibrationError, MultivariateError) as exc:
        raise ProfileError(str(exc)) from exc
    except ProfileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"{source}: damaged profile, missing or invalid field: {exc}") from exc


def _object(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    """An optional top-level object of a profile (absent in older files)."""
    found = data.get(key)
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise ProfileError(f"{source}: {key}: must be an object keyed by column name, got "
                           f"{type(found).__name__}")
    return found


def _frequencies(data: Mapping[str, Any], role: str) -> dict[str, int]:
    """A column's value counts; class labels (predictions, targets) in their canonical text,
    so a profile written as ``"1.0"`` before labels were canonical matches ``"1"``."""
    if role == ROLE_FEATURE:
        return {str(k): int(v) for k, v in data.items()}
    counts: Counter[str] = Counter()
    for key, value in data.items():
        counts[class_label(str(key)) or str(key)] += int(value)
    return dict(counts)


def _exact(col: dict[str, Any], where: str) -> dict[str, Any]:
    """A numeric column's optional exact moments and value counts (absent in old profiles)."""
    found: dict[str, Any] = {}
    moments = col.get("moments")
    if moments is not None:
        if not isinstance(moments, dict) or not all(
                isinstance(moments.get(k), int | float) and math.isfinite(moments[k])
                for k in ("mean", "m2")):
            raise ProfileError(f"{where}.moments: must be an object with finite numbers "
                               f"'mean' and 'm2', got {json.dumps(moments)[:60]}")
        found.update(mean=float(moments["mean"]), m2=float(moments["m2"]))
    values = col.get("values")
    if values is not None:
        if not isinstance(values, list) or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], int | float)
                and isinstance(p[1], int) and p[1] >= 0 for p in values):
            raise ProfileError(f"{where}.values: must be a list of [value, count] pairs, "
                               f"got {json.dumps(values)[:60]}")
        found["values"] = {float(v): int(c) for v, c in values}
    return found


def _histogram(data: Any, where: str) -> ExpHistogram:
    """A column's histogram, its bucket counts checked: NumPy would take a damaged scalar or
    string for a zero-dimensional array and fail far from here."""
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: must be an object, got {type(data).__name__}")
    for sign in ("positive", "negative"):
        buckets = data.get(sign)
        if not isinstance(buckets, dict):
            raise ProfileError(f"{where}.{sign}: must be an object with offset and counts, "
                               f"got {type(buckets).__name__}")
        counts = buckets.get("counts")
        if not isinstance(counts, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ProfileError(f"{where}.{sign}.counts: must be a list of non-negative "
                               f"integer bucket counts, got {json.dumps(counts)[:60]}")
    scale, offsets = data.get("scale"), [data[s].get("offset") for s in ("positive", "negative")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (scale, *offsets)):
        raise ProfileError(f"{where}: scale and offsets must be integers")
    if not exphist.MIN_SCALE <= scale <= exphist.MAX_SCALE:
        raise ProfileError(f"{where}.scale: {scale} outside "
                           f"{exphist.MIN_SCALE}..{exphist.MAX_SCALE}")
    for sign in ("positive", "negative"):
        try:
            exphist.check_buckets(scale, data[sign]["offset"], len(data[sign]["counts"]))
        except ValueError as exc:
            raise ProfileError(f"{where}.{sign}: {exc}") from exc
    return ExpHistogram.from_dict(data)


def load_directory(directory: str | os.PathLike[str]) -> dict[tuple[str, str], Profile]:
    """All ``*.json`` profiles of a directory keyed by (model name, model version)."""
    profiles = {}
    for path in sorted(Path(directory).glob("*.json")):
        profile = load(path)
        profiles[(profile.model_name, profile.model_version)] = profile
    return profiles
