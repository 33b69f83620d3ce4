"""The ml_drift processor, driven with hand-built OTLP protobuf metrics and an injected clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_DELTA,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from driftline import drift, exphist, semconv
from driftline.exphist import ExpHistogram
from driftline.processor.ml_drift.processor import (
    DEFAULT_MIN_ROWS,
    DEFAULT_WINDOW,
    MlDriftConfig,
    MlDriftProcessor,
    ThresholdsConfig,
    histogram_from_point,
)
from driftline.profile import (
    KIND_CATEGORICAL,
    KIND_NUMERIC,
    ROLE_PREDICTION,
    Profile,
    ProfileBuilder,
    save,
)

NS = 1_000_000_000
WINDOW_S = 10
T0 = 1_700_000_000 * NS  # a multiple of the window: window boundaries fall on T0 + k * 10 s
MODEL = {semconv.ML_MODEL_NAME: "churn", semconv.ML_MODEL_VERSION: "3",
         semconv.ML_MODEL_FRAMEWORK: "sklearn", semconv.ML_OPERATION: "predict"}
APP = {semconv.SERVICE_NAME: "churn-api", "service.instance.id": "pod-1"}
CONFIDENCE = semconv.PROFILE_COLUMN_PREDICTION_CONFIDENCE
CLASS = semconv.PROFILE_COLUMN_PREDICTION_CLASS


class Clock:
    """Unix nanoseconds the test moves by hand."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns

    def at(self, seconds_after_t0: float) -> None:
        self.now_ns = T0 + round(seconds_after_t0 * NS)


class Capture:
    """The next consumer: remembers every batch it was handed."""

    def __init__(self) -> None:
        self.batches: list[Sequence[ResourceMetrics]] = []
        self.lock = threading.Lock()

    def consume_metrics(self, batch: Sequence[ResourceMetrics]) -> None:
        with self.lock:
            self.batches.append(batch)


