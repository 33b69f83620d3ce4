"""The built-in dashboard as a browser shows it, against a live processor.

One processor (a ``driftline collector`` subprocess) runs ml_drift, ml_performance and the
``ml_dashboard`` exporter beside a file exporter; an app instrumented by
``import driftline.auto`` sends one window as trained and one with ``age`` shifted, over
real OTLP, with the labels of its predictions. One headless Chromium (Debian's
``chromium``, driven by playwright-core from tests/js) then loads every view. The numbers
the page shows must be the processor's own outputs as the file exporter wrote them, the
page must request nothing from elsewhere and log no error. Screenshots stay in a temporary
folder whose path the test prints.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftline import profile, semconv
from driftline.exporters.file.exporter import read_metrics
from tests._collector import LOOPBACK, PROTOCOL_GRPC, STOP_TIMEOUT_S, Collector, spawn
from tests.apps import dashboard_data as app
from tests.conftest import ReservedPort, missing_dependency, require_binary

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[2]
JS_DIR = TESTS / "js"
DRIVER = JS_DIR / "dashboard.js"
REPO = TESTS.parent
# Each phase of the app (8 batches of predictions, their records and labels, a flush) must
# end inside its window: measured 0.5-1.2 s at a load of 8 on 2 cores, so not 1 s windows.
WINDOW_S = 2
# Short: the app's metrics, records and labels of a phase are exported (force_flush) before
# the phase ends, inside its window.
GRACE_S = 0.5
APP_TIMEOUT_S = 60
RESULT_TIMEOUT_S = 20
BROWSER_TIMEOUT_S = 90
NS_PER_S = 1_000_000_000
DASHBOARD_LINE = re.compile(r"^exporter ml_dashboard listening on (\S+)$")
PHONE = {"width": 390, "height": 844}
DRIFT_THRESHOLD = 0.1  # ml_drift's default normed Wasserstein threshold
TOKEN = "dashboard-test-token"
WRONG_TOKEN = "not-the-token"
ESTIMATED_ACCURACY = semconv.ML_PERFORMANCE_ESTIMATED_PREFIX + "accuracy"
# The custom range the test types into the picker's datetime-local fields (minutes) reads
# them in this time zone: the browser runs in it.
BROWSER_TZ = "UTC"
MINUTE_S = 60


def _node() -> str:
    node = shutil.which("node")
    installed = (JS_DIR / "node_modules" / "playwright-core").is_dir()
    if node and installed:
        return node
    missing = ("node is not on PATH" if not node else
               "playwright-core is not installed: npm ci --prefix tests/js (make test does)")
    missing_dependency(missing)


def _dashboard_endpoint(collector: Collector) -> str:
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = collector.lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if match := DASHBOARD_LINE.match(line.rstrip("\n")):
            return match.group(1)
    raise AssertionError(f"no ml_dashboard endpoint printed; log:\n{collector.stderr()}")


def _config(tmp: Path, grpc: str) -> dict[str, Any]:
    window, grace = f"{WINDOW_S}s", f"{GRACE_S}s"
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": grpc}}}},
        "processors": {
            "ml_drift": {"profiles": str(tmp / "profiles"), "window": window, "grace": grace,
                         "min_rows": 100},
            "ml_performance": {"window": window, "grace": grace, "min_labels": 10},
        },
        "extensions": {"bearertokenauth": {"token": TOKEN}},
        "exporters": {
            "file": {"path": str(tmp / "metrics.jsonl"), "flush_interval": 0},
            "file/logs": {"path": str(tmp / "logs.jsonl"), "flush_interval": 0},
            "ml_dashboard": {"endpoint": f"{LOOPBACK}:0", "window": window, "grace": grace,
                             "reference_profiles": str(tmp / "profiles"),
                             "history": {"path": str(tmp / "dashboard.sqlite")},
                             "auth": {"authenticator": "bearertokenauth"}},
        },
        "service": {"extensions": ["bearertokenauth"], "pipelines": {
            "metrics": {"receivers": ["otlp"], "processors": ["ml_drift"],
                        "exporters": ["file", "ml_dashboard"]},
            "logs": {"receivers": ["otlp"], "processors": ["ml_performance"],
                     "exporters": ["file/logs"]}},
            "telemetry": {"metrics": {"level": "none"}}},
    }


def _outputs(path: Path) -> dict[int, dict[str, Any]]:
    """The processor's gauges per window start: {metric: {(feature, method, class): value}}."""
    found: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return found
    for request in read_metrics(path):
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if not metric.HasField("gauge"):
                        continue
                    for point in metric.gauge.data_points:
                        attributes = {a.key: a.value.string_value for a in point.attributes}
                        value = (point.as_double if point.HasField("as_double")
                                 else point.as_int)
                        key = (attributes.get(semconv.ML_FEATURE_NAME, ""),
                               attributes.get(semconv.ML_DRIFT_METHOD, ""),
                               attributes.get(semconv.ML_PERFORMANCE_AVERAGE, ""))
                        found.setdefault(point.start_time_unix_nano, {}).setdefault(
                            metric.name, {})[key] = value
    return found


