"""What a wrapped call does inside ``predict`` (issue 17): no span work when the tracer cannot
sample, a model's attributes built once, and the recorder's per-drain mechanics (one 2-D
array per call, a row-consistent sample, the counting grid only for large drains)."""

from __future__ import annotations

import collections
import gc
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from sklearn.linear_model import LogisticRegression

import driftline
from driftline import _indexing, exphist, identity, semconv
from driftline.instrumentation import Limits, ModelTraits, Recorder, _env
from driftline.instrumentation import recorder as recorder_module
from driftline.instrumentation._aggregation import StreamAggregate
from driftline.instrumentation.sklearn import SklearnInstrumentor
from tests import test_exphist
from tests._otel import InMemoryMetricExporter

RNG = np.random.default_rng(17)
CALLS = 7


def _model() -> LogisticRegression:
    X = RNG.normal(size=(200, 3))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))


def _instrumented(sampler=None) -> tuple[SklearnInstrumentor, InMemorySpanExporter]:
    """scikit-learn instrumented with its spans kept in memory (``sampler``: the provider's,
    the SDK's default when None) and its metrics to an in-memory exporter."""
    spans = InMemorySpanExporter()
    provider = TracerProvider() if sampler is None else TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=provider, metric_exporter=InMemoryMetricExporter())
    return instrumentor, spans


