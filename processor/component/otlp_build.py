"""OTLP messages the processors emit: attributes, the processor's resource, and the gauges
of one evaluated window (``ml_drift``'s verdicts, ``ml_performance``'s metrics)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Gauge,
    Metric,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

import driftline
from driftline import semconv
from driftline.estimation import BINARY_METRICS

# HELP text of every gauge a processor emits (Prometheus shows it; promtool requires it).
GAUGE_HELP = {
    semconv.ML_DRIFT_SCORE: "Drift statistic of a column in the last closed window, per "
                            "method (ml.drift.detected names the verdict method)",
    semconv.ML_DRIFT_DETECTED: "1 when the column's verdict statistic crosses its threshold "
                               "in the last closed window, else 0 (one per column)",
    semconv.ML_DRIFT_DATASET_SHARE: "Share of the model's feature columns that drifted in "
                                    "the last closed window",
    semconv.ML_DRIFT_DATASET_DETECTED: "1 when the share of drifted features crosses its "
                                       "threshold in the last closed window, else 0",
    semconv.ML_DRIFT_THRESHOLD_METRIC: "Threshold of the column's verdict method in the last "
                                       "closed window (a significance level for ks and "
                                       "chisquare)",
    semconv.ML_WINDOW_ROWS: "Rows the model saw in the last closed window",
    semconv.ML_PERFORMANCE_ACCURACY: "Accuracy of the predictions of a window, over the "
                                     "labels joined so far",
    semconv.ML_PERFORMANCE_PRECISION: "Precision of a window's predictions (macro or per "
                                      "class)",
    semconv.ML_PERFORMANCE_RECALL: "Recall of a window's predictions (macro or per class)",
    semconv.ML_PERFORMANCE_F1: "F1 score of a window's predictions (macro or per class)",
    semconv.ML_PERFORMANCE_ROC_AUC: "ROC AUC of a window's class scores (binary or "
                                    "one-vs-rest macro)",
    semconv.ML_PERFORMANCE_MAE: "Mean absolute error of a window's predictions",
    semconv.ML_PERFORMANCE_RMSE: "Root mean squared error of a window's predictions",
    semconv.ML_PERFORMANCE_R2: "Coefficient of determination of a window's predictions",
    **{semconv.ML_PERFORMANCE_ESTIMATED_PREFIX + metric + suffix:
       f"{metric} of a window's predictions estimated without labels from calibrated "
       f"confidence{help_}" for metric in BINARY_METRICS
       for suffix, help_ in (("", ""),
                             (semconv.ML_PERFORMANCE_LOWER_SUFFIX, ": lower end of the band"),
                             (semconv.ML_PERFORMANCE_UPPER_SUFFIX, ": upper end of the band"))},
    semconv.ML_PERFORMANCE_LABELS: "Labels joined with a window's predictions (per true "
                                   "class where given)",
    semconv.ML_PERFORMANCE_LABELS_LAG: "Seconds from a window's end to the evaluation that "
                                       "joined its latest labels",
}


def processor_resource(overrides: Sequence[tuple[str, str | None]] = ()) -> Resource:
    """The processor's own resource, on everything it computes: a verdict belongs to the
    model (its attributes are on every point), not to the app instance that happened to
    send the rows, so it stays one series across app restarts and replicas (Prometheus
    takes job and instance from service.name and service.instance.id). ``overrides``
    (``service::telemetry::resource``) are laid over ``service.name``; ``None`` removes one."""
    attributes: dict[str, str | None] = {semconv.SERVICE_NAME: semconv.PROCESSOR_SERVICE_NAME,
                                         **dict(overrides)}
    return Resource(attributes=[attribute(key, value) for key, value in attributes.items()
                                if value is not None])


def attribute(key: str, value: str | int | float) -> KeyValue:
    """A string, integer or double attribute, by the value's type."""
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=float(value)))


class WindowGauges:
    """Gauge metrics of one window, one Metric per name, points in insertion order; every
    point carries ``attributes`` (the model's) and its own ``extra`` ones."""

    def __init__(self, start_ns: int, end_ns: int, attributes: list[tuple[str, str]]) -> None:
        self._start_ns, self._end_ns = start_ns, end_ns
        self._attributes = attributes
        self._metrics: dict[str, Metric] = {}

    def add(self, name: str, unit: str, value: float,
            extra: Sequence[tuple[str, str]] = ()) -> None:
        metric = self._metrics.get(name)
        if metric is None:
            metric = self._metrics[name] = Metric(name=name, unit=unit, gauge=Gauge(),
                                                  description=GAUGE_HELP[name])
        point = metric.gauge.data_points.add(
            start_time_unix_nano=self._start_ns, time_unix_nano=self._end_ns,
            attributes=[attribute(k, v) for k, v in (*self._attributes, *extra)])
        if isinstance(value, int):
            point.as_int = value
        else:
            point.as_double = float(value)

    def metrics(self) -> list[Metric]:
        return list(self._metrics.values())

    def resource_metrics(self, scope: str) -> ResourceMetrics:
        """The gauges under the processor's resource and instrumentation scope ``scope``."""
        return ResourceMetrics(
            resource=processor_resource(),
            scope_metrics=[ScopeMetrics(
                scope=InstrumentationScope(name=scope, version=driftline.__version__),
                metrics=self.metrics())])
