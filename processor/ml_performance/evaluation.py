"""One window of ``ml_performance``: its joined predictions and labels to the
``ml.performance.*`` gauges (classification and regression quality, labels per class) and
the alerts of thresholds it crosses. The processor owns the store, the ticker and the
counters; this module owns what one window's numbers mean."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics

from driftline import semconv
from driftline.labels import class_label
from driftline.processor.component.otlp_build import WindowGauges
from driftline.processor.component.performance_alerts import PerformanceAlert, alert_logs
from driftline.processor.ml_performance import metrics as quality
from driftline.processor.ml_performance.config import (
    HIGHER_IS_WORSE,
    METRIC_NAMES,
    MlPerformanceConfig,
)
from driftline.processor.ml_performance.lag import add_label_lag
from driftline.processor.ml_performance.store import WindowRows, decode_scores

_log = logging.getLogger(__name__)


class WindowEvaluator:
    """Computes one window's gauges and alerts from its rows.

    ``count(name, n)`` adds to the processor's counter ``name`` (windows below min_labels,
    undefined ROC AUC, unusable labels, class overflow) and ``warn_once(key, message, *args)``
    logs a warning the first time ``key`` is seen, so the processor's stats and log stay
    the one place an operator reads.
    """

    def __init__(self, config: MlPerformanceConfig, window_ns: int,
                 count: Callable[..., None], warn_once: Callable[..., None]) -> None:
        self._config = config
        self._window_ns = window_ns
        self._thresholds = config.thresholds.items()
        self._count = count
        self._warn_once = warn_once

    def evaluate(self, rows: WindowRows, alerted: set[str], now_ns: int
                  ) -> tuple[ResourceMetrics | None, ResourceLogs | None]:
        start_ns = rows.index * self._window_ns
        end_ns = start_ns + self._window_ns
        key = rows.model
        model = [(semconv.ML_MODEL_NAME, key.name), (semconv.ML_MODEL_VERSION, key.version),
                 (semconv.ML_MODEL_FRAMEWORK, key.framework),
                 (semconv.ML_OPERATION, key.operation)]
        gauges = WindowGauges(start_ns, end_ns, model)
        values: dict[str, float] = {}
        labels = len(rows.true_labels)
        gauges.add(semconv.ML_PERFORMANCE_LABELS, semconv.UNIT_LABELS, labels)
        add_label_lag(gauges, end_ns, now_ns)
        classified = [i for i, p in enumerate(rows.predicted_labels) if p is not None]
        regressed = [i for i, v in enumerate(rows.predicted_values) if v is not None]
        verdict = ""
        if classified:
            verdict = self._classification(rows, classified, gauges, values)
        if regressed:
            verdict += self._regression(rows, regressed, gauges, values)
        _log.info("ml_performance: model=%s version=%s window_start=%d labels=%d %s",
                  key.name, key.version or "-", start_ns, labels, verdict.strip())
        metrics = gauges.resource_metrics(semconv.PERFORMANCE_SCOPE)
        alerts = []
        for name, threshold in self._thresholds:
            metric = METRIC_NAMES[name]
            value = values.get(metric)
            if value is None or metric in alerted:
                continue
            higher_is_worse = name in HIGHER_IS_WORSE
            if (value > threshold) if higher_is_worse else (value < threshold):
                alerts.append(PerformanceAlert(metric, value, threshold, not higher_is_worse,
                                               labels))
        logs = alert_logs(alerts, model, rows.resource, start_ns, end_ns, now_ns) \
            if alerts else None
        return metrics, logs

    def _classification(self, rows: WindowRows, indexes: list[int], gauges: WindowGauges,
                        values: dict[str, float]) -> str:
        y_true, y_pred, kept = [], [], []
        canonical = _label_cache()
        for i in indexes:
            true = rows.true_labels[i]
            if true is None:
                value = rows.true_values[i]
                true = None if value is None else class_label(value)
            if true is None:
                continue
            y_true.append(canonical(true))
            y_pred.append(canonical(rows.predicted_labels[i]))  # type: ignore[arg-type]
            kept.append(i)
        self._count_unusable(len(indexes) - len(kept))
        counts = Counter(y_true)
        shown = self._shown_classes(counts, y_pred)
        for label in sorted(shown):
            if counts[label]:
                gauges.add(semconv.ML_PERFORMANCE_LABELS, semconv.UNIT_LABELS, counts[label],
                           [(semconv.ML_CLASS, label)])
        if len(kept) < self._config.min_labels:
            self._count("windows_below_min_labels")
            return f"classification: {len(kept)} labels, below min_labels=" \
                   f"{self._config.min_labels}, no metrics"
        scores, classes = _score_matrix(rows, kept)
        classes = tuple(canonical(c) for c in classes)
        result = quality.classification(y_true, y_pred, scores, classes)  # type: ignore[arg-type]
        unit = semconv.UNIT_DIMENSIONLESS
        gauges.add(semconv.ML_PERFORMANCE_ACCURACY, unit, result.accuracy)
        values[semconv.ML_PERFORMANCE_ACCURACY] = result.accuracy
        macro = [(semconv.ML_PERFORMANCE_AVERAGE, semconv.AVERAGE_MACRO)]
        for metric, value in ((semconv.ML_PERFORMANCE_PRECISION, result.precision_macro),
                              (semconv.ML_PERFORMANCE_RECALL, result.recall_macro),
                              (semconv.ML_PERFORMANCE_F1, result.f1_macro)):
            gauges.add(metric, unit, value, macro)
            values[metric] = value
        for label in [c for c in result.per_class if c in shown]:
            scores_of = result.per_class[label]
            extra = [(semconv.ML_PERFORMANCE_AVERAGE, semconv.AVERAGE_CLASS),
                     (semconv.ML_CLASS, label)]
            gauges.add(semconv.ML_PERFORMANCE_PRECISION, unit, scores_of.precision, extra)
            gauges.add(semconv.ML_PERFORMANCE_RECALL, unit, scores_of.recall, extra)
            gauges.add(semconv.ML_PERFORMANCE_F1, unit, scores_of.f1, extra)
        auc = ""
        if result.roc_auc_binary is not None:
            positive, value = result.roc_auc_binary
            gauges.add(semconv.ML_PERFORMANCE_ROC_AUC, unit, value,
                       [(semconv.ML_PERFORMANCE_AVERAGE, semconv.AVERAGE_BINARY),
                        (semconv.ML_CLASS, positive)])
            values[semconv.ML_PERFORMANCE_ROC_AUC] = value
            auc = f" roc_auc={value:.4g}"
        elif result.roc_auc_macro is not None:
            gauges.add(semconv.ML_PERFORMANCE_ROC_AUC, unit, result.roc_auc_macro, macro)
            values[semconv.ML_PERFORMANCE_ROC_AUC] = result.roc_auc_macro
            for label, value in result.roc_auc_per_class.items():
                if label in shown:
                    gauges.add(semconv.ML_PERFORMANCE_ROC_AUC, unit, value,
                               [(semconv.ML_PERFORMANCE_AVERAGE, semconv.AVERAGE_CLASS),
                                (semconv.ML_CLASS, label)])
            auc = f" roc_auc={result.roc_auc_macro:.4g}"
        if result.roc_auc_undefined or scores is None:
            self._count("undefined_roc_auc_windows")
            auc += f" (roc_auc: {result.roc_auc_undefined or _why_no_scores(rows, kept)})"
        return f"accuracy={result.accuracy:.4g} f1_macro={result.f1_macro:.4g}{auc}"

    def _shown_classes(self, counts: Counter[str], y_pred: list[Any]) -> set[str]:
        """The classes that get their own series: all of them, or past ``max_classes`` the
        most frequent (true and predicted), the window counted in class_overflow_windows."""
        everything = counts + Counter(y_pred)
        limit = self._config.limits.max_classes
        if len(everything) <= limit:
            return set(everything)
        self._count("class_overflow_windows")
        self._warn_once("max_classes", "ml_performance: a window has more than "
                        "limits::max_classes=%d classes; only the most frequent get per-class "
                        "series (macro averages use all)", limit)
        return {c for c, _ in everything.most_common(limit)}

    def _regression(self, rows: WindowRows, indexes: list[int], gauges: WindowGauges,
                    values: dict[str, float]) -> str:
        y_true, y_pred = [], []
        for i in indexes:
            true = rows.true_values[i]
            if true is None:
                try:
                    true = float(rows.true_labels[i])  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    continue
            y_true.append(true)
            y_pred.append(rows.predicted_values[i])
        self._count_unusable(len(indexes) - len(y_true))
        if len(y_true) < self._config.min_labels:
            self._count("windows_below_min_labels")
            return f" regression: {len(y_true)} labels, below min_labels=" \
                   f"{self._config.min_labels}, no metrics"
        result = quality.regression(y_true, y_pred)  # type: ignore[arg-type]
        unit = semconv.UNIT_DIMENSIONLESS
        for metric, value in ((semconv.ML_PERFORMANCE_MAE, result.mae),
                              (semconv.ML_PERFORMANCE_RMSE, result.rmse),
                              (semconv.ML_PERFORMANCE_R2, result.r2)):
            if value is not None:
                gauges.add(metric, unit, value)
                values[metric] = value
        return f" mae={result.mae:.4g} rmse={result.rmse:.4g}"

    def _count_unusable(self, count: int) -> None:
        if count:
            self._count("unusable_labels", count)
            self._warn_once("unusable", "ml_performance: labels that do not fit their "
                            "prediction (a text label for a regressor's value that is not a "
                            "number) are left out, counted in unusable_labels")


def _label_cache() -> Callable[[str], str]:
    """``class_label`` of texts, each distinct text converted once: stores written before
    labels were canonical may hold ``"1.0"`` where the other side says ``"1"``."""
    seen: dict[str, str] = {}

    def canonical(text: str) -> str:
        found = seen.get(text)
        if found is None:
            found = seen[text] = class_label(text) or text
        return found

    return canonical


def _score_matrix(rows: WindowRows, kept: list[int]
                  ) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """The rows' scores as one matrix when every row has scores over the same classes."""
    classes = {rows.classes[i] for i in kept}
    if len(classes) != 1 or any(rows.scores[i] is None for i in kept):
        return None, ()
    [names] = classes
    matrix = np.vstack([decode_scores(rows.scores[i]) for i in kept])
    return matrix, names


def _why_no_scores(rows: WindowRows, kept: list[int]) -> str:
    if any(rows.scores[i] is None for i in kept):
        return "some predictions carry no ml.prediction.scores"
    return "the predictions' ml.prediction.classes differ within the window"
