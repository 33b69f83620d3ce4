"""The explicit API: report any model call that auto-instrumentation cannot see.

Two forms, the same telemetry as the instrumentors (span, metrics, ``ml.prediction``
records) through the same recorder::

    with driftline.monitor("churn", version="3") as mon:      # one per call
        mon.log(features_df)                                  # role="feature"
        mon.log(review_texts, name="review", data_type="text")
        mon.log(labels, role="prediction")

    @driftline.observe(model="churn", version="3")
    def predict(frame): ...                                   # inputs and return value read

The caller only hands references over (a list append per ``log``, one deque append per
call); reading them into columns, text descriptors and projections happens in the
recorder thread (``driftline.derived``). Library calls made inside an explicit call
(scikit-learn ``predict`` in an ``@observe``-d function) are not reported again: the
explicit call is the report. Explicit calls always report, nested or not.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import wrapt
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode

from driftline import derived, identity, semconv
from driftline.columns import NUMERIC_KINDS
from driftline.instrumentation import _env
from driftline.instrumentation._aggregation import ModelTraits
from driftline.instrumentation._observe import (
    _NEVER,
    _WITH_SAMPLED_PARENT,
    OBSERVING,
    CallSite,
    SpanGate,
    model_attributes,
)
from driftline.instrumentation._observe import observe as observe_call
from driftline.labels import class_labels

SCOPE = semconv.SCOPE_EXPLICIT
ROLE_FEATURE = "feature"
ROLE_PREDICTION = "prediction"
ROLE_TARGET = "target"
ROLES = (ROLE_FEATURE, ROLE_PREDICTION)
# Distinct (model, version, operation, framework) whose settings are kept; past it, a
# model's state is built per call (the recorder folds streams past its own cap anyway).
MAX_MODELS = 256


class MonitorError(ValueError):
    """A misuse of ``monitor``/``observe``, raised in the caller with what to do."""


class Logged:
    """One call's logged items, ``(data, name, data_type)``: references only.

    ``shape``/``__getitem__`` let the prediction records take a sample of its rows.
    """

    __slots__ = ("items", "rows")

    def __init__(self, items: list[tuple[Any, str | None, str | None]], rows: int) -> None:
        self.items, self.rows = items, rows

    @property
    def shape(self) -> tuple[int]:
        return (self.rows,)

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, rows: np.ndarray) -> Logged:
        return Logged([(_take(data, rows), name, data_type)
                       for data, name, data_type in self.items], len(rows))


def _take(data: Any, rows: np.ndarray) -> Any:
    """Rows ``rows`` of one logged item (a one-row item as it is)."""
    if isinstance(data, str | bytes | Mapping) or np.ndim(data) == 0:
        return data
    if hasattr(data, "iloc"):
        return data.iloc[rows]
    if hasattr(data, "shape"):
        return data[rows]
    return [data[i] for i in rows.tolist()]


def rows_of(data: Any, data_type: str | None = None) -> int:
    """Rows of a logged item without reading it: a length or a shape, 1 for one row (a
    sequence declared as such: one flat list or 1-D array is one row)."""
    shape = getattr(data, "shape", None)  # arrays and tables first: the common case
    if data_type == derived.DATA_TYPE_SEQUENCE:
        if shape is not None:
            return int(shape[0]) if len(shape) > 1 else 1
        return len(data) if isinstance(data, list | tuple) and data \
            and isinstance(data[0], list | tuple | np.ndarray) else 1
    if shape is not None:
        return int(shape[0]) if len(shape) else 1
    if isinstance(data, str | bytes | dict | Mapping):
        return 1
    try:
        return len(data)
    except TypeError:
        return 1


def _width(data: Any) -> int:
    shape = getattr(data, "shape", None)
    if shape is not None:
        return int(shape[1]) if len(shape) > 1 else 1
    if isinstance(data, Mapping):
        return len(data)
    if isinstance(data, list | tuple) and data and isinstance(data[0], Mapping):
        return len(data[0])
    return 1


class ModelState:
    """What every call of one explicitly monitored model shares: its span site, how its
    data is read (in the recorder thread) and its traits."""

    def __init__(self, site: CallSite, reader: derived.ColumnReader,
                 classes: Sequence[Any] | None, prediction_type: str | None,
                 settings: Any) -> None:
        self.site = site
        self.reader = reader
        self.classes = tuple(classes) if classes is not None else None
        self.prediction_type = prediction_type
        self.settings = settings
        # One traits object per way of handing data over: consecutive calls share the
        # recorder's staging lists.
        self.logged_traits = ModelTraits(self.classes is not None, self.classes, None,
                                         self.read_logged, self.read_logged_outputs)
        self.raw_traits = ModelTraits(self.classes is not None, self.classes, None,
                                      self.read_raw, self.read_outputs)
        # Table derivations need every column of a call read by the reader.
        self.reads_arrays_whole = not self.reader.table_derivations
        # A plain numeric 2-D array of features: staged as one array, as scikit-learn's are.
        self.array_traits = ModelTraits(self.classes is not None, self.classes, None, None,
                                        self.read_outputs)

    def read_logged(self, logged: Logged) -> derived.Columns:
        return self.reader.read(logged.items, logged.rows)

    def read_raw(self, inputs: Any) -> derived.Columns:
        return self.reader.read(((inputs, None, None),))

    def read_logged_outputs(self, logged: Logged) -> np.ndarray:
        [(data, _, data_type)] = logged.items
        return self.read_outputs(data, data_type)

    def read_outputs(self, data: Any, data_type: str | None = None) -> np.ndarray:
        """A prediction as labels (1-D), values (1-D) or class scores (2-D, ``classes``)."""
        if isinstance(data, Mapping):
            raise derived.LoggedDataError("a prediction must be a value, a batch of values "
                                          "or a [rows, classes] array of scores, not a dict")
        values = data.to_numpy() if hasattr(data, "to_numpy") else np.asarray(data)
        if values.ndim == 0:
            values = values.reshape(1)
        data_type = data_type or self.prediction_type
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if data_type == derived.DATA_TYPE_CATEGORICAL:
            return class_labels(values)
        if data_type == derived.DATA_TYPE_NUMERICAL or values.ndim == 2:
            return values.astype(np.float64)
        return values


def _state_traits(state: ModelState) -> ModelTraits:
    return state.logged_traits


def _raw_traits(state: ModelState) -> ModelTraits:
    return state.raw_traits


def _array_traits(state: ModelState) -> ModelTraits:
    return state.array_traits


def _plain_array(data: Any) -> bool:
    """A numeric 2-D NumPy array: the recorder stages it whole, with no reader."""
    return type(data) is np.ndarray and data.ndim == 2 and data.dtype.kind in NUMERIC_KINDS


class Monitor:
    """One monitored call: ``log`` what it saw and produced, inside ``with``.

    The span covers the ``with`` block; an exception in it marks the span and the
    call's ``error.type`` and propagates. ``prediction_ids`` are the call's row IDs after
    the block (empty while ``ml.prediction`` records are off).
    """

    __slots__ = (
        "_context",
        "_explicit",
        "_features",
        "_prediction",
        "_span",
        "_start",
        "_state",
        "_token",
        "prediction_ids",
    )

    def __init__(self, explicit: Explicit, state: ModelState) -> None:
        self._explicit = explicit
        self._state = state
        self._features: list[tuple[Any, str | None, str | None]] = []
        self._prediction: tuple[Any, str | None, str | None] | None = None
        self._span: Any = None
        self._token: Any = None
        self._context: Any = None
        self._start = 0.0
        self.prediction_ids: Sequence[str] = ()

    def log(self, data: Any, name: str | None = None, role: str = ROLE_FEATURE,
            data_type: str | None = None) -> None:
        """Hand over ``data`` (a scalar, list, array, Series, DataFrame, dict as one row,
        list of dicts): a reference is kept, nothing is read here."""
        if data_type is not None and data_type not in derived.DATA_TYPES \
                and data_type not in self._state.reader.derivations:
            derived.check_data_type(data_type, self._state.reader.derivations)
        if role == ROLE_FEATURE:
            self._features.append((data, name, data_type))
        elif role == ROLE_PREDICTION:
            if self._prediction is not None:
                raise MonitorError("monitor.log: one prediction per call; log a [rows, "
                                   "classes] array of scores with classes= given to "
                                   "monitor(), or the labels, not both")
            self._prediction = (data, name, data_type)
        elif role == ROLE_TARGET:
            raise MonitorError("monitor.log: role 'target': labels are joined with "
                               "predictions by ID; send them with driftline."
                               "record_ground_truth(mon.prediction_ids, labels)")
        else:
            raise MonitorError(f"monitor.log: unknown role {role!r}; use one of "
                               f"{', '.join(ROLES)}")

    def __enter__(self) -> Monitor:
        self._token = OBSERVING.set(False)
        gate = self._explicit.gate
        mode = gate.mode or gate.resolve()
        if not (mode == _NEVER or (mode == _WITH_SAMPLED_PARENT and not trace.get_current_span()
                                   .get_span_context().trace_flags.sampled)):
            self._span = gate.tracer.start_span(
                self._state.site.span_name, kind=SpanKind.INTERNAL,
                attributes=self._state.site.span_attributes, record_exception=False,
                set_status_on_exception=False)
            self._context = context_api.attach(trace.set_span_in_context(self._span))
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        duration_s = time.perf_counter() - self._start
        try:
            first = self._features[0] if self._features else self._prediction
            rows = 0 if first is None else rows_of(first[0], first[2])
            error_type = exc_type.__qualname__ if exc_type is not None else None
            recorder = self._explicit.recorder
            ids, time_ns = recorder.call_ids(rows)
            self.prediction_ids = ids
            state = self._state
            features, prediction = self._features, self._prediction
            if len(features) == 1 and features[0][1] is None and features[0][2] is None \
                    and _plain_array(features[0][0]) and state.reads_arrays_whole \
                    and (prediction is None or prediction[2] is None):
                traits: Any = _array_traits
                inputs: Any = features[0][0]
                outputs = prediction[0] if prediction is not None else None
            else:
                traits, inputs = _state_traits, Logged(features, rows)
                outputs = Logged([prediction], rows) if prediction is not None else None
            recorder.submit((SCOPE, state, traits, state.site.attributes, inputs, outputs,
                             rows, duration_s, error_type, ids, time_ns))
            span = self._span
            if span is not None:
                if span.is_recording():
                    span.set_attribute(semconv.ML_BATCH_SIZE, rows)
                    span.set_attribute(semconv.ML_FEATURE_COUNT,
                                       sum(_width(item[0]) for item in self._features))
                    if exc is not None:
                        span.record_exception(exc)
                        span.set_status(Status(StatusCode.ERROR, str(exc)))
                        span.set_attribute(semconv.ERROR_TYPE, error_type)
                context_api.detach(self._context)
                span.end()
        finally:
            OBSERVING.reset(self._token)
            self._span = self._context = self._token = None


class Explicit:
    """The explicit API over one recorder and tracer provider.

    ``driftline.monitor``/``driftline.observe`` use a default one built at first use (the
    global tracer provider, the recorder ``OTEL_*`` describe); tests and applications that
    hand their own exporter build their own: ``Explicit(tracer_provider=...,
    metric_exporter=...)`` or ``recorder=...``. ``derivations`` and ``table_derivations``
    add derived columns (see ``driftline.derived.ColumnReader``) to every model's.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._derivations = dict(kwargs.get("derivations") or {})
        self._table_derivations = tuple(kwargs.get("table_derivations") or ())
        self.gate = SpanGate(trace.get_tracer(SCOPE,
                                              tracer_provider=kwargs.get("tracer_provider")))
        self.recorder, self._owns_recorder = _env.recorder_from_kwargs(kwargs)
        self._models: dict[tuple[str, str, str, str, Any], ModelState] = {}
        # monitor() of a model by name without settings, keyed by its arguments as given.
        self._named: dict[tuple[str, str | None, str, str | None], ModelState] = {}
        self._lock = threading.Lock()

    def shutdown(self) -> None:
        """Flush what was handed over; shut the recorder down if this object made it."""
        _env.release_recorder(self.recorder, self._owns_recorder)

    def state(self, model: Any, version: str | None, operation: str, framework: str | None,
              data_types: Mapping[str, str] | None, classes: Sequence[Any] | None,
              reference: Any, prediction_type: str | None) -> ModelState:
        """The model's state, built at its first call with these settings (kept in the state,
        so a reference profile's id stays its key while cached)."""
        name = model if isinstance(model, str) else None
        if name is None:
            found = identity.identity_of(model)
            name, version = found.name, found.version if version is None else version
        settings = (data_types, classes, reference, prediction_type)
        key = (name, "" if version is None else str(version), operation,
               framework or semconv.FRAMEWORK_CUSTOM,
               None if settings == _NO_SETTINGS else _settings_key(settings))
        state = self._models.get(key)
        if state is not None:
            return state
        if not name:
            raise MonitorError("driftline.monitor: the model name must be a non-empty string")
        derived.check_data_type(prediction_type, derived.BUILT_IN_DERIVATIONS,
                                "prediction_type")
        vocabularies = _vocabularies(reference)
        attributes = model_attributes(identity.ModelIdentity(*key[:2]), key[3], operation)
        site = CallSite(attributes, f"{operation} {name}", dict(attributes), _state_traits)
        try:
            reader = derived.ColumnReader(data_types, vocabularies,
                                          derivations=self._derivations,
                                          table_derivations=self._table_derivations)
        except derived.LoggedDataError as exc:
            raise MonitorError(f"driftline.monitor: {exc}") from exc
        state = ModelState(site, reader, classes, prediction_type, settings)
        with self._lock:
            if key in self._models or len(self._models) < MAX_MODELS:
                self._models[key] = state
        return state

    def monitor(self, model: Any, version: str | None = None, *,
                operation: str = semconv.OPERATION_PREDICT, framework: str | None = None,
                data_types: Mapping[str, str] | None = None,
                classes: Sequence[Any] | None = None, reference: Any = None) -> Monitor:
        """A ``Monitor`` for one call of ``model`` (a name, or a model object whose
        ``driftline.register`` identity or class name names it)."""
        if type(model) is str and data_types is None and classes is None \
                and reference is None:  # the usual call: one lookup
            state = self._named.get((model, version, operation, framework))
            if state is None:
                state = self._named[(model, version, operation, framework)] = self.state(
                    model, version, operation, framework, None, None, None, None)
                if len(self._named) > MAX_MODELS:
                    self._named.clear()
            return Monitor(self, state)
        return Monitor(self, self.state(model, version, operation, framework, data_types,
                                        classes, reference, None))

    def observe(self, model: Any = None, version: str | None = None, *,
                operation: str = semconv.OPERATION_PREDICT, framework: str | None = None,
                data_types: Mapping[str, str] | None = None,
                classes: Sequence[Any] | None = None, reference: Any = None,
                prediction_type: str | None = None) -> Callable[[Any], Any]:
        """A decorator: each call of the function is one monitored call; its first
        argument is read as the features, its return value as the prediction (labels,
        values, or ``[rows, classes]`` scores with ``classes``; ``prediction_type``
        declares ``categorical`` or ``numerical``). ``model`` defaults to the function's
        qualified name."""
        observed = Observed(lambda: self, model, version, operation, framework, data_types,
                            classes, reference, prediction_type)
        return lambda function: wrapt.FunctionWrapper(function, observed)

    def call_observed(self, observed: Observed, wrapped: Callable[..., Any],
                      args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        state = observed.state or observed.state_in(self, wrapped)
        inputs = args[0] if args else next(iter(kwargs.values()), None)
        rows = rows_of(inputs) if inputs is not None else 0
        ids, time_ns = self.recorder.call_ids(rows)
        token = OBSERVING.set(False)
        try:
            return observe_call(self.gate, state.site, rows, _width(inputs), wrapped, args,
                                kwargs, self._submit_observed, state, inputs, ids, time_ns)
        finally:
            OBSERVING.reset(token)

    def _submit_observed(self, site: CallSite, state: Any, inputs: Any, outputs: Any,
                         rows: int, duration_s: float, error_type: str | None, ids: Any,
                         time_ns: int) -> None:
        self.recorder.submit((SCOPE, state,
                              _array_traits if state.reads_arrays_whole and _plain_array(inputs)
                              else _raw_traits,
                              site.attributes, () if inputs is None else inputs, outputs, rows,
                              duration_s, error_type, ids, time_ns))


class Observed:
    """The wrapper ``@observe`` puts around a function (a ``wrapt`` wrapper, so methods
    bind as methods); its ``Explicit`` is resolved at each call, its model state at the
    first: decorating at import builds nothing."""

    def __init__(self, explicit: Callable[[], Explicit], model: Any, version: str | None,
                 *settings: Any) -> None:
        self._explicit, self._model, self._version, self._settings = \
            explicit, model, version, settings
        self.state: ModelState | None = None

    def state_in(self, explicit: Explicit, wrapped: Any) -> ModelState:
        operation, framework, data_types, classes, reference, prediction_type = \
            self._settings
        self.state = explicit.state(
            self._model if self._model is not None else wrapped.__qualname__, self._version,
            operation, framework, data_types, classes, reference, prediction_type)
        return self.state

    def __call__(self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        return self._explicit().call_observed(self, wrapped, args, kwargs)


_NO_SETTINGS = (None, None, None, None)


def _settings_key(settings: tuple[Any, ...]) -> tuple[Any, ...]:
    """A model's settings as a dict key: monitor() and observe() of one model with other
    data types or another reference are read each their own way."""
    data_types, classes, reference, prediction_type = settings
    return (None if data_types is None else frozenset(data_types.items()),
            None if classes is None else tuple(classes),
            os.fspath(reference) if isinstance(reference, str | os.PathLike)
            else None if reference is None else id(reference),
            prediction_type)


def _vocabularies(reference: Any) -> dict[str, frozenset[str]]:
    """Text vocabularies of a reference profile (a ``Profile`` or a path to one)."""
    if reference is None:
        return {}
    from driftline import profile

    if not isinstance(reference, profile.Profile):
        reference = profile.load(reference)
    return reference.vocabularies()


_default: Explicit | None = None
_default_lock = threading.Lock()


def default() -> Explicit:
    """The process's ``Explicit``, built at first use (never at import)."""
    global _default
    found = _default
    if found is None:
        with _default_lock:
            if _default is None:
                _default = Explicit()
            found = _default
    return found


def configure(**kwargs: Any) -> Explicit:
    """Replace the process's ``Explicit`` (flushing the previous one): kwargs as
    ``Explicit``'s. Returns the new one."""
    global _default
    with _default_lock:
        previous, _default = _default, Explicit(**kwargs)
    if previous is not None:
        previous.shutdown()
    return _default


def monitor(model: Any, version: str | None = None, **kwargs: Any) -> Monitor:
    """``with driftline.monitor("churn", version="3") as mon: mon.log(...)``."""
    return default().monitor(model, version, **kwargs)


def observe(model: Any = None, version: str | None = None, *,
            operation: str = semconv.OPERATION_PREDICT, framework: str | None = None,
            data_types: Mapping[str, str] | None = None, classes: Sequence[Any] | None = None,
            reference: Any = None, prediction_type: str | None = None
            ) -> Callable[[Any], Any]:
    """``@driftline.observe(model="churn", version="3")`` on any predict function (see
    ``Explicit.observe``); the process's ``Explicit`` is looked up at each call."""
    observed = Observed(default, model, version, operation, framework, data_types, classes,
                        reference, prediction_type)
    return lambda function: wrapt.FunctionWrapper(function, observed)
