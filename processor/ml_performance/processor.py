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

from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ResourceMetrics,
)

from driftline import semconv
from driftline.processor.component import (
    ComponentError,
    DataRefusedError,
    Host,
    LogsConsumer,
)
from driftline.processor.component.factories import ProcessorFactory
from driftline.processor.component.predictions import (
    GroundTruth,
    Prediction,
    RecordError,
    event_name,
    ground_truth,
    prediction,
    resource_pairs,
)
from driftline.processor.component.signals import SIGNAL_LOGS, SIGNAL_METRICS
from driftline.processor.component.ticker import Ticker
from driftline.processor.ml_performance.config import (
    DEFAULT_GRACE,
    DEFAULT_MAX_CLASSES,
    DEFAULT_MAX_MODELS,
    DEFAULT_MIN_LABELS,
    DEFAULT_STORE_PATH,
    DEFAULT_TTL,
    DEFAULT_WINDOW,
    MetricsTargetConfig,
    MlPerformanceConfig,
    PerformanceAlertsConfig,
    PerformanceLimitsConfig,
    PerformanceThresholdsConfig,
    StoreConfig,
)
from driftline.processor.ml_performance.evaluation import WindowEvaluator
from driftline.processor.ml_performance.store import (
    MEMORY,
    BatchResult,
    PredictionStore,
    PredictionStoreError,
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
        self._lock = threading.Lock()
        self._evaluating = threading.Lock()
        self._store: PredictionStore | None = None
        self._host = Host()
        self._metric_targets: list[Any] = []
        self._alert_targets: list[Any] = []
        self._counts: Counter[str] = Counter()
        self._warned: set[Any] = set()
        self._ticker = Ticker("ml-performance-ticker", tick_interval_s, self._tick, _log,
                              "ml_performance: evaluating windows failed; will retry next "
                              "tick")
        self._next_prune_ns = 0
        self._shut_down = False
        self._evaluator = WindowEvaluator(config, self._window_ns, self._add_count,
                                          self._warn_once)

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
        self._ticker.start()

    def shutdown(self) -> None:
        """Stop the ticker, evaluate the windows that are due, close the store.

        Windows not yet due stay in the store (with a file) and are evaluated after the
        next start; in memory they are lost (logged).
        """
        if self._shut_down:
            return
        self._shut_down = True
        self._ticker.stop()
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
        self.evaluate_due()
        if self._clock() >= self._next_prune_ns:
            self.prune()

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

    def _add_count(self, name: str, count: int = 1) -> None:
        with self._lock:
            self._counts[name] += count

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
                metrics, alerts = self._evaluator.evaluate(rows, alerted, now_ns)
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

class Factory(ProcessorFactory):
    """``processors: {ml_performance: {store: {path: FILE, ttl: 168h}, window: 60s, ...}}``."""

    TYPE = TYPE
    CONFIG = MlPerformanceConfig
    SIGNALS = (SIGNAL_LOGS,)
    COMPONENT = MlPerformanceProcessor