def _spans_started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the spans the SDK tracer is asked to start, by any of its methods."""
    started: list[str] = []
    for method in ("start_span", "start_as_current_span"):
        original = getattr(Tracer, method)

        def spy(self, name, *args, _original=original, **kwargs):
            started.append(name)
            return _original(self, name, *args, **kwargs)
        monkeypatch.setattr(Tracer, method, spy)
    return started


@pytest.mark.parametrize("sampler", [ALWAYS_OFF, ParentBased(ALWAYS_OFF)],
                         ids=["always_off", "parentbased_always_off"])
def test_a_tracer_that_cannot_sample_starts_no_span_and_metrics_still_count(
        sampler, monkeypatch) -> None:
    started = _spans_started(monkeypatch)
    metrics = InMemoryMetricExporter()
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(sampler=sampler),
                            metric_exporter=metrics)
    model = _model()
    try:
        for _ in range(CALLS):
            model.predict_proba(RNG.normal(size=(3, 3)))
        assert instrumentor.recorder.force_flush()
    finally:
        instrumentor.uninstrument()
    assert started == []
    assert sum(p.value for p in metrics.points(semconv.ML_PREDICT_ROWS)) == 3 * CALLS


def test_a_sampled_remote_parent_still_gets_its_child_span_under_parentbased_off() -> None:
    instrumentor, spans = _instrumented(ParentBased(ALWAYS_OFF))
    model = _model()
    parent = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    try:
        model.predict(RNG.normal(size=(2, 3)))  # no parent: dropped
        token = context_api.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
        try:
            model.predict(RNG.normal(size=(2, 3)))
        finally:
            context_api.detach(token)
    finally:
        instrumentor.uninstrument()
    [span] = spans.get_finished_spans()
    assert span.name == "predict LogisticRegression"
    assert (span.context.trace_id, span.parent.span_id) == (0x1234, 0x5678)
    assert span.attributes[semconv.ML_BATCH_SIZE] == 2


def test_a_models_identity_is_read_once_not_per_call(monkeypatch) -> None:
    reads: list[object] = []
    original = identity.identity_of

    def counting(model):
        reads.append(model)
        return original(model)
    monkeypatch.setattr(identity, "identity_of", counting)
    instrumentor, spans = _instrumented()
    first, second = _model(), _model()
    try:
        for _ in range(CALLS):
            first.predict(RNG.normal(size=(1, 3)))
            second.predict(RNG.normal(size=(1, 3)))
        assert reads == [first, second]
        driftline.register(first, name="churn", version="3")  # registered later: seen
        first.predict(RNG.normal(size=(1, 3)))
    finally:
        instrumentor.uninstrument()
    assert spans.get_finished_spans()[-1].name == "predict churn"
    assert spans.get_finished_spans()[-1].attributes[semconv.ML_MODEL_VERSION] == "3"


def test_the_calls_inside_an_observed_call_never_run_a_wrapper_of_ours() -> None:
    """A forest's ``predict_proba`` calls each tree's, and ``LogisticRegression``'s calls its
    ``decision_function``: their methods test the observing flag and run as they are, so
    only the outer call goes past it, into the wrapper's work (a wrapper frame per tree
    cost the 50-tree forest about 3 us each). Each is one frame of ours, not two."""
    import sys

    from sklearn.ensemble import RandomForestClassifier

    from driftline.instrumentation import _observe
    from driftline.instrumentation import sklearn as sklearn_instrumentation

    X = RNG.normal(size=(200, 3))
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, X[:, 0] > 0)
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(),
                            metric_exporter=InMemoryMetricExporter())
    ours = {Path(sklearn_instrumentation.__file__), Path(_observe.__file__)}
    calls: list[str] = []

    def profile(frame, event, arg):
        if Path(frame.f_code.co_filename) not in ours:
            return
        if event == "call":
            calls.append(f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_name}")
        elif event == "c_call" and getattr(arg, "__self__", None) is _observe.OBSERVING \
                and arg.__name__ == "set":
            calls.append("past the observing test")
    try:
        for model in (forest, _model()):
            calls.clear()
            sys.setprofile(profile)
            try:
                model.predict_proba(X[:5])
            finally:
                sys.setprofile(None)
            assert calls.count("past the observing test") == 1, type(model).__name__
            assert calls.count("sklearn.observed") > 1  # the outer method and inner ones
            assert "_observe.observed" not in calls  # no second frame around them
    finally:
        instrumentor.uninstrument()


def test_model_methods_are_wrapped_by_plain_functions_and_restored_as_they_were() -> None:
    """Plain methods become plain functions with the method's name and signature (not
    wrapt's FunctionWrapper, which builds a bound wrapper at every attribute access), and
    scikit-learn's ``available_if`` descriptors a copy that still checks: a pipeline whose
    last step has no ``predict_proba`` has none, instrumented or not. Uninstrumenting puts
    back the very objects."""
    import inspect
    from types import FunctionType

    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    plain_method = vars(LogisticRegression)["predict_proba"]
    descriptor = vars(Pipeline)["predict_proba"]
    X = RNG.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    with_proba = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    without = make_pipeline(StandardScaler(), LinearSVC()).fit(X, y)
    instrumentor, spans = _instrumented()
    try:
        wrapped = vars(LogisticRegression)["predict_proba"]
        assert type(wrapped) is FunctionType and wrapped is not plain_method
        assert wrapped.__wrapped__ is plain_method and wrapped.__name__ == "predict_proba"
        assert inspect.signature(wrapped) == inspect.signature(plain_method)
        assert type(vars(Pipeline)["predict_proba"]) is type(descriptor)
        assert vars(Pipeline)["predict_proba"] is not descriptor
        assert not hasattr(without, "predict_proba")
        assert with_proba.predict_proba(X[:3]).shape == (3, 2)
        assert [span.name for span in spans.get_finished_spans()] == ["predict_proba Pipeline"]
    finally:
        instrumentor.uninstrument()
    assert vars(LogisticRegression)["predict_proba"] is plain_method
    assert vars(Pipeline)["predict_proba"] is descriptor


def test_an_operation_of_another_descriptor_is_observed_through_wrapt() -> None:
    """An operation that is neither a plain function nor ``available_if`` (here a
    ``functools.partialmethod``) is wrapped by wrapt, around the same one-frame function:
    one span, its result unchanged, and the class gets its descriptor back."""
    import functools

    import wrapt
    from sklearn.base import BaseEstimator, RegressorMixin

    class Doubler(RegressorMixin, BaseEstimator):
        def _scaled(self, X, factor):
            return np.asarray(X)[:, 0] * factor

        predict = functools.partialmethod(_scaled, factor=2.0)

    descriptor = vars(Doubler)["predict"]
    instrumentor, spans = _instrumented()
    try:
        assert isinstance(vars(Doubler)["predict"], wrapt.FunctionWrapper)
        X = RNG.normal(size=(4, 2))
        np.testing.assert_array_equal(Doubler().predict(X), X[:, 0] * 2.0)
        finished = spans.get_finished_spans()
        assert [span.name for span in finished] == ["predict Doubler"]
        assert finished[0].attributes[semconv.ML_BATCH_SIZE] == 4
    finally:
        instrumentor.uninstrument()
    assert vars(Doubler)["predict"] is descriptor


def test_an_array_call_is_staged_as_one_array_and_aggregates_to_every_value() -> None:
    stream = StreamAggregate(Limits())
    traits = ModelTraits(False, feature_names=np.array(["a", "b", "c"], dtype=object))
    chunks = [RNG.normal(size=(rows, 3)) for rows in (1, 5, 1, 40)]
    for chunk in chunks:
        stream.stage_inputs(chunk, traits)
    assert [len(staged) for staged in stream._staged_arrays.values()] == [len(chunks)]
    assert not stream._staged_inputs
    stream.aggregate_staged()
    whole = np.concatenate(chunks)
    for i, name in enumerate("abc"):
        hist = stream.numeric[name].histogram
        expected = exphist.from_values(whole[:, i])
        assert (hist.count, hist.scale, hist.min, hist.max) == \
            (expected.count, expected.scale, expected.min, expected.max)
        assert np.array_equal(exphist.downscale(hist, expected.scale).positive.counts,
                              expected.positive.counts)


def test_a_sample_keeps_the_same_rows_of_every_column() -> None:
    """Two identical features stay identical in a sampled interval: rows are kept or
    dropped whole, so joint distributions survive sampling."""
    stream = StreamAggregate(Limits(), sample_rate=0.3, rng=np.random.default_rng(5))
    traits = ModelTraits(False)
    for _ in range(50):
        column = RNG.normal(size=(200, 1))
        stream.stage_inputs(np.hstack([column, column]), traits)
    stream.aggregate_staged()
    first, second = stream.numeric["f0"].histogram, stream.numeric["f1"].histogram
    assert 0.25 * 10_000 < first.count < 0.35 * 10_000
    assert (first.count, first.sum, first.min, first.max) == \
        (second.count, second.sum, second.min, second.max)


def test_the_counting_grid_is_used_for_large_columns_only(monkeypatch) -> None:
    """A small drain maps its values one by one: the grid's bincount spans up to 2**21
    cells whatever the number of values. Counts are the same either way (test_exphist)."""
    grids: list[int] = []
    original = _indexing._grid_counts

    def spy(values, *args):
        grids.append(values.size)
        return original(values, *args)
    monkeypatch.setattr(_indexing, "_grid_counts", spy)
    small = RNG.normal(size=100)
    large = RNG.normal(size=1_000_000)
    for values in (small, large):
        hist = exphist.from_values(values)
        assert hist.count == values.size
    assert grids == [large.size]


@pytest.mark.parametrize("case", sorted(test_exphist.GRID_CASES))
def test_the_grid_still_counts_exactly_when_forced_on_smaller_columns(case, monkeypatch) -> None:
    """``test_exphist``'s grid cases, with the size thresholds lowered so the grid (not the
    exact path the thresholds now choose for them) is what gets checked."""
    monkeypatch.setattr(_indexing, "GRID_MIN_VALUES", 0)
    monkeypatch.setattr(_indexing, "GRID_CELLS_PER_VALUE", 1 << 30)
    used: list[int] = []
    original = _indexing._grid_counts

    def spy(values, *args):
        used.append(values.size)
        return original(values, *args)
    monkeypatch.setattr(_indexing, "_grid_counts", spy)
    test_exphist.test_column_counts_equal_mapping_each_value(case)
    if case != "subnormal":  # subnormals always take the exact path
        assert used


def test_import_auto_leaves_the_otlp_exporters_for_their_first_export() -> None:
    """``import driftline.auto`` in a scikit-learn app (default OTLP settings) imports no
    gRPC, protobuf encoder or OTLP exporter module: those load at the first export."""
    code = ("import sys, sklearn.linear_model, driftline.auto; "
            "print(sorted(m for m in sys.modules if m.startswith(("
            "'grpc', 'opentelemetry.exporter', 'opentelemetry.proto', 'requests'))))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AWS_"))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env=env, timeout=120)
    assert result.stdout.strip() == "[]"


def test_a_deferred_exporter_is_built_once_at_its_first_export() -> None:
    built: list[object] = []

    class Exporter:
        def __init__(self) -> None:
            built.append(self)
            self.exported: list[object] = []

        def export(self, data, timeout_millis=10_000):
            self.exported.append((data, timeout_millis))
            return "done"

    exporter = _env.DeferredExporter(lambda: Exporter)
    assert exporter.force_flush() and not exporter.loaded and built == []
    threads = [threading.Thread(target=exporter.export, args=(n,), kwargs={"timeout_millis": 5})
               for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and exporter.loaded
    assert sorted(built[0].exported) == [(n, 5) for n in range(8)]
    assert exporter.export("x") == "done"


def test_an_idle_recorder_thread_sleeps_seconds_at_a_time() -> None:
    """Each wake of the recorder thread takes the GIL from the model's thread, and a model
    releasing the GIL every few tens of us (a 100-row LogisticRegression) keeps the woken
    thread waiting for it: a thread waking once a second cost that model 1.6 % of its time,
    five times a second 12 %. Idle, the recorder asks to sleep until MAX_DRAIN_DELAY_S after
    its last drain, so 2.5 s see a single wait, where a one-second timer made 3 and the
    0.2 s poll before it 12."""
    import time

    recorder = Recorder(InMemoryMetricExporter())
    timeouts: list[float | None] = []

    class CountingEvent(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            timeouts.append(timeout)
            return super().wait(timeout)
    started = recorder._wakeup
    recorder._wakeup = CountingEvent()  # read by the thread at its next wait
    started.set()  # ends a wait in progress: the thread waits again, on the counting event
    time.sleep(2.5)
    recorder.shutdown()
    assert len(timeouts) == 1, timeouts
    assert timeouts[0] is not None and timeouts[0] > 0.6 * recorder_module.MAX_DRAIN_DELAY_S


def test_a_call_that_fills_a_drain_batch_wakes_the_recorder() -> None:
    """Large calls must not wait for the recorder's next drain (up to 5 s): by then a
    service calling with 10 000 rows at 2 000 calls/s passes the pending-rows guard and
    drops values. The call that fills a drain batch wakes the recorder thread."""
    recorder = _stopped_recorder(InMemoryMetricExporter())
    rows = 10_000
    call = ("scope", None, None, (), np.zeros((rows, 2)), None, rows, 0.0, None, (), 0)
    assert _submits_to_wake(recorder, call) == recorder_module.DRAIN_BATCH_ROWS // rows + 1
    assert recorder.dropped_value_rows == 0


def test_gaps_drawn_ahead_follow_what_the_calls_take_and_survive_a_new_rate() -> None:
    """``refill`` draws twice the gaps taken since the last one (drawn ahead or on the spot),
    so calls between two drains find them drawn; a new rate scales the same variates, so
    the reserve is not thrown away when the recorder changes the rate."""
    from driftline.instrumentation import _handoff

    sample = _handoff.HandOffSample(1e-3, random.Random(5).random, np.random.default_rng(5))
    sample.refill()
    assert len(sample._exponentials) == _handoff.MIN_GAPS_AHEAD
    for _ in range(300):  # 64 drawn ahead, 236 drawn on the spot
        sample.next_gap()
    assert len(sample._exponentials) == 0 and sample._drawn_late == 300 - 64
    sample.refill()
    assert len(sample._exponentials) == 600 and sample._drawn_late == 0
    for _ in range(500):
        sample.next_gap()
    assert len(sample._exponentials) == 100 and sample._drawn_late == 0
    sample.set_rate(1e-5)  # the same variates, scaled
    assert len(sample._exponentials) == 99  # one became the new rate's first gap
    variate = sample._exponentials[-1]
    assert sample.next_gap() == int(variate / -np.log1p(-1e-5))
    sample.refill()  # 502 taken: the reserve grows to 1004, and never shrinks
    assert len(sample._exponentials) == 1004
    sample.refill()
    assert len(sample._exponentials) == 1004
    for _ in range(20_000):
        sample.next_gap()
    sample.refill()
    assert len(sample._exponentials) == _handoff.MAX_GAPS_AHEAD


@pytest.mark.parametrize(("rate", "rows"), [(2e-4, 5000), (0.01, 5000), (0.3, 2000)],
                         ids=["about_one_row", "tens_of_rows", "many_rows"])
def test_a_large_call_hands_over_copies_of_exactly_the_rows_its_sample_keeps(rate, rows
                                                                             ) -> None:
    """A call of PRESAMPLE_MIN_ROWS rows or more has its kept rows copied in ``predict``:
    its inputs' and outputs' rows at the sample's positions, in order, owning their memory,
    so what the caller writes into its arrays afterwards changes nothing handed over."""
    assert rows >= recorder_module.PRESAMPLE_MIN_ROWS
    from driftline.instrumentation._handoff import HandOffSample

    recorder = _stopped_recorder(InMemoryMetricExporter())
    key = ("scope", (("m", "x"),))
    sample = recorder._samples[key] = HandOffSample(rate, random.Random(3).random,
                                                    np.random.default_rng(3))
    shadow = HandOffSample(rate, random.Random(3).random, np.random.default_rng(3))
    kept_total = 0
    for call in range(40):
        if call % 10 == 0:
            sample.refill()
            shadow.refill()
        inputs = np.column_stack((np.arange(rows) + call * rows, RNG.normal(size=rows)))
        outputs = RNG.random((rows, 2))
        expected = list(shadow.positions(rows))  # the same draws, in the same order
        before = len(recorder._kept)
        recorder.submit(("scope", None, None, key[1], inputs, outputs, rows, 0.0, None, (), 0))
        if not expected:
            assert len(recorder._kept) == before and not recorder._pending  # counted only
            continue
        handed = list(recorder._kept)[-recorder_module.KEPT_FIELDS:]
        values, scores = handed[4], handed[5]
        assert handed[recorder_module.KEPT_FIELDS - 1] == rate and handed[6] == rows
        assert values[:, 0].tolist() == [call * rows + row for row in expected]
        np.testing.assert_array_equal(scores, outputs[expected])
        assert values.base is None and scores.base is None
        handed_values, handed_scores = values.copy(), scores.copy()
        inputs[:] = np.nan
        outputs[:] = np.nan
        np.testing.assert_array_equal(values, handed_values)
        np.testing.assert_array_equal(scores, handed_scores)
        kept_total += len(expected)
    assert kept_total > 0
    assert recorder._pending_rows == kept_total


def test_counted_calls_wake_the_recorder_before_their_queue_is_full() -> None:
    """The thread sleeps until DRAIN_BATCH_CALLS calls wait, but never past half of
    ``max_pending_calls``: beyond it calls fold into the overflow tally, under a lock."""
    from driftline.instrumentation._handoff import HandOffSample

    recorder = _stopped_recorder(InMemoryMetricExporter(), max_pending_calls=100)
    recorder._samples[("scope", ())] = HandOffSample(1e-12, random.random,
                                                     np.random.default_rng(0))
    call = ("scope", None, None, (), np.zeros((1, 2)), None, 1, 0.0, None, (), 0)
    assert _submits_to_wake(recorder, call) == 50
    assert recorder.pending_calls == 50 and recorder.dropped_value_rows == 0


def test_held_rows_wake_the_recorder_before_they_lose_their_values() -> None:
    """Likewise held rows: never past half of ``max_pending_rows``, beyond which a call's
    values are dropped."""
    recorder = _stopped_recorder(InMemoryMetricExporter(), max_pending_rows=1000)
    call = ("scope", None, None, (), np.zeros((100, 2)), None, 100, 0.0, None, (), 0)
    assert _submits_to_wake(recorder, call) == 5
    assert recorder.dropped_value_rows == 0


def _submits_to_wake(recorder: Recorder, call: tuple, most: int = 1000) -> int:
    """How many submits of ``call`` it takes a stopped recorder to be asked to wake (``most``
    + 1 when none did)."""
    for submitted in range(1, most + 1):
        recorder.submit(call)
        if recorder._wakeup.is_set():
            return submitted
    return most + 1


def test_a_tracer_provider_set_after_instrumenting_gets_the_spans() -> None:
    """Instrumented before the application sets its provider, the tracer is a proxy: calls
    before get no span (and no error), calls after get theirs."""
    code = """
