"""LightGBM instrumentation: a span and distribution metrics for every booster prediction.

``lightgbm.Booster.predict`` is wrapped (operation ``predict``); ``Booster.refit``, which
predicts leaf indexes of its training data, is silenced. ``LGBMClassifier``/
``LGBMRegressor`` calls report once, as the scikit-learn estimator, when the scikit-learn
instrumentor is on too. A prediction from a file (``predict("data.csv")``) is batch
scoring that LightGBM reads itself: not observed. Usage::

    LightGBMInstrumentor().instrument(tracer_provider=..., metric_exporter=...)

How calls are read (in the recorder thread):

* Features are named after the booster's ``feature_name()``, except LightGBM's own
  placeholders ``Column_0..`` (a model trained on an array), which read as
  ``f0..f{F-1}``, the names an array has everywhere else in Driftline (profiles too).
  A DataFrame's columns name themselves.
* Outputs follow the booster's ``objective``: ``binary`` gives classes ``0`` and ``1``
  with their scores (``raw_score=True`` margins through the sigmoid), ``multiclass``
  classes ``0..C-1`` (raw scores softmaxed), ``multiclassova`` classes ``0..C-1`` with each
  class's own probability (raw scores through the sigmoid; rows need not sum to 1), anything
  else regression values. Leaf indexes and contributions (``pred_leaf``, ``pred_contrib``) are not
  predictions: such calls count rows, duration and features only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from functools import partial
from typing import Any

from driftline import semconv
from driftline.instrumentation._aggregation import ModelTraits
from driftline.instrumentation._observe import CallSites, batch_shape, silenced
from driftline.instrumentation._runtime import (
    BINARY_CLASSES,
    Prepared,
    RuntimeInstrumentor,
    binary_margins,
    binary_probabilities,
    multiclass_scores,
    per_class_margins,
    per_class_probabilities,
    values,
)

# Booster.predict(data, start_iteration, num_iteration, raw_score, pred_leaf, pred_contrib):
# positions and keywords (with the parameter aliases LightGBM accepts in **kwargs).
RAW_SCORE_POSITION = 3
NOT_PREDICTION_POSITIONS = (4, 5)
RAW_SCORE_KEYWORDS = ("raw_score", "predict_raw_score", "is_predict_raw_score",
                      "predict_rawscore")
NOT_PREDICTION_KEYWORDS = ("pred_leaf", "pred_contrib", "predict_leaf_index",
                           "is_predict_leaf_index", "leaf_index", "predict_contrib",
                           "is_predict_contrib", "contrib")
TRAINING_METHODS = ("refit",)
READ_VALUES, READ_MARGINS, READ_NOTHING = "values", "margins", "nothing"
READS = (READ_VALUES, READ_MARGINS, READ_NOTHING)
# The objective parameter and its aliases, as LightGBM documents them.
OBJECTIVE_KEYS = ("objective", "objective_type", "app", "application", "loss")
BINARY_OBJECTIVES = ("binary",)
MULTICLASS_OBJECTIVES = ("multiclass", "softmax")
# One-vs-all: a probability per class, rows not summing to 1.
ONE_VS_ALL_OBJECTIVES = ("multiclassova", "multiclass_ova", "ova", "ovr")
# LightGBM names the features of a model trained without names Column_0, Column_1, ...
PLACEHOLDER_NAME = re.compile(r"Column_(\d+)")


class LightGBMInstrumentor(RuntimeInstrumentor):
    """Instruments ``lightgbm.Booster.predict``."""

    MODULE = "lightgbm"
    FRAMEWORK = semconv.FRAMEWORK_LIGHTGBM

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("lightgbm >= 4.0",)

    def _wrap_library(self, kwargs: dict[str, Any]) -> None:
        from lightgbm import Booster

        self._sites = {read: CallSites(self.FRAMEWORK) for read in READS}
        self._traits = {read: partial(booster_traits, read) for read in READS}
        self._wrap(Booster, "predict", partial(self._call, self._prepare))
        for method in TRAINING_METHODS:
            self._wrap(Booster, method, silenced)

    def _prepare(self, booster: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> Prepared | None:
        data = args[0] if args else kwargs.get("data")
        if isinstance(data, str | os.PathLike):
            return None
        rows, columns = batch_shape(data)
        read = (READ_NOTHING if _flag(args, kwargs, NOT_PREDICTION_POSITIONS,
                                      NOT_PREDICTION_KEYWORDS)
                else READ_MARGINS if _flag(args, kwargs, (RAW_SCORE_POSITION,),
                                           RAW_SCORE_KEYWORDS)
                else READ_VALUES)
        site = self._sites[read].get(booster, semconv.OPERATION_PREDICT, self._traits[read])
        return site, rows, columns, data, read != READ_NOTHING


def _flag(args: tuple[Any, ...], kwargs: dict[str, Any], positions: tuple[int, ...],
          keywords: tuple[str, ...]) -> bool:
    return any(len(args) > p and args[p] for p in positions) \
        or (bool(kwargs) and any(kwargs.get(k) for k in keywords))


def feature_names(booster: Any) -> list[str] | None:
    """The booster's feature names; None for LightGBM's placeholders ``Column_i``."""
    names = booster.feature_name()
    placeholders = all((found := PLACEHOLDER_NAME.fullmatch(name)) and int(found[1]) == i
                       for i, name in enumerate(names))
    return None if placeholders else list(names)


def objective_of(booster: Any) -> str:
    params = booster.params or {}
    objective = next((params[k] for k in OBJECTIVE_KEYS if k in params), "")
    # A model file's parameters may carry options after the name ("binary sigmoid:1").
    return objective.split()[0] if isinstance(objective, str) and objective else ""


def booster_traits(read: str, booster: Any) -> ModelTraits:
    names = feature_names(booster)
    if read == READ_NOTHING:
        return ModelTraits(False, None, names)
    objective = objective_of(booster)
    margins = read == READ_MARGINS
    if objective in BINARY_OBJECTIVES:
        return ModelTraits(True, BINARY_CLASSES, names, None,
                           binary_margins if margins else binary_probabilities)
    if objective in MULTICLASS_OBJECTIVES or objective in ONE_VS_ALL_OBJECTIVES:
        classes = tuple(range(booster.num_model_per_iteration()))
        read_outputs = multiclass_scores if objective in MULTICLASS_OBJECTIVES \
            else per_class_margins if margins else per_class_probabilities
        return ModelTraits(True, classes, names, None, read_outputs)
    return ModelTraits(False, None, names, None, values)
