"""The ml_performance processor in process: OTLP log records built with opentelemetry.proto,
a clock the test moves, recorders as the next consumer and as the metrics/logs pipelines.
Every metric is checked against sklearn.metrics on the rows the test joined."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from sklearn import metrics as skm

from driftline import semconv
from driftline.processor.component import ComponentError, Host
from driftline.processor.component.predictions import GroundTruth, ModelKey, Prediction
from driftline.processor.ml_performance.processor import (
    MlPerformanceConfig,
    MlPerformanceProcessor,
    PerformanceLimitsConfig,
    PerformanceThresholdsConfig,
    StoreConfig,
)
from driftline.processor.ml_performance.store import (
    PredictionStore,
)
from driftline.processor.service.config import ConfigError, parse_config

NS = 1_000_000_000
WINDOW_S = 60
T0 = 1_800_000_000 * NS // (WINDOW_S * NS) * (WINDOW_S * NS)  # a window start
MODEL = {semconv.ML_MODEL_NAME: "churn", semconv.ML_MODEL_VERSION: "3",
         semconv.ML_MODEL_FRAMEWORK: "sklearn", semconv.ML_OPERATION: "predict_proba"}


def _any(value: Any) -> AnyValue:
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(
            values=[KeyValue(key=k, value=_any(v)) for k, v in value.items()]))
    return AnyValue(array_value=ArrayValue(values=[_any(v) for v in value]))


def _kvs(attributes: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_any(v)) for k, v in attributes.items()]


def prediction_record(prediction_id: str, time_ns: int, *, label: str | None = None,
                      scores: Sequence[float] | None = None, classes: Sequence[str] = (),
                      value: float | None = None, model: dict[str, str] | None = None,
                      inputs: dict[str, Any] | None = None) -> LogRecord:
    attributes: dict[str, Any] = {**(model or MODEL), semconv.ML_PREDICTION_ID: prediction_id}
    if label is not None:
        attributes[semconv.ML_PREDICTION_LABEL] = label
    if scores is not None:
        attributes[semconv.ML_PREDICTION_SCORES] = [float(s) for s in scores]
        attributes[semconv.ML_PREDICTION_CLASSES] = list(classes)
    if value is not None:
        attributes[semconv.ML_PREDICTION_VALUE_ATTRIBUTE] = float(value)
    return LogRecord(time_unix_nano=time_ns, event_name=semconv.EVENT_PREDICTION,
                     body=_any(inputs or {"age": 40.0}), attributes=_kvs(attributes))


def label_record(prediction_id: str, label: str | None = None,
                 value: float | None = None) -> LogRecord:
    attributes: dict[str, Any] = {semconv.ML_PREDICTION_ID: prediction_id}
    if label is not None:
        attributes[semconv.ML_GROUND_TRUTH_LABEL] = label
    if value is not None:
        attributes[semconv.ML_GROUND_TRUTH_VALUE] = float(value)
    return LogRecord(event_name=semconv.EVENT_GROUND_TRUTH, attributes=_kvs(attributes))


def batch(records: Sequence[LogRecord]) -> list[ResourceLogs]:
    return [ResourceLogs(
        resource=Resource(attributes=_kvs({semconv.SERVICE_NAME: "churn-api"})),
        scope_logs=[ScopeLogs(log_records=list(records))])]


class Recorder:
    """A consumer of any signal that keeps what it gets."""

    def __init__(self) -> None:
        self.metrics: list[Any] = []
        self.logs: list[Any] = []

    def consume_metrics(self, batch: Sequence[Any]) -> None:
        self.metrics.append(list(batch))

    def consume_logs(self, batch: Sequence[Any]) -> None:
        self.logs.append(list(batch))

    def points(self) -> list[tuple[str, dict[str, str], float, int, int]]:
        """(metric, attributes, value, start, time) of every gauge point received."""
        found = []
        for sent in self.metrics:
            for rm in sent:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        for p in metric.gauge.data_points:
                            value = p.as_double if p.WhichOneof("value") == "as_double" \
                                else p.as_int
                            found.append((metric.name,
                                          {kv.key: kv.value.string_value for kv in p.attributes},
                                          value, p.start_time_unix_nano, p.time_unix_nano))
        return found

    def alert_records(self) -> list[LogRecord]:
        return [r for sent in self.logs for rl in sent for s in rl.scope_logs
                for r in s.log_records if r.event_name == semconv.EVENT_PERFORMANCE_ALERT]


class Clock:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


@dataclasses.dataclass
class Rig:
    processor: MlPerformanceProcessor
    next: Recorder
    metrics: Recorder
    alerts: Recorder
    clock: Clock

    def send(self, records: Sequence[LogRecord]) -> None:
        self.processor.consume_logs(batch(records))

    def close_windows(self, until_ns: int) -> None:
        self.clock.now_ns = until_ns
        self.processor.evaluate_due()

    def value(self, metric: str, **attributes: str) -> float:
        """The latest point of ``metric`` whose attributes besides the model's are
        ``attributes`` exactly."""
        matches = [p for p in self.metrics.points() if p[0] == metric
                   and {k: v for k, v in p[1].items() if k not in MODEL} == attributes]
        assert matches, f"no {metric} {attributes} in {self.metrics.points()}"
        return matches[-1][2]


def make_rig(tmp_path: Path | None = None, **config: Any) -> Iterator[Rig]:
    defaults: dict[str, Any] = {"window": f"{WINDOW_S}s", "grace": "5s", "min_labels": 1}
    defaults.update(config)
    if tmp_path is not None and "store" not in config:
        defaults["store"] = StoreConfig(path=str(tmp_path / "predictions.sqlite"))
    clock = Clock(T0)
    next_consumer, metrics, alerts = Recorder(), Recorder(), Recorder()
    processor = MlPerformanceProcessor(MlPerformanceConfig(**defaults), next_consumer,
                                       clock=clock, tick_interval_s=3600)
    processor.set_host(Host(pipelines={"metrics": metrics, "logs": alerts}))
    processor.start()
    try:
        yield Rig(processor, next_consumer, metrics, alerts, clock)
    finally:
        processor.shutdown()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    yield from make_rig(tmp_path)


AVG = semconv.ML_PERFORMANCE_AVERAGE


def binary_rows(rng: np.random.Generator, n: int) -> tuple[list[str], list[str], np.ndarray]:
    y_true = list(rng.choice(["no", "yes"], n, p=[0.6, 0.4]))
    yes = np.round(np.clip(rng.normal([0.65 if t == "yes" else 0.35 for t in y_true], 0.2),
                           0, 1), 2)
    y_pred = ["yes" if s >= 0.5 else "no" for s in yes]
    return y_true, y_pred, np.column_stack([1 - yes, yes])


def test_binary_metrics_match_sklearn_on_the_joined_rows(rig: Rig) -> None:
    rng = np.random.default_rng(1)
    y_true, y_pred, scores = binary_rows(rng, 300)
    rig.send([prediction_record(f"p{i}", T0 + i * 100_000_000, label=y_pred[i],
                                scores=scores[i], classes=["no", "yes"]) for i in range(300)])
    # Labels arrive an hour later, for all but the last 50 predictions (never labelled).
    rig.clock.now_ns = T0 + 3600 * NS
    rig.send([label_record(f"p{i}", y_true[i]) for i in range(250)])
    rig.processor.evaluate_due()
    t, p, s = y_true[:250], y_pred[:250], scores[:250, 1]

    assert rig.value(semconv.ML_PERFORMANCE_ACCURACY) == pytest.approx(skm.accuracy_score(t, p))
    for metric, function in ((semconv.ML_PERFORMANCE_PRECISION, skm.precision_score),
                             (semconv.ML_PERFORMANCE_RECALL, skm.recall_score),
                             (semconv.ML_PERFORMANCE_F1, skm.f1_score)):
        assert rig.value(metric, **{AVG: semconv.AVERAGE_MACRO}) == pytest.approx(
            function(t, p, average="macro", zero_division=0))
        for label in ("no", "yes"):
            assert rig.value(metric, **{AVG: semconv.AVERAGE_CLASS, semconv.ML_CLASS: label}) \
                == pytest.approx(function(t, p, pos_label=label, zero_division=0))
    assert rig.value(semconv.ML_PERFORMANCE_ROC_AUC, **{AVG: semconv.AVERAGE_BINARY,
                                                        semconv.ML_CLASS: "yes"}) == \
        pytest.approx(skm.roc_auc_score(np.array(t) == "yes", s))
    assert rig.value(semconv.ML_PERFORMANCE_LABELS) == 250
    assert rig.value(semconv.ML_PERFORMANCE_LABELS, **{semconv.ML_CLASS: "yes"}) == \
        t.count("yes")
    stats = rig.processor.stats()
    assert (stats.stored_predictions, stats.joined_labels, stats.evaluated_windows) == \
        (300, 250, 1)


def test_gauges_carry_the_model_the_window_and_the_processors_resource(rig: Rig) -> None:
    """A window's quality is the model's, not the app instance's that sent it: the gauges
    carry the processor's resource, so Prometheus keeps one series across app restarts."""
    rig.send([prediction_record("a", T0 + 5 * NS, label="yes"), label_record("a", "yes")])
    rig.close_windows(T0 + (WINDOW_S + 6) * NS)
    [[resource_metrics]] = rig.metrics.metrics
    assert {kv.key: kv.value.string_value for kv in resource_metrics.resource.attributes} == \
        {semconv.SERVICE_NAME: semconv.PROCESSOR_SERVICE_NAME}
    assert resource_metrics.scope_metrics[0].scope.name == semconv.PERFORMANCE_SCOPE
    _, attributes, value, start, end = next(
        p for p in rig.metrics.points() if p[0] == semconv.ML_PERFORMANCE_ACCURACY)
    assert attributes == MODEL
    assert (value, start, end) == (1.0, T0, T0 + WINDOW_S * NS)


