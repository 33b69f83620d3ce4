"""XGBoost instrumentation: a span and distribution metrics for every booster prediction.

``Booster.predict`` (operation ``predict``, a ``DMatrix``) and ``Booster.inplace_predict``
(operation ``inplace_predict``: arrays, DataFrames) are wrapped. Predictions made while
training are not traffic: ``Booster.update`` and ``Booster.eval_set`` (what ``xgboost.train``
calls, and with them a custom objective's or metric's predictions) are silenced, and so is
``predict(..., training=True)``. ``XGBClassifier``/``XGBRegressor`` calls report once, as the
scikit-learn estimator, when the scikit-learn instrumentor is on too. Usage::

    XGBoostInstrumentor().instrument(tracer_provider=..., metric_exporter=...)

How calls are read (in the recorder thread):

* Features are named after the booster's ``feature_names``, else the DMatrix's or the
  DataFrame's columns, else ``f0..f{F-1}``. A DMatrix is read back through
  ``DMatrix.get_data()`` (float32, as XGBoost stores it; values it does not store are
  missing), which costs the recorder thread about as much as building the DMatrix cost:
  ``inplace_predict`` on arrays is cheaper to observe. A ``QuantileDMatrix`` holds bins,
  not values: its calls count rows, duration and predictions, not features.
* Outputs follow the booster's objective: ``binary:*`` gives classes ``0`` and ``1`` with
  their scores (a margin, from ``output_margin=True``, ``predict_type="margin"`` or
  ``binary:logitraw``, through the sigmoid), ``multi:*`` classes ``0..C-1`` (margins
  softmaxed; ``multi:softmax`` labels), anything else regression values. Leaf indexes and
  feature contributions (``pred_leaf``, ``pred_contribs``, ``pred_interactions``) are not
  predictions: such calls count rows, duration and features only.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from driftline import semconv
from driftline.columns import table_columns
from driftline.instrumentation._aggregation import ModelTraits
from driftline.instrumentation._observe import CallSites, batch_shape, silenced
from driftline.instrumentation._runtime import (
    BINARY_CLASSES,
    Prepared,
    RuntimeInstrumentor,
    binary_margins,
    binary_probabilities,
    integer_labels,
    multiclass_scores,
    values,
)

# The CPU-only wheel ``xgboost-cpu`` installs the same ``xgboost`` module.
DISTRIBUTIONS = ("xgboost", "xgboost-cpu")
MIN_VERSION = "2.0"
# Booster methods that predict while training (custom objectives and metrics, callbacks).
TRAINING_METHODS = ("update", "eval_set")
# predict() keywords whose outputs are not predictions.
NOT_PREDICTIONS = ("pred_leaf", "pred_contribs", "approx_contribs", "pred_interactions")
MARGIN = "margin"  # inplace_predict(predict_type=...) for margins
# How a call's outputs are read: class scores or values, margins, or not at all.
READ_VALUES, READ_MARGINS, READ_NOTHING = "values", "margins", "nothing"
READS = (READ_VALUES, READ_MARGINS, READ_NOTHING)
DMATRIX, ARRAY = "dmatrix", "array"
SOFTMAX_LABELS = "multi:softmax"
HINGE_LABELS = "binary:hinge"
RAW_MARGINS = "binary:logitraw"
BINARY_PREFIX, MULTI_PREFIX = "binary:", "multi:"


class XGBoostInstrumentor(RuntimeInstrumentor):
    """Instruments ``xgboost.Booster.predict`` and ``inplace_predict``."""

    MODULE = "xgboost"
    FRAMEWORK = semconv.FRAMEWORK_XGBOOST

    def instrumentation_dependencies(self) -> Collection[str]:
        """The distribution installed (``xgboost`` or ``xgboost-cpu``), at least 2.0."""
        for name in DISTRIBUTIONS:
            try:
                version(name)
            except PackageNotFoundError:
                continue
            return (f"{name} >= {MIN_VERSION}",)
        return (f"{DISTRIBUTIONS[0]} >= {MIN_VERSION}",)

    def _wrap_library(self, kwargs: dict[str, Any]) -> None:
        from xgboost import Booster, QuantileDMatrix

        self._quantile_type = QuantileDMatrix
        # One site cache per way of reading outputs: a model's calls with output_margin=True
        # share the stream of its other calls, not their reading.
        self._sites = {read: CallSites(self.FRAMEWORK) for read in READS}
        self._traits = {(kind, read): partial(_booster_traits, kind, read)
                        for kind in (DMATRIX, ARRAY) for read in READS}
        self._wrap(Booster, "predict", partial(self._call, self._prepare_predict))
        self._wrap(Booster, "inplace_predict", partial(self._call, self._prepare_inplace))
        for method in TRAINING_METHODS:
            self._wrap(Booster, method, silenced)

    def _prepare_predict(self, booster: Any, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> Prepared | None:
        if kwargs.get("training"):
            return None
        data = args[0] if args else kwargs.get("data")
        try:
            rows, columns = data.num_row(), data.num_col()
        except Exception:  # not a DMatrix: XGBoost raises its own error, the call is counted
            rows, columns, data = 0, 0, None
        read = READ_NOTHING if any(kwargs.get(k) for k in NOT_PREDICTIONS) \
            else READ_MARGINS if kwargs.get("output_margin") else READ_VALUES
        site = self._sites[read].get(booster, semconv.OPERATION_PREDICT,
                                     self._traits[(DMATRIX, read)])
        # A QuantileDMatrix holds histogram bins, not values: its features are not read.
        inputs = None if data is None else np.empty((rows, 0)) \
            if isinstance(data, self._quantile_type) else DMatrixRows(data)
        return site, rows, columns, inputs, read != READ_NOTHING

    def _prepare_inplace(self, booster: Any, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> Prepared | None:
        data = args[0] if args else kwargs.get("data")
        rows, columns = batch_shape(data)
        read = READ_MARGINS if kwargs.get("predict_type") == MARGIN else READ_VALUES
        site = self._sites[read].get(booster, semconv.OPERATION_INPLACE_PREDICT,
                                     self._traits[(ARRAY, read)])
        return site, rows, columns, data, True


class DMatrixRows:
    """A DMatrix handed to the recorder: its rows are read back (``get_data``) only there,
    and a sample of rows (``ml.prediction`` records) as a dense array."""

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.num_row(), self.data.num_col()

    def __getitem__(self, rows: Any) -> np.ndarray:
        return self.dense()[rows]

    def dense(self) -> np.ndarray:
        """The stored values as a float64 array, NaN where the DMatrix holds none."""
        sparse = self.data.get_data()
        dense = np.full(sparse.shape, np.nan)
        rows = np.repeat(np.arange(sparse.shape[0]), np.diff(sparse.indptr))
        dense[rows, sparse.indices] = sparse.data
        return dense


def _dmatrix_columns(booster_names: Sequence[str] | None, inputs: Any
                     ) -> list[tuple[str, np.ndarray]]:
    if isinstance(inputs, DMatrixRows):
        names = booster_names or inputs.data.feature_names
        return list(table_columns(inputs.dense(), names))
    return list(table_columns(inputs, booster_names))  # rows already read (records)


def objective_of(booster: Any) -> tuple[str, int]:
    """The booster's objective and its number of classes (0 unless multiclass)."""
    learner = json.loads(booster.save_config())["learner"]
    return (learner["objective"]["name"],
            int(learner["learner_model_param"].get("num_class", "0")))


def _booster_traits(kind: str, read: str, booster: Any) -> ModelTraits:
    names = booster.feature_names
    read_inputs = partial(_dmatrix_columns, names) if kind == DMATRIX else None
    if read == READ_NOTHING:
        return ModelTraits(False, None, names, read_inputs)
    objective, classes = objective_of(booster)
    margins = read == READ_MARGINS
    if objective.startswith(BINARY_PREFIX):
        read_outputs = (integer_labels if objective == HINGE_LABELS and not margins
                        else binary_margins if margins or objective == RAW_MARGINS
                        else binary_probabilities)
        return ModelTraits(True, BINARY_CLASSES, names, read_inputs, read_outputs)
    if objective.startswith(MULTI_PREFIX):
        read_outputs = integer_labels if objective == SOFTMAX_LABELS and not margins \
            else multiclass_scores
        return ModelTraits(True, tuple(range(classes)), names, read_inputs, read_outputs)
    return ModelTraits(False, None, names, read_inputs, values)
