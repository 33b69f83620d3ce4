"""ml_drift: alerts into logs pipelines, profile hot reload, baseline, last-N evaluation,
per-column overrides and cardinality caps; driven with OTLP protobufs and a test clock.

The logs pipeline is a test double (``LogsRecorder``) standing for a pipeline's first
consumer: the component API is exactly ``consume_logs(batch)``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs

from driftline import drift, exphist, semconv
from driftline.processor.component import ComponentError, Host
from driftline.processor.ml_drift.processor import (
    AlertsConfig,
    BaselineConfig,
    EvaluationConfig,
    LimitsConfig,
    MlDriftConfig,
    MlDriftProcessor,
)
from driftline.profile import save
from tests.processor.ml_drift.test_ml_drift import (
    MODEL,
    NS,
    T0,
    WINDOW_S,
    Capture,
    Clock,
    app_batch,
    gauges,
    processor,
    reference,
    rows_point,
)

WASSERSTEIN = semconv.DRIFT_METHOD_WASSERSTEIN


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(5)


class LogsRecorder:
    """Stands for a logs pipeline's first consumer; remembers every batch."""

    def __init__(self) -> None:
        self.batches: list[Sequence[ResourceLogs]] = []
        self.lock = threading.Lock()

    def consume_logs(self, batch: Sequence[ResourceLogs]) -> None:
        with self.lock:
            self.batches.append(batch)

    def records(self) -> list[dict[str, object]]:
        out = []
        for batch in self.batches:
            for resource_logs in batch:
                for scope in resource_logs.scope_logs:
                    for record in scope.log_records:
                        attrs = {kv.key: getattr(kv.value, kv.value.WhichOneof("value"))
                                 for kv in record.attributes}
                        out.append({"event": record.event_name, **attrs})
        return out


def window(proc: MlDriftProcessor, clock: Clock, k: int, features: dict[str, np.ndarray],
           **kwargs: object) -> dict:
    """Send ``features`` into window ``k`` and evaluate it; the window's gauges."""
    clock.at(k * WINDOW_S + 2)
    proc.consume_metrics(app_batch(T0 + (k * WINDOW_S + 1) * NS, features, **kwargs))
    clock.at(k * WINDOW_S + WINDOW_S + 1.5)
    return gauges(proc.evaluate_due())


def test_alert_when_a_column_and_the_dataset_flip_to_drifted(rng: np.random.Generator) -> None:
    clock, capture, logs, other = Clock(T0), Capture(), LogsRecorder(), LogsRecorder()
    proc = processor({("churn", "3"): reference(rng)}, clock, capture)
    # By default every logs pipeline gets the alerts, and no other.
    host = Host(pipelines={"logs": logs, "metrics": capture, "logs/other": other})
    proc.set_host(host)
    # What start() resolves, without starting the ticker thread:
    proc._evaluation.alert_targets = host.pipelines_for("logs", None, "alerts::pipelines")
    fine = {"age": rng.normal(40, 10, 3000), "income": rng.normal(50, 5, 3000)}
    shifted = {"age": rng.normal(70, 10, 3000), "income": rng.normal(50, 5, 3000)}

    window(proc, clock, 0, fine)
    assert logs.batches == []
    values = window(proc, clock, 1, shifted)
    assert values[(semconv.ML_DRIFT_DETECTED, "age", WASSERSTEIN)] == 1
    window(proc, clock, 2, shifted)  # still drifted: no new alert
    window(proc, clock, 3, fine)
    window(proc, clock, 4, shifted)  # drifted again: alerts again

    records = logs.records()
    assert [(r[semconv.ML_DRIFT_SUBJECT], r.get(semconv.ML_FEATURE_NAME)) for r in records] == [
        ("column", "age"), ("dataset", None), ("column", "age"), ("dataset", None)]
    first = records[0]
    assert first["event"] == semconv.EVENT_DRIFT_ALERT
    assert first[semconv.ML_MODEL_NAME] == "churn"
    assert first[semconv.ML_DRIFT_METHOD] == WASSERSTEIN
    assert first[semconv.ML_WINDOW_START] == T0 + WINDOW_S * NS
    assert first[semconv.ML_DRIFT_SCORE_ATTRIBUTE] >= first[semconv.ML_DRIFT_THRESHOLD] == 0.1
    assert records[1][semconv.ML_DRIFT_DATASET_SHARE_ATTRIBUTE] == 0.5
    assert proc.stats().alerts_emitted == 4
    assert proc.stats().window_evaluation_nanoseconds_total > 0
    assert other.records() == records


