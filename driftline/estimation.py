"""Performance estimated without labels, from the confidence of the predictions and the
reference's calibration (confidence-based performance estimation, as NannyML's CBPE).

Each predicted class's rows come as (confidence, rows) points: the buckets of a window's
``ml.prediction.uncertainty`` histogram (``1 - confidence``, per predicted class), or the bins
of a data file. The calibration map gives each point the probability that its prediction is
right; expected counts of right and wrong predictions give accuracy, and for a binary model
the expected confusion matrix (precision, recall, F1 of the positive class, the second) and
the expected ROC AUC. The band is where the realised value falls with probability ``level``
if the calibration holds: quantiles of the metric over draws of the labels from those
probabilities (a parametric bootstrap). See docs/estimation.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from driftline import exphist
from driftline.calibration import Calibration, knots_of, roc_auc
from driftline.exphist import ExpHistogram

DEFAULT_LEVEL = 0.95
DEFAULT_DRAWS = 400
# Draws are seeded: the same window gives the same band on every evaluation.
DEFAULT_SEED = 20
METRIC_ACCURACY = "accuracy"
METRIC_PRECISION = "precision"
METRIC_RECALL = "recall"
METRIC_F1 = "f1"
METRIC_ROC_AUC = "roc_auc"
BINARY_METRICS = (METRIC_ACCURACY, METRIC_PRECISION, METRIC_RECALL, METRIC_F1, METRIC_ROC_AUC)


@dataclass(frozen=True, slots=True)
class Estimate:
    """One estimated metric: the expected value and the band around it."""

    metric: str
    value: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class Points:
    """One predicted class's rows: confidence per bucket and rows in it."""

    confidence: np.ndarray
    rows: np.ndarray


def histogram_points(hist: ExpHistogram, zero_confidence: float) -> Points:
    """The buckets of an ``ml.prediction.uncertainty`` histogram as (confidence, rows): the
    middle of each bucket; the zero bucket (certain) at the reference's mean confidence
    there."""
    counts = np.asarray(hist.positive.counts, dtype=np.float64)
    index = np.arange(hist.positive.offset, hist.positive.offset + counts.size + 1)
    bounds = exphist.lower_boundary(index, hist.scale)
    middle = np.clip(1.0 - (bounds[:-1] + bounds[1:]) / 2, 0.0, 1.0)
    used = counts > 0
    return Points(np.concatenate([[zero_confidence], middle[used]]),
                  np.concatenate([[float(hist.zero_count)], counts[used]]))


def estimate(calibration: Calibration, points: Mapping[str, Points], *,
             level: float = DEFAULT_LEVEL, draws: int = DEFAULT_DRAWS,
             seed: int = DEFAULT_SEED) -> tuple[list[Estimate], float]:
    """The estimated metrics of the rows in ``points`` (keyed by predicted class), and how
    many of those rows were left out because the calibration has no map for their class."""
    knots = knots_of(calibration)
    classes = [c.label for c in calibration.classes]
    unknown = sum(float(p.rows.sum()) for label, p in points.items()
                  if label not in knots or not knots[label][0].size)
    right: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    score: list[np.ndarray] = []
    positive_probability: list[np.ndarray] = []
    predicted_positive: list[np.ndarray] = []
    for j, label in enumerate(classes):
        found = points.get(label)
        if found is None or not knots[label][0].size:
            continue
        p = np.clip(np.interp(found.confidence, *knots[label]), 0.0, 1.0)
        right.append(p)
        rows.append(found.rows)
        if len(classes) == 2:  # the positive class is the second
            score.append(found.confidence if j == 1 else 1.0 - found.confidence)
            positive_probability.append(p if j == 1 else 1.0 - p)
            predicted_positive.append(np.full(p.size, j == 1))
    if not rows or not np.concatenate(rows).sum():
        return [], unknown
    n = np.concatenate(rows)
    p_right = np.concatenate(right)
    rng = np.random.default_rng(seed)
    drawn_right = rng.binomial(n.astype(np.int64), p_right, size=(draws, n.size))
    alpha = (1.0 - level) / 2
    estimates = [_band(METRIC_ACCURACY, float((n * p_right).sum() / n.sum()),
                       drawn_right.sum(axis=1) / n.sum(), alpha)]
    if score:
        estimates += _binary(n, np.concatenate(score), np.concatenate(positive_probability),
                             np.concatenate(predicted_positive), rng, draws, alpha)
    return estimates, unknown


def _binary(n: np.ndarray, score: np.ndarray, q: np.ndarray, predicted_positive: np.ndarray,
            rng: np.random.Generator, draws: int, alpha: float) -> list[Estimate]:
    """Precision, recall, F1 and ROC AUC from each point's rows ``n``, positive-class score,
    probability ``q`` of being positive and predicted class."""
    order = np.argsort(score, kind="stable")
    n, q, predicted_positive = n[order], q[order], predicted_positive[order]
    drawn = rng.binomial(n.astype(np.int64), q, size=(draws, n.size)).astype(np.float64)
    expected = n * q
    results = []
    for metric, value, spread in (
        *((m, _confusion(expected, n, predicted_positive)[m],
           _confusion(drawn, n, predicted_positive)[m])
          for m in (METRIC_PRECISION, METRIC_RECALL, METRIC_F1)),
        (METRIC_ROC_AUC, roc_auc(expected, n - expected), roc_auc(drawn, n - drawn)),
    ):
        if value is None or not np.isfinite(value):
            continue
        results.append(_band(metric, float(value), np.asarray(spread), alpha))
    return results


def _confusion(positives: np.ndarray, n: np.ndarray, predicted_positive: np.ndarray
               ) -> dict[str, np.ndarray]:
    """Precision, recall and F1 (zero_division=0) of positives per point (last axis)."""
    tp = positives[..., predicted_positive].sum(axis=-1)
    fp = n[predicted_positive].sum() - tp
    fn = positives[..., ~predicted_positive].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {METRIC_PRECISION: np.where(tp + fp > 0, tp / (tp + fp), 0.0),
                METRIC_RECALL: np.where(tp + fn > 0, tp / (tp + fn), 0.0),
                METRIC_F1: np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)}


def _band(metric: str, value: float, drawn: np.ndarray, alpha: float) -> Estimate:
    finite = drawn[np.isfinite(drawn)]
    if not finite.size:
        return Estimate(metric, value, value, value)
    lower, upper = np.quantile(finite, [alpha, 1.0 - alpha])
    return Estimate(metric, value, float(min(lower, value)), float(max(upper, value)))


def calibration_points(calibration: Calibration) -> dict[str, Points]:
    """The rows of a data file's (possibly unlabelled) calibration bins as points, each bin
    at its rows' exact mean confidence."""
    found = {}
    for c in calibration.classes:
        used = c.rows > 0
        found[c.label] = Points(c.confidence_sum[used] / c.rows[used],
                                c.rows[used].astype(np.float64))
    return found
