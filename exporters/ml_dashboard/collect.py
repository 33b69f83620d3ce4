"""What the dashboard keeps of a metrics batch.

Two kinds of points reach the exporter: the processors' window gauges (``ml.drift.*``,
``ml.window.rows``, ``ml.performance.*``: one closed window each, its start and end on the
point) become window updates at once; the app's own metrics, which ``ml_drift`` passes on
unchanged (feature distributions, predicted classes, confidence, margin, latency, rows), are
summed per stream and window here, and become an update once the window is ``grace`` past
its end.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, ResourceMetrics

from driftline import exphist, semconv
from driftline.exphist import ExpHistogram
from driftline.exporters.ml_dashboard.history import StreamKey, WindowUpdate
from driftline.processor.component.ml_points import attributes_of, histogram_from_point, number

# Distributions are kept at most this many buckets per sign (downscaled): enough to draw
# them, a tenth of the bytes of the app's 160.
DISTRIBUTION_MAX_BUCKETS = 32
# Categories kept per column and window; past it they count as OVERFLOW_VALUE (the app's
# recorder sends at most 50 per feature, ml_drift keeps 1000 by default).
MAX_CATEGORIES = 1000
SUMMARY_QUANTILES = (0.1, 0.5, 0.9)
LATENCY_QUANTILES = (0.5, 0.95, 0.99)
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
KIND_NUMERIC = "numeric"
KIND_CATEGORICAL = "categorical"
PREDICTION_COLUMNS = frozenset({semconv.PROFILE_COLUMN_PREDICTION_CLASS,
                                semconv.PROFILE_COLUMN_PREDICTION_CONFIDENCE,
                                semconv.ML_PREDICTION_VALUE})
_PERFORMANCE_SCOPE_METRICS = frozenset({
    semconv.ML_PERFORMANCE_ACCURACY, semconv.ML_PERFORMANCE_PRECISION,
    semconv.ML_PERFORMANCE_RECALL, semconv.ML_PERFORMANCE_F1, semconv.ML_PERFORMANCE_ROC_AUC,
    semconv.ML_PERFORMANCE_MAE, semconv.ML_PERFORMANCE_RMSE, semconv.ML_PERFORMANCE_R2})


@dataclass(slots=True)
class CollectStats:
    """Points the dashboard could not use, by reason (each counted, the first logged)."""

    cumulative_points: int = 0  # app metrics in cumulative temporality (not windowed here)
    invalid_points: int = 0  # no model name, or a histogram that cannot be read
    late_points: int = 0  # app points for a window already written


def stream_of(attributes: dict[str, str]) -> StreamKey | None:
    name = attributes.get(semconv.ML_MODEL_NAME)
    if not name:
        return None
    return StreamKey(name, attributes.get(semconv.ML_MODEL_VERSION, ""),
                     attributes.get(semconv.ML_OPERATION, ""))


# --- the processors' window gauges -------------------------------------------------------


@dataclass(slots=True)
class _Evaluated:
    framework: str = ""
    rows: int | None = None
    share: float | None = None
    dataset_drifted: int | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    verdicts: dict[str, tuple[str, int]] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    performance: dict[str, Any] = field(default_factory=dict)
    estimated: dict[str, dict[str, float]] = field(default_factory=dict)


def window_updates(scope_metrics: Any, now_ns: int, stats: CollectStats) -> list[WindowUpdate]:
    """The window updates in one scope of processor gauges (ml_drift's or ml_performance's)."""
    found: dict[tuple[StreamKey, int, int], _Evaluated] = {}
    for metric in scope_metrics.metrics:
        if not metric.HasField("gauge"):
            continue
        for point in metric.gauge.data_points:
            attributes = attributes_of(point)
            key = stream_of(attributes)
            if key is None:
                stats.invalid_points += 1
                continue
            slot = (key, point.start_time_unix_nano, point.time_unix_nano)
            evaluated = found.get(slot)
            if evaluated is None:
                evaluated = found[slot] = _Evaluated(
                    attributes.get(semconv.ML_MODEL_FRAMEWORK, ""))
            _add_gauge(evaluated, metric.name, attributes, number(point))
    updates = []
    for (key, start_ns, end_ns), evaluated in found.items():
        update = WindowUpdate(key, start_ns, end_ns, evaluated.framework, rows=evaluated.rows)
        if evaluated.verdicts:
            columns = {}
            for column, (method, drifted) in evaluated.verdicts.items():
                columns[column] = [method, evaluated.scores.get(column, {}).get(method),
                                   evaluated.thresholds.get(column), drifted]
            update.drift = {"columns": columns}
            update.scores = evaluated.scores
            # As ml.drift.dataset.share counts them: feature columns, not the predictions.
            features = [v for c, v in evaluated.verdicts.items() if c not in PREDICTION_COLUMNS]
            update.drifted = sum(drifted for _, drifted in features)
            update.features = len(features)
        if evaluated.share is not None:
            update.share = evaluated.share
            update.dataset_drifted = evaluated.dataset_drifted
        if evaluated.verdicts or evaluated.share is not None or evaluated.rows is not None:
            update.evaluated_ns = now_ns
        if evaluated.performance:
            update.performance = evaluated.performance
        if evaluated.estimated:
            update.estimated = evaluated.estimated
        updates.append(update)
    return updates


def _add_gauge(evaluated: _Evaluated, name: str, attributes: dict[str, str],
               value: float) -> None:
    column = attributes.get(semconv.ML_FEATURE_NAME, "")
    method = attributes.get(semconv.ML_DRIFT_METHOD, "")
    if name == semconv.ML_WINDOW_ROWS:
        evaluated.rows = int(value)
    elif name == semconv.ML_DRIFT_SCORE:
        evaluated.scores.setdefault(column, {})[method] = value
    elif name == semconv.ML_DRIFT_DETECTED:
        evaluated.verdicts[column] = (method, int(value))
    elif name == semconv.ML_DRIFT_THRESHOLD_METRIC:
        evaluated.thresholds[column] = value
    elif name == semconv.ML_DRIFT_DATASET_SHARE:
        evaluated.share = value
    elif name == semconv.ML_DRIFT_DATASET_DETECTED:
        evaluated.dataset_drifted = int(value)
    elif name.startswith(semconv.ML_PERFORMANCE_ESTIMATED_PREFIX):
        _add_estimate(evaluated, name[len(semconv.ML_PERFORMANCE_ESTIMATED_PREFIX):], value)
    elif name == semconv.ML_PERFORMANCE_LABELS_LAG:
        evaluated.performance["lag_s"] = value
    elif name == semconv.ML_PERFORMANCE_LABELS:
        label_class = attributes.get(semconv.ML_CLASS)
        if label_class is None:
            evaluated.performance["labels"] = int(value)
        else:
            evaluated.performance.setdefault("classes", {}).setdefault(
                label_class, {})["labels"] = int(value)
    elif name in _PERFORMANCE_SCOPE_METRICS:
        short = name[len(semconv.ML_PERFORMANCE_PREFIX):]
        if attributes.get(semconv.ML_PERFORMANCE_AVERAGE) == semconv.AVERAGE_CLASS:
            evaluated.performance.setdefault("classes", {}).setdefault(
                attributes.get(semconv.ML_CLASS, ""), {})[short] = value
        else:  # overall: accuracy and errors carry no average; macro and binary do
            evaluated.performance[short] = value
            if attributes.get(semconv.ML_PERFORMANCE_AVERAGE) == semconv.AVERAGE_BINARY:
                # The positive class: ml_drift's estimated precision, recall and F1 are its
                # own, so the page pairs them with this class's realised values.
                evaluated.performance["positive"] = attributes.get(semconv.ML_CLASS, "")


def _add_estimate(evaluated: _Evaluated, rest: str, value: float) -> None:
    """``accuracy``, ``accuracy.lower`` or ``accuracy.upper`` as {metric: {value, lower,
    upper}}: ml_drift's estimate is kept apart from ml_performance's realised metrics, so
    labels joined later never erase it (both are shown side by side)."""
    for bound, suffix in (("lower", semconv.ML_PERFORMANCE_LOWER_SUFFIX),
                          ("upper", semconv.ML_PERFORMANCE_UPPER_SUFFIX)):
        if rest.endswith(suffix):
            evaluated.estimated.setdefault(rest[:-len(suffix)], {})[bound] = value
            return
    evaluated.estimated.setdefault(rest, {})["value"] = value


# --- the app's own metrics, windowed here ---------------------------------------------------


@dataclass(slots=True)
class _Latency:
    bounds: tuple[float, ...]
    counts: np.ndarray
    total_s: float = 0.0
    calls: int = 0


@dataclass(slots=True)
class WindowSums:
    """The app's metrics of one stream and window, summed as they arrive."""

    framework: str = ""
    rows: int = 0
    numeric: dict[str, ExpHistogram] = field(default_factory=dict)
    categorical: dict[str, Counter[str]] = field(default_factory=dict)
    confidence: ExpHistogram | None = None
    margin: ExpHistogram | None = None
    latency: _Latency | None = None
    errors: int = 0

    def add_histogram(self, column: str, hist: ExpHistogram) -> None:
        previous = self.numeric.get(column)
        self.numeric[column] = hist if previous is None else exphist.merge([previous, hist])