def test_alert_pipelines_must_exist(rng: np.random.Generator) -> None:
    proc = MlDriftProcessor(MlDriftConfig(alerts=AlertsConfig(pipelines=["logs/alerts"])),
                            Capture(), profiles={})
    proc.set_host(Host(pipelines={"logs": LogsRecorder()}))
    with pytest.raises(ComponentError, match="alerts::pipelines: logs/alerts not in"):
        proc.start()


def test_profiles_reload_when_a_file_changes_and_bad_files_keep_the_old(
    rng: np.random.Generator, tmp_path: Path,
) -> None:
    path = tmp_path / "churn.json"
    save(reference(rng), path)
    clock, capture = Clock(T0), Capture()
    proc = MlDriftProcessor(MlDriftConfig(profiles=str(tmp_path), window=f"{WINDOW_S}s",
                                          grace="1s"), capture, clock=clock)
    proc.start()
    try:
        data = {"age": rng.normal(70, 10, 300)}
        assert window(proc, clock, 0, data)[(semconv.ML_DRIFT_DETECTED, "age", WASSERSTEIN)] == 1

        shifted = reference(np.random.default_rng(2))
        shifted_age = exphist.from_values(np.random.default_rng(3).normal(70, 10, 5000))
        columns = dict(shifted.columns)
        columns["age"] = type(columns["age"])("age", "feature", "numeric", 5000, 0, shifted_age)
        # Each new version appears at once with its final mtime (a new mtime even on coarse
        # file systems), so the processor's own ticker, which polls too, sees one change.
        staged = tmp_path / "staged.tmp"
        save(type(shifted)("churn", "3", 0, 5000, columns), staged)
        os.utime(staged, ns=(T0, T0 + 1))
        os.replace(staged, path)
        proc.reload_profiles()  # or the ticker was first: either way, one reload
        assert proc.stats().profile_reloads == 1
        assert window(proc, clock, 1, data)[(semconv.ML_DRIFT_DETECTED, "age", WASSERSTEIN)] == 0

        staged.write_text("{not json")
        os.utime(staged, ns=(T0, T0 + 2))
        os.replace(staged, path)
        assert proc.reload_profiles() is False
        assert window(proc, clock, 2, data)[(semconv.ML_DRIFT_DETECTED, "age", WASSERSTEIN)] == 0
        stats = proc.stats()
        assert (stats.profile_reloads, stats.profile_reload_failures) == (1, 1)

        path.unlink()
        tmp_path.rename(tmp_path.with_name("moved-away"))  # the directory disappears
        assert proc.reload_profiles() is False
        assert window(proc, clock, 3, data)[(semconv.ML_DRIFT_DETECTED, "age", WASSERSTEIN)] == 0
        assert proc.stats().profile_reload_failures == 2
    finally:
        proc.shutdown()


def test_baseline_windows_become_the_reference(rng: np.random.Generator) -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({}, clock, capture, baseline=BaselineConfig(windows=2))
    first, second = rng.normal(40, 10, 300), rng.normal(40, 10, 300)

    assert window(proc, clock, 0, {"age": first}) == {(semconv.ML_WINDOW_ROWS, "", ""): 300}
    window(proc, clock, 1, {"age": rng.normal(40, 10, 50)})  # below min_rows: not used
    window(proc, clock, 2, {"age": second})
    current = rng.normal(60, 10, 300)
    values = window(proc, clock, 3, {"age": current})

    expected = drift.wasserstein_normed(
        exphist.merge([exphist.from_values(first), exphist.from_values(second)]),
        exphist.from_values(current))
    assert values[(semconv.ML_DRIFT_SCORE, "age", WASSERSTEIN)] == \
        pytest.approx(expected, rel=1e-12)
    # A 600-row reference is small: its verdict is the KS test (Wasserstein is context).
    assert values[(semconv.ML_DRIFT_DETECTED, "age", semconv.DRIFT_METHOD_KS)] == 1
    assert (semconv.ML_DRIFT_DETECTED, "age", WASSERSTEIN) not in values
    assert proc.stats().baseline_windows == 2


def test_evaluation_over_the_last_n_windows(rng: np.random.Generator) -> None:
    profile = reference(rng)
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): profile}, clock, capture,
                     evaluation=EvaluationConfig(windows=2))
    parts = [rng.normal(45, 10, 200) for _ in range(3)]

    window(proc, clock, 0, {"age": parts[0]})
    second = window(proc, clock, 1, {"age": parts[1]})
    third = window(proc, clock, 2, {"age": parts[2]})

    reference_age = profile.columns["age"].histogram
    for values, pair in ((second, parts[0:2]), (third, parts[1:3])):
        expected = drift.wasserstein_normed(
            reference_age, exphist.merge([exphist.from_values(p) for p in pair]),
            profile.columns["age"].std)
        assert values[(semconv.ML_DRIFT_SCORE, "age", WASSERSTEIN)] == \
            pytest.approx(expected, rel=1e-12)
        assert values[(semconv.ML_WINDOW_ROWS, "", "")] == 200  # this window's own rows


