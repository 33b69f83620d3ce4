"""The span contract around one observed model call, shared by every instrumentor.

Span ``"{operation} {model}"``, kind INTERNAL, the model attributes, ``ml.batch.size`` and
``ml.feature.count``; on failure status ERROR, ``error.type`` and the exception recorded,
then re-raised unchanged. Either way the call is handed to ``submit`` with its outputs (None
on failure), duration and error type.

This runs inside every ``predict``, so it does as little as it can: what a model's calls
share (attributes, span name) is computed once per model object (``CallSites``), and when
the tracer cannot sample the span (``ALWAYS_OFF``, a parent-based sampler without a sampled
parent, no SDK) no span is started at all (``SpanGate``).
"""

from __future__ import annotations

import copy
import functools
import time
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from types import FunctionType, MethodType
from typing import Any

import numpy as np
import wrapt
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from driftline import identity, semconv
from driftline.instrumentation.recorder import Attributes

# False while an observed model call runs (an instrumented library call, or an explicit
# driftline.monitor / driftline.observe call), so the model calls made inside it (a
# pipeline's last step; a forest's trees; XGBClassifier.predict's Booster) are not reported
# again: one call, one report, whichever path observed it first. True outside; the wrapped
# methods test it first (``wrap_model_method``).
OBSERVING: ContextVar[bool] = ContextVar("driftline_observing", default=True)

# The keys of a context whose instrumentation is suppressed:
# opentelemetry.instrumentation.utils honours both (the plain one for backward compatibility).
SUPPRESS_KEY = _SUPPRESS_INSTRUMENTATION_KEY
SUPPRESS_KEY_PLAIN = "suppress_instrumentation"
# A span whose sampler always drops it, or drops it unless its parent was sampled.
_ALWAYS_OFF = "AlwaysOffSampler"
_NEVER, _WITH_SAMPLED_PARENT, _ASK = "never", "with sampled parent", "ask"
NEVER_SAMPLED = _NEVER  # SpanGate.mode of a tracer that samples no span

@dataclass(frozen=True, slots=True)
class CallSite:
    """What every call of one model object and operation shares."""

    attributes: Attributes  # the recorder's stream key
    span_name: str
    span_attributes: dict[str, Any]
    traits: Any  # Callable[[model], ModelTraits], called in the recorder thread
    scope: str = ""  # the instrumentation scope its metrics are exported under
    sample: Any = None  # its stream's HandOffSample, when built for Recorder.submit_site


# Hands one call to the recorder: (site, model, inputs, outputs, rows, duration_s,
# error_type, prediction ids, time_unix_nano).
Submit = Callable[[CallSite, Any, Any, Any, int, float, "str | None", Any, int], None]