import numpy as np
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sklearn.linear_model import LogisticRegression
from driftline.instrumentation.sklearn import SklearnInstrumentor
from tests._otel import InMemoryMetricExporter

X = np.random.default_rng(0).normal(size=(50, 3))
model = LogisticRegression().fit(X, X[:, 0] > 0)
SklearnInstrumentor().instrument(metric_exporter=InMemoryMetricExporter())
model.predict(X)
spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)
model.predict(X)
print([span.name for span in spans.get_finished_spans()])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert result.stdout.strip() == "['predict LogisticRegression']"


def _stopped_recorder(exporter: InMemoryMetricExporter, **kwargs) -> Recorder:
    """A recorder whose background thread has stopped: the test drains it itself (and sees
    whether a call asks it to wake)."""
    recorder = Recorder(exporter, **kwargs)
    recorder._stopped.set()
    recorder._wakeup.set()
    recorder._thread.join()
    recorder._wakeup.clear()
    return recorder


def test_predicted_classes_are_counted_per_class_not_per_row(monkeypatch) -> None:
    """Class scores are counted by ``bincount`` over their argmax and integer labels by
    ``np.unique``: canonical texts are made once per class, not once per row (an object
    array per row was a third of the recorder's time at 100 rows per call)."""
    from driftline.instrumentation import _aggregation
    from driftline.labels import class_label

    labelled: list[int] = []
    original = _aggregation.class_labels

    def spy(values):
        labelled.append(np.asarray(values).size)
        return original(values)
    monkeypatch.setattr(_aggregation, "class_labels", spy)
    rows = 5000
    # 1 and "1" have one canonical text: their rows count together.
    classes = np.array([1, "1", "a", 2.5], dtype=object)
    scores = RNG.random((rows, classes.size))
    labels = RNG.integers(-3, 4, rows)
    stream = StreamAggregate(Limits())
    stream.stage_outputs(scores, ModelTraits(True, classes))
    stream.stage_outputs(labels, ModelTraits(True))
    stream.aggregate_staged()
    assert max(labelled) <= max(classes.size, np.unique(labels).size)
    expected: dict[str, int] = {}
    for label in [class_label(c) for c in classes[np.argmax(scores, axis=1)]] \
            + [class_label(v) for v in labels.tolist()]:
        expected[label] = expected.get(label, 0) + 1
    assert dict(stream.classes.counts) == expected
    assert stream.classes.count == 2 * rows and stream.classes.missing == 0


