"""Damaged state files (issue 14, finding 6): one damaged profile disables that model's
profile only; a damaged checkpoint is moved aside, named and explained in the log, and the
processor starts; an empty start from a damaged file is logged, never silent."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from driftline import profile, semconv
from driftline.processor.ml_drift.processor import CheckpointConfig, MlDriftConfig, MlDriftProcessor
from tests.processor.ml_drift.test_ml_drift import (
    NS,
    T0,
    Capture,
    Clock,
    app_batch,
    gauges,
    reference,
)

MODEL_FRAUD = {semconv.ML_MODEL_NAME: "fraud", semconv.ML_MODEL_VERSION: "3",
               semconv.ML_MODEL_FRAMEWORK: "sklearn", semconv.ML_OPERATION: "predict"}


def _processor(clock: Clock, capture: Capture, profiles: Path | None = None,
               checkpoint: Path | None = None) -> MlDriftProcessor:
    config = MlDriftConfig(window="10s", grace="1s", min_rows=100,
                           profiles=str(profiles) if profiles else "./none",
                           checkpoint=CheckpointConfig(path=str(checkpoint) if checkpoint
                                                       else None))
    return MlDriftProcessor(config, capture, clock=clock)


def test_one_damaged_profile_disables_only_its_own(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(7)
    profile.save(reference(rng), tmp_path / "churn.json")
    damaged = reference(rng, version="3").to_dict()
    damaged["model"]["name"] = "fraud"
    damaged["columns"][0]["histogram"]["positive"]["counts"] = "many"
    (tmp_path / "fraud.json").write_text(json.dumps(damaged))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    clock, capture = Clock(T0), Capture()
    proc = _processor(clock, capture, profiles=tmp_path)
    with caplog.at_level(logging.ERROR):
        proc.start()  # raised ComponentError: the whole collector did not start
    try:
        messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any("fraud.json" in m and "positive.counts" in m for m in messages), messages
        assert any("deep.json" in m and "nested" in m for m in messages), messages
        clock.at(3)
        proc.consume_metrics(app_batch(T0 + 2 * NS, {"age": rng.normal(55, 10, 300)}))
        clock.at(12)
        values = gauges(proc.evaluate_due())
        assert values[(semconv.ML_DRIFT_DETECTED, "age", semconv.DRIFT_METHOD_WASSERSTEIN)] == 1
        assert proc.stats().profile_reload_failures == 2
    finally:
        proc.shutdown()


def test_a_profile_nested_deep_is_a_profile_error(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(profile.ProfileError, match=r"deep.json: .*nested"):
        profile.load(tmp_path / "deep.json")


@pytest.mark.parametrize("damage", ["garbage", "dropped table", "bad rows"])
def test_a_damaged_checkpoint_is_moved_aside_and_the_processor_starts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    rng = np.random.default_rng(7)
    path = tmp_path / "ml_drift.sqlite"
    clock, capture = Clock(T0 + 3 * NS), Capture()
    first = _processor(clock, capture, checkpoint=path)
    first.start()
    first.consume_metrics(app_batch(T0 + 2 * NS, {"age": rng.normal(40, 10, 50)}))
    first.shutdown()
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    elif damage == "dropped table":
        with sqlite3.connect(path) as db:
            db.execute("DROP TABLE windows")
    else:
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO baselines VALUES ('[\"churn\"]', 'many', '{}')")
    proc = _processor(clock, Capture(), checkpoint=path)
    with caplog.at_level(logging.WARNING):
        proc.start()  # raised ComponentError before: the collector did not start
    try:
        messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        aside = [p for p in tmp_path.iterdir() if ".damaged-" in p.name
                 and not p.name.endswith(("-wal", "-shm"))]
        if damage == "dropped table":  # the rest of the file serves; the loss is logged
            assert aside == []
            assert any(str(path) in m and "windows" in m and "lost" in m for m in messages)
        else:
            assert len(aside) == 1
            assert any(str(path) in m and aside[0].name in m for m in messages), messages
        # The new checkpoint works: a batch is committed and survives a restart.
        proc.consume_metrics(app_batch(T0 + 2 * NS, {"age": rng.normal(40, 10, 70)}))
    finally:
        proc.shutdown()
    again = _processor(clock, Capture(), checkpoint=path)
    again.start()
    try:
        assert again.stats().restored_windows == 1
    finally:
        again.shutdown()


def test_an_empty_checkpoint_file_is_a_logged_start_not_a_silent_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ml_drift.sqlite"
    path.write_bytes(b"")
    proc = _processor(Clock(T0), Capture(), checkpoint=path)
    with caplog.at_level(logging.WARNING):
        proc.start()
    proc.shutdown()
    assert any(str(path) in r.getMessage() and "empty" in r.getMessage()
               for r in caplog.records if r.levelno >= logging.WARNING)
