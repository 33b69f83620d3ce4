"""Calibration maps: how often a classifier is right at each confidence, learnt from labelled
reference data, so its performance can be estimated where labels are missing.

A profile captured with the class probabilities, the predictions and the true labels holds
one map per class (the class the model predicts, i.e. the argmax of its probabilities): an
isotonic regression of correctness (prediction == label) on confidence (the top class
probability). The maps are fitted from bounded-size bins, so a profile is built in one
streaming pass and two profiles' maps merge exactly (the bins add up, the map is refitted).

Bins and the app's ``ml.prediction.uncertainty`` histograms measure the same quantity,
``1 - confidence``; values below ``UNCERTAINTY_FLOOR`` count as 0 ("certain") on both sides,
so a histogram spans at most ``log2(1 / UNCERTAINTY_FLOOR)`` octaves and keeps a fine scale.
The JSON format is documented in docs/estimation.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline import semconv
from driftline.labels import class_labels

# ``1 - confidence`` below this counts as 0: 2**-10, i.e. confidence above 0.99902. Ten
# octaves in 160 exponential buckets keep scale 4 (16 buckets per octave, 4.4 % wide).
UNCERTAINTY_FLOOR_EXPONENT = 10
UNCERTAINTY_FLOOR = 2.0 ** -UNCERTAINTY_FLOOR_EXPONENT
# Reference bins per octave of 1 - confidence (2**BIN_SCALE), the finest a window can have.
BIN_SCALE = 4
BINS_PER_OCTAVE = 2 ** BIN_SCALE
# Bin 0 holds 1 - confidence below the floor; bins 1.. the octaves above it, up to 1.
BIN_COUNT = 1 + UNCERTAINTY_FLOOR_EXPONENT * BINS_PER_OCTAVE
# A class's map keeps at most this many knots (adjacent isotonic blocks merged past it).
MAX_KNOTS = 64
# Distinct true labels tracked while building; more fold into one (never a correct one).
MAX_TARGET_LABELS = 100
# Uniform bins of the positive class's score for a binary model's realised ROC AUC.
ROC_BINS = 4096
_OTHER_TARGET = semconv.OVERFLOW_VALUE


class CalibrationError(ValueError):
    """Probabilities, predictions or labels that cannot give a calibration, and why."""


def uncertainty(confidence: np.ndarray) -> np.ndarray:
    """``1 - confidence``, 0 below ``UNCERTAINTY_FLOOR``: what the app records per row."""
    u = 1.0 - np.asarray(confidence, dtype=np.float64)
    return np.where(u < UNCERTAINTY_FLOOR, 0.0, u)


def bin_index(u: np.ndarray) -> np.ndarray:
    """The reference bin of each uncertainty (see ``uncertainty``)."""
    u = np.asarray(u, dtype=np.float64)
    with np.errstate(divide="ignore"):
        octaves = np.log2(np.maximum(u, UNCERTAINTY_FLOOR)) + UNCERTAINTY_FLOOR_EXPONENT
    index = 1 + np.floor(octaves * BINS_PER_OCTAVE).astype(np.int64)
    return np.where(u < UNCERTAINTY_FLOOR, 0, np.clip(index, 1, BIN_COUNT - 1))


def isotonic(x: np.ndarray, y: np.ndarray, w: np.ndarray,
             max_knots: int = MAX_KNOTS) -> tuple[np.ndarray, np.ndarray]:
    """Weighted isotonic (non-decreasing) regression of ``y`` on ascending ``x`` by pool
    adjacent violators; returns each block's weighted mean x and fitted y, at most
    ``max_knots`` of them (the lightest adjacent pair merged first: still monotone)."""
    blocks: list[list[float]] = []  # [weight, weight * x, weight * y]
    for xi, yi, wi in zip(x.tolist(), y.tolist(), w.tolist(), strict=True):
        if wi <= 0:
            continue
        blocks.append([wi, wi * xi, wi * yi])
        while len(blocks) > 1 and blocks[-2][2] * blocks[-1][0] >= blocks[-1][2] * blocks[-2][0]:
            last = blocks.pop()
            blocks[-1] = [a + b for a, b in zip(blocks[-1], last, strict=True)]
    while len(blocks) > max_knots:
        pair = min(range(len(blocks) - 1), key=lambda i: blocks[i][0] + blocks[i + 1][0])
        right = blocks.pop(pair + 1)
        blocks[pair] = [a + b for a, b in zip(blocks[pair], right, strict=True)]
    weights = np.array([b[0] for b in blocks])
    return (np.array([b[1] for b in blocks]) / weights if blocks else np.zeros(0),
            np.array([b[2] for b in blocks]) / weights if blocks else np.zeros(0))


@dataclass(frozen=True, slots=True)
class ClassCalibration:
    """One predicted class: its bins (rows, correct rows, sum of confidence per bin of
    ``1 - confidence``) and the isotonic map fitted on them (``knots`` of confidence,
    ``correct`` the probability of being right there). ``correct_rows`` is None when the
    data had no labels (a current side in ``compare``: estimation only)."""

    label: str
    column: int
    rows: np.ndarray
    correct_rows: np.ndarray | None
    confidence_sum: np.ndarray

    @property
    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        return self._fit()

    def _fit(self) -> tuple[np.ndarray, np.ndarray]:
        if self.correct_rows is None:
            return np.zeros(0), np.zeros(0)
        used = self.rows > 0
        order = np.flatnonzero(used)[::-1]  # bin 0 is the most confident: ascending x
        return isotonic(self.confidence_sum[order] / self.rows[order],
                        self.correct_rows[order] / self.rows[order],
                        self.rows[order].astype(np.float64))

    def zero_confidence(self) -> float:
        """The mean confidence of the reference rows counted as certain (bin 0)."""
        return float(self.confidence_sum[0] / self.rows[0]) if self.rows[0] else 1.0

    def to_dict(self) -> dict[str, Any]:
        used = np.flatnonzero(self.rows)
        data: dict[str, Any] = {"label": self.label, "column": self.column,
                                "rows": int(self.rows.sum())}
        if self.correct_rows is not None:
            xs, ys = self._fit()
            data["correct"] = int(self.correct_rows.sum())
            data["map"] = {"confidence": [round(float(v), 12) for v in xs],
                           "correct": [round(float(v), 12) for v in ys]}
        data["bins"] = [[int(i), int(self.rows[i]),
                         None if self.correct_rows is None else int(self.correct_rows[i]),
                         float(self.confidence_sum[i])] for i in used]
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ClassCalibration:
        if not isinstance(data, dict) or not isinstance(data.get("label"), str) \
                or not isinstance(data.get("column"), int) \
                or not isinstance(data.get("bins"), list):
            raise CalibrationError(f"{where}: must be an object with 'label' (text), 'column' "
                                   "(integer) and 'bins' (list)")
        rows = np.zeros(BIN_COUNT, dtype=np.int64)
        correct = np.zeros(BIN_COUNT, dtype=np.int64)
        sums = np.zeros(BIN_COUNT)
        labelled = True
        for k, item in enumerate(data["bins"]):
            if not (isinstance(item, list) and len(item) == 4
                    and isinstance(item[0], int) and 0 <= item[0] < BIN_COUNT
                    and isinstance(item[1], int) and item[1] >= 0
                    and (item[2] is None or (isinstance(item[2], int) and 0 <= item[2] <= item[1]))
                    and isinstance(item[3], int | float) and math.isfinite(item[3])):
                raise CalibrationError(f"{where}.bins[{k}]: must be [bin 0..{BIN_COUNT - 1}, "
                                       "rows, correct rows (or null), sum of confidence]")
            rows[item[0]] += item[1]
            labelled = labelled and item[2] is not None
            correct[item[0]] += item[2] or 0
            sums[item[0]] += item[3]
        return cls(data["label"], data["column"], rows, correct if labelled else None, sums)


@dataclass(frozen=True, slots=True)
class Calibration:
    """A profile's calibration: per class in probability-column order, and the data's column
    names so ``compare`` reads a data file the same way. ``roc`` (binary, labelled) counts
    the positive class's score in ``ROC_BINS`` uniform bins per true label (negative,
    positive) for the realised ROC AUC."""

    probability_columns: tuple[str, ...]
    prediction_column: str | None
    target_column: str | None
    classes: tuple[ClassCalibration, ...]
    roc: np.ndarray | None = None

    @property
    def labelled(self) -> bool:
        return all(c.correct_rows is not None for c in self.classes)

    def by_label(self) -> dict[str, ClassCalibration]:
        return {c.label: c for c in self.classes}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "uncertainty_floor": UNCERTAINTY_FLOOR, "bin_scale": BIN_SCALE,
            "probability_columns": list(self.probability_columns),
            "prediction_column": self.prediction_column,
            "target_column": self.target_column,
            "classes": [c.to_dict() for c in self.classes]}
        if self.roc is not None:
            data["roc"] = {"bins": ROC_BINS, **{
                side: [[int(i), int(self.roc[k, i])] for i in np.flatnonzero(self.roc[k])]
                for k, side in enumerate(("negative", "positive"))}}
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "calibration") -> Calibration:
        if not isinstance(data, dict):
            raise CalibrationError(f"{where}: must be an object")
        if data.get("uncertainty_floor") != UNCERTAINTY_FLOOR \
                or data.get("bin_scale") != BIN_SCALE:
            raise CalibrationError(
                f"{where}: bins of uncertainty_floor {data.get('uncertainty_floor')!r} and "
                f"bin_scale {data.get('bin_scale')!r}; this Driftline reads "
                f"{UNCERTAINTY_FLOOR} and {BIN_SCALE}: capture the profile again")
        columns = data.get("probability_columns")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise CalibrationError(f"{where}.probability_columns: must be a list of names")
        for key in ("prediction_column", "target_column"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise CalibrationError(f"{where}.{key}: must be a column name or null")
        classes = data.get("classes")
        if not isinstance(classes, list) or not classes:
            raise CalibrationError(f"{where}.classes: must be a non-empty list")
        roc = None
        if data.get("roc") is not None:
            roc = np.zeros((2, ROC_BINS), dtype=np.int64)
            try:
                for k, side in enumerate(("negative", "positive")):
                    for i, count in data["roc"][side]:
                        roc[k, int(i)] += int(count)
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise CalibrationError(f"{where}.roc: must hold 'negative' and 'positive' "
                                       f"lists of [bin, count]: {exc}") from exc
        return cls(tuple(columns), data.get("prediction_column"), data.get("target_column"),
                   tuple(ClassCalibration.from_dict(c, f"{where}.classes[{i}]")
                         for i, c in enumerate(classes)), roc)


def merge(left: Calibration, right: Calibration) -> Calibration:
    """The calibration of both parts' rows (their bins added, maps refitted)."""
    if [(c.label, c.column) for c in left.classes] != \
            [(c.label, c.column) for c in right.classes]:
        raise CalibrationError("cannot merge calibrations of different classes: "
                               f"{[c.label for c in left.classes]} and "
                               f"{[c.label for c in right.classes]}")
    classes = tuple(
        ClassCalibration(a.label, a.column, a.rows + b.rows,
                         None if a.correct_rows is None or b.correct_rows is None
                         else a.correct_rows + b.correct_rows,
                         a.confidence_sum + b.confidence_sum)
        for a, b in zip(left.classes, right.classes, strict=True))
    roc = None if left.roc is None or right.roc is None else left.roc + right.roc
    return Calibration(left.probability_columns, left.prediction_column, left.target_column,
                       classes, roc)


