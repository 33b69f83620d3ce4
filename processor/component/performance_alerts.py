"""``ml.performance.alert`` log records: a window's metric past its threshold, sent into the
logs pipelines so any logs exporter can page someone (as ``ml.drift.alert`` is).

Shared by ``ml_performance`` (realised metrics, from labels) and ``ml_drift`` (metrics
estimated without labels, ``labels`` 0 and ``rows`` the window's rows)."""

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
class PerformanceAlert:
    """One metric of one window past its threshold (below, or above for errors)."""

    metric: str  # the gauge's name, e.g. ml.performance.accuracy
    value: float
    threshold: float
    below: bool  # True: alerts because value < threshold; False: value > threshold
    labels: int
    # Set for an estimate: the rows it was estimated from (it has no labels).
    estimated_rows: int | None = None


def _body(alert: PerformanceAlert, model: Sequence[tuple[str, str]]) -> str:
    who = " ".join(f"{k}={v}" for k, v in model if v)
    side = "<" if alert.below else ">"
    basis = f"{alert.labels} labels" if alert.estimated_rows is None \
        else f"{alert.estimated_rows} rows without labels"
    return f"{alert.metric} {alert.value:.4g} {side} {alert.threshold:g} over {basis} for {who}"


def alert_logs(alerts: Sequence[PerformanceAlert], model: Sequence[tuple[str, str]],
               resource: Sequence[tuple[str, str]] | Sequence[KeyValue], start_ns: int,
               end_ns: int, observed_ns: int) -> ResourceLogs:
    """The records of one window's alerts, under the model's app resource (text pairs, or
    the app's own attributes as they came)."""
    records = []
    for alert in alerts:
        attributes: list[tuple[str, str | int | float]] = [
            *model, (semconv.ML_PERFORMANCE_METRIC, alert.metric),
            (semconv.ML_PERFORMANCE_VALUE_ATTRIBUTE, alert.value),
            (semconv.ML_PERFORMANCE_THRESHOLD, alert.threshold),
            (semconv.ML_PERFORMANCE_LABEL_COUNT, alert.labels),
            (semconv.ML_WINDOW_START, start_ns), (semconv.ML_WINDOW_END, end_ns)]
        records.append(LogRecord(
            time_unix_nano=end_ns, observed_time_unix_nano=observed_ns,
            severity_number=SEVERITY_NUMBER_WARN, severity_text="WARN",
            event_name=semconv.EVENT_PERFORMANCE_ALERT,
            body=AnyValue(string_value=_body(alert, model)),
            attributes=[attribute(k, v) for k, v in attributes]))
    return ResourceLogs(
        resource=Resource(attributes=[
            item if isinstance(item, KeyValue)
            else KeyValue(key=item[0], value=AnyValue(string_value=item[1]))
            for item in resource]),
        scope_logs=[ScopeLogs(scope=InstrumentationScope(name=semconv.PERFORMANCE_SCOPE,
                                                         version=driftline.__version__),
                              log_records=records)])
