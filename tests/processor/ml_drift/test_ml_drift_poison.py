"""Points that could take the processor down: refused on arrival, and one bad window never
takes the others with it (issue 14, findings 1 and 2)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_DELTA,
    ExponentialHistogram,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from driftline import exphist, semconv
from driftline.processor.component import PartialRejection
from driftline.processor.ml_drift.processor import CheckpointConfig
from tests.processor.ml_drift.test_ml_drift import (
    APP,
    MODEL,
    NS,
    T0,
    Capture,
    Clock,
    _kv,
    app_batch,
    exp_point,
    gauges,
    processor,
    reference,
)

OTHER = {**MODEL, semconv.ML_MODEL_NAME: "fraud"}


def _request(*metrics: Metric) -> list[ResourceMetrics]:
    return [ResourceMetrics(resource=Resource(attributes=_kv(APP)),
                            scope_metrics=[ScopeMetrics(metrics=list(metrics))])]


def _histogram_metric(model: Mapping[str, str], feature: str, **fields: object) -> Metric:
    point = exp_point(exphist.from_values(np.array([1.0, 2.0, 3.0])),
                      {**model, semconv.ML_FEATURE_NAME: feature}, T0 + 2 * NS)
    for name, value in fields.items():
        if name == "positive_offset":
            point.positive.offset = value  # type: ignore[assignment]
        elif name == "negative_offset":
            point.negative.offset = value  # type: ignore[assignment]
            point.negative.bucket_counts.append(1)
        elif name == "bucket_count":
            point.positive.bucket_counts[0] = value  # type: ignore[index]
        else:
            setattr(point, name, value)
    return Metric(name=semconv.ML_FEATURE_VALUE, exponential_histogram=ExponentialHistogram(
        data_points=[point], aggregation_temporality=AGGREGATION_TEMPORALITY_DELTA))


def _rows_metric(model: Mapping[str, str], **value: float) -> Metric:
    point = NumberDataPoint(attributes=_kv(model), start_time_unix_nano=T0 + NS,
                            time_unix_nano=T0 + 2 * NS, **value)
    return Metric(name=semconv.ML_PREDICT_ROWS, sum=Sum(
        data_points=[point], aggregation_temporality=AGGREGATION_TEMPORALITY_DELTA,
        is_monotonic=True))


POISON_HISTOGRAMS = {
    "scale 0, offset near 2**31": {"scale": 0, "positive_offset": 2**31 - 2},
    "scale 0, negative offset -2**31": {"scale": 0, "negative_offset": -(2**31)},
    "scale 20, offset past the largest float": {"scale": 20, "positive_offset": 1024 << 20},
    "bucket count 2**63": {"bucket_count": 2**63},
    "bucket count 2**64-1": {"bucket_count": 2**64 - 1},
    "count 2**64-1": {"count": 2**64 - 1},
    "zero count 2**63": {"zero_count": 2**63},
}
POISON_ROWS = {
    "1e300 rows": {"as_double": 1e300},
    "1.5 rows": {"as_double": 1.5},
    "2**62 rows": {"as_int": 2**62},
    "2**63-1 rows": {"as_int": 2**63 - 1},
}


@pytest.mark.parametrize("name", sorted(POISON_HISTOGRAMS))
def test_histogram_beyond_sane_limits_is_rejected_and_the_rest_windowed(name: str) -> None:
    rng = np.random.default_rng(7)
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): reference(rng)}, clock, capture)
    clock.at(3)
    good = app_batch(T0 + 2 * NS, {"age": rng.normal(40, 10, 300)})
    poison = _histogram_metric(MODEL, "income", **POISON_HISTOGRAMS[name])
    good[0].scope_metrics[0].metrics.append(poison)
    with pytest.raises(PartialRejection) as rejected:
        proc.consume_metrics(good)
    assert rejected.value.rejected == 1
    assert "ml.feature.value" in rejected.value.message
    assert proc.stats().invalid_points == 1
    clock.at(12)
    values = gauges(proc.evaluate_due())
    assert values[(semconv.ML_WINDOW_ROWS, "", "")] == 300
    assert (semconv.ML_DRIFT_SCORE, "age", semconv.DRIFT_METHOD_WASSERSTEIN) in values
    assert not any(feature == "income" for _, feature, _ in values)


@pytest.mark.parametrize("name", sorted(POISON_ROWS))
def test_row_counts_beyond_sane_limits_are_rejected(name: str) -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({}, clock, capture)
    clock.at(3)
    with pytest.raises(PartialRejection) as rejected:
        proc.consume_metrics(_request(_rows_metric(MODEL, **POISON_ROWS[name]),
                                      _rows_metric(OTHER, as_int=7)))
    assert rejected.value.rejected == 1
    clock.at(12)
    values = {(p.attributes[0].value.string_value, p.as_int)
              for rm in proc.evaluate_due() for m in rm.scope_metrics[0].metrics
              if m.name == semconv.ML_WINDOW_ROWS for p in m.gauge.data_points}
    assert values == {("fraud", 7)}


def test_rows_adding_past_the_window_limit_are_rejected_not_summed() -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({}, clock, capture)
    clock.at(3)
    big = 2**53
    accepted = 0
    for _ in range(600):  # 600 * 2**53 > 2**62: the window would overflow its gauge
        try:
            proc.consume_metrics(_request(_rows_metric(MODEL, as_int=big)))
            accepted += 1
        except PartialRejection as exc:
            assert exc.rejected == 1
    assert 0 < accepted < 600
    assert proc.stats().invalid_points == 600 - accepted
    clock.at(12)
    [output] = proc.evaluate_due()
    [rows] = [m for m in output.scope_metrics[0].metrics if m.name == semconv.ML_WINDOW_ROWS]
    assert rows.gauge.data_points[0].as_int == accepted * big


def test_valid_points_get_no_partial_rejection() -> None:
    rng = np.random.default_rng(7)
    clock, capture = Clock(T0), Capture()
    proc = processor({}, clock, capture)
    clock.at(3)
    proc.consume_metrics(app_batch(T0 + 2 * NS, {"age": rng.normal(40, 10, 30)}))
    proc.consume_metrics(_request(_rows_metric(MODEL, as_int=2**53)))
    assert proc.stats().invalid_points == 0


def test_one_window_failing_evaluation_leaves_the_others_emitted(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each window is evaluated on its own: the failing one is logged with its model and
    cause, counted and dropped (as the log says); the others due in the same tick leave."""
    rng = np.random.default_rng(7)
    clock, capture = Clock(T0), Capture()
    profiles = {("churn", "3"): reference(rng), ("fraud", "3"): reference(rng)}
    proc = processor(profiles, clock, capture)
    real_scores = proc._evaluation._scores

    def scores(window, profile):  # type: ignore[no-untyped-def]
        if window.key.model_name == "churn":
            raise ValueError("Value out of range")
        return real_scores(window, profile)

    monkeypatch.setattr(proc._evaluation, "_scores", scores)
    clock.at(3)
    for model in (MODEL, OTHER):
        proc.consume_metrics(app_batch(T0 + 2 * NS, {"age": rng.normal(40, 10, 300)},
                                       model=model))
    clock.at(12)
    with caplog.at_level(logging.ERROR):
        output = proc.evaluate_due()
    models = {kv.value.string_value for rm in output for m in rm.scope_metrics[0].metrics
              for p in m.gauge.data_points for kv in p.attributes
              if kv.key == semconv.ML_MODEL_NAME}
    assert models == {"fraud"}
    assert proc.stats().failed_windows == 1
    assert proc.stats().evaluated_windows == 1
    [record] = [r for r in caplog.records if "cannot evaluate" in r.getMessage()]
    assert "model=churn " in record.getMessage()
    assert "Value out of range" in record.getMessage()
    assert "dropped" in record.getMessage()
    clock.at(13)
    assert proc.evaluate_due() == []  # dropped, as logged: not tried again
    assert proc.stats().failed_windows == 1


