"""ml_drift's group commit: batches applied together are committed in one SQLite transaction
by the writer thread; when that commit fails every batch of the group is refused and memory
is back to what the file holds."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from driftline.processor.component import DataRefusedError
from driftline.processor.ml_drift import window_store as _window_store
from tests.processor.ml_drift.test_ml_drift import NS, T0, Capture, Clock, app_batch, rows_point
from tests.processor.ml_drift.test_ml_drift_store import started

CONSUMERS = 6


class Gate(Capture):
    """The next consumer: holds every batch until all consumers arrived, so they reach
    ml_drift's windows (and its group commit) together."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties)

    def consume_metrics(self, batch: object) -> None:
        super().consume_metrics(batch)  # type: ignore[arg-type]
        if 1 < len(self.batches) <= 1 + self.barrier.parties:  # the others pass alone
            self.barrier.wait(timeout=30)


def consume_together(proc: object, batches: list) -> list[BaseException | None]:
    results: list[BaseException | None] = [None] * len(batches)

    def send(i: int) -> None:
        try:
            proc.consume_metrics(batches[i])  # type: ignore[attr-defined]
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_batches_are_all_committed(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    clock, gate = Clock(T0), Gate(CONSUMERS)
    proc = started(tmp_path, clock, gate)
    try:
        clock.at(2)
        proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(40, 10, 10)}))
        batches = [app_batch(T0 + NS, {"age": rng.normal(40, 10, 100 + i)})
                   for i in range(CONSUMERS)]
        assert consume_together(proc, batches) == [None] * CONSUMERS
        stats = proc.stats()
        assert 2 <= stats.checkpoint_commits <= CONSUMERS + 1
        # Acknowledged means in the file: every row of the 7 batches is there.
        db = sqlite3.connect(tmp_path / "ml.sqlite")
        [(state,)] = db.execute("SELECT state FROM windows").fetchall()
        db.close()

        assert json.loads(state)["rows"] == 10 + sum(100 + i for i in range(CONSUMERS))
    finally:
        proc.shutdown()


def test_a_failed_group_commit_refuses_every_batch_and_restores_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_window_store, "BUSY_TIMEOUT_S", 0.05)  # fail fast when locked
    rng = np.random.default_rng(4)
    clock, gate = Clock(T0), Gate(CONSUMERS)
    proc = started(tmp_path, clock, gate)
    try:
        clock.at(2)
        proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(40, 10, 150)}))
        other = sqlite3.connect(tmp_path / "ml.sqlite", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the file
        try:
            batches = [app_batch(T0 + NS, {"age": rng.normal(40, 10, 170 + i)})
                       for i in range(CONSUMERS)]
            results = consume_together(proc, batches)
        finally:
            other.execute("ROLLBACK")
            other.close()
        # Whatever the grouping, every batch was refused, none acknowledged.
        assert all(isinstance(r, DataRefusedError) for r in results), results
        stats = proc.stats()
        assert 1 <= stats.checkpoint_failures <= CONSUMERS
        assert stats.checkpoint_commits == 1  # only the first batch
        proc.consume_metrics(app_batch(T0 + 2 * NS, {"age": rng.normal(40, 10, 180)}))
        clock.at(12)
        # Memory is what the file said: the refused rows are not counted.
        assert rows_point(proc.evaluate_due()).as_int == 150 + 180
    finally:
        proc.shutdown()