def test_a_window_is_evaluated_only_after_its_end_plus_grace(rig: Rig) -> None:
    rig.send([prediction_record("a", T0 + 5 * NS, label="yes"), label_record("a", "yes")])
    rig.close_windows(T0 + (WINDOW_S + 4) * NS)  # grace is 5 s
    assert rig.metrics.points() == []
    rig.close_windows(T0 + (WINDOW_S + 5) * NS)
    assert rig.value(semconv.ML_PERFORMANCE_LABELS) == 1


def test_labels_before_their_predictions_are_joined_when_the_predictions_arrive(
        rig: Rig) -> None:
    rig.send([label_record("a", "yes"), label_record("b", "no")])
    assert rig.processor.stats().current_pending_labels == 2
    rig.send([prediction_record("a", T0 + NS, label="yes"),
              prediction_record("b", T0 + 2 * NS, label="yes")])
    rig.close_windows(T0 + 2 * WINDOW_S * NS)
    assert rig.value(semconv.ML_PERFORMANCE_ACCURACY) == 0.5
    stats = rig.processor.stats()
    assert (stats.joined_labels, stats.current_pending_labels) == (2, 0)


def test_a_duplicate_label_counts_once_and_the_first_wins(rig: Rig) -> None:
    rig.send([prediction_record("a", T0 + NS, label="yes"),
              prediction_record("b", T0 + NS, label="no")])
    rig.send([label_record("a", "yes"), label_record("a", "no")])  # same batch
    rig.send([label_record("a", "no"), label_record("b", "no")])  # a later batch
    rig.send([label_record("c", "no"), label_record("c", "yes")])  # both waiting
    rig.close_windows(T0 + 2 * WINDOW_S * NS)
    assert rig.value(semconv.ML_PERFORMANCE_LABELS) == 2
    assert rig.value(semconv.ML_PERFORMANCE_ACCURACY) == 1.0  # a's first label "yes" counts
    assert rig.processor.stats().duplicate_labels == 3
    rig.send([prediction_record("c", T0 + 2 * NS, label="no")])
    rig.close_windows(T0 + 3 * WINDOW_S * NS)
    assert rig.value(semconv.ML_PERFORMANCE_LABELS) == 3
    assert rig.value(semconv.ML_PERFORMANCE_ACCURACY) == 1.0  # c's first label "no" counts


