"""Cost of Driftline on the hot path, side by side with its baselines in one process.

Run: ``.venv-dev/bin/python benchmarks/hot_path.py`` (about 6 minutes with the defaults;
``--rounds 3 --round-s 1`` for a quick look). Per case (a model, ``predict_proba`` on 20
features, a batch size), five arms in two interleaved pairs:

* ``plain``: the uninstrumented call, against
* ``sampled out``: Driftline with an SDK tracer whose sampler is ``ALWAYS_OFF`` (metrics on);
* ``one SDK span``: the uninstrumented call inside one bare SDK span, batch processor and
  discarding exporter: what any traced call pays, and
* ``span with the same attributes``: that span carrying the six attributes DESIGN.md puts on
  Driftline's span (what the SDK charges for them), against
* ``recorded``: Driftline with the same SDK tracer sampling every span (metrics on).

This machine's speed drifts over seconds (block times of one arm correlate 0.9 from one
50 ms block to the next and 0.7 half a second apart), so arms timed in alternating rounds of
seconds each differed by several percent running the same code. So each round instruments
once and then interleaves short blocks: a block of each baseline (0.2 s, the original methods
set back on the classes, ``_Switch``), then an instrumented block that lasts 0.3 s and then
until the recorder is quiet (no drain running or asked for, and none due by its timer before
the next baseline blocks are over), so that the recorder's work (its drains at 32 768 calls,
262 144 rows or every 5 s) and its thread's wait for the GIL fall inside the instrumented
blocks, until the instrumented blocks add up to the round's length. The round ends with the
recorder's flush and export (counted in the recorder's CPU, not timed; its own export timer
is off) and ``uninstrument``. A baseline's odd
blocks against its even blocks give the resolution of the ratios; the recorder's CPU during
the baseline blocks shows that its work stayed out of them. The full collections inside the
timed calls are counted per arm, and the recorded table also gives the arms with them left
out: a collection is triggered by what every arm left behind, in whichever arm crosses the
threshold. What each arm pays in them alone, instrumented once, is measured apart
(``--steady-gc-s``), and what the hot path itself costs a call, without the tails (drains,
exports, collections), by timing calls one by one in blocks rotating through the arms
(``--per-call``: medians, and the means with the tails).

The model runtimes (XGBoost, LightGBM, ONNX Runtime) get their own table, ``plain`` beside
``sampled out`` in alternating rounds, at 1 and 100 rows per call (``--runtimes-only`` for
that table alone).

Inputs are varied: each call takes the next slice of a pool of random rows, never one
repeated row. The recorder's CPU per call is its thread's CPU clock over the blocks
(``pthread_getcpuclockid``), plus the final drain and export that ``force_flush`` runs in
the calling thread, divided by the calls.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sklearn
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from opentelemetry.trace import SpanKind
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from driftline import identity, semconv
from driftline.instrumentation import Limits, PredictCall, Recorder
from driftline.instrumentation._observe import model_attributes
from driftline.instrumentation.recorder import MAX_DRAIN_DELAY_S
from driftline.instrumentation.sklearn import SklearnInstrumentor, model_traits

FEATURES = 20
POOL_ROWS = 200_000  # varied inputs: calls walk through this many random rows
DEFAULT_ROUNDS = 5
DEFAULT_ROUND_S = 3.0
# OTEL_METRIC_EXPORT_INTERVAL's default. Each instrumented round ends with uninstrument(),
# which flushes and exports, so an interval is one round here; the recorder's sample budget
# (Limits.max_sampled_rows, 100 000 rows per interval) is scaled to the round's length so
# that rows aggregated per second are a service's with the defaults (1 667 per second).
EXPORT_INTERVAL_S = 60.0
HANDOFF_CALLS = 20_000
ARMS = ("plain", "sampled out", "one SDK span", "span with the same attributes", "recorded")
CHUNK_S = 0.002  # calls between two looks at the clock, in seconds of calls
BASELINE_BLOCK_S = 0.2  # each block of a baseline arm
# An instrumented block ends once it lasted this long and the recorder is quiet: no drain
# running or asked for, and none due by its timer before the baseline blocks that follow are
# over (with a margin), so that the recorder's work falls inside the instrumented blocks (or
# at MAX_BLOCK_S, had it never been quiet).
MIN_BLOCK_S = 0.3
QUIET_MARGIN_S = 0.2
MAX_BLOCK_S = 15.0
# The recorders' own export timer never fires in a round (each round ends with an export).
NO_EXPORT_TIMER_S = 1e9
# (model, rows per call); the targets of issue 17 per case: sampled out / plain.
CASES = (("LogisticRegression", 1, 1.10), ("LogisticRegression", 100, 1.10),
         ("LogisticRegression", 10_000, 1.05), ("RandomForest(50 trees)", 1, 1.10))
RECORDED_TARGET_US = 10.0  # recorded minus one SDK span


class _Discard(SpanExporter, MetricExporter):
    """Exports to nowhere, so the benchmark measures Driftline, not a network."""

    def __init__(self) -> None:
        MetricExporter.__init__(self)

    def export(self, data: Any, timeout_millis: float = 0, **kwargs: Any) -> Any:
        return (SpanExportResult.SUCCESS if isinstance(data, list | tuple)
                else MetricExportResult.SUCCESS)

    def force_flush(self, timeout_millis: float = 0) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 0, **kwargs: Any) -> None:
        pass


def _inputs(pool: np.ndarray, batch: int) -> list[np.ndarray]:
    """Distinct views of the pool, ``batch`` rows each, cycled through by the calls."""
    starts = range(0, pool.shape[0] - batch + 1, max(batch, 1))
    return [pool[s:s + batch] for s in starts][:4096]


class _FullCollections:
    """Full garbage collections (the oldest generation) and their wall time, counted by a
    ``gc`` callback: a plain loop allocates nothing that outlives a call and never triggers
    one; objects an arm keeps between calls do, and a full collection of this process's
    ~140 000 objects takes 50-120 ms, in whichever thread triggered it."""

    def __init__(self) -> None:
        self.count, self.seconds, self._start = 0, 0.0, 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.count += 1
            self.seconds += time.perf_counter() - self._start


FULL_COLLECTIONS = _FullCollections()


def _run(call: Callable[[np.ndarray], Any], inputs: Sequence[np.ndarray], calls: int
         ) -> tuple[float, float, tuple[int, float]]:
    """Wall time and the calling thread's CPU time per call, in us, and the full garbage
    collections during the calls (count, ms). A full collection first, untimed, so that the
    garbage of earlier rounds (an instrumented round's ``instrument`` and ``uninstrument``
    wrap and unwrap every estimator class: about 2 700 objects a round that a service
    instrumented once never makes) is not collected inside this one."""
    n = len(inputs)
    gc.collect()
    collections, collection_s = FULL_COLLECTIONS.count, FULL_COLLECTIONS.seconds
    start, cpu_start = time.perf_counter_ns(), time.thread_time_ns()
    for i in range(calls):
        call(inputs[i % n])
    return ((time.perf_counter_ns() - start) / calls / 1e3,
            (time.thread_time_ns() - cpu_start) / calls / 1e3,
            (FULL_COLLECTIONS.count - collections,
             (FULL_COLLECTIONS.seconds - collection_s) * 1e3))


def _thread_cpu_ns(recorder: Recorder) -> int:
    return time.clock_gettime_ns(time.pthread_getcpuclockid(recorder._thread.ident))


class _Switch:
    """Switches an instrumented scikit-learn between the methods Driftline wrapped and their
    originals, between blocks of calls, by setting the class attributes back and forth:
    ``instrument()`` and ``uninstrument()`` take about 60 ms and leave about 2 700 objects of
    garbage each. While the originals are set, a call is exactly the uninstrumented call."""

    def __init__(self, instrumentor: SklearnInstrumentor) -> None:
        self._observed = [(owner, name, vars(owner)[name])
                          for owner, name in instrumentor._wrapped]
        self._originals = [(owner, name, getattr(method, "_driftline_original", None)
                            or method.__wrapped__) for owner, name, method in self._observed]

    def original(self) -> None:
        for owner, name, method in self._originals:
            setattr(owner, name, method)

    def observed(self) -> None:
        for owner, name, method in self._observed:
            setattr(owner, name, method)


class _Drains:
    """Watches the recorder's drains: whether one runs, and when its thread's timer starts
    the next (``MAX_DRAIN_DELAY_S`` after its last)."""

    def __init__(self, recorder: Recorder) -> None:
        self.running, self._recorder = False, recorder
        self._last_start = time.monotonic()
        drain = recorder._drain

        def watched() -> None:
            self.running = True
            if threading.get_ident() == recorder._thread.ident:  # not force_flush's
                self._last_start = time.monotonic()
            try:
                drain()
            finally:
                self.running = False
        recorder._drain = watched  # type: ignore[method-assign]

    def quiet_for(self, seconds: float) -> bool:
        """No drain runs or was asked for (``submit`` sets the recorder's wake-up), and its
        thread's timer starts none within ``seconds``."""
        return not self.running and not self._recorder._wakeup.is_set() \
            and time.monotonic() + seconds < self._last_start + MAX_DRAIN_DELAY_S


@dataclass
class _Totals:
    """One arm's blocks in one round."""

    wall_ns: int = 0
    cpu_ns: int = 0
    calls: int = 0
    recorder_ns: int = 0  # the recorder thread's CPU during the arm's blocks
    halves: list[list[int]] = field(default_factory=lambda: [[0, 0], [0, 0]])  # A/A check
    blocks: int = 0

    def add(self, block: tuple[int, int, int], recorder_ns: int) -> None:
        calls, wall_ns, cpu_ns = block
        self.calls, self.wall_ns, self.cpu_ns = (self.calls + calls, self.wall_ns + wall_ns,
                                                 self.cpu_ns + cpu_ns)
        self.recorder_ns += recorder_ns
        half = self.halves[self.blocks % 2]
        half[0], half[1] = half[0] + wall_ns, half[1] + calls
        self.blocks += 1


@dataclass
class _Arm:
    """One arm's per-call values, one per round."""

    per_call_us: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # the calling thread's CPU per call
    recorder_us: list[float] = field(default_factory=list)
    # The arm's odd blocks against its even blocks, us per call: what the same code
    # measures against itself, the resolution of the ratios.
    self_ratio: list[float] = field(default_factory=list)
    full_collections: int = 0  # during the timed calls, all rounds
    full_collection_ms: float = 0.0
    wall_s: float = 0.0  # of the timed calls, all rounds: arms run for different times
    # Per round, us per call with the full collections inside the timed calls left out:
    # a collection is triggered by what every arm left behind, in whichever arm crosses
    # the threshold (what each arm pays alone: ``steady_collections``).
    without_collections_us: list[float] = field(default_factory=list)

    def add(self, total: _Totals, flush_ns: int, collections: list[float]) -> None:
        self.per_call_us.append(total.wall_ns / total.calls / 1e3)
        self.cpu_us.append(total.cpu_ns / total.calls / 1e3)
        self.recorder_us.append((total.recorder_ns + flush_ns) / total.calls / 1e3)
        (even_ns, even_calls), (odd_ns, odd_calls) = total.halves
        if even_calls and odd_calls:
            self.self_ratio.append(odd_ns / odd_calls / (even_ns / even_calls))
        self.full_collections += int(collections[0])
        self.full_collection_ms += collections[1] * 1e3
        self.wall_s += total.wall_ns / 1e9
        self.without_collections_us.append(
            (total.wall_ns / 1e3 - collections[1] * 1e6) / total.calls)


def _block(call: Callable[[np.ndarray], Any], inputs: Sequence[np.ndarray], position: int,
           chunk: int, done: Callable[[float], bool]) -> tuple[int, int, int]:
    """Calls, ``chunk`` at a time, until ``done(seconds elapsed)``: (calls, wall ns, the
    calling thread's CPU ns)."""
    n, calls = len(inputs), 0
    start, cpu_start = time.perf_counter_ns(), time.thread_time_ns()
    while True:
        for i in range(position + calls, position + calls + chunk):
            call(inputs[i % n])
        calls += chunk
        if done((time.perf_counter_ns() - start) / 1e9):
            return calls, time.perf_counter_ns() - start, time.thread_time_ns() - cpu_start


def _interleaved_round(instrumentor: SklearnInstrumentor, provider: TracerProvider,
                       recorder: Recorder, drains: _Drains,
                       baselines: dict[str, Callable[[np.ndarray], Any]],
                       instrumented: tuple[str, Callable[[np.ndarray], Any]],
                       inputs: Sequence[np.ndarray], chunk: int, round_s: float,
                       arms: dict[str, _Arm]) -> None:
    """One round of a pair of arms: instrumented once, then blocks of each baseline
    (``BASELINE_BLOCK_S``, the originals set) alternating with an instrumented block that
    lasts ``MIN_BLOCK_S`` and then until the recorder is quiet (``_Drains.quiet_for``: its
    work, and the wait of its woken thread for the GIL, fall inside the instrumented
    blocks), until the instrumented blocks add up to ``round_s``. Then the interval's last
    drain and export (``force_flush``, counted in the recorder's CPU) and ``uninstrument``,
    not timed."""
    name, call = instrumented
    instrumentor.instrument(tracer_provider=provider, recorder=recorder)
    switch = _Switch(instrumentor)
    gc.collect()  # the instrumentation's own garbage, not collected inside a block
    totals = {arm: _Totals() for arm in (*baselines, name)}
    collections: dict[str, list[float]] = {arm: [0, 0.0] for arm in totals}
    position, baselines_s = 0, BASELINE_BLOCK_S * len(baselines)

    def timed(arm: str, call: Callable[[np.ndarray], Any], done: Callable[[float], bool]
              ) -> None:
        nonlocal position
        count, seconds = FULL_COLLECTIONS.count, FULL_COLLECTIONS.seconds
        recorder_start = _thread_cpu_ns(recorder)
        block = _block(call, inputs, position, chunk, done)
        totals[arm].add(block, _thread_cpu_ns(recorder) - recorder_start)
        position += block[0]
        collections[arm][0] += FULL_COLLECTIONS.count - count
        collections[arm][1] += FULL_COLLECTIONS.seconds - seconds

    while totals[name].wall_ns < round_s * 1e9:
        switch.original()
        for arm, baseline in baselines.items():
            timed(arm, baseline, lambda elapsed: elapsed >= BASELINE_BLOCK_S)
        switch.observed()
        timed(name, call, lambda elapsed: (elapsed >= MIN_BLOCK_S and drains.quiet_for(
            baselines_s + QUIET_MARGIN_S)) or elapsed >= MAX_BLOCK_S)
    flush_start = time.thread_time_ns()
    recorder.force_flush()
    flush_ns = time.thread_time_ns() - flush_start
    instrumentor.uninstrument()
    for arm, total in totals.items():
        arms[arm].add(total, flush_ns if arm == name else 0, collections[arm])


def _calls(model: Any, batch: int, provider: TracerProvider
           ) -> tuple[Callable[[np.ndarray], Any], ...]:
    """The plain call, and the plain call inside a bare span of ``provider`` and inside
    one carrying what Driftline's span carries (DESIGN.md: the model attributes, batch size
    and feature count)."""
    tracer, name = provider.get_tracer("bench"), f"predict_proba {type(model).__name__}"
    attributes = {**dict(model_attributes(identity.identity_of(model),
                                          semconv.FRAMEWORK_SKLEARN, "predict_proba")),
                  semconv.ML_BATCH_SIZE: batch, semconv.ML_FEATURE_COUNT: FEATURES}

    def plain(x: np.ndarray) -> Any:
        return model.predict_proba(x)

    def spanned(x: np.ndarray) -> Any:
        with tracer.start_as_current_span(name, kind=SpanKind.INTERNAL):
            return model.predict_proba(x)

    def spanned_with_attributes(x: np.ndarray) -> Any:
        with tracer.start_as_current_span(name, kind=SpanKind.INTERNAL,
                                          attributes=attributes):
            return model.predict_proba(x)
    return plain, spanned, spanned_with_attributes


def _fitted_cases(cases: Iterator[tuple[str, int, float]]) -> Iterator[tuple[
        str, int, list[np.ndarray], TracerProvider, TracerProvider,
        tuple[Callable[[np.ndarray], Any], ...]]]:
    """Per case: its name and rows per call, its inputs, a provider sampling no span and
    one sampling every span (batch processor, discarding exporter), and ``_calls``."""
    pool = np.random.default_rng(0).normal(size=(POOL_ROWS, FEATURES))
    fitted = models(pool)
    for name, batch, _ in cases:
        off, on = TracerProvider(sampler=ALWAYS_OFF), TracerProvider(sampler=ALWAYS_ON)
        on.add_span_processor(BatchSpanProcessor(_Discard()))
        yield name, batch, _inputs(pool, batch), off, on, _calls(fitted[name], batch, on)
        on.shutdown()


def case_arms(model: Any, batch: int, pool: np.ndarray, rounds: int, round_s: float
              ) -> dict[str, _Arm]:
    inputs = _inputs(pool, batch)
    off = TracerProvider(sampler=ALWAYS_OFF)
    on = TracerProvider(sampler=ALWAYS_ON)
    on.add_span_processor(BatchSpanProcessor(_Discard()))
    budget = max(1, int(Limits().max_sampled_rows * round_s / EXPORT_INTERVAL_S))
    recorders = {arm: Recorder(_Discard(), export_interval_s=NO_EXPORT_TIMER_S,
                               limits=Limits(max_sampled_rows=budget))
                 for arm in ("sampled out", "recorded")}
    drains = {arm: _Drains(recorder) for arm, recorder in recorders.items()}
    instrumentor = SklearnInstrumentor()
    plain, spanned, spanned_with_attributes = _calls(model, batch, on)

    _run(plain, inputs, 20)
    estimate_us = _run(plain, inputs, max(3, int(2e5 / max(_run(plain, inputs, 3)[0], 1.0))))[0]
    chunk = max(1, int(CHUNK_S * 1e6 / estimate_us))
    pairs = (
        (off, {"plain": plain}, "sampled out"),
        (on, {"one SDK span": spanned, "span with the same attributes": spanned_with_attributes},
         "recorded"),
    )
    arms = {arm: _Arm() for arm in ARMS}
    for r in range(rounds):
        for provider, baselines, arm in pairs if r % 2 == 0 else reversed(pairs):
            _interleaved_round(instrumentor, provider, recorders[arm], drains[arm], baselines,
                               (arm, plain), inputs, chunk, round_s, arms)
    for recorder in recorders.values():
        recorder.shutdown()
    on.shutdown()
    return arms


def models(pool: np.ndarray) -> dict[str, Any]:
    X = pool[:20_000]
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    return {
        "LogisticRegression": LogisticRegression().fit(X, y),
        "RandomForest(50 trees)": RandomForestClassifier(n_estimators=50, max_depth=8,
                                                         random_state=0).fit(X, y),
    }


def _spread(values: Sequence[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}"


def _median_spread(values: Sequence[float], digits: int = 1) -> str:
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def overhead_tables(rounds: int, round_s: float, cases: Iterator[tuple[str, int, float]]
                    ) -> None:
    pool = np.random.default_rng(0).normal(size=(POOL_ROWS, FEATURES))
    fitted = models(pool)
    off_rows, on_rows, cpu_rows, gc_rows = [], [], [], []
    for name, batch, target in cases:
        arms = case_arms(fitted[name], batch, pool, rounds, round_s)
        plain, off = arms["plain"], arms["sampled out"]
        bare, attributed, on = (arms["one SDK span"], arms["span with the same attributes"],
                                arms["recorded"])
        ratios = [o / p for o, p in zip(off.per_call_us, plain.per_call_us, strict=True)]
        added = [o - b for o, b in zip(on.per_call_us, bare.per_call_us, strict=True)]
        attributes_cost = [a - b for a, b in
                           zip(attributed.per_call_us, bare.per_call_us, strict=True)]
        beyond_attributes = [o - a for o, a in
                             zip(on.per_call_us, attributed.per_call_us, strict=True)]
        added_without = [o - b for o, b in zip(on.without_collections_us,
                                               bare.without_collections_us, strict=True)]
        attributes_without = [a - b for a, b in zip(attributed.without_collections_us,
                                                    bare.without_collections_us, strict=True)]
        off_rows.append(
            f"| {name} | {batch} | {_median_spread(plain.per_call_us)} | "
            f"{_median_spread(off.per_call_us)} | {_median_spread(ratios, 3)} | {target:.2f} | "
            f"{_median_spread(plain.self_ratio, 3)} | {statistics.median(off.recorder_us):.1f} "
            f"| {statistics.median(plain.recorder_us):.2f} |")
        on_rows.append(
            f"| {name} | {batch} | {_median_spread(bare.per_call_us)} | "
            f"{_median_spread(on.per_call_us)} | {_median_spread(added)} | "
            f"{RECORDED_TARGET_US:.0f} | {_median_spread(attributes_cost)} | "
            f"{_median_spread(beyond_attributes)} | {_median_spread(added_without)} | "
            f"{_median_spread(attributes_without)} | {_median_spread(bare.self_ratio, 3)} | "
            f"{statistics.median(on.recorder_us):.1f} |")
        # CPU, not wall: the calling thread's CPU plus the recorder thread's, per call, in
        # the same rounds. Other work on a shared machine stretches wall time (the recorder
        # and the caller share the GIL, so on a quiet machine this sum is what a call costs).
        cpu_ratios = [(c + r) / p for c, r, p in
                      zip(off.cpu_us, off.recorder_us, plain.cpu_us, strict=True)]
        cpu_added = [c + r - b for c, r, b in
                     zip(on.cpu_us, on.recorder_us, bare.cpu_us, strict=True)]
        cpu_rows.append(
            f"| {name} | {batch} | {statistics.median(plain.cpu_us):.1f} | "
            f"{statistics.median(off.cpu_us):.1f} + {statistics.median(off.recorder_us):.1f} | "
            f"{_median_spread(cpu_ratios, 3)} | {target:.2f} | "
            f"{statistics.median(bare.cpu_us):.1f} | "
            f"{statistics.median(on.cpu_us):.1f} + {statistics.median(on.recorder_us):.1f} | "
            f"{_median_spread(cpu_added)} |")
        gc_rows.append(f"| {name} | {batch} | " + " | ".join(
            f"{arms[arm].full_collections} in {arms[arm].wall_s:.1f} s "
            f"({arms[arm].full_collection_ms / 1e3 / arms[arm].wall_s:.1%})"
            for arm in ARMS) + " |")
        print(f"  done: {name}, {batch} rows", file=sys.stderr, flush=True)
    shape = (f"median (min-max) of {rounds} rounds, each {round_s:g} s of instrumented "
             f"blocks interleaved with {BASELINE_BLOCK_S:g} s blocks of each baseline")
    print(f"\n### Spans sampled out (ALWAYS_OFF) vs uninstrumented: us per call, {shape}\n")
    print("| model | rows per call | plain | Driftline, sampled out | ratio | target | "
          "plain vs plain (odd blocks / even) | recorder CPU per call (us) | recorder CPU "
          "during plain blocks, per plain call (us) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(off_rows))
    print("\n### Spans recorded vs one bare SDK span (batch processor, same exporter): us per "
          f"call, {shape}\n")
    print("| model | rows per call | one SDK span | Driftline, recorded | added (us) | "
          "target (us) | the span's attributes alone (us) | Driftline beyond a span with its "
          "attributes (us) | added, full collections left out (us) | the attributes alone, "
          "full collections left out (us) | span vs span (odd blocks / even) | recorder CPU "
          "per call (us) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(on_rows))
    print("\n### CPU per call (calling thread + recorder thread), the same rounds: us, median "
          "(min-max)\n")
    print("| model | rows per call | plain | sampled out: caller + recorder | ratio | target | "
          "one SDK span | recorded: caller + recorder | added beyond the span |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(cpu_rows))
    print(f"\n### Full garbage collections inside the timed calls, all {rounds} rounds: count in "
          "the arm's time (the share of it they took)\n")
    print("| model | rows per call | " + " | ".join(ARMS) + " |")
    print("|---|---:|" + "---:|" * len(ARMS))
    print("\n".join(gc_rows))


# --- model runtimes (issue 19): each beside its plain call, spans sampled out -----------------

RUNTIME_BATCHES = (1, 100)
RUNTIME_TREES = 50


def runtime_cases(pool: np.ndarray) -> list[tuple[str, Any, Callable[[np.ndarray], Any],
                                                  np.ndarray]]:
    """(name, instrumentor class, plain call, input pool) per runtime, trained on the pool.
    One thread per model (boosters, ONNX Runtime's thread pools), as the machine is shared
    (run with ``OMP_NUM_THREADS=1`` too); a DMatrix is built per call, as a service using
    ``Booster.predict`` does. The ONNX model is converted with and without ZipMap."""
    import lightgbm as lgb
    import onnxruntime as ort
    import xgboost as xgb
    from skl2onnx import to_onnx

    from driftline.instrumentation.lightgbm import LightGBMInstrumentor
    from driftline.instrumentation.onnxruntime import OnnxRuntimeInstrumentor
    from driftline.instrumentation.xgboost import XGBoostInstrumentor

    X = pool[:20_000]
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "nthread": 1},
                        xgb.DMatrix(X, label=y), RUNTIME_TREES)
    lgbm = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1},
                     lgb.Dataset(X, y), RUNTIME_TREES)
    pool32 = pool.astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    classifier = LogisticRegression().fit(X, y)
    sessions = {zipmap: ort.InferenceSession(
        to_onnx(classifier, pool32[:1], options=None if zipmap else {
            id(classifier): {"zipmap": False}}).SerializeToString(),
        options, providers=["CPUExecutionProvider"]) for zipmap in (True, False)}
    return [
        (f"XGBoost Booster.inplace_predict ({RUNTIME_TREES} trees)", XGBoostInstrumentor,
         booster.inplace_predict, pool),
        (f"XGBoost Booster.predict(DMatrix(x)) ({RUNTIME_TREES} trees)", XGBoostInstrumentor,
         lambda x: booster.predict(xgb.DMatrix(x)), pool),
        (f"LightGBM Booster.predict ({RUNTIME_TREES} trees)", LightGBMInstrumentor,
         lambda x: lgbm.predict(x, num_threads=1), pool),
        ("ONNX Runtime InferenceSession.run (LogisticRegression, ZipMap)",
         OnnxRuntimeInstrumentor, lambda x: sessions[True].run(None, {"X": x}), pool32),
        ("ONNX Runtime InferenceSession.run (LogisticRegression, no ZipMap)",
         OnnxRuntimeInstrumentor, lambda x: sessions[False].run(None, {"X": x}), pool32),
    ]


def _instrumented_timed(instrumentor: Any, provider: TracerProvider, recorder: Recorder,
                        call: Callable[[np.ndarray], Any], inputs: Sequence[np.ndarray],
                        calls: int) -> tuple[float, float, float]:
    """One instrumented round of a runtime: wall and the calling thread's CPU per call, and
    the recorder's CPU per call (its thread's, plus the final uninstrument's flush and
    export in the calling thread). On a shared
    machine the calling thread's CPU clock is what the instrumentation adds to it; wall also
    holds waiting for a core, and for the GIL when the runtime releases it."""
    instrumentor.instrument(tracer_provider=provider, recorder=recorder)
    background_start = _thread_cpu_ns(recorder)
    wall, cpu, _ = _run(call, inputs, calls)
    background = _thread_cpu_ns(recorder) - background_start
    flush_start = time.thread_time_ns()
    instrumentor.uninstrument()
    background += time.thread_time_ns() - flush_start
    return wall, cpu, background / calls / 1e3


def runtime_table(rounds: int, round_s: float) -> None:
    """Plain vs instrumented with spans sampled out (ALWAYS_OFF, metrics on), per runtime
    and batch size, in alternating rounds as the scikit-learn cases."""
    pool = np.random.default_rng(0).normal(size=(POOL_ROWS, FEATURES))
    off = TracerProvider(sampler=ALWAYS_OFF)
    budget = max(1, int(Limits().max_sampled_rows * round_s / EXPORT_INTERVAL_S))
    rows = []
    for name, instrumentor_class, call, case_pool in runtime_cases(pool):
        for batch in RUNTIME_BATCHES:
            inputs = _inputs(case_pool, batch)
            _run(call, inputs, 20)
            estimate_us = _run(call, inputs, max(3, int(2e5 / max(_run(call, inputs, 3)[0],
                                                                   1.0))))[0]
            calls = max(5, int(round_s * 1e6 / estimate_us))
            recorder = Recorder(_Discard(), export_interval_s=EXPORT_INTERVAL_S,
                                limits=Limits(max_sampled_rows=budget))
            plain, sampled, recorder_us, plain_cpu, sampled_cpu = [], [], [], [], []
            for r in range(rounds):
                for arm in ("plain", "sampled out") if r % 2 == 0 else ("sampled out",
                                                                       "plain"):
                    if arm == "plain":
                        wall, cpu, _ = _run(call, inputs, calls)
                        plain.append(wall)
                        plain_cpu.append(cpu)
                    else:
                        wall, cpu, background = _instrumented_timed(
                            instrumentor_class(), off, recorder, call, inputs, calls)
                        sampled.append(wall)
                        sampled_cpu.append(cpu)
                        recorder_us.append(background)
            recorder.shutdown()
            ratios = [o / p for o, p in zip(sampled, plain, strict=True)]
            rows.append(
                f"| {name} | {batch} | {statistics.median(plain):.1f} ({_spread(plain)}) | "
                f"{statistics.median(sampled):.1f} ({_spread(sampled)}) | "
                f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) | "
                f"{statistics.median(plain_cpu):.1f} | {statistics.median(sampled_cpu):.1f} | "
                f"{statistics.median(sampled_cpu) - statistics.median(plain_cpu):.1f} | "
                f"{statistics.median(recorder_us):.1f} |")
            print(f"  done: {name}, {batch} rows", file=sys.stderr, flush=True)
    print(f"\n### Model runtimes, spans sampled out (ALWAYS_OFF) vs uninstrumented: us per "
          f"call, median (min-max) of {rounds} alternating rounds of {round_s:g} s\n")
    print("| runtime call | rows per call | plain (wall) | Driftline, sampled out (wall) | "
          "ratio | plain (caller CPU) | Driftline (caller CPU) | added caller CPU | "
          "recorder CPU per call (us) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


def handoff_rows(rounds: int) -> list[tuple[int, float]]:
    """``submit`` alone. The recorder's thread is stopped first, so the numbers are the
    hand-off itself and not the background aggregation of a million-row batch."""
    model = LogisticRegression()
    rows = []
    for batch in (1, 10_000, 1_000_000):
        recorder = Recorder(_Discard(), max_pending_rows=10**12)
        recorder.shutdown()
        inputs = np.zeros((batch, FEATURES))
        call = PredictCall("bench", model, model_traits, (("ml.model.name", "bench"),),
                           inputs, None, batch, 0.0, None)
        samples = []
        for _ in range(rounds):
            start = time.perf_counter_ns()
            for _ in range(1000):
                recorder.submit(call)
            samples.append((time.perf_counter_ns() - start) / 1000 / 1e3)
        rows.append((batch, statistics.median(samples)))
    return rows


def sdk_record_us_per_value(rounds: int) -> float:
    """One ``Histogram.record`` through the SDK, as a naive instrumentation would do."""
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    histogram = provider.get_meter("bench").create_histogram("feature")
    attributes = [{"ml.feature.name": f"f{i}"} for i in range(FEATURES)]
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(HANDOFF_CALLS // FEATURES):
            for attrs in attributes:
                histogram.record(0.5, attrs)
        samples.append((time.perf_counter_ns() - start) / HANDOFF_CALLS / 1e3)
    provider.shutdown()
    return statistics.median(samples)


def steady_collections(seconds: float, cases: Iterator[tuple[str, int, float]]) -> None:
    """What the rounds above leave out (each starts after a full collection, and a
    collection falls in whichever arm crosses the threshold): each arm alone for
    ``seconds`` of calls, as a service instrumented once, and the full collections the
    objects kept between calls trigger meanwhile (the SDK keeps each recorded span until
    its batch is exported; Driftline the calls it keeps rows of until its drain)."""
    print(f"\n### Full garbage collections in {seconds:g} s of calls, each arm alone, "
          "instrumented once: count (ms; us per call)\n")
    print("| model | rows per call | " + " | ".join(ARMS) + " |")
    print("|---|---:|" + "---:|" * len(ARMS))
    budget = max(1, int(Limits().max_sampled_rows * seconds / EXPORT_INTERVAL_S))
    for name, batch, inputs, off, on, (plain, spanned, spanned_with_attributes) \
            in _fitted_cases(cases):
        calls = max(5, int(seconds * 1e6 / _run(plain, inputs, 200)[0]))
        cells = {}
        for arm, call, provider in (("plain", plain, None), ("sampled out", plain, off),
                                    ("one SDK span", spanned, None),
                                    ("span with the same attributes",
                                     spanned_with_attributes, None),
                                    ("recorded", plain, on)):
            instrumentor = recorder = None
            if provider is not None:
                recorder = Recorder(_Discard(), export_interval_s=EXPORT_INTERVAL_S,
                                    limits=Limits(max_sampled_rows=budget))
                instrumentor = SklearnInstrumentor()
                instrumentor.instrument(tracer_provider=provider, recorder=recorder)
                _run(call, inputs, calls)  # a first interval as long sets the sample rate
                recorder.force_flush()
            on.force_flush()
            _, _, (count, ms) = _run(call, inputs, calls)
            if instrumentor is not None:
                instrumentor.uninstrument()
                recorder.shutdown()
            cells[arm] = f"{count} ({ms:.0f}; {ms * 1e3 / calls:.1f})"
        print(f"| {name} | {batch} | " + " | ".join(cells[arm] for arm in ARMS) + " |",
              flush=True)


PER_CALL_BLOCK = 50  # calls of one arm in a row, in --per-call


def per_call_table(calls: int, cases: Iterator[tuple[str, int, float]]) -> None:
    """The arms' calls timed one by one, in blocks of ``PER_CALL_BLOCK`` calls rotating
    through the arms: the median is what the hot path itself costs a call, without the
    recorder's drains, the batch processor's exports and the full collections that the
    block rounds above count in whichever arm they fall; the mean has them. Spans sampled
    out and spans recorded are two passes (one tracer provider per instrumentation), each
    after a first interval of two seconds of calls that sets the sample rate."""
    print(f"\n### Calls timed one by one, {calls} per arm in blocks of {PER_CALL_BLOCK}: us "
          "per call, median (mean)\n")
    print("| model | rows per call | " + " | ".join(ARMS) + " | sampled out - plain, "
          "median | recorded - one SDK span, median | the attributes alone, median | "
          "recorded - the span with them, median |")
    print("|---|---:|" + "---:|" * (len(ARMS) + 4))
    warm_s = 2.0
    budget = max(1, int(Limits().max_sampled_rows * warm_s / EXPORT_INTERVAL_S))
    for name, batch, inputs, off, on, (plain, spanned, spanned_with_attributes) \
            in _fitted_cases(cases):
        times: dict[str, list[int]] = {}
        for provider, arms in ((off, {"plain": plain, "sampled out": plain}),
                               (on, {"one SDK span": spanned,
                                     "span with the same attributes": spanned_with_attributes,
                                     "recorded": plain})):
            recorder = Recorder(_Discard(), export_interval_s=EXPORT_INTERVAL_S,
                                limits=Limits(max_sampled_rows=budget))
            instrumentor = SklearnInstrumentor()
            instrumentor.instrument(tracer_provider=provider, recorder=recorder)
            _run(plain, inputs, max(5, int(warm_s * 1e6 / _run(plain, inputs, 50)[0])))
            recorder.force_flush()
            switch = _Switch(instrumentor)
            instrumented = {"sampled out", "recorded"}
            for arm in arms:
                times[arm] = []
            position = 0
            for block in range(calls // PER_CALL_BLOCK * len(arms)):
                arm = list(arms)[block % len(arms)]
                (switch.observed if arm in instrumented else switch.original)()
                call, spent = arms[arm], times[arm]
                for i in range(position, position + PER_CALL_BLOCK):
                    x = inputs[i % len(inputs)]
                    start = time.perf_counter_ns()
                    call(x)
                    spent.append(time.perf_counter_ns() - start)
                position += PER_CALL_BLOCK
            switch.observed()
            instrumentor.uninstrument()
            recorder.shutdown()
        median = {arm: statistics.median(spent) / 1e3 for arm, spent in times.items()}
        cells = [f"{median[arm]:.1f} ({statistics.fmean(times[arm]) / 1e3:.1f})"
                 for arm in ARMS]
        differences = (median["sampled out"] - median["plain"],
                       median["recorded"] - median["one SDK span"],
                       median["span with the same attributes"] - median["one SDK span"],
                       median["recorded"] - median["span with the same attributes"])
        print(f"| {name} | {batch} | " + " | ".join(cells) + " | "
              + " | ".join(f"{d:+.1f}" for d in differences) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--round-s", type=float, default=DEFAULT_ROUND_S)
    parser.add_argument("--case", type=int, action="append",
                        help="index into the cases (0-3); default all")
    parser.add_argument("--runtimes-only", action="store_true",
                        help="only the model runtimes' table (XGBoost, LightGBM, ONNX Runtime)")
    parser.add_argument("--steady-gc-s", type=float, default=0.0,
                        help="only the full collections in this many seconds of calls of "
                             "each arm alone, instrumented once, per case")
    parser.add_argument("--per-call", type=int, default=0, metavar="CALLS",
                        help="only the scikit-learn cases' calls timed one by one, this many "
                             "per arm")
    parser.add_argument("--sklearn-only", action="store_true",
                        help="only the scikit-learn cases' tables (to run an earlier install "
                             "of driftline case by case beside this one)")
    args = parser.parse_args()
    cases = [CASES[i] for i in args.case] if args.case else list(CASES)
    import driftline

    print(f"python {platform.python_version()}, scikit-learn {sklearn.__version__}, "
          f"numpy {np.__version__}, {platform.machine()}, driftline from {driftline.__file__}")
    if args.steady_gc_s:
        steady_collections(args.steady_gc_s, iter(cases))
        return
    if args.per_call:
        per_call_table(args.per_call, iter(cases))
        return
    if not args.sklearn_only:
        runtime_table(args.rounds, args.round_s)
    if args.runtimes_only:
        return
    overhead_tables(args.rounds, args.round_s, iter(cases))
    if args.sklearn_only:
        return
    print("\n### Hand-off alone (Recorder.submit), median us per call\n")
    print("| rows per call | submit (us) |")
    print("|---:|---:|")
    for batch, us in handoff_rows(args.rounds):
        print(f"| {batch} | {us:.2f} |")
    per_value = sdk_record_us_per_value(args.rounds)
    print("\n### The alternative DESIGN.md rules out: the SDK's Histogram.record per value\n")
    print("| what | us |")
    print("|---|---:|")
    print(f"| one Histogram.record | {per_value:.2f} |")
    print(f"| one row of {FEATURES} features | {per_value * FEATURES:.1f} |")
    from hot_path_explicit import explicit_tables  # issue 19: monitor().log, @observe, text

    explicit_tables(args.rounds, args.round_s)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
