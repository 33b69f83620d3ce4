"""The ``ml_drift`` processor: production distributions per window, compared with profiles.

Metrics from the app side (``ml.feature.value``, ``ml.feature.category``, ``ml.prediction.*``,
``ml.predict.rows``) are merged per stream (model name, model version, operation) into
tumbling windows aligned to the clock; cumulative streams are turned into deltas first
(``temporality``), explicit-bucket histograms are kept as such (``explicit``). Once a
window's end plus ``grace`` has passed, the merge of the last ``evaluation::windows`` windows
is compared with the model's reference profile (or its production ``baseline``); verdicts
leave as gauges (``ml.drift.*``, ``ml.window.rows``) and flips to drifted as ``ml.drift.alert``
log records into the logs pipelines. With ``checkpoint::path`` set, every accepted batch is
committed to SQLite before it is acknowledged (``window_store``): batches arriving together
are committed as one group by a writer thread, and a failed group commit refuses every batch
of the group. Incoming metrics pass through unchanged, after the commit (docs/delivery.md).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import (
    KeyValue,
)
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    AGGREGATION_TEMPORALITY_DELTA,
    Metric,
    ResourceMetrics,
)

from driftline import drift, semconv
from driftline.durations import parse_duration
from driftline.labels import TASK_CLASSIFICATION, TASK_REGRESSION, class_label
from driftline.processor.component import (
    ComponentError,
    DataRefusedError,
    Host,
    PartialRejection,
)
from driftline.processor.component.attribute_bytes import AttributeKey, attribute_key
from driftline.processor.component.ml_points import (
    attributes_of,
    histogram_from_point,
    resource_text,
)
from driftline.processor.component.otlp_build import WindowGauges
from driftline.processor.component.signals import SIGNAL_LOGS, SIGNAL_METRICS
from driftline.processor.ml_drift import explicit as _explicit
from driftline.processor.ml_drift.alerts import Alert, alert_logs
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
from driftline.processor.ml_drift.explicit import ExplicitHistogram
from driftline.processor.ml_drift.points import point_reader
from driftline.processor.ml_drift.profile_watch import ProfileWatcher
from driftline.processor.ml_drift.split import SplitDetector
from driftline.processor.ml_drift.temporality import CumulativeToDelta, Value
from driftline.processor.ml_drift.window import Part, StreamKey, Window, as_profile, merged
from driftline.processor.ml_drift.window_store import (
    Changes,
    CheckpointInUseError,
    CheckpointVersionError,
    WindowStore,
    WindowStoreError,
)
from driftline.profile import KIND_NUMERIC, ROLE_PREDICTION, Profile, ProfileError

# The config lives in _ml_drift_config; its names are part of this module's API.
__all__ = [
    "DEFAULT_BASELINE_WINDOWS", "DEFAULT_EVALUATION_WINDOWS", "DEFAULT_GRACE",
    "DEFAULT_MAX_CATEGORIES", "DEFAULT_MAX_FEATURES", "DEFAULT_MAX_STREAMS", "DEFAULT_MIN_ROWS",
    "DEFAULT_PROFILES", "DEFAULT_WINDOW", "TYPE", "AlertsConfig", "BaselineConfig",
    "CheckpointConfig", "EvaluationConfig", "Factory", "LimitsConfig", "MlDriftConfig",
    "MlDriftProcessor", "MlDriftStats", "StreamKey", "ThresholdsConfig", "histogram_from_point",
]

_log = logging.getLogger(__name__)

_META_WINDOW_NS = "window_ns"

TYPE = "ml_drift"
# How often the background thread looks for windows to evaluate; well below any window.
TICK_INTERVAL_S = 0.2
JOIN_TIMEOUT_S = 10.0
# Group commit: the writer waits for batches still being applied, until none arrived for
# GROUP_IDLE_S or GROUP_MAX_WAIT_S after the group's first one (polling every GROUP_POLL_S).
GROUP_IDLE_S = 0.002
GROUP_MAX_WAIT_S = 0.010
GROUP_POLL_S = 0.0005
# Commits are at least this far apart, so under load each one (which holds the processor's
# lock for a SQLite write) covers many batches; the wait adds at most this to a reply.
GROUP_MIN_INTERVAL_S = 0.005
# A refusal by the next consumer is logged at ERROR at most this often (the rest at DEBUG,
# all counted in forward_failures).
FORWARD_LOG_INTERVAL_S = 10.0
NS_PER_S = 1_000_000_000

_KEY_ATTRIBUTES = (semconv.ML_MODEL_NAME, semconv.ML_MODEL_VERSION, semconv.ML_OPERATION)
_PREDICTION_COLUMNS = (semconv.PROFILE_COLUMN_PREDICTION_CLASS,
                       semconv.PROFILE_COLUMN_PREDICTION_CONFIDENCE,
                       semconv.ML_PREDICTION_VALUE)
_HISTOGRAM_KINDS = ("exponential_histogram", "histogram")
# Points whose attributes are their first field, so that a serialization can start with the
# attributes of the last request's point (``attribute_key``); an explicit histogram's and a
# sum's come after their times.
_ATTRIBUTES_FIRST = ("exponential_histogram",)
# Attribute sets remembered with what they determine (``_PointAttributes``); at this many the
# memory is cleared. The same few sets repeat request after request.
MAX_KNOWN_ATTRIBUTE_SETS = 8192
# Rows one window may count: its ``ml.window.rows`` gauge is an int64; points that would
# take it past this are rejected (each point holds at most ``exphist.MAX_COUNT``).
MAX_WINDOW_ROWS = 2**62
# Attribute keys of the last request's points kept as guesses for the next (``attribute_key``);
# past this many the memory is cleared.
MAX_KEPT_ATTRIBUTE_KEYS = 65_536


# --- state --------------------------------------------------------------------------------


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



# --- the processor ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PointAttributes:
    """A point's attributes as text and what windowing reads from them: built once per
    attribute set and found again by the attributes' wire bytes (reading the attributes of
    every point costs about 1 us each)."""

    values: dict[str, str]
    stream: tuple[str, str, str]  # model name, model version, operation ("" when absent)
    framework: str | None

    @classmethod
    def of(cls, values: dict[str, str]) -> _PointAttributes:
        return cls(values, tuple(values.get(a, "") for a in _KEY_ATTRIBUTES),  # type: ignore[arg-type]
                   values.get(semconv.ML_MODEL_FRAMEWORK))


@dataclass(slots=True)
class _WindowMemo:
    """What windowing remembers about one open window between batches, so that per batch it
    neither copies the resource attributes again nor checks a column against
    ``max_features`` again. Valid while ``window`` is the open window of its key and index
    (a rollback or a restore replaces the object)."""

    window: Window
    columns: set[str]  # columns the window holds
    # The window's resource list that adding the resource of these wire bytes left as it
    # was: adding that resource again changes nothing while the window keeps this list.
    resource: list[KeyValue] | None = None
    resource_bytes: bytes = b""


@dataclass(slots=True)
class _Baseline:
    windows: int
    data: Window


class _Ticket:
    """One applied batch waiting for its group commit: ``error`` is set when it failed."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: str | None = None


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
        next_consumer: Any,
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
        self._min_rows = config.min_rows
        self._evaluation_windows = config.evaluation.windows
        self._baseline_windows = config.baseline.windows
        self._limits = config.limits
        self._thresholds = config.to_thresholds()
        self._profiles: Mapping[tuple[str, str], Profile] = profiles or {}
        self._watcher = None if profiles is not None else ProfileWatcher(config.profiles)
        self._reload_ns = round(parse_duration(config.reload_interval) * NS_PER_S)
        self._next_reload_ns = 0
        self._tick_interval_s = tick_interval_s
        self._lock = threading.Lock()
        self._evaluating = threading.Lock()
        self._windows: dict[tuple[StreamKey, int], Window] = {}
        self._history: dict[StreamKey, list[Window]] = {}
        self._baselines: dict[StreamKey, _Baseline] = {}
        self._verdicts: dict[tuple[str, str], bool] = {}
        self._streams: dict[StreamKey, int] = {}  # stream -> last window index seen
        started_ns = clock()
        self._split = SplitDetector(self._window_ns, started_ns)
        self._deltas = CumulativeToDelta(
            started_ns, config.limits.max_cumulative_streams,
            round(parse_duration(config.limits.cumulative_staleness) * NS_PER_S),
            moved=self._split.moved)
        self._dirty: set[tuple[StreamKey, int]] = set()
        self._store: WindowStore | None = None
        # Group commit: applied batches wait in _tickets until the writer commits them.
        self._tickets: list[_Ticket] = []
        self._resolved = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._writer_stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._last_apply_s = 0.0
        self._last_commit_s = 0.0
        # Per resource of the batch being windowed: ((model, version, operation), index) ->
        # (the window's memo, folded into the overflow stream).
        self._batch_windows: dict[tuple[tuple[str, str, str], int],
                                  tuple[_WindowMemo, bool]] = {}
        # The resource of the batch being windowed, as wire bytes, and the last resource's
        # text (``resource_text``) by its bytes.
        self._resource_bytes = b""
        self._resource_texts: tuple[bytes, str] = (b"", "")
        # (stream, index) of an open window -> what windowing remembers about it.
        self._window_memos: dict[tuple[StreamKey, int], _WindowMemo] = {}
        # Attribute wire bytes -> what they determine (see ``_attributes``).
        self._known_attributes: dict[bytes, _PointAttributes] = {}
        # (stream prefix, metric name, data kind) -> its points' attribute keys, in order.
        self._last_keys: dict[tuple[str, str, str], list[AttributeKey | None]] = {}
        self._kept_keys = 0
        self._first_open = 0
        self._now_index = 0
        self._alert_targets: list[Any] = []
        self._host = Host()
        self._counts: Counter[str] = Counter()
        self._warned: set[Any] = set()
        self._last_invalid = ""
        # When a refusal by the next consumer was last logged at ERROR.
        self._forward_logged_s = -math.inf
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._shut_down = False
        self._handlers: dict[str, Callable[[Sequence[KeyValue], str, Metric, int], None]] = {
            semconv.ML_FEATURE_VALUE: self._feature_values,
            semconv.ML_PREDICTION_CONFIDENCE: self._confidences,
            semconv.ML_PREDICTION_VALUE: self._prediction_values,
            semconv.ML_PREDICTION_CLASS_METRIC: self._prediction_classes,
            semconv.ML_FEATURE_CATEGORY_METRIC: self._feature_categories,
            semconv.ML_PREDICT_ROWS: self._rows,
        }

    # --- lifecycle ------------------------------------------------------------------------

    def set_host(self, host: Host) -> None:
        """Remember the pipelines: alerts go to the logs ones (resolved at start)."""
        self._host = host

    def start(self) -> None:
        """Load the profiles (unless given) and the checkpoint, start the ticker."""
        if self._watcher is not None:
            try:
                self._profiles = self._watcher.load_all()
            except (ProfileError, OSError) as exc:
                raise ComponentError(f"ml_drift: cannot load the profiles in "
                                     f"'{self._config.profiles}': {exc}") from exc
            if self._profiles:
                _log.info("ml_drift: %d reference profile(s) loaded from %s: %s",
                          len(self._profiles), self._config.profiles,
                          ", ".join(f"{n}:{v or '*'}" for n, v in sorted(self._profiles)))
            else:
                _log.warning("ml_drift: no reference profile in %s; every model gets "
                             "ml.window.rows only until profiles are added there",
                             self._config.profiles)
            self._next_reload_ns = self._clock() + self._reload_ns
        self._alert_targets = self._host.pipelines_for(
            SIGNAL_LOGS, self._config.alerts.pipelines, "ml_drift: alerts::pipelines")
        if self._config.checkpoint.path:
            try:
                self._store = self._open_checkpoint(Path(self._config.checkpoint.path))
            except (WindowStoreError, sqlite3.Error, OSError) as exc:
                raise ComponentError(f"ml_drift: checkpoint::path: {exc}") from exc
        self._stop.clear()
        if self._store is not None:
            self._writer_stop.clear()
            self._writer = threading.Thread(target=self._write_loop, name="ml-drift-writer",
                                            daemon=True)
            self._writer.start()
        self._ticker = threading.Thread(target=self._tick, name="ml-drift-ticker", daemon=True)
        self._ticker.start()

    def _open_checkpoint(self, path: Path) -> WindowStore:
        """The checkpoint, restored. A damaged one (not a database, unreadable rows) is
        moved aside with its name and the reason logged, and an empty one started, so one
        damaged file never keeps the collector down; a file another processor holds or of
        another schema version stays an error (the operator decides)."""
        empty = path.exists() and path.stat().st_size == 0
        store: WindowStore | None = None
        try:
            store = WindowStore(path)
            self._check_window_size(store)
            self._restore(store)
        except (CheckpointInUseError, CheckpointVersionError):
            raise
        except (WindowStoreError, sqlite3.Error, ValueError, KeyError, TypeError) as exc:
            if store is not None:
                store.close()
            self._forget_restored()
            aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{path}{suffix}")
                if source.exists():
                    source.replace(f"{aside}{suffix}")
            self._counts["damaged_checkpoints"] += 1
            _log.error("ml_drift: checkpoint %s is damaged (%s: %s); moved aside to %s, "
                       "starting with empty windows (counted in damaged_checkpoints)", path,
                       type(exc).__name__, exc, aside.name)
            store = WindowStore(path)
            self._check_window_size(store)
            return store
        if empty:
            _log.warning("ml_drift: checkpoint %s was an empty (0-byte) file: truncated or "
                         "created by hand; starting with empty windows", path)
        if store.recreated_tables:
            _log.warning("ml_drift: checkpoint %s lacked its table(s) %s (damaged); they are "
                         "recreated empty and what they held is lost", path,
                         ", ".join(store.recreated_tables))
        return store

    def _forget_restored(self) -> None:
        """Drop what a failed restore put in memory."""
        self._windows.clear()
        self._history.clear()
        self._baselines.clear()
        self._verdicts.clear()
        self._streams.clear()
        self._deltas.clear()
        self._counts["restored_windows"] = 0

    def _check_window_size(self, store: WindowStore) -> None:
        """Windows are stored by index; with another ``window`` size those indexes mean other
        times, so the stored windows are dropped (counted in ``discarded_windows``)."""
        stored = store.meta(_META_WINDOW_NS)
        if stored is not None and stored != str(self._window_ns):
            dropped = store.clear_windows()
            self._counts["discarded_windows"] += dropped
            _log.warning("ml_drift: checkpoint %s holds windows of %s ns, the config says %s "
                         "ns; its %d window(s) are dropped (baselines and cumulative streams "
                         "are kept)", store.path, stored, self._window_ns, dropped)
        store.set_meta(_META_WINDOW_NS, str(self._window_ns))

    def _restore(self, store: WindowStore,
                 ingest_only: set[tuple[StreamKey, int]] | None = None) -> None:
        """Load the checkpoint. ``ingest_only``: undo a failed batch, reloading just these
        open windows and the cumulative table (what a batch changes)."""
        snapshot = store.load()
        damaged = Changes()
        for (stream, index), (closed, state) in snapshot.windows.items():
            try:
                key = StreamKey.from_text(stream)
                if ingest_only is not None and (closed or (key, index) not in ingest_only):
                    continue
                window = Window.from_dict(key, index, state)
                window.add_parts(snapshot.parts.get((stream, index), ()))
                window.check()
            except (ValueError, KeyError, TypeError) as exc:
                damaged.windows[(stream, index)] = None
                self._counts["discarded_windows"] += 1
                _log.error("ml_drift: checkpoint %s: window %d of stream %s is damaged and "
                           "dropped (counted in discarded_windows): %s: %s", store.path,
                           index, _safe(stream), type(exc).__name__, exc)
                continue
            if closed:
                self._history.setdefault(key, []).append(window)
            else:
                self._windows[(key, index)] = window
                if ingest_only is None:
                    self._counts["restored_windows"] += 1
            self._streams[key] = max(self._streams.get(key, index), index)
        if damaged:  # out of the file, so the next start does not meet them again
            store.commit(damaged)
        for stream, entry in snapshot.temporality.items():
            self._deltas.load_entry(stream, entry)
        if ingest_only is not None:
            return
        for history in self._history.values():
            history.sort(key=lambda w: w.index)
        for stream, (count, state) in snapshot.baselines.items():
            key = StreamKey.from_text(stream)
            self._baselines[key] = _Baseline(count, Window.from_dict(key, 0, state))
        self._verdicts.update(snapshot.verdicts)
        if snapshot.windows or snapshot.temporality:
            _log.info("ml_drift: resumed from checkpoint %s: %d open window(s), %d cumulative "
                      "stream(s)", store.path, self._counts["restored_windows"],
                      len(snapshot.temporality))

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
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(JOIN_TIMEOUT_S)
            self._ticker = None
        try:
            self.evaluate_due()
        finally:
            self._stop_writer()
            with self._lock:
                remaining = len(self._windows)
                self._windows.clear()
                if self._store is not None:
                    self._store.close()
                    self._store = None
                else:
                    self._counts["discarded_windows"] += remaining
            if remaining:
                _log.info("ml_drift: %d open window(s) %s at shutdown", remaining,
                          "kept in the checkpoint" if self._config.checkpoint.path
                          else "not evaluated (partial)")

    def _stop_writer(self) -> None:
        """Stop the writer thread after it committed what is pending; batches arriving later
        are committed by their own consumer."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is None:
            return
        self._writer_stop.set()
        self._wake.set()
        writer.join(JOIN_TIMEOUT_S)
        with self._lock:
            if self._tickets and self._store is not None:
                self._write_group()

    def _tick(self) -> None:
        while not self._stop.wait(self._tick_interval_s):
            try:
                self._maybe_reload()
                self.evaluate_due()
            except Exception:  # a bug: windows already failed are logged and dropped
                _log.exception("ml_drift: the evaluation tick failed; the next tick runs as "
                               "usual")

    def _maybe_reload(self) -> None:
        if self._watcher is None or self._clock() < self._next_reload_ns:
            return
        self._next_reload_ns = self._clock() + self._reload_ns
        self.reload_profiles()

    def reload_profiles(self) -> bool:
        """Reload changed profile files now (the ticker does it every ``reload_interval``);
        True when the profiles changed."""
        if self._watcher is None:
            return False
        profiles = self._watcher.poll()
        if profiles is not None:
            self._profiles = profiles
        return profiles is not None

    def stats(self) -> MlDriftStats:
        with self._lock:
            counts = Counter(self._counts)
            counts.update(self._deltas.stats)
            counts.update(self._split.stats)
            counts["current_cumulative_streams"] = len(self._deltas)
            counts["current_open_windows"] = len(self._windows)
            if self._watcher is not None:
                counts["profile_reloads"] = self._watcher.reloads
                counts["profile_reload_failures"] = self._watcher.reload_failures
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
        rejected = self._window_and_commit(batch)
        try:
            self._next.consume_metrics(batch)
        except PartialRejection:
            raise
        except Exception as exc:
            self._forward_failed(exc)
        self._reject_points(rejected)

    def _forward_failed(self, exc: Exception) -> None:
        with self._lock:
            self._counts["forward_failures"] += 1
            now = time.monotonic()
            loud = now - self._forward_logged_s >= FORWARD_LOG_INTERVAL_S
            if loud:
                self._forward_logged_s = now
        _log.log(logging.ERROR if loud else logging.DEBUG,
                 "ml_drift: the next consumer refused a batch ml_drift had already windowed "
                 "(%s: %s); it is dropped there, not handed back for a retry that would "
                 "window it twice (counted in forward_failures)", type(exc).__name__, exc)

    def _window_and_commit(self, batch: Sequence[ResourceMetrics]) -> int:
        """Window ``batch``; with a checkpoint, wait for its group commit (see above).
        Returns how many of its points were invalid (not windowed)."""
        now_ns = self._clock()
        with self._inflight_lock:
            self._inflight += 1
        try:
            with self._lock:
                invalid_before = self._counts["invalid_points"]
                try:
                    self._window_batch(batch, now_ns)
                except Exception:
                    if self._store is not None:  # a half-applied batch must not be committed
                        self._dirty.clear()
                        self._rollback_to_store()
                        # The reload also undid the batches applied since the last commit.
                        self._resolve(self._tickets, "ml_drift: a batch applied with this one "
                                      "failed and the group was undone; retry later")
                        self._tickets = []
                    raise
                rejected = self._counts["invalid_points"] - invalid_before
                if self._store is None:
                    self._dirty.clear()
                    self._deltas.touched.clear()
                    self._deltas.forgotten.clear()
                    return rejected
                ticket = _Ticket()
                self._tickets.append(ticket)
                self._last_apply_s = time.monotonic()
                if self._writer is None:
                    self._write_group()
                else:
                    self._wake.set()
        finally:
            with self._inflight_lock:
                self._inflight -= 1
        with self._lock:
            while not ticket.done:
                self._resolved.wait()
        if ticket.error is not None:
            raise DataRefusedError(ticket.error)
        return rejected

    def _reject_points(self, rejected: int) -> None:
        """Tell the sender (OTLP ``partial_success``) how many points of its batch were
        invalid here, so it does not send them again; the rest was accepted."""
        if rejected:
            raise PartialRejection(rejected, f"ml_drift: {rejected} invalid point(s) not "
                                   f"windowed (first: {self._last_invalid})")

    def _invalid(self, reason: str, warn_key: Any) -> None:
        """Count a point this processor cannot use (under lock), warn once per kind."""
        self._counts["invalid_points"] += 1
        self._last_invalid = reason
        self._warn_once(warn_key, "ml_drift: invalid point skipped: %s", reason)

    def _window_batch(self, batch: Sequence[ResourceMetrics], now_ns: int) -> None:
        first_open = (now_ns - self._grace_ns) // self._window_ns
        if first_open != self._first_open:
            self._forget_window_memos(first_open)
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
                            resource_id = self._resource_text(resource)
                        stream_prefix = f"{resource_id}|{scope.name}|{scope.version}"
                        handler(resource, stream_prefix, metric, now_ns)
        finally:
            self._batch_windows.clear()

    def _resource_text(self, resource: Sequence[KeyValue]) -> str:
        """``resource_text(resource)``, kept for the last resource: the same one (equal
        bytes) usually sends request after request."""
        known_bytes, text = self._resource_texts
        if known_bytes != self._resource_bytes or not text:
            text = resource_text(resource)
            self._resource_texts = (self._resource_bytes, text)
        return text

    def _forget_window_memos(self, first_open: int) -> None:
        """Windows before ``first_open`` take no more points (late ones go to an open one)."""
        self._window_memos = {k: v for k, v in self._window_memos.items()
                              if k[1] >= first_open}

    # --- group commit ---------------------------------------------------------------------

    def _write_loop(self) -> None:
        """The writer thread: commits the applied batches as one group, then wakes them."""
        while True:
            self._wake.wait()
            self._wake.clear()
            stopping = self._writer_stop.is_set()
            if not stopping:
                self._stop.wait(max(0.0, self._last_commit_s + GROUP_MIN_INTERVAL_S
                                    - time.monotonic()))
                self._gather()
            with self._lock:
                if self._tickets and self._store is not None:
                    try:
                        self._write_group()
                    except Exception:  # never leave a consumer waiting
                        _log.exception("ml_drift: group commit failed unexpectedly")
                        self._resolve(self._tickets, "ml_drift: checkpoint commit failed; "
                                      "retry later")
                        self._tickets = []
                self._last_commit_s = time.monotonic()
            if stopping:
                return

    def _gather(self) -> None:
        """Let batches being applied right now join the group: wait while some are, until
        none arrived for GROUP_IDLE_S or the group is GROUP_MAX_WAIT_S old."""
        first = time.monotonic()
        while self._inflight > 0:
            now = time.monotonic()
            if now - self._last_apply_s >= GROUP_IDLE_S or now - first >= GROUP_MAX_WAIT_S:
                return
            time.sleep(GROUP_POLL_S)

    def _write_group(self) -> None:
        """Commit every batch applied since the last commit in one transaction and wake their
        consumers (under lock); on failure all of them are refused and undone."""
        tickets, self._tickets = self._tickets, []
        error: str | None = None
        try:
            self._commit_batch()
        except DataRefusedError as exc:
            error = str(exc)
        except Exception:  # a bug: still refuse and undo the group, never leave it waiting
            self._counts["checkpoint_failures"] += 1
            self._rollback_to_store()
            self._resolve(tickets, "ml_drift: checkpoint commit failed; retry later")
            raise
        self._resolve(tickets, error)

    def _resolve(self, tickets: list[_Ticket], error: str | None) -> None:
        for ticket in tickets:
            ticket.error = error
            ticket.done = True
        self._resolved.notify_all()

    def _commit_batch(self) -> None:
        """Write the touched windows and cumulative streams in one transaction (under lock)."""
        dirty, self._dirty = self._dirty, set()
        touched, self._deltas.touched = self._deltas.touched, set()
        forgotten, self._deltas.forgotten = self._deltas.forgotten, set()
        if self._store is None:
            return
        changes = Changes()
        for key, index in dirty:
            window = self._windows.get((key, index))
            if window is not None:
                changes.open_windows[(key.text(), index)] = window.checkpoint_delta()
        for stream in touched:
            changes.temporality[stream] = self._deltas.entry(stream)
        for stream in forgotten:
            changes.temporality[stream] = None
        started = time.perf_counter_ns()
        try:
            self._store.commit(changes)
        except WindowStoreError as exc:
            self._counts["checkpoint_failures"] += 1
            self._rollback_to_store()
            raise DataRefusedError(f"ml_drift: {exc}; the batch and those committed with it "
                                   "were not accepted, retry later") from exc
        self._counts["checkpoint_commits"] += 1
        self._counts["checkpoint_nanoseconds_total"] += time.perf_counter_ns() - started

    def _rollback_to_store(self) -> None:
        """Forget what the failed batch did in memory: reload the last committed state."""
        assert self._store is not None
        # Windows the evaluation has already taken out stay out: only those in memory now
        # are reloaded (as committed), so nothing is evaluated twice.
        in_memory = set(self._windows)
        self._windows.clear()
        self._deltas.clear()
        try:
            self._restore(self._store, ingest_only=in_memory)
        except WindowStoreError:
            _log.exception("ml_drift: cannot reload the checkpoint after a failed write")

    def _warn_once(self, key: Any, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _log.warning(message, *args)

    def _values(self, stream_prefix: str, metric: Metric, kinds: Sequence[str]
                ) -> Iterator[tuple[Any, _PointAttributes, Value | Part]]:
        """The points of ``metric`` with their attributes and delta values (cumulative ones
        converted); points of another kind or without a temporality are counted, skipped."""
        data_kind = metric.WhichOneof("data")
        if data_kind is None:
            return
        data = getattr(metric, data_kind)
        if data_kind not in kinds:
            self._counts["unsupported_points"] += len(data.data_points)
            self._warn_once((metric.name, data_kind),
                            "ml_drift: %s arrives as %s; expected %s, its points are skipped",
                            metric.name, data_kind, " or ".join(kinds))
            return
        temporality = data.aggregation_temporality
        if temporality not in (AGGREGATION_TEMPORALITY_DELTA, AGGREGATION_TEMPORALITY_CUMULATIVE):
            self._counts["unsupported_points"] += len(data.data_points)
            self._warn_once((metric.name, "temporality"),
                            "ml_drift: %s has no aggregation temporality; its points are "
                            "skipped", metric.name)
            return
        cumulative = temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
        read = point_reader(data_kind, cumulative)
        known = self._known_attributes
        keys_of = (stream_prefix, metric.name, data_kind)
        guessing = data_kind in _ATTRIBUTES_FIRST
        previous = self._last_keys.get(keys_of, []) if guessing else []
        guesses = len(previous)
        keys: list[AttributeKey | None] = []
        for at, point in enumerate(data.data_points):
            key = attribute_key(point, previous[at] if at < guesses else None)
            keys.append(key)
            attributes = known.get(key[0]) if key is not None else None
            if attributes is None:
                attributes = self._attributes(point, key)
            try:
                value: Value | Part | None = read(point)
            except ValueError as exc:
                self._invalid(f"{metric.name}: {exc}", ("bad", metric.name))
                continue
            if cumulative:
                stream = json.dumps([stream_prefix, metric.name, data_kind,
                                     sorted(attributes.values.items())])
                value = self._deltas.delta(stream, point.start_time_unix_nano,
                                           point.time_unix_nano, value)  # type: ignore[arg-type]
                if value is None:
                    if self._deltas.moved:
                        self._split.mark(StreamKey(*attributes.stream), attributes.stream[0],
                                         point.time_unix_nano, stream)
                    continue
            yield point, attributes, value
        if guessing:
            self._keep_keys(keys_of, previous, keys)

    def _keep_keys(self, keys_of: tuple[str, str, str], previous: list[AttributeKey | None],
                   keys: list[AttributeKey | None]) -> None:
        """Keep a metric's attribute keys, in order, as the guesses for its next request."""
        kept = self._kept_keys - len(previous) + len(keys)
        if kept > MAX_KEPT_ATTRIBUTE_KEYS:
            self._last_keys.clear()
            kept = len(keys)
        self._last_keys[keys_of] = keys
        self._kept_keys = kept

    def _attributes(self, point: Any, key: AttributeKey | None) -> _PointAttributes:
        """``point``'s attributes, not met yet by their wire bytes ``key``
        (``attribute_key``), read and kept under that key: equal bytes are equal attributes,
        and finding the bytes costs less than reading the attributes."""
        attributes = _PointAttributes.of(attributes_of(point))
        if key is not None:
            if len(self._known_attributes) >= MAX_KNOWN_ATTRIBUTE_SETS:
                self._known_attributes.clear()
            self._known_attributes[key[0]] = attributes
        return attributes

    def _stream_key(self, stream: tuple[str, str, str]) -> tuple[StreamKey, bool]:
        """The point's stream, and True when it is folded into the overflow stream."""
        key = StreamKey(*stream)
        if key not in self._streams and len(self._streams) >= self._limits.max_streams:
            self._warn_once("max_streams", "ml_drift: more than limits::max_streams=%d models "
                            "and operations; the rest are folded into model %s",
                            self._limits.max_streams, semconv.OVERFLOW_VALUE)
            return StreamKey(semconv.OVERFLOW_VALUE, "", ""), True
        return key, False

    def _window_for(self, resource: Sequence[KeyValue], point: Any,
                    attributes: _PointAttributes, now_ns: int) -> _WindowMemo | None:
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
            self._counts["late_points"] += 1
        # Points of one resource mostly share a model and a window: looked up once per batch.
        cache_key = (stream, index)
        cached = self._batch_windows.get(cache_key)
        if cached is None:
            cached = self._batch_windows[cache_key] = self._open_window(resource, stream, index)
        memo, overflow = cached
        if overflow:
            self._counts["stream_overflow_points"] += 1
        framework = attributes.framework
        if framework is not None:
            memo.window.framework = framework
        return memo

    def _open_window(self, resource: Sequence[KeyValue], stream: tuple[str, str, str],
                     index: int) -> tuple[_WindowMemo, bool]:
        """The window a point of ``index`` goes to (a late one: the stream's oldest open
        window), marked touched by this batch; True when the point's stream is folded into
        the overflow stream (``max_streams``), counted per point by the caller."""
        key, overflow = self._stream_key(stream)
        first_open = self._first_open
        if index < first_open:
            open_indexes = [i for (k, i) in self._windows if k == key and i >= first_open]
            index = min(open_indexes, default=first_open)
        window = self._windows.get((key, index))
        if window is None:
            window = self._windows[(key, index)] = Window(key, index)
        self._streams[key] = max(self._streams.get(key, index), index)
        self._dirty.add((key, index))
        memo = self._window_memos.get((key, index))
        if memo is None or memo.window is not window:
            memo = self._window_memos[(key, index)] = _WindowMemo(window, set())
        self._add_resource(memo, resource)
        return memo, overflow

    def _add_resource(self, memo: _WindowMemo, resource: Sequence[KeyValue]) -> None:
        """``window.add_resource(resource)``, skipped when it is known to change nothing
        (it copies and compares every attribute: about 6 us per window and batch)."""
        window = memo.window
        if (memo.resource is not None and memo.resource is window.resource
                and memo.resource_bytes == self._resource_bytes):
            return
        before = window.resource
        window.add_resource(resource)
        if before is not None and window.resource is before:  # unchanged: a fixed point
            memo.resource, memo.resource_bytes = before, self._resource_bytes

    def _column_in(self, memo: _WindowMemo, column: str) -> str:
        """``column``, or the overflow column when the window holds ``max_features`` others;
        a column the window is known to hold is not checked again."""
        if column in memo.columns:
            return column
        window = memo.window
        if not window.has_column(column) and len(window.columns()) >= self._limits.max_features:
            self._counts["feature_overflow_points"] += 1
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
                self._counts["explicit_bounds_mismatches"] += 1
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
                self._counts["category_overflow_points"] += 1
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

    # --- evaluation -----------------------------------------------------------------------

    def evaluate_due(self) -> list[ResourceMetrics]:
        """Evaluate every window whose end + grace has passed; returns what was emitted."""
        with self._evaluating:
            now_ns = self._clock()
            first_open = (now_ns - self._grace_ns) // self._window_ns
            with self._lock:
                if self._tickets and self._store is not None:
                    # Evaluate only committed data: a failed commit undoes its batches.
                    self._write_group()
                self._deltas.expire(now_ns)
                due = sorted((k for k in self._windows if k[1] < first_open),
                             key=lambda k: (k[1], k[0].model_name, k[0].model_version,
                                            k[0].operation))
                windows = [self._windows.pop(k) for k in due]
                self._dirty.difference_update(due)
            if not windows:
                return []
            started = time.perf_counter_ns()
            changes = Changes()
            output: list[ResourceMetrics] = []
            logs: list[ResourceLogs] = []
            evaluated = 0
            for window in windows:
                try:
                    metrics, alerts = self._evaluate(window, changes, now_ns)
                except Exception as exc:  # one window's failure must not cost the others
                    self._drop_failed(window, changes, exc)
                    continue
                evaluated += 1
                output.append(metrics)
                if alerts is not None:
                    logs.append(alerts)
            with self._lock:
                self._counts["evaluated_windows"] += evaluated
                self._counts["window_evaluation_nanoseconds_total"] += \
                    time.perf_counter_ns() - started
                self._prune_streams(first_open, changes)
            try:
                if output:
                    self._next.consume_metrics(output)
            except Exception:
                with self._lock:
                    self._counts["emit_failures"] += 1
                _log.exception("ml_drift: the next consumer refused the verdicts of %d "
                               "window(s); they are dropped (counted in emit_failures)",
                               len(output))
            finally:
                self._emit_alerts(logs)
                self._commit_evaluation(changes)
            return output

    def _drop_failed(self, window: Window, changes: Changes, exc: Exception) -> None:
        """Log, count and forget a window whose evaluation failed: it leaves the checkpoint
        and the history later windows merge, so it cannot fail them too."""
        key = window.key
        with self._lock:
            self._counts["failed_windows"] += 1
        history = self._history.get(key)
        if history is not None:
            self._history[key] = [w for w in history if w is not window]
        changes.windows[(key.text(), window.index)] = None
        _log.error("ml_drift: cannot evaluate the window of model=%s version=%s operation=%s "
                   "window_start=%s (%s: %s); the window is dropped, counted in "
                   "failed_windows", _safe(key.model_name), _safe(key.model_version),
                   _safe(key.operation), _iso(window.index * self._window_ns),
                   type(exc).__name__, exc, exc_info=exc)

    def _prune_streams(self, first_open: int, changes: Changes) -> None:
        """Forget streams with no open window and no history still needed (under lock):
        they free their ``max_streams`` slot, and their kept windows are deleted."""
        horizon = first_open - self._evaluation_windows
        for key in [k for k, last in self._streams.items() if last < horizon]:
            del self._streams[key]
            for old in self._history.pop(key, []):
                changes.windows[(key.text(), old.index)] = None

    def _commit_evaluation(self, changes: Changes) -> None:
        with self._lock:
            if self._store is None:
                return
            try:
                self._store.commit(changes)
                self._counts["checkpoint_commits"] += 1
            except WindowStoreError:
                self._counts["checkpoint_failures"] += 1
                _log.exception("ml_drift: cannot record evaluated windows in the checkpoint; "
                               "after a restart they may be evaluated again")

    def _emit_alerts(self, logs: list[ResourceLogs]) -> None:
        if not logs:
            return
        records = sum(len(s.log_records) for r in logs for s in r.scope_logs)
        for target in self._alert_targets:
            try:
                target.consume_logs(logs)
            except Exception:
                with self._lock:
                    self._counts["alert_failures"] += 1
                _log.exception("ml_drift: a logs pipeline refused %d drift alert(s)", records)
        with self._lock:
            self._counts["alerts_emitted"] += records

    def _profile_for(self, key: StreamKey) -> Profile | None:
        profile = self._profiles.get((key.model_name, key.model_version))
        if profile is None:
            profile = self._profiles.get((key.model_name, ""))
        return profile

    def _reference(self, key: StreamKey, window: Window, changes: Changes
                   ) -> tuple[Profile | None, str]:
        """The profile (or completed baseline) for ``key``, and why there is none."""
        profile = self._profile_for(key)
        if profile is not None:
            return profile, ""
        if self._baseline_windows <= 0:
            with self._lock:
                self._counts["unprofiled_windows"] += 1
            self._warn_once(("profile", key.model_name, key.model_version),
                            "ml_drift: no profile for model %r version %r in %s; its windows "
                            "get ml.window.rows only (add NAME.json with `driftline "
                            "profile`, or set baseline::windows)", key.model_name,
                            key.model_version, self._config.profiles or "the given profiles")
            return None, "no profile"
        baseline = self._baselines.get(key)
        if baseline is not None and baseline.windows >= self._baseline_windows:
            return as_profile(baseline.data, _PREDICTION_COLUMNS), ""
        if window.row_count() < self._min_rows:
            return None, f"baseline: window below min_rows={self._min_rows}, not used"
        if baseline is None:
            baseline = self._baselines[key] = _Baseline(0, Window(key, 0))
        baseline.data.absorb(window)
        baseline.windows += 1
        changes.baselines[key.text()] = (baseline.windows, baseline.data.to_dict())
        with self._lock:
            self._counts["baseline_windows"] += 1
        return None, f"baseline window {baseline.windows} of {self._baseline_windows}"

    def _history_merge(self, window: Window, changes: Changes) -> Window:
        """``window`` merged with the stream's closed windows of the last N (clock) windows;
        keeps the history the next window will need."""
        n = self._evaluation_windows
        if n <= 1:
            return window
        key = window.key
        kept = [w for w in self._history.get(key, []) if w.index > window.index - n]
        for old in self._history.get(key, []):
            if old.index <= window.index - n:
                changes.windows[(key.text(), old.index)] = None
        result = merged([*kept, window])
        history = [w for w in [*kept, window] if w.index > window.index + 1 - n]
        for old in kept:
            if old not in history:
                changes.windows[(key.text(), old.index)] = None
        self._history[key] = history
        return result

    def _thresholds_for(self, column: str, kind: str) -> drift.Thresholds:
        """The thresholds, without ``column``'s override when its method does not fit."""
        override = self._thresholds.overrides.get(column)
        allowed = drift.NUMERIC_METHODS if kind == KIND_NUMERIC else drift.CATEGORICAL_METHODS
        if override is None or override[0] in allowed:
            return self._thresholds
        with self._lock:
            self._counts["override_errors"] += 1
        self._warn_once(("override", column, kind),
                        "ml_drift: columns::%s::method %s does not apply to a %s column; its "
                        "default method is used (one of %s applies)", column, override[0],
                        kind, ", ".join(allowed))
        overrides = {c: o for c, o in self._thresholds.overrides.items() if c != column}
        return dataclasses.replace(self._thresholds, overrides=overrides)

    def _scores(self, window: Window, profile: Profile) -> list[drift.DriftScore]:
        scores: list[drift.DriftScore] = []
        for column in profile.columns.values():
            name = column.name
            if column.kind == KIND_NUMERIC:
                reference = column.histogram
                if reference is None or not reference.count:
                    continue
                current = window.numeric.get(name)
                if current is not None and current.count:
                    if self._thresholds.judges_as_categories(name, column.values):
                        assert column.values is not None
                        scores += drift.categorical_scores(
                            name, *drift.value_categories(column.values, current),
                            self._thresholds_for(name, drift.KIND_CATEGORICAL))
                    else:
                        scores += drift.numeric_scores(
                            name, reference, current, self._thresholds_for(name, KIND_NUMERIC),
                            reference_std=column.std)
                    continue
                explicit = window.explicit.get(name)
                if explicit is not None and explicit.count:
                    ref_counts, cur_counts = _explicit.as_categories(reference, explicit)
                    scores += drift.categorical_scores(
                        name, ref_counts, cur_counts,
                        self._thresholds_for(name, drift.KIND_CATEGORICAL))
            else:
                counts = window.categorical.get(name)
                reference_counts = column.category_counts()
                if not counts or sum(counts.values()) <= 0 or not sum(reference_counts.values()):
                    continue
                scores += drift.categorical_scores(
                    name, reference_counts, drift.fold_unknown(counts, reference_counts),
                    self._thresholds_for(name, drift.KIND_CATEGORICAL))
        return scores

    def _check_predictions(self, key: StreamKey, profile: Profile, window: Window) -> None:
        """Say once per model when its profile and its traffic share no prediction column,
        or no class: prediction drift is then never computed, or flagged in every window."""
        profiled = {c.name for c in profile.columns.values() if c.role == ROLE_PREDICTION}
        sent = {name for name in _PREDICTION_COLUMNS
                if window.categorical.get(name) or name in window.explicit
                or (name in window.numeric and window.numeric[name].count)}
        if not profiled or not sent:
            return
        if not profiled & sent:
            task = (TASK_CLASSIFICATION if semconv.PROFILE_COLUMN_PREDICTION_CLASS in sent
                    else TASK_REGRESSION)
            self._warn_once(
                ("prediction columns", key.model_name, key.model_version),
                "ml_drift: model %r version %r: its profile has prediction column(s) %s, its "
                "traffic sends %s, so prediction drift is not computed; profile it again "
                "with `driftline profile --task %s` (or capture(..., task=%r))",
                key.model_name, key.model_version, ", ".join(sorted(profiled)),
                ", ".join(sorted(sent)), task, task)
            return
        name = semconv.PROFILE_COLUMN_PREDICTION_CLASS
        if name not in profiled & sent:
            return
        reference = set(profile.columns[name].frequencies) - {semconv.OVERFLOW_VALUE}
        current = set(window.categorical[name]) - {semconv.OVERFLOW_VALUE}
        if reference and current and not reference & current:
            self._warn_once(
                ("classes", key.model_name, key.model_version),
                "ml_drift: model %r version %r: its profile and its traffic have no class in "
                "common (profile: %s; traffic: %s), so prediction drift is flagged in every "
                "window; profile the model's own predictions (their labels, as it returns "
                "them) again", key.model_name, key.model_version,
                ", ".join(sorted(reference)[:10]), ", ".join(sorted(current)[:10]))

    def _alerts(self, key: StreamKey, verdicts: Sequence[drift.DriftScore],
                share: float | None, changes: Changes) -> list[Alert]:
        """Alerts for the subjects whose verdict flips to drifted; records every verdict."""
        stream = key.text()
        alerts = []
        subjects: list[tuple[str, bool, Alert]] = [
            (s.column, s.drifted, Alert(semconv.DRIFT_SUBJECT_COLUMN, s.column, s.method,
                                        s.score, s.threshold, s.p_value)) for s in verdicts]
        if share is not None:
            threshold = self._thresholds.dataset_share
            subjects.append(("", share >= threshold,
                             Alert(semconv.DRIFT_SUBJECT_DATASET, "", "", share, threshold)))
        with self._lock:
            for subject, drifted, alert in subjects:
                if drifted and not self._verdicts.get((stream, subject), False):
                    alerts.append(alert)
                if self._verdicts.get((stream, subject)) != drifted:
                    self._verdicts[(stream, subject)] = drifted
                    changes.verdicts[(stream, subject)] = drifted
        return alerts

    def _evaluate(self, window: Window, changes: Changes, now_ns: int
                  ) -> tuple[ResourceMetrics, ResourceLogs | None]:
        start_ns = window.index * self._window_ns
        end_ns = start_ns + self._window_ns
        key = window.key
        stream = key.text()
        evaluated = self._history_merge(window, changes)
        if self._evaluation_windows > 1:
            changes.windows[(stream, window.index)] = (1, window.to_dict())
        else:
            changes.windows[(stream, window.index)] = None
        model = [(semconv.ML_MODEL_NAME, key.model_name),
                 (semconv.ML_MODEL_VERSION, key.model_version),
                 (semconv.ML_MODEL_FRAMEWORK, evaluated.framework),
                 (semconv.ML_OPERATION, key.operation)]
        gauges = WindowGauges(start_ns, end_ns, model)
        gauges.add(semconv.ML_WINDOW_ROWS, semconv.UNIT_ROWS, window.row_count())
        profile, verdict = self._reference(key, evaluated, changes)
        alerts: list[Alert] = []
        with self._lock:
            split = self._split.take(key, window.index)
        if profile is not None and split:
            verdict = "split across processors (docs/scale.md), no verdict"
        elif profile is not None and evaluated.row_count() < self._min_rows:
            verdict = f"below min_rows={self._min_rows}, no verdict"
        elif profile is not None:
            self._check_predictions(key, profile, evaluated)
            scores = self._scores(evaluated, profile)
            verdicts = _verdicts(scores)
            for score in scores:
                gauges.add(semconv.ML_DRIFT_SCORE, semconv.UNIT_DIMENSIONLESS, score.score,
                           _score_attributes(score))
            # One ml.drift.detected per column, for its verdict method: an alert counting
            # drifted columns must not count a column again for its context statistics.
            for score in verdicts:
                gauges.add(semconv.ML_DRIFT_DETECTED, semconv.UNIT_DIMENSIONLESS,
                           int(score.drifted), _score_attributes(score))
            features = {c.name for c in profile.features()}
            feature_scores = [s for s in scores if s.column in features]
            share = None
            if feature_scores:  # no share without a compared feature: 0 would read as "fine"
                share = drift.dataset_share(feature_scores)
                gauges.add(semconv.ML_DRIFT_DATASET_SHARE, semconv.UNIT_DIMENSIONLESS, share)
                gauges.add(semconv.ML_DRIFT_DATASET_DETECTED, semconv.UNIT_DIMENSIONLESS,
                           int(share >= self._thresholds.dataset_share))
            alerts = self._alerts(key, verdicts, share, changes)
            drifted = [s.column for s in verdicts if s.drifted]
            verdict = f"drifted columns: {', '.join(drifted) or 'none'}"
        _log.info("ml_drift: model=%s version=%s operation=%s window_start=%s rows=%d %s",
                  _safe(key.model_name), _safe(key.model_version or "-"),
                  _safe(key.operation or "-"), _iso(start_ns), window.row_count(),
                  _safe(verdict))
        metrics = gauges.resource_metrics(semconv.PROCESSOR_SCOPE)
        logs = alert_logs(alerts, model, evaluated.resource or [], start_ns, end_ns, now_ns) \
            if alerts else None
        return metrics, logs


