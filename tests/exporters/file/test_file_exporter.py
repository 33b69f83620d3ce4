"""The file exporter: OTLP/JSON lines that read back into the same protobufs."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import (
    LogRecord,
    ResourceLogs,
    ScopeLogs,
    SeverityNumber,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Exemplar,
    ExponentialHistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from driftline import semconv
from driftline.durations import parse_non_negative_duration
from driftline.exporters import OtlpJsonError, read_metrics, read_traces
from driftline.exporters.file.exporter import Factory, FileExporter, FileExporterConfig, read_logs
from driftline.exporters.file.rotating_file import (
    GZIP_MAGIC,
    ZSTD_MAGIC,
    RotationConfig,
    backups_of,
)
from driftline.processor.component import ComponentError

TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")
PARENT_SPAN_ID = bytes.fromhex("0102030405060708")
RESOURCE = Resource(
    attributes=[KeyValue(key=semconv.SERVICE_NAME, value=AnyValue(string_value="churn-api"))]
)


def string_attr(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def metrics_batch(score: float) -> list[ResourceMetrics]:
    drift = Metric(name=semconv.ML_DRIFT_SCORE, description="drift")
    drift.gauge.data_points.append(
        NumberDataPoint(
            as_double=score,
            time_unix_nano=1_700_000_000_000_000_000,
            attributes=[string_attr(semconv.ML_FEATURE_NAME, "age")],
            exemplars=[Exemplar(as_double=score, trace_id=TRACE_ID, span_id=SPAN_ID)],
        )
    )
    rows = Metric(name=semconv.ML_PREDICT_ROWS, unit=semconv.UNIT_ROWS)
    rows.sum.is_monotonic = True
    rows.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    rows.sum.data_points.append(NumberDataPoint(as_int=128, time_unix_nano=5))
    values = Metric(name=semconv.ML_FEATURE_VALUE, unit=semconv.UNIT_DIMENSIONLESS)
    values.exponential_histogram.aggregation_temporality = (
        AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    )
    point = ExponentialHistogramDataPoint(count=6, scale=3, zero_count=1, sum=-2.5)
    point.positive.offset = -2
    point.positive.bucket_counts.extend([1, 0, 2])
    point.negative.offset = 4
    point.negative.bucket_counts.extend([2])
    values.exponential_histogram.data_points.append(point)
    return [
        ResourceMetrics(
            resource=RESOURCE,
            scope_metrics=[
                ScopeMetrics(
                    scope=InstrumentationScope(name=semconv.PROCESSOR_SCOPE),
                    metrics=[drift, rows, values],
                )
            ],
        )
    ]


def traces_batch() -> list[ResourceSpans]:
    span = Span(
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        parent_span_id=PARENT_SPAN_ID,
        name="predict churn",
        kind=Span.SpanKind.SPAN_KIND_INTERNAL,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_000_500_000,
        attributes=[string_attr(semconv.ML_MODEL_NAME, "churn")],
        status=Status(code=Status.StatusCode.STATUS_CODE_ERROR, message="boom"),
        links=[Span.Link(trace_id=TRACE_ID, span_id=PARENT_SPAN_ID)],
    )
    return [
        ResourceSpans(
            resource=RESOURCE,
            scope_spans=[ScopeSpans(scope=InstrumentationScope(name="t"), spans=[span])],
        )
    ]


def logs_batch(label: str) -> list[ResourceLogs]:
    record = LogRecord(
        time_unix_nano=1_700_000_000_000_000_000,
        severity_number=SeverityNumber.SEVERITY_NUMBER_INFO,
        severity_text="INFO",
        event_name="ml.ground_truth",
        body=AnyValue(string_value=label),
        attributes=[string_attr("ml.prediction.id", "p-17")],
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
    )
    return [
        ResourceLogs(
            resource=RESOURCE,
            scope_logs=[ScopeLogs(scope=InstrumentationScope(name="t"), log_records=[record])],
        )
    ]


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[FileExporter]:
    instance = Factory.create(FileExporterConfig(path=str(tmp_path / "out" / "otlp.jsonl")))
    instance.start()
    try:
        yield instance
    finally:
        instance.shutdown()


def test_metrics_round_trip_one_line_per_call(exporter: FileExporter) -> None:
    first, second = metrics_batch(0.42), metrics_batch(0.07)
    exporter.consume_metrics(first)
    exporter.consume_metrics(second)
    exporter.shutdown()

    assert len(exporter.path.read_text().splitlines()) == 2
    assert read_metrics(exporter.path) == [
        ExportMetricsServiceRequest(resource_metrics=first),
        ExportMetricsServiceRequest(resource_metrics=second),
    ]


def test_traces_round_trip_with_hex_ids(exporter: FileExporter) -> None:
    exporter.consume_traces(traces_batch())
    exporter.shutdown()

    raw = json.loads(exporter.path.read_text())
    span = raw["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == "5b8efff798038103d269b633813fc60c"
    assert span["spanId"] == "eee19b7ec3c1b174"
    assert span["parentSpanId"] == "0102030405060708"
    assert span["links"][0] == {"traceId": TRACE_ID.hex(), "spanId": PARENT_SPAN_ID.hex()}
    assert span["kind"] == 1  # enums as integers, per the OTLP JSON encoding
    assert span["status"] == {"code": 2, "message": "boom"}
    assert span["startTimeUnixNano"] == "1700000000000000000"
    assert read_traces(exporter.path) == [ExportTraceServiceRequest(resource_spans=traces_batch())]


def test_metric_json_uses_otlp_field_names_and_hex_exemplar_ids(exporter: FileExporter) -> None:
    exporter.consume_metrics(metrics_batch(0.42))
    exporter.shutdown()

    raw = json.loads(exporter.path.read_text())
    metrics = raw["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
    gauge_point = metrics[0]["gauge"]["dataPoints"][0]
    assert gauge_point["asDouble"] == 0.42
    assert gauge_point["exemplars"][0]["traceId"] == TRACE_ID.hex()
    assert gauge_point["exemplars"][0]["spanId"] == SPAN_ID.hex()
    assert metrics[1]["sum"]["aggregationTemporality"] == 1
    assert metrics[1]["sum"]["isMonotonic"] is True
    assert metrics[2]["exponentialHistogram"]["dataPoints"][0]["negative"] == {
        "offset": 4, "bucketCounts": ["2"]
    }


def test_one_file_for_both_signals_reads_back_per_signal(exporter: FileExporter) -> None:
    exporter.consume_metrics(metrics_batch(0.1))
    exporter.consume_traces(traces_batch())
    exporter.consume_metrics(metrics_batch(0.2))
    exporter.consume_metrics([])  # an empty batch writes no line
    exporter.shutdown()

    scores = [
        request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double
        for request in read_metrics(exporter.path)
    ]
    assert scores == [0.1, 0.2]
    assert len(read_traces(exporter.path)) == 1
    assert len(exporter.path.read_text().splitlines()) == 3


def test_logs_round_trip_with_hex_ids_and_integer_enums(exporter: FileExporter) -> None:
    exporter.consume_logs(logs_batch("churned"))
    exporter.consume_logs([])  # an empty batch writes no line
    exporter.consume_logs(logs_batch("stayed"))
    exporter.shutdown()

    lines = exporter.path.read_text().splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert record["traceId"] == TRACE_ID.hex()
    assert record["spanId"] == SPAN_ID.hex()
    assert record["severityNumber"] == 9  # SEVERITY_NUMBER_INFO, as an integer
    assert record["eventName"] == "ml.ground_truth"
    assert record["body"] == {"stringValue": "churned"}
    assert read_logs(exporter.path) == [
        ExportLogsServiceRequest(resource_logs=logs_batch("churned")),
        ExportLogsServiceRequest(resource_logs=logs_batch("stayed")),
    ]


def test_one_file_for_three_signals_reads_back_per_signal(exporter: FileExporter) -> None:
    exporter.consume_logs(logs_batch("churned"))
    exporter.consume_metrics(metrics_batch(0.3))
    exporter.consume_traces(traces_batch())
    exporter.shutdown()

    assert [r.resource_logs[0].scope_logs[0].log_records[0].body.string_value
            for r in read_logs(exporter.path)] == ["churned"]
    assert len(read_metrics(exporter.path)) == 1
    assert len(read_traces(exporter.path)) == 1


def test_lines_reach_disk_within_the_flush_interval(tmp_path: Path) -> None:
    path = tmp_path / "fast.jsonl"
    exporter = FileExporter(FileExporterConfig(path=str(path), flush_interval="50ms"))
    exporter.start()
    try:
        exporter.consume_metrics(metrics_batch(0.3))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not path.read_text():
            time.sleep(0.02)
        assert len(read_metrics(path)) == 1
    finally:
        exporter.shutdown()


def test_a_long_flush_interval_holds_lines_until_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "slow.jsonl"
    exporter = FileExporter(FileExporterConfig(path=str(path), flush_interval="1h"))
    exporter.start()
    exporter.consume_metrics(metrics_batch(0.3))
    time.sleep(0.2)
    assert path.read_text() == ""
    exporter.shutdown()
    assert len(read_metrics(path)) == 1


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "append.jsonl"
    for score in (0.1, 0.2):
        exporter = FileExporter(FileExporterConfig(path=str(path), flush_interval=0))
        exporter.start()
        exporter.consume_metrics(metrics_batch(score))
        exporter.shutdown()

    assert len(read_metrics(path)) == 2


def test_consume_before_start_is_a_component_error(tmp_path: Path) -> None:
    exporter = FileExporter(FileExporterConfig(path=str(tmp_path / "x.jsonl")))
    with pytest.raises(ComponentError, match="start"):
        exporter.consume_metrics(metrics_batch(0.1))


def test_read_reports_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"resourceMetrics": []}\n{"resourceSpans": [{"scopeSpans": '
                    '[{"spans": [{"traceId": "zz"}]}]}]}\n')
    with pytest.raises(OtlpJsonError, match=r"bad\.jsonl:2: "):
        read_traces(path)


def test_config_validation(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert FileExporterConfig(path="").validate() == [
        "path: required, the file to append OTLP JSON lines to, got ''"
    ]
    assert FileExporterConfig(path=str(tmp_path)).validate() == [
        f"path: {str(tmp_path)!r} is a directory; name a file inside it"
    ]
    assert FileExporterConfig(path=str(blocker / "sub" / "x.jsonl")).validate() == [
        f"path: cannot create directory under {str(blocker)!r}: it is not a directory"
    ]
    assert FileExporterConfig(path="out.jsonl", flush_interval="soon").validate() == [
        "flush_interval: must be a duration such as '10s', '500ms', '2m', '1h' or a number "
        "of seconds, got 'soon'"
    ]
    assert FileExporterConfig(path=str(tmp_path / "new" / "x.jsonl")).validate() == []
    assert not (tmp_path / "new").exists()  # validation creates nothing


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1s", 1.0), ("500ms", 0.5), (2, 2.0), (0.25, 0.25), ("1m30s", 90.0), ("3", 3.0)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_non_negative_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "1 sec", "-1s", -1, True, "1s2", None])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_non_negative_duration(value)


def test_factory_declares_type_config_and_signals() -> None:
    assert Factory.TYPE == "file"
    assert Factory.CONFIG is FileExporterConfig
    assert Factory.SIGNALS == ("metrics", "traces", "logs")
    assert Factory().default_config() == FileExporterConfig(path="", flush_interval=1.0)


def _scores(path: Path) -> list[float]:
    return [request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
            .as_double for request in read_metrics(path)]


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_rotated_and_compressed_files_read_back_into_the_same_data(
        tmp_path: Path, compression: str) -> None:
    path = tmp_path / "out" / "metrics.jsonl"
    config = FileExporterConfig(path=str(path), flush_interval=0, compression=compression,
                                rotation=RotationConfig(max_megabytes=0.004, max_backups=0))
    exporter = FileExporter(config)
    exporter.start()
    scores = [i / 7 for i in range(300)]
    for score in scores:
        exporter.consume_metrics(metrics_batch(score))
    exporter.shutdown()
    backups = backups_of(path)
    assert len(backups) >= 3  # it rotated
    magic = {"gzip": GZIP_MAGIC, "zstd": ZSTD_MAGIC}.get(compression, b"{")
    assert all(p.read_bytes().startswith(magic) for p in [*backups, path])
    assert all(p.stat().st_size <= 0.004 * 1024 * 1024 for p in backups)
    assert _scores(path) == scores  # every batch, in order, across all files


def test_rotation_keeps_only_max_backups_and_drops_old_ones(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    config = FileExporterConfig(path=str(path), flush_interval=0,
                                rotation=RotationConfig(max_megabytes=0.002, max_backups=2,
                                                        max_days=1))
    exporter = FileExporter(config)
    exporter.start()
    for i in range(100):
        exporter.consume_metrics(metrics_batch(float(i)))
    kept = backups_of(path)
    assert len(kept) == 2
    assert _scores(path)[-1] == 99.0  # the newest data is what is kept
    two_days_ago = time.time() - 2 * 86_400
    os.utime(kept[0], (two_days_ago, two_days_ago))
    for i in range(100, 130):  # rotates again at least once
        exporter.consume_metrics(metrics_batch(float(i)))
    exporter.shutdown()
    assert kept[0] not in backups_of(path) and not kept[0].exists()
    assert len(backups_of(path)) <= 2


def test_rotation_and_compression_are_validated_with_their_keys() -> None:
    config = FileExporterConfig(path="/tmp/x.jsonl", compression="lz4",
                                rotation=RotationConfig(max_megabytes=0, max_backups=-1))
    assert config.validate() == [
        "compression: one of gzip, zstd or none, got 'lz4'",
        "rotation::max_megabytes: must be positive, got 0",
        "rotation::max_backups: must be 0 (keep all) or more, got -1",
    ]


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_a_record_still_being_appended_is_not_read_yet(tmp_path: Path,
                                                      compression: str) -> None:
    """A reader polling a live file sees it as the kernel has it mid-``write``: the whole
    records and a prefix of the next (a 200 KB line was seen cut in 44 of 10 080 reads by
    another process). Every such prefix reads as the whole records before it; the next read
    finds the record once it is whole. Damage before the last record still raises."""
    path = tmp_path / "metrics.jsonl"
    exporter = FileExporter(FileExporterConfig(path=str(path), flush_interval=0,
                                               compression=compression))
    exporter.start()
    sizes = []
    for score in (0.1, 0.2, 0.3):
        exporter.consume_metrics(metrics_batch(score))
        sizes.append(path.stat().st_size)
    whole = sizes[-1]
    exporter.consume_metrics(metrics_batch(0.4))
    exporter.shutdown()
    data = path.read_bytes()
    for cut in sorted({whole + 1, whole + 2, whole + 3, (whole + len(data)) // 2,
                       len(data) - 1}):
        path.write_bytes(data[:cut])
        assert _scores(path) == [0.1, 0.2, 0.3], cut
    path.write_bytes(data)
    assert _scores(path) == [0.1, 0.2, 0.3, 0.4]
    path.write_bytes(data[:sizes[0] // 2] + data[sizes[0]:])  # the first record cut short
    with pytest.raises(ValueError, match=r"metrics\.jsonl"):  # OtlpJsonError or damaged
        _scores(path)