def test_float_labels_count_nan_as_missing_and_whole_numbers_as_integers() -> None:
    stream = StreamAggregate(Limits())
    stream.stage_outputs(np.array([1.0, 1.0, np.nan, 0.5, 2.0, np.inf]), ModelTraits(True))
    stream.aggregate_staged()
    assert dict(stream.classes.counts) == {"1": 2, "0.5": 1, "2": 1}
    assert (stream.classes.count, stream.classes.missing) == (6, 2)


def test_outputs_of_a_small_drain_wait_for_a_batch_or_the_export() -> None:
    """A drain's few outputs are kept (compacted) rather than histogrammed: the histograms
    of confidence and margin cost the same for ten rows as for thousands."""
    from driftline.instrumentation._aggregation import HISTOGRAM_BATCH_ROWS

    stream = StreamAggregate(Limits())
    traits = ModelTraits(True, (0, 1))
    for _ in range(3):
        stream.stage_outputs(RNG.random((10, 2)), traits)
        stream.aggregate_staged(final=False)
    assert stream.confidence.histogram.count == 0 and stream.classes.count == 0
    stream.stage_outputs(RNG.random((HISTOGRAM_BATCH_ROWS, 2)), traits)
    stream.aggregate_staged(final=False)
    assert stream.confidence.histogram.count == HISTOGRAM_BATCH_ROWS + 30
    stream.stage_outputs(RNG.random((10, 2)), traits)
    stream.aggregate_staged()
    assert stream.confidence.histogram.count == stream.classes.count == HISTOGRAM_BATCH_ROWS + 40


