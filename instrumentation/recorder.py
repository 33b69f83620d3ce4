"""The batching recorder: Driftline's own metric path, off the hot path.

The wrapper around ``predict`` hands each call's inputs and outputs to ``Recorder.submit``
(a deque append) and returns. A background thread aggregates what it was handed with NumPy
into OTLP data points (exponential histograms for numeric columns, which the SDK's
Histogram API cannot carry since it drops negative values) and exports them through an
OpenTelemetry SDK ``MetricExporter``, like the specification's MetricProducer bridge.
Points are DELTA: each export carries what happened since the previous one.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
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
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from driftline import exphist, semconv
from driftline.exphist import ExpHistogram

_logger = logging.getLogger(__name__)

DEFAULT_EXPORT_INTERVAL_S = 60.0  # OTEL_METRIC_EXPORT_INTERVAL's default
DEFAULT_EXPORT_TIMEOUT_S = 30.0  # OTEL_METRIC_EXPORT_TIMEOUT's default
DEFAULT_DRAIN_INTERVAL_S = 0.2
# Rows waiting for aggregation beyond which a call is kept as counts only (memory bound
# while the recorder or the backend is slow); the rows counter stays exact.
DEFAULT_MAX_PENDING_ROWS = 1_000_000
# Explicit buckets for ml.predict.duration: model calls range from microseconds to seconds.
DURATION_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                      0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Attributes = tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class ModelTraits:
    """What the recorder needs to know about a model to read its inputs and outputs."""

    is_classifier: bool
    classes: Sequence[Any] | None
    feature_names: Sequence[str] | None


@dataclass(frozen=True, slots=True)
class PredictCall:
    """What one wrapped call hands over. Inputs and outputs are references, never copies.

    ``traits`` is called in the recorder thread, not in ``predict``: asking scikit-learn
    whether a pipeline is a classifier costs about 20 us.
    """

    scope: str
    model: Any
    traits: Callable[[Any], ModelTraits]
    model_attributes: Attributes
    inputs: Any
    outputs: Any
    rows: int
    duration_s: float
    error_type: str | None
    time_unix_nano: int


class _Stream:
    """Delta accumulators of one model stream (scope + model attributes) between exports."""

    def __init__(self) -> None:
        self.rows = 0
        self.durations: dict[str | None, list[float]] = {}
        self.features: dict[str, ExpHistogram] = {}
        self.missing: dict[str, int] = {}
        self.classes: dict[str, int] = {}
        self.confidence = exphist.empty()
        self.margin = exphist.empty()
        self.values = exphist.empty()


class Recorder:
    """Aggregates handed-over calls in a background thread and exports OTLP data points."""

    def __init__(
        self,
        exporter: MetricExporter,
        resource: Resource | None = None,
        export_interval_s: float = DEFAULT_EXPORT_INTERVAL_S,
        export_timeout_s: float = DEFAULT_EXPORT_TIMEOUT_S,
        max_pending_rows: int = DEFAULT_MAX_PENDING_ROWS,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._exporter = exporter
        self._resource = resource or Resource.create()
        self._export_interval_s = export_interval_s
        self._export_timeout_s = export_timeout_s
        self._max_pending_rows = max_pending_rows
        self._clock_ns = clock_ns
        self._pending: deque[PredictCall] = deque()
        self._pending_rows = 0  # approximate under races; only a memory guard
        self._streams: dict[tuple[str, Attributes], _Stream] = {}
        self._lock = threading.Lock()  # guards _streams; held by aggregation and collection
        self._export_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._interval_start_ns = clock_ns()
        self._wakeup = threading.Event()
        self._stopped = threading.Event()
        self.dropped_rows = 0
        self.failed_aggregations = 0
        self.failed_exports = 0
        self._thread = threading.Thread(target=self._run, name="driftline-recorder", daemon=True)
        self._thread.start()
        # Flush at interpreter exit; a weak reference so the hook does not keep us alive.
        ref = weakref.ref(self)
        atexit.register(lambda: (recorder := ref()) is not None and recorder.shutdown())

    # --- hot path ---------------------------------------------------------------------------

    def submit(self, call: PredictCall) -> None:
        """Hand over one call. O(1) and never raises into the caller."""
        if self._pending_rows + call.rows > self._max_pending_rows:
            # Keep the row count exact, drop the values.
            call = replace(call, model=None, inputs=None, outputs=None)
            self.dropped_rows += call.rows
        else:
            self._pending_rows += call.rows
        self._pending.append(call)

    # --- background ---------------------------------------------------------------------------

    def _run(self) -> None:
        next_export = time.monotonic() + self._export_interval_s
        while not self._stopped.is_set():
            self._wakeup.wait(min(DEFAULT_DRAIN_INTERVAL_S,
                                  max(next_export - time.monotonic(), 0.0)))
            self._wakeup.clear()
            self._drain()
            if time.monotonic() >= next_export:
                self._collect_and_export()
                next_export = time.monotonic() + self._export_interval_s

    def _drain(self) -> None:
        # One drainer at a time, so force_flush() also waits for a call the background
        # thread has taken but not yet aggregated.
        with self._drain_lock:
            while self._pending:
                call = self._pending.popleft()
                if call.inputs is not None:
                    self._pending_rows -= call.rows
                try:
                    self._aggregate(call)
                except Exception:  # a bad input must never stop the recorder
                    self.failed_aggregations += 1
                    _logger.exception("driftline: could not aggregate a %s call", call.scope)

    def _aggregate(self, call: PredictCall) -> None:
        with self._lock:
            stream = self._streams.setdefault((call.scope, call.model_attributes), _Stream())
            stream.rows += call.rows
            stream.durations.setdefault(call.error_type, []).append(call.duration_s)
            if call.inputs is None:
                return
            traits = call.traits(call.model)
            for name, values in numeric_columns(call.inputs, traits.feature_names):
                finite = values[np.isfinite(values)]
                stream.missing[name] = stream.missing.get(name, 0) + values.size - finite.size
                hist = exphist.from_values(finite)
                previous = stream.features.get(name)
                stream.features[name] = hist if previous is None else exphist.merge(
                    [previous, hist])
            if call.outputs is not None and call.error_type is None:
                _aggregate_outputs(stream, call.outputs, traits)

    def _collect_and_export(self) -> MetricExportResult | None:
        with self._export_lock:
            with self._lock:
                streams, self._streams = self._streams, {}
                start_ns, end_ns = self._interval_start_ns, self._clock_ns()
                self._interval_start_ns = end_ns
            if not streams:
                return None
            data = self._metrics_data(streams, start_ns, end_ns)
            try:
                result = self._exporter.export(data, timeout_millis=self._export_timeout_s * 1e3)
            except Exception:
                _logger.exception("driftline: metric export raised")
                result = MetricExportResult.FAILURE
            if result is not MetricExportResult.SUCCESS:
                self.failed_exports += 1
            return result

    def _metrics_data(self, streams: Mapping[tuple[str, Attributes], _Stream], start_ns: int,
                      end_ns: int) -> MetricsData:
        by_scope: dict[str, list[Metric]] = {}
        for (scope, model_attributes), stream in streams.items():
            metrics = by_scope.setdefault(scope, [])
            metrics.extend(_stream_metrics(stream, dict(model_attributes), start_ns, end_ns))
        scopes = [ScopeMetrics(InstrumentationScope(scope), _merge_same_name(metrics), "")
                  for scope, metrics in by_scope.items()]
        return MetricsData([ResourceMetrics(self._resource, scopes, "")])

    # --- control ---------------------------------------------------------------------------

    def force_flush(self, timeout_s: float = DEFAULT_EXPORT_TIMEOUT_S) -> bool:
        """Aggregate everything handed over so far and export it now."""
        self._drain()
        return self._collect_and_export() in (None, MetricExportResult.SUCCESS)

    def shutdown(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._wakeup.set()
        self._thread.join(timeout=self._export_timeout_s)
        self.force_flush()
        self._exporter.shutdown()


def numeric_columns(inputs: Any, feature_names: Sequence[str] | None
                    ) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float64 values) of each numeric column of a DataFrame or 2-D array."""
    if hasattr(inputs, "dtypes") and hasattr(inputs, "columns"):  # pandas DataFrame
        for name in inputs.columns:
            column = inputs[name]
            if column.dtype.kind in "iuf":
                yield str(name), column.to_numpy(dtype=np.float64, na_value=np.nan)
        return
    array = np.asarray(inputs)
    if array.dtype.kind not in "iuf" or array.ndim == 0:
        return
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    array = array.reshape(array.shape[0], -1)
    names = feature_names if feature_names is not None and len(feature_names) == array.shape[1] \
        else [f"f{i}" for i in range(array.shape[1])]
    values = array.astype(np.float64, copy=False)
    for i, name in enumerate(names):
        yield str(name), values[:, i]


