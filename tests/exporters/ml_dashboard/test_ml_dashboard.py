"""The ``ml_dashboard`` exporter without a browser: its history survives a restart, keeps to
its retention and size bound, its API asks for the bearer token when ``auth`` is set, its
config errors name the YAML path, and its page ships in the installed package.

Each test runs the real component in process (a real SQLite file, a real HTTP server on a
free port) with a clock it sets; the metrics are the OTLP messages ml_drift and the app
send (built with the processors' own ``WindowGauges`` and the app-side helper of
tests/test_ml_drift.py).
"""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from driftline import semconv
from driftline.exporters.ml_dashboard.config import HistoryConfig, MlDashboardConfig
from driftline.exporters.ml_dashboard.exporter import STATIC_PACKAGE, MlDashboard
from driftline.processor.component import Host
from driftline.processor.component.auth import AuthConfig
from driftline.processor.component.otlp_build import WindowGauges
from driftline.processor.extensions.bearertokenauth import Factory as BearerFactory
from driftline.processor.service.config import ConfigError, parse_config
from tests.processor.ml_drift.test_ml_drift import MODEL, app_batch

WINDOW_NS = 60 * 10**9
DAY_NS = 24 * 3600 * 10**9
NOW_NS = 1_800_000_000 * 10**9 // WINDOW_NS * WINDOW_NS  # a window boundary
QUERY = "model=churn&version=3&operation=predict"
TOKEN = "s3cret-token"
STATIC_FILES = {"index.html", "app.js", "style.css", "uPlot.iife.min.js", "uPlot.min.css",
                "uPlot.LICENSE.txt"}


class Clock:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def _dashboard(tmp_path: Path, clock: Clock, **config: Any) -> MlDashboard:
    history = config.pop("history", HistoryConfig(path=str(tmp_path / "history.sqlite")))
    dashboard = MlDashboard(MlDashboardConfig(endpoint="127.0.0.1:0", history=history, **config),
                            clock_ns=clock)
    return dashboard


def _verdicts(start_ns: int, scores: dict[str, float], *, rows: int = 500,
              threshold: float = 0.1) -> list[Any]:
    """ml_drift's gauges of one window: a normed Wasserstein score per feature."""
    model = [(k, v) for k, v in MODEL.items()]
    gauges = WindowGauges(start_ns, start_ns + WINDOW_NS, model)
    gauges.add(semconv.ML_WINDOW_ROWS, semconv.UNIT_ROWS, rows)
    drifted = 0
    for feature, score in scores.items():
        extra = [(semconv.ML_FEATURE_NAME, feature),
                 (semconv.ML_DRIFT_METHOD, semconv.DRIFT_METHOD_WASSERSTEIN)]
        gauges.add(semconv.ML_DRIFT_SCORE, semconv.UNIT_DIMENSIONLESS, score, extra)
        gauges.add(semconv.ML_DRIFT_DETECTED, semconv.UNIT_DIMENSIONLESS,
                   int(score >= threshold), extra)
        gauges.add(semconv.ML_DRIFT_THRESHOLD_METRIC, semconv.UNIT_DIMENSIONLESS, threshold,
                   extra)
        drifted += score >= threshold
    gauges.add(semconv.ML_DRIFT_DATASET_SHARE, semconv.UNIT_DIMENSIONLESS,
               drifted / len(scores))
    return [gauges.resource_metrics(semconv.PROCESSOR_SCOPE)]


