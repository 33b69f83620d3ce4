"""The ``ml_drift`` processor's YAML node as dataclasses; each ``validate()`` names the key.

Nested sections (``evaluation``, ``baseline``, ``limits``, ``alerts``, ``checkpoint``) are
dataclasses the config loader overlays; ``columns`` is a plain mapping checked here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftline import drift
from driftline.durations import (
    non_negative_duration_problem,
    positive_duration_problem,
)
from driftline.processor.component.signals import SIGNAL_LOGS
from driftline.processor.component.windowed import WindowedConfig
from driftline.processor.ml_drift.estimation import EstimationConfig
from driftline.processor.ml_drift.profile_watch import DEFAULT_RELOAD_INTERVAL
from driftline.processor.ml_drift.temporality import (
    DEFAULT_MAX_STREAMS as DEFAULT_MAX_CUMULATIVE_STREAMS,
)
from driftline.processor.ml_drift.temporality import DEFAULT_STALENESS_S
from driftline.profile import ProfileError, load_directory

DEFAULT_PROFILES = ""  # required: there is no sensible default directory
DEFAULT_WINDOW = "60s"
DEFAULT_MIN_ROWS = 100
DEFAULT_GRACE = "5s"
DEFAULT_EVALUATION_WINDOWS = 1
DEFAULT_BASELINE_WINDOWS = 0  # off: a model without a profile gets ml.window.rows only
DEFAULT_MAX_STREAMS = 1000
DEFAULT_MAX_FEATURES = 1000
DEFAULT_MAX_CATEGORIES = 1000
DEFAULT_MAX_FUTURE_WINDOWS = 2
ALL_METHODS = tuple(dict.fromkeys((*drift.NUMERIC_METHODS, *drift.CATEGORICAL_METHODS)))


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
    Numeric columns whose reference profile has at most ``low_cardinality_values`` distinct
    values are judged as categories (0: never).
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
    low_cardinality_values: int = drift.DEFAULT_LOW_CARDINALITY_VALUES

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
        values = self.low_cardinality_values
        if (not isinstance(values, int) or isinstance(values, bool)
                or not 0 <= values <= drift.MAX_LOW_CARDINALITY_VALUES):
            found.append(f"low_cardinality_values: must be a whole number from 0 (off) to "
                         f"{drift.MAX_LOW_CARDINALITY_VALUES}, got {values!r}")
        return [p for p in found if p]

    def to_thresholds(self) -> drift.Thresholds:
        return drift.Thresholds(wasserstein=self.wasserstein, psi=self.psi,
                                jensenshannon=self.jensenshannon,
                                dataset_share=self.dataset_share, ks=self.ks,
                                chisquare=self.chisquare, kl=self.kl, hellinger=self.hellinger,
                                total_variation=self.total_variation,
                                small_reference_rows=self.small_reference_rows,
                                low_cardinality_values=self.low_cardinality_values)

def _count_problem(key: str, value: object, minimum: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return f"{key}: must be a whole number, {minimum} or more, got {value!r}"
    return None


@dataclass(frozen=True, slots=True)
class EvaluationConfig:
    """``evaluation``: verdicts over the merge of the last ``windows`` clock windows (the one
    just closed and those before it, empty ones included)."""

    windows: int = DEFAULT_EVALUATION_WINDOWS

    def validate(self) -> list[str]:
        return [p for p in (_count_problem("windows", self.windows, 1),) if p]


@dataclass(frozen=True, slots=True)
class BaselineConfig:
    """``baseline``: for a model without a profile, its first ``windows`` windows of at least
    ``min_rows`` rows become the reference (0: off)."""

    windows: int = DEFAULT_BASELINE_WINDOWS

    def validate(self) -> list[str]:
        return [p for p in (_count_problem("windows", self.windows, 0),) if p]


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """``limits``: cardinality caps; what is past a cap folds into ``__other__`` and is
    counted (``MlDriftStats.*_overflow_points``)."""

    max_streams: int = DEFAULT_MAX_STREAMS
    max_features: int = DEFAULT_MAX_FEATURES
    max_categories: int = DEFAULT_MAX_CATEGORIES
    max_cumulative_streams: int = DEFAULT_MAX_CUMULATIVE_STREAMS
    cumulative_staleness: str | float = f"{DEFAULT_STALENESS_S:g}s"
    # Windows a point may lie ahead of the clock's current one (senders' clock skew); a
    # point further ahead is invalid: it would open a window evaluated only in the future.
    max_future_windows: int = DEFAULT_MAX_FUTURE_WINDOWS

    def validate(self) -> list[str]:
        return [p for p in (
            _count_problem("max_future_windows", self.max_future_windows, 0),
            _count_problem("max_streams", self.max_streams, 1),
            _count_problem("max_features", self.max_features, 1),
            _count_problem("max_categories", self.max_categories, 1),
            _count_problem("max_cumulative_streams", self.max_cumulative_streams, 1),
            non_negative_duration_problem("cumulative_staleness", self.cumulative_staleness),
        ) if p]


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """``alerts``: the logs pipelines (IDs such as ``logs/alerts``) that get
    ``ml.drift.alert`` records; None: every logs pipeline, []: no alerts."""

    pipelines: list[str] | None = None

    def validate(self) -> list[str]:
        if self.pipelines is None:
            return []
        if not isinstance(self.pipelines, list | tuple) or not all(
                isinstance(p, str) and p.split("/")[0] == SIGNAL_LOGS for p in self.pipelines):
            return [f"pipelines: must be a list of logs pipeline IDs (logs, logs/NAME), "
                    f"got {self.pipelines!r}"]
        return []


@dataclass(frozen=True, slots=True)
class CheckpointConfig:
    """``checkpoint``: the SQLite file holding window state across restarts ("": none)."""

    path: str = ""

    def validate(self) -> list[str]:
        if not isinstance(self.path, str):
            return [f"path: must be a file path or empty, got {self.path!r}"]
        if self.path and Path(self.path).is_dir():
            return [f"path: '{self.path}' is a directory; name a file in it, e.g. "
                    f"{Path(self.path) / 'ml_drift.sqlite'}"]
        return []


def _column_problems(columns: object) -> list[str]:
    if not isinstance(columns, Mapping):
        return [f"columns: must be a mapping of column name to {{method, threshold}}, "
                f"got {columns!r}"]
    problems = []
    for name, override in columns.items():
        where = f"columns::{name}"
        if not isinstance(override, Mapping) or set(override) - {"method", "threshold"}:
            problems.append(f"{where}: must be a mapping with method and optional threshold, "
                            f"got {override!r}")
            continue
        method = override.get("method")
        if method not in ALL_METHODS:
            problems.append(f"{where}::method: unknown drift method {method!r}; use one of "
                            f"{', '.join(ALL_METHODS)}")
        threshold = override.get("threshold")
        if threshold is not None:
            problems.append(_threshold_problem(f"{where}::threshold", threshold))
    return [p for p in problems if p]


@dataclass(frozen=True, slots=True)
class MlDriftConfig(WindowedConfig):
    """The processor's YAML node. Durations are kept as written and parsed on use."""

    profiles: str = DEFAULT_PROFILES
    window: str | float = DEFAULT_WINDOW
    min_rows: int = DEFAULT_MIN_ROWS
    grace: str | float = DEFAULT_GRACE
    reload_interval: str | float = DEFAULT_RELOAD_INTERVAL
    thresholds: ThresholdsConfig = field(default_factory=ThresholdsConfig)
    # Per-column verdict method and threshold: {age: {method: psi, threshold: 0.2}}.
    columns: dict[str, Any] = field(default_factory=dict)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    # Performance estimated without labels (processor/ml_drift/estimation.py).
    estimation: EstimationConfig = field(default_factory=EstimationConfig)

    def fed_pipelines(self) -> dict[str, list[str] | None]:
        """Alerts go to logs pipelines (the pipeline graph orders shutdown by this)."""
        return {SIGNAL_LOGS: self.alerts.pipelines}

    def validate(self) -> list[str]:
        problems = [p for p in (_profiles_problem(self.profiles),
                                positive_duration_problem("window", self.window),
                                non_negative_duration_problem("grace", self.grace),
                                positive_duration_problem("reload_interval",
                                                          self.reload_interval)) if p]
        if isinstance(self.min_rows, bool) or not isinstance(self.min_rows, int) \
                or self.min_rows < 1:
            problems.append(f"min_rows: must be a positive integer, got {self.min_rows!r}")
        problems.extend(f"thresholds::{p}" for p in self.thresholds.validate())
        problems.extend(_column_problems(self.columns))
        for name in ("evaluation", "baseline", "limits", "alerts", "checkpoint", "estimation"):
            problems.extend(f"{name}::{p}" for p in getattr(self, name).validate())
        return problems

    def to_thresholds(self) -> drift.Thresholds:
        """The thresholds with the ``columns`` overrides (a method's own threshold when the
        override names none)."""
        base = self.thresholds.to_thresholds()
        overrides = {name: (o["method"], float(o.get("threshold") or base.threshold(o["method"])))
                     for name, o in self.columns.items()}
        return dataclasses.replace(base, overrides=overrides)


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
