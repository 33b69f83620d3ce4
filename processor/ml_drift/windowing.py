"""Windowing for ``ml_drift``: each ``ml.*`` point into the tumbling window of its stream.

A stream is (model name, model version, operation); a point belongs to window
``time_unix_nano // window``. Cumulative points are turned into deltas first
(``temporality``), explicit-bucket histograms kept as such (``explicit``). A point for a
window whose end plus ``grace`` has passed goes into the stream's oldest open window and is
counted in ``late_points``. ``limits`` fold extra models, columns and categories into the
overflow value, so a flood of names cannot grow memory without bound.

``Windowing`` owns the open windows, the cumulative streams, what changed since the last
checkpoint commit and its counters, behind ``lock`` (the ingest lock; the checkpoint's
group commit runs under it too, so a commit never sees half a batch), and the decoding
memos (``DecodingMemos``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    AGGREGATION_TEMPORALITY_DELTA,
    Metric,
    ResourceMetrics,
)

from driftline import semconv
from driftline.durations import parse_duration
from driftline.labels import class_label
from driftline.processor.component.attribute_bytes import AttributeKey, attribute_key
from driftline.processor.ml_drift import estimation
from driftline.processor.ml_drift.config import MlDriftConfig
from driftline.processor.ml_drift.explicit import ExplicitHistogram
from driftline.processor.ml_drift.memos import DecodingMemos, PointAttributes, WindowMemo
from driftline.processor.ml_drift.points import parts_from_points, point_reader
from driftline.processor.ml_drift.split import SplitDetector
from driftline.processor.ml_drift.temporality import CumulativeToDelta, Value
from driftline.processor.ml_drift.window import Part, StreamKey, Window
from driftline.processor.ml_drift.window_store import Changes

_log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
_HISTOGRAM_KINDS = ("exponential_histogram", "histogram")
# Points whose attributes are their first field, so that a serialization can start with the
# attributes of the last request's point (``attribute_key``); an explicit histogram's and a
# sum's come after their times.
_ATTRIBUTES_FIRST = ("exponential_histogram",)
# Rows one window may count: its ``ml.window.rows`` gauge is an int64; points that would
# take it past this are rejected (each point holds at most ``exphist.MAX_COUNT``).
MAX_WINDOW_ROWS = 2**62


class Windowing:
    """The open windows of every stream and what a batch changes in them (see above)."""

    def __init__(self, config: MlDriftConfig, now_ns: int, split: SplitDetector) -> None:
        self.lock = threading.Lock()
        self._window_ns = round(config.window_s * NS_PER_S)
        self._grace_ns = round(config.grace_s * NS_PER_S)
        self._limits = config.limits
        self.windows: dict[tuple[StreamKey, int], Window] = {}
        self.streams: dict[StreamKey, int] = {}  # stream -> last window index seen
        self._split = split
        self.deltas = CumulativeToDelta(
            now_ns, config.limits.max_cumulative_streams,
            round(parse_duration(config.limits.cumulative_staleness) * NS_PER_S),
            moved=split.moved)
        # Open windows a batch touched since the last checkpoint commit.
        self.dirty: set[tuple[StreamKey, int]] = set()
        self.counts: Counter[str] = Counter()
        self.last_invalid = ""
        self._warned: set[Any] = set()
        self._memos = DecodingMemos()
        # Per resource of the batch being windowed: ((model, version, operation), index) ->
        # (the window's memo, folded into the overflow stream).
        self._batch_windows: dict[tuple[tuple[str, str, str], int],
                                  tuple[WindowMemo, bool]] = {}
        # The resource of the batch being windowed, as wire bytes.
        self._resource_bytes = b""
        self._first_open = 0
        self._now_index = 0
        self._handlers: dict[str, Callable[[Sequence[KeyValue], str, Metric, int], None]] = {
            semconv.ML_FEATURE_VALUE: self._feature_values,
            semconv.ML_PREDICTION_CONFIDENCE: self._confidences,
            semconv.ML_PREDICTION_VALUE: self._prediction_values,
            semconv.ML_PREDICTION_CLASS_METRIC: self._prediction_classes,
            semconv.ML_FEATURE_CATEGORY_METRIC: self._feature_categories,
            semconv.ML_PREDICT_ROWS: self._rows,
            semconv.ML_PREDICTION_UNCERTAINTY: self._uncertainties,
        }

    # --- what the processor and the checkpoint ask (under ``lock``) -------------------------

    def take_due(self, first_open: int, now_ns: int) -> list[Window]:
        """Take out the windows before ``first_open`` (their end + grace has passed), in
        time then stream order; expire idle cumulative streams."""
        self.deltas.expire(now_ns)
        due = sorted((k for k in self.windows if k[1] < first_open),
                     key=lambda k: (k[1], k[0].model_name, k[0].model_version, k[0].operation))
        windows = [self.windows.pop(k) for k in due]
        self.dirty.difference_update(due)
        return windows

    def prune(self, horizon: int) -> list[StreamKey]:
        """Forget the streams whose last window is before ``horizon``: they free their
        ``max_streams`` slot. Returns them (their history is the evaluation's to drop)."""
        pruned = [k for k, last in self.streams.items() if last < horizon]
        for key in pruned:
            del self.streams[key]
        return pruned

    def take_changes(self) -> Changes:
        """What the batches since the last commit changed: the touched open windows and
        cumulative streams; forgotten here, as they are about to be committed."""
        dirty, self.dirty = self.dirty, set()
        touched, self.deltas.touched = self.deltas.touched, set()
        forgotten, self.deltas.forgotten = self.deltas.forgotten, set()
        changes = Changes()
        for key, index in dirty:
            window = self.windows.get((key, index))
            if window is not None:
                changes.open_windows[(key.text(), index)] = window.checkpoint_delta()
        for stream in touched:
            changes.temporality[stream] = self.deltas.entry(stream)
        for stream in forgotten:
            changes.temporality[stream] = None
        return changes

    def forget_changes(self) -> None:
        """Without a checkpoint nothing is committed: forget what the batch changed."""
        self.dirty.clear()
        self.deltas.touched.clear()
        self.deltas.forgotten.clear()

    def restored(self, key: StreamKey, index: int, window: Window | None) -> None:
        """Record a window read back from the checkpoint (None: a closed one, only its
        stream is remembered)."""
        if window is not None:
            self.windows[(key, index)] = window
        self.streams[key] = max(self.streams.get(key, index), index)

    def clear(self) -> None:
        """Forget every window, stream and cumulative stream (a failed restore)."""
        self.windows.clear()
        self.streams.clear()
        self.deltas.clear()

    def clear_open(self) -> set[tuple[StreamKey, int]]:
        """Forget the open windows and cumulative streams (to reload them as committed);
        returns which windows were open."""
        in_memory = set(self.windows)
        self.windows.clear()
        self.deltas.clear()
        return in_memory

    # --- a batch (under ``lock``) ------------------------------------------------------------

    def window_batch(self, batch: Sequence[ResourceMetrics], now_ns: int) -> None:
        """Put every ``ml.*`` point of ``batch`` into its window; invalid points are counted
        in ``counts["invalid_points"]`` (the last one's reason in ``last_invalid``)."""
        first_open = (now_ns - self._grace_ns) // self._window_ns
        if first_open != self._first_open:
            self._memos.forget_before(first_open)
        self._first_open = first_open
        self._now_index = now_ns // self._window_ns
        try:
            for resource_metrics in batch:
                resource = resource_metrics.resource.attributes
                self._resource_bytes = resource_metrics.resource.SerializeToString()
                resource_id = ""
                self._batch_windows.clear()  # the windows met take this resource once
                for scope_metrics in resource_metrics.scope_metrics:
                    scope = scope_metrics.scope
                    for metric in scope_metrics.metrics:
                        handler = self._handlers.get(metric.name)
                        if handler is None:
                            continue
                        if not resource_id:
                            resource_id = self._memos.resource_text(resource,
                                                                    self._resource_bytes)
                        stream_prefix = f"{resource_id}|{scope.name}|{scope.version}"
                        handler(resource, stream_prefix, metric, now_ns)
        finally:
            self._batch_windows.clear()

    def _invalid(self, reason: str, warn_key: Any) -> None:
        """Count a point this processor cannot use (under lock), warn once per kind."""
        self.counts["invalid_points"] += 1
        self.last_invalid = reason
        self._warn_once(warn_key, "ml_drift: invalid point skipped: %s", reason)

    def _warn_once(self, key: Any, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _log.warning(message, *args)

    def _values(self, stream_prefix: str, metric: Metric, kinds: Sequence[str]
                ) -> Iterator[tuple[Any, PointAttributes, Value | Part]]:
        """The points of ``metric`` with their attributes and delta values (cumulative ones
        converted); points of another kind or without a temporality are counted, skipped."""
        data_kind = metric.WhichOneof("data")
        if data_kind is None:
            return
        data = getattr(metric, data_kind)
        if data_kind not in kinds:
            self.counts["unsupported_points"] += len(data.data_points)
            self._warn_once((metric.name, data_kind),
                            "ml_drift: %s arrives as %s; expected %s, its points are skipped",
                            metric.name, data_kind, " or ".join(kinds))
            return
        temporality = data.aggregation_temporality
        if temporality not in (AGGREGATION_TEMPORALITY_DELTA, AGGREGATION_TEMPORALITY_CUMULATIVE):
            self.counts["unsupported_points"] += len(data.data_points)
            self._warn_once((metric.name, "temporality"),
                            "ml_drift: %s has no aggregation temporality; its points are "
                            "skipped", metric.name)
            return
        cumulative = temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
        read = point_reader(data_kind, cumulative)
        # Delta exponential histograms (what the recorder sends) are read for the whole
        # metric at once; each point then takes its part, or its error, in order.
        parts = (parts_from_points(data.data_points)
                 if data_kind == "exponential_histogram" and not cumulative else None)
        known = self._memos.known_attributes
        keys_of = (stream_prefix, metric.name, data_kind)
        guessing = data_kind in _ATTRIBUTES_FIRST
        previous = self._memos.last_keys(keys_of) if guessing else []
        guesses = len(previous)
        keys: list[AttributeKey | None] = []
        for at, point in enumerate(data.data_points):
            key = attribute_key(point, previous[at] if at < guesses else None)
            keys.append(key)
            attributes = known.get(key[0]) if key is not None else None
            if attributes is None:
                attributes = self._memos.attributes(point, key)
            try:
                value: Value | Part | ValueError | None = read(point) if parts is None \
                    else parts[at]
            except ValueError as exc:
                value = exc
            if isinstance(value, ValueError):
                self._invalid(f"{metric.name}: {value}", ("bad", metric.name))
                continue
            if cumulative:
                stream = json.dumps([stream_prefix, metric.name, data_kind,
                                     sorted(attributes.values.items())])
                value = self.deltas.delta(stream, point.start_time_unix_nano,
                                           point.time_unix_nano, value)  # type: ignore[arg-type]
                if value is None:
                    if self.deltas.moved:
                        self._split.mark(StreamKey(*attributes.stream), attributes.stream[0],
                                         point.time_unix_nano, stream)
                    continue
            yield point, attributes, value
        if guessing:
            self._memos.keep_keys(keys_of, previous, keys)

    def _stream_key(self, stream: tuple[str, str, str]) -> tuple[StreamKey, bool]:
        """The point's stream, and True when it is folded into the overflow stream."""
        key = StreamKey(*stream)
        if key not in self.streams and len(self.streams) >= self._limits.max_streams:
            self._warn_once("max_streams", "ml_drift: more than limits::max_streams=%d models "
                            "and operations; the rest are folded into model %s",
                            self._limits.max_streams, semconv.OVERFLOW_VALUE)
            return StreamKey(semconv.OVERFLOW_VALUE, "", ""), True
        return key, False

    def _window_for(self, resource: Sequence[KeyValue], point: Any,
                    attributes: PointAttributes, now_ns: int) -> WindowMemo | None:
        stream = attributes.stream
        time_ns = point.time_unix_nano
        if not stream[0] or time_ns <= 0:
            self._invalid(f"a point without {semconv.ML_MODEL_NAME} or a time", "invalid")
            return None
        index = time_ns // self._window_ns
        if index > self._now_index + self._limits.max_future_windows:
            self._invalid(f"a point {index - self._now_index} windows ahead of the clock "
                          f"(limits::max_future_windows={self._limits.max_future_windows})",
                          "future")
            return None
        if index < self._first_open:
            self.counts["late_points"] += 1
        # Points of one resource mostly share a model and a window: looked up once per batch.
        cache_key = (stream, index)
        cached = self._batch_windows.get(cache_key)
        if cached is None:
            cached = self._batch_windows[cache_key] = self._open_window(resource, stream, index)
        memo, overflow = cached
        if overflow:
            self.counts["stream_overflow_points"] += 1
        framework = attributes.framework
        if framework is not None:
            memo.window.framework = framework
        return memo

    def _open_window(self, resource: Sequence[KeyValue], stream: tuple[str, str, str],
                     index: int) -> tuple[WindowMemo, bool]:
        """The window a point of ``index`` goes to (a late one: the stream's oldest open
        window), marked touched by this batch; True when the point's stream is folded into
        the overflow stream (``max_streams``), counted per point by the caller."""
        key, overflow = self._stream_key(stream)
        first_open = self._first_open
        if index < first_open:
            open_indexes = [i for (k, i) in self.windows if k == key and i >= first_open]
            index = min(open_indexes, default=first_open)
        window = self.windows.get((key, index))
        if window is None:
            window = self.windows[(key, index)] = Window(key, index)
        self.streams[key] = max(self.streams.get(key, index), index)
        self.dirty.add((key, index))
        memo = self._memos.window(key, index, window)
        self._memos.add_resource(memo, resource, self._resource_bytes)
        return memo, overflow

    def _column_in(self, memo: WindowMemo, column: str) -> str:
        """``column``, or the overflow column when the window holds ``max_features`` others;
        a column the window is known to hold is not checked again."""
        if column in memo.columns:
            return column
        window = memo.window
        if not window.has_column(column) and (
                memo.full or len(window.columns()) >= self._limits.max_features):
            memo.full = True  # each later point of a new column is not counted again
            self.counts["feature_overflow_points"] += 1
            self._warn_once(("max_features", window.key),
                            "ml_drift: model %r has more than limits::max_features=%d columns; "
                            "the rest are folded into %s (not compared)",
                            window.key.model_name, self._limits.max_features,
                            semconv.OVERFLOW_VALUE)
            return semconv.OVERFLOW_VALUE
        memo.columns.add(column)  # held now, or added by the caller right after
        return column

    def _add_histograms(self, resource: Sequence[KeyValue], stream_prefix: str,
                        metric: Metric, now_ns: int,
                        column_of: Callable[[Mapping[str, str]], str | None]) -> None:
        for point, attributes, value in self._values(stream_prefix, metric, _HISTOGRAM_KINDS):
            column = column_of(attributes.values)
            if not column:
                continue
            memo = self._window_for(resource, point, attributes, now_ns)
            if memo is None:
                continue
            if column not in memo.columns:  # else known to be held: no limit to check
                column = self._column_in(memo, column)
            if not isinstance(value, ExplicitHistogram):
                memo.window.add_numeric(column, value)  # type: ignore[arg-type]
                continue
            try:
                memo.window.add_explicit(column, value)
            except ValueError:
                self.counts["explicit_bounds_mismatches"] += 1
                self._warn_once(("bounds", column), "ml_drift: explicit bounds of %s changed "
                                "within a window; the point is skipped", column)

    def _add_counts(self, resource: Sequence[KeyValue], stream_prefix: str, metric: Metric,
                    now_ns: int, column_of: Callable[[Mapping[str, str]], str | None],
                    category_attribute: str,
                    category_of: Callable[[str], str | None] | None = None) -> None:
        for point, attributes, value in self._values(stream_prefix, metric, ("sum",)):
            column = column_of(attributes.values)
            if not column:
                continue
            memo = self._window_for(resource, point, attributes, now_ns)
            if memo is None:
                continue
            column = self._column_in(memo, column)
            counts = memo.window.categorical.setdefault(column, Counter())
            category = attributes.values.get(category_attribute, "")
            if category_of is not None:
                category = category_of(category) or category
            if category not in counts and len(counts) >= self._limits.max_categories:
                self.counts["category_overflow_points"] += 1
                category = semconv.OVERFLOW_VALUE
            counts[category] += value  # type: ignore[operator]

    def _feature_values(self, resource: Sequence[KeyValue], prefix: str, metric: Metric,
                        now: int) -> None:
        self._add_histograms(resource, prefix, metric, now,
                             lambda a: a.get(semconv.ML_FEATURE_NAME))

    def _confidences(self, resource: Sequence[KeyValue], prefix: str, metric: Metric,
                     now: int) -> None:
        self._add_histograms(resource, prefix, metric, now,
                             lambda a: semconv.PROFILE_COLUMN_PREDICTION_CONFIDENCE)

    def _prediction_values(self, resource: Sequence[KeyValue], prefix: str, metric: Metric,
                           now: int) -> None:
        # Per-class scores carry ml.prediction.class; only regression outputs (without it)
        # match the profile's single ml.prediction.value column.
        self._add_histograms(
            resource, prefix, metric, now,
            lambda a: None if a.get(semconv.ML_PREDICTION_CLASS) else semconv.ML_PREDICTION_VALUE)

    def _uncertainties(self, resource: Sequence[KeyValue], prefix: str, metric: Metric,
                       now: int) -> None:
        self._add_histograms(resource, prefix, metric, now, estimation.column_of)

    def _prediction_classes(self, resource: Sequence[KeyValue], prefix: str, metric: Metric,
                            now: int) -> None:
        self._add_counts(resource, prefix, metric, now,
                         lambda a: semconv.PROFILE_COLUMN_PREDICTION_CLASS,
                         semconv.ML_PREDICTION_CLASS, class_label)

    def _feature_categories(self, resource: Sequence[KeyValue], prefix: str, metric: Metric,
                            now: int) -> None:
        self._add_counts(resource, prefix, metric, now, lambda a: a.get(semconv.ML_FEATURE_NAME),
                         semconv.ML_FEATURE_CATEGORY)

    def _rows(self, resource: Sequence[KeyValue], prefix: str, metric: Metric,
              now_ns: int) -> None:
        for point, attributes, value in self._values(prefix, metric, ("sum",)):
            if value != int(value):  # type: ignore[arg-type]
                self._invalid(f"{metric.name}: {value!r} is not a whole number of rows",
                              ("rows", "fraction"))
                continue
            memo = self._window_for(resource, point, attributes, now_ns)
            if memo is None:
                continue
            if memo.window.rows + int(value) > MAX_WINDOW_ROWS:  # type: ignore[arg-type]
                self._invalid(f"{metric.name}: the window would count more than "
                              f"{MAX_WINDOW_ROWS} rows", ("rows", "window"))
                continue
            memo.window.rows += int(value)  # type: ignore[arg-type]

