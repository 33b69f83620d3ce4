"""Cost of the explicit API (issue 19) beside the plain call, and of text descriptors.

Run: ``.venv/bin/python benchmarks/hot_path_explicit.py`` (about a minute with the
defaults; ``benchmarks/hot_path.py`` prints these tables after its own). Per batch size
(1 and 1 000 rows of 20 features), arms run in alternating rounds. The model is a function
returning precomputed labels, so what is added is Driftline's alone. Arms: the plain call;
the call inside ``with monitor(...) as mon`` logging the features and the prediction; the
call as an ``@observe``-d function; each with the tracer sampling nothing (``ALWAYS_OFF``)
and every span (``ALWAYS_ON``, batch processor, discarding exporter). The recorder's CPU
per call is its thread's CPU clock over the round plus the final flush, divided by the
calls. Text descriptors: the recorder-thread CPU to turn 1 000 logged reviews into their
descriptor columns.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from driftline.derived import DATA_TYPE_TEXT, ColumnReader
from driftline.instrumentation import Recorder
from driftline.instrumentation.explicit import Explicit

FEATURES = 20
BATCHES = (1, 1000)
DEFAULT_ROUNDS = 5
DEFAULT_ROUND_S = 1.0
EXPORT_INTERVAL_S = 60.0
TEXT_ROWS = 1000
WORDS = [f"word{i}" for i in range(2000)]


class _Discard:
    """Span and metric exporter that drops everything."""

    def export(self, *args: Any, **kwargs: Any) -> Any:
        from opentelemetry.sdk.metrics.export import MetricExportResult

        return MetricExportResult.SUCCESS

    def force_flush(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        pass


class _Precomputed:
    """A model whose ``predict`` costs nothing: labels precomputed for the batch size."""

    def __init__(self, labels: np.ndarray) -> None:
        self._labels = labels

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._labels[:len(x)]


def _thread_cpu_ns(recorder: Recorder) -> int:
    return time.clock_gettime_ns(time.pthread_getcpuclockid(recorder._thread.ident))


def _arms(model: Any, sampled: bool) -> tuple[Explicit, dict[str, Callable[[np.ndarray], Any]]]:
    provider = TracerProvider(sampler=ALWAYS_ON if sampled else ALWAYS_OFF)
    provider.add_span_processor(BatchSpanProcessor(_Discard()))  # type: ignore[arg-type]
    recorder = Recorder(_Discard(), export_interval_s=EXPORT_INTERVAL_S)  # type: ignore[arg-type]
    api = Explicit(tracer_provider=provider, recorder=recorder)
    tracer = provider.get_tracer("bench")

    def spanned(x: np.ndarray) -> Any:
        with tracer.start_as_current_span("predict bench"):
            return model.predict(x)

    def logged(x: np.ndarray) -> Any:
        with api.monitor("bench", version="1") as mon:
            y = model.predict(x)
            mon.log(x)
            mon.log(y, role="prediction")
        return y

    @api.observe(model="bench-observed", version="1")
    def observed(x: np.ndarray) -> Any:
        return model.predict(x)

    arms = {"monitor().log": logged, "@observe": observed}
    return api, {"plain in one SDK span": spanned, **arms} if sampled else arms


def _round(call: Callable[[np.ndarray], Any], inputs: list[np.ndarray], round_s: float,
           recorder: Recorder | None) -> tuple[float, float]:
    """(us per call, recorder CPU us per call) of calls for about ``round_s``."""
    cpu_start = _thread_cpu_ns(recorder) if recorder is not None else 0
    calls, n = 0, len(inputs)
    start = time.perf_counter_ns()
    deadline = start + round_s * 1e9
    while time.perf_counter_ns() < deadline:
        for _ in range(100):
            call(inputs[calls % n])
            calls += 1
    elapsed = time.perf_counter_ns() - start
    cpu = 0.0
    if recorder is not None:
        cpu = _thread_cpu_ns(recorder) - cpu_start
        flush_start = time.thread_time_ns()
        recorder.force_flush()
        cpu += time.thread_time_ns() - flush_start
    return elapsed / calls / 1e3, cpu / calls / 1e3


def explicit_rows(rounds: int, round_s: float) -> list[str]:
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(200_000, FEATURES))
    model = _Precomputed(np.where(pool[:, 0] > 0, "yes", "no"))
    off_api, off = _arms(model, sampled=False)
    on_api, on = _arms(model, sampled=True)
    lines = []
    for batch in BATCHES:
        inputs = [pool[s:s + batch] for s in range(0, pool.shape[0] - batch + 1, batch)][:4096]
        samples: dict[str, list[tuple[float, float]]] = {}
        for _ in range(rounds):
            samples.setdefault("plain", []).append(_round(model.predict, inputs, round_s, None))
            for label, arms, api in (("sampled out", off, off_api), ("recorded", on, on_api)):
                for name, call in arms.items():
                    samples.setdefault(f"{name}, {label}", []).append(
                        _round(call, inputs, round_s, api.recorder))
        plain = statistics.median(us for us, _ in samples["plain"])
        spanned = statistics.median(us for us, _ in samples["plain in one SDK span, recorded"])
        for arm, values in samples.items():
            us = [v for v, _ in values]
            baseline = spanned if arm.endswith("recorded") else plain
            added = "-" if arm.startswith("plain") \
                else f"{statistics.median(us) - baseline:+.1f}"
            cpu = "-" if arm.startswith("plain") \
                else f"{statistics.median(c for _, c in values):.1f}"
            lines.append(f"| {arm} | {batch} | {statistics.median(us):.1f} "
                         f"({min(us):.1f}-{max(us):.1f}) | {added} | {cpu} |")
    for api in (off_api, on_api):
        api.recorder.shutdown()
    return lines


def text_descriptor_us(rounds: int) -> tuple[float, float]:
    """(without, with) a reference vocabulary: us to read 1 000 reviews into descriptors."""
    rng = np.random.default_rng(1)
    reviews = [" ".join(rng.choice(WORDS, rng.integers(5, 40))) for _ in range(TEXT_ROWS)]
    results = []
    for vocabulary in (None, frozenset(WORDS[:1500])):
        reader = ColumnReader(vocabularies={"review": vocabulary} if vocabulary else None)
        samples = []
        for _ in range(rounds):
            start = time.thread_time_ns()
            reader.columns(reviews, "review", DATA_TYPE_TEXT)
            samples.append((time.thread_time_ns() - start) / 1e3)
        results.append(statistics.median(samples))
    return results[0], results[1]


def explicit_tables(rounds: int = DEFAULT_ROUNDS, round_s: float = DEFAULT_ROUND_S) -> None:
    print(f"\n### Explicit API (issue 19) beside the plain call: us per call, median (min-max) "
          f"of {rounds} alternating rounds of {round_s:g} s; a predict of precomputed labels on "
          f"{FEATURES} features\n")
    print("| arm | rows per call | per call (us) | added (us): to plain, or recorded to one "
          "SDK span | recorder CPU per call (us) |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(explicit_rows(rounds, round_s)))
    bare, with_vocabulary = text_descriptor_us(rounds)
    print(f"\n### Text descriptors in the recorder thread, per {TEXT_ROWS} rows (5 to 40 "
          "words each)\n")
    print("| descriptors | CPU per 1 000 rows (us) |")
    print("|---|---:|")
    print(f"| chars, tokens, empty, non_ascii_share | {bare:.0f} |")
    print(f"| the same and oov_share (reference vocabulary) | {with_vocabulary:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--round-s", type=float, default=DEFAULT_ROUND_S)
    args = parser.parse_args()
    explicit_tables(args.rounds, args.round_s)


if __name__ == "__main__":
    main()
