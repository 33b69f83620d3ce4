"""The recorder's CPU per call without a caller competing for the GIL (issue 17).

Run: ``.venv-dev/bin/python benchmarks/recorder_cpu.py`` (about a minute). For each case of
``hot_path.py`` this script hands the recorder (its thread stopped) the calls of one 2.5-second
round at the calls per second of the quiet run, drains it in this thread when the recorder
would (4 096 pending calls, 2**18 pending rows, or each second's calls), and counts only the
drains and the final export in its CPU clock. The first interval is run untimed, so the
timed one samples at the steady rate set from the previous interval's volume.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import hot_path  # the benchmark's cases, models and discarding exporter

from driftline.instrumentation import Limits, Recorder
from driftline.instrumentation._observe import CallSites
from driftline.instrumentation.sklearn import SCOPE, model_traits

ROUND_S = 2.5
REPEATS = 3
# Calls per second of each case in the quiet run (RESULTS.md): a round's calls and the calls
# the recorder drains together at most (it drains at least once a second).
CALLS_PER_S = (8500, 6700, 2000, 350)
DRAIN_CALLS = 4096
DRAIN_ROWS = 1 << 18


def recorder_us_per_call(model: Any, batch: int, calls_per_s: int,
                         pool: np.ndarray) -> float:
    inputs = hot_path._inputs(pool, batch)
    outputs = [model.predict_proba(x) for x in inputs[:64]]
    site = CallSites("sklearn").get(model, "predict_proba", model_traits)
    budget = max(1, int(Limits().max_sampled_rows * ROUND_S / hot_path.EXPORT_INTERVAL_S))
    recorder = Recorder(hot_path._Discard(), export_interval_s=hot_path.EXPORT_INTERVAL_S,
                        limits=Limits(max_sampled_rows=budget))
    recorder._stopped.set()
    recorder._wakeup.set()
    recorder._thread.join()
    calls = int(calls_per_s * ROUND_S)
    cpu_ns = 0
    for _interval in range(2):  # the first one sets the steady sample rate
        cpu_ns, since_drain = 0, 0
        for c in range(calls):
            i = c % len(inputs)
            # A fresh output array per call, as predict_proba returns.
            recorder.submit((SCOPE, model, site.traits, site.attributes, inputs[i],
                             outputs[i % len(outputs)].copy(), batch, 1e-4, None, (), 0))
            since_drain += 1
            if since_drain >= calls_per_s or recorder.pending_calls >= DRAIN_CALLS \
                    or recorder._pending_rows >= DRAIN_ROWS:
                since_drain = 0
                start = time.thread_time_ns()
                recorder._drain()
                cpu_ns += time.thread_time_ns() - start
        start = time.thread_time_ns()
        recorder.force_flush()
        cpu_ns += time.thread_time_ns() - start
    return cpu_ns / calls / 1e3


def main() -> None:
    pool = np.random.default_rng(0).normal(size=(hot_path.POOL_ROWS, hot_path.FEATURES))
    fitted = hot_path.models(pool)
    print("| model | rows per call | recorder CPU per call (us), median (min-max) |")
    print("|---|---:|---:|")
    for (name, batch, _), calls_per_s in zip(hot_path.CASES, CALLS_PER_S, strict=True):
        samples = [recorder_us_per_call(fitted[name], batch, calls_per_s, pool)
                   for _ in range(REPEATS)]
        print(f"| {name} | {batch} | {statistics.median(samples):.1f} "
              f"({min(samples):.1f}-{max(samples):.1f}) |", flush=True)


if __name__ == "__main__":
    main()