def test_a_large_call_of_a_sampling_stream_is_sampled_before_it_is_queued() -> None:
    """Once a stream samples, a large call's kept rows are copied at hand-off and the
    caller's arrays are not held until the drain (freed in bulk, their memory went back to
    the system and later calls faulted it in again). Rows stay exact."""
    import weakref

    metrics = InMemoryMetricExporter()
    budget, rows = 1000, 20_000
    recorder = _stopped_recorder(metrics, limits=Limits(max_sampled_rows=budget),
                                 sample_seed=3)
    traits = ModelTraits(True, (0, 1))

    def call(inputs, outputs):
        return ("scope", None, lambda model: traits, (("m", "x"),), inputs, outputs, rows,
                0.0, None, (), 0)
    recorder.submit(call(RNG.normal(size=(rows, 2)), RNG.random((rows, 2))))
    # The next interval samples: 20 000 rows in this one against a budget of 1000.
    assert recorder.force_flush()
    metrics.exported.clear()
    held = []
    for _ in range(4):
        inputs, outputs = RNG.normal(size=(rows, 2)), RNG.random((rows, 2))
        held += [weakref.ref(inputs), weakref.ref(outputs)]
        recorder.submit(call(inputs, outputs))
        del inputs, outputs
    assert [ref() is None for ref in held] == [True] * len(held)
    assert recorder._pending_rows < rows
    assert recorder.force_flush()
    assert sum(p.value for p in metrics.points(semconv.ML_PREDICT_ROWS)) == 4 * rows
    [feature] = [p for p in metrics.points(semconv.ML_FEATURE_VALUE)
                 if p.attributes[semconv.ML_FEATURE_NAME] == "f0"]
    [confidence] = list(metrics.points(semconv.ML_PREDICTION_CONFIDENCE))
    classes = sum(p.value for p in metrics.points(semconv.ML_PREDICTION_CLASS_METRIC))
    assert feature.count == confidence.count == classes  # the same rows of inputs and outputs
    assert feature.count < 3 * budget


def test_small_calls_of_a_sampling_stream_hand_over_only_the_rows_kept() -> None:
    """At a sample rate of 1/20, most one-row calls keep no row: they hand over their counts
    only (nothing of theirs is held until the drain), the others their one row. Rows stay
    exact and the sample's size is binomial (p > 0.001). A stream's volume outlives one
    interval without calls."""
    import weakref

    from scipy import stats

    metrics = InMemoryMetricExporter()
    budget, first_rows, calls = 1000, 20_000, 6000
    recorder = _stopped_recorder(metrics, limits=Limits(max_sampled_rows=budget),
                                 sample_seed=5)
    traits = ModelTraits(True, (0, 1))

    def call(inputs, outputs):
        return ("scope", None, lambda model: traits, (("m", "x"),), inputs, outputs,
                inputs.shape[0], 0.0, None, (), 0)
    recorder.submit(call(RNG.normal(size=(first_rows, 2)), RNG.random((first_rows, 2))))
    assert recorder.force_flush()  # the next interval samples at 1000 / 20 000
    # An interval without calls in between (a flush, a quiet minute) keeps that rate: the
    # next busy interval does not start again from aggregating every row.
    assert recorder.force_flush()
    metrics.exported.clear()
    held = []
    for _ in range(calls):
        inputs, outputs = RNG.normal(size=(1, 2)), RNG.random((1, 2))
        held += [weakref.ref(inputs), weakref.ref(outputs)]
        recorder.submit(call(inputs, outputs))
        del inputs, outputs
    # Only the calls that keep their row hold arrays (theirs) until the drain.
    assert sum(ref() is not None for ref in held) == 2 * recorder._pending_rows
    assert recorder._pending_rows < 0.1 * calls
    assert recorder.force_flush()
    assert sum(p.value for p in metrics.points(semconv.ML_PREDICT_ROWS)) == calls
    [feature] = [p for p in metrics.points(semconv.ML_FEATURE_VALUE)
                 if p.attributes[semconv.ML_FEATURE_NAME] == "f0"]
    classes = sum(p.value for p in metrics.points(semconv.ML_PREDICTION_CLASS_METRIC))
    assert feature.count == classes
    assert stats.binomtest(feature.count, calls, budget / first_rows).pvalue > 0.001


