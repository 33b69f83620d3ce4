"""One model stream's delta aggregates between two exports, and their OTLP data points.

Every dimension is capped (feature names, categories, classes): past the cap, values fold
into one ``__other__`` series and ``ml.cardinality.overflow`` says how many did.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
)

from driftline import derived, semconv, text
from driftline.calibration import uncertainty
from driftline.columns import (
    NUMERIC_KINDS,
    CategoryColumn,
    NumericColumn,
    is_numeric,
    table_columns,
)
from driftline.exphist import ExpHistogram
from driftline.labels import class_labels, is_label_dtype

DEFAULT_MAX_FEATURES = 256
DEFAULT_TOP_K_CATEGORIES = 50  # as many as a reference profile keeps per column
DEFAULT_MAX_CLASSES = 100
DEFAULT_MAX_STREAMS = 100  # distinct (model, version, operation) per recorder
# Rows per stream and export interval whose values are aggregated; above it, a uniform random
# sample of about this many rows is (row counts stay exact). Bounds the recorder's CPU.
DEFAULT_MAX_SAMPLED_ROWS = 100_000
# Within an interval, a burst beyond this many times the budget lowers the rate at once.
BURST_FACTOR = 2
# Sampled rows of a stream's array inputs histogrammed together: a drain with fewer keeps
# them (as float64) for the next drain or the export.
HISTOGRAM_BATCH_ROWS = 8192
# Sampled calls averaging at least this many rows are sampled one by one before they are
# concatenated (no copy of dropped rows); smaller ones are concatenated first (one selection
# instead of one per call).
SAMPLE_EACH_CALL_ROWS = 64
# Sampled calls keeping at most this many rows each on average have their kept rows sliced
# one by one rather than selected per call.
SLICED_ROWS_PER_CALL = 4
# Samples of at most this many rows, at most this share of the rows, are drawn as a size
# and distinct positions (few positions drawn twice); up to MASKED_SAMPLE_ROWS rows, a draw
# per row.
SMALL_SAMPLE_ROWS = 64
SMALL_SAMPLE_RATE = 1 / 16
MASKED_SAMPLE_ROWS = 256
# Explicit buckets for ml.predict.duration: model calls range from microseconds to seconds.
DURATION_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                      0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DELTA = AggregationTemporality.DELTA
# Label dtypes counted by np.unique before they are turned into text (booleans, integers,
# floats); text and objects are labelled once per distinct value by class_labels.
_COUNTED_LABEL_KINDS = "biuf"


@dataclass(frozen=True, slots=True)
class Limits:
    """Cardinality caps; the Python SDK enforces none, so the recorder does."""

    max_features: int = DEFAULT_MAX_FEATURES
    top_k_categories: int = DEFAULT_TOP_K_CATEGORIES
    max_classes: int = DEFAULT_MAX_CLASSES
    max_streams: int = DEFAULT_MAX_STREAMS
    max_sampled_rows: int = DEFAULT_MAX_SAMPLED_ROWS

    def sample_rate(self, previous_rows: int) -> float:
        """The share of rows to aggregate this interval, from the previous one's volume."""
        return 1.0 if previous_rows <= self.max_sampled_rows \
            else self.max_sampled_rows / previous_rows


@dataclass(frozen=True, slots=True)
class ModelTraits:
    """What the recorder needs to know about a model to read its inputs and outputs.

    ``read_inputs`` turns a framework's input into named columns (default: tables and
    arrays); ``read_outputs`` turns its output into labels (1-D) or class scores (2-D). Both
    read row by row: the recorder may hand them a sample of a call's rows.
    """

    is_classifier: bool
    classes: Sequence[Any] | None = None
    feature_names: Sequence[str] | None = None
    read_inputs: Callable[[Any], Iterable[tuple[str, np.ndarray]]] | None = None
    read_outputs: Callable[[Any], np.ndarray] | None = None
    # Columns computed across each call's input columns (``driftline.derived``'s table
    # derivations), e.g. the reconstruction error of an attached PCA (``driftline.multivariate``).
    table_derivations: tuple[derived.TableDerivation, ...] = ()


