"""The shipped Grafana dashboard and Prometheus alert rules (issue 18), proven on real parts.

``promtool`` checks the rules and runs their unit tests (each rule firing and quiet); then one
real ``driftline collector`` fed by an instrumented scikit-learn app (the OpenTelemetry SDK's
OTLP/HTTP exporters, two of three features shifted, labels that make the accuracy poor) is
scraped by one real Prometheus, and every PromQL expression of the dashboard (read from its
JSON, template variables substituted, so a new panel is tested without a new line here) and
of the rules runs against it and returns the series the data implies. The files are read
from the installed package (``driftline.collector_config.shipped``).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats
from sklearn.linear_model import LinearRegression, LogisticRegression

import driftline
from driftline import collector_config, profile, semconv
from driftline.collector_config import shipped
from tests._collector import (
    LOOPBACK,
    PROMETHEUS_EXPORTER,
    PROTOCOL_HTTP,
    Collector,
    running_collector,
)
from tests._otel import instrumented_app
from tests.conftest import PrometheusServer, require_binary, reserve_port, run_prometheus
from tests.exporters.prometheus.test_prometheus_promtool import PROMTOOL_MISSING

pytestmark = pytest.mark.integration

DASHBOARD = "grafana/driftline.json"
RULES = "prometheus/alerts.yaml"
RULE_TESTS = "prometheus/alerts.test.yaml"
PROMTOOL_TIMEOUT_S = 60.0
WAIT_S = 30.0

MODEL, VERSION = "churn", "1"
OTHER_MODEL = "fraud"  # sends too, so the dashboard's model filter has something to leave out
REGRESSOR = "price"  # a regressor with labelled values: MAE, RMSE and R² series
REGRESSION_ROWS = 100
REGRESSION_NOISE = 2.0  # the labels' distance from the predictions: R² < 1
FEATURES = ("f0", "f1", "f2")
SHIFTED = ("f1", "f2")
SHIFT = 3.0
BATCHES = 6
BATCH_ROWS = 300
# > the scrape interval (DEFAULT_SCRAPE_INTERVAL_S, 1 s): counters grow between scrapes, so
# rates are > 0 (at 0.5 s a loaded machine's scrapes could all see the final counts).
BATCH_PAUSE_S = 1.2
DEAD_EXPORTER = "otlphttp/down"  # a push exporter whose backend is down: its drops are real
# Dashboard variables as Grafana would expand them for this test's model.
# Two models chosen: Grafana expands a multi-value variable to a regex alternation.
VARIABLES = {"model": f"({MODEL}|{REGRESSOR})", "version": VERSION, "__rate_interval": "5m",
             "__interval": "15s", "__range": "1h", "datasource": "prometheus"}
# Expressions that are empty on healthy data: their metric names must still exist.
QUIET_PANELS = {"Models that stopped sending"}


@dataclass(frozen=True, slots=True)
class Live:
    """The running processor and the Prometheus that scrapes it."""

    prometheus: PrometheusServer
    collector: Collector
    exposition_endpoint: str


def _config(workdir: Path, dead_endpoint: str) -> dict[str, Any]:
    profiles = str(workdir / "profiles")
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_mib": 4096,
                               "spike_limit_mib": 512},
            "ml_drift": {"profiles": profiles, "window": "2s", "grace": "0.5s",
                         "min_rows": 50},
            "ml_performance": {"window": "2s", "grace": "0.5s", "min_labels": 5}},
        "exporters": {
            "prometheus": {"endpoint": f"{LOOPBACK}:0", "reference_profiles": profiles},
            # Nothing listens there; no retries, so every batch it gets is dropped at once.
            DEAD_EXPORTER: {"endpoint": f"http://{dead_endpoint}",
                            "retry_on_failure": {"enabled": False}},
            "file": {"path": str(workdir / "logs.jsonl"), "flush_interval": 0}},
        "service": {
            "pipelines": {
                "metrics": {"receivers": ["otlp"], "processors": ["memory_limiter", "ml_drift"],
                            "exporters": ["prometheus", DEAD_EXPORTER]},
                "logs": {"receivers": ["otlp"], "processors": ["ml_performance"],
                         "exporters": ["file"]}},
            "telemetry": {"metrics": {"level": "basic", "interval": "0.5s"}}},
    }


def _serve(endpoint: str, model: LogisticRegression, other: LogisticRegression,
           regressor: LinearRegression, rng: np.random.Generator) -> None:
    """The app: batches over a few seconds with SHIFTED moved by SHIFT, labels that are the
    opposite of the truth (accuracy near 0), one failing call, OTHER_MODEL once, and
    REGRESSOR with true values off its predictions by noise."""
    with instrumented_app(endpoint, "pod-1", 1e7) as (recorder, logs):
        other.predict_proba(rng.normal(size=(200, len(FEATURES))))
        with pytest.raises(ValueError):
            model.predict_proba(rng.normal(size=(3, len(FEATURES) + 1)))  # error.type
        # The unshifted column holds the normal's quantiles (shuffled): every batch, hence
        # every window, matches the reference, so its verdict is no drift in any window.
        quantiles = stats.norm.ppf((np.arange(BATCH_ROWS) + 0.5) / BATCH_ROWS)
        for _ in range(BATCHES):
            X = rng.normal(size=(BATCH_ROWS, len(FEATURES)))
            X[:, 0] = rng.permutation(quantiles)
            for name in SHIFTED:
                X[:, FEATURES.index(name)] += SHIFT
            model.predict_proba(X)
            ids = list(driftline.last_prediction_ids())
            assert recorder.force_flush()
            assert logs.force_flush()
            driftline.record_ground_truth(ids, 1 - (X[:, 0] > 0).astype(int),
                                          logger_provider=logs)
            values = regressor.predict(X[:REGRESSION_ROWS])
            ids = list(driftline.last_prediction_ids())
            assert recorder.force_flush()
            driftline.record_ground_truth(
                ids, values + rng.normal(0, REGRESSION_NOISE, len(values)),
                logger_provider=logs)
            time.sleep(BATCH_PAUSE_S)
        assert recorder.force_flush()
        assert logs.force_flush()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One processor and one Prometheus for the module, after the app has run."""
    workdir = tmp_path_factory.mktemp("grafana")
    rng = np.random.default_rng(18)
    X_train = rng.normal(size=(5000, len(FEATURES)))
    y_train = (X_train[:, 0] > 0).astype(int)
    model = driftline.register(LogisticRegression().fit(X_train, y_train), name=MODEL,
                               version=VERSION)
    other = driftline.register(LogisticRegression().fit(X_train, y_train), name=OTHER_MODEL,
                               version=VERSION)
    # With the labels and classes: a calibration, so ml_drift estimates the accuracy
    # (the "Estimated vs realised accuracy" panel).
    reference = profile.capture(X_train, model.predict(X_train),
                                probabilities=model.predict_proba(X_train), target=y_train,
                                classes=model.classes_, model=MODEL, version=VERSION)
    profile.save(reference, workdir / "profiles" / f"{MODEL}.json")
    regressor = driftline.register(
        LinearRegression().fit(X_train, X_train @ np.arange(1.0, len(FEATURES) + 1)),
        name=REGRESSOR, version=VERSION)
    # The dead exporter's port is held (refusing) for the module: nothing can listen there.
    with reserve_port() as dead, \
            running_collector(_config(workdir, dead.endpoint), workdir,
                              (PROTOCOL_HTTP,)) as collector:
        exposition = collector.endpoint_of(PROMETHEUS_EXPORTER)
        with run_prometheus([exposition], workdir) as server:
            # Scraping before the app sends: the counters' first samples precede their growth.
            server.wait_for("up == 1", WAIT_S)
            _serve(collector.endpoints[PROTOCOL_HTTP], model, other, regressor, rng)
            # Both models' series are in before any test reads the dashboard's filter.
            server.wait_for(f'ml_predict_rows_total{{ml_model_name="{OTHER_MODEL}"}}', WAIT_S)
            yield Live(server, collector, exposition)


