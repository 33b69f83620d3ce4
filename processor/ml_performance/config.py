"""The ``ml_performance`` processor's YAML node as dataclasses; ``validate()`` names the key."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from driftline import semconv
from driftline.durations import (
    non_negative_duration_problem,
    parse_duration,
    positive_duration_problem,
)
from driftline.processor.component.signals import SIGNAL_LOGS, SIGNAL_METRICS
from driftline.processor.component.windowed import WindowedConfig

DEFAULT_STORE_PATH = ""  # "": in memory, lost at restart (a warning says so at start)
DEFAULT_TTL = "168h"  # 7 days: labels may come days after their prediction
DEFAULT_WINDOW = "60s"
DEFAULT_GRACE = "5s"
DEFAULT_MIN_LABELS = 10
DEFAULT_MAX_MODELS = 1000
DEFAULT_MAX_CLASSES = 100

# Metrics that alert when a window's value is below their threshold, and those above.
LOWER_IS_WORSE = ("accuracy", "precision", "recall", "f1", "roc_auc", "r2")
HIGHER_IS_WORSE = ("mae", "rmse")
METRIC_NAMES = {
    "accuracy": semconv.ML_PERFORMANCE_ACCURACY, "precision": semconv.ML_PERFORMANCE_PRECISION,
    "recall": semconv.ML_PERFORMANCE_RECALL, "f1": semconv.ML_PERFORMANCE_F1,
    "roc_auc": semconv.ML_PERFORMANCE_ROC_AUC, "r2": semconv.ML_PERFORMANCE_R2,
    "mae": semconv.ML_PERFORMANCE_MAE, "rmse": semconv.ML_PERFORMANCE_RMSE,
}


def _pipelines_problem(pipelines: object, signal: str) -> list[str]:
    if pipelines is None:
        return []
    if not isinstance(pipelines, list | tuple) or not all(
            isinstance(p, str) and p.split("/")[0] == signal for p in pipelines):
        return [f"pipelines: must be a list of {signal} pipeline IDs ({signal}, {signal}/NAME), "
                f"got {pipelines!r}"]
    return []


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """``store``: the SQLite file joining predictions and labels ("": in memory) and how long
    a prediction (or a label waiting for its prediction) is kept."""

    path: str = DEFAULT_STORE_PATH
    ttl: str | float = DEFAULT_TTL

    @property
    def ttl_s(self) -> float:
        return parse_duration(self.ttl)

    def validate(self) -> list[str]:
        problems = [p for p in (positive_duration_problem("ttl", self.ttl),) if p]
        if not isinstance(self.path, str):
            problems.append(f"path: must be a file path or empty (in memory), got {self.path!r}")
        elif self.path and Path(self.path).is_dir():
            problems.append(f"path: '{self.path}' is a directory; name a file in it, e.g. "
                            f"{Path(self.path) / 'predictions.sqlite'}")
        return problems


@dataclass(frozen=True, slots=True)
class PerformanceThresholdsConfig:
    """``thresholds``: a window alerts when a metric is below (accuracy, precision, recall,
    f1, roc_auc, r2; macro averages) or above (mae, rmse) its threshold; unset: no alert."""

    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    roc_auc: float | None = None
    r2: float | None = None
    mae: float | None = None
    rmse: float | None = None

    def validate(self) -> list[str]:
        problems = []
        for name in (*LOWER_IS_WORSE, *HIGHER_IS_WORSE):
            value = getattr(self, name)
            if value is None:
                continue
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not math.isfinite(value):
                problems.append(f"{name}: must be a number (or left out: no alert), "
                                f"got {value!r}")
            elif name in ("accuracy", "precision", "recall", "f1", "roc_auc") \
                    and not 0 <= value <= 1:
                problems.append(f"{name}: must be between 0 and 1, got {value!r}")
            elif name in HIGHER_IS_WORSE and value < 0:
                problems.append(f"{name}: must be 0 or more, got {value!r}")
        return problems

    def items(self) -> list[tuple[str, float]]:
        """(metric key, threshold) of the thresholds that are set."""
        return [(n, float(getattr(self, n))) for n in (*LOWER_IS_WORSE, *HIGHER_IS_WORSE)
                if getattr(self, n) is not None]


@dataclass(frozen=True, slots=True)
class MetricsTargetConfig:
    """``metrics``: the metrics pipelines that get the ``ml.performance.*`` gauges; None:
    every metrics pipeline, []: none."""

    pipelines: list[str] | None = None

    def validate(self) -> list[str]:
        return _pipelines_problem(self.pipelines, SIGNAL_METRICS)


@dataclass(frozen=True, slots=True)
class PerformanceAlertsConfig:
    """``alerts``: the logs pipelines that get ``ml.performance.alert`` records; None: every
    logs pipeline, []: no alerts."""

    pipelines: list[str] | None = None

    def validate(self) -> list[str]:
        return _pipelines_problem(self.pipelines, SIGNAL_LOGS)


@dataclass(frozen=True, slots=True)
class PerformanceLimitsConfig:
    """``limits``: models kept (name x version x framework x operation; predictions of more
    are dropped and counted) and per-class series per window (the most frequent classes)."""

    max_models: int = DEFAULT_MAX_MODELS
    max_classes: int = DEFAULT_MAX_CLASSES

    def validate(self) -> list[str]:
        problems = []
        for name in ("max_models", "max_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}: must be a whole number, 1 or more, got {value!r}")
        return problems


@dataclass(frozen=True, slots=True)
class MlPerformanceConfig(WindowedConfig):
    """The processor's YAML node. Durations are kept as written and parsed on use."""

    store: StoreConfig = field(default_factory=StoreConfig)
    window: str | float = DEFAULT_WINDOW
    grace: str | float = DEFAULT_GRACE
    min_labels: int = DEFAULT_MIN_LABELS
    thresholds: PerformanceThresholdsConfig = field(default_factory=PerformanceThresholdsConfig)
    metrics: MetricsTargetConfig = field(default_factory=MetricsTargetConfig)
    alerts: PerformanceAlertsConfig = field(default_factory=PerformanceAlertsConfig)
    limits: PerformanceLimitsConfig = field(default_factory=PerformanceLimitsConfig)

    def fed_pipelines(self) -> dict[str, list[str] | None]:
        """Gauges go to metrics pipelines, alerts to logs ones (the pipeline graph orders
        shutdown by this)."""
        return {SIGNAL_METRICS: self.metrics.pipelines, SIGNAL_LOGS: self.alerts.pipelines}

    def validate(self) -> list[str]:
        problems = [p for p in (positive_duration_problem("window", self.window),
                                non_negative_duration_problem("grace", self.grace)) if p]
        if isinstance(self.min_labels, bool) or not isinstance(self.min_labels, int) \
                or self.min_labels < 1:
            problems.append(f"min_labels: must be a whole number, 1 or more, got "
                            f"{self.min_labels!r}")
        for name in ("store", "thresholds", "metrics", "alerts", "limits"):
            problems.extend(f"{name}::{p}" for p in getattr(self, name).validate())
        return problems
