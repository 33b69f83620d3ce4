"""The Prometheus exporter bounded by bytes, not only by series count (issue 14, finding 4):
300 distinct 1 MB resource attributes made a 300 MiB ``/metrics`` and 1 GiB RSS."""

from __future__ import annotations

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from driftline.exporters.prometheus.exporter import Factory, PrometheusExporterConfig
from driftline.exporters.prometheus_series import series as prometheus
from tests.exporters.prometheus.test_prometheus_exporter import batch, gauge

MIB = 1 << 20
LABEL_BYTES = MIB // 2
SERIES = 160  # 80 MiB of distinct labels: past the default exposition budget


def test_series_with_huge_labels_stop_at_the_exposition_budget() -> None:
    exporter = Factory.create(PrometheusExporterConfig(endpoint="127.0.0.1:0"))
    budget = prometheus.DEFAULT_MAX_EXPOSITION_BYTES
    for at in range(SERIES):
        resource = Resource(attributes=[KeyValue(key="blob", value=AnyValue(
            string_value=f"{at:04d}" + "x" * LABEL_BYTES))])
        exporter.consume_metrics(batch(gauge("probe", float(at)),
                                       resource=resource))
    text = exporter.render()
    assert len(text.encode()) <= budget + MIB  # the budget, plus lines of small series
    dropped = exporter.dropped_points[prometheus.REASON_SERIES_BYTES]
    assert 0 < dropped < 2 * SERIES
    # Small series still get in: the budget is on bytes, not on a count that huge ones used.
    exporter.consume_metrics(batch(gauge("small", 7.0)))
    assert "\nsmall{" in exporter.render() or exporter.render().startswith("small{")