def wrap_model_method(owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
    """Make ``owner.name`` call ``wrapper(wrapped, instance, args, kwargs)`` (wrapt's
    convention: ``wrapped`` is bound) outside observed calls; inside one (``OBSERVING`` is
    false), the method runs as it is, so the 50 trees a forest's ``predict_proba`` calls
    pay no wrapper of ours each. ``observe_model_method`` does the same in one frame."""
    _replace_method(owner, name, lambda original: _observed_function(original, wrapper),
                    wrapper)


def observe_model_method(owner: Any, name: str,
                         observed_for: Callable[[Callable[..., Any]], Callable[..., Any]]
                         ) -> None:
    """Make ``owner.name`` the function ``observed_for(original)`` returns: called as
    ``observed(self, *args, **kwargs)``, it tests ``OBSERVING`` itself and runs the method
    as ``original(self, *args, **kwargs)``. One frame where ``wrap_model_method`` makes two
    and binds a method: right after a 10 000-row ``predict_proba`` that second frame cost
    3 us (issue 17)."""
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:  # another descriptor, through wrapt
        if instance is None:
            return wrapped(*args, **kwargs)
        return observed_for(lambda _, *args, **kwargs: wrapped(*args, **kwargs))(
            instance, *args, **kwargs)
    _replace_method(owner, name, observed_for, wrapper)


def _replace_method(owner: Any, name: str,
                    observed_for: Callable[[Callable[..., Any]], Callable[..., Any]],
                    wrapper: Callable[..., Any]) -> None:
    """A plain function is replaced by the plain function ``observed_for`` makes of it, and
    scikit-learn's ``available_if`` descriptor (a pipeline's ``predict_proba``) by a copy
    holding one as its ``fn``: wrapt's ``FunctionWrapper`` builds a bound wrapper at each
    attribute access, which cost a one-row ``predict_proba`` about 16 000 more
    instructions (issue 17). Any other descriptor (a classmethod) is wrapped by wrapt, with
    ``wrapper`` (wrapt's convention)."""
    original = vars(owner)[name]
    if type(original) is FunctionType:
        observed = _named_after(observed_for(original), original)
    elif type(getattr(original, "fn", None)) is FunctionType and hasattr(original, "__get__"):
        observed = copy.copy(original)  # available_if: it checks, then binds its ``fn``
        observed.fn = _named_after(observed_for(original.fn), original.fn)
    else:
        wrapt.wrap_object(owner, name, wrapt.FunctionWrapper, (wrapper,),
                          {"enabled": OBSERVING.get})
        return
    observed._driftline_original = original
    setattr(owner, name, observed)


def _named_after(observed: Callable[..., Any], original: FunctionType) -> Callable[..., Any]:
    """``observed`` with ``original``'s name, docstring, ``__wrapped__`` and signature."""
    return functools.update_wrapper(observed, original)


def _observed_function(original: FunctionType, wrapper: Callable[..., Any]
                       ) -> Callable[..., Any]:
    observing = OBSERVING.get

    def observed(self: Any, *args: Any, **kwargs: Any) -> Any:
        if observing():
            return wrapper(MethodType(original, self), self, args, kwargs)
        return original(self, *args, **kwargs)
    return observed


def unwrap_model_method(owner: Any, name: str) -> None:
    """Undo ``wrap_model_method``: the class gets back exactly what it held. Not
    ``opentelemetry.instrumentation.utils.unwrap``, which reads the wrapper through
    ``getattr`` and so put back the function under a descriptor (scikit-learn's
    ``available_if``: ``hasattr(pipeline, "predict_proba")`` was then true for a pipeline
    whose last step has none)."""
    wrapper = vars(owner).get(name)
    if isinstance(wrapper, wrapt.FunctionWrapper):
        setattr(owner, name, wrapper.__wrapped__)
    elif hasattr(wrapper, "_driftline_original"):
        setattr(owner, name, wrapper._driftline_original)


def silenced(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
    """A ``wrapt`` wrapper for training methods: the predictions they make (a search's
    cross-validation, a custom objective's margins) are not traffic and are not observed."""
    token = OBSERVING.set(False)
    try:
        return wrapped(*args, **kwargs)
    finally:
        OBSERVING.reset(token)


def batch_shape(inputs: Any) -> tuple[int, int]:
    """(rows, values per row) of a table, array or list of rows, read from its shape or
    length only; (0, 0) when it has neither."""
    if type(inputs) is np.ndarray and inputs.ndim == 2:
        return inputs.shape
    try:
        shape = getattr(inputs, "shape", None)
        if shape is not None and len(shape) >= 1:
            return int(shape[0]), int(shape[1]) if len(shape) > 1 else 1
        rows = len(inputs)
        first = inputs[0] if rows else ()
        return rows, len(first) if hasattr(first, "__len__") else 1
    except Exception:  # an unknown shape (a lazy frame): the library judges the input
        return 0, 0


def _context_getter() -> Callable[[], Any]:
    """The current OpenTelemetry context's getter: the ContextVar's own (C) ``get`` when the
    runtime context is the default ``contextvars`` one, sparing two Python frames a call;
    the API's ``get_current`` for any other runtime context."""
    variable = getattr(getattr(context_api, "_RUNTIME_CONTEXT", None), "_current_context", None)
    return variable.get if isinstance(variable, ContextVar) else context_api.get_current


# A wrapper's instrumentation is suppressed when this context (a dict) holds SUPPRESS_KEY or
# SUPPRESS_KEY_PLAIN: ``is_instrumentation_enabled`` without its frames and its two reads.
current_context = _context_getter()


def model_attributes(model_identity: identity.ModelIdentity, framework: str,
                     operation: str) -> Attributes:
    return (
        (semconv.ML_MODEL_NAME, model_identity.name),
        (semconv.ML_MODEL_VERSION, model_identity.version),
        (semconv.ML_MODEL_FRAMEWORK, framework),
        (semconv.ML_OPERATION, operation),
    )


class CallSites:
    """``CallSite`` per (model object, operation), built at the model's first call.

    Keyed by the object's id and checked through a weak reference, so a model collected and
    a new one at its address do not share an entry. ``driftline.register`` forgets every
    site, so a model named after its first call is seen at its next one.
    ``hand_off_sample`` (``Recorder.hand_off_sample``) gives each site its stream's sample,
    for ``Recorder.submit_site``.
    """

    def __init__(self, framework: str,
                 hand_off_sample: Callable[[str, Attributes], Any] | None = None) -> None:
        self._framework = framework
        self._scope = semconv.SCOPE_PREFIX + framework
        self._hand_off_sample = hand_off_sample
        # Per operation: model id -> (weak reference to the model, its site).
        self._sites: dict[str, dict[int, tuple[Any, CallSite]]] = {}
        identity.on_register(self)

    def of(self, operation: str) -> dict[int, tuple[Any, CallSite]]:
        """The sites of ``operation`` by model id, for a wrapper to look up in its own frame
        (an entry is its model's when the weak reference returns the model); ``get`` on a
        miss."""
        return self._sites.setdefault(operation, {})

    def get(self, model: Any, operation: str, traits: Any, named: Any = None) -> CallSite:
        """The site of ``model``'s ``operation``; ``named`` is the object holding the
        identity when it is not the model itself (a compiled torch module)."""
        sites = self.of(operation)
        entry = sites.get(id(model))
        if entry is not None and entry[0]() is model:
            return entry[1]
        named = model if named is None else named
        attributes = model_attributes(identity.identity_of(named), self._framework, operation)
        values = dict(attributes)
        sample = self._hand_off_sample(self._scope, attributes) \
            if self._hand_off_sample is not None else None
        site = CallSite(attributes, f"{operation} {values[semconv.ML_MODEL_NAME]}", values,
                        traits, self._scope, sample)
        try:
            ref = weakref.ref(model, _forget(sites, id(model)))
        except TypeError:  # not weakly referenceable: built again at each call
            return site
        sites[id(model)] = (ref, site)
        return site

    def registered(self, model: Any) -> None:
        """``driftline.register`` named ``model``: its sites (and, as the object holding a
        compiled module's identity is not known here, every other) are built again."""
        for sites in self._sites.values():
            sites.clear()


def _forget(sites: dict[int, tuple[Any, CallSite]], key: int) -> Callable[[Any], None]:
    def forget(ref: Any) -> None:
        entry = sites.get(key)
        if entry is not None and entry[0] is ref:
            del sites[key]
    return forget


class SpanGate:
    """Whether a call needs a span at all, decided once per tracer from its sampler.

    A ``ProxyTracer`` (no provider set when instrumenting) is resolved again at each call
    until the application sets one.
    """

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self._resolved: Any = None
        self._resolved_mode = _ASK
        # "" for a proxy: observe() then asks resolve() at each call.
        self.mode = "" if isinstance(tracer, trace.ProxyTracer) else _sampling_mode(tracer)
        self.tracer: Any = tracer

    def resolve(self) -> str:
        """The mode of the tracer a ``ProxyTracer`` delegates to now (``self.tracer``)."""
        tracer = getattr(self._tracer, "_tracer", self._tracer)
        if tracer is not self._resolved:
            self._resolved, self.tracer = tracer, tracer
            self._resolved_mode = _sampling_mode(tracer)
        return self._resolved_mode


def _sampling_mode(tracer: Any) -> str:
    if isinstance(tracer, trace.NoOpTracer):
        return _NEVER
    sampler = getattr(tracer, "sampler", None)  # the SDK's Tracer
    if sampler is None:
        return _ASK
    if _always_off(sampler):
        return _NEVER
    parent_based = [getattr(sampler, name, None)
                    for name in ("_root", "_remote_parent_not_sampled",
                                 "_local_parent_not_sampled")]
    if all(s is not None and _always_off(s) for s in parent_based):
        return _WITH_SAMPLED_PARENT
    return _ASK


def _always_off(sampler: Any) -> bool:
    describe = getattr(sampler, "get_description", None)
    return callable(describe) and describe() == _ALWAYS_OFF


def observe(gate: SpanGate, site: CallSite, rows: int, feature_count: int,
            wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
            submit: Submit, model: Any, inputs: Any, ids: Any, time_ns: int) -> Any:
    """Run ``wrapped`` inside the model span (if one can be sampled) and hand the outcome
    to ``submit``."""
    mode = gate.mode or gate.resolve()
    if mode == _NEVER or (mode == _WITH_SAMPLED_PARENT
                          and not trace.get_current_span().get_span_context().trace_flags.sampled):
        start = time.perf_counter()
        try:
            outputs = wrapped(*args, **kwargs)
        except BaseException as exc:
            submit(site, model, inputs, None, rows, time.perf_counter() - start,
                   type(exc).__qualname__, ids, time_ns)
            raise
        submit(site, model, inputs, outputs, rows, time.perf_counter() - start, None, ids,
               time_ns)
        return outputs
    # Attributes at the start, as samplers expect them (and cheaper than setting them after).
    attributes = dict(site.span_attributes)
    attributes[semconv.ML_BATCH_SIZE] = rows
    attributes[semconv.ML_FEATURE_COUNT] = feature_count
    span = gate.tracer.start_span(site.span_name, kind=SpanKind.INTERNAL, attributes=attributes,
                                  record_exception=False, set_status_on_exception=False)
    recording = span.is_recording()
    token = context_api.attach(trace.set_span_in_context(span))
    try:
        start = time.perf_counter()
        try:
            outputs = wrapped(*args, **kwargs)
        except BaseException as exc:
            duration_s = time.perf_counter() - start
            error_type = type(exc).__qualname__
            if recording:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                span.set_attribute(semconv.ERROR_TYPE, error_type)
            submit(site, model, inputs, None, rows, duration_s, error_type, ids, time_ns)
            raise
        submit(site, model, inputs, outputs, rows, time.perf_counter() - start, None, ids,
               time_ns)
        return outputs
    finally:
        context_api.detach(token)
        span.end()
