"""The ``ml_performance`` processor: predictions joined with their delayed labels, model
quality per window of prediction time.

It sits in a logs pipeline. ``ml.prediction`` records (from the app's instrumentation) and
``ml.ground_truth`` records (from the app or any OTLP sender, e.g. a nightly batch job) are
joined by ``ml.prediction.id`` in a SQLite store (``store``), committed before
the batch is acknowledged; every record then passes on unchanged. A window (by prediction
time) is evaluated once its end plus ``grace`` has passed and it has new labels, and again
each time more of its labels arrive, until its predictions expire (``store::ttl``). The
``ml.performance.*`` gauges go to the metrics pipelines, ``ml.performance.alert`` records to
the logs pipelines. See docs/performance.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ResourceMetrics,
)

from driftline import semconv
from driftline.labels import class_label
from driftline.processor.component import (
    ComponentError,
    Consumer,
    DataRefusedError,
    Host,
    LogsConsumer,
    Settings,
    require_next,
    validated,
)
from driftline.processor.component.otlp_build import WindowGauges
from driftline.processor.component.performance_alerts import PerformanceAlert, alert_logs
from driftline.processor.component.predictions import (
    GroundTruth,
    Prediction,
    RecordError,
    event_name,
    ground_truth,
    prediction,
    resource_pairs,
)
from driftline.processor.component.settings import KIND_PROCESSOR
from driftline.processor.component.signals import SIGNAL_LOGS, SIGNAL_METRICS
from driftline.processor.ml_performance import metrics as quality
from driftline.processor.ml_performance.config import (
    DEFAULT_GRACE,
    DEFAULT_MAX_CLASSES,
    DEFAULT_MAX_MODELS,
    DEFAULT_MIN_LABELS,
    DEFAULT_STORE_PATH,
    DEFAULT_TTL,
    DEFAULT_WINDOW,
    HIGHER_IS_WORSE,
    METRIC_NAMES,
    MetricsTargetConfig,
    MlPerformanceConfig,
    PerformanceAlertsConfig,
    PerformanceLimitsConfig,
    PerformanceThresholdsConfig,
    StoreConfig,
)
from driftline.processor.ml_performance.lag import add_label_lag
from driftline.processor.ml_performance.store import (
    MEMORY,
    BatchResult,
    PredictionStore,
    PredictionStoreError,
    WindowRows,
    decode_scores,
)

__all__ = [
    "DEFAULT_GRACE", "DEFAULT_MAX_CLASSES", "DEFAULT_MAX_MODELS", "DEFAULT_MIN_LABELS",
    "DEFAULT_STORE_PATH", "DEFAULT_TTL", "DEFAULT_WINDOW", "TYPE", "Factory",
    "MetricsTargetConfig", "MlPerformanceConfig", "MlPerformanceProcessor",
    "MlPerformanceStats", "PerformanceAlertsConfig", "PerformanceLimitsConfig",
    "PerformanceThresholdsConfig", "StoreConfig",
]

_log = logging.getLogger(__name__)

TYPE = "ml_performance"
# How often the background thread looks for windows to evaluate; well below any window.
TICK_INTERVAL_S = 0.2
# How often expired predictions and labels are deleted.
PRUNE_INTERVAL_S = 60.0
# Windows evaluated per pass, so a backlog (after a restart) does not hold the store long.
MAX_WINDOWS_PER_PASS = 200
JOIN_TIMEOUT_S = 10.0
NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class MlPerformanceStats:
    """Counters an operator needs when numbers look wrong; every skip is counted here."""

    stored_predictions: int = 0
    duplicate_predictions: int = 0
    expired_predictions: int = 0
    model_overflow_predictions: int = 0
    joined_labels: int = 0
    duplicate_labels: int = 0
    invalid_records: int = 0
    current_pending_labels: int = 0
    pruned_predictions: int = 0
    pruned_labels: int = 0
    evaluated_windows: int = 0
    windows_below_min_labels: int = 0
    undefined_roc_auc_windows: int = 0
    unusable_labels: int = 0
    class_overflow_windows: int = 0
    alerts_emitted: int = 0
    alert_failures: int = 0
    emit_failures: int = 0
    store_commits: int = 0
    store_failures: int = 0
    store_nanoseconds_total: int = 0


class MlPerformanceProcessor:
    """Joins predictions with labels in its store and emits quality gauges per window.

    Windows are ``time_unix_nano // window`` of the prediction. A window with new labels is
    evaluated once the clock passes its end plus ``grace``; a label arriving later (hours
    later) marks its window again and the window's gauges are emitted again over all its
    labels so far, with the same start and end times.
    """

    def __init__(self, config: MlPerformanceConfig, next_consumer: LogsConsumer, *,
                 clock: Callable[[], int] = time.time_ns,
                 tick_interval_s: float = TICK_INTERVAL_S) -> None:
        """``clock`` returns Unix time in nanoseconds (tests pass their own)."""
        self._config = config
        self._next = next_consumer
        self._clock = clock
        self._window_ns = round(config.window_s * NS_PER_S)
        self._grace_ns = round(config.grace_s * NS_PER_S)
        self._ttl_ns = round(config.store.ttl_s * NS_PER_S)
        self._thresholds = config.thresholds.items()
        self._tick_interval_s = tick_interval_s
        self._lock = threading.Lock()
        self._evaluating = threading.Lock()
        self._store: PredictionStore | None = None
        self._host = Host()
        self._metric_targets: list[Any] = []
        self._alert_targets: list[Any] = []
        self._counts: Counter[str] = Counter()
        self._warned: set[Any] = set()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._next_prune_ns = 0
        self._shut_down = False

    # --- lifecycle ------------------------------------------------------------------------

    def set_host(self, host: Host) -> None:
        """Remember the pipelines: gauges go to the metrics ones, alerts to the logs ones."""
        self._host = host

    def start(self) -> None:
        """Open the store, resolve where gauges and alerts go, start the ticker."""
        self._metric_targets = self._host.pipelines_for(
            SIGNAL_METRICS, self._config.metrics.pipelines, "ml_performance: metrics::pipelines")
        self._alert_targets = self._host.pipelines_for(
            SIGNAL_LOGS, self._config.alerts.pipelines, "ml_performance: alerts::pipelines")
        if not self._metric_targets and self._config.metrics.pipelines is None:
            _log.warning("ml_performance: no metrics pipeline gets the ml.performance gauges "
                         "(add a metrics pipeline, or set metrics::pipelines)")
        path = self._config.store.path or MEMORY
        if path == MEMORY:
            _log.warning("ml_performance: store::path is not set; predictions and labels are "
                         "kept in memory and lost at restart")
        try:
            store = PredictionStore(path, self._window_ns, self._ttl_ns)
        except PredictionStoreError as exc:
            raise ComponentError(f"ml_performance: store::path: {exc}") from exc
        with self._lock:
            self._store = store
        if path != MEMORY:
            predictions, pending = store.counts()
            _log.info("ml_performance: store %s holds %d prediction(s), %d label(s) waiting "
                      "for their prediction", path, predictions, pending)
        self._next_prune_ns = self._clock()
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="ml-performance-ticker",
                                        daemon=True)
        self._ticker.start()

    def shutdown(self) -> None:
        """Stop the ticker, evaluate the windows that are due, close the store.

        Windows not yet due stay in the store (with a file) and are evaluated after the
        next start; in memory they are lost (logged).
        """
        if self._shut_down:
            return
        self._shut_down = True
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(JOIN_TIMEOUT_S)
            self._ticker = None
        try:
            if self._store is not None:
                self.evaluate_due()
        finally:
            with self._lock:
                store, self._store = self._store, None
                if store is not None:
                    if store.path == MEMORY and store.pending_labels:
                        _log.info("ml_performance: %d label(s) without their prediction are "
                                  "dropped (store in memory)", store.pending_labels)
                    store.close()

    def _tick(self) -> None:
        while not self._stop.wait(self._tick_interval_s):
            try:
                self.evaluate_due()
                if self._clock() >= self._next_prune_ns:
                    self.prune()
            except Exception:
                _log.exception("ml_performance: evaluating windows failed; will retry next tick")

    def stats(self) -> MlPerformanceStats:
        with self._lock:
            counts = Counter(self._counts)
            if self._store is not None:
                counts["current_pending_labels"] = self._store.pending_labels
            return MlPerformanceStats(**{name: int(counts[name])
                                         for name in MlPerformanceStats.__dataclass_fields__})

    # --- ingestion ------------------------------------------------------------------------

    def consume_logs(self, batch: Sequence[ResourceLogs]) -> None:
        """Store the batch's predictions and join its labels (one committed transaction),
        then pass the batch on unchanged. A store that cannot be written refuses the batch
        (``DataRefusedError``: the sender retries), nothing is passed on."""
        predictions, labels = self._read(batch)
        if predictions or labels:
            self._apply(predictions, labels)
        self._next.consume_logs(batch)

    def _read(self, batch: Sequence[ResourceLogs]
              ) -> tuple[list[Prediction], list[GroundTruth]]:
        predictions: list[Prediction] = []
        labels: list[GroundTruth] = []
        invalid = 0
        for resource_logs in batch:
            resource: tuple[tuple[str, str], ...] | None = None
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    name = event_name(record)
                    try:
                        if name == semconv.EVENT_PREDICTION:
                            if resource is None:
                                resource = resource_pairs(resource_logs.resource.attributes)
                            predictions.append(prediction(record, resource))
                        elif name == semconv.EVENT_GROUND_TRUTH:
                            labels.append(ground_truth(record))
                    except RecordError as exc:
                        invalid += 1
                        self._warn_once(("invalid", name),
                                        "ml_performance: skipping a bad record (more are "
                                        "counted in invalid_records): %s", exc)
        if invalid:
            with self._lock:
                self._counts["invalid_records"] += invalid
        return predictions, labels

    def _apply(self, predictions: list[Prediction], labels: list[GroundTruth]) -> None:
        now_ns = self._clock()
        with self._lock:
            store = self._store
            if store is None:
                raise ComponentError("ml_performance: not started; start() the processor "
                                     "before sending it records")
            predictions = self._within_model_limit(store, predictions)
            started = time.perf_counter_ns()
            try:
                result = store.apply(predictions, labels, now_ns)
            except PredictionStoreError as exc:
                self._counts["store_failures"] += 1
                raise DataRefusedError(f"ml_performance: {exc}; the batch was not accepted, "
                                       "retry later") from exc
            self._counts["store_nanoseconds_total"] += time.perf_counter_ns() - started
            self._counts["store_commits"] += 1
            self._count(result)

    def _count(self, result: BatchResult) -> None:
        for name in ("stored_predictions", "duplicate_predictions", "expired_predictions",
                     "joined_labels", "duplicate_labels"):
            self._counts[name] += getattr(result, name)

    def _within_model_limit(self, store: PredictionStore, predictions: list[Prediction]
                            ) -> list[Prediction]:
        limit = self._config.limits.max_models
        if store.models < limit and len({p.model for p in predictions}) + store.models <= limit:
            return predictions
        known = {p.model for p in predictions if store.knows(p.model)}
        room = limit - store.models
        kept = []
        for p in predictions:
            if p.model not in known and room > 0:
                known.add(p.model)
                room -= 1
            if p.model in known:
                kept.append(p)
        dropped = len(predictions) - len(kept)
        if dropped:
            self._counts["model_overflow_predictions"] += dropped
            self._warn_once("max_models", "ml_performance: more than limits::max_models=%d "
                            "models; predictions of the others are dropped (counted in "
                            "model_overflow_predictions)", limit)
        return kept

    def _warn_once(self, key: Any, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _log.warning(message, *args)

    # --- evaluation -----------------------------------------------------------------------

    def prune(self) -> tuple[int, int]:
        """Delete predictions and waiting labels older than ``store::ttl`` now."""
        now_ns = self._clock()
        with self._lock:
            self._next_prune_ns = now_ns + round(PRUNE_INTERVAL_S * NS_PER_S)
            if self._store is None:
                return 0, 0
            predictions, labels = self._store.prune(now_ns)
            self._counts["pruned_predictions"] += predictions
            self._counts["pruned_labels"] += labels
        if predictions or labels:
            _log.info("ml_performance: pruned %d prediction(s) and %d waiting label(s) older "
                      "than store::ttl=%s", predictions, labels, self._config.store.ttl)
        return predictions, labels

    def evaluate_due(self) -> list[ResourceMetrics]:
        """Evaluate every window with new labels whose end + grace has passed; returns the
        gauges emitted."""
        with self._evaluating:
            now_ns = self._clock()
            first_open = (now_ns - self._grace_ns) // self._window_ns
            with self._lock:
                if self._store is None:
                    return []
                due = self._store.due_windows(first_open)[:MAX_WINDOWS_PER_PASS]
                windows = [(self._store.window_rows(m, i), self._store.alerted(m, i))
                           for m, i, _ in due]
            output: list[ResourceMetrics] = []
            logs: list[ResourceLogs] = []
            new_alerts: list[tuple[int, int, str]] = []
            for (model, index, _), (rows, alerted) in zip(due, windows, strict=True):
                metrics, alerts = self._evaluate(rows, alerted, now_ns)
                if metrics is not None:
                    output.append(metrics)
                if alerts is not None:
                    logs.append(alerts)
                    new_alerts += [(model, index, kv.value.string_value)
                                   for s in alerts.scope_logs for r in s.log_records
                                   for kv in r.attributes
                                   if kv.key == semconv.ML_PERFORMANCE_METRIC]
            with self._lock:
                self._counts["evaluated_windows"] += len(due)
            try:
                self._emit(output, logs)
            finally:
                with self._lock:
                    if self._store is not None and due:
                        try:
                            self._store.evaluated(due, new_alerts)
                        except PredictionStoreError:
                            self._counts["store_failures"] += 1
                            _log.exception("ml_performance: cannot record evaluated windows; "
                                           "they will be evaluated again")
            return output

    def _emit(self, output: list[ResourceMetrics], logs: list[ResourceLogs]) -> None:
        if output:
            for target in self._metric_targets:
                try:
                    target.consume_metrics(output)
                except Exception:
                    with self._lock:
                        self._counts["emit_failures"] += 1
                    _log.exception("ml_performance: a metrics pipeline refused %d window(s) "
                                   "of ml.performance gauges", len(output))
        if not logs:
            return
        records = sum(len(s.log_records) for r in logs for s in r.scope_logs)
        for target in self._alert_targets:
            try:
                target.consume_logs(logs)
            except Exception:
                with self._lock:
                    self._counts["alert_failures"] += 1
                _log.exception("ml_performance: a logs pipeline refused %d performance "
                               "alert(s)", records)
        with self._lock:
            self._counts["alerts_emitted"] += records

    def _evaluate(self, rows: WindowRows, alerted: set[str], now_ns: int
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
            with self._lock:
                self._counts["windows_below_min_labels"] += 1
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
            with self._lock:
                self._counts["undefined_roc_auc_windows"] += 1
            auc += f" (roc_auc: {result.roc_auc_undefined or _why_no_scores(rows, kept)})"
        return f"accuracy={result.accuracy:.4g} f1_macro={result.f1_macro:.4g}{auc}"

    def _shown_classes(self, counts: Counter[str], y_pred: list[Any]) -> set[str]:
        """The classes that get their own series: all of them, or past ``max_classes`` the
        most frequent (true and predicted), the window counted in class_overflow_windows."""
        everything = counts + Counter(y_pred)
        limit = self._config.limits.max_classes
        if len(everything) <= limit:
            return set(everything)
        with self._lock:
            self._counts["class_overflow_windows"] += 1
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
            with self._lock:
                self._counts["windows_below_min_labels"] += 1
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
            with self._lock:
                self._counts["unusable_labels"] += count
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


class Factory:
    """``processors: {ml_performance: {store: {path: FILE, ttl: 168h}, window: 60s, ...}}``."""

    TYPE = TYPE
    CONFIG = MlPerformanceConfig
    SIGNALS = (SIGNAL_LOGS,)

    def default_config(self) -> MlPerformanceConfig:
        return MlPerformanceConfig()

    def create(self, config: MlPerformanceConfig, next_consumer: Consumer | None = None,
               settings: Settings | None = None) -> MlPerformanceProcessor:
        settings = settings or Settings.of(KIND_PROCESSOR, TYPE)
        return MlPerformanceProcessor(validated(config, settings),
                                      require_next(next_consumer, settings))