# --- reading the shipped files ------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    return json.loads(shipped(DASHBOARD).read_text())


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _substitute(expr: str) -> str:
    """``expr`` with Grafana's ``$var``, ``${var}`` and ``[[var]]`` replaced; an unknown
    variable fails, so a new one must be given a value here."""
    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        assert name in VARIABLES, f"dashboard variable ${name} has no test value: {expr}"
        return VARIABLES[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", value, expr)


def _dashboard_targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, substituted expression) of every query of the dashboard."""
    targets = [(panel["title"], target["refId"], _substitute(target["expr"]))
               for panel in _panels(_dashboard()["panels"])
               for target in panel.get("targets", []) if target.get("expr")]
    assert len(targets) >= 20, targets  # the JSON was read, its panels were found
    return targets


def _rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(shipped(RULES).read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]
            if "alert" in rule}


_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# A brace block on its own (skipped) or a metric name with its optional matchers.
_SELECTOR = re.compile(r"(\{[^}]*\})|\b((?:ml|driftline)_[a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")


def _selectors(expr: str) -> set[str]:
    """The instant vector selectors (name and matchers) of an expression's metrics: label
    names live in braces and grouping clauses, which are not taken for metric names."""
    found = set()
    for match in _SELECTOR.finditer(_GROUPING.sub("", expr)):
        if match.group(2):
            found.add(match.group(2) + (match.group(3) or ""))
    return found


def _empty_selectors(server: PrometheusServer, expr: str) -> list[str]:
    """The selectors of ``expr`` that select no series now: a misspelt name, label or
    value, which an expression that is empty on healthy data would otherwise hide."""
    return [selector for selector in sorted(_selectors(expr))
            if not server.query(f"count({selector})")]


def test_dashboard_layout_and_data_source() -> None:
    """What Grafana needs to import the file as is: unique panel ids, panels inside the
    24-column grid without overlapping, and every query on the data source variable (so the
    importer picks the Prometheus, no uid is baked in)."""
    dashboard = _dashboard()
    panels = list(_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    names = [variable["name"] for variable in dashboard["templating"]["list"]]
    assert names[0] == "datasource" and {"model", "version"} <= set(names)


# --- promtool ------------------------------------------------------------------------------


def test_shipped_files_are_package_data() -> None:
    package = Path(collector_config.__file__).parent
    for name in (DASHBOARD, RULES, RULE_TESTS):
        path = shipped(name)
        assert path.is_file(), path
        assert path.parent.parent == package, (path, package)


def test_promtool_checks_the_rules() -> None:
    promtool = require_binary("promtool", PROMTOOL_MISSING)
    check = subprocess.run([promtool, "check", "rules", str(shipped(RULES))],
                           capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in check.stdout, check.stdout


def test_every_rule_says_what_to_do() -> None:
    for name, rule in _rules().items():
        annotations = rule.get("annotations", {})
        assert {"summary", "description", "runbook"} <= set(annotations), name
        assert all(annotations[key].strip() for key in ("summary", "description", "runbook"))
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, name


def test_promtool_unit_tests_fire_and_stay_quiet_for_every_rule() -> None:
    promtool = require_binary("promtool", PROMTOOL_MISSING)
    cases = yaml.safe_load(shipped(RULE_TESTS).read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for expectation in case.get("alert_rule_test", []):
            (firing if expectation.get("exp_alerts") else quiet).add(expectation["alertname"])
    assert firing == quiet == set(_rules()), (firing, quiet)

    run = subprocess.run([promtool, "test", "rules", str(shipped(RULE_TESTS))],
                         capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout, run.stdout


# --- the expressions on a live Prometheus ------------------------------------------------


def _labels_of(result: list[dict[str, Any]], label: str) -> set[str]:
    return {series["metric"].get(label, "") for series in result}


def _value(series: dict[str, Any]) -> float:
    return float(series["value"][1])


def _by_feature(result: list[dict[str, Any]]) -> dict[str, float]:
    return {series["metric"][semconv.ML_FEATURE_NAME.replace(".", "_")]: _value(series)
            for series in result}


def _has_finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(_value(series)) for series in result)


def _scrape(endpoint: str) -> str:
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as response:
        return response.read().decode()


def _drift_scores_exposed(live: Live) -> dict[str, float]:
    """The processor's own ml_drift_score per feature (verdict method), from /metrics."""
    scores: dict[str, float] = {}
    for line in _scrape(live.exposition_endpoint).splitlines():
        match = re.match(r'ml_drift_score\{.*ml_drift_method="wasserstein",'
                         r'ml_feature_name="([^"]+)".*\} (\S+)$', line)
        if match:
            scores[match.group(1)] = float(match.group(2))
    return scores


