"""Performance estimated per window without labels (docs/estimation.md), in ``ml_drift``.

``ml_drift`` holds what the estimate needs: the profile (its calibration) and the window's
``ml.prediction.uncertainty`` histograms (one column per predicted class, named
``ml.prediction.uncertainty/<class>``). ``ml_performance`` sees only the sampled prediction
records and no profile. Gauges ``ml.performance.estimated.<metric>`` with ``.lower`` and
``.upper``; an estimate below its threshold gives an ``ml.performance.alert`` record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from driftline import semconv
from driftline.calibration import Calibration
from driftline.estimation import (
    BINARY_METRICS,
    DEFAULT_LEVEL,
    Estimate,
    Points,
    estimate,
    histogram_points,
)
from driftline.exphist import ExpHistogram
from driftline.processor.component.otlp_build import WindowGauges
from driftline.processor.component.performance_alerts import PerformanceAlert

COLUMN_PREFIX = semconv.ML_PREDICTION_UNCERTAINTY + "/"


def column_of(attributes: Mapping[str, str]) -> str | None:
    """The window column of one ``ml.prediction.uncertainty`` point: per predicted class."""
    label = attributes.get(semconv.ML_PREDICTION_CLASS)
    return COLUMN_PREFIX + label if label else None


@dataclass(frozen=True, slots=True)
class EstimationThresholdsConfig:
    """``estimation::thresholds``: an estimate below its threshold alerts; unset: never."""

    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    roc_auc: float | None = None

    def validate(self) -> list[str]:
        problems = []
        for name in BINARY_METRICS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or not 0 <= value <= 1:
                problems.append(f"{name}: must be a number from 0 to 1 (or left out: no "
                                f"alert), got {value!r}")
        return problems


@dataclass(frozen=True, slots=True)
class EstimationConfig:
    """``estimation``: on by default for models whose profile has a calibration; ``level``
    is the probability the band holds the realised value if the calibration holds."""

    enabled: bool = True
    level: float = DEFAULT_LEVEL
    thresholds: EstimationThresholdsConfig = EstimationThresholdsConfig()

    def validate(self) -> list[str]:
        problems = []
        if not isinstance(self.enabled, bool):
            problems.append(f"enabled: must be true or false, got {self.enabled!r}")
        if isinstance(self.level, bool) or not isinstance(self.level, int | float) \
                or not 0 < self.level < 1:
            problems.append(f"level: must be a number between 0 and 1, e.g. 0.95, got "
                            f"{self.level!r}")
        problems.extend(f"thresholds::{p}" for p in self.thresholds.validate())
        return problems


def add_estimates(config: EstimationConfig, calibration: Calibration | None,
                  numeric: Mapping[str, ExpHistogram], gauges: WindowGauges, rows: int
                  ) -> list[PerformanceAlert]:
    """Add the window's estimated gauges; returns the alerts of estimates past their
    thresholds. Nothing without a labelled calibration or uncertainty histograms."""
    if not config.enabled or calibration is None or not calibration.labelled:
        return []
    points: dict[str, Points] = {}
    for c in calibration.classes:
        hist = numeric.get(COLUMN_PREFIX + c.label)
        if hist is not None and hist.count:
            points[c.label] = histogram_points(hist, c.zero_confidence())
    if not points:
        return []
    found, _ = estimate(calibration, points, level=config.level)
    alerts = []
    for item in found:
        _add(gauges, item)
        threshold = getattr(config.thresholds, item.metric)
        if threshold is not None and item.value < threshold:
            alerts.append(PerformanceAlert(semconv.ML_PERFORMANCE_ESTIMATED_PREFIX + item.metric,
                                           item.value, float(threshold), True, 0, rows))
    return alerts


def _add(gauges: WindowGauges, item: Estimate) -> None:
    name = semconv.ML_PERFORMANCE_ESTIMATED_PREFIX + item.metric
    for suffix, value in (("", item.value), (semconv.ML_PERFORMANCE_LOWER_SUFFIX, item.lower),
                          (semconv.ML_PERFORMANCE_UPPER_SUFFIX, item.upper)):
        gauges.add(name + suffix, semconv.UNIT_DIMENSIONLESS, value)