class AppWindows:
    """Sums of the app's metrics per (stream, window index); not thread-safe (the exporter
    holds its lock around every call)."""

    def __init__(self, window_ns: int) -> None:
        self._window_ns = window_ns
        self._open: dict[tuple[StreamKey, int], WindowSums] = {}
        self._written_before: dict[StreamKey, int] = {}  # first window index still open

    def add(self, batch: Sequence[ResourceMetrics], stats: CollectStats,
            seen: dict[StreamKey, tuple[int, str]], now_ns: int) -> list[Any]:
        """Sum the app's points of ``batch``; returns the processors' scopes (gauges) for
        ``window_updates``. ``seen`` gets each stream that sent something."""
        gauge_scopes = []
        for resource_metrics in batch:
            for scope_metrics in resource_metrics.scope_metrics:
                if scope_metrics.scope.name in (semconv.PROCESSOR_SCOPE,
                                                semconv.PERFORMANCE_SCOPE):
                    gauge_scopes.append(scope_metrics)
                    continue
                for metric in scope_metrics.metrics:
                    adder = _ADDERS.get(metric.name)
                    if adder is not None:
                        adder(self, metric, stats, seen, now_ns)
        return gauge_scopes

    def _sums(self, attributes: dict[str, str], time_ns: int, stats: CollectStats,
              seen: dict[StreamKey, tuple[int, str]], now_ns: int) -> WindowSums | None:
        key = stream_of(attributes)
        if key is None or not time_ns:
            stats.invalid_points += 1
            return None
        framework = attributes.get(semconv.ML_MODEL_FRAMEWORK, "")
        seen[key] = (now_ns, framework)
        index = time_ns // self._window_ns  # as ml_drift windows the same points
        if index < self._written_before.get(key, -1):
            stats.late_points += 1
            return None
        sums = self._open.get((key, index))
        if sums is None:
            sums = self._open[(key, index)] = WindowSums(framework)
        return sums

    def _points(self, metric: Any, kind: str, stats: CollectStats) -> Sequence[Any]:
        data = getattr(metric, kind)
        if data.aggregation_temporality == CUMULATIVE:
            stats.cumulative_points += len(data.data_points)
            return ()
        return data.data_points

    def _histograms(self, metric: Any, stats: CollectStats,
                    seen: dict[StreamKey, tuple[int, str]], now_ns: int) -> None:
        if not metric.HasField("exponential_histogram"):
            return
        for point in self._points(metric, "exponential_histogram", stats):
            attributes = attributes_of(point)
            sums = self._sums(attributes, point.time_unix_nano, stats, seen, now_ns)
            if sums is None or not point.count:
                continue
            try:
                hist = histogram_from_point(point)
            except ValueError:
                stats.invalid_points += 1
                continue
            if metric.name == semconv.ML_FEATURE_VALUE:
                column = attributes.get(semconv.ML_FEATURE_NAME)
                if column:
                    sums.add_histogram(column, hist)
            elif metric.name == semconv.ML_PREDICTION_VALUE:
                if not attributes.get(semconv.ML_PREDICTION_CLASS):
                    sums.add_histogram(semconv.ML_PREDICTION_VALUE, hist)
            elif metric.name == semconv.ML_PREDICTION_CONFIDENCE:
                sums.confidence = _merged(sums.confidence, hist)
            elif metric.name == semconv.ML_PREDICTION_MARGIN:
                sums.margin = _merged(sums.margin, hist)

    def _counts(self, metric: Any, stats: CollectStats,
                seen: dict[StreamKey, tuple[int, str]], now_ns: int) -> None:
        if not metric.HasField("sum"):
            return
        for point in self._points(metric, "sum", stats):
            attributes = attributes_of(point)
            sums = self._sums(attributes, point.time_unix_nano, stats, seen, now_ns)
            if sums is None:
                continue
            value = number(point)
            if metric.name == semconv.ML_PREDICT_ROWS:
                sums.rows += int(value)
            elif metric.name == semconv.ML_FEATURE_CATEGORY_METRIC:
                column = attributes.get(semconv.ML_FEATURE_NAME)
                if column:
                    _count(sums.categorical.setdefault(column, Counter()),
                           attributes.get(semconv.ML_FEATURE_CATEGORY, ""), int(value))
            elif metric.name == semconv.ML_PREDICTION_CLASS_METRIC:
                _count(sums.categorical.setdefault(semconv.ML_PREDICTION_CLASS_METRIC,
                                                   Counter()),
                       attributes.get(semconv.ML_PREDICTION_CLASS, ""), int(value))

    def _durations(self, metric: Any, stats: CollectStats,
                   seen: dict[StreamKey, tuple[int, str]], now_ns: int) -> None:
        if not metric.HasField("histogram"):
            return
        for point in self._points(metric, "histogram", stats):
            attributes = attributes_of(point)
            sums = self._sums(attributes, point.time_unix_nano, stats, seen, now_ns)
            if sums is None or not point.count:
                continue
            if attributes.get(semconv.ERROR_TYPE):
                sums.errors += int(point.count)
            bounds = tuple(point.explicit_bounds)
            counts = np.asarray(point.bucket_counts, dtype=np.int64)
            if counts.size != len(bounds) + 1:
                stats.invalid_points += 1
                continue
            latency = sums.latency
            if latency is None or latency.bounds != bounds:
                # New bounds mid-window (an app restarted with other buckets): the latest win.
                latency = sums.latency = _Latency(bounds, np.zeros_like(counts))
            latency.counts = latency.counts + counts
            latency.total_s += point.sum
            latency.calls += int(point.count)

    def due(self, now_ns: int, grace_ns: int, everything: bool = False) -> list[WindowUpdate]:
        """The windows ``grace_ns`` past their end (all of them when ``everything``), as
        updates, forgotten here."""
        updates = []
        for (key, index), sums in list(self._open.items()):
            end_ns = (index + 1) * self._window_ns
            if everything or end_ns + grace_ns <= now_ns:
                del self._open[(key, index)]
                self._written_before[key] = max(self._written_before.get(key, -1), index + 1)
                updates.append(_update(key, index * self._window_ns, end_ns, sums))
        return updates


