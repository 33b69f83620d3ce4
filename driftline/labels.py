"""Class labels as one canonical text, whatever the source.

A label travels three ways: into a profile (from CSV, Parquet, pandas or NumPy), from the
recorder (a model's ``classes_`` or outputs), and on ``ml.ground_truth`` records. If each
way printed it its own way, a CSV read as floats would give ``"1.0"`` where the service
sends ``"1"``, and prediction drift would be flagged in every window. So every path turns a
label into text here, and only here:

- integers (Python, NumPy) and whole-number floats: the integer, ``1.0`` -> ``"1"``;
- other finite floats: ``repr`` (``0.5`` -> ``"0.5"``);
- booleans: ``"true"`` / ``"false"`` (as OTLP and JSON write them);
- text that spells a number (``"1.0"``, ``"01"``, ``"1e0"``, as a CSV column of strings or an
  app that printed a float may hold it): the text of that number; other text as it is;
- missing (None, NaN, infinities, pandas NA): no label (``None``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

TASK_CLASSIFICATION = "classification"
TASK_REGRESSION = "regression"
TASKS = (TASK_CLASSIFICATION, TASK_REGRESSION)
TRUE_LABEL = "true"
FALSE_LABEL = "false"
# Text spelling an integer, or a decimal number ("1.0", "-.5", "2e3").
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# Floats of at most this magnitude are whole numbers an int64 holds exactly.
_MAX_EXACT_INT = 2.0 ** 53
# Dtype kinds: booleans, signed and unsigned integers, floats.
_BOOL, _INTS, _FLOATS = "b", "iu", "f"
# Prediction outputs of these kinds are class labels, not values (``is_label_dtype``).
LABEL_KINDS = "biuOUS"


def class_label(value: Any) -> str | None:
    """The canonical text of one class label, or None when it is missing."""
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, str):
        value = value.item()  # NumPy scalars as Python ones
    if value is None:
        return None
    if isinstance(value, bool):
        return TRUE_LABEL if value else FALSE_LABEL
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        if _INTEGER.fullmatch(value):
            return str(int(value))  # exact, however long
        if _DECIMAL.fullmatch(value):
            return class_label(float(value)) or value
        return value
    try:
        if value != value:  # pandas NA raises here, float-like NaN objects are unequal
            return None
    except (TypeError, ValueError):
        return None
    return str(value)


def class_labels(values: Any) -> np.ndarray:
    """``class_label`` of every value: an object array of text, None where missing.

    Vectorised for numeric and boolean arrays; text and object arrays are mapped once per
    distinct value.
    """
    array = np.asarray(values)
    kind = array.dtype.kind
    if kind in _BOOL:
        return np.where(array, TRUE_LABEL, FALSE_LABEL).astype(object)
    if kind in _INTS:
        return array.astype(str).astype(object)
    if kind in _FLOATS:
        return _float_labels(array.astype(np.float64, copy=False))
    flat = array.astype(object).ravel()
    # Keyed by type too: True == 1 and 1 == 1.0 hash alike but may print differently.
    seen: dict[tuple[type, Any], str | None] = {}
    out = np.empty(flat.size, dtype=object)
    for i, value in enumerate(flat.tolist()):
        key = (type(value), value)
        try:
            out[i] = seen[key]
        except KeyError:
            out[i] = seen[key] = class_label(value)
        except TypeError:  # unhashable
            out[i] = class_label(value)
    return out.reshape(array.shape)


def _float_labels(array: np.ndarray) -> np.ndarray:
    out = np.empty(array.shape, dtype=object)
    finite = np.isfinite(array)
    whole = finite & (np.floor(array) == array) & (np.abs(array) <= _MAX_EXACT_INT)
    out[whole] = array[whole].astype(np.int64).astype(str)
    rest = finite & ~whole
    out[rest] = [class_label(v) for v in array[rest].tolist()]
    return out


def is_label_dtype(values: Any) -> bool:
    """Whether outputs of this dtype are class labels (integers, booleans, text, objects)
    rather than regression values (floats)."""
    return np.asarray(values).dtype.kind in LABEL_KINDS
