"""Instructions per call on the hot path, counted by Valgrind's callgrind: the noise-free
companion of ``hot_path.py``.

Wall time on a shared 2-core VM spreads by ±5 % between rounds of the same code, as much as
the overhead being measured. The number of instructions a call executes does not depend on
the neighbours: callgrind counts them exactly (both threads: the recorder's work is in the
count). It does not see cache misses or waits for the GIL, which is why ``hot_path.py``'s
wall and CPU ratios stay the measure of record; this table says how much work each arm
adds, and a change that cuts instructions shows here even when the wall ratios cannot tell
it from noise.

Run: ``.venv-dev/bin/python benchmarks/hot_path_instructions.py`` (needs ``valgrind``,
Debian package; about 25 minutes for two installs, two processes at a time, the forest
most). ``--python`` adds another interpreter with an earlier install of driftline, run case
by case beside this one.

One process per case and interpreter runs four arms one after the other, each over the same
varied inputs (``hot_path._inputs``): ``plain``, ``sampled out`` (Driftline, ``ALWAYS_OFF``),
``one SDK span`` (the plain call in one bare span, batch processor) and ``recorded``
(Driftline, every span sampled). Each instrumented arm runs one interval of calls first, so
that it is measured at the sample rate its volume sets, then the measured calls; the final
flush and export are counted apart (``export``, per call of the interval). The recorder's
budget per interval is its default per second (1 667 rows) times the interval's duration at
the plain call's native speed, measured first outside Valgrind.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from hot_path import FEATURES, POOL_ROWS, _Discard, _inputs, models
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from opentelemetry.trace import SpanKind

from driftline.instrumentation import Limits, Recorder
from driftline.instrumentation.sklearn import SklearnInstrumentor

# (model, rows per call, calls per arm under Valgrind, about 50x slower than native)
CASES = (("LogisticRegression", 1, 4000), ("LogisticRegression", 100, 4000),
         ("LogisticRegression", 10_000, 600), ("RandomForest(50 trees)", 1, 600))
ARMS = ("plain", "sampled out", "one SDK span", "recorded")
ROWS_PER_SECOND = 100_000 / 60.0  # Limits().max_sampled_rows per OTEL_METRIC_EXPORT_INTERVAL


def run_arms(name: str, batch: int, calls: int, plain_us: float) -> None:
    """The child process, under callgrind: each arm between two ``time.sleep(0)``."""
    pool = np.random.default_rng(0).normal(size=(POOL_ROWS, FEATURES))
    model = models(pool)[name]
    inputs = _inputs(pool, batch)
    budget = max(1, int(ROWS_PER_SECOND * calls * plain_us / 1e6))
    off = TracerProvider(sampler=ALWAYS_OFF)
    on = TracerProvider(sampler=ALWAYS_ON)
    on.add_span_processor(BatchSpanProcessor(_Discard()))
    tracer = on.get_tracer("bench")

    def loop(call) -> None:
        for i in range(calls):
            call(inputs[i % len(inputs)])

    def plain(x):
        return model.predict_proba(x)

    def spanned(x):
        with tracer.start_as_current_span("predict_proba", kind=SpanKind.INTERNAL):
            return model.predict_proba(x)

    phases = []

    def done(phase: str) -> None:
        """Callgrind's next dump holds the work since the previous one: ``phase``."""
        phases.append(phase)
        time.sleep(0)

    for _ in range(50):
        plain(inputs[0])
    done("setup")
    loop(plain)
    done("plain")
    loop(spanned)
    on.force_flush()
    done("one SDK span")
    for arm, provider in (("sampled out", off), ("recorded", on)):
        recorder = Recorder(_Discard(), export_interval_s=3600.0,
                            limits=Limits(max_sampled_rows=budget))
        instrumentor = SklearnInstrumentor()
        instrumentor.instrument(tracer_provider=provider, recorder=recorder)
        loop(plain)  # the first interval: its volume sets the measured one's sample rate
        recorder.force_flush()
        done("first interval")
        loop(plain)
        on.force_flush()
        done(arm)
        recorder.force_flush()  # the interval's last drain and its export
        done(f"{arm} export")
        instrumentor.uninstrument()
        recorder.shutdown()
        done("uninstrument")
    print(json.dumps(phases))


def plain_us(name: str, batch: int) -> float:
    """The plain call's native time per call, in us (the child's ``--time``)."""
    pool = np.random.default_rng(0).normal(size=(POOL_ROWS, FEATURES))
    model, inputs = models(pool)[name], _inputs(pool, batch)
    for i in range(50):
        model.predict_proba(inputs[i % len(inputs)])
    start = time.perf_counter()
    for i in range(300):
        model.predict_proba(inputs[i % len(inputs)])
    return (time.perf_counter() - start) / 300 * 1e6


def count(python: str, name: str, batch: int, calls: int) -> dict[str, float]:
    """Instructions per call of each arm (and ``export`` per call of an interval), for one
    interpreter, from callgrind's dumps."""
    native_us = subprocess.run([python, __file__, "--time", name, str(batch)], check=True,
                               capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as out:
        child = subprocess.run(
            ["valgrind", "--tool=callgrind", "--dump-before=time_sleep",
             f"--callgrind-out-file={out}/cg.%p", python, __file__, "--child", name,
             str(batch), str(calls), native_us],
            check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())
        phases = json.loads(child.stdout.strip().splitlines()[-1])
        counts = {}
        for path in glob.glob(f"{out}/cg.*.*"):
            with open(path) as dump:
                total = next(int(line.split()[1]) for line in dump if line.startswith("totals:"))
            counts[phases[int(path.rsplit(".", 1)[1]) - 1]] = total / calls
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", default=[],
                        help="another interpreter (an earlier install of driftline) to count "
                             "beside this one")
    parser.add_argument("--case", type=int, action="append",
                        help="index into the cases (0-3); default all")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--time", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time:
        print(plain_us(args.time[0], int(args.time[1])))
        return
    if args.child:
        name, batch, calls, native_us = args.child
        run_arms(name, int(batch), int(calls), float(native_us))
        return
    interpreters = [sys.executable, *args.python]
    cases = [CASES[i] for i in args.case] if args.case else list(CASES)
    jobs = [(python, case) for case in cases for python in interpreters]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda job: count(job[0], *job[1]), jobs))
    print("\n### Instructions per call (callgrind, both threads), thousands\n")
    print("| model | rows | driftline from | plain | sampled out | ratio | export per call | "
          "one SDK span | recorded | added beyond the span | export per call |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (python, (name, batch, _)), counts in zip(jobs, results, strict=True):
        plain, off, span, on = (counts[arm] for arm in ARMS)
        print(f"| {name} | {batch} | {python} | {plain / 1e3:.1f} | {off / 1e3:.1f} | "
              f"{off / plain:.3f} | {counts['sampled out export'] / 1e3:.1f} | "
              f"{span / 1e3:.1f} | {on / 1e3:.1f} | {(on - span) / 1e3:+.1f} | "
              f"{counts['recorded export'] / 1e3:.1f} |")


if __name__ == "__main__":
    main()
