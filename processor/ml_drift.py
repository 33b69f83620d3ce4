"""The ``ml_drift`` processor: production distributions per window, compared with profiles.

Metrics from the app side (``ml.feature.value``, ``ml.prediction.*``, ``ml.predict.rows``)
are merged per stream (model name, model version, operation) into tumbling windows aligned
to the clock. Once a window's end plus ``grace`` has passed, each of its columns is compared
with the model's reference profile and the verdicts leave as gauges (``ml.drift.*``,
``ml.window.rows``). Incoming metrics pass through unchanged.
"""

from __future__ import annotations

import datetime
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_DELTA,
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

import driftline
from driftline import drift, exphist, semconv
from driftline.durations import (
    non_negative_duration_problem,
    parse_duration,
    positive_duration_problem,
)
from driftline.exphist import Buckets, ExpHistogram
from driftline.processor.component import ComponentError
from driftline.processor.registry import SIGNAL_METRICS
from driftline.profile import (
    KIND_NUMERIC,
    Profile,
    ProfileError,
    load_directory,
)

_log = logging.getLogger(__name__)

TYPE = "ml_drift"
DEFAULT_PROFILES = ""  # required: there is no sensible default directory
DEFAULT_WINDOW = "60s"
DEFAULT_MIN_ROWS = 100
DEFAULT_GRACE = "5s"
# How often the background thread looks for windows to evaluate; well below any window.
TICK_INTERVAL_S = 0.2
JOIN_TIMEOUT_S = 10.0
NS_PER_S = 1_000_000_000

_KEY_ATTRIBUTES = (semconv.ML_MODEL_NAME, semconv.ML_MODEL_VERSION, semconv.ML_OPERATION)


# --- config -------------------------------------------------------------------------------


def _threshold_problem(key: str, value: object, upper: float | None = None) -> str | None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0 or (upper and value > upper):
        bound = f" and at most {upper:g}" if upper else ""
        return f"{key}: must be a number above 0{bound}, got {value!r}"
    return None


@dataclass(frozen=True, slots=True)
class ThresholdsConfig:
    """``thresholds``: score at or above which a column (or the dataset share) drifts.

    ``ks`` and ``chisquare`` are significance levels instead: the column drifts when the test's
    p-value is below them. They are the verdict on references of at most
    ``small_reference_rows`` rows, normed Wasserstein and Jensen-Shannon on larger ones.
    """

    wasserstein: float = drift.DEFAULT_WASSERSTEIN_THRESHOLD
    psi: float = drift.DEFAULT_PSI_THRESHOLD
    jensenshannon: float = drift.DEFAULT_JENSENSHANNON_THRESHOLD
    dataset_share: float = drift.DEFAULT_DATASET_DRIFT_SHARE
    ks: float = drift.DEFAULT_KS_P_VALUE
    chisquare: float = drift.DEFAULT_CHISQUARE_P_VALUE
    kl: float = drift.DEFAULT_KL_THRESHOLD
    hellinger: float = drift.DEFAULT_HELLINGER_THRESHOLD
    total_variation: float = drift.DEFAULT_TOTAL_VARIATION_THRESHOLD
    small_reference_rows: int = drift.DEFAULT_SMALL_REFERENCE_ROWS

    def validate(self) -> list[str]:
        found = [
            _threshold_problem("wasserstein", self.wasserstein),
            _threshold_problem("psi", self.psi),
            _threshold_problem("jensenshannon", self.jensenshannon),
            _threshold_problem("dataset_share", self.dataset_share, upper=1.0),
            _threshold_problem("ks", self.ks, upper=1.0),
            _threshold_problem("chisquare", self.chisquare, upper=1.0),
            _threshold_problem("kl", self.kl),
            _threshold_problem("hellinger", self.hellinger, upper=1.0),
            _threshold_problem("total_variation", self.total_variation, upper=1.0),
        ]
        rows = self.small_reference_rows
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            found.append(f"small_reference_rows: must be a whole number of rows, 0 or more "
                         f"(0: always a distance), got {rows!r}")
        return [p for p in found if p]

    def to_thresholds(self) -> drift.Thresholds:
        return drift.Thresholds(wasserstein=self.wasserstein, psi=self.psi,
                                jensenshannon=self.jensenshannon,
                                dataset_share=self.dataset_share, ks=self.ks,
                                chisquare=self.chisquare, kl=self.kl, hellinger=self.hellinger,
                                total_variation=self.total_variation,
                                small_reference_rows=self.small_reference_rows)