# What specific panels must show on this data, beyond the checks every panel gets.
PanelCheck = Callable[[list[dict[str, Any]]], bool]
PANEL_EXPECTATIONS: dict[tuple[str, str], PanelCheck] = {
    ("Drift score per feature", "A"): lambda r: (
        set(_by_feature(r)) >= set(FEATURES)
        and all(_by_feature(r)[f] > 0.1 for f in SHIFTED) and _by_feature(r)["f0"] < 0.1),
    ("Drift verdict per feature", "A"): lambda r: {
        f: v for f, v in _by_feature(r).items() if f in FEATURES} == {
            "f0": 0.0, "f1": 1.0, "f2": 1.0},
    ("Dataset drift share", "A"): lambda r: [_value(s) for s in r] == [2 / 3],
    ("Models", "A"): lambda r: [_value(s) for s in r] == [1.0],
    ("Performance over time", "A"): lambda r: len(r) == 1 and _value(r[0]) < 0.2,
    # The estimate trusts the calibration (the app's labels are wrong on purpose): high,
    # inside its band, for the classifier only; the realised accuracy beside it is low.
    ("Estimated vs realised accuracy", "A"): lambda r: (
        _labels_of(r, "ml_model_name") == {MODEL} and all(0.8 < _value(s) <= 1 for s in r)),
    ("Estimated vs realised accuracy", "D"): lambda r: all(_value(s) < 0.2 for s in r),
    ("Label lag", "A"): lambda r: _labels_of(r, "ml_model_name") == {MODEL, REGRESSOR}
    and all(_value(s) >= 0 for s in r),
    ("Per class, last window", "C"): lambda r: _labels_of(r, "ml_class") == {"0", "1"},
    ("Class mix", "A"): lambda r: (
        _labels_of(r, "ml_prediction_class") == {"0", "1"}
        and math.isclose(sum(_value(s) for s in r), 1.0)),
    ("Predictions against the training profile", "A"): lambda r: (
        {semconv.ML_PREDICTION_CLASS_METRIC, semconv.ML_PREDICTION_CONFIDENCE}
        <= _labels_of(r, "ml_feature_name")),
    ("Latency percentiles", "A"): lambda r: _has_finite(r) and all(
        _value(s) > 0 for s in r if math.isfinite(_value(s))),
    ("Throughput", "A"): lambda r: (
        _labels_of(r, "ml_model_name") == {MODEL, REGRESSOR} and all(_value(s) > 0 for s in r)),
    ("Regression errors", "A"): lambda r: (
        _labels_of(r, "ml_model_name") == {REGRESSOR} and all(_value(s) > 0 for s in r)),
    ("Regression errors", "B"): lambda r: (
        _labels_of(r, "ml_model_name") == {REGRESSOR} and all(_value(s) > 0 for s in r)),
    ("Regression R²", "A"): lambda r: (
        _labels_of(r, "ml_model_name") == {REGRESSOR} and all(_value(s) < 1 for s in r)),
    ("Failed calls", "A"): lambda r: _labels_of(r, "error_type") == {"ValueError"},
    ("Exporters", "B"): lambda r: (
        _labels_of(r, "driftline_component_id") == {DEAD_EXPORTER} and _value(r[0]) > 0),
}