def test_late_labels_re_emit_the_window_over_all_its_labels(rig: Rig) -> None:
    rig.send([prediction_record(f"p{i}", T0 + i * NS, label="yes") for i in range(10)])
    rig.send([label_record(f"p{i}", "yes") for i in range(5)])
    rig.close_windows(T0 + (WINDOW_S + 10) * NS)
    assert rig.value(semconv.ML_PERFORMANCE_ACCURACY) == 1.0
    rig.close_windows(T0 + 600 * NS)  # nothing new: nothing emitted again
    assert len(rig.metrics.metrics) == 1
    # Six hours later the rest arrive, all "no": the same window, all ten labels.
    rig.clock.now_ns = T0 + 6 * 3600 * NS
    rig.send([label_record(f"p{i}", "no") for i in range(5, 10)])
    rig.processor.evaluate_due()
    assert len(rig.metrics.metrics) == 2
    latest = [p for p in rig.metrics.points() if p[0] == semconv.ML_PERFORMANCE_ACCURACY]
    assert [(v, s, e) for _, _, v, s, e in latest] == [
        (1.0, T0, T0 + WINDOW_S * NS), (0.5, T0, T0 + WINDOW_S * NS)]
    assert rig.value(semconv.ML_PERFORMANCE_LABELS) == 10


