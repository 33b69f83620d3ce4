"""scikit-learn instrumentation: a span and distribution metrics for every model call.

Every ``predict``, ``predict_proba``, ``predict_log_proba`` and ``decision_function`` that a
subclass of ``sklearn.base.BaseEstimator`` defines is wrapped, including classes defined
after instrumentation (a hook on ``BaseEstimator.__init_subclass__``). A call that goes
through nested estimators (a pipeline calling its last step) yields one span and one set of
metrics, for the outermost model; predictions made inside ``fit``, ``partial_fit``,
``fit_predict``, ``fit_transform`` and ``score`` are training, not traffic, and are not
observed. Usage::

    SklearnInstrumentor().instrument(tracer_provider=..., metric_exporter=...)

``metric_exporter`` (an SDK ``MetricExporter``) or ``recorder`` replace the exporter that
``OTEL_METRICS_EXPORTER`` would choose; tests pass their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from time import perf_counter
from types import MethodType
from typing import Any

import numpy as np
import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from driftline import multivariate, semconv
from driftline.instrumentation import _env
from driftline.instrumentation._aggregation import ModelTraits
from driftline.instrumentation._observe import (
    NEVER_SAMPLED,
    OBSERVING,
    SUPPRESS_KEY,
    SUPPRESS_KEY_PLAIN,
    CallSites,
    SpanGate,
    current_context,
    observe,
    observe_model_method,
    unwrap_model_method,
    wrap_model_method,
)
from driftline.instrumentation._observe import batch_shape as _shape
from driftline.instrumentation._observe import silenced as _silenced
from driftline.instrumentation.recorder import Recorder

OPERATIONS = (
    semconv.OPERATION_PREDICT,
    semconv.OPERATION_PREDICT_PROBA,
    "predict_log_proba",
    semconv.OPERATION_DECISION_FUNCTION,
)
# Predictions made while training or scoring (a search's cross-validation, ``score`` on a
# test set) are not production traffic: these methods silence everything they call.
TRAINING_METHODS = ("fit", "partial_fit", "fit_predict", "fit_transform", "score")
SCOPE = semconv.SCOPE_PREFIX + semconv.FRAMEWORK_SKLEARN
_SUBCLASS_HOOK = "__init_subclass__"

# False while a wrapped call runs, so the estimators it calls inside are not observed again;
# shared with every instrumentor and the explicit API (one report per call).
_observing = OBSERVING


class SklearnInstrumentor(BaseInstrumentor):
    """Instruments scikit-learn estimators, pipelines and searches."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("scikit-learn >= 1.3",)

    def _instrument(self, **kwargs: Any) -> None:
        from sklearn.base import BaseEstimator

        self._spans = SpanGate(trace.get_tracer(SCOPE,
                                                tracer_provider=kwargs.get("tracer_provider")))
        self._recorder, self._owns_recorder = _env.recorder_from_kwargs(kwargs)
        self._sites = CallSites(semconv.FRAMEWORK_SKLEARN, self._recorder.hand_off_sample)
        self._wrapped: list[tuple[type, str]] = []
        self._wrapped_owners: set[type] = set()
        for cls in _subclasses(BaseEstimator):
            self._wrap_class(cls)
        self._hook_was_own = _SUBCLASS_HOOK in vars(BaseEstimator)
        wrapt.wrap_function_wrapper(BaseEstimator, _SUBCLASS_HOOK, self._on_new_subclass)

    def _uninstrument(self, **kwargs: Any) -> None:
        from sklearn.base import BaseEstimator

        unwrap(BaseEstimator, _SUBCLASS_HOOK)
        if not self._hook_was_own:
            delattr(BaseEstimator, _SUBCLASS_HOOK)  # inherited before: inherit again
        for cls, name in reversed(self._wrapped):
            unwrap_model_method(cls, name)
        self._wrapped.clear()
        self._wrapped_owners.clear()
        _env.release_recorder(self._recorder, self._owns_recorder)

    @property
    def recorder(self) -> Recorder:
        return self._recorder

    def _on_new_subclass(self, wrapped: Callable[..., Any], cls: type, args: Any,
                         kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        self._wrap_class(cls)
        return result

    def _wrap_class(self, cls: type) -> None:
        """Wrap the operations ``cls`` or its mixins define, each on the class defining it.

        Inherited methods are wrapped once, where they live (``LinearClassifierMixin.predict``
        serves ``LogisticRegression``); mixins are not ``BaseEstimator`` subclasses.
        """
        for owner in cls.__mro__:
            if owner is object or owner in self._wrapped_owners:
                continue
            self._wrapped_owners.add(owner)
            for operation in OPERATIONS:
                if operation in vars(owner):
                    observe_model_method(owner, operation, self._observed_for(operation))
                    self._wrapped.append((owner, operation))
            for method in TRAINING_METHODS:
                if method in vars(owner):
                    wrap_model_method(owner, method, _silenced)
                    self._wrapped.append((owner, method))

    def _observed_for(self, operation: str
                      ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """What replaces one operation's methods (``observe_model_method``). The calls an
        observed call makes inside (a pipeline's steps, ``predict_proba`` calling
        ``decision_function``, a forest's trees) run as they are. The observing test, the
        suppression test, the site lookup and, when the tracer samples no span,
        ``observe``'s unspanned path are written out in this one frame: each frame among
        scikit-learn's work costs several times what it does in a loop (issue 17)."""
        traits = decision_traits if operation == semconv.OPERATION_DECISION_FUNCTION \
            else model_traits
        sites, recorder, spans = self._sites, self._recorder, self._spans
        known, hand_off, observing = sites.of(operation), recorder.submit_site, _observing.get

        def observed_for(original: Callable[..., Any]) -> Callable[..., Any]:
            def observed(model: Any, *args: Any, **kwargs: Any) -> Any:
                if not observing():
                    return original(model, *args, **kwargs)
                current = current_context()
                if current and (current.get(SUPPRESS_KEY) or current.get(SUPPRESS_KEY_PLAIN)):
                    return original(model, *args, **kwargs)
                token = _observing.set(False)
                try:
                    inputs = args[0] if args else kwargs.get("X")
                    rows, feature_count = inputs.shape \
                        if type(inputs) is np.ndarray and inputs.ndim == 2 else _shape(inputs)
                    ids, time_ns = recorder.call_ids(rows) if recorder.records_on else ((), 0)
                    entry = known.get(id(model))
                    site = entry[1] if entry is not None and entry[0]() is model \
                        else sites.get(model, operation, traits)
                    if spans.mode is not NEVER_SAMPLED:
                        return observe(spans, site, rows, feature_count,
                                       MethodType(original, model), args, kwargs, hand_off,
                                       model, inputs, ids, time_ns)
                    start = perf_counter()
                    try:
                        outputs = original(model, *args, **kwargs)
                    except BaseException as exc:
                        hand_off(site, model, inputs, None, rows, perf_counter() - start,
                                 type(exc).__qualname__, ids, time_ns)
                        raise
                    hand_off(site, model, inputs, outputs, rows, perf_counter() - start, None,
                             ids, time_ns)
                    return outputs
                finally:
                    _observing.reset(token)
            return observed
        return observed_for


def model_traits(estimator: Any) -> ModelTraits:
    """Classifier or not is decided from the estimator, never guessed from its outputs."""
    from sklearn.base import is_classifier

    try:
        classifier = bool(is_classifier(estimator))
    except Exception:  # an exotic estimator without tags: read its outputs as values
        classifier = False
    pca = multivariate.attached(estimator)
    return ModelTraits(classifier, getattr(estimator, "classes_", None),
                       getattr(estimator, "feature_names_in_", None),
                       table_derivations=(pca.derive,) if pca is not None else ())


def decision_traits(estimator: Any) -> ModelTraits:
    """``model_traits`` for ``decision_function``: a binary classifier's one score per row
    (positive for ``classes_[1]``) is read as the two class scores ``(-score, score)``, so
    its label is the class scikit-learn predicts, not the score."""
    traits = model_traits(estimator)
    if traits.is_classifier and traits.classes is not None and len(traits.classes) == 2:
        return dataclasses.replace(traits, read_outputs=_binary_scores)
    return traits


def _binary_scores(raw: Any) -> np.ndarray:
    scores = np.asarray(raw, dtype=np.float64)
    return np.column_stack((-scores, scores)) if scores.ndim == 1 else scores


def _subclasses(root: type) -> list[type]:
    """``root`` and all its subclasses, parents before children."""
    ordered, seen, stack = [root], {root}, [root]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                ordered.append(sub)
                stack.append(sub)
    return ordered
