"""The file exporter's ``format: records``: ml.prediction records as flat JSON data lines with
a JSON Schema beside them, rotated and compressed like OTLP files, read back unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from driftline import semconv
from driftline.exporters.file.exporter import FileExporter, FileExporterConfig
from driftline.exporters.file.records import SCHEMA, read_records, schema_path
from driftline.exporters.file.rotating_file import RotationConfig, backups_of
from driftline.processor.component import ComponentError
from driftline.processor.service.config import parse_config
from tests.processor.ml_performance.test_ml_performance import (
    MODEL,
    batch,
    label_record,
    prediction_record,
)

T = 1_800_000_000_123_456_789


def conforms(value: Any, schema: dict[str, Any]) -> list[str]:
    """Why ``value`` does not fit ``schema`` (a real JSON Schema validator), or []."""
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
            for e in validator.iter_errors(value)]


def _exporter(path: Path, **settings: Any) -> FileExporter:
    exporter = FileExporter(FileExporterConfig(path=str(path), flush_interval=0,
                                               format="records", **settings))
    exporter.start()
    return exporter


def test_prediction_records_round_trip_as_flat_lines(tmp_path: Path) -> None:
    path = tmp_path / "data" / "predictions.jsonl"
    regressor = {**MODEL, semconv.ML_MODEL_NAME: "price", semconv.ML_OPERATION: "predict"}
    exporter = _exporter(path)
    exporter.consume_logs(batch([
        prediction_record("p1", T, label="yes", scores=[0.25, 0.75], classes=["no", "yes"],
                          inputs={"age": 41.5, "plan": "pro", "seats": 3, "trial": True,
                                  "missing": float("nan"), "tags": ["a", "b"]}),
        label_record("p1", "no"),  # not a prediction: not written
        LogRecord(body=AnyValue(string_value="an ordinary log line")),
        prediction_record("r1", T + 1, value=12.5, model=regressor, inputs={"rooms": 3}),
        LogRecord(event_name=semconv.EVENT_PREDICTION),  # no id: left out, counted
    ]))
    exporter.shutdown()

    records = read_records(path)
    assert records == [
        {"id": "p1", "time": "2027-01-15T08:00:00.123456789Z", "time_unix_nano": T,
         "model": {"name": "churn", "version": "3", "framework": "sklearn",
                   "operation": "predict_proba"},
         "inputs": {"age": 41.5, "plan": "pro", "seats": 3, "trial": True, "missing": None,
                    "tags": ["a", "b"]},
         "outputs": {"label": "yes", "value": None, "scores": {"no": 0.25, "yes": 0.75}},
         "resource": {semconv.SERVICE_NAME: "churn-api"}},
        {"id": "r1", "time": "2027-01-15T08:00:00.123456790Z", "time_unix_nano": T + 1,
         "model": {"name": "price", "version": "3", "framework": "sklearn",
                   "operation": "predict"},
         "inputs": {"rooms": 3},
         "outputs": {"label": None, "value": 12.5, "scores": None},
         "resource": {semconv.SERVICE_NAME: "churn-api"}},
    ]
    assert exporter.skipped_records == 1
    assert json.loads(schema_path(path).read_text()) == SCHEMA
    assert schema_path(path).name == "predictions.schema.json"
    for record in records:
        assert conforms(record, SCHEMA) == []


def test_the_schema_check_would_catch_a_wrong_line() -> None:
    assert conforms({"id": 3}, SCHEMA)  # wrong type and missing keys


@pytest.mark.parametrize("compression", ["", "gzip", "zstd"])
def test_records_rotate_and_read_back_in_order(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "predictions.jsonl"
    exporter = _exporter(path, compression=compression,
                         rotation=RotationConfig(max_megabytes=0.0003, max_backups=0))
    for start in range(0, 60, 6):
        exporter.consume_logs(batch([prediction_record(f"p{i}", T + i, label="yes")
                                     for i in range(start, start + 6)]))
    exporter.shutdown()
    assert len(backups_of(path)) >= 2
    assert [r["id"] for r in read_records(path)] == [f"p{i}" for i in range(60)]


@pytest.mark.parametrize("compression", ["", "gzip", "zstd"])
def test_a_record_still_being_appended_is_not_read_yet(tmp_path: Path, compression: str) -> None:
    """As for OTLP lines (test_file_exporter): a reader sees the whole records only."""
    path = tmp_path / "predictions.jsonl"
    exporter = _exporter(path, compression=compression)
    exporter.consume_logs(batch([prediction_record("p0", T, label="yes")]))
    whole = path.stat().st_size
    exporter.consume_logs(batch([prediction_record("p1", T + 1, label="no")]))
    exporter.shutdown()
    data = path.read_bytes()
    path.write_bytes(data[:(whole + len(data)) // 2])
    assert [r["id"] for r in read_records(path)] == ["p0"]
    path.write_bytes(data)
    assert [r["id"] for r in read_records(path)] == ["p0", "p1"]


def test_a_records_exporter_refuses_metrics_naming_the_fix(tmp_path: Path) -> None:
    exporter = _exporter(tmp_path / "predictions.jsonl")
    try:
        with pytest.raises(ComponentError, match=r"format: records writes ml\.prediction log "
                                                 r"records only; metrics cannot go"):
            exporter.consume_metrics([])
    finally:
        exporter.shutdown()


def test_format_is_validated_and_configurable(tmp_path: Path) -> None:
    assert FileExporterConfig(path=str(tmp_path / "x.jsonl"), format="csv").validate() == [
        "format: one of otlp_json, records, got 'csv'"]
    config = parse_config({
        "receivers": {"otlp": None},
        "exporters": {"file/records": {"path": str(tmp_path / "p.jsonl"), "format": "records",
                                       "rotation": {"max_megabytes": 50}}},
        "service": {"pipelines": {"logs": {"receivers": ["otlp"],
                                           "exporters": ["file/records"]}}},
    }, environ={})
    [exporter] = config.exporters.values()
    assert (exporter.format, exporter.rotation.max_megabytes) == ("records", 50)