def _get(dashboard: MlDashboard, path: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{dashboard.port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _windows(dashboard: MlDashboard, from_ns: int, to_ns: int) -> dict[int, dict[str, Any]]:
    status, body = _get(dashboard, f"/api/windows?{QUERY}&from={from_ns / 1e9}"
                                   f"&to={to_ns / 1e9}")
    assert status == 200, body
    return {int(w["id"]): w for w in json.loads(body)["windows"]}


def test_history_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock(NOW_NS)
    rng = np.random.default_rng(3)
    age = rng.normal(40, 10, 700)
    start_ns = NOW_NS - 2 * WINDOW_NS
    dashboard = _dashboard(tmp_path, clock)
    dashboard.start()
    try:
        # The app's rows of one window in two exports, then ml_drift's verdict on it.
        dashboard.consume_metrics(app_batch(start_ns + 10**9, {"age": age[:300]},
                                            classes={"0": 200, "1": 100}))
        dashboard.consume_metrics(app_batch(start_ns + 30 * 10**9, {"age": age[300:]},
                                            classes={"0": 250, "1": 150}))
        dashboard.consume_metrics(_verdicts(start_ns, {"age": 0.4, "plan": 0.02}, rows=700))
    finally:
        dashboard.shutdown()  # writes the app's window although its grace has not passed
    restarted = _dashboard(tmp_path, clock)
    restarted.start()
    try:
        [window] = _windows(restarted, start_ns - WINDOW_NS, NOW_NS).values()
        status, body = _get(restarted, f"/api/distributions?{QUERY}&window={start_ns}")
        models = json.loads(_get(restarted, "/api/models")[1])["models"]
        # from=0 (all of the history) is valid JSON too: "from" was written as Python's None.
        everything = json.loads(_get(restarted, f"/api/windows?{QUERY}&from=0")[1])
    finally:
        restarted.shutdown()
    assert window["rows"] == 700 and window["service"]["rows"] == 700
    assert window["share"] == 0.5 and window["drifted"] == 1 and window["features"] == 2
    assert window["drift"]["columns"]["age"] == ["wasserstein", 0.4, 0.1, 1]
    assert window["predictions"]["classes"] == {"0": 450, "1": 250}
    assert status == 200
    drawn = json.loads(body)["columns"]["age"]
    assert drawn["rows"] == 700 and drawn["reference"] is None  # no profile configured
    widths = np.diff(drawn["edges"])
    assert float(np.sum(np.array(drawn["current"]) * widths)) == pytest.approx(1, abs=0.02)
    [model] = models
    assert everything["from"] == 0 and [w["id"] for w in everything["windows"]] == [
        str(start_ns)]
    assert (model["name"], model["last_window"]["share"]) == ("churn", 0.5)
    assert model["trend"] == [[start_ns / 1e9, 0.5]]


def test_retention_deletes_windows_older_than_it(tmp_path: Path) -> None:
    clock = Clock(NOW_NS)
    dashboard = _dashboard(tmp_path, clock, history=HistoryConfig(
        path=str(tmp_path / "history.sqlite"), retention="720h"))
    dashboard.start()
    try:
        old, recent = NOW_NS - 31 * DAY_NS, NOW_NS - DAY_NS
        for start_ns in (old, recent):
            dashboard.consume_metrics(_verdicts(start_ns, {"age": 0.2}))
        dashboard.flush()
        assert set(_windows(dashboard, old - DAY_NS, NOW_NS)) == {old, recent}
        dashboard.prune()
        assert set(_windows(dashboard, old - DAY_NS, NOW_NS)) == {recent}
        assert dashboard.stats().windows_expired == 1
    finally:
        dashboard.shutdown()


def test_size_bound_deletes_the_oldest_windows_first(tmp_path: Path) -> None:
    clock = Clock(NOW_NS)
    path = tmp_path / "history.sqlite"
    dashboard = _dashboard(tmp_path, clock, history=HistoryConfig(path=str(path),
                                                                  max_megabytes=1))
    rng = np.random.default_rng(9)
    windows = 120
    first_ns = NOW_NS - windows * WINDOW_NS
    dashboard.start()
    try:
        for i in range(windows):
            start_ns = first_ns + i * WINDOW_NS
            # Long random class labels: about 10 KiB a window, little of it compressible.
            classes = {rng.bytes(24).hex(): int(rng.integers(1, 1000)) for _ in range(150)}
            dashboard.consume_metrics(app_batch(start_ns + 10**9, {"age": np.arange(50.0)},
                                                classes=classes))
            dashboard.consume_metrics(_verdicts(start_ns, {"age": 0.05}))
        clock.now_ns = NOW_NS + WINDOW_NS
        dashboard.flush()
        stored_before = dashboard.stats().windows_written
        dashboard.prune()
        kept = _windows(dashboard, first_ns, clock.now_ns)
        stats = dashboard.stats()
    finally:
        dashboard.shutdown()
    assert stored_before == 2 * windows  # each window: the verdicts and the app's side
    assert stats.windows_evicted > 0
    assert stats.history_bytes <= 1024 * 1024
    assert path.stat().st_size <= 1024 * 1024 + 64 * 1024  # a few free pages at most
    assert first_ns not in kept and first_ns + (windows - 1) * WINDOW_NS in kept
    assert len(kept) + stats.windows_evicted == windows
    assert min(kept) == first_ns + stats.windows_evicted * WINDOW_NS  # oldest went first


def test_api_asks_for_the_bearer_token_when_auth_is_set(tmp_path: Path) -> None:
    factory = BearerFactory()
    auth = factory.create(factory.CONFIG(token=TOKEN))
    auth.start()
    dashboard = _dashboard(tmp_path, Clock(NOW_NS),
                           auth=AuthConfig(authenticator="bearertokenauth"))
    dashboard.set_host(Host(extensions={"bearertokenauth": auth}))
    dashboard.start()
    try:
        missing = _get(dashboard, "/api/models")
        wrong = _get(dashboard, "/api/models", token="guess")
        right = _get(dashboard, "/api/models", token=TOKEN)
        page = _get(dashboard, "/")
        asked = _get(dashboard, "/api/auth")
        script = _get(dashboard, "/static/app.js")
    finally:
        dashboard.shutdown()
        auth.shutdown()
    assert (missing[0], wrong[0], right[0]) == (401, 401, 200)
    assert TOKEN.encode() not in missing[1] + wrong[1]
    assert json.loads(right[1])["models"] == []
    # The page and its files hold no data: they load, and the page asks for the token.
    assert page[0] == 200 and b"bearertokenauth" in page[1]
    assert script[0] == 200
    assert asked[0] == 200 and json.loads(asked[1]) == {"required": True}
    assert dashboard.stats().unauthenticated_requests == 2


def test_api_errors_say_what_to_send(tmp_path: Path) -> None:
    dashboard = _dashboard(tmp_path, Clock(NOW_NS))
    dashboard.start()
    try:
        no_model = _get(dashboard, "/api/windows")
        unknown = _get(dashboard, f"/api/windows?{QUERY}")
        bad_range = _get(dashboard, "/api/models?from=later")
        outside = _get(dashboard, "/static/../exporter.py")
        source = _get(dashboard, "/static/__init__.py")
        open_api = _get(dashboard, "/api/auth")
    finally:
        dashboard.shutdown()
    assert no_model[0] == 400 and "model: required" in json.loads(no_model[1])["error"]
    assert unknown[0] == 404 and "/api/models" in json.loads(unknown[1])["error"]
    assert bad_range[0] == 400 and "Unix seconds" in json.loads(bad_range[1])["error"]
    assert outside[0] == 404 and source[0] == 404
    assert json.loads(open_api[1]) == {"required": False}


def test_config_errors_name_the_yaml_path() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
            "exporters": {"ml_dashboard": {"endpoint": "nowhere", "window": "-1s",
                                           "history": {"max_megabytes": 0, "retention": "x"},
                                           "auth": {"authenticator": ""}}},
            "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                                  "exporters": ["ml_dashboard"]}}}})
    text = str(raised.value)
    for key in ("endpoint", "window", "history::max_megabytes", "history::retention",
                "auth::authenticator"):
        assert f"exporters::ml_dashboard::{key}:" in text, key


def test_cumulative_app_points_are_counted_not_windowed(tmp_path: Path) -> None:
    dashboard = _dashboard(tmp_path, Clock(NOW_NS))
    dashboard.consume_metrics(app_batch(
        NOW_NS - WINDOW_NS, {"age": np.arange(10.0)},
        temporality=AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE))
    assert dashboard.stats().cumulative_points == 2  # the histogram and the row count


def test_page_ships_in_the_package_and_loads_nothing_from_elsewhere() -> None:
    static = resources.files(STATIC_PACKAGE)
    assert {entry.name for entry in static.iterdir()} >= STATIC_FILES
    assert "MIT License" in static.joinpath("uPlot.LICENSE.txt").read_text()
    page = static.joinpath("index.html").read_text()
    assert set(re.findall(r'(?:src|href)="([^"]+)"', page)) == {
        "/static/uPlot.min.css", "/static/style.css", "/static/uPlot.iife.min.js",
        "/static/app.js", "data:,", "#view=overview"}
    for name in ("app.js", "style.css", "index.html"):
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)",
                             static.joinpath(name).read_text()), name