def test_label_lag_is_the_time_from_the_windows_end_to_its_latest_labels(rig: Rig) -> None:
    rig.send([prediction_record(f"p{i}", T0 + i * NS, label="yes") for i in range(10)])
    rig.send([label_record(f"p{i}", "yes") for i in range(5)])
    rig.close_windows(T0 + (WINDOW_S + 10) * NS)
    assert rig.value(semconv.ML_PERFORMANCE_LABELS_LAG) == 10.0
    # The rest join six hours later: the window's gauges come again with that lag.
    rig.clock.now_ns = T0 + 6 * 3600 * NS
    rig.send([label_record(f"p{i}", "no") for i in range(5, 10)])
    rig.processor.evaluate_due()
    assert rig.value(semconv.ML_PERFORMANCE_LABELS_LAG) == 6 * 3600 - WINDOW_S


def test_windows_are_by_prediction_time(rig: Rig) -> None:
    rig.send([prediction_record("a", T0 + NS, label="yes"),
              prediction_record("b", T0 + (WINDOW_S + 1) * NS, label="yes")])
    rig.clock.now_ns = T0 + 10 * WINDOW_S * NS
    rig.send([label_record("a", "yes"), label_record("b", "no")])  # both labelled at once
    rig.processor.evaluate_due()
    accuracy = sorted((s, v) for m, _, v, s, _ in rig.metrics.points()
                      if m == semconv.ML_PERFORMANCE_ACCURACY)
    assert accuracy == [(T0, 1.0), (T0 + WINDOW_S * NS, 0.0)]


def test_regression_metrics_match_sklearn(rig: Rig) -> None:
    rng = np.random.default_rng(2)
    y_true = rng.normal(200, 30, 120)
    y_pred = y_true + rng.normal(5, 15, 120)
    regressor = {**MODEL, semconv.ML_MODEL_NAME: "price", semconv.ML_OPERATION: "predict"}
    rig.send([prediction_record(f"r{i}", T0 + i * NS // 10, value=y_pred[i], model=regressor)
              for i in range(120)])
    rig.send([label_record(f"r{i}", value=y_true[i]) for i in range(120)])
    rig.close_windows(T0 + 2 * WINDOW_S * NS)
    assert rig.value(semconv.ML_PERFORMANCE_MAE) == pytest.approx(
        skm.mean_absolute_error(y_true, y_pred))
    assert rig.value(semconv.ML_PERFORMANCE_RMSE) == pytest.approx(
        skm.root_mean_squared_error(y_true, y_pred))
    assert rig.value(semconv.ML_PERFORMANCE_R2) == pytest.approx(skm.r2_score(y_true, y_pred))
    assert not [p for p in rig.metrics.points() if p[0] == semconv.ML_PERFORMANCE_ACCURACY]


def test_multiclass_roc_auc_one_vs_rest_matches_sklearn(rig: Rig) -> None:
    rng = np.random.default_rng(3)
    classes = ["cat", "dog", "fox"]
    y_true = rng.choice(classes, 200)
    raw = rng.random((200, 3))
    raw[np.arange(200), np.searchsorted(classes, y_true)] += 0.5
    scores = raw / raw.sum(axis=1, keepdims=True)
    y_pred = [classes[i] for i in scores.argmax(axis=1)]
    rig.send([prediction_record(f"m{i}", T0 + i * NS // 10, label=y_pred[i], scores=scores[i],
                                classes=classes) for i in range(200)])
    rig.send([label_record(f"m{i}", str(y_true[i])) for i in range(200)])
    rig.close_windows(T0 + 2 * WINDOW_S * NS)
    assert rig.value(semconv.ML_PERFORMANCE_ROC_AUC, **{AVG: semconv.AVERAGE_MACRO}) == \
        pytest.approx(skm.roc_auc_score(y_true, scores, multi_class="ovr", labels=classes))
    for i, label in enumerate(classes):
        assert rig.value(semconv.ML_PERFORMANCE_ROC_AUC,
                         **{AVG: semconv.AVERAGE_CLASS, semconv.ML_CLASS: label}) == \
            pytest.approx(skm.roc_auc_score(y_true == label, scores[:, i]))
    assert rig.value(semconv.ML_PERFORMANCE_F1, **{AVG: semconv.AVERAGE_MACRO}) == \
        pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))


