"""Labels joined per second by the ml_performance processor, and its store's size.

Run: ``.venv-dev/bin/python benchmarks/performance_join.py [--predictions 1000000]``. Everything
runs in one process on a real SQLite file in a temporary directory. Three measurements:

1. Store only: ``PredictionStore.apply`` with batches of 1 000 labels against stored
   predictions (the join: lookup, update, dirty windows, one commit per batch).
2. The processor path: labels as OTLP ``ml.ground_truth`` log records through
   ``MlPerformanceProcessor.consume_logs`` (reading the records, the join, the commit),
   for a random subset of ``--predictions`` stored predictions, in random order.
3. SQLite bytes per million predictions: the file (after a WAL checkpoint) holding
   ``--predictions`` binary-classifier predictions with scores and 36-character UUID ids,
   before and after their labels.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from driftline import semconv
from driftline.processor.ml_performance.processor import (
    MetricsTargetConfig,
    MlPerformanceConfig,
    MlPerformanceProcessor,
    PerformanceAlertsConfig,
    StoreConfig,
)
from driftline.processor.ml_performance.store import (
    GroundTruth,
    ModelKey,
    Prediction,
    PredictionStore,
)

BATCH = 1_000
NS = 1_000_000_000
WINDOW_NS = 60 * NS
TTL_NS = 7 * 24 * 3600 * NS
MODEL = ModelKey("churn", "3", "sklearn", "predict_proba")
CLASSES = ("no", "yes")


class _Discard:
    def consume_logs(self, batch: object) -> None:
        pass


def _predictions(ids: list[str], start_ns: int, rng: np.random.Generator) -> list[Prediction]:
    yes = rng.random(len(ids))
    return [Prediction(i, MODEL, start_ns + n * 1_000_000, label="yes" if y >= 0.5 else "no",
                       scores=(1.0 - y, y), classes=CLASSES,
                       resource=((semconv.SERVICE_NAME, "churn-api"),))
            for n, (i, y) in enumerate(zip(ids, yes, strict=True))]


def _file_bytes(path: Path) -> int:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")
               if not p.name.endswith(".lock"))


def store_only(directory: Path, count: int, now_ns: int) -> tuple[float, int, int]:
    """(labels joined per second, bytes with predictions, bytes with labels too)."""
    rng = np.random.default_rng(1)
    ids = [str(uuid.UUID(int=int(v))) for v in rng.integers(0, 2**63, count)]
    path = directory / "store.sqlite"
    store = PredictionStore(path, WINDOW_NS, TTL_NS)
    for start in range(0, count, BATCH):
        store.apply(_predictions(ids[start:start + BATCH], now_ns - 3600 * NS, rng), (), now_ns)
    store.close()
    bytes_predictions = _file_bytes(path)
    store = PredictionStore(path, WINDOW_NS, TTL_NS)
    order = rng.permutation(count)
    labels = [GroundTruth(ids[i], label="yes" if rng.random() < 0.5 else "no") for i in order]
    started = time.perf_counter()
    joined = 0
    for start in range(0, count, BATCH):
        joined += store.apply((), labels[start:start + BATCH], now_ns).joined_labels
    elapsed = time.perf_counter() - started
    store.close()
    assert joined == count, (joined, count)
    return count / elapsed, bytes_predictions, _file_bytes(path)


def _label_batch(ids: list[str]) -> list[ResourceLogs]:
    records = [LogRecord(event_name=semconv.EVENT_GROUND_TRUTH, attributes=[
        KeyValue(key=semconv.ML_PREDICTION_ID, value=AnyValue(string_value=i)),
        KeyValue(key=semconv.ML_GROUND_TRUTH_LABEL, value=AnyValue(string_value="yes"))])
        for i in ids]
    return [ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])]


def processor_path(directory: Path, stored: int, count: int, now_ns: int) -> float:
    """Labels joined per second through ``consume_logs`` (OTLP records in, committed)."""
    rng = np.random.default_rng(2)
    ids = [str(uuid.UUID(int=int(v))) for v in rng.integers(0, 2**63, stored)]
    path = directory / "processor.sqlite"
    store = PredictionStore(path, WINDOW_NS, TTL_NS)
    for start in range(0, stored, BATCH):
        store.apply(_predictions(ids[start:start + BATCH], now_ns - 3600 * NS, rng), (), now_ns)
    store.close()
    labelled = [ids[i] for i in rng.choice(stored, count, replace=False)]
    batches = [_label_batch(labelled[s:s + BATCH]) for s in range(0, count, BATCH)]
    config = MlPerformanceConfig(store=StoreConfig(path=str(path)),
                                 metrics=MetricsTargetConfig(pipelines=[]),
                                 alerts=PerformanceAlertsConfig(pipelines=[]))
    processor = MlPerformanceProcessor(config, _Discard(), clock=lambda: now_ns,
                                       tick_interval_s=3600)
    processor.start()
    started = time.perf_counter()
    for batch in batches:
        processor.consume_logs(batch)
    elapsed = time.perf_counter() - started
    joined = processor.stats().joined_labels
    processor.shutdown()
    assert joined == count, (joined, count)
    return count / elapsed


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=1_000_000,
                        help="predictions (and labels) for the store-only run and the size")
    parser.add_argument("--processor-labels", type=int, default=200_000,
                        help="labels through consume_logs")
    args = parser.parse_args()
    now_ns = time.time_ns()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        rate, before, after = store_only(directory, args.predictions, now_ns)
        processor_rate = processor_path(directory, args.predictions, args.processor_labels,
                                        now_ns)
    per_million = 1_000_000 / args.predictions
    print(f"machine: {_cpu()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    print("| measurement | value |")
    print("|---|---:|")
    print(f"| store only: labels joined per second ({args.predictions:,} labels, batches of "
          f"{BATCH}) | {rate:,.0f} |")
    print(f"| consume_logs (OTLP records in): labels joined per second "
          f"({args.processor_labels:,} labels, random order) | {processor_rate:,.0f} |")
    print(f"| SQLite bytes per million predictions, unlabelled | "
          f"{before * per_million / 1e6:,.1f} MB |")
    print(f"| SQLite bytes per million predictions, labelled | "
          f"{after * per_million / 1e6:,.1f} MB |")


if __name__ == "__main__":
    main()
