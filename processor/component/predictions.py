"""``ml.prediction`` and ``ml.ground_truth`` OTLP log records read into plain values.

The record format is the one in ``driftline.semconv`` (after ``ML_PREDICTION_ID``): the event
name says which record it is (an ``event.name`` attribute is accepted too, as older SDKs
sent it), attributes carry the id, the model and the output or the label, the body maps the
inputs. A record that does not follow it raises ``RecordError`` saying what is missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs

from driftline import semconv
from driftline.labels import class_label

# Record times are stored as SQLite INTEGER (int64); later ones are invalid records.
MAX_TIME_NS = 2**63 - 1
_EVENT_NAME_ATTRIBUTE = "event.name"
_MODEL_ATTRIBUTES = (semconv.ML_MODEL_NAME, semconv.ML_MODEL_VERSION,
                     semconv.ML_MODEL_FRAMEWORK, semconv.ML_OPERATION)


@dataclass(frozen=True, slots=True)
class ModelKey:
    """What a performance window belongs to: the model's attributes on its predictions."""

    name: str
    version: str = ""
    framework: str = ""
    operation: str = ""


@dataclass(frozen=True, slots=True)
class Prediction:
    """One ``ml.prediction`` record's output: ``label`` (+ ``scores`` over ``classes``) for a
    classifier, ``value`` for a regressor. ``resource``: the sender's resource attributes."""

    id: str
    model: ModelKey
    time_ns: int
    label: str | None = None
    scores: tuple[float, ...] | None = None
    classes: tuple[str, ...] = ()
    value: float | None = None
    resource: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """One ``ml.ground_truth`` record: the true label (text) or value of prediction ``id``."""

    id: str
    label: str | None = None
    value: float | None = None


class RecordError(ValueError):
    """A prediction or ground-truth record that cannot be used; the message says why."""


def event_name(record: LogRecord) -> str:
    """The record's event name, from the field or (older senders) the ``event.name``
    attribute."""
    if record.event_name:
        return record.event_name
    for kv in record.attributes:
        if kv.key == _EVENT_NAME_ATTRIBUTE:
            return kv.value.string_value
    return ""


def value_of(value: AnyValue) -> Any:
    """An ``AnyValue`` as Python: str, bool, int, float, bytes, list or dict (None if unset)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _text(value: AnyValue) -> str | None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return str(value.bool_value).lower()
    if kind == "double_value":
        return class_label(value.double_value) or repr(value.double_value)
    return None


def _label(value: AnyValue) -> str | None:
    """A class label in its canonical text (``driftline.labels``), whatever the sender's
    spelling: ``1``, ``1.0`` and ``"1.0"`` are all ``"1"``."""
    text = _text(value)
    return None if text is None else class_label(text) or text


def _number(value: AnyValue) -> float | None:
    kind = value.WhichOneof("value")
    if kind == "double_value":
        return value.double_value
    if kind == "int_value":
        return float(value.int_value)
    return None


def _attributes(attributes: Sequence[KeyValue]) -> dict[str, AnyValue]:
    return {kv.key: kv.value for kv in attributes}


def _required_id(attributes: dict[str, AnyValue], what: str) -> str:
    raw = attributes.get(semconv.ML_PREDICTION_ID)
    prediction_id = None if raw is None else _text(raw)
    if not prediction_id:
        raise RecordError(f"{what} without {semconv.ML_PREDICTION_ID} (a string)")
    return prediction_id


def resource_pairs(attributes: Sequence[KeyValue]) -> tuple[tuple[str, str], ...]:
    """The resource's attributes that are text-like, as (key, text) pairs."""
    pairs = []
    for kv in attributes:
        text = _text(kv.value)
        if text is not None:
            pairs.append((kv.key, text))
    return tuple(pairs)


