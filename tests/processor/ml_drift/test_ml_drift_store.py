"""ml_drift's SQLite checkpoint in process: what a restart resumes (open windows, the
cumulative table, last-N history, baselines), a failed write refused and undone, and the
processor's YAML keys through the real config loader."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from driftline import semconv
from driftline.processor.component import ComponentError, DataRefusedError, Host
from driftline.processor.ml_drift import window_store as _window_store
from driftline.processor.ml_drift.processor import (
    BaselineConfig,
    CheckpointConfig,
    EvaluationConfig,
    MlDriftConfig,
    MlDriftProcessor,
)
from driftline.processor.service.config import ComponentID, ConfigError, parse_config
from tests.processor.ml_drift.test_ml_drift import (
    NS,
    T0,
    WINDOW_S,
    Capture,
    Clock,
    app_batch,
    gauges,
    reference,
    rows_point,
)
from tests.processor.ml_drift.test_ml_drift_features import LogsRecorder
from tests.processor.ml_drift.test_ml_drift_temporality import cumulative_rows


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(9)


def started(tmp_path: Path, clock: Clock, capture: Capture, profiles: dict | None = None,
            **settings: object) -> MlDriftProcessor:
    config = MlDriftConfig(window=f"{WINDOW_S}s", grace="1s", min_rows=100,
                           checkpoint=CheckpointConfig(path=str(tmp_path / "ml.sqlite")),
                           **settings)
    proc = MlDriftProcessor(config, capture, clock=clock, profiles=profiles or {},
                            tick_interval_s=3600)  # the test evaluates by hand
    proc.start()
    return proc


def test_restart_resumes_open_windows_and_cumulative_streams(tmp_path: Path) -> None:
    clock, capture = Clock(T0), Capture()
    proc = started(tmp_path, clock, capture)
    start = T0 + NS // 2
    clock.at(3)
    proc.consume_metrics(cumulative_rows([(start, T0 + 1 * NS, 100)]))
    proc.consume_metrics(cumulative_rows([(start, T0 + 2 * NS, 250)]))
    proc.shutdown()  # the window is still open: it stays in the checkpoint
    assert proc.stats().discarded_windows == 0

    again = started(tmp_path, clock, capture)
    try:
        proc_stats = again.stats()
        assert (proc_stats.restored_windows, proc_stats.current_cumulative_streams) == (1, 1)
        # The next cumulative point continues the stream: its delta, not its total, counts.
        again.consume_metrics(cumulative_rows([(start, T0 + 3 * NS, 400)]))
        clock.at(12)
        assert rows_point(again.evaluate_due()).as_int == 400
    finally:
        again.shutdown()


def test_history_and_baseline_survive_a_restart(tmp_path: Path,
                                                rng: np.random.Generator) -> None:
    clock, capture = Clock(T0), Capture()
    settings = {"evaluation": EvaluationConfig(windows=2),
                "baseline": BaselineConfig(windows=1)}
    proc = started(tmp_path, clock, capture, **settings)
    clock.at(2)
    proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(40, 10, 400)}))
    clock.at(12)
    proc.evaluate_due()  # window 0 becomes the baseline and the history
    proc.shutdown()

    again = started(tmp_path, clock, capture, **settings)
    try:
        clock.at(12)
        again.consume_metrics(app_batch(T0 + 11 * NS, {"age": rng.normal(80, 10, 400)}))
        clock.at(22)
        values = gauges(again.evaluate_due())
    finally:
        again.shutdown()
    # Compared with the restored baseline, over windows 0 and 1 (800 rows, half shifted).
    # A 400-row baseline is a small reference: the KS test is its verdict.
    assert values[(semconv.ML_DRIFT_DETECTED, "age", semconv.DRIFT_METHOD_KS)] == 1
    assert values[(semconv.ML_WINDOW_ROWS, "", "")] == 400


def test_a_failed_commit_refuses_the_batch_and_undoes_it(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_window_store, "BUSY_TIMEOUT_S", 0.05)  # fail fast when locked
    clock, capture = Clock(T0), Capture()
    proc = started(tmp_path, clock, capture, profiles={("churn", "3"): reference(rng)})
    try:
        clock.at(2)
        proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(40, 10, 150)}))
        other = sqlite3.connect(tmp_path / "ml.sqlite", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the file
        with pytest.raises(DataRefusedError, match="cannot write"):
            proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(40, 10, 170)}))
        other.execute("ROLLBACK")
        other.close()
        proc.consume_metrics(app_batch(T0 + 2 * NS, {"age": rng.normal(40, 10, 180)}))
        clock.at(12)
        assert rows_point(proc.evaluate_due()).as_int == 150 + 180  # not 170: undone
        assert proc.stats().checkpoint_failures == 1
    finally:
        proc.shutdown()


def test_yaml_keys_through_the_config_loader(tmp_path: Path) -> None:
    config = parse_config({
        "receivers": {"otlp": None},
        "processors": {"ml_drift": {
            "profiles": str(tmp_path), "reload_interval": "2s",
            "columns": {"age": {"method": "psi", "threshold": 0.2}},
            "evaluation": {"windows": 3}, "baseline": {"windows": 2},
            "limits": {"max_streams": 5, "max_categories": 50},
            "alerts": {"pipelines": ["logs"]},
            "checkpoint": {"path": str(tmp_path / "state.sqlite")}}},
        "exporters": {"file": {"path": str(tmp_path / "out.jsonl")}},
        "service": {"pipelines": {
            "metrics": {"receivers": ["otlp"], "processors": ["ml_drift"],
                        "exporters": ["file"]},
            "logs": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }, environ={})

    drift_config = config.processors[ComponentID("ml_drift")]
    assert drift_config.to_thresholds().overrides == {"age": ("psi", 0.2)}
    assert (drift_config.evaluation.windows, drift_config.baseline.windows) == (3, 2)
    assert (drift_config.limits.max_streams, drift_config.limits.max_categories,
            drift_config.limits.max_features) == (5, 50, MlDriftConfig().limits.max_features)
    assert drift_config.alerts.pipelines == ["logs"]
    assert drift_config.checkpoint.path == str(tmp_path / "state.sqlite")


def test_yaml_problems_name_their_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({
            "receivers": {"otlp": None},
            "processors": {"ml_drift": {
                "profiles": str(tmp_path), "evaluation": {"windows": 0},
                "alerts": {"pipelines": ["metrics"]}, "checkpoint": {"path": str(tmp_path)},
                "columns": {"age": {"method": "psi", "treshold": 1}}}},
            "exporters": {"file": {"path": str(tmp_path / "out.jsonl")}},
            "service": {"pipelines": {"metrics": {
                "receivers": ["otlp"], "processors": ["ml_drift"], "exporters": ["file"]}}},
        }, environ={})

    problems = caught.value.problems
    assert "processors::ml_drift::evaluation::windows: must be a whole number, 1 or more, " \
        "got 0" in problems
    assert "processors::ml_drift::alerts::pipelines: must be a list of logs pipeline IDs " \
        "(logs, logs/NAME), got ['metrics']" in problems
    assert any(p.startswith("processors::ml_drift::checkpoint::path: ") and "is a directory"
               in p for p in problems)
    assert any(p.startswith("processors::ml_drift::columns::age: must be a mapping with "
                            "method and optional threshold") for p in problems)


def test_two_processors_cannot_share_a_checkpoint(tmp_path: Path) -> None:
    clock, capture = Clock(T0), Capture()
    first = started(tmp_path, clock, capture)
    try:
        with pytest.raises(ComponentError, match="is in use by another ml_drift processor"):
            started(tmp_path, clock, capture)
    finally:
        first.shutdown()
    started(tmp_path, clock, capture).shutdown()  # free again once the first is gone


def test_a_restart_does_not_repeat_an_alert(tmp_path: Path, rng: np.random.Generator) -> None:
    clock, capture = Clock(T0), Capture()
    profiles = {("churn", "3"): reference(rng)}
    logs = [LogsRecorder(), LogsRecorder()]
    for k, recorder in enumerate(logs):  # two runs on one checkpoint, drifted both times
        config = MlDriftConfig(window=f"{WINDOW_S}s", grace="1s",
                               checkpoint=CheckpointConfig(path=str(tmp_path / "ml.sqlite")))
        proc = MlDriftProcessor(config, capture, clock=clock, profiles=profiles,
                                tick_interval_s=3600)
        proc.set_host(Host(pipelines={"logs": recorder}))
        proc.start()
        try:
            clock.at(k * WINDOW_S + 2)
            proc.consume_metrics(app_batch(T0 + (k * WINDOW_S + 1) * NS,
                                           {"age": rng.normal(80, 10, 300)}))
            clock.at(k * WINDOW_S + WINDOW_S + 1.5)
            values = gauges(proc.evaluate_due())
        finally:
            proc.shutdown()
        assert values[(semconv.ML_DRIFT_DETECTED, "age", semconv.DRIFT_METHOD_WASSERSTEIN)] == 1

    assert len(logs[0].records()) == 2  # the column and the dataset
    assert logs[1].records() == []  # still drifted after the restart: no new alert


def test_windows_of_another_window_size_are_dropped(tmp_path: Path) -> None:
    clock, capture = Clock(T0), Capture()
    proc = started(tmp_path, clock, capture)
    clock.at(3)
    proc.consume_metrics(cumulative_rows([(T0 + NS // 2, T0 + NS, 100)]))
    proc.shutdown()

    config = MlDriftConfig(window="5s", grace="1s",
                           checkpoint=CheckpointConfig(path=str(tmp_path / "ml.sqlite")))
    again = MlDriftProcessor(config, capture, clock=clock, profiles={}, tick_interval_s=3600)
    again.start()
    try:
        stats = again.stats()
        # The window (index T0 // 10 s) would mean another time with 5 s windows.
        assert (stats.restored_windows, stats.discarded_windows) == (0, 1)
        assert stats.current_cumulative_streams == 1  # the cumulative table is kept
    finally:
        again.shutdown()