def test_one_class_in_a_window_gives_no_roc_auc_and_says_so(rig: Rig) -> None:
    rig.send([prediction_record(f"p{i}", T0 + i * NS, label="yes", scores=[0.1 * i, 1 - 0.1 * i],
                                classes=["no", "yes"]) for i in range(5)])
    rig.send([label_record(f"p{i}", "yes") for i in range(5)])
    rig.close_windows(T0 + 2 * WINDOW_S * NS)
    assert not [p for p in rig.metrics.points() if p[0] == semconv.ML_PERFORMANCE_ROC_AUC]
    assert rig.value(semconv.ML_PERFORMANCE_ACCURACY) == 1.0
    assert rig.processor.stats().undefined_roc_auc_windows == 1


def test_below_min_labels_only_the_label_count_and_lag_are_emitted(tmp_path: Path) -> None:
    for rig in make_rig(tmp_path, min_labels=5):
        rig.send([prediction_record(f"p{i}", T0 + i * NS, label="yes") for i in range(4)])
        rig.send([label_record(f"p{i}", "yes") for i in range(4)])
        rig.close_windows(T0 + 2 * WINDOW_S * NS)
        assert {p[0] for p in rig.metrics.points()} == {semconv.ML_PERFORMANCE_LABELS,
                                                         semconv.ML_PERFORMANCE_LABELS_LAG}
        assert rig.processor.stats().windows_below_min_labels == 1


def test_a_threshold_alerts_once_per_window(tmp_path: Path) -> None:
    thresholds = PerformanceThresholdsConfig(accuracy=0.9, rmse=100.0)
    for rig in make_rig(tmp_path, thresholds=thresholds):
        rig.send([prediction_record(f"p{i}", T0 + i * NS, label="yes") for i in range(10)])
        rig.send([label_record(f"p{i}", "yes" if i < 8 else "no") for i in range(10)])
        rig.close_windows(T0 + 2 * WINDOW_S * NS)
        [alert] = rig.alerts.alert_records()
        attributes = {kv.key: kv.value for kv in alert.attributes}
        assert attributes[semconv.ML_PERFORMANCE_METRIC].string_value == \
            semconv.ML_PERFORMANCE_ACCURACY
        assert attributes[semconv.ML_PERFORMANCE_VALUE_ATTRIBUTE].double_value == 0.8
        assert attributes[semconv.ML_PERFORMANCE_THRESHOLD].double_value == 0.9
        assert attributes[semconv.ML_PERFORMANCE_LABEL_COUNT].int_value == 10
        assert attributes[semconv.ML_WINDOW_START].int_value == T0
        assert attributes[semconv.ML_MODEL_NAME].string_value == "churn"
        assert "ml.performance.accuracy 0.8 < 0.9" in alert.body.string_value
        # A late prediction-and-label pair re-evaluates the window: no second alert.
        rig.send([prediction_record("late", T0 + 30 * NS, label="yes"),
                  label_record("late", "no")])
        rig.close_windows(T0 + 3 * WINDOW_S * NS)
        assert len(rig.metrics.metrics) == 2
        assert len(rig.alerts.alert_records()) == 1
        assert rig.processor.stats().alerts_emitted == 1


def test_records_pass_through_unchanged(rig: Rig) -> None:
    other = LogRecord(body=AnyValue(string_value="an ordinary log line"))
    sent = batch([prediction_record("a", T0, label="yes"), other, label_record("a", "no")])
    rig.processor.consume_logs(sent)
    assert rig.next.logs == [sent]


