"""Cost of Driftline on the hot path, side by side with the uninstrumented baseline.

Run: ``.venv-dev/bin/python benchmarks/hot_path.py``. Everything runs in one process; rounds
alternate plain and instrumented calls so machine noise hits both alike, and the table
reports medians and ratios. Three questions:

1. What does instrumentation add to a ``predict_proba`` call, for a fast and a slow model,
   at batch sizes 1, 100 and 10 000 rows?
2. Does the hand-off (``Recorder.submit``) cost the same at any batch size?
3. What would recording each feature value through the SDK's Histogram API cost instead
   (DESIGN.md: "about 10 us per histogram.record call")?
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from collections.abc import Callable
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
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from driftline.instrumentation import PredictCall, Recorder
from driftline.instrumentation.sklearn import SklearnInstrumentor, model_traits

FEATURES = 20
BATCH_SIZES = (1, 100, 10_000)
ROUNDS = 5
TARGET_ROUND_S = 0.3  # calls per round are sized so a round takes about this long
HANDOFF_CALLS = 20_000


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


def _per_call_us(call: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        call()
    return (time.perf_counter_ns() - start) / calls / 1e3


def _calls_per_round(call: Callable[[], Any]) -> int:
    once = _per_call_us(call, 3)
    return max(3, int(TARGET_ROUND_S * 1e6 / max(once, 1.0)))


def overhead_rows() -> list[tuple[str, int, float, float]]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, FEATURES))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    models = {
        "LogisticRegression": LogisticRegression().fit(X, y),
        "RandomForest(50 trees)": RandomForestClassifier(n_estimators=50, max_depth=8,
                                                         random_state=0).fit(X, y),
    }
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Discard()))
    recorder = Recorder(_Discard(), export_interval_s=1.0)
    instrumentor = SklearnInstrumentor()
    rows = []
    for name, model in models.items():
        for batch in BATCH_SIZES:
            inputs = X[:batch]
            call = lambda model=model, inputs=inputs: model.predict_proba(inputs)  # noqa: E731
            calls = _calls_per_round(call)
            plain, instrumented = [], []
            for _ in range(ROUNDS):
                plain.append(_per_call_us(call, calls))
                instrumentor.instrument(tracer_provider=provider, recorder=recorder)
                instrumented.append(_per_call_us(call, calls))
                instrumentor.uninstrument()
            rows.append((name, batch, statistics.median(plain), statistics.median(instrumented)))
    recorder.shutdown()
    return rows


def handoff_rows() -> list[tuple[int, float]]:
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
        samples = [_per_call_us(lambda call=call, r=recorder: r.submit(call), 1000)
                   for _ in range(ROUNDS)]
        rows.append((batch, statistics.median(samples)))
    return rows


def sdk_record_us_per_value() -> float:
    """One ``Histogram.record`` through the SDK, as a naive instrumentation would do."""
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    histogram = provider.get_meter("bench").create_histogram("feature")
    attributes = [{"ml.feature.name": f"f{i}"} for i in range(FEATURES)]
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        for _ in range(HANDOFF_CALLS // FEATURES):
            for attrs in attributes:
                histogram.record(0.5, attrs)
        samples.append((time.perf_counter_ns() - start) / HANDOFF_CALLS / 1e3)
    provider.shutdown()
    return statistics.median(samples)


def main() -> None:
    print(f"python {platform.python_version()}, scikit-learn {sklearn.__version__}, "
          f"numpy {np.__version__}, {platform.machine()}, {platform.processor() or ''}")
    print(f"\n### predict_proba on {FEATURES} features: median us per call over {ROUNDS} "
          "alternating rounds\n")
    print("| model | rows per call | plain (us) | instrumented (us) | added (us) | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, batch, plain, instrumented in overhead_rows():
        print(f"| {name} | {batch} | {plain:.1f} | {instrumented:.1f} | "
              f"{instrumented - plain:.1f} | {instrumented / plain:.3f} |")
    print("\n### Hand-off alone (Recorder.submit), median us per call\n")
    print("| rows per call | submit (us) |")
    print("|---:|---:|")
    for batch, us in handoff_rows():
        print(f"| {batch} | {us:.2f} |")
    per_value = sdk_record_us_per_value()
    print("\n### The alternative DESIGN.md rules out: the SDK's Histogram.record per value\n")
    print("| what | us |")
    print("|---|---:|")
    print(f"| one Histogram.record | {per_value:.2f} |")
    print(f"| one row of {FEATURES} features | {per_value * FEATURES:.1f} |")
    print(f"| a batch of 100 rows | {per_value * FEATURES * 100:.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