def _aggregate_outputs(stream: _Stream, raw_outputs: Any, traits: ModelTraits) -> None:
    outputs = np.asarray(raw_outputs)
    classes = traits.classes
    if outputs.ndim == 2 and classes is not None and outputs.shape[1] == len(classes):
        scores = outputs.astype(np.float64, copy=False)
        if traits.is_classifier and scores.shape[1] >= 2:
            ordered = np.sort(scores, axis=1)
            stream.confidence = exphist.merge([stream.confidence, _finite_hist(ordered[:, -1])])
            stream.margin = exphist.merge(
                [stream.margin, _finite_hist(ordered[:, -1] - ordered[:, -2])])
        labels = np.asarray(classes)[np.argmax(scores, axis=1)]
        _count_labels(stream, labels)
    elif traits.is_classifier:
        _count_labels(stream, outputs.ravel())
    elif outputs.dtype.kind in "iuf":
        stream.values = exphist.merge([stream.values, _finite_hist(outputs.ravel())])


def _finite_hist(values: np.ndarray) -> ExpHistogram:
    values = np.asarray(values, dtype=np.float64)
    return exphist.from_values(values[np.isfinite(values)])


def _count_labels(stream: _Stream, labels: np.ndarray) -> None:
    unique, counts = np.unique(labels, return_counts=True)
    for label, count in zip(unique, counts, strict=True):
        key = str(label)
        stream.classes[key] = stream.classes.get(key, 0) + int(count)