def _kv(attributes: Mapping[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attributes.items()]


def exp_point(hist: ExpHistogram, attributes: Mapping[str, str],
              time_ns: int) -> ExponentialHistogramDataPoint:
    point = ExponentialHistogramDataPoint(
        attributes=_kv(attributes), start_time_unix_nano=time_ns - NS, time_unix_nano=time_ns,
        count=hist.count, sum=hist.sum, scale=hist.scale, zero_count=hist.zero_count,
        min=hist.min, max=hist.max)
    point.positive.offset = hist.positive.offset
    point.positive.bucket_counts.extend(int(c) for c in hist.positive.counts)
    point.negative.offset = hist.negative.offset
    point.negative.bucket_counts.extend(int(c) for c in hist.negative.counts)
    return point


def sum_point(value: int, attributes: Mapping[str, str], time_ns: int) -> NumberDataPoint:
    return NumberDataPoint(attributes=_kv(attributes), start_time_unix_nano=time_ns - NS,
                           time_unix_nano=time_ns, as_int=value)


def app_batch(
    time_ns: int,
    features: Mapping[str, np.ndarray],
    *,
    classes: Mapping[str, int] | None = None,
    confidence: np.ndarray | None = None,
    rows: int | None = None,
    model: Mapping[str, str] = MODEL,
    resource: Mapping[str, str] = APP,
    temporality: int = AGGREGATION_TEMPORALITY_DELTA,
) -> list[ResourceMetrics]:
    """One export of the app-side recorder: what the instrumentation sends per interval."""
    feature_points = [exp_point(exphist.from_values(values),
                                {**model, semconv.ML_FEATURE_NAME: name}, time_ns)
                      for name, values in features.items()]
    row_count = rows if rows is not None else len(next(iter(features.values())))
    metrics = [
        Metric(name=semconv.ML_FEATURE_VALUE, unit=semconv.UNIT_DIMENSIONLESS,
               exponential_histogram=ExponentialHistogram(
                   data_points=feature_points, aggregation_temporality=temporality)),
        Metric(name=semconv.ML_PREDICT_ROWS, unit=semconv.UNIT_ROWS,
               sum=Sum(data_points=[sum_point(row_count, model, time_ns)],
                       aggregation_temporality=temporality, is_monotonic=True)),
    ]
    if classes is not None:
        metrics.append(Metric(
            name=semconv.ML_PREDICTION_CLASS_METRIC, unit=semconv.UNIT_ROWS,
            sum=Sum(data_points=[sum_point(n, {**model, semconv.ML_PREDICTION_CLASS: label},
                                           time_ns) for label, n in classes.items()],
                    aggregation_temporality=temporality, is_monotonic=True)))
    if confidence is not None:
        metrics.append(Metric(
            name=semconv.ML_PREDICTION_CONFIDENCE, unit=semconv.UNIT_DIMENSIONLESS,
            exponential_histogram=ExponentialHistogram(
                data_points=[exp_point(exphist.from_values(confidence), model, time_ns)],
                aggregation_temporality=temporality)))
    return [ResourceMetrics(
        resource=Resource(attributes=_kv(resource)),
        scope_metrics=[ScopeMetrics(metrics=metrics)])]


def reference(rng: np.random.Generator, rows: int = 5000, version: str = "3",
              classes: Sequence[str] | None = None) -> Profile:
    builder = ProfileBuilder("churn", version)
    builder.add_column("age", rng.normal(40, 10, rows))
    builder.add_column("income", rng.normal(50, 5, rows))
    if classes is not None:
        builder.add_column(CLASS, rng.choice(classes, rows, p=[0.7, 0.2, 0.1]),
                           ROLE_PREDICTION, KIND_CATEGORICAL)
        builder.add_column(CONFIDENCE, rng.uniform(0.5, 1.0, rows), ROLE_PREDICTION,
                           KIND_NUMERIC)
    builder.add_rows(rows)
    return builder.build()


def processor(profiles: Mapping[tuple[str, str], Profile], clock: Clock, capture: Capture,
              **config: object) -> MlDriftProcessor:
    settings = {"window": f"{WINDOW_S}s", "grace": "1s", "min_rows": 100, **config}
    return MlDriftProcessor(MlDriftConfig(**settings), capture, clock=clock, profiles=profiles)


def gauges(output: Sequence[ResourceMetrics]) -> dict[tuple[str, str, str], float]:
    """``(metric, feature, method) -> value`` over the emitted gauges (one window)."""
    values = {}
    for resource_metrics in output:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.gauge.data_points:
                    attrs = {kv.key: kv.value.string_value for kv in point.attributes}
                    value = point.as_int if point.WhichOneof("value") == "as_int" \
                        else point.as_double
                    key = (metric.name, attrs.get(semconv.ML_FEATURE_NAME, ""),
                           attrs.get(semconv.ML_DRIFT_METHOD, ""))
                    assert key not in values, f"duplicate point {key}"
                    values[key] = value
    return values


def rows_point(output: Sequence[ResourceMetrics]) -> NumberDataPoint:
    [resource_metrics] = output
    [metric] = [m for m in resource_metrics.scope_metrics[0].metrics
                if m.name == semconv.ML_WINDOW_ROWS]
    [point] = metric.gauge.data_points
    return point


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_shifted_feature_is_detected_and_unshifted_is_not(rng: np.random.Generator) -> None:
    profile = reference(rng)
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): profile}, clock, capture)
    age_a, age_b = rng.normal(55, 10, 300), rng.normal(55, 10, 200)  # +1.5 std
    income_a, income_b = rng.normal(50, 5, 300), rng.normal(50, 5, 200)

    clock.at(3)
    proc.consume_metrics(app_batch(T0 + 2 * NS, {"age": age_a, "income": income_a}))
    proc.consume_metrics(app_batch(T0 + 6 * NS, {"age": age_b, "income": income_b}))
    clock.at(10.9)
    assert proc.evaluate_due() == []  # end + grace not reached yet
    clock.at(11.2)
    output = proc.evaluate_due()

    values = gauges(output)
    merged_age = exphist.merge([exphist.from_values(age_a), exphist.from_values(age_b)])
    merged_income = exphist.merge([exphist.from_values(income_a),
                                   exphist.from_values(income_b)])
    expected_age = drift.wasserstein_normed(profile.columns["age"].histogram, merged_age,
                                            profile.columns["age"].std)
    expected_income = drift.wasserstein_normed(profile.columns["income"].histogram,
                                               merged_income, profile.columns["income"].std)
    score = semconv.ML_DRIFT_SCORE, semconv.DRIFT_METHOD_WASSERSTEIN
    detected = semconv.ML_DRIFT_DETECTED, semconv.DRIFT_METHOD_WASSERSTEIN
    assert values[(score[0], "age", score[1])] == pytest.approx(expected_age, rel=1e-12)
    assert values[(score[0], "income", score[1])] == pytest.approx(expected_income, rel=1e-12)
    assert expected_age > 1.0 > 0.1 > expected_income  # the data really differ as intended
    assert values[(detected[0], "age", detected[1])] == 1
    assert values[(detected[0], "income", detected[1])] == 0
    psi_age = drift.psi(profile.columns["age"].histogram, merged_age)
    assert values[(semconv.ML_DRIFT_SCORE, "age", semconv.DRIFT_METHOD_PSI)] == \
        pytest.approx(psi_age, rel=1e-12)
    assert values[(semconv.ML_DRIFT_DATASET_SHARE, "", "")] == 0.5
    assert values[(semconv.ML_DRIFT_DATASET_DETECTED, "", "")] == 1  # 0.5 >= default 0.5
    assert values[(semconv.ML_WINDOW_ROWS, "", "")] == 500
    assert proc.stats().evaluated_windows == 1