def test_calls_sampled_at_hand_off_are_staged_in_blocks_and_every_kept_row_counts(
        monkeypatch) -> None:
    """A drain stages the calls whose rows were sampled at hand-off as one block per model,
    sample rate and row shape. Two models of one stream (2 float64 columns and class
    scores; 3 float32 columns and labels), one-row and 20-row calls, and calls that failed,
    interleaved: each kept row is in the features and classes exactly once, with its value,
    and every call's rows are counted (a failed call's inputs are sampled by the drain, as
    before)."""
    metrics = InMemoryMetricExporter()
    recorder = _stopped_recorder(metrics, limits=Limits(max_sampled_rows=1000), sample_seed=11)
    traits = ModelTraits(True, (0, 1))

    def read_traits(model):
        return traits
    models = {"a": object(), "b": object()}

    def call(name, rows, error=None):
        if name == "a":
            inputs, outputs = RNG.normal(size=(rows, 2)), RNG.random((rows, 2))
        else:
            inputs = RNG.normal(size=(rows, 3)).astype(np.float32)
            outputs = RNG.integers(0, 2, size=rows)
        if error:  # its inputs are counted (sampled by the drain), each value 1000
            inputs = np.full_like(inputs, 1000.0)
        return ("scope", models[name], read_traits, (("m", "x"),), inputs,
                None if error else outputs, rows, 0.0, error, (), 0)
    recorder.submit(call("a", 20_000))
    assert recorder.force_flush()  # the next interval samples at 1000 / 20 000
    metrics.exported.clear()
    submitted = 0
    for i in range(3000):
        rows = 20 if i % 10 == 0 else 1
        recorder.submit(call("ab"[i % 2], rows, "ValueError" if i % 97 == 0 else None))
        submitted += rows
    items, width = list(recorder._kept), recorder_module.KEPT_FIELDS
    kept = [items[at:at + width] for at in range(0, len(items), width)]
    assert all(c[8] is not None for c in recorder._pending)  # only failed calls are pending
    assert len(kept) + len(recorder._pending) < 3000  # most calls handed over as counts
    blocks = []
    stage_block = recorder._stage_block
    monkeypatch.setattr(recorder, "_stage_block", lambda head, rate, rows, *args: (
        blocks.append(len(rows)), stage_block(head, rate, rows, *args)))
    columns: dict[str, list[float]] = {}
    for c in kept:
        for j in range(c[4].shape[1]):
            columns.setdefault(f"f{j}", []).extend(c[4][:, j].astype(float))
    assert recorder.force_flush()
    assert recorder.failed_aggregations == 0
    assert sorted(blocks) == sorted(collections.Counter(c[1] for c in kept).values())
    assert len(blocks) == 2  # a block per model
    assert sum(p.value for p in metrics.points(semconv.ML_PREDICT_ROWS)) == submitted
    features = {p.attributes[semconv.ML_FEATURE_NAME]: p
                for p in metrics.points(semconv.ML_FEATURE_VALUE)}
    assert sorted(features) == sorted(columns) == ["f0", "f1", "f2"]
    for name, values in columns.items():
        failed = features[name].count - len(values)  # failed calls' rows the drain kept
        assert 0 <= failed <= 32
        assert features[name].sum == pytest.approx(sum(values) + 1000.0 * failed, rel=1e-9)
        assert features[name].min == min(values)
        assert features[name].max == (1000.0 if failed else max(values))
    classes = sum(p.value for p in metrics.points(semconv.ML_PREDICTION_CLASS_METRIC))
    assert classes == len(columns["f0"]) > 100


def test_whole_calls_within_the_budget_are_staged_in_blocks_and_every_row_counts(
        monkeypatch) -> None:
    """At rate 1 (a stream within its budget) calls of arrays are staged in blocks per
    model and row shape too, not one Python step each: the per-call step is left to
    failed calls and a group's lone call. Every row's value comes out exactly, and no
    caller's array is held past the drain (written over after it, nothing changes)."""
    metrics = InMemoryMetricExporter()
    recorder = _stopped_recorder(metrics)
    traits = ModelTraits(True, (0, 1))

    def read_traits(model):
        return traits
    staged_one_by_one = []
    stage = recorder._stage
    monkeypatch.setattr(recorder, "_stage", lambda call, *args: (staged_one_by_one.append(call),
                                                                 stage(call, *args)))
    models = {"wide": object(), "narrow": object(), "lone": object()}
    columns: dict[str, list[float]] = {}
    classes = 0
    handed = []
    for i in range(400):
        name = "lone" if i == 7 else ("wide", "narrow")[i % 2]
        rows, width = (1 if i % 3 else 5), {"wide": 3, "narrow": 2, "lone": 4}[name]
        inputs = RNG.normal(size=(rows, width))
        if name == "narrow":
            inputs = inputs.astype(np.float32)
        error = "ValueError" if i % 50 == 0 else None
        outputs = None if error else RNG.random((rows, 2))
        recorder.submit(("scope", models[name], read_traits, (("m", name),), inputs, outputs,
                         rows, 0.0, error, (), 0))
        handed.append((inputs, outputs))
        for j in range(width):
            columns.setdefault(f"{name}/f{j}", []).extend(inputs[:, j].astype(float))
        classes += 0 if error else rows
    recorder._drain()
    for inputs, outputs in handed:  # the caller reuses its buffers
        inputs[:] = 1e6
        if outputs is not None:
            outputs[:] = 0.0
    assert recorder.force_flush() and recorder.failed_aggregations == 0
    # Only the 8 failed calls and the lone model's call went one by one.
    assert len(staged_one_by_one) == 9
    assert sum(1 for call in staged_one_by_one if call[8] is not None) == 8
    features = {(p.attributes["m"], p.attributes[semconv.ML_FEATURE_NAME]): p
                for p in metrics.points(semconv.ML_FEATURE_VALUE)}
    assert sorted(f"{m}/{f}" for m, f in features) == sorted(columns)
    for (model, feature), point in features.items():
        values = columns[f"{model}/{feature}"]
        assert point.count == len(values)
        assert point.sum == pytest.approx(sum(values), rel=1e-5)
        assert point.min == pytest.approx(min(values), rel=1e-6)
        assert point.max == pytest.approx(max(values), rel=1e-6)
    assert sum(p.value for p in metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)) == classes


