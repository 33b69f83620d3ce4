"""`driftline demo`, what `make demo` runs, passes end to end on this machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DEMO_TIMEOUT_S = 120


@pytest.mark.integration
def test_demo_flags_exactly_the_shifted_features(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "driftline.cli", "demo", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=DEMO_TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = [line for line in result.stdout.splitlines() if line.startswith("window ")
                and "drifted features" in line]
    assert len(verdicts) == 4
    assert all(line.endswith("as expected") for line in verdicts), verdicts
    assert "drifted features none" in verdicts[0] and "drifted features none" in verdicts[1]
    for line in verdicts[2:]:
        assert "['monthly_spend', 'session_minutes', 'support_calls']" in line
    assert (tmp_path / "output" / "metrics.jsonl").stat().st_size > 0
    assert (tmp_path / "profiles" / "churn.profile.json").exists()
    assert "ml_drift_score{" in result.stdout  # scraped from the live Prometheus endpoint