def test_column_override_sets_method_and_threshold(rng: np.random.Generator) -> None:
    profile = reference(rng)
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): profile}, clock, capture,
                     columns={"income": {"method": "psi", "threshold": 0.001}})
    income = rng.normal(50.5, 5, 400)
    values = window(proc, clock, 0, {"age": rng.normal(40, 10, 400), "income": income})

    psi = drift.psi(profile.columns["income"].histogram, exphist.from_values(income))
    assert values[(semconv.ML_DRIFT_SCORE, "income", semconv.DRIFT_METHOD_PSI)] == \
        pytest.approx(psi, rel=1e-12)
    assert 0.001 <= psi < drift.DEFAULT_PSI_THRESHOLD  # drifted only by the override
    assert values[(semconv.ML_DRIFT_DETECTED, "income", semconv.DRIFT_METHOD_PSI)] == 1
    assert (semconv.ML_DRIFT_SCORE, "age", WASSERSTEIN) in values  # others keep the default


def test_column_override_validation(tmp_path: Path) -> None:
    config = MlDriftConfig(profiles=str(tmp_path),
                           columns={"age": {"method": "nope"}, "x": {"method": "psi",
                                                                     "threshold": -1}})
    assert config.validate() == [
        "columns::age::method: unknown drift method 'nope'; use one of "
        + ", ".join(dict.fromkeys((*drift.NUMERIC_METHODS, *drift.CATEGORICAL_METHODS))),
        "columns::x::threshold: must be a number above 0, got -1",
    ]


def test_cardinality_caps_fold_into_overflow_and_count(rng: np.random.Generator) -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({}, clock, capture,
                     limits=LimitsConfig(max_streams=1, max_features=2, max_categories=2))
    clock.at(2)
    features = {f"f{i}": rng.normal(0, 1, 10) for i in range(4)}
    proc.consume_metrics(app_batch(T0 + NS, features, classes={"a": 1, "b": 2, "c": 3, "d": 4}))
    proc.consume_metrics(app_batch(T0 + NS, {"f0": rng.normal(0, 1, 10)},
                                   model={**MODEL, semconv.ML_MODEL_NAME: "other"}))
    clock.at(12)
    output = proc.evaluate_due()

    stats = proc.stats()
    # 4 features + the class column against 2 slots: f0, f1 kept; the points of f2, f3 and
    # the 4 class points are folded into the __other__ column.
    assert stats.feature_overflow_points == 6
    assert stats.category_overflow_points == 2  # classes c and d, past 2 categories
    assert stats.stream_overflow_points == 2  # the other model's feature and rows points
    names = sorted(rows_point([rm]).attributes[0].value.string_value for rm in output)
    assert names == [semconv.OVERFLOW_VALUE, "churn"]


def test_features_past_the_cap_do_not_collect_the_windows_columns_each(
        rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each point of a feature past ``max_features`` collected the window's columns into a
    new set to count them (a fifth of the processor's time under test_bad_input's 40 000
    distinct feature names); a window known to be full is not counted again."""
    from driftline.processor.ml_drift.window import Window

    counted = []
    columns = Window.columns
    monkeypatch.setattr(Window, "columns", lambda self: counted.append(1) or columns(self))
    clock, capture = Clock(T0), Capture()
    proc = processor({}, clock, capture, limits=LimitsConfig(max_features=3))
    clock.at(2)
    features = {f"f{i}": rng.normal(0, 1, 5) for i in range(200)}
    proc.consume_metrics(app_batch(T0 + NS, features))
    proc.consume_metrics(app_batch(T0 + NS, {f"g{i}": rng.normal(0, 1, 5) for i in range(50)}))
    assert proc.stats().feature_overflow_points == 197 + 50
    assert len(counted) <= 3 + 1  # once per column below the cap, once to find it full


def test_the_ticker_reloads_profiles_every_reload_interval(
    rng: np.random.Generator, tmp_path: Path,
) -> None:
    clock, capture = Clock(T0), Capture()
    proc = MlDriftProcessor(MlDriftConfig(profiles=str(tmp_path), reload_interval="5s"),
                            capture, clock=clock, tick_interval_s=0.01)
    proc.start()
    try:
        save(reference(rng), tmp_path / "churn.json")  # a new file after the start
        clock.at(6)  # past reload_interval on the processor's clock
        deadline = time.monotonic() + 10
        while proc.stats().profile_reloads == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.stats().profile_reloads == 1
        assert set(proc._evaluation.profiles) == {("churn", "3")}
    finally:
        proc.shutdown()
