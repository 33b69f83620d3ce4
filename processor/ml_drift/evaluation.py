"""Evaluation for ``ml_drift``: closed windows compared with their reference.

Once a window's end plus ``grace`` has passed, the merge of the last ``evaluation::windows``
windows of its stream is compared with the model's reference profile (or, without one, its
production ``baseline`` of the first ``baseline::windows`` windows); verdicts leave as gauges
(``ml.drift.*``, ``ml.window.rows``) and flips to drifted as ``ml.drift.alert`` log records
into the logs pipelines.

``Evaluation`` owns the profiles, the closed windows kept for the merge (history), the
baselines, the last verdict per subject (for alerts) and its counters. Its ``lock``
serializes evaluations (the ticker's and shutdown's); its counters have their own small lock
so ``stats()`` never waits for an evaluation.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics

from driftline import drift, semconv
from driftline.durations import parse_duration
from driftline.labels import TASK_CLASSIFICATION, TASK_REGRESSION
from driftline.processor.component import ComponentError
from driftline.processor.component.otlp_build import WindowGauges
from driftline.processor.component.performance_alerts import PerformanceAlert
from driftline.processor.component.performance_alerts import (
    alert_logs as performance_alert_logs,
)
from driftline.processor.ml_drift import estimation
from driftline.processor.ml_drift import explicit as _explicit
from driftline.processor.ml_drift.alerts import Alert, alert_logs
from driftline.processor.ml_drift.config import MlDriftConfig
from driftline.processor.ml_drift.profile_watch import ProfileWatcher
from driftline.processor.ml_drift.split import SplitDetector
from driftline.processor.ml_drift.window import StreamKey, Window, as_profile, merged
from driftline.processor.ml_drift.window_store import Changes
from driftline.profile import KIND_NUMERIC, ROLE_PREDICTION, Profile, ProfileError

_log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
_PREDICTION_COLUMNS = (semconv.PROFILE_COLUMN_PREDICTION_CLASS,
                       semconv.PROFILE_COLUMN_PREDICTION_CONFIDENCE,
                       semconv.ML_PREDICTION_VALUE)


@dataclass(slots=True)
class Baseline:
    """A stream's production baseline: how many windows it absorbed, and their merge."""

    windows: int
    data: Window


