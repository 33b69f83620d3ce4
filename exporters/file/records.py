"""``ml.prediction`` records as flat JSON data lines, for offline analysis (the ``file``
exporter's ``format: records``).

One JSON object per prediction: its id, time, model, inputs (the record's body) and outputs
(label and scores by class, or value), plus the sender's resource. A JSON Schema of the
lines is written beside the file as ``<name>.schema.json``, so a notebook or a warehouse
loader knows the columns without reading OTLP. Other log records are not written.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs

from driftline import semconv
from driftline.exporters.file.rotating_file import all_files, whole_records
from driftline.processor.component.predictions import (
    RecordError,
    event_name,
    prediction,
    value_of,
)

FORMAT_OTLP_JSON = "otlp_json"
FORMAT_RECORDS = "records"
FORMATS = (FORMAT_OTLP_JSON, FORMAT_RECORDS)
SCHEMA_SUFFIX = ".schema.json"
SCHEMA_ID = "https://driftline.dev/schemas/prediction-record/v1"
ENCODING = "utf-8"
NS_PER_S = 1_000_000_000

_NULLABLE_STRING = {"type": ["string", "null"]}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "Driftline prediction record",
    "description": "One ml.prediction log record: a model's output for one row, with its "
                   "inputs. Join ml.ground_truth labels on `id`.",
    "type": "object",
    "required": ["id", "time", "time_unix_nano", "model", "inputs", "outputs"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "description": semconv.ML_PREDICTION_ID},
        "time": {"type": "string", "format": "date-time",
                 "description": "prediction time, UTC, RFC 3339"},
        "time_unix_nano": {"type": "integer", "minimum": 0},
        "model": {
            "type": "object", "additionalProperties": False,
            "required": ["name", "version", "framework", "operation"],
            "properties": {"name": {"type": "string", "description": semconv.ML_MODEL_NAME},
                           "version": {"type": "string"}, "framework": {"type": "string"},
                           "operation": {"type": "string"}}},
        "inputs": {"type": ["object", "null"],
                   "description": "feature name -> value (the record's body, size-capped by "
                                  "the instrumentation); bytes as base64, NaN as null"},
        "outputs": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "label": _NULLABLE_STRING,
                "scores": {"type": ["object", "null"],
                           "additionalProperties": {"type": "number"},
                           "description": "class -> score, in the model's class order"},
                "value": {"type": ["number", "null"],
                          "description": "a regressor's output"}}},
        "resource": {"type": "object", "additionalProperties": True,
                     "description": "the sender's resource attributes (service.name, ...)"},
    },
}


def schema_path(path: Path) -> Path:
    """``data/predictions.jsonl`` -> ``data/predictions.schema.json``."""
    return path.with_name(path.stem + SCHEMA_SUFFIX)


def write_schema(path: Path) -> Path:
    """Write the schema beside ``path`` (a temporary name, then replaced)."""
    target = schema_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps(SCHEMA, indent=2) + "\n", encoding=ENCODING)
    os.replace(temporary, target)
    return target


def _json_safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _time_text(time_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(time_ns // NS_PER_S, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{time_ns % NS_PER_S:09d}Z"


def prediction_lines(batch: Sequence[ResourceLogs]) -> tuple[list[str], int]:
    """The JSON lines of the ``ml.prediction`` records in ``batch``, and how many such
    records were left out because they break the record format (no id, model or output)."""
    lines: list[str] = []
    skipped = 0
    for resource_logs in batch:
        resource: dict[str, Any] | None = None
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                if event_name(record) != semconv.EVENT_PREDICTION:
                    continue
                try:
                    p = prediction(record)
                except RecordError:
                    skipped += 1
                    continue
                if resource is None:
                    resource = {kv.key: _json_safe(value_of(kv.value))
                                for kv in resource_logs.resource.attributes}
                body = value_of(record.body)
                outputs: dict[str, Any] = {"label": p.label, "value": p.value, "scores": None}
                if p.scores is not None:
                    outputs["scores"] = dict(zip(p.classes, p.scores, strict=True))
                lines.append(json.dumps(_json_safe({
                    "id": p.id, "time": _time_text(p.time_ns), "time_unix_nano": p.time_ns,
                    "model": {"name": p.model.name, "version": p.model.version,
                              "framework": p.model.framework,
                              "operation": p.model.operation},
                    "inputs": body if isinstance(body, dict) else None,
                    "outputs": outputs, "resource": resource}), separators=(",", ":")))
    return lines, skipped


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every prediction record in ``path`` and its rotated (possibly compressed) backups,
    oldest first."""
    files = all_files(Path(path))
    if not files:
        raise FileNotFoundError(f"no such file: {os.fspath(path)!r}")
    found = []
    for file in files:
        text = whole_records(file).decode(ENCODING)
        found += [json.loads(line) for line in text.splitlines() if line.strip()]
    return found
