"""``driftline demo``: the whole path on this machine, in about a minute.

Train a churn classifier on generated data, capture its reference profile, write a
processor config (the shipped ``default.yaml`` with the demo's folders filled in), start the
processor with it on 127.0.0.1, serve predictions through ``import driftline.auto`` in two
phases (as trained, then with half of the features shifted) and print the verdicts the
processor wrote, window by window, the dataset verdict in words. The config stays in the
work folder, so the collector command printed at the end runs from where the user stands.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from driftline import drift, semconv
from driftline.collector_config import shipped

MODEL_NAME = "churn"
MODEL_VERSION = "1"
FEATURES = ("tenure_months", "monthly_spend", "support_calls", "age", "num_products",
            "discount_rate", "late_payments", "session_minutes")
# Phase 2 moves these four features: (added, multiplied by). Each moves its distribution
# by more than one reference standard deviation; the other four stay as trained, so half
# of the features drift: the dataset verdict's default threshold.
SHIFTS = {"monthly_spend": (25.0, 1.0), "support_calls": (0.0, 2.5),
          "age": (15.0, 1.0), "session_minutes": (20.0, 1.0)}
WINDOW_S = 4
WINDOWS_PER_PHASE = 2
GRACE_S = 1
MIN_ROWS = 200
BATCH_ROWS = 64
# Each window serves the same number of rows whatever the machine's speed: at 2 048 rows a
# window of unshifted features raises no false alarm in 300 simulated windows (at 512 rows,
# which a loaded machine served before, 23 % of windows had one; docs/demo notes).
BATCHES_PER_WINDOW = 32
SERVING_S = 2.5  # the batches are spread over a window's first 2.5 s
SERVE_UNTIL_BEFORE_END_S = 0.6  # then the last export lands inside the window
EXPORT_INTERVAL_MS = 1000
# Every prediction is a record (about 1600 rows a second here), so every label joins.
PREDICTION_RECORDS_PER_SECOND = 5000
LABELS_TIMEOUT_S = 5.0
SEED = 42
RESULT_TIMEOUT_S = 30
CONFIG_FILE = "collector.yaml"
# The processor binds ports the OS picks (a port picked free here could be taken before it
# binds it) and prints where it listens; the demo reads that from its log.
ANY_PORT = "127.0.0.1:0"
GRPC_LISTENING = re.compile(r"^receiver \S+ listening on (\S+) \(OTLP/gRPC\)$", re.M)
PROMETHEUS_LISTENING = re.compile(r"^exporter prometheus listening on (\S+)$", re.M)
DASHBOARD_LISTENING = re.compile(r"^exporter ml_dashboard listening on (\S+)$", re.M)
PROCESSOR_START_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Endpoints:
    otlp_grpc: str
    prometheus: str
    dashboard: str
    profiles: Path
    output: Path
    config: Path


def run_demo(workdir: str, keep_running: bool = False) -> int:
    root = Path(workdir).resolve()
    endpoints = Endpoints(ANY_PORT, ANY_PORT, ANY_PORT, root / "profiles", root / "output",
                          root / CONFIG_FILE)
    for folder in (endpoints.profiles, endpoints.output):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in [*folder.glob("*.json*"), *folder.glob("*.sqlite*")]:
            stale.unlink()
    write_config(endpoints)

    print("1/4 training a churn classifier on generated data")
    train, live = _generate_rows(n_train=20_000, n_live=20_000)
    model = _train(train)

    print("2/4 capturing the reference profile")
    from driftline import profile

    features = train[list(FEATURES)]
    reference = profile.capture(features, model.predict(features),
                                probabilities=model.predict_proba(features),
                                model=MODEL_NAME, version=MODEL_VERSION)
    profile_path = endpoints.profiles / f"{MODEL_NAME}.profile.json"
    profile.save(reference, profile_path)
    print(f"    {profile_path} ({reference.row_count} rows, {len(reference.columns)} columns)")

    print(f"3/4 starting the processor with {_shown(endpoints.config, workdir)}")
    with _processor(endpoints) as (processor, endpoints):
        recorder = _instrument(endpoints)
        print(f"4/4 serving predictions: {WINDOWS_PER_PHASE} windows as trained, then "
              f"{WINDOWS_PER_PHASE} with {', '.join(SHIFTS)} shifted ({WINDOW_S}s windows)")
        windows = _serve(model, live, recorder)
        _flush_spans()
        verdicts = _await_verdicts(endpoints.output / "metrics.jsonl", windows, processor)
        scrape = _scrape(endpoints.prometheus)
        ok = _report(verdicts, windows)
        _print_where(endpoints, scrape, workdir, keep_running)
        if keep_running:
            _wait_for_interrupt(processor)
    return 0 if ok else 1


# --- the model --------------------------------------------------------------------------


def _generate_rows(n_train: int, n_live: int):
    import pandas as pd

    rng = np.random.default_rng(SEED)
    n = n_train + n_live
    frame = pd.DataFrame({
        "tenure_months": rng.gamma(2.0, 12.0, n),
        "monthly_spend": rng.normal(70, 20, n),
        "support_calls": rng.poisson(2.0, n).astype(float),
        "age": rng.normal(45, 12, n),
        "num_products": rng.integers(1, 6, n).astype(float),
        "discount_rate": rng.beta(2, 8, n),
        "late_payments": rng.poisson(0.5, n).astype(float),
        "session_minutes": rng.lognormal(3, 0.5, n),
    })
    risk = (0.04 * frame["support_calls"] * 10 - 0.03 * frame["tenure_months"]
            + 0.02 * (frame["monthly_spend"] - 70) + 0.5 * frame["late_payments"]
            - 0.01 * frame["session_minutes"])
    frame["churned"] = (risk + rng.normal(0, 1, n) > 0).astype(int)
    return frame.iloc[:n_train], frame.iloc[n_train:].reset_index(drop=True)


def _train(train):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    import driftline

    model = Pipeline([("scale", StandardScaler()),
                      ("forest", RandomForestClassifier(n_estimators=30, max_depth=8,
                                                        random_state=SEED, n_jobs=1))])
    model.fit(train[list(FEATURES)], train["churned"])
    return driftline.register(model, name=MODEL_NAME, version=MODEL_VERSION)


def _shifted(batch):
    batch = batch.copy()
    for column, (added, multiplied_by) in SHIFTS.items():
        batch[column] = batch[column] * multiplied_by + added
    return batch


# --- the processor and the app ------------------------------------------------------------


def write_config(endpoints: Endpoints) -> None:
    """The shipped default config with the demo's folders as absolute paths.

    The listening addresses keep their ``${env:...:-default}`` form: the demo sets them to
    ports the OS picks, and the user who runs the file afterwards gets the usual ones.
    """
    config = yaml.safe_load(shipped("default.yaml").read_text(encoding="utf-8"))
    drift_config = config["processors"]["ml_drift"]
    drift_config["profiles"] = str(endpoints.profiles)
    drift_config["checkpoint"]["path"] = str(endpoints.output / "ml_drift.sqlite")
    for exporter_id, name in (("file", "metrics.jsonl"), ("file/traces", "traces.jsonl")):
        config["exporters"][exporter_id]["path"] = str(endpoints.output / name)
    config["processors"]["ml_performance"]["store"]["path"] = str(
        endpoints.output / "predictions.sqlite")
    config["exporters"]["file/logs"]["path"] = str(endpoints.output / "logs.jsonl")
    dashboard = config["exporters"]["ml_dashboard"]
    dashboard["reference_profiles"] = str(endpoints.profiles)
    dashboard["history"]["path"] = str(endpoints.output / "dashboard.sqlite")
    header = ("# Written by `driftline demo`: the shipped default.yaml with this demo's\n"
              "# profiles and output folders. Run it: driftline collector --config FILE\n")
    endpoints.config.write_text(header + yaml.safe_dump(config, sort_keys=False),
                                encoding="utf-8")


@contextlib.contextmanager
def _processor(endpoints: Endpoints) -> Iterator[tuple[subprocess.Popen[str], Endpoints]]:
    """The running processor, and ``endpoints`` with the ports it bound."""
    env = {**os.environ,
           "DRIFTLINE_OTLP_GRPC_ENDPOINT": endpoints.otlp_grpc,
           "DRIFTLINE_OTLP_HTTP_ENDPOINT": ANY_PORT,
           "DRIFTLINE_PROMETHEUS_ENDPOINT": endpoints.prometheus,
           "DRIFTLINE_DASHBOARD_ENDPOINT": endpoints.dashboard,
           "DRIFTLINE_WINDOW": f"{WINDOW_S}s",
           "DRIFTLINE_GRACE": f"{GRACE_S}s",
           "DRIFTLINE_MIN_ROWS": str(MIN_ROWS)}
    log = (endpoints.output / "processor.log").open("w")
    process = subprocess.Popen(
        # -P: the folder the user stands in is not put on sys.path, so a `driftline/` there
        # (a checkout, for `make demo`) cannot stand in for the installed package.
        [sys.executable, "-P", "-m", "driftline", "collector", "--config", str(endpoints.config)],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        endpoints = _listening(endpoints, process)
        print(f"    OTLP/gRPC on {endpoints.otlp_grpc}, Prometheus on "
              f"http://{endpoints.prometheus}/metrics (pid {process.pid})")
        print(f"    dashboard: http://{endpoints.dashboard}/")
        yield process, endpoints
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _instrument(endpoints: Endpoints):
    """What a service does with one line: ``import driftline.auto``, configured by OTEL_*."""
    os.environ.update({
        "OTEL_SERVICE_NAME": "churn-demo",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{endpoints.otlp_grpc}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_METRIC_EXPORT_INTERVAL": str(EXPORT_INTERVAL_MS),
        # ml.prediction records, so labels sent later are joined (ml_performance).
        "OTEL_LOGS_EXPORTER": "otlp",
        "DRIFTLINE_PREDICTION_RECORDS_RATIO": "1",
        "DRIFTLINE_PREDICTION_RECORDS_PER_SECOND": str(PREDICTION_RECORDS_PER_SECOND),
    })
    importlib.import_module("driftline.auto")
    from driftline.instrumentation.sklearn import SklearnInstrumentor

    return SklearnInstrumentor().recorder  # the instrumentor is a singleton


def _flush_spans() -> None:
    """Send the spans still batched in the app before the processor goes away."""
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush()


def _serve(model, live, recorder) -> list[tuple[int, str]]:
    """Serve each window from its start to shortly before its end, and have the labels of
    its predictions sent beside (a label feed of its own: sending them must not delay the
    next window's serving, or its rows would land in the window after); returns
    (start_ns, phase)."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(SEED + 1)
    windows = []
    phases = ["as trained"] * WINDOWS_PER_PHASE + ["shifted"] * WINDOWS_PER_PHASE
    start_s = (int(time.time()) // WINDOW_S + 1) * WINDOW_S
    _sleep_until(start_s + 0.05)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-labels") as label_feed:
        sent = []
        for phase in phases:
            ids, labels = _serve_window(model, live, rng, phase, start_s)
            recorder.force_flush()  # lands inside this window
            sent.append(label_feed.submit(_send_labels, ids, labels))
            windows.append((start_s * 10**9, phase))
            print(f"    window {time.strftime('%H:%M:%S', time.localtime(start_s))} served "
                  f"({phase})")
            start_s += WINDOW_S
            _sleep_until(start_s + 0.05)
        for sending in sent:
            sending.result()  # an unexpected failure of the label feed is the demo's
    return windows


def _serve_window(model, live, rng, phase: str, start_s: int) -> tuple[list[str], list[int]]:
    """One window's batches, spread over its first ``SERVING_S``; their prediction IDs and
    true labels."""
    import driftline

    ids: list[str] = []
    labels: list[int] = []
    end_s = start_s + WINDOW_S
    pause_s = SERVING_S / BATCHES_PER_WINDOW
    for batch_index in range(BATCHES_PER_WINDOW):
        if time.time() >= end_s - SERVE_UNTIL_BEFORE_END_S:
            break
        rows = live.iloc[rng.integers(0, len(live), BATCH_ROWS)]
        batch = rows[list(FEATURES)]
        model.predict_proba(_shifted(batch) if phase == "shifted" else batch)
        ids.extend(driftline.last_prediction_ids())
        labels.extend(rows["churned"])
        _sleep_until(start_s + 0.05 + (batch_index + 1) * pause_s)
    return ids, labels


def _send_labels(ids: list[str], labels: list[int]) -> None:
    """The true outcomes of one window's predictions, as a label feed would send them."""
    import driftline

    try:
        driftline.record_ground_truth(ids, labels, model=MODEL_NAME, version=MODEL_VERSION,
                                      flush_timeout_s=LABELS_TIMEOUT_S)
    except driftline.GroundTruthNotDelivered as exc:  # the drift part goes on without
        print(f"    labels of a window not all delivered ({exc.delivered} of {len(ids)}): "
              f"{exc}")


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowVerdict:
    rows: int
    share: float | None
    dataset_drifted: bool | None
    scores: dict[tuple[str, str], tuple[float, bool]]  # (column, method) -> (score, drifted)


def _await_verdicts(path: Path, windows: list[tuple[int, str]],
                    processor: subprocess.Popen[str]) -> dict[int, WindowVerdict]:
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    verdicts: dict[int, WindowVerdict] = {}
    while time.monotonic() < deadline and processor.poll() is None:
        verdicts = _read_verdicts(path)
        if all(start in verdicts and verdicts[start].share is not None
               for start, _ in windows):
            break
        time.sleep(0.5)
    return verdicts


def _read_verdicts(path: Path) -> dict[int, WindowVerdict]:
    from driftline.exporters.file.exporter import read_metrics

    if not path.exists():
        return {}
    rows: dict[int, int] = {}
    shares: dict[int, float] = {}
    dataset: dict[int, bool] = {}
    scores: dict[int, dict[tuple[str, str], list[float]]] = {}
    for request in read_metrics(path):
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.gauge.data_points:
                        start = point.start_time_unix_nano
                        attributes = {a.key: a.value.string_value for a in point.attributes}
                        value = point.as_double if point.HasField("as_double") else point.as_int
                        key = (attributes.get(semconv.ML_FEATURE_NAME, ""),
                               attributes.get(semconv.ML_DRIFT_METHOD, ""))
                        if metric.name == semconv.ML_WINDOW_ROWS:
                            rows[start] = int(value)
                        elif metric.name == semconv.ML_DRIFT_DATASET_SHARE:
                            shares[start] = value
                        elif metric.name == semconv.ML_DRIFT_DATASET_DETECTED:
                            dataset[start] = bool(value)
                        elif metric.name == semconv.ML_DRIFT_SCORE:
                            scores.setdefault(start, {}).setdefault(key, [0.0, 0.0])[0] = value
                        elif metric.name == semconv.ML_DRIFT_DETECTED:
                            scores.setdefault(start, {}).setdefault(key, [0.0, 0.0])[1] = value
    return {start: WindowVerdict(count, shares.get(start), dataset.get(start),
                                 {k: (v[0], bool(v[1])) for k, v in scores.get(start, {}).items()})
            for start, count in rows.items()}


def _report(verdicts: dict[int, WindowVerdict], windows: list[tuple[int, str]]) -> bool:
    print()
    print("Drift verdicts per window (normed Wasserstein for numeric columns, "
          "Jensen-Shannon for the predicted class; * = drifted)")
    columns = [*FEATURES, semconv.PROFILE_COLUMN_PREDICTION_CLASS,
               semconv.PROFILE_COLUMN_PREDICTION_CONFIDENCE]
    header = f"{'column':<26}" + "".join(
        f"{time.strftime('%H:%M:%S', time.localtime(s / 1e9)):>12}" for s, _ in windows)
    print(header)
    print(f"{'':<26}" + "".join(f"{phase:>12}" for _, phase in windows))
    for column in columns:
        cells = []
        for start, _ in windows:
            verdict = verdicts.get(start)
            primary = _primary(verdict, column) if verdict else None
            cells.append(f"{'-':>12}" if primary is None
                         else f"{primary[0]:>11.3f}{'*' if primary[1] else ' '}")
        print(f"{column:<26}" + "".join(cells))
    print(f"{'rows in window':<26}" + "".join(
        f"{verdicts[s].rows if s in verdicts else '-':>12}" for s, _ in windows))
    print(f"{'drifted feature share':<26}" + "".join(
        f"{verdicts[s].share:>12.2f}" if s in verdicts and verdicts[s].share is not None
        else f"{'-':>12}" for s, _ in windows))
    print()
    ok = True
    for start, phase in windows:
        verdict = verdicts.get(start)
        if verdict is None or verdict.share is None:
            print(f"MISSING: no verdict for the window starting {start}")
            ok = False
            continue
        drifted = sorted(c for c in FEATURES if (_primary(verdict, c) or (0, False))[1])
        expected = sorted(SHIFTS) if phase == "shifted" else []
        status = "as expected" if drifted == expected else f"UNEXPECTED (wanted {expected})"
        print(f"window {time.strftime('%H:%M:%S', time.localtime(start / 1e9))} ({phase}): "
              f"drifted features {drifted or 'none'} - {status}")
        print(f"    {_dataset_words(verdict, len(drifted))}")
        ok &= drifted == expected and verdict.dataset_drifted == (phase == "shifted")
    return ok


def _dataset_words(verdict: WindowVerdict, drifted: int) -> str:
    """The dataset verdict as a sentence: which way, and the share against its threshold."""
    threshold = drift.DEFAULT_DATASET_DRIFT_SHARE
    if verdict.dataset_drifted:
        return (f"dataset drift DETECTED: {drifted} of {len(FEATURES)} features drifted, a "
                f"share of {verdict.share:.2f}, at or above the threshold {threshold:.2f}")
    return (f"no dataset drift: {drifted} of {len(FEATURES)} features drifted, a share of "
            f"{verdict.share:.2f}, below the threshold {threshold:.2f}")


def _primary(verdict: WindowVerdict, column: str) -> tuple[float, bool] | None:
    for method in (semconv.DRIFT_METHOD_WASSERSTEIN, semconv.DRIFT_METHOD_JENSENSHANNON):
        if (column, method) in verdict.scores:
            return verdict.scores[(column, method)]
    return None


def _scrape(endpoint: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError as exc:
        return [f"(could not scrape: {exc})"]
    return [line for line in text.splitlines()
            if line.startswith("ml_drift_score{") and "wasserstein" in line
            and any(f'ml_feature_name="{feature}"' in line for feature in SHIFTS)]


def _print_where(endpoints: Endpoints, scrape: list[str], workdir: str,
                 keep_running: bool) -> None:
    print()
    when = "" if keep_running else " (while the processor ran)"
    print(f"Dashboard{when}: http://{endpoints.dashboard}/")
    print(f"Prometheus endpoint{when}: http://{endpoints.prometheus}/metrics")
    for line in scrape:
        print(f"    {line}")
    print(f"OTLP JSON files: {endpoints.output / 'metrics.jsonl'} and "
          f"{endpoints.output / 'traces.jsonl'}")
    print(f"Reference profile: {endpoints.profiles / (MODEL_NAME + '.profile.json')}")
    print(f"Processor log: {endpoints.output / 'processor.log'}")
    print("Run the processor yourself (OTLP on 127.0.0.1:4317 and :4318, Prometheus on :9464, "
          "the dashboard on http://127.0.0.1:8050/)"
          + (", once this one is stopped:" if keep_running else ":"))
    print(f"    {_command()} collector --config {_shown(endpoints.config, workdir)}")
    if keep_running:
        print(f"The demo's processor keeps running: OTLP/gRPC on {endpoints.otlp_grpc}, "
              f"Prometheus on http://{endpoints.prometheus}/metrics, the dashboard on "
              f"http://{endpoints.dashboard}/. Press Ctrl-C to stop it.", flush=True)


def _wait_for_interrupt(processor: subprocess.Popen[str]) -> None:
    try:
        processor.wait()
    except KeyboardInterrupt:
        print("\nstopping the processor")


# --- small helpers --------------------------------------------------------------------------


def _command() -> str:
    """``driftline`` when that finds this install, else the script's path (``make demo``
    runs it from ``.venv/bin``, which the user's shell may not have on its PATH)."""
    script = Path(sys.executable).with_name("driftline")
    found = shutil.which("driftline")
    if found is not None and Path(found).resolve() == script.resolve():
        return "driftline"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def _shown(path: Path, workdir: str) -> str:
    """``path`` as the user named its folder: relative to where they stand if they did."""
    return str(path if Path(workdir).is_absolute() else Path(workdir) / path.name)


def _listening(endpoints: Endpoints, process: subprocess.Popen[str]) -> Endpoints:
    """``endpoints`` with the OTLP/gRPC, Prometheus and dashboard addresses the processor
    printed."""
    log = endpoints.output / "processor.log"
    deadline = time.monotonic() + PROCESSOR_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the processor exited with {process.returncode}; see {log}")
        text = log.read_text(encoding="utf-8", errors="replace")
        grpc, prometheus = GRPC_LISTENING.search(text), PROMETHEUS_LISTENING.search(text)
        dashboard = DASHBOARD_LISTENING.search(text)
        if grpc and prometheus and dashboard:
            return replace(endpoints, otlp_grpc=grpc.group(1), prometheus=prometheus.group(1),
                           dashboard=dashboard.group(1))
        time.sleep(0.1)
    raise RuntimeError(f"the processor did not say where it listens within "
                       f"{PROCESSOR_START_TIMEOUT_S}s; see {log}")


def _sleep_until(epoch_s: float) -> None:
    time.sleep(max(0.0, epoch_s - time.time()))