class StreamAggregate:
    """Delta aggregates of one stream (one model, version and operation).

    Calls are *staged* (a call's numeric 2-D array as it is, other inputs as columns, and
    its outputs, appended to lists) and aggregated in one vectorised pass per drain: a
    thousand one-row calls cost one concatenation and one histogram per column, not a
    thousand, which keeps the recorder thread from competing with ``predict`` for the GIL.
    """

    def __init__(self, limits: Limits, sample_rate: float = 1.0,
                 rng: np.random.Generator | None = None) -> None:
        self.limits = limits
        self.sample_rate = sample_rate
        self._rng = rng or np.random.default_rng()
        self.rows = 0
        self.durations: dict[str | None, list[float]] = {}
        self.numeric: dict[str, NumericColumn] = {}
        self.categorical: dict[str, CategoryColumn] = {}
        self.classes = CategoryColumn(limits.max_classes)
        self.confidence = NumericColumn()
        self.margin = NumericColumn()
        self.values = NumericColumn()
        # 1 - confidence per predicted class (ml.prediction.uncertainty), for estimation.
        self.uncertainty: dict[str, NumericColumn] = {}
        self.overflow: Counter[str] = Counter()
        self.records_dropped: Counter[str] = Counter()  # ml.prediction records, by reason
        # Staged as handed over, and (``presampled``) rows the recorder already sampled.
        self._staged_inputs: dict[str, list[np.ndarray]] = {}
        self._text_columns: set[str] = set()
        self._staged_arrays: dict[tuple[str, ...], list[np.ndarray]] = {}
        self._presampled_inputs: dict[str, list[np.ndarray]] = {}
        self._presampled_arrays: dict[tuple[str, ...], list[np.ndarray]] = {}
        # Sampled rows of staged arrays, column-major float64, waiting to be histogrammed.
        self._compacted: dict[tuple[str, ...], list[np.ndarray]] = {}
        self._array_names: dict[tuple[int, int], tuple[Any, tuple[str, ...]]] = {}
        # Consecutive calls with the same traits, sampling and output width share one list.
        self._staged_outputs: list[tuple[ModelTraits, bool, list[np.ndarray]]] = []
        # Sampled outputs waiting to be counted, as _compacted for inputs.
        self._held_outputs: list[tuple[ModelTraits, list[np.ndarray]]] = []
        self._held_output_rows = 0
        self._class_texts: tuple[Any, np.ndarray] | None = None  # (classes, their labels)
        # Inputs of models with table derivations (and whether presampled), derived at the
        # drain.
        self._staged_tables: list[tuple[ModelTraits, Any, bool]] = []

    def add_call(self, rows: int, duration_s: float, error_type: str | None) -> None:
        self.add_calls(rows, (duration_s,), (error_type,))

    def add_calls(self, rows: int, durations: Sequence[float],
                  error_types: Sequence[str | None]) -> None:
        """Calls of ``rows`` rows in all, with each one's duration and error type."""
        self.rows += rows
        if error_types.count(None) == len(error_types):
            self.durations.setdefault(None, []).extend(durations)
        else:
            for duration_s, error_type in zip(durations, error_types, strict=True):
                self.durations.setdefault(error_type, []).append(duration_s)
        # A burst well beyond the budget lowers the rate at once, before the call's values
        # are staged (rows sampled at hand-off are thinned to it).
        if self.rows * self.sample_rate > BURST_FACTOR * self.limits.max_sampled_rows:
            self.sample_rate = self.limits.max_sampled_rows / self.rows

    def stage_inputs(self, inputs: Any, traits: ModelTraits, presampled: bool = False) -> None:
        """Keep a call's inputs for the next aggregation; ``presampled``: they are already a
        sample of the call's rows at ``sample_rate`` (``sample_positions``)."""
        if traits.table_derivations:
            self._staged_tables.append((traits, inputs, presampled))
        if traits.read_inputs is None and type(inputs) is np.ndarray and inputs.ndim == 2 \
                and inputs.dtype.kind in NUMERIC_KINDS:
            names = self._names(traits.feature_names, inputs.shape[1])
            staged = self._presampled_arrays if presampled else self._staged_arrays
            staged.setdefault(names, []).append(inputs)
            return
        if traits.read_inputs is not None:  # the reader derives its own columns
            columns = traits.read_inputs(inputs)
        else:
            columns = self._text_described(table_columns(inputs, traits.feature_names))
        staged_columns = self._presampled_inputs if presampled else self._staged_inputs
        for name, values in columns:
            staged_columns.setdefault(name, []).append(values)

    def _text_described(self, columns: Iterable[tuple[str, np.ndarray]]
                        ) -> Iterator[tuple[str, np.ndarray]]:
        """Columns of free text (``derived.text_like``, or seen as text before in this
        interval) as their descriptors, as a profile of the same table holds them: the text
        itself never becomes a category label."""
        for name, values in columns:
            if values.dtype == object and (name in self._text_columns
                                           or derived.text_like(values)):
                self._text_columns.add(name)
                yield from text.descriptors(name, values.tolist())
            else:
                yield name, values

    def stage_outputs(self, raw_outputs: Any, traits: ModelTraits,
                      presampled: bool = False) -> None:
        outputs = (traits.read_outputs(raw_outputs) if traits.read_outputs is not None
                   else np.asarray(raw_outputs))
        if outputs.ndim == 0:  # one value: a column of one row
            outputs = outputs.reshape(1)
        last = self._staged_outputs[-1] if self._staged_outputs else None
        if last is not None and last[0] is traits and last[1] is presampled \
                and last[2][0].shape[1:] == outputs.shape[1:]:
            last[2].append(outputs)
        else:
            self._staged_outputs.append((traits, presampled, [outputs]))

    def _names(self, feature_names: Sequence[str] | None, width: int) -> tuple[str, ...]:
        """Column names of a ``width``-column array, as ``table_columns`` names them; kept
        per names object, which a model holds for its life."""
        key = (id(feature_names), width)
        found = self._array_names.get(key)
        if found is not None and found[0] is feature_names:
            return found[1]
        names = tuple(str(name) for name in feature_names) \
            if feature_names is not None and len(feature_names) == width \
            else tuple(f"f{i}" for i in range(width))
        self._array_names[key] = (feature_names, names)
        return names

    def aggregate_staged(self, final: bool = True) -> None:
        """Fold everything staged into the distributions, one concatenation per array shape
        or column, keeping each row with probability ``sample_rate`` (a uniform random
        sample; a staged array's row is kept or dropped whole).

        Not ``final`` (a drain), array rows and outputs are only sampled and copied into
        blocks, releasing the callers' arrays; the blocks are histogrammed and counted once
        they hold ``HISTOGRAM_BATCH_ROWS`` rows or at the export, as a drain's histograms
        cost the same for a few sampled rows as for thousands.
        """
        for names in dict.fromkeys([*self._staged_arrays, *self._presampled_arrays]):
            blocks = self._sampled(self._staged_arrays.get(names, [])) \
                + self._presampled_arrays.get(names, [])
            self._compacted.setdefault(names, []).append(_stacked(blocks, copy=True))
        self._staged_arrays.clear()
        self._presampled_arrays.clear()
        for names, blocks in list(self._compacted.items()):
            if final or sum(block.shape[0] for block in blocks) >= HISTOGRAM_BATCH_ROWS:
                columns = _stacked(blocks)
                for i, name in enumerate(names):
                    self._column(name, columns[:, i]).add(columns[:, i])
                del self._compacted[names]
        for name in dict.fromkeys([*self._staged_inputs, *self._presampled_inputs]):
            values = _concatenated(self._sampled(self._staged_inputs.get(name, []))
                                   + self._presampled_inputs.get(name, []))
            self._column(name, values).add(values)
        self._staged_inputs.clear()
        self._presampled_inputs.clear()
        for traits, inputs, presampled in self._staged_tables:
            columns = list(table_columns(inputs, traits.feature_names))
            for derivation in traits.table_derivations:
                for name, derived_values in derivation(columns):
                    values = (derived_values if presampled
                              else _concatenated(self._sampled([derived_values])))
                    self._column(name, values).add(values)
        self._staged_tables.clear()
        for traits, presampled, outputs in self._staged_outputs:
            kept = outputs if presampled else self._sampled(outputs)
            # Held past this drain: a copy, never the caller's array (copies already when
            # sampled or concatenated).
            self._hold_outputs(np.concatenate(kept) if len(kept) > 1
                               else kept[0] if presampled or self.sample_rate < 1.0
                               else kept[0].copy(), traits)
        self._staged_outputs.clear()
        if final or self._held_output_rows >= HISTOGRAM_BATCH_ROWS:
            for traits, blocks in self._held_outputs:
                self._add_outputs(_concatenated(blocks), traits)
            self._held_outputs.clear()
            self._held_output_rows = 0

    def _hold_outputs(self, outputs: np.ndarray, traits: ModelTraits) -> None:
        # Traits are read again at each drain: outputs read alike (same classes object)
        # share one list across drains.
        last = self._held_outputs[-1] if self._held_outputs else None
        if last is not None and last[0].classes is traits.classes \
                and last[0].is_classifier == traits.is_classifier \
                and last[1][0].dtype == outputs.dtype and last[1][0].shape[1:] == outputs.shape[1:]:
            last[1].append(outputs)
        else:
            self._held_outputs.append((traits, [outputs]))
        self._held_output_rows += outputs.shape[0]

    def _sampled(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The staged arrays, or below rate 1 the rows sampled from them: sampled before
        they are concatenated, so dropped rows of large calls are never copied."""
        if self.sample_rate >= 1.0 or not arrays:
            return arrays
        sizes = np.array([array.shape[0] for array in arrays])
        kept = sample_positions(self._rng, int(sizes.sum()), self.sample_rate)
        if len(arrays) == 1:
            return [arrays[0][kept]]
        ends = np.cumsum(sizes)
        highs = np.searchsorted(kept, ends)
        lows = np.concatenate(([0], highs[:-1]))
        hit = np.flatnonzero(highs > lows)  # the calls with a kept row
        if hit.size > 1 and ends[-1] < SAMPLE_EACH_CALL_ROWS * hit.size:
            return [np.concatenate(arrays)[kept]]  # many small calls: one selection
        starts = ends - sizes
        if hit.size and kept.size <= SLICED_ROWS_PER_CALL * hit.size:
            # A row or two per call: a slice per kept row (a view) and one copy of them all
            # cost a fifth of a fancy index per call.
            calls = np.searchsorted(ends, kept, side="right")
            rows = (kept - starts[calls]).tolist()
            return [np.concatenate([arrays[c][row:row + 1]
                                    for c, row in zip(calls.tolist(), rows, strict=True)])]
        return [arrays[c][kept[lows[c]:highs[c]] - starts[c]] for c in hit.tolist()] \
            or [arrays[0][:0]]

    def _column(self, name: str, values: np.ndarray) -> NumericColumn | CategoryColumn:
        numeric = is_numeric(values)
        known = self.numeric if numeric else self.categorical
        if name not in known and len(self.numeric) + len(self.categorical) >= \
                self.limits.max_features:
            self.overflow[semconv.ML_FEATURE_NAME] += len(values)
            name = semconv.OVERFLOW_VALUE
        if name not in known:
            known[name] = (NumericColumn() if numeric
                           else CategoryColumn(self.limits.top_k_categories))
        return known[name]

    def _add_outputs(self, outputs: np.ndarray, traits: ModelTraits) -> None:
        classes = traits.classes
        if outputs.ndim == 2 and classes is not None and outputs.shape[1] == len(classes):
            scores = outputs.astype(np.float64, copy=False)
            texts = self._texts_of(classes)
            top = np.argmax(scores, axis=1)
            if traits.is_classifier and scores.shape[1] >= 2:
                ordered = np.sort(scores, axis=1)
                self.confidence.add(ordered[:, -1])
                self.margin.add(ordered[:, -1] - ordered[:, -2])
                self._add_uncertainty(texts, top, uncertainty(ordered[:, -1]))
            # Rows per class, then one canonical text per class (not per row).
            self._add_classes(texts, np.bincount(top, minlength=len(classes)))
        elif traits.is_classifier or is_label_dtype(outputs):
            labels = outputs.ravel()
            if labels.dtype.kind in _COUNTED_LABEL_KINDS:
                values, counts = np.unique(labels, return_counts=True)
                self._add_classes(class_labels(values), counts)
            else:
                self.classes.add(class_labels(labels))
        elif is_numeric(outputs):
            self.values.add(outputs.ravel())

    def _add_uncertainty(self, labels: np.ndarray, top: np.ndarray, doubt: np.ndarray) -> None:
        """``1 - confidence`` per predicted class; classes past ``max_classes`` fold into
        ``__other__`` (counted with the predicted labels' overflow)."""
        order = np.argsort(top, kind="stable")  # one pass, not one mask per class
        present, starts = np.unique(top[order], return_index=True)
        for j, values in zip(present.tolist(), np.split(doubt[order], starts[1:]), strict=True):
            label = str(labels[j])
            if label not in self.uncertainty and \
                    len(self.uncertainty) >= self.limits.max_classes:
                label = semconv.OVERFLOW_VALUE
            self.uncertainty.setdefault(label, NumericColumn()).add(values)

    def _texts_of(self, classes: Sequence[Any]) -> np.ndarray:
        """Canonical labels of a model's classes, kept while the model's ``classes_`` is."""
        if self._class_texts is None or self._class_texts[0] is not classes:
            self._class_texts = (classes, class_labels(np.asarray(classes, dtype=object)))
        return self._class_texts[1]

    def _add_classes(self, texts: np.ndarray, counts: np.ndarray) -> None:
        """Count ``counts[i]`` rows of label ``texts[i]`` (None: missing), as
        ``CategoryColumn.add`` would count those rows one by one."""
        present: dict[str, int] = {}
        missing = 0
        for label, count in zip(texts.tolist(), counts.tolist(), strict=True):
            if not count:
                continue
            if label is None:
                missing += count
            elif label.endswith("\x00"):  # CategoryColumn's own rules for these
                self.classes.add(np.repeat(texts, counts))
                return
            else:
                present[label] = present.get(label, 0) + count
        self.classes.count += int(counts.sum())
        self.classes.missing += missing
        if present:
            # Sorted like CategoryColumn's, so ties in the top-K break the same way.
            self.classes.add_counts(dict(sorted(present.items())))

    def metrics(self, attributes: dict[str, Any], start_ns: int, end_ns: int) -> list[Metric]:
        self.aggregate_staged()
        points = _Points(attributes, start_ns, end_ns)
        metrics = [
            Metric(semconv.ML_PREDICT_ROWS, "Rows passed to the model", semconv.UNIT_ROWS,
                   Sum([points.number(self.rows)], _DELTA, True)),
            Metric(semconv.ML_PREDICT_DURATION, "Duration of the wrapped model call",
                   semconv.UNIT_SECONDS,
                   Histogram([points.durations(error, values)
                              for error, values in self.durations.items()], _DELTA)),
        ]
        features = [points.histogram(col.histogram, {semconv.ML_FEATURE_NAME: name})
                    for name, col in self.numeric.items() if col.histogram.count]
        if features:
            metrics.append(Metric(semconv.ML_FEATURE_VALUE, "Values of numeric features",
                                  semconv.UNIT_DIMENSIONLESS,
                                  ExponentialHistogram(features, _DELTA)))
        categories = []
        for name, column in self.categorical.items():
            kept, other = column.top()
            self.overflow[semconv.ML_FEATURE_CATEGORY] += other
            if other:
                kept = {**kept, semconv.OVERFLOW_VALUE: kept.get(semconv.OVERFLOW_VALUE, 0)
                        + other}
            categories += [points.number(count, {semconv.ML_FEATURE_NAME: name,
                                                 semconv.ML_FEATURE_CATEGORY: value})
                           for value, count in kept.items()]
        if categories:
            metrics.append(Metric(semconv.ML_FEATURE_CATEGORY_METRIC,
                                  "Rows per value of categorical features", semconv.UNIT_ROWS,
                                  Sum(categories, _DELTA, True)))
        missing = [points.number(col.missing, {semconv.ML_FEATURE_NAME: name})
                   for name, col in (*self.numeric.items(), *self.categorical.items())
                   if col.missing]
        if missing:
            metrics.append(Metric(semconv.ML_FEATURE_MISSING, "Missing (NaN, None, infinite) "
                                  "feature values", semconv.UNIT_ROWS, Sum(missing, _DELTA, True)))
        kept, other = self.classes.top()
        self.overflow[semconv.ML_PREDICTION_CLASS] += other
        if other:
            kept = {**kept, semconv.OVERFLOW_VALUE: other}
        if kept:
            metrics.append(Metric(
                semconv.ML_PREDICTION_CLASS_METRIC, "Predicted labels", semconv.UNIT_ROWS,
                Sum([points.number(count, {semconv.ML_PREDICTION_CLASS: label})
                     for label, count in kept.items()], _DELTA, True)))
        for name, column, description in (
            (semconv.ML_PREDICTION_CONFIDENCE, self.confidence, "Top class probability"),
            (semconv.ML_PREDICTION_MARGIN, self.margin, "Top-1 minus top-2 class probability"),
            (semconv.ML_PREDICTION_VALUE, self.values, "Regression outputs"),
        ):
            if column.histogram.count:
                metrics.append(Metric(name, description, semconv.UNIT_DIMENSIONLESS,
                                      ExponentialHistogram([points.histogram(column.histogram)],
                                                           _DELTA)))
        doubt = [points.histogram(column.histogram, {semconv.ML_PREDICTION_CLASS: label})
                 for label, column in self.uncertainty.items() if column.histogram.count]
        if doubt:
            metrics.append(Metric(semconv.ML_PREDICTION_UNCERTAINTY,
                                  "1 - top class probability, per predicted class",
                                  semconv.UNIT_DIMENSIONLESS,
                                  ExponentialHistogram(doubt, _DELTA)))
        overflow = [points.number(count, {semconv.ML_CARDINALITY_ATTRIBUTE: attribute})
                    for attribute, count in self.overflow.items() if count]
        if overflow:
            metrics.append(Metric(semconv.ML_CARDINALITY_OVERFLOW,
                                  "Values folded into __other__ by a cardinality cap",
                                  semconv.UNIT_VALUES, Sum(overflow, _DELTA, True)))
        dropped = [points.number(count, {semconv.ERROR_TYPE: reason})
                   for reason, count in self.records_dropped.items() if count]
        if dropped:
            metrics.append(Metric(semconv.ML_PREDICTION_RECORDS_DROPPED,
                                  "ml.prediction records not sent: over the per-second cap or "
                                  "lost with a call the full recorder queue dropped",
                                  semconv.UNIT_RECORDS, Sum(dropped, _DELTA, True)))
        return metrics


def sample_positions(rng: np.random.Generator, rows: int, rate: float) -> np.ndarray:
    """Sorted positions of the rows kept of ``rows``, each with probability ``rate``: drawn
    as geometric gaps between kept rows, so the cost follows the sample, not the rows. A
    small sample (the common case at hand-off, often empty) is its size drawn from the
    binomial and that many distinct positions drawn uniformly: the same distribution."""
    if rows <= MASKED_SAMPLE_ROWS:
        return np.flatnonzero(rng.random(rows) < rate)
    expected = rows * rate
    if expected <= SMALL_SAMPLE_ROWS and rate <= SMALL_SAMPLE_RATE:
        kept = int(rng.binomial(rows, rate))
        if kept <= 1:
            return _uniform_positions(rng, rows, kept)
        if kept <= SMALL_SAMPLE_ROWS:
            positions = np.sort(_uniform_positions(rng, rows, kept))
            if not (positions[1:] > positions[:-1]).all():
                positions = np.unique(positions)  # a position drawn twice: draw again
                while positions.size < kept:
                    positions = np.union1d(
                        positions, _uniform_positions(rng, rows, kept - positions.size))
            return positions
    gaps = rng.geometric(rate, int(expected + 8 * math.sqrt(expected) + 16))
    positions = np.cumsum(gaps) - 1
    while positions[-1] < rows - 1:  # rarely: the draw ran short of the last row
        more = np.cumsum(rng.geometric(rate, positions.size)) + positions[-1]
        positions = np.concatenate([positions, more])
    return positions[:np.searchsorted(positions, rows)]


def _uniform_positions(rng: np.random.Generator, rows: int, size: int) -> np.ndarray:
    # Generator.integers costs about 15 us a call in Python overhead; this about 1 us.
    return (rng.random(size) * rows).astype(np.intp)


def _stacked(blocks: list[np.ndarray], copy: bool = False) -> np.ndarray:
    """Row blocks of the same width as one column-major float64 block, so each column is
    contiguous for the histogram's counting; without ``copy``, one block already in that
    form is returned as it is."""
    if not copy and len(blocks) == 1 and blocks[0].dtype == np.float64 \
            and blocks[0].flags.f_contiguous:
        return blocks[0]
    out = np.empty((sum(block.shape[0] for block in blocks), blocks[0].shape[1]),
                   dtype=np.float64, order="F")
    return np.concatenate(blocks, out=out)


def _concatenated(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


class _Points:
    """Data point builders sharing one stream's attributes and interval."""

    def __init__(self, attributes: dict[str, Any], start_ns: int, end_ns: int) -> None:
        self.attributes, self.start_ns, self.end_ns = attributes, start_ns, end_ns

    def _with(self, extra: dict[str, Any] | None) -> dict[str, Any]:
        return {**self.attributes, **extra} if extra else dict(self.attributes)

    def number(self, value: int, extra: dict[str, Any] | None = None) -> NumberDataPoint:
        return NumberDataPoint(self._with(extra), self.start_ns, self.end_ns, int(value))

    def durations(self, error_type: str | None, values: list[float]) -> HistogramDataPoint:
        durations = np.asarray(values, dtype=np.float64)
        bounds = np.asarray(DURATION_BUCKETS_S)
        # Explicit buckets are upper-inclusive: (bounds[i-1], bounds[i]].
        counts = np.bincount(np.searchsorted(bounds, durations, side="left"),
                             minlength=bounds.size + 1)
        extra = {semconv.ERROR_TYPE: error_type} if error_type is not None else None
        return HistogramDataPoint(self._with(extra), self.start_ns, self.end_ns,
                                  int(durations.size), float(durations.sum()),
                                  [int(c) for c in counts], list(DURATION_BUCKETS_S),
                                  float(durations.min()), float(durations.max()))

    def histogram(self, hist: ExpHistogram, extra: dict[str, Any] | None = None
                  ) -> ExponentialHistogramDataPoint:
        return ExponentialHistogramDataPoint(
            attributes=self._with(extra), start_time_unix_nano=self.start_ns,
            time_unix_nano=self.end_ns, count=int(hist.count), sum=float(hist.sum),
            scale=int(hist.scale), zero_count=int(hist.zero_count),
            positive=Buckets(hist.positive.offset, [int(c) for c in hist.positive.counts]),
            negative=Buckets(hist.negative.offset, [int(c) for c in hist.negative.counts]),
            flags=0, min=float(hist.min), max=float(hist.max))