def _poison_state() -> dict:
    """A window as an earlier version checkpointed it: one histogram at scale 0 with a
    bucket near index 2**31 (comparing it once allocated 16 GiB, at every restart)."""
    hist = exphist.from_values(np.array([1.0, 2.0]))
    state = {"numeric": {"age": hist.to_dict()}, "explicit": {}, "categorical": {},
             "rows": 2, "framework": "sklearn", "resource": None}
    state["numeric"]["age"].update(scale=0, positive={"offset": 2**31 - 2, "counts": [2]})
    return state


def test_a_checkpointed_poison_window_is_dropped_at_start_and_logged(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    from driftline.processor.ml_drift.window import StreamKey
    from driftline.processor.ml_drift.window_store import Changes, WindowStore

    path = tmp_path / "ml_drift.sqlite"
    store = WindowStore(path)
    store.set_meta("window_ns", str(10 * NS))
    poison = StreamKey("churn", "3", "predict")
    healthy = StreamKey("fraud", "3", "predict")
    good = _poison_state()
    good["numeric"]["age"] = exphist.from_values(np.array([1.0, 2.0])).to_dict()
    index = T0 // (10 * NS)
    store.commit(Changes(windows={(poison.text(), index): (0, _poison_state()),
                                  (healthy.text(), index): (0, good)}))
    store.close()
    for attempt in range(2):
        clock, capture = Clock(T0), Capture()
        proc = processor({}, clock, capture, checkpoint=CheckpointConfig(path=str(path)))
        with caplog.at_level(logging.ERROR):
            proc.start()
        stats = proc.stats()
        proc.shutdown()
        if attempt == 0:
            assert stats.discarded_windows == 1
            [record] = [r for r in caplog.records if "damaged" in r.getMessage()]
            text = record.getMessage()
            assert str(path) in text and "churn" in text and "2147483646" in text
        else:  # moved out of the file: the next start finds nothing damaged
            assert stats.discarded_windows == 0
        assert stats.restored_windows == 1  # the healthy window of the other model
        caplog.clear()


def test_model_names_are_escaped_in_the_verdict_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    """A newline in a model name once forged a log line; NUL and terminal escapes passed."""
    rng = np.random.default_rng(7)
    evil = "churn\nml_drift: model=forged rows=1\x00\x1b[31m"
    clock, capture = Clock(T0), Capture()
    proc = processor({}, clock, capture)
    clock.at(3)
    proc.consume_metrics(app_batch(T0 + 2 * NS, {"age": rng.normal(40, 10, 30)},
                                   model={**MODEL, semconv.ML_MODEL_NAME: evil}))
    clock.at(12)
    with caplog.at_level(logging.INFO):
        proc.evaluate_due()
    [line] = [r.getMessage() for r in caplog.records if "window_start=" in r.getMessage()]
    assert "\n" not in line and "\x00" not in line and "\x1b" not in line
    assert "churn\\nml_drift: model=forged rows=1\\x00\\x1b[31m" in line


def test_future_dated_points_cannot_open_windows_without_end() -> None:
    """50 000 future-dated points opened 50 000 windows, never evaluated nor expired, all
    kept in the checkpoint. Points more than ``limits::max_future_windows`` windows ahead
    of the clock are rejected (partial success) and open nothing."""
    clock, capture = Clock(T0), Capture()
    proc = processor({}, clock, capture)
    clock.at(3)
    rejected = 0
    for step in range(200):
        time_ns = T0 + (step + 1) * 10 * NS  # one point per future window
        point = NumberDataPoint(attributes=_kv(MODEL), time_unix_nano=time_ns, as_int=1)
        metric = Metric(name=semconv.ML_PREDICT_ROWS, sum=Sum(
            data_points=[point], aggregation_temporality=AGGREGATION_TEMPORALITY_DELTA,
            is_monotonic=True))
        try:
            proc.consume_metrics(_request(metric))
        except PartialRejection as exc:
            rejected += exc.rejected
    open_windows = proc.stats().current_open_windows
    assert open_windows <= 3  # the default max_future_windows: 2 ahead of the current one
    assert rejected == 200 - open_windows
    assert proc.stats().invalid_points == 200 - open_windows