def _stream_metrics(stream: _Stream, attributes: dict[str, Any], start_ns: int, end_ns: int
                    ) -> list[Metric]:
    delta = AggregationTemporality.DELTA
    metrics = [
        Metric(semconv.ML_PREDICT_ROWS, "Rows passed to the model", semconv.UNIT_ROWS,
               Sum([_number(attributes, start_ns, end_ns, stream.rows)], delta, True)),
        Metric(semconv.ML_PREDICT_DURATION, "Duration of the wrapped model call",
               semconv.UNIT_SECONDS,
               Histogram([_duration_point(attributes, error, values, start_ns, end_ns)
                          for error, values in stream.durations.items()], delta)),
    ]
    feature_points = [
        _exp_point({**attributes, semconv.ML_FEATURE_NAME: name}, hist, start_ns, end_ns)
        for name, hist in stream.features.items()]
    if feature_points:
        metrics.append(Metric(semconv.ML_FEATURE_VALUE, "Values of numeric features",
                              semconv.UNIT_DIMENSIONLESS,
                              ExponentialHistogram(feature_points, delta)))
    missing = [_number({**attributes, semconv.ML_FEATURE_NAME: name}, start_ns, end_ns, count)
               for name, count in stream.missing.items() if count]
    if missing:
        metrics.append(Metric(semconv.ML_FEATURE_MISSING, "Missing (NaN, None, infinite) values",
                              semconv.UNIT_ROWS, Sum(missing, delta, True)))
    if stream.classes:
        points = [_number({**attributes, semconv.ML_PREDICTION_CLASS: label}, start_ns, end_ns,
                          count) for label, count in stream.classes.items()]
        metrics.append(Metric(semconv.ML_PREDICTION_CLASS_METRIC, "Predicted labels",
                              semconv.UNIT_ROWS, Sum(points, delta, True)))
    for name, hist, description in (
        (semconv.ML_PREDICTION_CONFIDENCE, stream.confidence, "Top class probability"),
        (semconv.ML_PREDICTION_MARGIN, stream.margin, "Top-1 minus top-2 class probability"),
        (semconv.ML_PREDICTION_VALUE, stream.values, "Regression outputs"),
    ):
        if hist.count:
            metrics.append(Metric(name, description, semconv.UNIT_DIMENSIONLESS,
                                  ExponentialHistogram(
                                      [_exp_point(attributes, hist, start_ns, end_ns)], delta)))
    return metrics


def _merge_same_name(metrics: list[Metric]) -> list[Metric]:
    """One Metric per name within a scope, its points from every model stream."""
    merged: dict[str, Metric] = {}
    for metric in metrics:
        existing = merged.get(metric.name)
        if existing is None:
            merged[metric.name] = metric
            continue
        data = existing.data
        points = [*data.data_points, *metric.data.data_points]
        if isinstance(data, Sum):
            new_data: Any = Sum(points, data.aggregation_temporality, data.is_monotonic)
        else:
            new_data = type(data)(points, data.aggregation_temporality)
        merged[metric.name] = Metric(existing.name, existing.description, existing.unit,
                                     new_data)
    return list(merged.values())


def _number(attributes: dict[str, Any], start_ns: int, end_ns: int, value: int
            ) -> NumberDataPoint:
    return NumberDataPoint(attributes, start_ns, end_ns, int(value))


def _duration_point(attributes: dict[str, Any], error_type: str | None, values: list[float],
                    start_ns: int, end_ns: int) -> HistogramDataPoint:
    durations = np.asarray(values, dtype=np.float64)
    bounds = np.asarray(DURATION_BUCKETS_S)
    counts = np.bincount(np.searchsorted(bounds, durations, side="left"),
                         minlength=bounds.size + 1)
    point_attributes = dict(attributes)
    if error_type is not None:
        point_attributes[semconv.ERROR_TYPE] = error_type
    return HistogramDataPoint(point_attributes, start_ns, end_ns, int(durations.size),
                              float(durations.sum()), [int(c) for c in counts],
                              list(DURATION_BUCKETS_S), float(durations.min()),
                              float(durations.max()))


def _exp_point(attributes: dict[str, Any], hist: ExpHistogram, start_ns: int, end_ns: int
               ) -> ExponentialHistogramDataPoint:
    empty = hist.count == 0
    return ExponentialHistogramDataPoint(
        attributes=attributes, start_time_unix_nano=start_ns, time_unix_nano=end_ns,
        count=int(hist.count), sum=float(hist.sum), scale=int(hist.scale),
        zero_count=int(hist.zero_count),
        positive=Buckets(hist.positive.offset, [int(c) for c in hist.positive.counts]),
        negative=Buckets(hist.negative.offset, [int(c) for c in hist.negative.counts]),
        flags=0, min=0.0 if empty else float(hist.min), max=0.0 if empty else float(hist.max))