def test_a_model_silent_for_stale_after_is_listed_as_stopped(tmp_path: Path) -> None:
    clock = Clock(NOW_NS)
    dashboard = _dashboard(tmp_path, clock, stale_after="10m")
    dashboard.start()
    try:
        dashboard.consume_metrics(app_batch(NOW_NS - 10**9, {"age": np.arange(10.0)}))
        dashboard.flush()
        clock.now_ns = NOW_NS + 9 * WINDOW_NS
        [sending] = json.loads(_get(dashboard, "/api/models")[1])["models"]
        clock.now_ns = NOW_NS + 11 * WINDOW_NS
        [silent] = json.loads(_get(dashboard, "/api/models")[1])["models"]
    finally:
        dashboard.shutdown()
    assert (sending["stale"], silent["stale"]) == (False, True)
    assert silent["last_seen"] == NOW_NS / 1e9  # when its data arrived, by the clock


def _estimate(start_ns: int, value: float, lower: float, upper: float) -> list[Any]:
    """ml_drift's estimated accuracy of one window (no labels), with its band."""
    gauges = WindowGauges(start_ns, start_ns + WINDOW_NS, list(MODEL.items()))
    name = semconv.ML_PERFORMANCE_ESTIMATED_PREFIX + "accuracy"
    for suffix, number in (("", value), (semconv.ML_PERFORMANCE_LOWER_SUFFIX, lower),
                           (semconv.ML_PERFORMANCE_UPPER_SUFFIX, upper)):
        gauges.add(name + suffix, semconv.UNIT_DIMENSIONLESS, number)
    return [gauges.resource_metrics(semconv.PROCESSOR_SCOPE)]