def _open(url: str, token: str | None = TOKEN) -> Any:
    """GET ``url`` from the dashboard's API with the bearer token (or none)."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    return urllib.request.urlopen(request, timeout=10)


def _await_history(endpoint: str, starts: list[int]) -> None:
    """Until the dashboard has written the app's side (a grace after each window's end) and
    the processors' side of every window."""
    query = (f"model={app.MODEL_NAME}&version={app.MODEL_VERSION}&operation=predict_proba"
             f"&from={min(starts) / 1e9 - 1}&to={time.time() + 60}")
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with _open(f"http://{endpoint}/api/windows?{query}") as response:
                stored = {int(w["id"]): w for w in json.load(response)["windows"]}
        except urllib.error.HTTPError:  # 404 until the model's first window is written
            stored = {}
        if all(s in stored and stored[s]["service"] and stored[s]["drift"]
               and stored[s]["performance"] and stored[s]["estimated"] for s in starts):
            return
        time.sleep(0.2)
    missing = {s: [part for part in ("service", "drift", "performance", "estimated")
                   if not stored.get(s, {}).get(part)] for s in starts}
    raise AssertionError(f"the dashboard did not write every part of windows {starts} in "
                         f"time; missing: {missing}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The processor after the app's two windows: its dashboard URL, its file outputs per
    window, and the app's windows [(start_ns, phase)]."""
    tmp = tmp_path_factory.mktemp("dashboard")
    X, y = app.rows(np.random.default_rng(app.SEED), app.TRAIN_ROWS)
    model = app.train()
    # With the labels and classes: the profile holds a calibration, so ml_drift estimates
    # each window's performance (docs/estimation.md) before ml_performance's labels join.
    reference = profile.capture(X, model.predict(X), probabilities=model.predict_proba(X),
                                target=y, classes=model.classes_,
                                model=app.MODEL_NAME, version=app.MODEL_VERSION)
    profile.save(reference, tmp / "profiles" / "dash.json")
    reserved = ReservedPort()  # held until the processor starts
    grpc = reserved.endpoint
    env = {**os.environ, "OTEL_SERVICE_NAME": "dash-app",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{grpc}",
           "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_LOGS_EXPORTER": "otlp",
           "OTEL_TRACES_EXPORTER": "none",
           "DRIFTLINE_PREDICTION_RECORDS_RATIO": "1",
           "DRIFTLINE_PREDICTION_RECORDS_PER_SECOND": "100000"}
    reserved.release()
    collector = spawn(_config(tmp, grpc), tmp)
    # The app starts with the processor: both spend seconds importing, and the app's first
    # export waits for its first window (the SDK's exporter retries until the port is up).
    app_process = subprocess.Popen(
        [sys.executable, "-m", "tests.apps.dashboard_app", str(WINDOW_S)],
        cwd=REPO if (REPO / "tests").is_dir() else Path.cwd(), env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    driver: subprocess.Popen[str] | None = None
    try:
        collector.wait_for((PROTOCOL_GRPC,))
        dashboard = _dashboard_endpoint(collector)
        # Chromium starts while the app sends its windows (mostly waiting for the clock) and
        # waits for the views on its stdin (the ``browser`` fixture sends them).
        shots = Path(tempfile.mkdtemp(prefix="driftline-dashboard-screenshots-"))
        driver = _launch(shots, tmp / "chromium-profile")
        out, err = app_process.communicate(timeout=APP_TIMEOUT_S)
        assert app_process.returncode == 0, err
        windows = [tuple(w) for w in json.loads(out.strip().splitlines()[-1])["windows"]]
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        outputs: dict[int, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            outputs = _outputs(tmp / "metrics.jsonl")
            if all(semconv.ML_DRIFT_DATASET_SHARE in outputs.get(s, {})
                   and semconv.ML_PERFORMANCE_ACCURACY in outputs.get(s, {})
                   and ESTIMATED_ACCURACY in outputs.get(s, {}) for s, _ in windows):
                break
            time.sleep(0.3)
        _await_history(dashboard, [start for start, _ in windows])
        yield {"url": f"http://{dashboard}/", "endpoint": dashboard, "outputs": outputs,
               "windows": windows, "driver": driver, "shots": shots}
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.communicate()
        if app_process.poll() is None:
            app_process.kill()
            app_process.wait()
        collector.process.send_signal(signal.SIGTERM)
        try:
            collector.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            collector.process.kill()
            collector.process.wait()


def _launch(shots: Path, profile_dir: Path) -> subprocess.Popen[str]:
    """The browser driver (tests/js/dashboard.js), launching Chromium at once."""
    chromium = require_binary("chromium", "needs the Debian package chromium "
                                          "(apt-get install chromium)")
    node = _node()
    return subprocess.Popen([node, str(DRIVER), chromium, str(shots), str(profile_dir)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=JS_DIR,
                            env={**os.environ, "TZ": BROWSER_TZ})


@pytest.fixture(scope="module")
def browser(served: dict[str, Any]) -> dict[str, Any]:
    """Every view loaded once in one headless Chromium page: what each shows, the requests
    made, the console errors. Screenshots go to a folder that outlives the test run."""
    shots = served["shots"]
    print(f"\ndashboard screenshots: {shots}")
    (shifted_start, _), = [w for w in served["windows"] if w[1] == "shifted"]
    model = f"model={app.MODEL_NAME}&version={app.MODEL_VERSION}&op=predict_proba"
    starts = sorted(start for start, _ in served["windows"])
    # The picker's fields hold minutes: a range around both windows, a minute either side.
    picked = (starts[0] // NS_PER_S // MINUTE_S * MINUTE_S - MINUTE_S,
              -(-(starts[-1] // NS_PER_S + WINDOW_S) // MINUTE_S) * MINUTE_S + MINUTE_S)
    shifted_s = shifted_start / NS_PER_S
    views = [
        # A wrong token first: the page says it was refused and shows no data; the next view
        # types the right one into the same dialog.
        {"name": "wrong-token", "hash": "view=overview&range=3600", "token": WRONG_TOKEN,
         "waitFor": "#login[open] #login-error:not([hidden])"},
        {"name": "overview", "token": TOKEN},
        {"name": "drift", "hash": f"view=model&{model}&tab=drift&window={shifted_start}"},
        {"name": "distributions", "hash": f"view=model&{model}&tab=distributions"
                                          f"&column={app.SHIFTED}&window={shifted_start}"},
        {"name": "performance", "hash": f"view=model&{model}&tab=performance"},
        {"name": "predictions", "hash": f"view=model&{model}&tab=predictions"},
        {"name": "service", "hash": f"view=model&{model}&tab=service"},
        # A shared link with a custom range around the shifted window alone...
        {"name": "range-link", "hash": f"view=model&{model}&tab=performance&range=custom"
                                       f"&from={shifted_s - 0.5}&to={shifted_s + 0.5}"},
        # ...then the picker widened to both windows, as a user types it.
        {"name": "range-picker", "steps": [
            {"select": "#range-preset", "value": "custom"},
            {"fill": "#range-from", "value": _minute(picked[0])},
            {"fill": "#range-to", "value": _minute(picked[1])},
            {"click": "#range-custom button"}]},
        {"name": "phone-overview", "hash": "view=overview&range=900", **PHONE},
        {"name": "phone-drift", "hash": f"view=model&{model}&tab=drift&range=900", **PHONE},
    ]
    driver = served["driver"]
    out, err = driver.communicate(json.dumps({"base": served["url"], "views": views}),
                                  timeout=BROWSER_TIMEOUT_S)
    assert driver.returncode == 0, err
    return {**json.loads(out), "shots": shots, "picked": picked}


def _minute(seconds: int) -> str:
    """A datetime-local field's value (minutes, in BROWSER_TZ = UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(seconds))


def test_every_view_loads_without_errors_or_outside_requests(served: dict[str, Any],
                                                            browser: dict[str, Any]) -> None:
    # Chromium logs each refused request (the wrong token's, on purpose) and nothing else.
    assert [e for e in browser["errors"] if "status of 401" not in e] == []
    origin = served["url"].rstrip("/")
    outside = [url for url in browser["requests"] if not url.startswith(origin + "/")]
    assert outside == []
    assert any(url.startswith(origin + "/api/windows?") for url in browser["requests"])
    assert origin + "/api/auth" in browser["requests"]  # asked before the token was typed
    assert any("/static/uPlot.iife.min.js" in url for url in browser["requests"])
    for name, view in browser["views"].items():
        assert view["error"] == [], name
        if name != "wrong-token":
            assert view["loginOpen"] is False, name
        assert (browser["shots"] / f"{name}.png").stat().st_size > 0
    # Readable on a phone: nothing wider than the screen (wide tables scroll in their card).
    assert browser["views"]["phone-overview"]["scrollWidth"] <= PHONE["width"]
    assert browser["views"]["phone-drift"]["scrollWidth"] <= PHONE["width"]


def test_drift_tab_shows_the_processors_scores_and_verdicts(served: dict[str, Any],
                                                            browser: dict[str, Any]) -> None:
    (shifted_start, _), = [w for w in served["windows"] if w[1] == "shifted"]
    gauges = served["outputs"][shifted_start]
    verdicts = gauges[semconv.ML_DRIFT_DETECTED]
    view = browser["views"]["drift"]
    assert view["driftWindow"] == str(shifted_start)
    shown = {row["data"]["column"]: row for row in view["drift"]}
    assert set(shown) == {feature for feature, _, _ in verdicts}
    for (feature, method, _), drifted in verdicts.items():
        row = shown[feature]["data"]
        assert row["method"] == method
        # The page holds the processor's double exactly (JavaScript prints the shortest
        # text that reads back as the same double, as Python's repr does).
        assert float(row["score"]) == gauges[semconv.ML_DRIFT_SCORE][(feature, method, "")]
        assert row["verdict"] == ("drift" if drifted else "ok")
        assert float(row["threshold"]) == gauges[semconv.ML_DRIFT_THRESHOLD_METRIC][
            (feature, method, "")]
    assert shown[app.SHIFTED]["data"]["verdict"] == "drift"
    # The other statistics of the window (asked for with detail=<window id>) are shown too.
    context = shown[app.SHIFTED]["cells"][5]
    for feature, method, _ in gauges[semconv.ML_DRIFT_SCORE]:
        if feature == app.SHIFTED and method != shown[feature]["data"]["method"]:
            assert f"{method} " in context
    assert float(shown[app.SHIFTED]["data"]["threshold"]) == DRIFT_THRESHOLD
    # Sorted by score, the shifted feature first among the features.
    features = [row["data"]["column"] for row in view["drift"]
                if row["data"]["column"] in app.FEATURES]
    assert features[0] == app.SHIFTED
    assert "scores" in view["charts"] and "share" in view["charts"]


def test_overview_lists_the_model_with_its_last_verdict(served: dict[str, Any],
                                                        browser: dict[str, Any]) -> None:
    last_start = max(start for start, _ in served["windows"])
    gauges = served["outputs"][last_start]
    [row] = browser["views"]["overview"]["models"]
    assert row["data"]["model"] == app.MODEL_NAME
    assert float(row["data"]["share"]) == gauges[semconv.ML_DRIFT_DATASET_SHARE][("", "", "")]
    drifted = sum(v for (f, _, _), v in gauges[semconv.ML_DRIFT_DETECTED].items()
                  if f in app.FEATURES)
    assert row["cells"][4].startswith(f"{drifted}/{len(app.FEATURES)} ")
    assert row["cells"][5] == f"{gauges[semconv.ML_WINDOW_ROWS][('', '', '')]:,}"
    assert "stopped sending" not in row["cells"][0]


def test_performance_tab_shows_each_windows_accuracy(served: dict[str, Any],
                                                     browser: dict[str, Any]) -> None:
    shown = {row["data"]["window"]: row for row in browser["views"]["performance"]["performance"]}
    for start, _ in served["windows"]:
        accuracy = served["outputs"][start][semconv.ML_PERFORMANCE_ACCURACY][("", "", "")]
        assert float(shown[str(start)]["data"]["accuracy"]) == accuracy
    classes = {row["data"]["class"] for row in browser["views"]["performance"]["classes"]}
    assert classes == {"0", "1"}


def test_distributions_predictions_and_service_tabs_draw(served: dict[str, Any],
                                                         browser: dict[str, Any]) -> None:
    distribution = browser["views"]["distributions"]["distribution"]
    assert distribution["column"] == app.SHIFTED
    assert distribution["bars"]["reference"] > 5 and distribution["bars"]["current"] > 5
    mix = browser["views"]["predictions"]["classMix"]
    assert {row["data"]["class"] for row in mix} == {"0", "1"}
    assert sum(float(row["data"]["share"]) for row in mix) == pytest.approx(1.0)
    assert {"confidence", "margin"} <= set(browser["views"]["predictions"]["charts"])
    last_start = max(start for start, _ in served["windows"])
    service = {row["cells"][0]: row["cells"][1]
               for row in browser["views"]["service"]["service"]}
    rows = served["outputs"][last_start][semconv.ML_WINDOW_ROWS][("", "", "")]
    assert service["rows"] == f"{rows:,}"
    assert {"latency", "throughput"} <= set(browser["views"]["service"]["charts"])


def test_api_answers_what_the_page_draws(served: dict[str, Any]) -> None:
    (shifted_start, _), = [w for w in served["windows"] if w[1] == "shifted"]
    base = f"http://{served['endpoint']}/api/"
    query = f"model={app.MODEL_NAME}&version={app.MODEL_VERSION}&operation=predict_proba"
    with _open(f"{base}windows?{query}") as response:
        windows = {w["id"]: w for w in json.load(response)["windows"]}
    drift = windows[str(shifted_start)]["drift"]["columns"][app.SHIFTED]
    # The positive class (the binary ROC AUC's), beside which the page sets the estimates.
    assert windows[str(shifted_start)]["performance"]["positive"] == "1"
    gauges = served["outputs"][shifted_start]
    assert drift[1] == gauges[semconv.ML_DRIFT_SCORE][(app.SHIFTED, drift[0], "")]
    with _open(f"{base}distributions?{query}&window={shifted_start}"
               f"&column={app.SHIFTED}") as response:
        columns = json.load(response)["columns"]
    age = columns[app.SHIFTED]
    edges = np.array(age["edges"])
    # Densities integrate to the share of rows drawn (most of them: the page clips the
    # 0.5 % tails); the current side sits about SHIFT standard deviations right.
    for side in ("reference", "current"):
        assert float(np.sum(np.array(age[side]) * np.diff(edges))) == pytest.approx(1, abs=0.02)
    # The API is behind bearertokenauth here: the page got in with the token it asked for.
    with pytest.raises(urllib.error.HTTPError) as refused:
        _open(f"{base}windows?{query}", token=None)
    assert refused.value.code == 401
    # A categorical column (the predicted class): reference and current shares per class.
    with _open(f"{base}distributions?{query}&window={shifted_start}") as response:
        classes = json.load(response)["columns"][semconv.PROFILE_COLUMN_PREDICTION_CLASS]
    assert classes["kind"] == "categorical"
    assert {name for name, _, _ in classes["categories"]} == {"0", "1"}
    for side in (1, 2):
        assert sum(row[side] for row in classes["categories"]) == pytest.approx(1.0)
    centre = (edges[:-1] + edges[1:]) / 2
    mean_of = {side: float(np.sum(centre * np.array(age[side]) * np.diff(edges)))
               for side in ("reference", "current")}
    assert mean_of["current"] - mean_of["reference"] == pytest.approx(app.SHIFT, abs=0.3)


def test_performance_tab_shows_estimated_beside_realised_and_label_lag(
        served: dict[str, Any], browser: dict[str, Any]) -> None:
    """ml_drift's estimate (from the profile's calibration) and ml_performance's realised
    metrics and label lag of the same window sit in the same row, as the processor sent
    them."""
    view = browser["views"]["performance"]
    shown = {row["data"]["window"]: row["data"] for row in view["performance"]}
    for start, _ in served["windows"]:
        gauges = served["outputs"][start]
        row = shown[str(start)]
        for suffix, key in (("", "estimatedAccuracy"),
                            (semconv.ML_PERFORMANCE_LOWER_SUFFIX, "estimatedAccuracyLower"),
                            (semconv.ML_PERFORMANCE_UPPER_SUFFIX, "estimatedAccuracyUpper")):
            assert float(row[key]) == gauges[ESTIMATED_ACCURACY + suffix][("", "", "")]
        assert float(row["accuracy"]) == gauges[semconv.ML_PERFORMANCE_ACCURACY][("", "", "")]
        assert float(row["lag"]) == gauges[semconv.ML_PERFORMANCE_LABELS_LAG][("", "", "")]
        # A window is evaluated only after its end and the grace.
        assert float(row["lag"]) >= GRACE_S
        assert float(row["estimatedAccuracyLower"]) <= float(row["estimatedAccuracy"]) \
            <= float(row["estimatedAccuracyUpper"])
    # A binary model: precision, recall, F1 and ROC AUC estimated too, each its own chart.
    assert {"performance", "labels", "lag"} | {
        f"estimated-{m}" for m in ("accuracy", "precision", "recall", "f1", "roc_auc")
    } <= set(view["charts"])


def test_a_wrong_token_is_said_and_shows_no_data(browser: dict[str, Any]) -> None:
    view = browser["views"]["wrong-token"]
    assert view["loginOpen"] is True
    assert "refused" in view["loginError"] and "401" in view["loginError"]
    assert view["models"] == [] and view["mainText"] == ""
    # The right token, typed into the same dialog, opens the data (the overview view).
    assert len(browser["views"]["overview"]["models"]) == 1


def test_time_range_picker_changes_the_windows_and_the_url(served: dict[str, Any],
                                                            browser: dict[str, Any]) -> None:
    (shifted_start, _), = [w for w in served["windows"] if w[1] == "shifted"]
    linked = browser["views"]["range-link"]
    assert [row["data"]["window"] for row in linked["performance"]] == [str(shifted_start)]
    picked = browser["views"]["range-picker"]
    state = dict(urllib.parse.parse_qsl(picked["hash"].lstrip("#")))
    assert state["range"] == "custom"
    assert (float(state["from"]), float(state["to"])) == tuple(browser["picked"])
    assert state["tab"] == "performance" and state["model"] == app.MODEL_NAME
    assert sorted(row["data"]["window"] for row in picked["performance"]) == sorted(
        str(start) for start, _ in served["windows"])