def test_every_dashboard_expression_returns_the_models_series(live: Live) -> None:
    failures: list[str] = []
    for title, ref_id, expr in _dashboard_targets():
        expected = PANEL_EXPECTATIONS.get((title, ref_id))

        def good(result: list[dict[str, Any]], expected: PanelCheck | None = expected,
                 title: str = title) -> bool:
            if title in QUIET_PANELS:
                return True
            if not result or not _has_finite(result):
                return False
            # The model and version variables filter: no other model's series.
            models = _labels_of(result, "ml_model_name") - {""}
            versions = _labels_of(result, "ml_model_version") - {""}
            if models - {MODEL, REGRESSOR} or versions - {VERSION}:
                return False
            return expected is None or expected(result)

        try:
            live.prometheus.wait_for(expr, WAIT_S, predicate=good)
        except AssertionError as err:
            failures.append(f"{title} [{ref_id}]: {err}"[:2000])
        failures += [f"{title} [{ref_id}]: {selector} selects nothing"
                     for selector in _empty_selectors(live.prometheus, expr)]
    assert not failures, "\n".join(failures)
    # The expectations name panels that exist: renaming one cannot silently skip its check.
    assert set(PANEL_EXPECTATIONS) <= {(t, r) for t, r, _ in _dashboard_targets()}