def test_bad_records_are_counted_and_still_passed_on(rig: Rig) -> None:
    no_id = LogRecord(event_name=semconv.EVENT_PREDICTION,
                      attributes=_kvs({semconv.ML_PREDICTION_LABEL: "yes"}))
    no_output = prediction_record("b", T0)
    mismatched = prediction_record("c", T0, label="yes", scores=[0.1, 0.2, 0.7],
                                   classes=["no", "yes"])
    no_label = LogRecord(event_name=semconv.EVENT_GROUND_TRUTH,
                         attributes=_kvs({semconv.ML_PREDICTION_ID: "a"}))
    sent = batch([no_id, no_output, mismatched, no_label, prediction_record("d", T0, label="x")])
    rig.processor.consume_logs(sent)
    stats = rig.processor.stats()
    assert (stats.invalid_records, stats.stored_predictions) == (4, 1)
    assert rig.next.logs == [sent]


def test_the_store_drops_what_is_older_than_the_ttl(tmp_path: Path) -> None:
    store = StoreConfig(path=str(tmp_path / "p.sqlite"), ttl="1h")
    for rig in make_rig(tmp_path, store=store):
        rig.clock.now_ns = T0 + 2 * 3600 * NS
        rig.send([prediction_record("old", T0, label="yes"),  # older than the TTL already
                  prediction_record("new", T0 + 2 * 3600 * NS, label="yes"),
                  label_record("orphan", "yes")])
        stats = rig.processor.stats()
        assert (stats.expired_predictions, stats.stored_predictions) == (1, 1)
        rig.clock.now_ns = T0 + 4 * 3600 * NS
        assert rig.processor.prune() == (1, 1)  # "new" and the orphan label are 2 h old now
        rig.send([label_record("new", "yes")])
        assert rig.processor.stats().current_pending_labels == 1  # its prediction is gone


def test_the_join_survives_a_restart_with_the_same_store(tmp_path: Path) -> None:
    for rig in make_rig(tmp_path):
        rig.send([prediction_record(f"p{i}", T0 + i * NS, label="yes") for i in range(6)])
        rig.send([label_record("p0", "yes"), label_record("later", "no")])
    for rig in make_rig(tmp_path):  # a new processor on the same file
        rig.send([label_record(f"p{i}", "no") for i in range(1, 6)])
        rig.send([prediction_record("later", T0 + 7 * NS, label="no")])
        rig.close_windows(T0 + 2 * WINDOW_S * NS)
        assert rig.value(semconv.ML_PERFORMANCE_LABELS) == 7
        assert rig.value(semconv.ML_PERFORMANCE_ACCURACY) == pytest.approx(2 / 7)


def test_a_second_processor_on_the_same_store_fails_to_start(tmp_path: Path) -> None:
    for _ in make_rig(tmp_path):
        second = MlPerformanceProcessor(
            MlPerformanceConfig(store=StoreConfig(path=str(tmp_path / "predictions.sqlite"))),
            Recorder())
        with pytest.raises(ComponentError, match="in use by another ml_performance processor"):
            second.start()


def test_max_models_drops_the_predictions_of_further_models(tmp_path: Path) -> None:
    for rig in make_rig(tmp_path, limits=PerformanceLimitsConfig(max_models=1)):
        other = {**MODEL, semconv.ML_MODEL_NAME: "other"}
        rig.send([prediction_record("a", T0, label="yes"),
                  prediction_record("b", T0, label="yes", model=other),
                  prediction_record("c", T0, label="yes")])
        stats = rig.processor.stats()
        assert (stats.stored_predictions, stats.model_overflow_predictions) == (2, 1)