def _realised(start_ns: int, accuracy: float, labels: int, lag_s: float) -> list[Any]:
    """ml_performance's gauges of one window once its labels joined."""
    gauges = WindowGauges(start_ns, start_ns + WINDOW_NS, list(MODEL.items()))
    gauges.add(semconv.ML_PERFORMANCE_ACCURACY, semconv.UNIT_DIMENSIONLESS, accuracy)
    gauges.add(semconv.ML_PERFORMANCE_LABELS, semconv.UNIT_LABELS, labels)
    gauges.add(semconv.ML_PERFORMANCE_LABELS_LAG, semconv.UNIT_SECONDS, lag_s)
    gauges.add(semconv.ML_PERFORMANCE_ROC_AUC, semconv.UNIT_DIMENSIONLESS, 0.9,
               [(semconv.ML_PERFORMANCE_AVERAGE, semconv.AVERAGE_BINARY),
                (semconv.ML_CLASS, "yes")])
    return [gauges.resource_metrics(semconv.PERFORMANCE_SCOPE)]


def test_estimate_stays_beside_the_realised_metrics_that_come_later(tmp_path: Path) -> None:
    clock = Clock(NOW_NS)
    start_ns = NOW_NS - 2 * WINDOW_NS
    dashboard = _dashboard(tmp_path, clock)
    dashboard.start()
    try:
        dashboard.consume_metrics(_estimate(start_ns, 0.87, 0.84, 0.9))
        dashboard.flush()
        # Labels of that window join an hour later: ml_performance's gauges of the same window.
        dashboard.consume_metrics(_realised(start_ns, 0.85, 640, 3600.5))
        dashboard.flush()
        [window] = _windows(dashboard, start_ns - WINDOW_NS, NOW_NS).values()
        status, body = _get(dashboard, f"/api/windows?{QUERY}&from={start_ns / 1e9 - 1}"
                                       "&parts=estimated")
    finally:
        dashboard.shutdown()
    assert window["estimated"] == {"accuracy": {"value": 0.87, "lower": 0.84, "upper": 0.9}}
    # The binary ROC AUC names the positive class, whose realised precision, recall and F1
    # the page sets beside the estimated ones (ml_drift estimates them of that class).
    assert window["performance"] == {"accuracy": 0.85, "labels": 640, "lag_s": 3600.5,
                                     "roc_auc": 0.9, "positive": "yes"}
    assert status == 200
    [alone] = json.loads(body)["windows"]
    assert "performance" not in alone and alone["estimated"]["accuracy"]["value"] == 0.87


def test_a_history_of_schema_1_is_migrated_and_keeps_its_windows(tmp_path: Path) -> None:
    """A history written before estimates were kept (no ``estimated`` column) opens, keeps
    its windows, and takes estimates from then on."""
    path = tmp_path / "history.sqlite"
    clock = Clock(NOW_NS)
    start_ns = NOW_NS - 2 * WINDOW_NS
    dashboard = _dashboard(tmp_path, clock)
    dashboard.start()
    try:
        dashboard.consume_metrics(_verdicts(start_ns, {"age": 0.4}))
    finally:
        dashboard.shutdown()
    with sqlite3.connect(path) as db:  # as schema 1 wrote it
        db.execute("ALTER TABLE windows DROP COLUMN estimated")
        db.execute("UPDATE meta SET value='1' WHERE key='schema'")
    db.close()
    restarted = _dashboard(tmp_path, clock)
    restarted.start()
    try:
        restarted.consume_metrics(_estimate(start_ns, 0.9, 0.88, 0.92))
        restarted.flush()
        [window] = _windows(restarted, start_ns - WINDOW_NS, NOW_NS).values()
    finally:
        restarted.shutdown()
    assert window["drift"]["columns"]["age"][1] == 0.4
    assert window["estimated"]["accuracy"]["value"] == 0.9
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("2",)
    db.close()
