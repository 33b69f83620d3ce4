"""No duplicate on resend (issue 14, finding 3): a request is accepted by the whole pipeline
or by none of it as far as the client can tell; data that can never succeed is answered
for good; what is accepted and later cannot be exported is counted, not re-emitted."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_DELTA,
    ExponentialHistogramDataPoint,
    Metric,
)

from driftline.exporters.prometheus.exporter import Factory, PrometheusExporterConfig
from driftline.exporters.prometheus_series.series import REASON_EXPONENTIAL_HISTOGRAM
from driftline.processor.component import DataRefusedError
from driftline.processor.ml_drift import window_store as _window_store
from driftline.processor.ml_drift.processor import CheckpointConfig
from driftline.processor.service.pipeline import FanOut
from tests._consumers import Recorder
from tests.exporters.prometheus.test_prometheus_exporter import attrs, batch, gauge, scrape
from tests.processor.ml_drift.test_ml_drift import NS, T0, Capture, Clock, app_batch, processor


def _failing_commits(failures: int):  # type: ignore[no-untyped-def]
    """``WindowStore.commit`` failing the next ``failures`` batch commits as a full disk."""
    real = _window_store.WindowStore.commit
    left = [failures]

    def commit(store: _window_store.WindowStore, changes: _window_store.Changes) -> None:
        if left[0] > 0 and changes.open_windows:
            left[0] -= 1
            raise _window_store.WindowStoreError("database or disk is full")
        real(store, changes)

    return commit


def test_a_batch_refused_by_the_checkpoint_reaches_no_exporter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch refused 3 times (disk full) reached the next consumers 4 times."""
    rng = np.random.default_rng(7)
    clock, capture = Clock(T0), Capture()
    proc = processor({}, clock, capture,
                     checkpoint=CheckpointConfig(path=str(tmp_path / "ml_drift.sqlite")))
    proc.start()
    try:
        monkeypatch.setattr(_window_store.WindowStore, "commit", _failing_commits(3))
        clock.at(3)
        request = app_batch(T0 + 2 * NS, {"age": rng.normal(40, 10, 50)})
        for _ in range(3):
            with pytest.raises(DataRefusedError):
                proc.consume_metrics(request)
        proc.consume_metrics(request)  # the sender's fourth attempt is taken
        assert len(capture.batches) == 1
        clock.at(12)
        output = proc.evaluate_due()
    finally:
        proc.shutdown()
    [rows] = [m for m in output[0].scope_metrics[0].metrics if m.name == "ml.window.rows"]
    assert rows.gauge.data_points[0].as_int == 50


def test_a_batch_the_next_consumer_refuses_after_windowing_is_counted_not_resent(
        caplog: pytest.LogCaptureFixture) -> None:
    """Once ml_drift took a batch, telling the sender to retry would window it twice: the
    next consumer's refusal is logged and counted instead."""
    rng = np.random.default_rng(7)
    clock = Clock(T0)

    class Refusing(Capture):
        def consume_metrics(self, batch):  # type: ignore[no-untyped-def]
            raise DataRefusedError("sending queue is full")

    proc = processor({}, clock, Refusing())
    clock.at(3)
    with caplog.at_level(logging.ERROR):
        proc.consume_metrics(app_batch(T0 + 2 * NS, {"age": rng.normal(40, 10, 50)}))
    assert proc.stats().forward_failures == 1
    assert any("sending queue is full" in r.getMessage() for r in caplog.records)
    clock.at(12)
    [output] = proc.evaluate_due()
    [rows] = [m for m in output.scope_metrics[0].metrics if m.name == "ml.window.rows"]
    assert rows.gauge.data_points[0].as_int == 50


def test_fan_out_with_one_consumer_refusing_after_another_took_the_batch_is_not_retried(
        caplog: pytest.LogCaptureFixture) -> None:
    """The first consumer kept the batch: a retry would give it a second copy (21 copies
    were seen). The refusal is counted and logged; when every consumer refuses, the sender
    is told to retry (no one has a copy)."""
    taker = Recorder(("metrics",))
    refuser = Recorder(("metrics",), DataRefusedError("sending queue is full"))
    fan = FanOut(metrics=[taker, refuser])
    with caplog.at_level(logging.ERROR):
        fan.consume_metrics(["batch"])
    assert taker.metrics == [["batch"]]
    assert fan.dropped_batches == 1
    assert any("sending queue is full" in r.getMessage() for r in caplog.records)
    everyone = FanOut(metrics=[refuser, Recorder(("metrics",), DataRefusedError("full"))])
    with pytest.raises(DataRefusedError):
        everyone.consume_metrics(["batch"])
    assert everyone.dropped_batches == 0


@pytest.mark.parametrize("bucket_count", [2**63, 2**64 - 1])
def test_prometheus_exporter_drops_counts_past_int64_and_keeps_the_rest(
        bucket_count: int) -> None:
    """A bucket count of 2**63 or more (valid uint64) made the exporter raise on every
    attempt: the sender retried forever, one more copy in every other exporter each time."""
    exporter = Factory.create(PrometheusExporterConfig(endpoint="127.0.0.1:0"))
    exporter.start()
    try:
        metric = Metric(name="poison", unit="1")
        metric.exponential_histogram.aggregation_temporality = AGGREGATION_TEMPORALITY_DELTA
        point = ExponentialHistogramDataPoint(count=3, scale=0, sum=10.0,
                                              attributes=attrs(ML_FEATURE_NAME="age"))
        point.positive.offset = 1
        point.positive.bucket_counts.extend([bucket_count, 1])
        metric.exponential_histogram.data_points.append(point)
        exporter.consume_metrics(batch(metric, gauge("healthy", 4.0)))
        text = scrape(exporter)
    finally:
        exporter.shutdown()
    assert exporter.dropped_points[REASON_EXPONENTIAL_HISTOGRAM] == 1
    assert "poison" not in text
    assert any(line.startswith("healthy{") and line.endswith(" 4")
               for line in text.splitlines())


def test_default_bounds_of_a_point_without_max_do_not_raise() -> None:
    """Found by tests/test_fuzz.py: a point with a negative min and no max made the exporter
    raise OverflowError (log2 of infinity) on every attempt."""
    from driftline.exporters.prometheus_series import classic_bins as _classic_bins
    from driftline.processor.component.ml_points import histogram_from_point

    point = ExponentialHistogramDataPoint(count=3, scale=0, min=-5.0)
    point.negative.offset = 1
    point.negative.bucket_counts.extend([2, 1])
    bounds = _classic_bins.default_bounds(histogram_from_point(point))
    assert list(bounds) == sorted(bounds) and all(map(math.isfinite, bounds))
    assert -8.0 in bounds  # the top power of two over |-5|


def test_arithmetic_failures_on_data_are_answered_for_good_not_retried() -> None:
    """OverflowError from a value no consumer can hold (the issue: 2**63 bucket counts,
    int64 columns) was answered UNAVAILABLE / 503: the sender retried it for ever."""
    import grpc

    from driftline.processor.otlp_receiver.grpc_server import status_for

    for exc in (OverflowError("Python int too large to convert to C long"),
                ZeroDivisionError("division by zero"), ValueError("bad"),
                RecursionError("maximum recursion depth exceeded")):
        assert status_for(exc) == grpc.StatusCode.INVALID_ARGUMENT, exc
    assert status_for(DataRefusedError("full")) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_for(OSError("disk")) == grpc.StatusCode.UNAVAILABLE