def test_output_carries_model_attributes_window_times_and_the_processors_resource(
    rng: np.random.Generator,
) -> None:
    """A verdict is the model's, not the app instance's: whichever replicas sent the rows,
    the gauges carry the processor's resource (Prometheus' job/instance come from it), so
    they stay one series across app restarts and replicas."""
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): reference(rng)}, clock, capture)
    clock.at(3)
    proc.consume_metrics(app_batch(T0 + 2 * NS, {"age": rng.normal(40, 10, 200)}))
    # A second replica of the same app.
    proc.consume_metrics(app_batch(T0 + 4 * NS, {"age": rng.normal(40, 10, 200)},
                                   resource={**APP, "service.instance.id": "pod-2"}))
    clock.at(12)
    [resource_metrics] = proc.evaluate_due()
    # The next window from one restarted replica only: the same resource.
    proc.consume_metrics(app_batch(T0 + 12 * NS, {"age": rng.normal(40, 10, 200)},
                                   resource={**APP, "service.instance.id": "pod-3"}))
    clock.at(22)
    [next_window] = proc.evaluate_due()

    processor_resource = {semconv.SERVICE_NAME: semconv.PROCESSOR_SERVICE_NAME}
    assert _plain(resource_metrics.resource.attributes) == processor_resource
    assert _plain(next_window.resource.attributes) == processor_resource
    [scope] = resource_metrics.scope_metrics
    assert scope.scope.name == semconv.PROCESSOR_SCOPE
    point = rows_point([resource_metrics])
    assert point.start_time_unix_nano == T0
    assert point.time_unix_nano == T0 + WINDOW_S * NS
    assert point.as_int == 400
    assert _plain(point.attributes) == MODEL
    score = next(m for m in scope.metrics if m.name == semconv.ML_DRIFT_SCORE)
    assert _plain(score.gauge.data_points[0].attributes) == {
        **MODEL, semconv.ML_FEATURE_NAME: "age",
        semconv.ML_DRIFT_METHOD: semconv.DRIFT_METHOD_WASSERSTEIN}