@dataclass(frozen=True, slots=True)
class MlDriftConfig:
    """The processor's YAML node. Durations are kept as written and parsed on use."""

    profiles: str = DEFAULT_PROFILES
    window: str | float = DEFAULT_WINDOW
    min_rows: int = DEFAULT_MIN_ROWS
    grace: str | float = DEFAULT_GRACE
    thresholds: ThresholdsConfig = field(default_factory=ThresholdsConfig)

    @property
    def window_s(self) -> float:
        return parse_duration(self.window)

    @property
    def grace_s(self) -> float:
        return parse_duration(self.grace)

    def validate(self) -> list[str]:
        problems = [p for p in (_profiles_problem(self.profiles),
                                positive_duration_problem("window", self.window),
                                non_negative_duration_problem("grace", self.grace)) if p]
        if isinstance(self.min_rows, bool) or not isinstance(self.min_rows, int) \
                or self.min_rows < 1:
            problems.append(f"min_rows: must be a positive integer, got {self.min_rows!r}")
        problems.extend(f"thresholds::{p}" for p in self.thresholds.validate())
        return problems


def _profiles_problem(profiles: object) -> str | None:
    if not isinstance(profiles, str) or not profiles.strip():
        return ("profiles: required: the directory holding the models' reference profiles "
                "(JSON files written by `driftline profile ... -o DIR/NAME.json`)")
    directory = Path(profiles)
    if not directory.exists():
        return (f"profiles: directory '{profiles}' does not exist (resolved to "
                f"'{directory.absolute()}'); create it and put the reference profiles there, "
                "or fix the path")
    if not directory.is_dir():
        return f"profiles: '{profiles}' is not a directory; name the directory of profiles"
    try:
        load_directory(directory)
    except ProfileError as exc:
        return f"profiles: {exc}"
    return None


# --- state --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamKey:
    """What a drift verdict is about: one operation of one version of one model."""

    model_name: str
    model_version: str
    operation: str


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


class _Window:
    """One stream's data in one window; only touched under the processor's lock."""

    __slots__ = ("categorical", "framework", "index", "key", "numeric", "resource", "rows")

    def __init__(self, key: StreamKey, index: int) -> None:
        self.key = key
        self.index = index
        self.numeric: dict[str, ExpHistogram] = {}
        self.categorical: dict[str, Counter[str]] = {}
        self.rows = 0
        self.framework = ""
        self.resource: list[KeyValue] | None = None

    def add_resource(self, attributes: Iterable[KeyValue]) -> None:
        """Keep the resource attributes every sender of this stream shares.

        Replicas of one service differ only in instance attributes; the drift verdict is
        about all of them, so it carries what they have in common.
        """
        incoming = list(attributes)
        if self.resource is None:
            self.resource = [KeyValue(key=kv.key, value=kv.value) for kv in incoming]
            return
        by_key = {kv.key: kv.value for kv in incoming}
        self.resource = [kv for kv in self.resource if by_key.get(kv.key) == kv.value]


def _attribute_text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind in ("int_value", "double_value", "bool_value"):
        return str(getattr(value, kind))
    return ""


def _attributes(point: Any) -> dict[str, str]:
    return {kv.key: _attribute_text(kv.value) for kv in point.attributes}


