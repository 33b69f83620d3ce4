"""Model quality over one window's joined rows, with NumPy only (no scikit-learn at run time).

Each function gives what ``sklearn.metrics`` gives on the same rows (tests compare them):
precision, recall and F1 with ``zero_division=0`` over the labels seen in the window (true or
predicted, sklearn's default ``labels``), macro averages as unweighted means of the per-class
values, ROC AUC from the recorded scores with ties counted half (the trapezoidal ROC curve),
R² with sklearn's ``force_finite`` conventions. Undefined values are left out, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class ClassScores:
    """Precision, recall, F1 and true-label count of one class."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class ClassificationMetrics:
    """A classifier's window: accuracy, per-class and macro scores, ROC AUC where defined.

    ``roc_auc_binary`` is set for two classes (positive: the second of the model's classes,
    as sklearn takes the greater label); ``roc_auc_per_class`` holds each class's one-vs-rest
    AUC when that class has positive and negative labels in the window; ``roc_auc_macro``
    is their mean (more than two classes). ``roc_auc_undefined`` names why one is missing.
    """

    rows: int
    accuracy: float
    per_class: dict[str, ClassScores]
    precision_macro: float
    recall_macro: float
    f1_macro: float
    label_counts: dict[str, int]
    roc_auc_binary: tuple[str, float] | None = None
    roc_auc_per_class: dict[str, float] = field(default_factory=dict)
    roc_auc_macro: float | None = None
    roc_auc_undefined: str = ""


@dataclass(frozen=True, slots=True)
class RegressionMetrics:
    """A regressor's window: MAE, RMSE and R² (None below two rows, as sklearn warns)."""

    rows: int
    mae: float
    rmse: float
    r2: float | None


def classification(y_true: Sequence[str], y_pred: Sequence[str],
                   scores: NDArray[np.float64] | None = None,
                   classes: Sequence[str] = ()) -> ClassificationMetrics:
    """The metrics of labels ``y_true`` against predictions ``y_pred``; ``scores`` (rows x
    ``classes``) gives ROC AUC, omitted when None or when no class list is known."""
    true = np.asarray(y_true, dtype=object)
    pred = np.asarray(y_pred, dtype=object)
    if true.shape != pred.shape or true.size == 0:
        raise ValueError(f"need as many predictions as labels, at least one: "
                         f"{true.size} labels, {pred.size} predictions")
    labels = sorted(set(true.tolist()) | set(pred.tolist()))
    per_class: dict[str, ClassScores] = {}
    for label in labels:
        is_true, is_pred = true == label, pred == label
        tp = int(np.count_nonzero(is_true & is_pred))
        predicted, actual = int(np.count_nonzero(is_pred)), int(np.count_nonzero(is_true))
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * tp / (predicted + actual) if predicted + actual else 0.0
        per_class[label] = ClassScores(precision, recall, f1, actual)
    counts = {label: s.support for label, s in per_class.items() if s.support}
    result = ClassificationMetrics(
        rows=int(true.size), accuracy=float(np.mean(true == pred)), per_class=per_class,
        precision_macro=float(np.mean([s.precision for s in per_class.values()])),
        recall_macro=float(np.mean([s.recall for s in per_class.values()])),
        f1_macro=float(np.mean([s.f1 for s in per_class.values()])), label_counts=counts)
    if scores is None or not classes:
        return result
    return _with_roc_auc(result, true, np.asarray(scores, dtype=np.float64), list(classes))


def _with_roc_auc(result: ClassificationMetrics, true: NDArray[np.object_],
                  scores: NDArray[np.float64], classes: list[str]) -> ClassificationMetrics:
    if scores.ndim != 2 or scores.shape != (true.size, len(classes)) or len(classes) < 2:
        return _replace(result, roc_auc_undefined=(
            f"scores are {scores.shape}, expected {true.size} rows x {len(classes)} classes "
            "(two or more)"))
    if len(classes) == 2:
        positive = classes[1]
        auc = roc_auc(true == positive, scores[:, 1])
        if auc is None:
            return _replace(result, roc_auc_undefined=(
                "only one class among the labels; ROC AUC is not defined"))
        return _replace(result, roc_auc_binary=(positive, auc))
    per_class = {}
    for column, label in enumerate(classes):
        auc = roc_auc(true == label, scores[:, column])
        if auc is not None:
            per_class[label] = auc
    if not per_class:
        return _replace(result, roc_auc_undefined=(
            "only one class among the labels; ROC AUC is not defined"))
    missing = [c for c in classes if c not in per_class]
    return _replace(result, roc_auc_per_class=per_class,
                    roc_auc_macro=float(np.mean(list(per_class.values()))),
                    roc_auc_undefined=(f"classes without both positive and negative labels "
                                       f"left out of the macro ROC AUC: {', '.join(missing)}"
                                       if missing else ""))


def _replace(result: ClassificationMetrics, **changes: object) -> ClassificationMetrics:
    values = {name: getattr(result, name) for name in ClassificationMetrics.__dataclass_fields__}
    values.update(changes)
    return ClassificationMetrics(**values)  # type: ignore[arg-type]


def roc_auc(positive: NDArray[np.bool_], score: NDArray[np.float64]) -> float | None:
    """The area under the ROC curve of ``score`` for the ``positive`` rows: the Mann-Whitney
    statistic with tied scores ranked by their mean rank (equal to the trapezoidal area
    sklearn computes); None when all rows are positive or all negative."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(np.count_nonzero(positive))
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    # The mean 1-based rank of each distinct score: the ranks it spans, averaged.
    ends = np.cumsum(counts)
    mean_ranks = ends - (counts - 1) / 2.0
    rank_sum = float(np.sum(mean_ranks[inverse][positive]))
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def regression(y_true: Sequence[float], y_pred: Sequence[float]) -> RegressionMetrics:
    """MAE, RMSE and R² of predictions ``y_pred`` against labels ``y_true``."""
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if true.shape != pred.shape or true.size == 0:
        raise ValueError(f"need as many predictions as labels, at least one: "
                         f"{true.size} labels, {pred.size} predictions")
    error = true - pred
    mae = float(np.mean(np.abs(error)))
    rmse = float(np.sqrt(np.mean(error * error)))
    r2 = None
    if true.size >= 2:
        residual = float(np.sum(error * error))
        total = float(np.sum((true - np.mean(true)) ** 2))
        # Constant labels: sklearn's force_finite gives 1 when exact, else 0.
        exact = 1.0 if residual == 0.0 else 0.0
        r2 = exact if total == 0.0 else 1.0 - residual / total
    return RegressionMetrics(int(true.size), mae, rmse, r2)