_ADDERS = {
    semconv.ML_FEATURE_VALUE: AppWindows._histograms,
    semconv.ML_PREDICTION_VALUE: AppWindows._histograms,
    semconv.ML_PREDICTION_CONFIDENCE: AppWindows._histograms,
    semconv.ML_PREDICTION_MARGIN: AppWindows._histograms,
    semconv.ML_PREDICT_ROWS: AppWindows._counts,
    semconv.ML_FEATURE_CATEGORY_METRIC: AppWindows._counts,
    semconv.ML_PREDICTION_CLASS_METRIC: AppWindows._counts,
    semconv.ML_PREDICT_DURATION: AppWindows._durations,
}


def _count(counts: Counter[str], category: str, rows: int) -> None:
    if category not in counts and len(counts) >= MAX_CATEGORIES:
        category = semconv.OVERFLOW_VALUE
    counts[category] += rows


def _merged(previous: ExpHistogram | None, hist: ExpHistogram) -> ExpHistogram:
    return hist if previous is None else exphist.merge([previous, hist])


def _update(key: StreamKey, start_ns: int, end_ns: int, sums: WindowSums) -> WindowUpdate:
    window_s = (end_ns - start_ns) / 1e9
    predictions: dict[str, Any] = {}
    classes = sums.categorical.get(semconv.ML_PREDICTION_CLASS_METRIC)
    if classes:
        predictions["classes"] = dict(classes)
    for name, hist in (("confidence", sums.confidence), ("margin", sums.margin),
                       ("value", sums.numeric.get(semconv.ML_PREDICTION_VALUE))):
        if hist is not None:
            predictions[name] = summary(hist)
    service: dict[str, Any] = {"rows": sums.rows, "rows_per_s": sums.rows / window_s,
                               "errors": sums.errors}
    if sums.latency is not None:
        latency = sums.latency
        service["calls"] = latency.calls
        service["calls_per_s"] = latency.calls / window_s
        service["latency_mean_s"] = latency.total_s / latency.calls if latency.calls else None
        for q in LATENCY_QUANTILES:
            service[f"latency_p{round(q * 100)}_s"] = explicit_quantile(
                latency.bounds, latency.counts, q)
    distributions: dict[str, Any] = {}
    for column, hist in sums.numeric.items():
        distributions[column] = {"kind": KIND_NUMERIC, "histogram": compact(hist).to_dict()}
    for column, counts in sums.categorical.items():
        distributions[column] = {"kind": KIND_CATEGORICAL, "counts": dict(counts)}
    return WindowUpdate(key, start_ns, end_ns, sums.framework,
                        predictions=predictions or None, service=service,
                        distributions=distributions or None)