def _score_attributes(score: drift.DriftScore) -> list[tuple[str, str]]:
    return [(semconv.ML_FEATURE_NAME, score.column), (semconv.ML_DRIFT_METHOD, score.method)]


def _verdicts(scores: Sequence[drift.DriftScore]) -> list[drift.DriftScore]:
    """The verdict statistic of each column: the first of its scores (see drift.py)."""
    first: dict[str, drift.DriftScore] = {}
    for score in scores:
        first.setdefault(score.column, score)
    return list(first.values())


def _safe(text: str) -> str:
    """``text`` (names from the wire) for a log line: as it is when printable, else quoted
    with newlines, NUL and terminal escapes spelled out, so it cannot forge a line or colour
    a terminal."""
    return text if text.isprintable() else repr(text)


def _iso(time_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(time_ns / NS_PER_S, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class Factory:
    """``processors: {ml_drift: {profiles: DIR, window: 60s, ...}}``."""

    TYPE = TYPE
    CONFIG = MlDriftConfig
    SIGNALS = (SIGNAL_METRICS,)

    def default_config(self) -> MlDriftConfig:
        return MlDriftConfig()

    def create(self, config: MlDriftConfig, next_consumer: Any = None) -> MlDriftProcessor:
        if next_consumer is None:
            raise ComponentError("ml_drift: needs a next consumer (an exporter or processor)")
        return MlDriftProcessor(config, next_consumer)
