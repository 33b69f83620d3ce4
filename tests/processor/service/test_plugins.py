"""A third-party exporter found through the ``driftline.exporters`` entry-point group.

The plug-in is a real distribution on disk (a package and its ``.dist-info`` with
``entry_points.txt``, what ``pip install`` leaves behind), put on the collector
subprocess's ``PYTHONPATH``; the collector loads it like a built-in exporter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

from tests._collector import PROTOCOL_HTTP, running_collector

PLUGIN = textwrap.dedent('''
    """A worked example of a Driftline exporter plug-in: counts data points per metric."""
    import json
    from dataclasses import dataclass


    @dataclass
    class CountingExporterConfig:
        path: str = ""

        def validate(self):
            return [] if self.path else ["path: required, the JSON file to write counts to"]


    class CountingExporter:
        def __init__(self, config):
            self._path = config.path
            self._counts = {}

        def start(self):
            pass

        def shutdown(self):
            pass

        def consume_metrics(self, batch):
            for resource in batch:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        points = getattr(metric, metric.WhichOneof("data")).data_points
                        self._counts[metric.name] = self._counts.get(metric.name, 0) + len(points)
            with open(self._path, "w") as out:
                json.dump(self._counts, out)


    class Factory:
        TYPE = "counting"
        CONFIG = CountingExporterConfig
        SIGNALS = ("metrics",)

        def default_config(self):
            return CountingExporterConfig()

        def create(self, config, next_consumer=None, settings=None):
            problems = config.validate()
            if problems:
                raise ValueError("; ".join(problems))
            return CountingExporter(config)
''')


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "counting_exporter").mkdir(parents=True)
    (site / "counting_exporter" / "__init__.py").write_text(PLUGIN)
    info = site / "counting_exporter-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: counting-exporter\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[driftline.exporters]\ncounting = counting_exporter:Factory\n")
    return site


def _config(counts: Path, **exporter: object) -> dict[str, object]:
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {"counting": {"path": str(counts), **exporter}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                              "exporters": ["counting"]}},
                    "telemetry": {"metrics": {"level": "none"}}},
    }


@pytest.mark.integration
def test_an_installed_plugin_exporter_is_configured_like_a_built_in_one(
        tmp_path: Path, plugin_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_path),
                                                      os.environ.get("PYTHONPATH", "")]))
    counts = tmp_path / "counts.json"
    with running_collector(_config(counts), tmp_path) as collector:
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(
            endpoint=f"http://{collector.endpoints[PROTOCOL_HTTP]}/v1/metrics"),
            export_interval_millis=60_000)
        provider = MeterProvider(metric_readers=[reader])
        counter = provider.get_meter("plugin-test").create_counter("orders")
        for region in ("eu", "us", "ap"):
            counter.add(1, {"region": region})
        provider.shutdown()  # one export of 3 points
        deadline = time.monotonic() + 10
        while not counts.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert json.loads(counts.read_text()) == {"orders": 3}


def test_a_plugin_config_is_validated_with_yaml_paths(tmp_path: Path,
                                                      plugin_path: Path) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text(json.dumps(_config(tmp_path / "counts.json", pth="typo")))
    env = {**os.environ, "PYTHONPATH": str(plugin_path)}
    result = subprocess.run([sys.executable, "-m", "driftline.cli", "validate", str(config)],
                            capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 1
    assert "exporters::counting::pth" in result.stdout + result.stderr
    assert "'path'" in result.stdout + result.stderr  # the closest key is suggested


def test_a_broken_plugin_is_left_out_and_the_rest_works(tmp_path: Path,
                                                        plugin_path: Path) -> None:
    (plugin_path / "counting_exporter" / "__init__.py").write_text("raise ImportError('x')")
    config = tmp_path / "collector.yaml"
    config.write_text(json.dumps(_config(tmp_path / "counts.json")))
    env = {**os.environ, "PYTHONPATH": str(plugin_path)}
    result = subprocess.run([sys.executable, "-m", "driftline.cli", "validate", str(config)],
                            capture_output=True, text=True, env=env, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "plug-in exporter 'counting'" in output and "cannot be loaded" in output
    assert "unknown exporter type 'counting'" in output