class CalibrationBuilder:
    """Streams chunks of probabilities (rows x classes, in class order), predictions and
    true labels into bins; ``build()`` names each probability column's class and fits."""

    def __init__(self, probability_columns: Sequence[str], prediction_column: str | None = None,
                 target_column: str | None = None) -> None:
        self.probability_columns = tuple(probability_columns)
        self.prediction_column, self.target_column = prediction_column, target_column
        width = len(self.probability_columns)
        self._targets: dict[str | None, int] = {}
        self._rows: dict[str | None, np.ndarray] = {}  # target -> (width, BIN_COUNT) rows
        self._sums = np.zeros((width, BIN_COUNT))
        self._names: Counter[tuple[int, str]] = Counter()
        self._roc: dict[str, np.ndarray] = {}  # target -> positive-score bin counts
        self.skipped = 0  # rows without finite probabilities or without a label

    def add(self, probabilities: Any, predictions: Any = None, target: Any = None) -> None:
        scores = np.asarray(probabilities, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[1] != len(self.probability_columns):
            raise CalibrationError(f"probabilities must have {len(self.probability_columns)} "
                                   f"columns ({', '.join(self.probability_columns)}), got "
                                   f"shape {scores.shape}")
        if scores.shape[1] < 2:
            raise CalibrationError("a calibration needs at least two probability columns")
        keep = np.isfinite(scores).all(axis=1)
        labels = None
        if target is not None:
            labels = class_labels(np.asarray(target))
            keep &= labels != None  # noqa: E711 (elementwise)
        self.skipped += int(keep.size - keep.sum())
        scores = scores[keep]
        column = np.argmax(scores, axis=1)
        confidence = scores[np.arange(len(scores)), column]
        bins = bin_index(uncertainty(confidence))
        cell = column * BIN_COUNT + bins
        width = scores.shape[1]
        self._sums += np.bincount(cell, confidence, width * BIN_COUNT).reshape(width, BIN_COUNT)
        if predictions is not None:
            predicted = class_labels(np.asarray(predictions))[keep]
            self._names.update(zip(column.tolist(), predicted.tolist(), strict=True))
        if labels is None:
            self._count(None, cell, width)
            return
        labels = labels[keep]
        roc_bin = np.minimum((scores[:, 1] * ROC_BINS).astype(np.int64), ROC_BINS - 1) \
            if width == 2 else None
        for label in np.unique(labels.astype(str)).tolist():
            rows = labels == label
            label = self._count(label, cell[rows], width)
            if roc_bin is not None:
                counts = np.bincount(roc_bin[rows], minlength=ROC_BINS)
                self._roc[label] = self._roc.get(label, 0) + counts

    def _count(self, label: str | None, cell: np.ndarray, width: int) -> str | None:
        """Add rows of one true label (None: unlabelled); returns the key they went under."""
        if label not in self._rows and label is not None \
                and len(self._rows) >= MAX_TARGET_LABELS:
            label = _OTHER_TARGET
        counts = np.bincount(cell, minlength=width * BIN_COUNT).reshape(width, BIN_COUNT)
        self._rows[label] = self._rows[label] + counts if label in self._rows else counts
        return label

    def build(self, labels: Sequence[str] | None = None) -> Calibration | None:
        """The calibration; ``labels`` name the classes of the probability columns (else the
        prediction most often made where each column is the largest). None without rows."""
        if not self._rows:
            return None
        width = len(self.probability_columns)
        names = list(labels) if labels is not None else self._labels(width)
        total = sum(self._rows.values())
        labelled = None not in self._rows
        classes = tuple(
            ClassCalibration(names[j], j, total[j].copy(),
                             self._rows[names[j]][j].copy() if labelled and names[j] in self._rows
                             else (np.zeros(BIN_COUNT, dtype=np.int64) if labelled else None),
                             self._sums[j].copy())
            for j in range(width))
        roc = None
        if labelled and width == 2 and self._roc:
            positive = self._roc.get(names[1], np.zeros(ROC_BINS, dtype=np.int64))
            roc = np.stack([sum(self._roc.values()) - positive, positive]).astype(np.int64)
        return Calibration(self.probability_columns, self.prediction_column,
                           self.target_column, classes, roc)

    def _labels(self, width: int) -> list[str]:
        names: list[str] = []
        for j in range(width):
            made = [(count, label) for (column, label), count in self._names.items()
                    if column == j]
            if not made:
                raise CalibrationError(
                    f"probability column '{self.probability_columns[j]}' is never the largest "
                    "where a prediction is given, so its class is unknown: give the "
                    "predictions (--prediction-column) or the classes in column order")
            names.append(max(made)[1])
        if len(set(names)) != width:
            raise CalibrationError(f"the probability columns {list(self.probability_columns)} "
                                   f"map to classes {names}, not one class each: are they in "
                                   "the model's class order?")
        return names


def realised(calibration: Calibration) -> dict[str, float]:
    """The realised metrics of labelled data: accuracy; for two classes precision, recall,
    F1 (of the second class, the positive one) and ROC AUC (ties within a bin of 1/ROC_BINS
    counted half)."""
    if not calibration.labelled:
        return {}
    rows = sum(int(c.rows.sum()) for c in calibration.classes)
    correct = sum(int(c.correct_rows.sum()) for c in calibration.classes  # type: ignore[union-attr]
                  )
    if not rows:
        return {}
    result = {"accuracy": correct / rows}
    if len(calibration.classes) == 2:
        negative, positive = calibration.classes
        tp = int(positive.correct_rows.sum())  # type: ignore[union-attr]
        fp = int(positive.rows.sum()) - tp
        tn = int(negative.correct_rows.sum())  # type: ignore[union-attr]
        fn = int(negative.rows.sum()) - tn
        result.update(_ratios(tp, fp, fn))
        if calibration.roc is not None:
            auc = roc_auc(calibration.roc[1].astype(np.float64),
                          calibration.roc[0].astype(np.float64))
            if auc is not None:
                result["roc_auc"] = auc
    return result


def _ratios(tp: float, fp: float, fn: float) -> dict[str, float]:
    """Precision, recall and F1 with sklearn's zero_division=0."""
    return {"precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0}


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """ROC AUC of counts per score bin in ascending score order (last axis; leading axes
    are independent draws), ties within a bin counted half. None without both classes."""
    pos_total = positives.sum(axis=-1)
    neg_total = negatives.sum(axis=-1)
    below = np.cumsum(negatives, axis=-1) - negatives
    pairs = (positives * (below + 0.5 * negatives)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = pairs / (pos_total * neg_total)
    if np.ndim(auc) == 0:
        return float(auc) if pos_total > 0 and neg_total > 0 else None
    return auc  # type: ignore[return-value]


def knots_of(calibration: Calibration) -> Mapping[str, tuple[np.ndarray, np.ndarray]]:
    """Each class's fitted map (confidence knots, probability correct), fitted once."""
    return {c.label: c.knots for c in calibration.classes}