def _collector_config(processor: dict[str, Any]) -> dict[str, Any]:
    return {
        "receivers": {"otlp": None},
        "processors": {"ml_performance": processor},
        "exporters": {"file": {"path": "/tmp/x.jsonl"}},
        "service": {"pipelines": {
            "logs": {"receivers": ["otlp"], "processors": ["ml_performance"],
                     "exporters": ["file"]},
            "metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }


def test_config_loads_with_its_keys(tmp_path: Path) -> None:
    config = parse_config(_collector_config({
        "store": {"path": str(tmp_path / "p.sqlite"), "ttl": "48h"}, "window": "5m",
        "min_labels": 50, "thresholds": {"accuracy": 0.9, "mae": 3},
        "metrics": {"pipelines": ["metrics"]}, "alerts": {"pipelines": []}}), environ={})
    [processor] = config.processors.values()
    assert (processor.store.ttl_s, processor.window_s, processor.min_labels) == \
        (48 * 3600, 300, 50)
    assert processor.thresholds.items() == [("accuracy", 0.9), ("mae", 3.0)]


@pytest.mark.parametrize(("node", "problem"), [
    ({"store": {"ttl": "0s"}}, "processors::ml_performance::store::ttl: must be a positive "
                               "duration, got '0s'"),
    ({"window": "soon"}, "processors::ml_performance::window: must be a duration"),
    ({"min_labels": 0}, "processors::ml_performance::min_labels: must be a whole number, 1 "
                        "or more, got 0"),
    ({"thresholds": {"accuracy": 1.5}}, "processors::ml_performance::thresholds::accuracy: "
                                        "must be between 0 and 1, got 1.5"),
    ({"thresholds": {"rmse": -1}}, "processors::ml_performance::thresholds::rmse: must be 0 "
                                   "or more"),
    ({"metrics": {"pipelines": ["logs"]}}, "processors::ml_performance::metrics::pipelines: "
                                           "must be a list of metrics pipeline IDs"),
    ({"alerts": {"pipelines": ["metrics"]}}, "processors::ml_performance::alerts::pipelines: "
                                             "must be a list of logs pipeline IDs"),
    ({"limits": {"max_classes": 0}}, "processors::ml_performance::limits::max_classes: must "
                                     "be a whole number"),
    ({"ttl": "1h"}, "processors::ml_performance::ttl: unknown key"),
])
def test_bad_config_names_the_key(node: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_collector_config(node), environ={})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_ml_performance_is_a_logs_processor_only() -> None:
    config = _collector_config({})
    config["service"]["pipelines"]["metrics"]["processors"] = ["ml_performance"]
    with pytest.raises(ConfigError) as caught:
        parse_config(config, environ={})
    assert any("does not support metrics" in p for p in caught.value.problems)


def test_labels_arriving_during_an_evaluation_keep_their_window_due(tmp_path: Path) -> None:
    """The evaluation reads a window, a batch adds labels to it, then the evaluation takes
    the window off the list: the newer labels must keep it on (evaluated again next)."""
    window_ns = WINDOW_S * NS
    store = PredictionStore(tmp_path / "s.sqlite", window_ns, 3600 * NS)
    model = ModelKey("churn")
    try:
        store.apply([Prediction(f"p{i}", model, T0 + i, label="yes") for i in range(3)],
                    [GroundTruth("p0", "yes")], T0)
        due = store.due_windows(T0 // window_ns + 1)
        assert [(i, 1) for _, i, _ in due] == [(T0 // window_ns, 1)]
        store.apply([], [GroundTruth("p1", "no")], T0)  # while the evaluation computes
        store.evaluated(due, [])
        [(_, index, _)] = store.due_windows(T0 // window_ns + 1)
        assert index == T0 // window_ns
        assert store.window_rows(*store.due_windows(T0 // window_ns + 1)[0][:2]).true_labels \
            == ["yes", "no"]
        store.evaluated(store.due_windows(T0 // window_ns + 1), [])
        assert store.due_windows(T0 // window_ns + 1) == []
    finally:
        store.close()


def test_numeric_labels_match_class_names_and_text_labels_parse_for_regressors(
        rig: Rig) -> None:
    regressor = {**MODEL, semconv.ML_MODEL_NAME: "price"}
    rig.send([prediction_record("c1", T0 + NS, label="1"),
              prediction_record("c0", T0 + NS, label="0"),
              prediction_record("r1", T0 + NS, value=10.0, model=regressor),
              prediction_record("r2", T0 + NS, value=20.0, model=regressor),
              prediction_record("r3", T0 + NS, value=30.0, model=regressor)])
    rig.send([label_record("c1", value=1.0), label_record("c0", value=1.0),
              label_record("r1", "12.5"), label_record("r2", value=20.0),
              label_record("r3", "not a number")])
    rig.close_windows(T0 + 2 * WINDOW_S * NS)
    points = {(p[0], p[1][semconv.ML_MODEL_NAME]): p[2] for p in rig.metrics.points()
              if not set(p[1]) - set(MODEL)}
    assert points[(semconv.ML_PERFORMANCE_ACCURACY, "churn")] == 0.5
    assert points[(semconv.ML_PERFORMANCE_MAE, "price")] == pytest.approx(
        skm.mean_absolute_error([12.5, 20.0], [10.0, 20.0]))
    assert rig.processor.stats().unusable_labels == 1


def test_event_name_as_an_attribute_is_accepted(rig: Rig) -> None:
    old_style = prediction_record("a", T0 + NS, label="yes")
    old_style.event_name = ""
    old_style.attributes.add(key="event.name",
                             value=AnyValue(string_value=semconv.EVENT_PREDICTION))
    rig.send([old_style, label_record("a", "no")])
    rig.close_windows(T0 + 2 * WINDOW_S * NS)
    assert rig.value(semconv.ML_PERFORMANCE_ACCURACY) == 0.0


def test_max_classes_caps_the_per_class_series_not_the_macro(tmp_path: Path) -> None:
    for rig in make_rig(tmp_path, limits=PerformanceLimitsConfig(max_classes=2)):
        truth = ["a"] * 5 + ["b"] * 3 + ["c"]
        predicted = ["a"] * 5 + ["c"] * 3 + ["c"]
        rig.send([prediction_record(f"p{i}", T0 + NS, label=p) for i, p in enumerate(predicted)])
        rig.send([label_record(f"p{i}", t) for i, t in enumerate(truth)])
        rig.close_windows(T0 + 2 * WINDOW_S * NS)
        classes = {p[1][semconv.ML_CLASS] for p in rig.metrics.points()
                   if p[0] == semconv.ML_PERFORMANCE_F1 and semconv.ML_CLASS in p[1]}
        assert classes == {"a", "c"}  # the two most frequent, true and predicted
        assert rig.value(semconv.ML_PERFORMANCE_F1, **{AVG: semconv.AVERAGE_MACRO}) == \
            pytest.approx(skm.f1_score(truth, predicted, average="macro", zero_division=0))
        assert rig.processor.stats().class_overflow_windows == 1


def test_a_directory_as_store_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_collector_config({"store": {"path": str(tmp_path)}}), environ={})
    assert caught.value.problems == [
        f"processors::ml_performance::store::path: '{tmp_path}' is a directory; name a file "
        f"in it, e.g. {tmp_path / 'predictions.sqlite'}"]


def test_float_classes_match_labels_sent_as_numbers_or_integers(rig: Rig) -> None:
    """A model trained on 0.0/1.0 names its classes "0.0"/"1.0" (str of a float); labels
    sent as the value 1.0 or as the text "1" are the same class."""
    classes = ["0.0", "1.0"]
    rows = [("1.0", 0.9, value_or_text) for value_or_text in (1.0, "1")] + \
        [("0.0", 0.2, 0.0), ("1.0", 0.6, "0"), ("0.0", 0.4, 1.0)]
    rig.send([prediction_record(f"p{i}", T0 + NS, label=label, scores=[1 - s, s],
                                classes=classes) for i, (label, s, _) in enumerate(rows)])
    rig.send([label_record(f"p{i}", value=t) if isinstance(t, float) else
              label_record(f"p{i}", t) for i, (_, _, t) in enumerate(rows)])
    rig.close_windows(T0 + 2 * WINDOW_S * NS)
    y_true = [1, 1, 0, 0, 1]
    y_pred = [1, 1, 0, 1, 0]
    assert rig.value(semconv.ML_PERFORMANCE_ACCURACY) == skm.accuracy_score(y_true, y_pred)
    assert rig.value(semconv.ML_PERFORMANCE_ROC_AUC, **{AVG: semconv.AVERAGE_BINARY,
                                                        semconv.ML_CLASS: "1"}) == \
        pytest.approx(skm.roc_auc_score(y_true, [s for _, s, _ in rows]))
    assert rig.value(semconv.ML_PERFORMANCE_LABELS, **{semconv.ML_CLASS: "1"}) == 3


def test_a_prediction_time_past_int64_is_a_bad_record_not_a_retry_for_ever(rig: Rig) -> None:
    """Found by tests/test_fuzz.py: a record time of 2**64-1 (a valid uint64) made the store
    raise OverflowError (SQLite INTEGER), answered 503 on every attempt."""
    rig.processor.consume_logs(batch([prediction_record("far", 2**64 - 1, label="yes"),
                                      prediction_record("ok", T0, label="yes")]))
    stats = rig.processor.stats()
    assert (stats.invalid_records, stats.stored_predictions) == (1, 1)