def test_one_detected_per_column_for_its_verdict_method_context_scores_as_scores(
    rng: np.random.Generator,
) -> None:
    """``count(ml_drift_detected == 1)`` counts drifted columns: context methods (KS, PSI,
    chi-square) leave their statistic in ``ml.drift.score`` only."""
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): reference(rng, classes=["a", "b", "c"])}, clock,
                     capture)
    clock.at(3)
    proc.consume_metrics(app_batch(T0 + 2 * NS, {"age": rng.normal(70, 10, 500),
                                                 "income": rng.normal(50, 5, 500)},
                                   classes={"a": 100, "b": 100, "c": 300},
                                   confidence=rng.uniform(0.5, 1.0, 500)))
    clock.at(12)
    values = gauges(proc.evaluate_due())
    detected = sorted(k[1:] for k in values if k[0] == semconv.ML_DRIFT_DETECTED)
    verdicts = [(column, method) for column, method in detected]
    assert [column for column, _ in verdicts] == sorted({"age", "income", CLASS, CONFIDENCE})
    assert dict(verdicts) == {"age": semconv.DRIFT_METHOD_WASSERSTEIN,
                              "income": semconv.DRIFT_METHOD_WASSERSTEIN,
                              CONFIDENCE: semconv.DRIFT_METHOD_WASSERSTEIN,
                              CLASS: semconv.DRIFT_METHOD_JENSENSHANNON}
    scores = {k[1:] for k in values if k[0] == semconv.ML_DRIFT_SCORE}
    assert {("age", semconv.DRIFT_METHOD_KS), ("age", semconv.DRIFT_METHOD_PSI),
            ("age", semconv.DRIFT_METHOD_WASSERSTEIN)} <= scores
    assert len(scores) > len(verdicts)  # the context scores are still there
    assert values[(semconv.ML_DRIFT_DETECTED, "age", semconv.DRIFT_METHOD_WASSERSTEIN)] == 1


def _plain(attributes: Sequence[KeyValue]) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in attributes}


def test_points_in_two_windows_give_two_evaluations(rng: np.random.Generator) -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): reference(rng)}, clock, capture)
    clock.at(10.5)  # inside the first window's grace: its export is not late
    proc.consume_metrics(app_batch(T0 + 9 * NS, {"age": rng.normal(40, 10, 150)}))
    proc.consume_metrics(app_batch(T0 + 10 * NS, {"age": rng.normal(40, 10, 250)}))

    clock.at(12)
    first = proc.evaluate_due()  # only window [0 s, 10 s) has its end + grace behind it
    clock.at(21.5)
    second = proc.evaluate_due()

    assert (rows_point(first).start_time_unix_nano, rows_point(first).as_int) == (T0, 150)
    assert (rows_point(second).start_time_unix_nano, rows_point(second).as_int) == \
        (T0 + WINDOW_S * NS, 250)
    assert proc.evaluate_due() == []  # nothing is evaluated twice
    assert proc.stats().evaluated_windows == 2
    assert proc.stats().late_points == 0


def test_window_below_min_rows_emits_only_rows(rng: np.random.Generator) -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): reference(rng)}, clock, capture, min_rows=100)
    clock.at(1)
    proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(90, 1, 99)}))
    clock.at(12)
    output = proc.evaluate_due()

    assert gauges(output) == {(semconv.ML_WINDOW_ROWS, "", ""): 99}


def test_late_point_goes_to_oldest_open_window_and_is_counted(
    rng: np.random.Generator,
) -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): reference(rng)}, clock, capture)
    clock.at(5)
    proc.consume_metrics(app_batch(T0 + 5 * NS, {"age": rng.normal(40, 10, 120)}))
    clock.at(11.5)
    assert rows_point(proc.evaluate_due()).as_int == 120

    clock.at(12)  # window [0 s, 10 s) is closed; this export is for it
    proc.consume_metrics(app_batch(T0 + 8 * NS, {"age": rng.normal(40, 10, 130)}))

    assert proc.stats().late_points == 2  # the ml.feature.value point and the rows point
    clock.at(21.5)
    late = rows_point(proc.evaluate_due())
    assert (late.start_time_unix_nano, late.as_int) == (T0 + WINDOW_S * NS, 130)