def prediction(record: LogRecord, resource: tuple[tuple[str, str], ...] = ()) -> Prediction:
    """The output of one ``ml.prediction`` record (its time: the record's time, else its
    observed time)."""
    attributes = _attributes(record.attributes)
    prediction_id = _required_id(attributes, "ml.prediction record")
    model = [_text(attributes[a]) if a in attributes else "" for a in _MODEL_ATTRIBUTES]
    if not model[0]:
        raise RecordError(f"ml.prediction record {prediction_id!r} without "
                          f"{semconv.ML_MODEL_NAME}")
    time_ns = record.time_unix_nano or record.observed_time_unix_nano
    if time_ns <= 0:
        raise RecordError(f"ml.prediction record {prediction_id!r} without a time")
    if time_ns > MAX_TIME_NS:  # a valid uint64 the store's int64 column cannot hold
        raise RecordError(f"ml.prediction record {prediction_id!r}: time {time_ns} is past "
                          f"{MAX_TIME_NS} (the year 2262)")
    key = ModelKey(*(m or "" for m in model))
    label_value = attributes.get(semconv.ML_PREDICTION_LABEL)
    if label_value is not None:
        label = _label(label_value)
        if label is None:
            raise RecordError(f"ml.prediction record {prediction_id!r}: "
                              f"{semconv.ML_PREDICTION_LABEL} must be a string")
        scores = classes = None
        if semconv.ML_PREDICTION_SCORES in attributes:
            scores = _numbers(attributes[semconv.ML_PREDICTION_SCORES])
            classes = _labels(attributes.get(semconv.ML_PREDICTION_CLASSES))
            if scores is None or classes is None or len(scores) != len(classes):
                raise RecordError(
                    f"ml.prediction record {prediction_id!r}: {semconv.ML_PREDICTION_SCORES} "
                    f"must be an array of numbers as long as {semconv.ML_PREDICTION_CLASSES} "
                    "(an array of strings)")
        return Prediction(prediction_id, key, time_ns, label=label, scores=scores,
                          classes=classes or (), resource=resource)
    raw = attributes.get(semconv.ML_PREDICTION_VALUE_ATTRIBUTE)
    number = None if raw is None else _number(raw)
    if number is None or not math.isfinite(number):
        raise RecordError(f"ml.prediction record {prediction_id!r} has neither "
                          f"{semconv.ML_PREDICTION_LABEL} (a string) nor a finite "
                          f"{semconv.ML_PREDICTION_VALUE_ATTRIBUTE} (a double)")
    return Prediction(prediction_id, key, time_ns, value=number, resource=resource)


def _numbers(value: AnyValue) -> tuple[float, ...] | None:
    if value.WhichOneof("value") != "array_value":
        return None
    numbers = [_number(v) for v in value.array_value.values]
    if any(n is None for n in numbers):
        return None
    return tuple(numbers)  # type: ignore[arg-type]


def _labels(value: AnyValue | None) -> tuple[str, ...] | None:
    if value is None or value.WhichOneof("value") != "array_value":
        return None
    texts = [_label(v) for v in value.array_value.values]
    if any(t is None for t in texts):
        return None
    return tuple(texts)  # type: ignore[arg-type]


def ground_truth(record: LogRecord) -> GroundTruth:
    """The label of one ``ml.ground_truth`` record."""
    attributes = _attributes(record.attributes)
    prediction_id = _required_id(attributes, "ml.ground_truth record")
    raw = attributes.get(semconv.ML_GROUND_TRUTH_LABEL)
    if raw is not None:
        label = _label(raw)
        if label is not None:
            return GroundTruth(prediction_id, label=label)
    raw = attributes.get(semconv.ML_GROUND_TRUTH_VALUE)
    number = None if raw is None else _number(raw)
    if number is not None and math.isfinite(number):
        return GroundTruth(prediction_id, value=number)
    raise RecordError(f"ml.ground_truth record {prediction_id!r} has neither "
                      f"{semconv.ML_GROUND_TRUTH_LABEL} (a string) nor a finite "
                      f"{semconv.ML_GROUND_TRUTH_VALUE} (a double)")


def records(batch: Sequence[ResourceLogs], event: str
            ) -> Iterator[tuple[ResourceLogs, LogRecord]]:
    """Every record of ``event`` in ``batch`` with its ResourceLogs."""
    for resource_logs in batch:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                if event_name(record) == event:
                    yield resource_logs, record