@pytest.mark.parametrize("streams", [("x",), ("x", "y")], ids=["one_stream", "two_streams"])
def test_calls_handed_over_as_counts_keep_every_row_duration_and_error(streams) -> None:
    """Calls that keep no row are added per drain, a stream's at once: rows, and each call's
    duration under its error type, come out exactly as handed over, whether one stream's
    calls fill the drain (added in C loops) or two streams' alternate (one by one). The
    queue holds no object the garbage collector tracks."""
    metrics = InMemoryMetricExporter()
    recorder = _stopped_recorder(metrics, limits=Limits(max_sampled_rows=100), sample_seed=3)
    traits = ModelTraits(True, (0, 1))

    attributes = {model: (("m", model),) for model in streams}  # a call site's, for good
    for _ in range(2):  # tuples of strings are untracked by a collection, after their items
        gc.collect()
    assert not any(gc.is_tracked(key) for key in attributes.values())

    def call(model, rows, duration_s=0.0, error=None):
        return ("scope", None, lambda m: traits, attributes[model], RNG.normal(size=(rows, 2)),
                RNG.random((rows, 2)), rows, duration_s, error, (), 0)
    for model in streams:
        recorder.submit(call(model, 1_000_000))  # the next interval samples at 1 / 10 000
    assert recorder.force_flush()
    metrics.exported.clear()
    expected = {}  # (model, error type) -> durations
    for i in range(3000):
        model = streams[i % len(streams)]
        error = "ValueError" if i % 7 == 0 else None
        duration_s = 0.001 * (1 + i % 13)
        recorder.submit(call(model, 1, duration_s, error))
        expected.setdefault((model, error), []).append(duration_s)
    assert recorder.pending_calls >= 2900  # nearly all handed over as counts
    # Queued as counts, a call leaves nothing the garbage collector tracks (a tuple per call
    # made its collections run, and promoted what else was queued).
    assert not any(gc.is_tracked(item) for item in recorder._counted)
    assert recorder.force_flush()
    rows = {p.attributes["m"]: p.value for p in metrics.points(semconv.ML_PREDICT_ROWS)}
    assert rows == {model: 3000 // len(streams) for model in streams}
    durations = {(p.attributes["m"], p.attributes.get(semconv.ERROR_TYPE)): (p.count, p.sum)
                 for p in metrics.points(semconv.ML_PREDICT_DURATION)}
    assert durations.keys() == expected.keys()
    for key, values in expected.items():
        assert durations[key][0] == len(values)
        assert durations[key][1] == pytest.approx(sum(values), rel=1e-12)


@pytest.mark.parametrize("rows", [1, 100, 10_000])
def test_calls_whose_rows_are_kept_at_hand_off_leave_nothing_tracked(rows) -> None:
    """A call whose hand-off sample keeps rows queues them without an object the garbage
    collector tracks: its tuple waited for the drain (up to 5 s), was promoted to the oldest
    generation, and with spans recorded made full collections come more often (issue 17).
    Every kept row is still aggregated, with its value, and every call's rows counted."""
    metrics = InMemoryMetricExporter()
    recorder = _stopped_recorder(metrics, limits=Limits(max_sampled_rows=40), sample_seed=7)
    traits = ModelTraits(True, (0, 1))

    class Model:  # tracked, as any model is: it must not keep its queued calls tracked
        pass
    model = Model()

    def read_traits(_):
        return traits
    attributes = (("m", "x"),)
    calls = 400
    first = rows * calls
    recorder.submit(("scope", model, read_traits, attributes, RNG.normal(size=(first, 2)),
                     RNG.random((first, 2)), first, 0.0, None, (), 0))
    assert recorder.force_flush()  # the next interval, as busy, samples at 40 / its rows
    metrics.exported.clear()
    inputs = [RNG.normal(size=(rows, 2)) for _ in range(calls)]
    outputs = [RNG.random((rows, 2)) for _ in range(calls)]
    for _ in range(2):
        gc.collect()
    tracked = len(gc.get_objects())
    for x, y in zip(inputs, outputs, strict=True):
        recorder.submit(("scope", model, read_traits, attributes, x, y, rows, 0.001, None,
                         (), 0))
    gc.collect()
    assert len(gc.get_objects()) - tracked <= 2  # not one or two per kept call
    kept = np.concatenate(list(recorder._kept)[4::recorder_module.KEPT_FIELDS])[:, 0]
    assert len(kept) == recorder._pending_rows >= 10  # rows were kept at hand-off
    assert recorder.force_flush()
    assert recorder.failed_aggregations == 0
    assert sum(p.value for p in metrics.points(semconv.ML_PREDICT_ROWS)) == rows * calls
    [feature] = [p for p in metrics.points(semconv.ML_FEATURE_VALUE)
                 if p.attributes[semconv.ML_FEATURE_NAME] == "f0"]
    classes = sum(p.value for p in metrics.points(semconv.ML_PREDICTION_CLASS_METRIC))
    assert feature.count == classes == len(kept)
    assert (feature.min, feature.max) == (kept.min(), kept.max())
    assert feature.sum == pytest.approx(kept.sum(), rel=1e-9, abs=1e-9)


def test_a_stream_silent_for_two_intervals_aggregates_every_row_again() -> None:
    """The volume that sets a stream's sample rate is carried over one interval without
    calls, not more: after two, a few calls are aggregated whole."""
    metrics = InMemoryMetricExporter()
    recorder = _stopped_recorder(metrics, limits=Limits(max_sampled_rows=1000), sample_seed=2)
    traits = ModelTraits(True, (0, 1))

    def call(rows):
        return ("scope", None, lambda model: traits, (("m", "x"),), RNG.normal(size=(rows, 2)),
                RNG.random((rows, 2)), rows, 0.0, None, (), 0)
    recorder.submit(call(20_000))
    for _ in range(3):  # the busy interval, then two silent ones
        assert recorder.force_flush()
    metrics.exported.clear()
    for _ in range(300):
        recorder.submit(call(1))
    assert recorder.force_flush()
    [feature] = [p for p in metrics.points(semconv.ML_FEATURE_VALUE)
                 if p.attributes[semconv.ML_FEATURE_NAME] == "f0"]
    assert feature.count == 300


@pytest.mark.parametrize("rate", [0.001, 0.02, 0.5], ids=["sliced", "sliced_or_selected",
                                                         "selected"])
def test_a_drains_sample_is_the_rows_at_the_kept_positions_whichever_way_they_are_read(
        rate) -> None:
    """Kept rows are sliced one by one when calls keep a row or two, selected per call
    otherwise: either way the sample is exactly the rows at ``sample_positions``."""
    from driftline.instrumentation._aggregation import sample_positions

    arrays = [RNG.normal(size=(int(rows), 3)) for rows in RNG.integers(80, 200, 300)]
    stream = StreamAggregate(Limits(), sample_rate=rate, rng=np.random.default_rng(9))
    [sample] = [np.concatenate(stream._sampled(arrays))]
    kept = sample_positions(np.random.default_rng(9), sum(len(a) for a in arrays), rate)
    assert kept.size and np.array_equal(sample, np.concatenate(arrays)[kept])


def test_the_wrapper_reads_the_same_context_as_the_api_without_its_frames() -> None:
    from driftline.instrumentation import _observe

    token = context_api.attach(context_api.set_value("k", 1))
    try:
        assert _observe.current_context() is context_api.get_current()
        assert _observe.current_context is not context_api.get_current  # the C getter
    finally:
        context_api.detach(token)


@pytest.mark.parametrize("key", ["sdk_key", "plain_key"])
def test_either_suppression_key_alone_silences_a_call(key) -> None:
    """The wrapper reads the context once for both keys
    ``is_instrumentation_enabled`` honours: each alone still silences spans and metrics."""
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricExporter()
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=provider, metric_exporter=metrics)
    model = _model()
    suppress = _SUPPRESS_INSTRUMENTATION_KEY if key == "sdk_key" else "suppress_instrumentation"
    try:
        token = context_api.attach(context_api.set_value(suppress, True))
        try:
            model.predict(RNG.normal(size=(2, 3)))
        finally:
            context_api.detach(token)
        model.predict(RNG.normal(size=(5, 3)))
        assert instrumentor.recorder.force_flush()
    finally:
        instrumentor.uninstrument()
    assert [span.attributes[semconv.ML_BATCH_SIZE] for span in spans.get_finished_spans()] == [5]
    assert sum(p.value for p in metrics.points(semconv.ML_PREDICT_ROWS)) == 5