def test_the_drift_panel_shows_the_processors_scores(live: Live) -> None:
    expr = next(e for t, _, e in _dashboard_targets() if t == "Drift score per feature")

    def same_as_processor(result: list[dict[str, Any]]) -> bool:
        # Equal once Prometheus has scraped the processor's last window (a window may close
        # between a scrape and this read, so it is polled).
        shown = {f: v for f, v in _by_feature(result).items() if f in FEATURES}
        exposed = {f: v for f, v in _drift_scores_exposed(live).items() if f in FEATURES}
        return set(shown) == set(FEATURES) and shown == exposed

    result = live.prometheus.wait_for(expr, WAIT_S, predicate=same_as_processor)
    assert all(_by_feature(result)[f] > 0.1 for f in SHIFTED)


def test_dashboard_variables_list_the_model(live: Live) -> None:
    variables = [v for v in _dashboard()["templating"]["list"] if v["type"] == "query"]
    assert {v["name"] for v in variables} >= {"model", "version"}
    values: dict[str, set[str]] = {}
    for variable in variables:
        definition = _substitute(variable["definition"])
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition)
        assert match, definition
        selector, label = match.groups()
        result = live.prometheus.wait_for(f"group by ({label}) ({selector})", WAIT_S)
        values[variable["name"]] = _labels_of(result, label)
    assert MODEL in values["model"]
    assert values["version"] == {VERSION}


# What each rule returns on this data: the label sets that must fire (by the given label), or
# nothing on healthy parts (its metric names must exist all the same).
RULE_EXPECTATIONS: dict[str, tuple[str, set[str]]] = {
    "MLDatasetDrift": ("ml_model_name", {MODEL}),
    "MLFeatureDriftPersistent": ("ml_feature_name", set(SHIFTED)),
    "MLPerformanceBelowThreshold": ("ml_model_name", {MODEL}),
    "MLModelStoppedSending": ("ml_model_name", set()),
    "DriftlineProcessorRefusingData": ("driftline_component_id", set()),
    "DriftlineExportFailing": ("driftline_component_id", {DEAD_EXPORTER}),
    "DriftlinePrometheusExporterDroppingPoints": ("reason", set()),
}


def test_every_rule_expression_returns_the_expected_series(live: Live) -> None:
    rules = _rules()
    assert set(RULE_EXPECTATIONS) == set(rules)
    failures: list[str] = []
    for name, rule in rules.items():
        label, expected = RULE_EXPECTATIONS[name]
        expr = rule["expr"]
        try:
            live.prometheus.wait_for(
                expr, WAIT_S, predicate=lambda r, e=expected, k=label: _labels_of(r, k) == e)
        except AssertionError as err:
            failures.append(f"{name}: {err}"[:2000])
        failures += [f"{name}: {selector} selects nothing"
                     for selector in _empty_selectors(live.prometheus, expr)]
    assert not failures, "\n".join(failures)
    share = live.prometheus.query(rules["MLDatasetDrift"]["expr"])
    assert [_value(s) for s in share] == [len(SHIFTED) / len(FEATURES)]


def test_selectors_are_found_in_expressions() -> None:
    """The extraction the checks above rely on: metrics with their matchers, not labels."""
    expr = ('sum by (ml_model_name) (rate(ml_predict_rows_total{ml_operation="x"}[5m])) '
            '/ ignoring (ml_class) group_left ml_window_rows and on (job) '
            'histogram_quantile(0.5, driftline_processor_queue_size {a="{"}) '
            '+ max_over_time(ml_drift_score[50m] offset 10m)')
    assert _selectors(expr) == {'ml_predict_rows_total{ml_operation="x"}', "ml_window_rows",
                                'driftline_processor_queue_size{a="{"}', "ml_drift_score"}
