"""OTLP messages the processors emit: attributes, and the gauges of one evaluated window
(``ml_drift``'s verdicts, ``ml_performance``'s metrics)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric


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
            metric = self._metrics[name] = Metric(name=name, unit=unit, gauge=Gauge())
        point = metric.gauge.data_points.add(
            start_time_unix_nano=self._start_ns, time_unix_nano=self._end_ns,
            attributes=[attribute(k, v) for k, v in (*self._attributes, *extra)])
        if isinstance(value, int):
            point.as_int = value
        else:
            point.as_double = float(value)

    def metrics(self) -> list[Metric]:
        return list(self._metrics.values())
