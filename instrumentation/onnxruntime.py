"""ONNX Runtime instrumentation: a span and distribution metrics for every session run.

``InferenceSession.run`` is wrapped (operation ``run``). A session run inside an observed
call (a scikit-learn estimator that runs a session) reports once, as the outer call.
Usage::

    OnnxRuntimeInstrumentor().instrument(tracer_provider=..., metric_exporter=...)

How calls are read (in the recorder thread, never in ``run``):

* Inputs by name: an input with one value per row is the column of its name; a single
  input of several values per row gives ``f0..f{F-1}`` (the names an array has everywhere
  in Driftline, so ``driftline.profile.capture`` on the same array matches); with several
  inputs, ``{input}.f0..``. Inputs wider than ``max_features`` (images, embeddings) are
  monitored through the seeded random projection the torch instrumentation uses
  (``proj0..``, ``l2_norm``). String inputs are categorical.
* Outputs by name. A classifier's label output (``output_label``/``label``) gives the
  predicted classes; its probability output (``output_probability``/``probabilities``, or
  any sequence of maps) gives the class scores: with skl2onnx's ZipMap (a list of
  ``{class: probability}``) the classes are the maps' keys; a probability tensor's columns
  are matched to classes from the labels the session returns (until every column has been
  the top one, only the labels are counted, and a call asking for the probabilities alone
  counts rows and features only). Without such outputs the first output is
  read from its shape, as torch outputs are: a float ``[N, C]`` with ``C >= 2`` are class
  scores (classes ``0..C-1``), integers or strings are labels, ``[N]``/``[N, 1]`` floats
  regression values.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Collection, Mapping, Sequence
from functools import partial
from operator import itemgetter
from typing import Any

import numpy as np

from driftline import semconv
from driftline.columns import is_numeric, table_columns
from driftline.instrumentation._aggregation import ModelTraits
from driftline.instrumentation._observe import CallSite, CallSites
from driftline.instrumentation._runtime import (
    Prepared,
    RuntimeInstrumentor,
    binary_probabilities,
    multiclass_scores,
    values,
)
from driftline.instrumentation.torch import InputReader
from driftline.labels import is_label_dtype
from driftline.projection import DEFAULT_COMPONENTS, DEFAULT_MAX_FEATURES, DEFAULT_SEED

LABEL_OUTPUTS = ("output_label", "label", "labels")
PROBABILITY_OUTPUTS = ("output_probability", "probabilities", "probability")
ZIPMAP_TYPE_PREFIX = "seq(map("  # skl2onnx's ZipMap: one {class: probability} per row
# How a plan reads outputs.
# SCORES: a first output read as torch outputs are (probabilities, or logits softmaxed);
# PROBABILITIES: a probability output, by name or type, read as it is.
SCORES, PROBABILITIES, ZIPMAP_SCORES = "scores", "probabilities", "zipmap"
LABELS, VALUES, NOTHING = "labels", "values", ""
COLUMN_SEPARATOR = "."


class OnnxRuntimeInstrumentor(RuntimeInstrumentor):
    """Instruments ``onnxruntime.InferenceSession.run``.

    kwargs of ``instrument()``: ``tracer_provider``; ``metric_exporter`` or ``recorder``;
    ``max_features`` (default 64), ``projection_seed`` (42) and ``projection_components``
    (16) for wide inputs.
    """

    MODULE = "onnxruntime"
    FRAMEWORK = semconv.FRAMEWORK_ONNXRUNTIME

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("onnxruntime >= 1.16",)

    def _wrap_library(self, kwargs: dict[str, Any]) -> None:
        from onnxruntime.capi.onnxruntime_inference_collection import Session

        self._inputs = InputReader(kwargs.get("max_features", DEFAULT_MAX_FEATURES),
                                   kwargs.get("projection_seed", DEFAULT_SEED),
                                   kwargs.get("projection_components", DEFAULT_COMPONENTS))
        self._read_inputs = partial(feed_columns, self._inputs)
        self._sites = CallSites(self.FRAMEWORK)
        # Per session, in the recorder thread only: its outputs' roles and what was learned.
        self._sessions: weakref.WeakKeyDictionary[Any, SessionOutputs] = \
            weakref.WeakKeyDictionary()
        self._wrap(Session, "run", partial(self._call, self._prepare))

    def _prepare(self, session: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> Prepared | None:
        output_names = args[0] if args else kwargs.get("output_names")
        feed = args[1] if len(args) > 1 else kwargs.get("input_feed")
        rows, features = feed_shape(feed)
        site = self._sites.get(session, semconv.OPERATION_RUN, None)
        call = OnnxCall(session, feed, output_names)
        if type(feed) is dict and len(feed) == 1:
            # One numeric table that needs no projection: handed over as the array itself,
            # which the recorder stages without reading it column by column.
            for name, value in feed.items():
                if type(value) is np.ndarray and value.ndim == 2 \
                        and value.shape[1] <= self._inputs.max_features \
                        and value.dtype.kind in "iuf":
                    call.table = name
        return site, rows, features, call, True

    def _submit(self, site: CallSite, model: Any, inputs: Any, outputs: Any, rows: int,
                duration_s: float, error_type: str | None, ids: Any, time_ns: int) -> None:
        # The call carries its results, so that outputs are read by name, and stands for the
        # model: its traits depend on its results (a ZipMap's classes). No object is made
        # for it here: each one kept until the recorder drains costs the garbage collector.
        if outputs is not None:
            inputs.results = outputs
        table = inputs.table
        self._recorder.submit((self._scope, inputs, self._traits, site.attributes,
                               inputs.feed[table] if table else inputs,
                               inputs if outputs is not None else None, rows, duration_s,
                               error_type, ids, time_ns))

    def _traits(self, call: OnnxCall) -> ModelTraits:
        session = call.session
        outputs = self._sessions.get(session)
        if outputs is None:
            outputs = self._sessions[session] = SessionOutputs(session, self._read_inputs)
        return outputs.traits(call)


class OnnxCall:
    """One run handed to the recorder: its feed, the outputs asked for and their results.
    Indexing by rows gives the same for those rows (``ml.prediction`` records)."""

    __slots__ = ("feed", "output_names", "results", "session", "table")

    def __init__(self, session: Any, feed: Any, output_names: Sequence[str] | None,
                 results: Sequence[Any] | None = None) -> None:
        self.session = session
        self.feed, self.output_names, self.results = feed, output_names, results
        self.table = ""  # the name of the feed's one input when handed over as an array

    @property
    def shape(self) -> tuple[int, ...]:
        return (feed_shape(self.feed)[0],)

    def __getitem__(self, rows: np.ndarray) -> OnnxCall:
        feed = {name: np.asarray(value)[rows] for name, value in self.feed.items()}
        results = None if self.results is None else [_rows(r, rows) for r in self.results]
        return OnnxCall(self.session, feed, self.output_names, results)


def _rows(result: Any, rows: np.ndarray) -> Any:
    if isinstance(result, list):  # a ZipMap's maps
        return [result[i] for i in rows.tolist()]
    return np.asarray(result)[rows]


def feed_shape(feed: Any) -> tuple[int, int]:
    """(rows of the first input, values per row over all inputs), from shapes only."""
    rows = features = 0
    if not isinstance(feed, Mapping):
        return rows, features
    for value in feed.values():
        shape = getattr(value, "shape", None)
        if shape is None or not len(shape):
            continue
        if not rows:
            rows = int(shape[0])
        features += math.prod(shape[1:])
    return rows, features


def feed_columns(reader: InputReader, call: OnnxCall) -> list[tuple[str, np.ndarray]]:
    """Named columns of a run's inputs (see the module docstring for the names); none when
    the feed is not a mapping (ONNX Runtime refused the call)."""
    if not isinstance(call.feed, Mapping):
        return []
    single = len(call.feed) == 1
    columns: list[tuple[str, np.ndarray]] = []
    for name, value in call.feed.items():
        array = np.asarray(value)
        if array.ndim == 0:
            continue
        rows = array.reshape(array.shape[0], -1)
        if rows.shape[1] == 1:
            columns += table_columns(rows, [name])
            continue
        projection = reader.projection_for(rows.shape[1]) if is_numeric(rows) else None
        found = projection.apply(rows) if projection is not None else table_columns(rows)
        prefix = "" if single else name + COLUMN_SEPARATOR
        columns += [(prefix + column, values) for column, values in found]
    return columns


class SessionOutputs:
    """How one session's outputs are read: their roles from the session, the classes of a
    probability tensor's columns as learned from its labels, and one ``ModelTraits`` per
    way of reading (the same object for calls read alike, so the recorder stages them
    together)."""

    def __init__(self, session: Any, read_inputs: Any) -> None:
        self.names = [output.name for output in session.get_outputs()]
        self.types = {output.name: output.type for output in session.get_outputs()}
        self.read_inputs = read_inputs
        self.learned: dict[int, Any] = {}  # probability column -> class label
        self.classes: tuple[Any, ...] | None = None  # once every column is learned
        self.plans: dict[tuple[Any, ...], ModelTraits] = {}
        # Positions of the label and probability outputs, per list of outputs asked for.
        self.layouts: dict[tuple[str, ...] | None, tuple[int | None, int | None]] = {}

    def traits(self, call: OnnxCall) -> ModelTraits:
        label, probability = self._layout(call.output_names)
        results, table = call.results, call.table
        if results is None:
            return self._plan(table, False, None, NOTHING, None)
        if probability is not None:
            scores = results[probability]
            if isinstance(scores, list):
                classes = tuple(scores[0]) if scores else None
                if classes is not None:
                    return self._plan(table, True, classes, ZIPMAP_SCORES, probability)
            else:
                scores = np.asarray(scores)
                classes = self._classes(scores, None if label is None else results[label])
                if classes is not None:
                    return self._plan(table, True, classes, PROBABILITIES, probability)
                if label is None:  # the classes are not known yet, nor the labels asked
                    return self._plan(table, False, None, NOTHING, None)
        if label is not None:
            return self._plan(table, True, None, LABELS, label)
        return self._first_output(table, np.asarray(results[0]) if results else None)

    def _layout(self, output_names: Sequence[str] | None) -> tuple[int | None, int | None]:
        key = tuple(output_names) if output_names else None
        found = self.layouts.get(key)
        if found is None:
            names = list(output_names) if output_names else self.names
            found = self.layouts[key] = (
                next((i for i, n in enumerate(names) if n in LABEL_OUTPUTS), None),
                next((i for i, n in enumerate(names) if n in PROBABILITY_OUTPUTS
                      or self.types.get(n, "").startswith(ZIPMAP_TYPE_PREFIX)), None))
        return found

    def _first_output(self, table: str, output: np.ndarray | None) -> ModelTraits:
        if output is None or output.ndim == 0 or output.ndim > 2:
            return self._plan(table, False, None, NOTHING, None)
        width = 1 if output.ndim == 1 else output.shape[1]
        if is_label_dtype(output) or output.dtype.kind in "iub":
            return self._plan(table, True, None, LABELS, 0) if width == 1 \
                else self._plan(table, False, None, NOTHING, None)
        if width >= 2:
            return self._plan(table, True, tuple(range(width)), SCORES, 0)
        return self._plan(table, False, None, VALUES, 0)

    def _classes(self, scores: np.ndarray, labels: Any) -> tuple[Any, ...] | None:
        """The class of each probability column: ``0..C-1`` for a session without a label
        output, else learned from rows whose top column it is (``labels``, when the call
        asked for them); None until every column has been seen."""
        width = scores.shape[1] if scores.ndim == 2 else 2  # [N]: P(class 1)
        if self.classes is not None and len(self.classes) == width:
            return self.classes
        if not any(name in LABEL_OUTPUTS for name in self.names):
            return tuple(range(width))
        if labels is None or scores.ndim != 2:
            return self._learned(width)
        labels = np.asarray(labels).ravel()
        top = np.argmax(scores, axis=1)
        for column in range(scores.shape[1]):
            if column not in self.learned:
                hits = np.flatnonzero(top == column)
                if hits.size:
                    self.learned[column] = labels[hits[0]].item() \
                        if hasattr(labels[hits[0]], "item") else labels[hits[0]]
        return self._learned(width)

    def _learned(self, width: int) -> tuple[Any, ...] | None:
        if any(column not in self.learned for column in range(width)):
            return None
        self.classes = tuple(self.learned[column] for column in range(width))
        return self.classes

    def _plan(self, table: str, classifier: bool, classes: tuple[Any, ...] | None, read: str,
              index: int | None) -> ModelTraits:
        """``table``: the name of the call's one input when it was handed over as an
        array."""
        key = (classifier, classes, read, index, table)
        found = self.plans.get(key)
        if found is None:
            read_outputs = None if read == NOTHING else partial(_read_outputs, read, index,
                                                                classes)
            # A table handed over as an array: the recorder names its columns (f0.. or, for
            # one column, the input's name) as feed_columns would.
            found = self.plans[key] = ModelTraits(
                classifier, classes, (table,) if table else None,
                None if table else self.read_inputs, read_outputs or _nothing)
        return found


def _read_outputs(read: str, index: int, classes: tuple[Any, ...] | None,
                  call: OnnxCall) -> np.ndarray:
    result = call.results[index]
    if read == ZIPMAP_SCORES:
        return np.array(list(map(itemgetter(*classes), result)),
                        dtype=np.float64).reshape(len(result), len(classes))
    if read == PROBABILITIES:
        scores = np.asarray(result, dtype=np.float64)
        return scores if scores.ndim == 2 else binary_probabilities(scores)
    if read == SCORES:
        return multiclass_scores(result)
    if read == LABELS:
        return np.asarray(result).ravel()
    return values(result)


def _nothing(call: OnnxCall) -> np.ndarray:
    return np.empty(0, dtype=np.float64)
