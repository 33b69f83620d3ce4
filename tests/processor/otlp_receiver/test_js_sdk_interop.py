"""The OpenTelemetry JavaScript SDK as a foreign client of ``driftline collector``.

``tests/js/export.js`` (the SDK pinned by ``tests/js/package-lock.json``, installed by
``make test`` with ``npm ci --prefix tests/js``) exports over OTLP/HTTP JSON, OTLP/HTTP
protobuf and OTLP/gRPC: a counter and an explicit-bucket histogram with delta and with
cumulative temporality (two collections each), a span and a log record. Every value is read
back from the collector's file exporters. Under ``CI=true`` a missing node or SDK fails
instead of skipping, so a regression in any encoding fails the build.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from driftline.exporters.file.exporter import read_logs, read_metrics, read_traces
from tests._collector import LOOPBACK, PROTOCOL_GRPC, PROTOCOL_HTTP, running_collector
from tests.conftest import missing_dependency

JS_DIR = Path(__file__).resolve().parents[2] / "js"
SCRIPT = JS_DIR / "export.js"
NODE_TIMEOUT_S = 60.0
ARRIVAL_TIMEOUT_S = 15.0
TRANSPORTS = ("json", "proto", "grpc")
DELTA, CUMULATIVE = 1, 2  # OTLP AggregationTemporality
WARN = 13  # OTLP SeverityNumber
# What export.js records: rows.add(5), rows.add(7), a collection, rows.add(3), a collection;
# latency 0.05, 0.5 and 2 s into the buckets (-inf, 0.1], (0.1, 1], (1, +inf).
ROWS_BY_TEMPORALITY = {"delta": (DELTA, [12, 3]), "cumulative": (CUMULATIVE, [12, 15])}
LATENCY = {"count": 3, "sum": 2.55, "bucket_counts": [1, 1, 1], "explicit_bounds": [0.1, 1.0]}


def _node() -> str:
    node = shutil.which("node")
    installed = (JS_DIR / "node_modules" / "@opentelemetry" / "sdk-metrics").is_dir()
    if node and installed:
        return node
    missing = ("node is not on PATH" if not node else
               "the JavaScript SDK is not installed: npm ci --prefix tests/js (make test does)")
    missing_dependency(missing)


def _attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in key_values}


def _service(resource: Any) -> str:
    return _attributes(resource.attributes)["service.name"]


def _wait_for(read: Any, path: Path, count: int) -> list[Any]:
    """The requests in ``path`` once ``count`` resources have arrived (or the deadline)."""
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
    while True:
        found = read(path) if path.exists() else []
        resources = [r for request in found for r in
                     getattr(request, "resource_metrics", None) or
                     getattr(request, "resource_spans", None) or
                     request.resource_logs]
        if len(resources) >= count or time.monotonic() > deadline:
            return resources
        time.sleep(0.1)


@pytest.mark.integration
def test_js_sdk_exports_arrive_exact_over_every_transport(tmp_path: Path) -> None:
    node = _node()
    outputs = {signal: tmp_path / f"{signal}.jsonl" for signal in ("metrics", "traces", "logs")}
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"},
                                             "http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {f"file/{signal}": {"path": str(path), "flush_interval": 0}
                      for signal, path in outputs.items()},
        "service": {"pipelines": {signal: {"receivers": ["otlp"],
                                           "exporters": [f"file/{signal}"]}
                                  for signal in outputs},
                    "telemetry": {"metrics": {"level": "none"}}},
    }
    with running_collector(config, tmp_path, (PROTOCOL_GRPC, PROTOCOL_HTTP)) as collector:
        bases = {"json": f"http://{collector.endpoints[PROTOCOL_HTTP]}",
                 "proto": f"http://{collector.endpoints[PROTOCOL_HTTP]}",
                 "grpc": f"http://{collector.endpoints[PROTOCOL_GRPC]}"}
        for transport in TRANSPORTS:
            run = subprocess.run([node, str(SCRIPT), transport, bases[transport]],
                                 capture_output=True, text=True, timeout=NODE_TIMEOUT_S,
                                 check=False)
            assert run.returncode == 0 and not run.stderr, (transport, run.stderr)
        # Per transport: 2 temporalities x 2 collections of metrics, 1 span, 1 log record.
        metrics = _wait_for(read_metrics, outputs["metrics"], 4 * len(TRANSPORTS))
        spans = _wait_for(read_traces, outputs["traces"], len(TRANSPORTS))
        logs = _wait_for(read_logs, outputs["logs"], len(TRANSPORTS))

    for transport in TRANSPORTS:
        service = f"js-{transport}"
        mine = [m for rm in metrics if _service(rm.resource) == service
                for sm in rm.scope_metrics for m in sm.metrics]
        assert {sm.scope.name for rm in metrics for sm in rm.scope_metrics} == \
            {"driftline.interop.js"}
        for temporality, (wire, rows) in ROWS_BY_TEMPORALITY.items():
            ours = [m for m in mine
                    if _attributes(_points(m)[0].attributes)["temporality"] == temporality]
            counted = [m for m in ours if m.name == "js.rows"]
            # The JavaScript SDK's counters are doubles unless created with valueType INT.
            assert [getattr(p, p.WhichOneof("value")) for m in counted
                    for p in m.sum.data_points] == rows, service
            assert {(m.unit, m.sum.aggregation_temporality, m.sum.is_monotonic)
                    for m in counted} == {("{row}", wire, True)}, service
            [first, *_] = [m for m in ours if m.name == "js.latency"]
            [point] = first.histogram.data_points
            assert first.histogram.aggregation_temporality == wire
            assert (point.count, list(point.bucket_counts), list(point.explicit_bounds)) == \
                (LATENCY["count"], LATENCY["bucket_counts"], LATENCY["explicit_bounds"])
            assert point.sum == pytest.approx(LATENCY["sum"], abs=1e-12)
            assert (point.min, point.max) == (0.05, 2.0)
            assert _attributes(point.attributes) == {"ml.model.name": "churn",
                                                     "temporality": temporality}

        [span] = [s for rs in spans if _service(rs.resource) == service
                  for ss in rs.scope_spans for s in ss.spans]
        assert span.name == f"predict {transport}"
        assert _attributes(span.attributes) == {"ml.batch.size": 32}
        assert len(span.trace_id) == 16 and len(span.span_id) == 8

        [record] = [r for rl in logs if _service(rl.resource) == service
                    for sl in rl.scope_logs for r in sl.log_records]
        assert (record.body.string_value, record.severity_number, record.severity_text) == \
            (f"drift {transport}", WARN, "WARN")
        assert _attributes(record.attributes) == {"ml.prediction.id": f"id-{transport}"}


def _points(metric: Any) -> Any:
    return getattr(metric, metric.WhichOneof("data")).data_points
