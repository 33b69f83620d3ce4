"""The batching recorder: Driftline's own metric path, off the hot path.

The wrapper around ``predict`` hands each call's inputs and outputs to ``Recorder.submit``
(a deque append) and returns. A background thread aggregates what it was handed with NumPy
into OTLP data points (exponential histograms for numeric columns, which the SDK's
Histogram API cannot carry since it drops negative values) and exports them through an
OpenTelemetry SDK ``MetricExporter``, like the specification's MetricProducer bridge.
Points are DELTA: each export carries what happened since the previous one.
"""

from __future__ import annotations

import atexit
import logging
import random
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Sequence
from itertools import repeat, starmap
from typing import Any, NamedTuple

import numpy as np
from opentelemetry.sdk.metrics.export import (
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from driftline import semconv
from driftline.instrumentation._aggregation import (
    Limits,
    ModelTraits,
    StreamAggregate,
)
from driftline.instrumentation._handoff import (
    PYTHON_DRAW_ROWS,
    HandOffSample,
    rows_after,
    thinned,
)
from driftline.instrumentation._records import PredictionRecords
from driftline.predictions import ids_for_call

_logger = logging.getLogger(__name__)

DEFAULT_EXPORT_INTERVAL_S = 60.0  # OTEL_METRIC_EXPORT_INTERVAL's default
DEFAULT_EXPORT_TIMEOUT_S = 30.0  # OTEL_METRIC_EXPORT_TIMEOUT's default
# Every time the thread wakes it must take the GIL from the model's thread. A model that
# releases the GIL every few tens of microseconds (NumPy reductions and BLAS on a 100-row
# batch, a forest's trees) keeps it waiting: the woken thread is signalled at each release,
# rarely wins the race (it waited 20 to 400 ms here), and each release meanwhile pays a futex
# wake. A thread waking once a second cost a 100-row LogisticRegression 1.6 % of its time,
# five times a second 12 % (issue 17; a 50-tree forest 20 % at five). A drain's own NumPy
# work costs a histogram per column whatever the number of calls. So the thread sleeps until
# the next export, MAX_DRAIN_DELAY_S after its last drain, or until DRAIN_BATCH_CALLS calls
# (of either queue) or DRAIN_BATCH_ROWS held rows wait, at most half of max_pending_calls and
# max_pending_rows (``submit`` wakes it): at 10 000 calls a second, one wake in three seconds.
DRAIN_BATCH_CALLS = 32768
DRAIN_BATCH_ROWS = 1 << 18
MAX_DRAIN_DELAY_S = 5.0
# Rows waiting for aggregation beyond which a call's values are dropped (its rows, duration
# and error still count): memory stays bounded while the recorder or the backend is slow.
DEFAULT_MAX_PENDING_ROWS = 1_000_000
# Calls waiting beyond which even their counts are folded into a small per-stream tally.
DEFAULT_MAX_PENDING_CALLS = 100_000
# What to change when ml.prediction records are dropped, by reason.
_DROP_ADVICE = {
    semconv.DROP_REASON_RATE_LIMITED: "Raise DRIFTLINE_PREDICTION_RECORDS_PER_SECOND or lower "
                                      "DRIFTLINE_PREDICTION_RECORDS_RATIO.",
    semconv.DROP_REASON_QUEUE_FULL: "The recorder falls behind the calls: raise "
                                    "max_pending_rows / max_pending_calls or give it CPU.",
}

Attributes = tuple[tuple[str, Any], ...]
StreamKey = tuple[str, Attributes]


class PredictCall(NamedTuple):
    """What one wrapped call hands over. Inputs and outputs are references, never copies.

    Instrumentors hand over a plain tuple of these fields, which the recorder names in its
    thread: in ``predict`` even a named tuple's ``__new__`` costs 0.7 us. ``traits`` is
    called in the recorder thread, not in ``predict``: asking scikit-learn whether a
    pipeline is a classifier costs about 20 us.
    """

    scope: str
    model: Any
    traits: Callable[[Any], ModelTraits]
    model_attributes: Attributes
    inputs: Any
    outputs: Any
    rows: int
    duration_s: float
    error_type: str | None
    prediction_ids: Sequence[str] = ()  # one per row (driftline.predictions)
    time_unix_nano: int = 0  # when the call was made


# Positions of PredictCall's fields that submit() reads from a plain tuple.
_SCOPE, _MODEL, _TRAITS, _ATTRIBUTES, _INPUTS, _OUTPUTS, _ROWS, _DURATION, _ERROR = range(9)
# Items a call handed over as counts takes in Recorder._counted.
COUNTED_FIELDS = 5
# Items a call whose kept rows were taken at hand-off takes in Recorder._kept: PredictCall's
# first eight fields (its kept rows as inputs and outputs), then the rate they were kept at.
KEPT_FIELDS = 9
_KEPT_RATE = 8
# Calls of at least this many rows have the rows their stream's sample keeps copied in
# ``predict`` (a few us); smaller ones expected to keep more than PYTHON_DRAW_ROWS hand their
# arrays over and the drain picks the rows (NumPy draws in ``predict`` cost 10 us and more).
PRESAMPLE_MIN_ROWS = 1024


class _DeferredRows:
    """A call's whole input rows (the outputs field holds its outputs), handed over with the
    first row its stream's hand-off sample keeps: the drain picks it and the rows after it
    at ``rate``. Small calls: their arrays are cheap to hold, and the pick is the drain's."""

    __slots__ = ("first", "rate", "values")

    def __init__(self, values: np.ndarray, rate: float, first: int) -> None:
        self.values, self.rate, self.first = values, rate, first


class Recorder:
    """Aggregates handed-over calls in a background thread and exports OTLP data points."""

    def __init__(
        self,
        exporter: MetricExporter,
        resource: Resource | None = None,
        export_interval_s: float = DEFAULT_EXPORT_INTERVAL_S,
        export_timeout_s: float = DEFAULT_EXPORT_TIMEOUT_S,
        max_pending_rows: int = DEFAULT_MAX_PENDING_ROWS,
        max_pending_calls: int = DEFAULT_MAX_PENDING_CALLS,
        limits: Limits | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        sample_seed: int | None = None,
        records: PredictionRecords | None = None,
    ) -> None:
        self._exporter = exporter
        self._resource = resource or Resource.create()
        self._export_interval_s = export_interval_s
        self._export_timeout_s = export_timeout_s
        self._max_pending_rows = max_pending_rows
        self._max_pending_calls = max_pending_calls
        self._limits = limits or Limits()
        self._clock_ns = clock_ns
        self._pending: deque[PredictCall | tuple[Any, ...]] = deque()
        # Calls of a sampling stream that kept none of their rows, flat, COUNTED_FIELDS
        # items each: scope, attributes, rows, duration_s, error_type. Flat, the queue holds
        # nothing the garbage collector tracks: a tuple per call made its collections run
        # (issue 17). The drain adds a stream's calls at once.
        self._counted: deque[Any] = deque()
        self._max_counted = max_pending_calls * COUNTED_FIELDS
        # Calls whose sample kept rows, taken at hand-off, flat as well, KEPT_FIELDS items
        # each: scope, model, traits, attributes, kept input rows, their outputs, the call's
        # rows, duration_s, the rate the rows were kept at. A tuple per call waited for the
        # drain, was promoted to the oldest generation, and with spans recorded made full
        # collections come more often (issue 17); the arrays of kept rows are not tracked.
        self._kept: deque[Any] = deque()
        self._max_kept = max_pending_calls * KEPT_FIELDS
        # Calls of either queue, the counted queue's items and held rows that wake the
        # thread: before calls fold into the overflow tally or rows lose their values.
        self._drain_calls = max(1, min(DRAIN_BATCH_CALLS, max_pending_calls // 2))
        self._drain_counted_items = self._drain_calls * COUNTED_FIELDS
        self._drain_kept_items = self._drain_calls * KEPT_FIELDS
        self._drain_rows = max(1, min(DRAIN_BATCH_ROWS, max_pending_rows // 2))
        self._pending_rows = 0  # approximate under races; only a memory guard
        self._overflow_lock = threading.Lock()  # taken on the hot path only when overloaded
        self._overflow_rows: Counter[tuple[StreamKey, str | None]] = Counter()
        self._streams: dict[StreamKey, StreamAggregate] = {}
        # Each stream's rows in the last interval it had calls in, which sets the next
        # interval's sample rate, and whether that was the interval before the last.
        self._previous_rows: dict[StreamKey, int] = {}
        self._carried: set[StreamKey] = set()
        self._rng = np.random.default_rng(sample_seed)
        # Callers' threads sample with their own generators (seeded from ours).
        self._handoff_rng = np.random.default_rng(self._rng.integers(1 << 63))
        self._handoff_random = random.Random(int(self._rng.integers(1 << 63))).random
        self._drain_random = random.Random(int(self._rng.integers(1 << 63))).random
        # Each stream's hand-off sample, for submit(); one object per stream for good (the
        # recorder thread sets its rate), so call sites hold it (``hand_off_sample``).
        self._samples: dict[StreamKey, HandOffSample] = {}
        self._records = records
        self.records_on = records is not None  # call_ids() draws IDs only then
        self._records_warned: set[str] = set()
        self.failed_records = 0
        self._lock = threading.Lock()  # guards _streams: aggregation vs collection
        self._export_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._interval_start_ns = clock_ns()
        self._wakeup = threading.Event()
        self._stopped = threading.Event()
        self.dropped_value_rows = 0
        self.failed_aggregations = 0
        self.failed_exports = 0
        self._thread = threading.Thread(target=self._run, name="driftline-recorder", daemon=True)
        self._thread.start()
        # Flush at interpreter exit; a weak reference so the hook does not keep us alive.
        ref = weakref.ref(self)
        atexit.register(lambda: (recorder := ref()) is not None and recorder.shutdown())

    # --- hot path ---------------------------------------------------------------------------

    def call_ids(self, rows: int) -> tuple[Sequence[str], int]:
        """A call's prediction IDs and time (``driftline.predictions``) when ``ml.prediction``
        records are on, else ``((), 0)``: only records use them, and drawing them costs
        about 2 us in ``predict``."""
        if self._records is None:
            return (), 0
        return ids_for_call(rows), time.time_ns()

    def hand_off_sample(self, scope: str, attributes: Attributes) -> HandOffSample:
        """The stream's hand-off sample, which a call site keeps for ``submit_site``."""
        key = (scope, attributes)
        sample = self._samples.get(key)
        if sample is None:
            rate = self._limits.sample_rate(self._previous_rows.get(key, 0)) \
                if self._records is None else 1.0
            sample = self._samples.setdefault(key, HandOffSample(
                rate, self._handoff_random, self._handoff_rng))
        return sample

    def submit(self, call: PredictCall | tuple[Any, ...]) -> None:
        """Hand over one call: a deque append, whatever the batch size. Never raises.

        ``call`` is a ``PredictCall`` or a plain tuple of its fields in order (what the
        instrumentors hand over: building the named tuple waits for the recorder thread).
        """
        self._hand_over(self._samples.get((call[_SCOPE], call[_ATTRIBUTES])), *call)

    def submit_site(self, site: Any, model: Any, inputs: Any, outputs: Any, rows: int,
                    duration_s: float, error_type: str | None, ids: Any, time_ns: int) -> None:
        """``submit`` with a call's fields as arguments (``_observe.Submit``): ``site``, a
        ``CallSite`` built with ``hand_off_sample``, brings the scope, traits, attributes and
        the stream's sample. No tuple of the call is built unless it waits whole for the
        drain."""
        sample, counted = site.sample, self._counted
        if sample.gap >= rows and len(counted) < self._max_counted:
            sample.gap -= rows
            counted.extend((site.scope, site.attributes, rows, duration_s, error_type))
            if len(counted) >= self._drain_counted_items and not self._wakeup.is_set():
                self._wakeup.set()
            return
        self._hand_over(sample, site.scope, model, site.traits, site.attributes, inputs,
                        outputs, rows, duration_s, error_type, ids, time_ns)

    def _hand_over(self, sample: HandOffSample | None, scope: str, model: Any, traits: Any,
                   attributes: Attributes, inputs: Any, outputs: Any, rows: int,
                   duration_s: float, error_type: str | None, ids: Any = (),
                   time_ns: int = 0) -> None:
        """Queue one call (PredictCall's fields): as counts, as its kept rows, or whole."""
        pending, counted, kept_calls = self._pending, self._counted, self._kept
        if sample is not None and sample.gap >= rows and len(counted) < self._max_counted:
            sample.gap -= rows  # a sampling stream's call none of whose rows is kept
            counted.extend((scope, attributes, rows, duration_s, error_type))
            if len(counted) >= self._drain_counted_items and not self._wakeup.is_set():
                self._wakeup.set()
            return
        if len(pending) >= self._max_pending_calls or len(counted) >= self._max_counted \
                or len(kept_calls) >= self._max_kept:
            with self._overflow_lock:
                self._overflow_rows[((scope, attributes), error_type)] += rows
            self.dropped_value_rows += rows
            return
        held = rows
        if sample is not None and sample.rate < 1.0 and type(inputs) is np.ndarray \
                and type(outputs) is np.ndarray and inputs.ndim == 2 and outputs.ndim \
                and inputs.shape[0] == rows == outputs.shape[0] and error_type is None:
            # Only the rows the stream's sample keeps (some are) are handed over, written out
            # in this frame: right after a large predict each frame or NumPy call costs
            # about a microsecond, and a kept call of 10 000 rows cost 13 us (issue 17).
            # A call keeping many rows of a smaller call hands over its arrays and the drain
            # picks them (no NumPy work in predict); one row is its own sample; any other
            # call's kept rows are copied now (a large call's arrays held until the drain
            # made later calls fault memory in again). Other calls (a failed one, tables):
            # the drain samples.
            if rows < PRESAMPLE_MIN_ROWS \
                    and (rows - sample.gap) * sample.rate > PYTHON_DRAW_ROWS:
                inputs = _DeferredRows(inputs, sample.rate, sample.first_kept(rows))
            else:
                if rows == 1:
                    sample.first_kept(rows)
                else:
                    kept = sample.positions(rows)
                    if len(kept) == 1:  # slices, not ``take``: a third cheaper here
                        first = kept[0]
                        inputs, outputs = inputs[first:first + 1].copy(), \
                            outputs[first:first + 1].copy()
                    else:  # not fancy indexing, three times ``take``'s cost here
                        inputs, outputs = inputs.take(kept, 0), outputs.take(kept, 0)
                pending_rows = self._pending_rows + len(inputs)
                if pending_rows <= self._max_pending_rows:
                    self._pending_rows = pending_rows
                    kept_calls.extend((scope, model, traits, attributes, inputs, outputs, rows,
                                       duration_s, sample.rate))
                    if (pending_rows >= self._drain_rows
                            or len(kept_calls) >= self._drain_kept_items) \
                            and not self._wakeup.is_set():
                        self._wakeup.set()
                    return
                held = len(inputs)  # beyond max_pending_rows: its values are dropped below
        pending_rows = self._pending_rows + held
        if pending_rows > self._max_pending_rows:
            model = inputs = outputs = None
            self.dropped_value_rows += rows
        else:
            self._pending_rows = pending_rows
        pending.append((scope, model, traits, attributes, inputs, outputs, rows, duration_s,
                        error_type, ids, time_ns))
        # A full drain batch wakes the thread now rather than at its next drain (5 s), by
        # when large calls would have passed max_pending_rows and lost their values.
        if (pending_rows >= self._drain_rows or len(pending) >= self._drain_calls) \
                and not self._wakeup.is_set():
            self._wakeup.set()

    # --- background ---------------------------------------------------------------------------

    def _run(self) -> None:
        next_export = time.monotonic() + self._export_interval_s
        last_drain = time.monotonic()
        while not self._stopped.is_set():
            self._wakeup.wait(max(min(last_drain + MAX_DRAIN_DELAY_S, next_export)
                                  - time.monotonic(), 0.0))
            self._wakeup.clear()
            now = time.monotonic()
            export_due = now >= next_export
            if export_due or len(self._pending) >= self._drain_calls \
                    or len(self._counted) >= self._drain_counted_items \
                    or len(self._kept) >= self._drain_kept_items \
                    or self._pending_rows >= self._drain_rows \
                    or now - last_drain >= MAX_DRAIN_DELAY_S:
                self._drain()
                last_drain = now
            if export_due:
                self._collect_and_export()
                next_export = time.monotonic() + self._export_interval_s

    def _drain(self) -> None:
        # One drainer at a time, so force_flush() also waits for calls the background
        # thread has taken but not yet aggregated.
        with self._drain_lock:
            # One lookup per model (and way of reading it) per drain.
            traits: dict[tuple[int, Any], ModelTraits] = {}
            touched: set[StreamKey] = set()
            # The calls pending now, under one lock: calls handed over meanwhile wait for
            # the next drain, so a steady stream cannot keep a drain going.
            with self._lock:
                items = len(self._counted)  # whole calls: each went in with one extend
                self._add_counted(list(starmap(self._counted.popleft,
                                               repeat((), items - items % COUNTED_FIELDS))),
                                  touched)
                items = len(self._kept)
                self._stage_kept(list(starmap(self._kept.popleft,
                                              repeat((), items - items % KEPT_FIELDS))),
                                 traits, touched)
                # Whole calls of arrays without error (a stream within its budget) are staged
                # in blocks too; records need each call: not while they are on.
                blocks: dict[tuple[Any, ...], list[Any]] = {}
                by_block = self._records is None
                for _ in range(len(self._pending)):
                    call = self._pending.popleft()
                    if call[_INPUTS] is not None:
                        self._pending_rows -= call[_ROWS]
                    if not (by_block and call[_ERROR] is None and _whole_arrays(call)):
                        self._stage_each((call,), traits, touched)
                        continue
                    inputs, outputs = call[_INPUTS], call[_OUTPUTS]
                    blocks.setdefault((call[_SCOPE], call[_ATTRIBUTES], id(call[_MODEL]),
                                       call[_TRAITS], inputs.shape[1:], inputs.dtype,
                                       outputs.shape[1:], outputs.dtype), []).append(call)
                for calls in blocks.values():
                    if len(calls) == 1:  # staged as it is (a whole call's arrays copied)
                        self._stage_each(calls, traits, touched)
                        continue
                    self._stage_block(calls[0][:_INPUTS], 1.0,
                                      [call[_ROWS] for call in calls],
                                      [call[_DURATION] for call in calls],
                                      [call[_INPUTS] for call in calls],
                                      [call[_OUTPUTS] for call in calls], traits, touched)
            with self._overflow_lock:
                overflow, self._overflow_rows = self._overflow_rows, Counter()
            with self._lock:
                for (key, error_type), rows in overflow.items():
                    self._stream(key).add_call(rows, 0.0, error_type)
                    if error_type is None:
                        self._records_dropped(key, semconv.DROP_REASON_QUEUE_FULL, rows)
                for key in touched:
                    self._aggregate_staged(key)
                    stream = self._streams.get(key)
                    if stream is not None:
                        self._sample_at(key, stream.sample_rate)

    def _add_counted(self, items: list[Any], touched: set[StreamKey]) -> None:
        """Add calls handed over as counts, ``COUNTED_FIELDS`` items each (under ``_lock``):
        at once when they are all one stream's, the common case, in C loops rather than a
        Python step per call."""
        if not items:
            return
        scopes, attributes = items[0::COUNTED_FIELDS], items[1::COUNTED_FIELDS]
        rows, durations = items[2::COUNTED_FIELDS], items[3::COUNTED_FIELDS]
        errors = items[4::COUNTED_FIELDS]
        if scopes.count(scopes[0]) == len(scopes) \
                and attributes.count(attributes[0]) == len(attributes):
            key = (scopes[0], attributes[0])
            (self._streams.get(key) or self._stream(key)).add_calls(sum(rows), durations,
                                                                    errors)
            touched.add(key)
            return
        for scope, attribute, call_rows, duration_s, error_type in zip(
                scopes, attributes, rows, durations, errors, strict=True):
            key = (scope, attribute)
            (self._streams.get(key) or self._stream(key)).add_calls(
                call_rows, (duration_s,), (error_type,))
            touched.add(key)

    def _stage_each(self, calls: Sequence[tuple[Any, ...]],
                    traits: dict[tuple[int, Any], ModelTraits], touched: set[StreamKey]
                    ) -> None:
        """``_stage`` each call; one that fails is counted and logged, the others go on."""
        for call in calls:
            try:
                self._stage(call, traits, touched)
            except Exception:  # a bad input must never stop the recorder
                self.failed_aggregations += 1
                _logger.exception("driftline: could not aggregate a %s call", call[_SCOPE])

    def _stage(self, call: PredictCall | tuple[Any, ...],
               traits: dict[tuple[int, Any], ModelTraits], touched: set[StreamKey]) -> None:
        # Unpacked, not named: the instrumentors hand over plain tuples.
        scope, model, read_traits, attributes, inputs, outputs, rows, duration_s, \
            error_type, _, _ = call
        model_traits = _traits_of(model, read_traits, traits) if inputs is not None else None
        key = (scope, attributes)
        stream = self._streams.get(key) or self._stream(key)  # the caller holds self._lock
        stream.add_call(rows, duration_s, error_type)
        if model_traits is None:
            if error_type is None:  # its values were dropped: the queue was full
                self._records_dropped(key, semconv.DROP_REASON_QUEUE_FULL, rows)
            return
        touched.add(key)
        presampled = type(inputs) is _DeferredRows
        if presampled:
            kept = rows_after(self._drain_random, self._rng, inputs.first, rows, inputs.rate)
            if len(kept) == 1:  # a view: no NumPy call that releases the GIL
                first = kept[0]
                values, outputs = inputs.values[first:first + 1], outputs[first:first + 1]
            else:
                values, outputs = inputs.values[kept], outputs[kept]
            inputs, outputs = self._thinned_to(stream.sample_rate, inputs.rate, values, outputs)
        stream.stage_inputs(inputs, model_traits, presampled)
        if outputs is not None and error_type is None:
            stream.stage_outputs(outputs, model_traits, presampled)
            if self._records is not None:
                capped = self._records.capped
                try:
                    self._records.emit(PredictCall._make(call), model_traits)
                except Exception:  # records are best effort; metrics must go on
                    self.failed_records += 1
                    _logger.exception("driftline: could not emit prediction records of a "
                                      "%s call", scope)
                if self._records.capped > capped:
                    self._records_dropped(key, semconv.DROP_REASON_RATE_LIMITED,
                                          self._records.capped - capped, sampled=True)

    def _stage_kept(self, items: list[Any], traits: dict[tuple[int, Any], ModelTraits],
                    touched: set[StreamKey]) -> None:
        """Stage the calls whose rows were kept at hand-off (``KEPT_FIELDS`` items each,
        under ``_lock``): one block per stream, model, way of reading it, sample rate and
        row shape and type of their arrays. Read by position, without a tuple per call."""
        inputs, outputs = items[_INPUTS::KEPT_FIELDS], items[_OUTPUTS::KEPT_FIELDS]
        self._pending_rows -= sum(map(len, inputs))
        blocks: dict[tuple[Any, ...], list[int]] = {}
        for at, values, scores in zip(range(0, len(items), KEPT_FIELDS), inputs, outputs,
                                      strict=True):
            blocks.setdefault((items[at + _SCOPE], items[at + _ATTRIBUTES],
                               id(items[at + _MODEL]), items[at + _TRAITS],
                               items[at + _KEPT_RATE], values.shape[1:], values.dtype,
                               scores.shape[1:], scores.dtype), []).append(at)
        for starts in blocks.values():
            at = starts[0]
            self._stage_block(items[at:at + _INPUTS], items[at + _KEPT_RATE],
                              [items[i + _ROWS] for i in starts],
                              [items[i + _DURATION] for i in starts],
                              [items[i + _INPUTS] for i in starts],
                              [items[i + _OUTPUTS] for i in starts], traits, touched)

    def _stage_block(self, head: Sequence[Any], rate: float, rows: list[int],
                     durations: list[float], inputs: list[np.ndarray],
                     outputs: list[np.ndarray], traits: dict[tuple[int, Any], ModelTraits],
                     touched: set[StreamKey]) -> None:
        """``_stage`` for calls without error of one stream, model and way of reading it
        (``head``: scope, model, traits, attributes), sample rate and row shape and type of
        their arrays: their input rows (those their sample kept at ``rate``, or all of them
        at rate 1) concatenated into one block, thinned to the stream's rate when it fell
        below theirs. At 100 rows per call a stream at its budget keeps a row of about one
        call in six, and a Python step per call here (5 us) cost more than the calls'
        hand-off; a 50-tree forest within its budget hands over every call, and its drain
        took 2.8 us of CPU per call one by one (issue 17). A block that fails is counted
        and logged."""
        scope, model, read_traits, attributes = head
        try:
            model_traits = _traits_of(model, read_traits, traits)
            key = (scope, attributes)
            stream = self._streams.get(key) or self._stream(key)  # the caller holds _lock
            stream.add_calls(sum(rows), durations, (None,) * len(rows))
            touched.add(key)
            values, scores = self._thinned_to(stream.sample_rate, rate,
                                              np.concatenate(inputs), np.concatenate(outputs))
            stream.stage_inputs(values, model_traits, presampled=True)
            stream.stage_outputs(scores, model_traits, presampled=True)
        except Exception:
            self.failed_aggregations += len(rows)
            _logger.exception("driftline: could not aggregate %d %s calls", len(rows), scope)

    def _thinned_to(self, rate: float, sampled_at: float, inputs: np.ndarray,
                    outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows sampled at hand-off at ``sampled_at``, thinned to ``rate`` when the stream's
        rate fell since."""
        if rate < sampled_at and inputs.shape[0]:
            kept = thinned(self._drain_random, self._rng, inputs.shape[0], rate / sampled_at)
            inputs, outputs = inputs[kept], outputs[kept]
        return inputs, outputs

    def _records_dropped(self, key: StreamKey, reason: str, rows: int,
                         sampled: bool = False) -> None:
        """Count ``ml.prediction`` records not sent (under ``_lock``): ``rows`` records, or
        the records a sample of ``rows`` rows would have had. The first drop of each reason
        is logged."""
        if self._records is None:
            return
        count = rows if sampled else self._records.sampled(rows)
        if count <= 0:
            return
        self._stream(key).records_dropped[reason] += count
        if reason not in self._records_warned:
            self._records_warned.add(reason)
            _logger.warning("driftline: %d ml.prediction record(s) of %s dropped (%s); "
                            "counted in %s (logged once per reason). %s", count, key[0],
                            reason, semconv.ML_PREDICTION_RECORDS_DROPPED,
                            _DROP_ADVICE.get(reason, ""))

    def _aggregate_staged(self, key: StreamKey) -> None:
        stream = self._streams.get(key)
        if stream is None:  # exported meanwhile: metrics() aggregated what was staged
            return
        try:
            stream.aggregate_staged(final=False)
        except Exception:
            self.failed_aggregations += 1
            _logger.exception("driftline: could not aggregate the calls of %s", key[0])

    def _stream(self, key: StreamKey) -> StreamAggregate:
        """The stream's aggregate; past ``max_streams`` models fold into ``__other__``."""
        stream = self._streams.get(key)
        if stream is None:
            if len(self._streams) >= self._limits.max_streams:
                scope, attributes = key
                folded = tuple((k, semconv.OVERFLOW_VALUE if k == semconv.ML_MODEL_NAME else v)
                               for k, v in attributes)
                key = (scope, folded)
                stream = self._streams.get(key)
            if stream is None:
                rate = self._limits.sample_rate(self._previous_rows.get(key, 0))
                stream = self._streams[key] = StreamAggregate(self._limits, rate, self._rng)
        return stream

    def _carry_volumes(self, streams: dict[StreamKey, StreamAggregate]) -> None:
        """Keep each stream's rows of the interval just closed, for its next sample rate.

        A stream without calls in it keeps its last volume for one more interval: a flush
        that closes an interval early (``force_flush``, an instrumentor's ``uninstrument``)
        or a quiet minute does not send its next busy interval back to aggregating every row
        until the burst rule cuts in.
        """
        carried = {key: rows for key, rows in self._previous_rows.items()
                   if key not in streams and key not in self._carried}
        self._carried = set(carried)
        self._previous_rows = {**carried,
                               **{key: stream.rows for key, stream in streams.items()}}

    def _sample_at(self, key: StreamKey, rate: float) -> None:
        """Callers sample ``key``'s rows at ``rate`` from now on (a new gap when it changed),
        with gaps drawn ahead for them; at rate 1 while prediction records are on, which
        need every row."""
        rate = rate if self._records is None else 1.0
        sample = self._samples.get(key)
        if sample is None:
            if rate >= 1.0:
                return
            sample = self._samples.setdefault(key, HandOffSample(rate, self._handoff_random,
                                                                 self._handoff_rng))
        elif sample.rate != rate:
            sample.set_rate(rate)
        sample.refill()

    def _collect_and_export(self, timeout_s: float | None = None) -> MetricExportResult | None:
        timeout_s = self._export_timeout_s if timeout_s is None else timeout_s
        with self._export_lock:
            with self._lock:
                streams, self._streams = self._streams, {}
                self._carry_volumes(streams)
                for key in {*self._samples, *self._previous_rows}:
                    self._sample_at(key, self._limits.sample_rate(
                        self._previous_rows.get(key, 0)))
                start_ns, end_ns = self._interval_start_ns, self._clock_ns()
                self._interval_start_ns = end_ns
            if not streams:
                return None
            data = self._metrics_data(streams, start_ns, end_ns)
            try:
                result = self._exporter.export(data, timeout_millis=timeout_s * 1e3)
            except Exception:
                _logger.exception("driftline: metric export raised")
                result = MetricExportResult.FAILURE
            if result is not MetricExportResult.SUCCESS:
                self.failed_exports += 1
            return result

    def _metrics_data(self, streams: dict[StreamKey, StreamAggregate], start_ns: int,
                      end_ns: int) -> MetricsData:
        by_scope: dict[str, list[Metric]] = {}
        for (scope, model_attributes), stream in streams.items():
            by_scope.setdefault(scope, []).extend(
                stream.metrics(dict(model_attributes), start_ns, end_ns))
        scopes = [ScopeMetrics(InstrumentationScope(scope), _merge_same_name(metrics), "")
                  for scope, metrics in by_scope.items()]
        return MetricsData([ResourceMetrics(self._resource, scopes, "")])

    # --- control ---------------------------------------------------------------------------

    @property
    def pending_calls(self) -> int:
        """Calls handed over and not yet aggregated (bounded by ``max_pending_calls``)."""
        return len(self._pending) + len(self._counted) // COUNTED_FIELDS \
            + len(self._kept) // KEPT_FIELDS

    def force_flush(self, timeout_s: float | None = None) -> bool:
        """Aggregate everything handed over so far and export it now; the export gets
        ``timeout_s`` (default: the export timeout). True when nothing failed."""
        self._drain()
        return self._collect_and_export(timeout_s) in (None, MetricExportResult.SUCCESS)

    def shutdown(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._wakeup.set()
        self._thread.join(timeout=self._export_timeout_s)
        self.force_flush()
        self._exporter.shutdown()


def _traits_of(model: Any, read_traits: Callable[[Any], ModelTraits],
               traits: dict[tuple[int, Any], ModelTraits]) -> ModelTraits:
    """``read_traits(model)``, read once per model and way of reading it in a drain."""
    found = traits.get((id(model), read_traits))
    if found is None:
        found = traits[(id(model), read_traits)] = read_traits(model)
    return found


def _whole_arrays(call: tuple[Any, ...]) -> bool:
    """Whether a pending call's inputs and outputs are arrays of all its rows (a table, a
    failed call or rows the drain picks are not)."""
    inputs, outputs = call[_INPUTS], call[_OUTPUTS]
    return type(inputs) is np.ndarray and inputs.ndim == 2 and type(outputs) is np.ndarray \
        and outputs.ndim > 0 and inputs.shape[0] == call[_ROWS] == outputs.shape[0]


def _merge_same_name(metrics: list[Metric]) -> list[Metric]:
    """One Metric per name within a scope, its points from every model stream."""
    merged: dict[str, Metric] = {}
    for metric in metrics:
        existing = merged.get(metric.name)
        if existing is None:
            merged[metric.name] = metric
            continue
        data = existing.data
        points = [*data.data_points, *metric.data.data_points]
        if isinstance(data, Sum):
            new_data: Any = Sum(points, data.aggregation_temporality, data.is_monotonic)
        else:
            new_data = type(data)(points, data.aggregation_temporality)
        merged[metric.name] = Metric(existing.name, existing.description, existing.unit,
                                     new_data)
    return list(merged.values())
