"""`driftline demo`, what `make demo` runs, passes end to end on this machine and leaves the
user somewhere: a processor still up with --keep-running, and a collector command that runs
as printed from where the user stands."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from driftline import demo
from tests._collector import LISTENING

DEMO_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30
SHIFTED = "['age', 'monthly_spend', 'session_minutes', 'support_calls']"
DRIFTLINE = Path(sys.executable).with_name("driftline")
KEEPS_RUNNING = re.compile(r"Prometheus on (http://\S+/metrics), the dashboard on (http://\S+/)\. "
                           r"Press Ctrl-C to stop it\.$")
DASHBOARD_TRIES = 10
SHIFTED_FEATURES = {"age", "monthly_spend", "session_minutes", "support_calls"}


def _read_until_running(process: subprocess.Popen[str]) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if KEEPS_RUNNING.search(lines[-1]) or time.monotonic() > deadline:
            break
    return lines


@pytest.mark.integration
def test_demo_flags_the_shifted_features_and_keeps_running(tmp_path: Path) -> None:
    # Run from a folder holding a `driftline/` package, as `make demo` runs from the checkout:
    # the demo's processor must still be the installed one.
    (tmp_path / "driftline").mkdir()
    (tmp_path / "driftline" / "__init__.py").write_text("raise ImportError('not this one')\n")
    process = subprocess.Popen(
        [str(DRIFTLINE), "demo", "--workdir", "demo", "--keep-running"], cwd=tmp_path,
        # As after `make demo`: the virtualenv's bin folder is not on the user's PATH.
        env={**os.environ, "PATH": os.defpath},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = _read_until_running(process)
        running = KEEPS_RUNNING.search(lines[-1]) if lines else None
        assert running, "\n".join(lines)
        with urllib.request.urlopen(running.group(1), timeout=5) as response:
            assert b"ml_drift_score{" in response.read()  # still serving after the demo
        # The dashboard it printed shows the shifted features drifted in the last window.
        windows = _dashboard_verdicts(running.group(2))
        with urllib.request.urlopen(running.group(2), timeout=5) as response:
            assert b"/static/app.js" in response.read()
        process.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = process.communicate(timeout=STOP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, "\n".join(lines) + rest
    output = "\n".join(lines)
    assert len(windows) >= 4
    assert {c for c, v in windows[-1]["drift"]["columns"].items()
            if v[3] and not c.startswith("ml.")} == SHIFTED_FEATURES

    verdicts = [line for line in lines if line.startswith("window ") and "drifted features" in line]
    assert len(verdicts) == 4
    assert all(line.endswith("as expected") for line in verdicts), verdicts
    assert "drifted features none" in verdicts[0] and "drifted features none" in verdicts[1]
    assert all(SHIFTED in line for line in verdicts[2:])
    dataset = [line.strip() for line in lines if "dataset drift" in line]
    assert dataset[:2] == ["no dataset drift: 0 of 8 features drifted, a share of 0.00, "
                           "below the threshold 0.50"] * 2
    assert dataset[2:] == ["dataset drift DETECTED: 4 of 8 features drifted, a share of 0.50, "
                           "at or above the threshold 0.50"] * 2
    # Every window holds the rows the demo planned, however busy the machine: its verdicts'
    # false-alarm rate (test_the_demos_unshifted_windows_raise_no_false_alarm) depends on it.
    served = next(line for line in lines if line.startswith("rows in window")).split()[3:]
    assert served == [str(demo.BATCHES_PER_WINDOW * demo.BATCH_ROWS)] * 4, served
    assert (tmp_path / "demo" / "output" / "metrics.jsonl").stat().st_size > 0
    assert (tmp_path / "demo" / "profiles" / "churn.profile.json").exists()
    assert "ml_drift_score{" in output  # scraped from the live Prometheus endpoint
    assert "stopping the processor" in rest

    printed = next(line.strip() for line in lines if " collector --config " in line)
    assert printed == f"{DRIFTLINE} collector --config demo/collector.yaml"
    _run_as_printed(printed, tmp_path)


def _dashboard_verdicts(url: str) -> list[dict]:
    """The demo's windows with a drift verdict, from the dashboard's API (it writes each
    verdict within a second of the file exporter, so a few tries)."""
    windows: list[dict] = []
    for _ in range(DASHBOARD_TRIES):
        with urllib.request.urlopen(f"{url}api/windows?model=churn&version=1"
                                    "&operation=predict_proba&from=0", timeout=5) as response:
            windows = [w for w in json.load(response)["windows"] if w["drift"]]
        if len(windows) >= 4:
            break
        time.sleep(0.5)
    return windows


def _run_as_printed(command: str, cwd: Path) -> None:
    """The printed command, from the folder the demo ran in, on ports the OS picks."""
    env = {**os.environ, "PATH": os.defpath,
           "DRIFTLINE_OTLP_GRPC_ENDPOINT": "127.0.0.1:0",
           "DRIFTLINE_OTLP_HTTP_ENDPOINT": "127.0.0.1:0",
           "DRIFTLINE_PROMETHEUS_ENDPOINT": "127.0.0.1:0",
           "DRIFTLINE_DASHBOARD_ENDPOINT": "127.0.0.1:0"}
    collector = subprocess.Popen(shlex.split(command), cwd=cwd, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        listening = []
        for line in collector.stdout:
            if LISTENING.match(line.rstrip("\n")):
                listening.append(line)
            if len(listening) == 2:
                break
        assert len(listening) == 2, collector.stderr.read() if collector.poll() else listening
    finally:
        collector.terminate()
        _, stderr = collector.communicate(timeout=STOP_TIMEOUT_S)
    assert collector.returncode == 0, stderr
    assert "1 reference profile(s) loaded" in stderr


FALSE_ALARM_WINDOWS = 100
NUMERIC_THRESHOLD = 0.1  # normed Wasserstein, the default for numeric columns (docs/telemetry.md)


def test_the_demos_unshifted_windows_raise_no_false_alarm() -> None:
    """The demo fails when an unshifted window drifts, so its rows per window must make a
    false alarm rare: measured on the exact statistic (SciPy) over 100 windows of the rows it
    serves, no window may hold a false alarm (0 of 300 when measured once; 100 here for
    time). At 512 rows per window, which a loaded machine served when the demo served for a
    fixed time, 23 % did."""
    train, live = demo._generate_rows(n_train=20_000, n_live=20_000)
    rows = demo.BATCHES_PER_WINDOW * demo.BATCH_ROWS
    rng = np.random.default_rng(7)
    numeric = [f for f in demo.FEATURES if f != "num_products"]  # integer codes 1..5
    reference = {f: train[f].to_numpy() for f in numeric}
    served = {f: live[f].to_numpy() for f in numeric}
    alarms = 0
    for _ in range(FALSE_ALARM_WINDOWS):
        sample = rng.integers(0, len(live), rows)
        alarms += any(
            wasserstein_distance(reference[f], served[f][sample]) / reference[f].std()
            >= NUMERIC_THRESHOLD for f in numeric)
    assert alarms == 0, f"{alarms} of {FALSE_ALARM_WINDOWS} unshifted windows had a false alarm"
