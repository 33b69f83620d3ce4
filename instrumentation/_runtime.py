"""What the instrumentors of model runtimes (XGBoost, LightGBM, ONNX Runtime) share.

Each wraps a few methods of the runtime's classes with ``wrapt`` and hands every observed
call to the recorder through the span contract of ``_observe``, as the scikit-learn
instrumentor does: the same recorder, stream attributes and metric names, and nothing read
in the caller beyond the batch's shape. The shared ``OBSERVING`` flag makes a call
that goes through a scikit-learn wrapper (``XGBClassifier.predict``, ``LGBMClassifier``)
report once, as the wrapper, and silences the predictions a training loop makes.

The outputs of a runtime are read in the recorder thread by the helpers below: a binary
classifier's probability of class 1 (or its margin) becomes the two class scores, a
multiclass one's scores are softmaxed when they are margins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from driftline import semconv
from driftline.instrumentation import _env
from driftline.instrumentation._observe import (
    OBSERVING,
    CallSite,
    SpanGate,
    observe,
    unwrap_model_method,
    wrap_model_method,
)
from driftline.instrumentation.recorder import Recorder
from driftline.instrumentation.torch import class_scores

# What a runtime's ``prepare`` reads from one call: its site, rows, values per row, the
# inputs to hand over and whether its outputs are predictions. None: not observed.
Prepared = tuple[CallSite, int, int, Any, bool]
Prepare = Callable[[Any, tuple[Any, ...], dict[str, Any]], "Prepared | None"]
BINARY_CLASSES = (0, 1)


class RuntimeInstrumentor(BaseInstrumentor):
    """A ``BaseInstrumentor`` wrapping methods of a runtime's classes (``FRAMEWORK``, module
    ``MODULE``).

    ``instrument()`` does its work when the application imports ``MODULE`` (at once if it
    has): under ``opentelemetry-instrument``, which instruments every installed library at
    start, a service that never imports the runtime neither imports it nor runs a recorder
    for it. ``_wrap_library`` does the wrapping, the library imported.
    """

    FRAMEWORK = ""
    MODULE = ""
    _generation = 0  # instrument() and uninstrument() each start a new one
    _started = False

    def _instrument(self, **kwargs: Any) -> None:
        self._generation += 1
        generation = self._generation
        wrapt.register_post_import_hook(
            lambda _module: self._on_import(generation, kwargs), self.MODULE)

    def _on_import(self, generation: int, kwargs: dict[str, Any]) -> None:
        if generation != self._generation or self._started:
            return  # uninstrumented (or instrumented again) before the import
        self._scope = semconv.SCOPE_PREFIX + self.FRAMEWORK
        self._spans = SpanGate(trace.get_tracer(self._scope,
                                                tracer_provider=kwargs.get("tracer_provider")))
        self._recorder, self._owns_recorder = _env.recorder_from_kwargs(kwargs)
        self._wrapped: list[tuple[Any, str]] = []
        self._started = True
        self._wrap_library(kwargs)

    def _wrap_library(self, kwargs: dict[str, Any]) -> None:
        raise NotImplementedError

    def _wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        wrap_model_method(owner, name, wrapper)
        self._wrapped.append((owner, name))

    def _uninstrument(self, **kwargs: Any) -> None:
        self._generation += 1
        if not self._started:
            return
        self._started = False
        for owner, name in reversed(self._wrapped):
            unwrap_model_method(owner, name)
        self._wrapped.clear()
        _env.release_recorder(self._recorder, self._owns_recorder)

    @property
    def recorder(self) -> Recorder:
        return self._recorder

    def _call(self, prepare: Prepare, wrapped: Callable[..., Any], instance: Any,
              args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run ``wrapped``, observed unless nested in another observed call (or training),
        suppressed, or ``prepare`` declines it."""
        if instance is None or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        token = OBSERVING.set(False)
        try:
            prepared = prepare(instance, args, kwargs)
            if prepared is None:
                return wrapped(*args, **kwargs)
            site, rows, feature_count, inputs, predicts = prepared
            ids, time_ns = self._recorder.call_ids(rows)
            return observe(self._spans, site, rows, feature_count, wrapped, args, kwargs,
                           self._submit if predicts else self._submit_inputs, instance,
                           inputs, ids, time_ns)
        finally:
            OBSERVING.reset(token)

    def _submit(self, site: CallSite, model: Any, inputs: Any, outputs: Any, rows: int,
                duration_s: float, error_type: str | None, ids: Any, time_ns: int) -> None:
        # PredictCall's fields as a plain tuple: the recorder names them in its thread.
        self._recorder.submit((self._scope, model, site.traits, site.attributes, inputs,
                               outputs, rows, duration_s, error_type, ids, time_ns))

    def _submit_inputs(self, site: CallSite, model: Any, inputs: Any, outputs: Any,
                       rows: int, duration_s: float, error_type: str | None, ids: Any,
                       time_ns: int) -> None:
        """For calls whose outputs are not predictions (leaf indexes, contributions)."""
        self._submit(site, model, inputs, None, rows, duration_s, error_type, ids, time_ns)


# --- reading outputs, in the recorder thread -------------------------------------------------


def binary_probabilities(outputs: Any) -> np.ndarray:
    """P(class 1) per row as the scores of classes 0 and 1."""
    values = np.asarray(outputs, dtype=np.float64).ravel()
    return np.column_stack([1.0 - values, values])


def binary_margins(outputs: Any) -> np.ndarray:
    """A binary margin (log-odds of class 1) per row as the scores of classes 0 and 1."""
    margins = np.asarray(outputs, dtype=np.float64).ravel()
    return binary_probabilities(1.0 / (1.0 + np.exp(-margins)))


def multiclass_scores(outputs: Any) -> np.ndarray:
    """``[N, C]`` probabilities, or margins softmaxed into probabilities."""
    return class_scores(np.asarray(outputs, dtype=np.float64))


def per_class_probabilities(outputs: Any) -> np.ndarray:
    """``[N, C]`` one-vs-all probabilities, as they are (rows need not sum to 1)."""
    return np.asarray(outputs, dtype=np.float64)


def per_class_margins(outputs: Any) -> np.ndarray:
    """``[N, C]`` one-vs-all margins, each through the sigmoid."""
    return 1.0 / (1.0 + np.exp(-np.asarray(outputs, dtype=np.float64)))


def integer_labels(outputs: Any) -> np.ndarray:
    """Class indexes a runtime returns as floats (``multi:softmax``), as integers."""
    return np.asarray(outputs).ravel().astype(np.int64)


def values(outputs: Any) -> np.ndarray:
    """Regression outputs (every target's values, flattened)."""
    return np.asarray(outputs, dtype=np.float64).ravel()