@pytest.mark.parametrize("picked_by_the_drain", [False, True], ids=["in_predict", "by_drain"])
@pytest.mark.parametrize(("rows", "rate"), [(1, 0.2), (40, 0.2), (5, 0.9), (10_000, 4e-4),
                                           (10_000, 0.01)])
def test_a_hand_off_sample_keeps_each_row_independently_at_the_rate(rows, rate,
                                                                    picked_by_the_drain) -> None:
    """The hand-off sample runs its gaps across a stream's calls: still a Bernoulli(rate)
    sample per row. Each row's inclusion count and the sample size agree with SciPy's
    binomial, and the gaps between kept rows, across call boundaries, with its geometric law
    (two-sided p > 0.001 with a fixed seed; 10 000 rows at 0.01 takes the NumPy draw).
    ``by_drain``: a call with a kept row hands over the first one and the drain picks the
    rest (``rows_after``), as small calls do. Gaps come from variates drawn ahead by
    ``refill`` every 50 calls, and drawn on the spot when those run out."""
    from scipy import stats

    from driftline.instrumentation._handoff import HandOffSample, rows_after

    drain_rng, drain_uniform = np.random.default_rng(23), random.Random(23).random
    sample = HandOffSample(rate, random.Random(17).random, np.random.default_rng(17))
    calls = max(4000, int(4000 / (rows * rate)))
    hits = np.zeros(rows)
    kept_anywhere = []
    for call in range(calls):
        if call % 50 == 0:
            sample.refill()
        if picked_by_the_drain and sample.gap < rows:
            kept = list(rows_after(drain_uniform, drain_rng, sample.first_kept(rows), rows,
                                   rate))
        else:
            kept = list(sample.positions(rows))
        assert kept == sorted(set(kept)) and all(0 <= row < rows for row in kept)
        hits[kept] += 1
        kept_anywhere += [call * rows + row for row in kept]
    if rows <= 40:  # per row: Binomial(calls, rate)
        pvalues = [stats.binomtest(int(h), calls, rate).pvalue for h in hits]
        assert min(pvalues) * rows > 0.001  # Bonferroni over the rows
    # All calls together: Binomial(calls * rows, rate).
    assert stats.binomtest(len(kept_anywhere), calls * rows, rate).pvalue > 0.001
    # Rows from one kept row to the next: Geometric(rate), by a chi-square over gap ranges
    # of about equal probability (distinct edges: short gaps of a high rate stand alone).
    gaps = np.diff(kept_anywhere)
    law = stats.geom(rate)
    edges = np.unique(law.ppf(np.linspace(0, 1, 21)[1:-1])).astype(int)  # gap <= edge
    observed = np.bincount(np.searchsorted(edges, gaps), minlength=edges.size + 1)
    expected = np.diff(np.concatenate(([0.0], law.cdf(edges), [1.0]))) * gaps.size
    assert stats.chisquare(observed, expected).pvalue > 0.001