def test_dataset_share_counts_features_only(rng: np.random.Generator) -> None:
    profile = reference(rng, classes=["stay", "leave", "maybe"])
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): profile}, clock, capture)
    clock.at(2)
    # age drifts, income does not; the predictions drift strongly (class mix and confidence),
    # and a label unseen in the reference is folded into __other__.
    classes = {"stay": 50, "leave": 300, "unseen": 150}
    confidence = rng.uniform(0.5, 0.6, 500)
    proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(70, 10, 500),
                                             "income": rng.normal(50, 5, 500)},
                                   classes=classes, confidence=confidence))
    clock.at(12)
    values = gauges(proc.evaluate_due())

    jensenshannon = semconv.DRIFT_METHOD_JENSENSHANNON
    expected_js = drift.jensen_shannon(
        dict(profile.columns[CLASS].frequencies),
        {"stay": 50, "leave": 300, semconv.OVERFLOW_VALUE: 150})
    assert values[(semconv.ML_DRIFT_SCORE, CLASS, jensenshannon)] == \
        pytest.approx(expected_js, rel=1e-12)
    assert values[(semconv.ML_DRIFT_DETECTED, CLASS, jensenshannon)] == 1
    assert values[(semconv.ML_DRIFT_DETECTED, CONFIDENCE,
                   semconv.DRIFT_METHOD_WASSERSTEIN)] == 1
    # Over all columns 3 of 4 drift (0.75); over the two features it is 1 of 2.
    assert values[(semconv.ML_DRIFT_DATASET_SHARE, "", "")] == 0.5


def test_dataset_share_threshold_is_configurable(rng: np.random.Generator) -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): reference(rng)}, clock, capture,
                     thresholds=ThresholdsConfig(dataset_share=0.75))
    clock.at(2)
    proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(70, 10, 500),
                                             "income": rng.normal(50, 5, 500)}))
    clock.at(12)
    values = gauges(proc.evaluate_due())

    assert values[(semconv.ML_DRIFT_DATASET_SHARE, "", "")] == 0.5
    assert values[(semconv.ML_DRIFT_DATASET_DETECTED, "", "")] == 0  # 0.5 < 0.75


def test_incoming_metrics_pass_through_unchanged(rng: np.random.Generator) -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): reference(rng)}, clock, capture)
    batch = app_batch(T0 + NS, {"age": rng.normal(40, 10, 200)})
    before = [rm.SerializeToString() for rm in batch]
    clock.at(2)

    proc.consume_metrics(batch)

    assert len(capture.batches) == 1
    assert capture.batches[0] is batch
    assert [rm.SerializeToString() for rm in capture.batches[0]] == before
    clock.at(12)
    proc.evaluate_due()
    assert len(capture.batches) == 2  # the verdicts follow as a batch of their own
    assert capture.batches[1][0].scope_metrics[0].scope.name == semconv.PROCESSOR_SCOPE


def test_model_without_profile_gets_rows_only_and_is_counted(rng: np.random.Generator) -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({("other-model", ""): reference(rng)}, clock, capture)
    clock.at(2)
    proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(90, 1, 500)}))
    clock.at(12)

    assert gauges(proc.evaluate_due()) == {(semconv.ML_WINDOW_ROWS, "", ""): 500}
    assert proc.stats().unprofiled_windows == 1


def test_profile_without_version_serves_every_version(rng: np.random.Generator) -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", ""): reference(rng, version="")}, clock, capture)
    clock.at(2)
    proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(90, 1, 500)},
                                   model={**MODEL, semconv.ML_MODEL_VERSION: "17"}))
    clock.at(12)
    values = gauges(proc.evaluate_due())

    assert values[(semconv.ML_DRIFT_DETECTED, "age", semconv.DRIFT_METHOD_WASSERSTEIN)] == 1
    assert proc.stats().unprofiled_windows == 0


def test_streams_are_keyed_by_operation(rng: np.random.Generator) -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): reference(rng)}, clock, capture)
    clock.at(2)
    proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(40, 10, 110)}))
    proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(40, 10, 120)},
                                   model={**MODEL, semconv.ML_OPERATION: "predict_proba"}))
    clock.at(12)
    output = proc.evaluate_due()

    rows = {}
    for resource_metrics in output:
        point = rows_point([resource_metrics])
        rows[_plain(point.attributes)[semconv.ML_OPERATION]] = point.as_int
    assert rows == {"predict": 110, "predict_proba": 120}


