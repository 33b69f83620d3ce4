"""Drift alerts to a real Prometheus Alertmanager (Debian ``prometheus-alertmanager``) and to
a webhook: a real collector's ml_drift processor raises them from drifted data, the logs
pipeline's ``alertmanager`` exporter posts them, and the alert is read back from
Alertmanager's own API. The webhook receiver is an in-test HTTP server on a real socket.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftline.exporters.sending.alerts import label_name
from driftline.profile import save
from tests._collector import LOOPBACK, PROTOCOL_HTTP, post_metrics, running_collector
from tests.conftest import ReservedPort, require_binary
from tests.processor.ml_drift.test_ml_drift import app_batch, reference

ALERTMANAGER_MISSING = ("needs the Debian package prometheus-alertmanager "
                        "(apt-get install prometheus-alertmanager)")
WINDOW_S = 2
WAIT_S = 30.0


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = require_binary("prometheus-alertmanager", ALERTMANAGER_MISSING)
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n")
    reserved = ReservedPort()  # held until the moment alertmanager starts
    log = (tmp_path / "alertmanager.log").open("wb")
    reserved.release()
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
         f"--web.listen-address={reserved.endpoint}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{reserved.endpoint}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("alertmanager did not start: "
                                         + (tmp_path / "alertmanager.log").read_text()
                                         ) from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


class _Webhook(BaseHTTPRequestHandler):
    bodies: list[Any] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet: the test asserts on what was received."""


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Webhook]]]:
    handler = type("Handler", (_Webhook,), {"bodies": []})
    server = ThreadingHTTPServer((LOOPBACK, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}/hooks/drift", handler
    finally:
        server.shutdown()
        server.server_close()


def _alerts(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as response:
        return json.load(response)


@pytest.mark.integration
def test_drift_alert_appears_in_alertmanager_and_at_the_webhook(
        tmp_path: Path, alertmanager: str, webhook: tuple[str, type[_Webhook]]) -> None:
    hook_url, hook = webhook
    rng = np.random.default_rng(4)
    save(reference(rng), tmp_path / "profiles" / "churn.json")
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"ml_drift": {"profiles": str(tmp_path / "profiles"),
                                    "window": f"{WINDOW_S}s", "grace": "0.5s",
                                    "min_rows": 100}},
        "exporters": {"file": {"path": str(tmp_path / "metrics.jsonl"), "flush_interval": 0},
                      "alertmanager": {"endpoint": alertmanager, "resolve_timeout": "1h",
                                       "retry_on_failure": {"initial_interval": "200ms"}},
                      "webhook": {"endpoint": hook_url}},
        "service": {"pipelines": {
            "metrics": {"receivers": ["otlp"], "processors": ["ml_drift"],
                        "exporters": ["file"]},
            "logs": {"receivers": ["otlp"], "exporters": ["alertmanager", "webhook"]}}},
    }
    with running_collector(config, tmp_path) as collector:
        post_metrics(collector.endpoints[PROTOCOL_HTTP], app_batch(
            time.time_ns(), {"age": rng.normal(75, 10, 500), "income": rng.normal(50, 5, 500)}))
        deadline = time.monotonic() + WAIT_S
        alerts = _alerts(alertmanager)
        while len(alerts) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            alerts = _alerts(alertmanager)
    by_subject = {a["labels"]["ml_drift_subject"]: a for a in alerts}
    column = by_subject["column"]
    assert column["labels"]["alertname"] == "MLDrift"
    assert column["labels"]["ml_feature_name"] == "age"  # shifted; income is not
    assert column["labels"]["ml_model_name"] == "churn"
    assert column["status"]["state"] == "active"
    assert "drift in column 'age'" in column["annotations"]["summary"]
    assert float(column["annotations"]["ml_drift_score"]) >= float(
        column["annotations"]["ml_drift_threshold"])
    assert "dataset" in by_subject
    posted = [alert for body in hook.bodies for alert in body["alerts"]]
    assert [a["attributes"].get("ml.feature.name") for a in posted] == ["age", None]
    assert all(a["event"] == "ml.drift.alert" for a in posted)


def test_label_names_are_sanitised_as_prometheus_wants() -> None:
    assert label_name("ml.model.name") == "ml_model_name"
    assert label_name("2xx-rate") == "_2xx_rate"