class Evaluation:
    """Verdicts, baselines and alerts of the closed windows (see above)."""

    def __init__(self, config: MlDriftConfig, clock: Callable[[], int],
                 profiles: Mapping[tuple[str, str], Profile] | None,
                 split: SplitDetector) -> None:
        """``profiles`` (keyed by model name and version) replaces loading
        ``config.profiles`` at start, for tests."""
        self.lock = threading.Lock()
        self._split = split
        self._config = config
        self._clock = clock
        self._window_ns = round(config.window_s * NS_PER_S)
        self._min_rows = config.min_rows
        self._evaluation_windows = config.evaluation.windows
        self._baseline_windows = config.baseline.windows
        self._thresholds = config.to_thresholds()
        self.profiles: Mapping[tuple[str, str], Profile] = profiles or {}
        self.watcher = None if profiles is not None else ProfileWatcher(config.profiles)
        self._reload_ns = round(parse_duration(config.reload_interval) * NS_PER_S)
        self._next_reload_ns = 0
        self._history: dict[StreamKey, list[Window]] = {}
        self._baselines: dict[StreamKey, Baseline] = {}
        self._verdicts: dict[tuple[str, str], bool] = {}
        self.alert_targets: list[Any] = []
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._warned: set[Any] = set()

    @property
    def windows(self) -> int:
        """Windows merged per evaluation (``evaluation::windows``)."""
        return self._evaluation_windows

    def counts(self) -> Counter[str]:
        with self._counts_lock:
            counts = Counter(self._counts)
        if self.watcher is not None:
            counts["profile_reloads"] = self.watcher.reloads
            counts["profile_reload_failures"] = self.watcher.reload_failures
        return counts

    def count(self, name: str, amount: int = 1) -> None:
        with self._counts_lock:
            self._counts[name] += amount

    # --- profiles ----------------------------------------------------------------------------

    def load_profiles(self) -> None:
        """Load the profiles at start (unless given): ``ComponentError`` if unreadable."""
        if self.watcher is None:
            return
        try:
            self.profiles = self.watcher.load_all()
        except (ProfileError, OSError) as exc:
            raise ComponentError(f"ml_drift: cannot load the profiles in "
                                 f"'{self._config.profiles}': {exc}") from exc
        if self.profiles:
            _log.info("ml_drift: %d reference profile(s) loaded from %s: %s",
                      len(self.profiles), self._config.profiles,
                      ", ".join(f"{n}:{v or '*'}" for n, v in sorted(self.profiles)))
        else:
            _log.warning("ml_drift: no reference profile in %s; every model gets "
                         "ml.window.rows only until profiles are added there",
                         self._config.profiles)
        self._next_reload_ns = self._clock() + self._reload_ns

    def maybe_reload(self) -> None:
        if self.watcher is None or self._clock() < self._next_reload_ns:
            return
        self._next_reload_ns = self._clock() + self._reload_ns
        self.reload_profiles()

    def reload_profiles(self) -> bool:
        """Reload changed profile files now; True when the profiles changed."""
        if self.watcher is None:
            return False
        profiles = self.watcher.poll()
        if profiles is not None:
            self.profiles = profiles
        return profiles is not None

    # --- restored from the checkpoint --------------------------------------------------------

    def restored_closed(self, key: StreamKey, window: Window) -> None:
        self._history.setdefault(key, []).append(window)

    def restored_state(self, baselines: Mapping[str, tuple[int, dict[str, Any]]],
                       verdicts: Mapping[tuple[str, str], bool]) -> None:
        """The baselines and verdicts of the checkpoint; the history put in time order."""
        for history in self._history.values():
            history.sort(key=lambda w: w.index)
        for stream, (count, state) in baselines.items():
            key = StreamKey.from_text(stream)
            self._baselines[key] = Baseline(count, Window.from_dict(key, 0, state))
        self._verdicts.update(verdicts)

    def clear(self) -> None:
        """Forget what a failed restore put here."""
        self._history.clear()
        self._baselines.clear()
        self._verdicts.clear()

    # --- evaluating (under ``lock``) ---------------------------------------------------------

    def evaluate(self, windows: Sequence[Window], changes: Changes, now_ns: int
                 ) -> tuple[list[ResourceMetrics], list[ResourceLogs]]:
        """The gauges (one resource per window) and alerts of ``windows``; what to record
        in the checkpoint goes into ``changes``. A window whose evaluation fails is logged,
        counted and dropped, never costing the others."""
        started = time.perf_counter_ns()
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
        with self._counts_lock:
            self._counts["evaluated_windows"] += evaluated
            self._counts["window_evaluation_nanoseconds_total"] += \
                time.perf_counter_ns() - started
        return output, logs

    def forget_streams(self, streams: Sequence[StreamKey], changes: Changes) -> None:
        """Drop the history of streams windowing forgot; their kept windows are deleted."""
        for key in streams:
            for old in self._history.pop(key, []):
                changes.windows[(key.text(), old.index)] = None

    def _warn_once(self, key: Any, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _log.warning(message, *args)

    def _drop_failed(self, window: Window, changes: Changes, exc: Exception) -> None:
        """Log, count and forget a window whose evaluation failed: it leaves the checkpoint
        and the history later windows merge, so it cannot fail them too."""
        key = window.key
        with self._counts_lock:
            self._counts["failed_windows"] += 1
        history = self._history.get(key)
        if history is not None:
            self._history[key] = [w for w in history if w is not window]
        changes.windows[(key.text(), window.index)] = None
        _log.error("ml_drift: cannot evaluate the window of model=%s version=%s operation=%s "
                   "window_start=%s (%s: %s); the window is dropped, counted in "
                   "failed_windows", safe(key.model_name), safe(key.model_version),
                   safe(key.operation), iso(window.index * self._window_ns),
                   type(exc).__name__, exc, exc_info=exc)

    def emit_alerts(self, logs: list[ResourceLogs]) -> None:
        if not logs:
            return
        records = sum(len(s.log_records) for r in logs for s in r.scope_logs)
        for target in self.alert_targets:
            try:
                target.consume_logs(logs)
            except Exception:
                with self._counts_lock:
                    self._counts["alert_failures"] += 1
                _log.exception("ml_drift: a logs pipeline refused %d drift alert(s)", records)
        with self._counts_lock:
            self._counts["alerts_emitted"] += records

    def _profile_for(self, key: StreamKey) -> Profile | None:
        profile = self.profiles.get((key.model_name, key.model_version))
        if profile is None:
            profile = self.profiles.get((key.model_name, ""))
        return profile

    def _reference(self, key: StreamKey, window: Window, changes: Changes
                   ) -> tuple[Profile | None, str]:
        """The profile (or completed baseline) for ``key``, and why there is none."""
        profile = self._profile_for(key)
        if profile is not None:
            return profile, ""
        if self._baseline_windows <= 0:
            with self._counts_lock:
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
            baseline = self._baselines[key] = Baseline(0, Window(key, 0))
        baseline.data.absorb(window)
        baseline.windows += 1
        changes.baselines[key.text()] = (baseline.windows, baseline.data.to_dict())
        with self._counts_lock:
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
        with self._counts_lock:
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
        estimated_alerts: list[PerformanceAlert] = []
        if profile is not None and self._split.take(key, window.index):
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
                gauges.add(semconv.ML_DRIFT_THRESHOLD_METRIC, semconv.UNIT_DIMENSIONLESS,
                           score.threshold, _score_attributes(score))
            features = {c.name for c in profile.features()}
            feature_scores = [s for s in scores if s.column in features]
            share = None
            if feature_scores:  # no share without a compared feature: 0 would read as "fine"
                share = drift.dataset_share(feature_scores)
                gauges.add(semconv.ML_DRIFT_DATASET_SHARE, semconv.UNIT_DIMENSIONLESS, share)
                gauges.add(semconv.ML_DRIFT_DATASET_DETECTED, semconv.UNIT_DIMENSIONLESS,
                           int(share >= self._thresholds.dataset_share))
            alerts = self._alerts(key, verdicts, share, changes)
            estimated_alerts = estimation.add_estimates(
                self._config.estimation, profile.calibration, evaluated.numeric, gauges,
                evaluated.row_count())
            drifted = [s.column for s in verdicts if s.drifted]
            verdict = f"drifted columns: {', '.join(drifted) or 'none'}"
        _log.info("ml_drift: model=%s version=%s operation=%s window_start=%s rows=%d %s",
                  safe(key.model_name), safe(key.model_version or "-"),
                  safe(key.operation or "-"), iso(start_ns), window.row_count(),
                  safe(verdict))
        metrics = gauges.resource_metrics(semconv.PROCESSOR_SCOPE)
        logs = alert_logs(alerts, model, evaluated.resource or [], start_ns, end_ns, now_ns) \
            if alerts else None
        if estimated_alerts:
            performance = performance_alert_logs(estimated_alerts, model,
                                                 evaluated.resource or [], start_ns, end_ns,
                                                 now_ns)
            if logs is None:
                logs = performance
            else:
                logs.scope_logs.extend(performance.scope_logs)
        return metrics, logs


def _score_attributes(score: drift.DriftScore) -> list[tuple[str, str]]:
    return [(semconv.ML_FEATURE_NAME, score.column), (semconv.ML_DRIFT_METHOD, score.method)]


def _verdicts(scores: Sequence[drift.DriftScore]) -> list[drift.DriftScore]:
    """The verdict statistic of each column: the first of its scores (see drift.py)."""
    first: dict[str, drift.DriftScore] = {}
    for score in scores:
        first.setdefault(score.column, score)
    return list(first.values())


def safe(text: str) -> str:
    """``text`` (names from the wire) for a log line: as it is when printable, else quoted
    with newlines, NUL and terminal escapes spelled out, so it cannot forge a line or colour
    a terminal."""
    return text if text.isprintable() else repr(text)


def iso(time_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(time_ns / NS_PER_S, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")

