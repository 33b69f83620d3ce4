"""The ``ml_drift`` processor: production distributions per window, compared with profiles.

Metrics from the app side (``ml.feature.value``, ``ml.feature.category``, ``ml.prediction.*``,
``ml.predict.rows``) are merged per stream (model name, model version, operation) into
tumbling windows aligned to the clock (``windowing``). Once a window's end plus ``grace``
has passed, it is evaluated against the model's reference profile or production baseline
(``evaluation``): verdicts leave as gauges, flips to drifted as alerts into the logs
pipelines. With ``checkpoint::path`` set, every accepted batch is committed to SQLite before
it is acknowledged, in groups (``checkpoint``). Incoming metrics pass through unchanged,
after the commit (docs/delivery.md).

``MlDriftProcessor`` wires the three (each owns its state and lock) and runs the lifecycle:
start, the evaluation ticker, shutdown.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics

from driftline.processor.component import (
    ComponentError,
    Host,
    MetricsConsumer,
    PartialRejection,
)
from driftline.processor.component.factories import ProcessorFactory
from driftline.processor.component.ml_points import histogram_from_point
from driftline.processor.component.signals import SIGNAL_LOGS, SIGNAL_METRICS
from driftline.processor.component.ticker import Ticker
from driftline.processor.ml_drift.checkpoint import Checkpoint
from driftline.processor.ml_drift.config import (
    DEFAULT_BASELINE_WINDOWS,
    DEFAULT_EVALUATION_WINDOWS,
    DEFAULT_GRACE,
    DEFAULT_MAX_CATEGORIES,
    DEFAULT_MAX_FEATURES,
    DEFAULT_MAX_STREAMS,
    DEFAULT_MIN_ROWS,
    DEFAULT_PROFILES,
    DEFAULT_WINDOW,
    AlertsConfig,
    BaselineConfig,
    CheckpointConfig,
    EvaluationConfig,
    LimitsConfig,
    MlDriftConfig,
    ThresholdsConfig,
)
from driftline.processor.ml_drift.evaluation import Evaluation
from driftline.processor.ml_drift.split import SplitDetector
from driftline.processor.ml_drift.window import StreamKey
from driftline.processor.ml_drift.window_store import Changes, WindowStoreError
from driftline.processor.ml_drift.windowing import Windowing
from driftline.profile import Profile

# The config lives in ``config``; its names are part of this module's API.
__all__ = [
    "DEFAULT_BASELINE_WINDOWS", "DEFAULT_EVALUATION_WINDOWS", "DEFAULT_GRACE",
    "DEFAULT_MAX_CATEGORIES", "DEFAULT_MAX_FEATURES", "DEFAULT_MAX_STREAMS", "DEFAULT_MIN_ROWS",
    "DEFAULT_PROFILES", "DEFAULT_WINDOW", "TYPE", "AlertsConfig", "BaselineConfig",
    "CheckpointConfig", "EvaluationConfig", "Factory", "LimitsConfig", "MlDriftConfig",
    "MlDriftProcessor", "MlDriftStats", "StreamKey", "ThresholdsConfig", "histogram_from_point",
]

_log = logging.getLogger(__name__)

TYPE = "ml_drift"
# How often the background thread looks for windows to evaluate; well below any window.
TICK_INTERVAL_S = 0.2
# A refusal by the next consumer is logged at ERROR at most this often (the rest at DEBUG,
# all counted in forward_failures).
FORWARD_LOG_INTERVAL_S = 10.0
NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class MlDriftStats:
    """Counters an operator needs when numbers look wrong; every skip is counted here."""

    evaluated_windows: int = 0
    late_points: int = 0
    unsupported_points: int = 0
    invalid_points: int = 0
    unprofiled_windows: int = 0
    discarded_windows: int = 0
    emit_failures: int = 0
    forward_failures: int = 0
    failed_windows: int = 0
    cumulative_resets: int = 0
    cumulative_out_of_order: int = 0
    cumulative_initial_dropped: int = 0
    cumulative_streams_evicted: int = 0
    current_cumulative_streams: int = 0
    explicit_bounds_mismatches: int = 0
    stream_overflow_points: int = 0
    feature_overflow_points: int = 0
    category_overflow_points: int = 0
    override_errors: int = 0
    profile_reloads: int = 0
    profile_reload_failures: int = 0
    baseline_windows: int = 0
    alerts_emitted: int = 0
    alert_failures: int = 0
    checkpoint_commits: int = 0
    checkpoint_failures: int = 0
    restored_windows: int = 0
    damaged_checkpoints: int = 0
    current_open_windows: int = 0
    # Sharding (split.py): first points of streams that had gone to another processor, and
    # windows left unjudged for it.
    split_streams: int = 0
    split_windows: int = 0
    window_evaluation_nanoseconds_total: int = 0
    checkpoint_nanoseconds_total: int = 0


class MlDriftProcessor:
    """Windows production metrics per stream and emits drift verdicts per closed window.

    Delta points go into their window as they are; cumulative ones are first turned into
    deltas per stream (see ``temporality``). A point belongs to window
    ``time_unix_nano // window``; the window is evaluated once the clock passes its end plus
    ``grace``. A point for a window already past that goes into the stream's oldest open
    window and is counted in ``late_points``.
    """

    def __init__(
        self,
        config: MlDriftConfig,
        next_consumer: MetricsConsumer,
        *,
        clock: Callable[[], int] = time.time_ns,
        profiles: Mapping[tuple[str, str], Profile] | None = None,
        tick_interval_s: float = TICK_INTERVAL_S,
    ) -> None:
        """``clock`` returns Unix time in nanoseconds; ``profiles`` (keyed by model name and
        version) replaces loading ``config.profiles`` at start, for tests."""
        self._config = config
        self._next = next_consumer
        self._clock = clock
        self._window_ns = round(config.window_s * NS_PER_S)
        self._grace_ns = round(config.grace_s * NS_PER_S)
        self._stop = threading.Event()
        started_ns = clock()
        self._split = SplitDetector(self._window_ns, started_ns)
        self._windowing = Windowing(config, started_ns, self._split)
        self._evaluation = Evaluation(config, clock, profiles, self._split)
        self._checkpoint = Checkpoint(self._windowing, self._evaluation, self._window_ns,
                                      self._stop)
        self._host = Host()
        self._forward_failures = 0
        self._forward_lock = threading.Lock()
        # When a refusal by the next consumer was last logged at ERROR.
        self._forward_logged_s = -math.inf
        self._discarded_at_shutdown = 0
        self._ticker = Ticker("ml-drift-ticker", tick_interval_s, self._tick, _log,
                              "ml_drift: the evaluation tick failed; the next tick runs as "
                              "usual", self._stop)
        self._shut_down = False

    # --- lifecycle ------------------------------------------------------------------------

    def set_host(self, host: Host) -> None:
        """Remember the pipelines: alerts go to the logs ones (resolved at start)."""
        self._host = host

    def start(self) -> None:
        """Load the profiles (unless given) and the checkpoint, start the ticker."""
        self._evaluation.load_profiles()
        self._evaluation.alert_targets = self._host.pipelines_for(
            SIGNAL_LOGS, self._config.alerts.pipelines, "ml_drift: alerts::pipelines")
        if self._config.checkpoint.path:
            try:
                self._checkpoint.open(Path(self._config.checkpoint.path))
            except (WindowStoreError, sqlite3.Error, OSError) as exc:
                raise ComponentError(f"ml_drift: checkpoint::path: {exc}") from exc
        self._ticker.start()

    def shutdown(self) -> None:
        """Stop the ticker, evaluate windows whose end + grace has passed, keep the rest.

        The still-open (partial) windows are not evaluated: a verdict on part of a window
        would be compared against thresholds meant for a full one. With a checkpoint they
        stay in it and resume at the next start; without one they are counted in
        ``discarded_windows`` and logged.
        """
        if self._shut_down:
            return
        self._shut_down = True
        self._ticker.stop()
        try:
            self.evaluate_due()
        finally:
            self._checkpoint.stop_writer()
            with self._windowing.lock:
                remaining = len(self._windowing.windows)
                self._windowing.windows.clear()
                if not self._checkpoint.close_store():
                    self._discarded_at_shutdown += remaining
            if remaining:
                _log.info("ml_drift: %d open window(s) %s at shutdown", remaining,
                          "kept in the checkpoint" if self._config.checkpoint.path
                          else "not evaluated (partial)")

    def _tick(self) -> None:
        self._evaluation.maybe_reload()
        self.evaluate_due()  # a window that fails is logged and dropped there

    def reload_profiles(self) -> bool:
        """Reload changed profile files now (the ticker does it every ``reload_interval``);
        True when the profiles changed."""
        return self._evaluation.reload_profiles()

    def stats(self) -> MlDriftStats:
        counts = self._evaluation.counts()
        with self._windowing.lock:
            counts.update(self._windowing.counts)
            counts.update(self._checkpoint.counts)
            counts.update(self._windowing.deltas.stats)
            counts["current_cumulative_streams"] = len(self._windowing.deltas)
            counts["current_open_windows"] = len(self._windowing.windows)
            counts["discarded_windows"] += self._discarded_at_shutdown
        counts.update(self._split.counts())
        with self._forward_lock:
            counts["forward_failures"] += self._forward_failures
        return MlDriftStats(**{name: int(counts[name])
                               for name in MlDriftStats.__dataclass_fields__})

    # --- ingestion ------------------------------------------------------------------------

    def consume_metrics(self, batch: Sequence[ResourceMetrics]) -> None:
        """Window ``batch``'s ``ml.*`` points, then pass the batch on unchanged.

        With a checkpoint the batch is passed on (and acknowledged) once the group holding
        it is committed; when that commit fails it raises ``DataRefusedError`` (the batch
        is undone) before anything was passed on, so the sender's retry is no duplicate.
        Once windowed, a refusal by the next consumer is logged and counted in
        ``forward_failures``, not handed to the sender: a retry would window it twice.
        """
        rejected = self._checkpoint.apply(batch, self._clock())
        try:
            self._next.consume_metrics(batch)
        except PartialRejection:
            raise
        except Exception as exc:
            self._forward_failed(exc)
        self._reject_points(rejected)

    def _forward_failed(self, exc: Exception) -> None:
        with self._forward_lock:
            self._forward_failures += 1
            now = time.monotonic()
            loud = now - self._forward_logged_s >= FORWARD_LOG_INTERVAL_S
            if loud:
                self._forward_logged_s = now
        _log.log(logging.ERROR if loud else logging.DEBUG,
                 "ml_drift: the next consumer refused a batch ml_drift had already windowed "
                 "(%s: %s); it is dropped there, not handed back for a retry that would "
                 "window it twice (counted in forward_failures)", type(exc).__name__, exc)

    def _reject_points(self, rejected: int) -> None:
        """Tell the sender (OTLP ``partial_success``) how many points of its batch were
        invalid here, so it does not send them again; the rest was accepted."""
        if rejected:
            raise PartialRejection(rejected, f"ml_drift: {rejected} invalid point(s) not "
                                   f"windowed (first: {self._windowing.last_invalid})")

    # --- evaluation -----------------------------------------------------------------------

    def evaluate_due(self) -> list[ResourceMetrics]:
        """Evaluate every window whose end + grace has passed; returns what was emitted."""
        evaluation = self._evaluation
        with evaluation.lock:
            now_ns = self._clock()
            first_open = (now_ns - self._grace_ns) // self._window_ns
            with self._windowing.lock:
                self._checkpoint.flush()
                windows = self._windowing.take_due(first_open, now_ns)
            if not windows:
                return []
            changes = Changes()
            output, logs = evaluation.evaluate(windows, changes, now_ns)
            with self._windowing.lock:
                pruned = self._windowing.prune(first_open - evaluation.windows)
            evaluation.forget_streams(pruned, changes)
            try:
                if output:
                    self._next.consume_metrics(output)
            except Exception:
                evaluation.count("emit_failures")
                _log.exception("ml_drift: the next consumer refused the verdicts of %d "
                               "window(s); they are dropped (counted in emit_failures)",
                               len(output))
            finally:
                evaluation.emit_alerts(logs)
                self._checkpoint.commit_evaluation(changes)
            return output


class Factory(ProcessorFactory):
    """``processors: {ml_drift: {profiles: DIR, window: 60s, ...}}``."""

    TYPE = TYPE
    CONFIG = MlDriftConfig
    SIGNALS = (SIGNAL_METRICS,)
    COMPONENT = MlDriftProcessor
