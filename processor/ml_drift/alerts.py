"""``ml.drift.alert`` log records: one when a column's (or the dataset's) verdict flips to
drifted, sent into the logs pipelines so any logs exporter can page someone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import (
    SEVERITY_NUMBER_WARN,
    LogRecord,
    ResourceLogs,
    ScopeLogs,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

import driftline
from driftline import semconv
from driftline.processor.component.otlp_build import attribute


@dataclass(frozen=True, slots=True)
class Alert:
    """One flip to drifted: a column's verdict score, or the dataset's drifted share."""

    subject: str  # semconv.DRIFT_SUBJECT_COLUMN or DRIFT_SUBJECT_DATASET
    column: str  # "" for the dataset
    method: str  # "" for the dataset
    score: float
    threshold: float
    p_value: float | None = None


def _body(alert: Alert, model: Sequence[tuple[str, str]]) -> str:
    who = " ".join(f"{k}={v}" for k, v in model if v)
    if alert.subject == semconv.DRIFT_SUBJECT_DATASET:
        return (f"dataset drift: {alert.score:.3g} of the features drifted "
                f"(threshold {alert.threshold:g}) for {who}")
    if alert.p_value is not None:
        return (f"drift in column '{alert.column}': {alert.method} p-value {alert.p_value:.3g} "
                f"< {alert.threshold:g} for {who}")
    return (f"drift in column '{alert.column}': {alert.method} {alert.score:.3g} >= "
            f"{alert.threshold:g} for {who}")


def alert_logs(alerts: Sequence[Alert], model: Sequence[tuple[str, str]],
               resource: Sequence[KeyValue], start_ns: int, end_ns: int,
               observed_ns: int) -> ResourceLogs:
    """The records of one window's alerts, under the window's shared app resource."""
    records = []
    for alert in alerts:
        attributes: list[tuple[str, str | int | float]] = [
            *model, (semconv.ML_DRIFT_SUBJECT, alert.subject),
            (semconv.ML_WINDOW_START, start_ns), (semconv.ML_WINDOW_END, end_ns),
            (semconv.ML_DRIFT_THRESHOLD, alert.threshold)]
        if alert.subject == semconv.DRIFT_SUBJECT_DATASET:
            attributes.append((semconv.ML_DRIFT_DATASET_SHARE_ATTRIBUTE, alert.score))
        else:
            attributes += [(semconv.ML_FEATURE_NAME, alert.column),
                           (semconv.ML_DRIFT_METHOD, alert.method),
                           (semconv.ML_DRIFT_SCORE_ATTRIBUTE, alert.score)]
            if alert.p_value is not None:
                attributes.append((semconv.ML_DRIFT_P_VALUE, alert.p_value))
        records.append(LogRecord(
            time_unix_nano=end_ns, observed_time_unix_nano=observed_ns,
            severity_number=SEVERITY_NUMBER_WARN, severity_text="WARN",
            event_name=semconv.EVENT_DRIFT_ALERT, body=AnyValue(string_value=_body(alert, model)),
            attributes=[attribute(k, v) for k, v in attributes]))
    return ResourceLogs(
        resource=Resource(attributes=resource),
        scope_logs=[ScopeLogs(scope=InstrumentationScope(name=semconv.PROCESSOR_SCOPE,
                                                         version=driftline.__version__),
                              log_records=records)])