def test_shutdown_evaluates_due_windows_but_not_the_open_one(rng: np.random.Generator) -> None:
    clock, capture = Clock(T0), Capture()
    proc = processor({("churn", "3"): reference(rng)}, clock, capture)
    clock.at(10.5)
    proc.consume_metrics(app_batch(T0 + 5 * NS, {"age": rng.normal(40, 10, 150)}))
    proc.consume_metrics(app_batch(T0 + 10 * NS, {"age": rng.normal(40, 10, 160)}))
    clock.at(11.5)

    proc.shutdown()

    stats = proc.stats()
    assert (stats.evaluated_windows, stats.discarded_windows) == (1, 1)
    assert rows_point(capture.batches[-1]).as_int == 150


def test_ticker_thread_evaluates_in_the_background(rng: np.random.Generator) -> None:
    clock, capture = Clock(T0), Capture()
    proc = MlDriftProcessor(MlDriftConfig(window=f"{WINDOW_S}s", grace="1s"), capture,
                            clock=clock, profiles={("churn", "3"): reference(rng)},
                            tick_interval_s=0.01)
    proc.start()
    try:
        clock.at(2)
        proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(40, 10, 200)}))
        clock.at(12)
        deadline = time.monotonic() + 5
        while proc.stats().evaluated_windows == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        proc.shutdown()

    assert proc.stats().evaluated_windows == 1
    with capture.lock:
        assert rows_point(capture.batches[-1]).as_int == 200


def test_histogram_from_point_round_trips(rng: np.random.Generator) -> None:
    values = np.concatenate([rng.normal(0, 3, 400), np.zeros(5)])
    hist = exphist.from_values(values)

    back = histogram_from_point(exp_point(hist, MODEL, T0))

    assert back.to_dict() == hist.to_dict()


def test_start_loads_profiles_from_the_directory(rng: np.random.Generator,
                                                 tmp_path: Path) -> None:
    save(reference(rng), tmp_path / "churn.json")
    clock, capture = Clock(T0), Capture()
    proc = MlDriftProcessor(MlDriftConfig(profiles=str(tmp_path), window=f"{WINDOW_S}s",
                                          grace="1s"), capture, clock=clock)
    proc.start()
    try:
        clock.at(2)
        proc.consume_metrics(app_batch(T0 + NS, {"age": rng.normal(90, 1, 200)}))
        clock.at(12)
    finally:
        proc.shutdown()  # evaluates the due window if the ticker has not yet

    values = gauges(capture.batches[-1])
    assert values[(semconv.ML_DRIFT_DETECTED, "age", semconv.DRIFT_METHOD_WASSERSTEIN)] == 1
    assert proc.stats().unprofiled_windows == 0


def test_a_damaged_profile_is_logged_clearly_and_the_processor_starts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 14: one damaged profile no longer stops the collector (every pipeline with it);
    it is logged with its name and reason, and only its model goes without verdicts."""
    (tmp_path / "bad.json").write_text("[]")
    # Built directly: Factory.create validates the config, which reads every profile and
    # refuses a damaged one (as `driftline validate` does); the component itself tolerates it.
    proc = MlDriftProcessor(MlDriftConfig(profiles=str(tmp_path)), Capture())

    with caplog.at_level("ERROR"):
        proc.start()
    proc.shutdown()
    assert any("bad.json: not a Driftline profile" in r.getMessage() for r in caplog.records)
    assert proc.stats().profile_reload_failures == 1


def test_config_defaults_and_validation(tmp_path: Path) -> None:
    config = MlDriftConfig(profiles=str(tmp_path))

    assert (config.window, config.min_rows) == (DEFAULT_WINDOW, DEFAULT_MIN_ROWS)
    assert config.validate() == []
    assert MlDriftConfig(profiles=str(tmp_path), window=0, min_rows=0).validate() == [
        "window: must be a positive duration, got 0",
        "min_rows: must be a positive integer, got 0",
    ]