def histogram_from_point(point: Any) -> ExpHistogram:
    """An OTLP ``ExponentialHistogramDataPoint`` as an ``ExpHistogram``.

    Absent ``min``/``max`` become infinities (ignored when clipping) and an absent ``sum``
    becomes NaN: drift statistics never use the current window's sum.
    """
    if not exphist.MIN_SCALE <= point.scale <= exphist.MAX_SCALE:
        raise ValueError(f"scale {point.scale} outside {exphist.MIN_SCALE}..{exphist.MAX_SCALE}")
    return ExpHistogram(
        scale=point.scale,
        zero_count=point.zero_count,
        positive=Buckets(point.positive.offset,
                         np.asarray(point.positive.bucket_counts, dtype=np.int64)),
        negative=Buckets(point.negative.offset,
                         np.asarray(point.negative.bucket_counts, dtype=np.int64)),
        count=point.count,
        sum=point.sum if point.HasField("sum") else math.nan,
        min=point.min if point.HasField("min") else math.inf,
        max=point.max if point.HasField("max") else -math.inf,
    )


def _number(point: NumberDataPoint) -> float:
    return point.as_int if point.WhichOneof("value") == "as_int" else point.as_double


# --- the processor ------------------------------------------------------------------------


class MlDriftProcessor:
    """Windows production metrics per stream and emits drift verdicts per closed window.

    Data points must have DELTA temporality (the app-side recorder sends delta). CUMULATIVE
    points are counted as ``unsupported_points`` and logged, not converted: per-stream
    cumulative-to-delta conversion is planned for a later version. So are numeric columns
    sent as explicit-bucket histograms instead of exponential ones.

    A point belongs to window ``time_unix_nano // window``; the window is evaluated once the
    clock passes its end plus ``grace``. A point for a window already past that goes into the
    stream's oldest open window and is counted in ``late_points``.
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
        self._thresholds = config.thresholds.to_thresholds()
        self._profiles: Mapping[tuple[str, str], Profile] = profiles or {}
        self._load_profiles = profiles is None
        self._tick_interval_s = tick_interval_s
        self._lock = threading.Lock()
        self._evaluating = threading.Lock()
        self._windows: dict[tuple[StreamKey, int], _Window] = {}
        self._counts: Counter[str] = Counter()
        self._warned: set[Any] = set()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._shut_down = False
        self._handlers: dict[str, Callable[[Sequence[KeyValue], Metric, int], None]] = {
            semconv.ML_FEATURE_VALUE: self._feature_values,
            semconv.ML_PREDICTION_CONFIDENCE: self._confidences,
            semconv.ML_PREDICTION_VALUE: self._prediction_values,
            semconv.ML_PREDICTION_CLASS_METRIC: self._prediction_classes,
            semconv.ML_FEATURE_CATEGORY_METRIC: self._feature_categories,
            semconv.ML_PREDICT_ROWS: self._rows,
        }

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Load the profiles (unless given) and start the evaluation ticker."""
        if self._load_profiles:
            try:
                self._profiles = load_directory(self._config.profiles)
            except (ProfileError, OSError) as exc:
                raise ComponentError(f"ml_drift: cannot load the profiles in "
                                     f"'{self._config.profiles}': {exc}") from exc
            if self._profiles:
                _log.info("ml_drift: %d reference profile(s) loaded from %s: %s",
                          len(self._profiles), self._config.profiles,
                          ", ".join(f"{n}:{v or '*'}" for n, v in sorted(self._profiles)))
            else:
                _log.warning("ml_drift: no reference profile in %s; every model gets "
                             "ml.window.rows only until profiles are added and the processor "
                             "restarted", self._config.profiles)
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="ml-drift-ticker", daemon=True)
        self._ticker.start()

    def shutdown(self) -> None:
        """Stop the ticker, evaluate windows whose end + grace has passed, drop the rest.

        The still-open (partial) windows are not evaluated: a verdict on part of a window
        would be compared against thresholds meant for a full one. They are counted in
        ``discarded_windows`` and logged.
        """
        if self._shut_down:
            return
        self._shut_down = True
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(JOIN_TIMEOUT_S)
            self._ticker = None
        self.evaluate_due()
        with self._lock:
            discarded = len(self._windows)
            self._windows.clear()
            self._counts["discarded_windows"] += discarded
        if discarded:
            _log.info("ml_drift: %d open window(s) not evaluated at shutdown (partial)",
                      discarded)

    def _tick(self) -> None:
        while not self._stop.wait(self._tick_interval_s):
            try:
                self.evaluate_due()
            except Exception:
                _log.exception("ml_drift: evaluating windows failed; will retry next tick")

    def stats(self) -> MlDriftStats:
        with self._lock:
            return MlDriftStats(**{name: self._counts[name]
                                   for name in MlDriftStats.__dataclass_fields__})

    # --- ingestion ------------------------------------------------------------------------

    def consume_metrics(self, batch: Sequence[ResourceMetrics]) -> None:
        """Window the ``ml.*`` points of ``batch``, then pass ``batch`` on unchanged."""
        now_ns = self._clock()
        with self._lock:
            for resource_metrics in batch:
                resource = resource_metrics.resource.attributes
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        handler = self._handlers.get(metric.name)
                        if handler is not None:
                            handler(resource, metric, now_ns)
        self._next.consume_metrics(batch)

    def _warn_once(self, key: Any, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _log.warning(message, *args)

    def _points(self, metric: Metric, kind: str) -> Sequence[Any]:
        """The points of ``metric`` if it is of ``kind`` with delta temporality, else none."""
        data_kind = metric.WhichOneof("data")
        if data_kind is None:
            return ()
        if data_kind != kind:
            self._counts["unsupported_points"] += len(getattr(metric, data_kind).data_points)
            self._warn_once((metric.name, data_kind),
                            "ml_drift: %s arrives as %s; expected %s, its points are skipped",
                            metric.name, data_kind, kind)
            return ()
        data = getattr(metric, kind)
        if data.aggregation_temporality != AGGREGATION_TEMPORALITY_DELTA:
            self._counts["unsupported_points"] += len(data.data_points)
            self._warn_once((metric.name, "temporality"),
                            "ml_drift: %s has non-delta temporality; only DELTA is supported in "
                            "this version, its points are skipped (configure the exporter for "
                            "delta, e.g. OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="
                            "delta)", metric.name)
            return ()
        return data.data_points

    def _window_for(self, resource: Sequence[KeyValue], point: Any,
                    attributes: Mapping[str, str], now_ns: int) -> _Window | None:
        if not attributes.get(semconv.ML_MODEL_NAME) or point.time_unix_nano <= 0:
            self._counts["invalid_points"] += 1
            self._warn_once("invalid", "ml_drift: skipping points without %s or a time",
                            semconv.ML_MODEL_NAME)
            return None
        key = StreamKey(*(attributes.get(a, "") for a in _KEY_ATTRIBUTES))
        index = point.time_unix_nano // self._window_ns
        first_open = (now_ns - self._grace_ns) // self._window_ns
        if index < first_open:
            self._counts["late_points"] += 1
            open_indexes = [i for (k, i) in self._windows if k == key and i >= first_open]
            index = min(open_indexes, default=first_open)
        window = self._windows.get((key, index))
        if window is None:
            window = self._windows[(key, index)] = _Window(key, index)
        window.add_resource(resource)
        window.framework = attributes.get(semconv.ML_MODEL_FRAMEWORK, window.framework)
        return window

    def _add_histograms(self, resource: Sequence[KeyValue], metric: Metric, now_ns: int,
                        column_of: Callable[[Mapping[str, str]], str | None]) -> None:
        for point in self._points(metric, "exponential_histogram"):
            attributes = _attributes(point)
            column = column_of(attributes)
            if not column:
                continue
            try:
                histogram = histogram_from_point(point)
            except ValueError as exc:
                self._counts["invalid_points"] += 1
                self._warn_once(("histogram", metric.name), "ml_drift: bad %s point: %s",
                                metric.name, exc)
                continue
            window = self._window_for(resource, point, attributes, now_ns)
            if window is not None:
                current = window.numeric.get(column)
                window.numeric[column] = (histogram if current is None
                                          else exphist.merge([current, histogram]))

    def _add_counts(self, resource: Sequence[KeyValue], metric: Metric, now_ns: int,
                    column_of: Callable[[Mapping[str, str]], str | None],
                    category_attribute: str) -> None:
        for point in self._points(metric, "sum"):
            attributes = _attributes(point)
            column = column_of(attributes)
            if not column:
                continue
            window = self._window_for(resource, point, attributes, now_ns)
            if window is not None:
                category = attributes.get(category_attribute, "")
                window.categorical.setdefault(column, Counter())[category] += _number(point)

    def _feature_values(self, resource: Sequence[KeyValue], metric: Metric, now: int) -> None:
        self._add_histograms(resource, metric, now, lambda a: a.get(semconv.ML_FEATURE_NAME))

    def _confidences(self, resource: Sequence[KeyValue], metric: Metric, now: int) -> None:
        self._add_histograms(resource, metric, now,
                             lambda a: semconv.PROFILE_COLUMN_PREDICTION_CONFIDENCE)

    def _prediction_values(self, resource: Sequence[KeyValue], metric: Metric, now: int) -> None:
        # Per-class scores carry ml.prediction.class; only regression outputs (without it)
        # match the profile's single ml.prediction.value column.
        self._add_histograms(
            resource, metric, now,
            lambda a: None if a.get(semconv.ML_PREDICTION_CLASS) else semconv.ML_PREDICTION_VALUE)

    def _prediction_classes(self, resource: Sequence[KeyValue], metric: Metric, now: int) -> None:
        self._add_counts(resource, metric, now,
                         lambda a: semconv.PROFILE_COLUMN_PREDICTION_CLASS,
                         semconv.ML_PREDICTION_CLASS)

    def _feature_categories(self, resource: Sequence[KeyValue], metric: Metric, now: int) -> None:
        self._add_counts(resource, metric, now, lambda a: a.get(semconv.ML_FEATURE_NAME),
                         semconv.ML_FEATURE_CATEGORY)

    def _rows(self, resource: Sequence[KeyValue], metric: Metric, now_ns: int) -> None:
        for point in self._points(metric, "sum"):
            window = self._window_for(resource, point, _attributes(point), now_ns)
            if window is not None:
                window.rows += int(_number(point))

    # --- evaluation -----------------------------------------------------------------------

    def evaluate_due(self) -> list[ResourceMetrics]:
        """Evaluate every window whose end + grace has passed; returns what was emitted."""
        with self._evaluating:
            first_open = (self._clock() - self._grace_ns) // self._window_ns
            with self._lock:
                due = sorted((k for k in self._windows if k[1] < first_open),
                             key=lambda k: (k[1], k[0].model_name, k[0].model_version,
                                            k[0].operation))
                windows = [self._windows.pop(k) for k in due]
            if not windows:
                return []
            output = [self._evaluate(w) for w in windows]
            with self._lock:
                self._counts["evaluated_windows"] += len(windows)
            try:
                self._next.consume_metrics(output)
            except Exception:
                with self._lock:
                    self._counts["emit_failures"] += 1
                raise
            return output

    def _profile_for(self, key: StreamKey) -> Profile | None:
        profile = self._profiles.get((key.model_name, key.model_version))
        if profile is None:
            profile = self._profiles.get((key.model_name, ""))
        if profile is None:
            with self._lock:
                self._counts["unprofiled_windows"] += 1
                self._warn_once(("profile", key.model_name, key.model_version),
                                "ml_drift: no profile for model %r version %r in %s; its windows "
                                "get ml.window.rows only (add NAME.json with `driftline "
                                "profile`)", key.model_name, key.model_version,
                                self._config.profiles or "the given profiles")
        return profile

    def _scores(self, window: _Window, profile: Profile) -> list[drift.DriftScore]:
        scores: list[drift.DriftScore] = []
        for column in profile.columns.values():
            if column.kind == KIND_NUMERIC:
                current = window.numeric.get(column.name)
                reference = column.histogram
                if current is None or not current.count or reference is None \
                        or not reference.count:
                    continue
                scores += drift.numeric_scores(column.name, reference, current,
                                               self._thresholds)
            else:
                counts = window.categorical.get(column.name)
                reference_counts = column.category_counts()
                if not counts or sum(counts.values()) <= 0 or not sum(reference_counts.values()):
                    continue
                scores += drift.categorical_scores(column.name, reference_counts,
                                                   drift.fold_unknown(counts, reference_counts),
                                                   self._thresholds)
        return scores

    def _evaluate(self, window: _Window) -> ResourceMetrics:
        start_ns = window.index * self._window_ns
        end_ns = start_ns + self._window_ns
        key = window.key
        model = [(semconv.ML_MODEL_NAME, key.model_name),
                 (semconv.ML_MODEL_VERSION, key.model_version),
                 (semconv.ML_MODEL_FRAMEWORK, window.framework),
                 (semconv.ML_OPERATION, key.operation)]
        gauges = _Gauges(start_ns, end_ns, model)
        gauges.add(semconv.ML_WINDOW_ROWS, semconv.UNIT_ROWS, window.rows)
        profile = self._profile_for(key)
        verdict = "no profile"
        if profile is not None and window.rows < self._min_rows:
            verdict = f"below min_rows={self._min_rows}, no verdict"
        elif profile is not None:
            scores = self._scores(window, profile)
            for score in scores:
                extra = [(semconv.ML_FEATURE_NAME, score.column),
                         (semconv.ML_DRIFT_METHOD, score.method)]
                gauges.add(semconv.ML_DRIFT_SCORE, semconv.UNIT_DIMENSIONLESS, score.score,
                           extra)
                gauges.add(semconv.ML_DRIFT_DETECTED, semconv.UNIT_DIMENSIONLESS,
                           int(score.drifted), extra)
            features = {c.name for c in profile.features()}
            feature_scores = [s for s in scores if s.column in features]
            if feature_scores:  # no share without a compared feature: 0 would read as "fine"
                share = drift.dataset_share(feature_scores)
                gauges.add(semconv.ML_DRIFT_DATASET_SHARE, semconv.UNIT_DIMENSIONLESS, share)
                gauges.add(semconv.ML_DRIFT_DATASET_DETECTED, semconv.UNIT_DIMENSIONLESS,
                           int(share >= self._thresholds.dataset_share))
            verdicts = _verdicts(scores)
            drifted = [s.column for s in verdicts if s.drifted]
            verdict = f"drifted columns: {', '.join(drifted) or 'none'}"
        _log.info("ml_drift: model=%s version=%s operation=%s window_start=%s rows=%d %s",
                  key.model_name, key.model_version or "-", key.operation or "-",
                  _iso(start_ns), window.rows, verdict)
        return ResourceMetrics(
            resource=Resource(attributes=window.resource or []),
            scope_metrics=[ScopeMetrics(
                scope=InstrumentationScope(name=semconv.PROCESSOR_SCOPE,
                                           version=driftline.__version__),
                metrics=gauges.metrics())],
        )


def _verdicts(scores: Sequence[drift.DriftScore]) -> list[drift.DriftScore]:
    """The verdict statistic of each column: the first of its scores (see drift.py)."""
    first: dict[str, drift.DriftScore] = {}
    for score in scores:
        first.setdefault(score.column, score)
    return list(first.values())


def _iso(time_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(time_ns / NS_PER_S, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _key_value(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


class _Gauges:
    """Gauge metrics of one window, one Metric per name, points in insertion order."""

    def __init__(self, start_ns: int, end_ns: int, attributes: list[tuple[str, str]]) -> None:
        self._start_ns, self._end_ns = start_ns, end_ns
        self._attributes = attributes
        self._metrics: dict[str, Metric] = {}

    def add(self, name: str, unit: str, value: float,
            extra: Sequence[tuple[str, str]] = ()) -> None:
        metric = self._metrics.get(name)
        if metric is None:
            metric = self._metrics[name] = Metric(name=name, unit=unit, gauge=Gauge())
        point = metric.gauge.data_points.add(
            start_time_unix_nano=self._start_ns, time_unix_nano=self._end_ns,
            attributes=[_key_value(k, v) for k, v in (*self._attributes, *extra)])
        if isinstance(value, int):
            point.as_int = value
        else:
            point.as_double = float(value)

    def metrics(self) -> list[Metric]:
        return list(self._metrics.values())


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