def summary(hist: ExpHistogram) -> dict[str, float | int | None]:
    """Count, mean and the 10/50/90 % quantiles of a histogram."""
    quantiles = exphist.quantile(hist, list(SUMMARY_QUANTILES))
    mean = hist.sum / hist.count if hist.count and math.isfinite(hist.sum) else None
    out: dict[str, float | int | None] = {"count": int(hist.count), "mean": mean}
    for q, value in zip(SUMMARY_QUANTILES, quantiles, strict=True):
        out[f"p{round(q * 100)}"] = float(value)
    return out


def compact(hist: ExpHistogram) -> ExpHistogram:
    """``hist`` downscaled until each sign spans at most ``DISTRIBUTION_MAX_BUCKETS``."""
    shift = 0
    for buckets in (hist.positive, hist.negative):
        if buckets.counts.size:
            low, high = buckets.offset, buckets.offset + buckets.counts.size - 1
            shift = max(shift, exphist.scale_reduction(low, high, DISTRIBUTION_MAX_BUCKETS))
    return exphist.downscale(hist, hist.scale - shift) if shift else hist


def explicit_quantile(bounds: Sequence[float], counts: np.ndarray, q: float) -> float | None:
    """The ``q`` quantile of an explicit-bucket histogram, values uniform within a bucket
    (the first bucket from 0, the overflow bucket read as its lower bound)."""
    total = int(counts.sum())
    if not total:
        return None
    cumulative = np.cumsum(counts)
    target = q * total
    i = int(np.searchsorted(cumulative, target, side="left"))
    low = 0.0 if i == 0 else bounds[i - 1]
    if i >= len(bounds):
        return float(low)
    before = cumulative[i] - counts[i]
    fraction = (target - before) / counts[i] if counts[i] else 0.0
    return float(low + fraction * (bounds[i] - low))
