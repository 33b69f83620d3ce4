"""Data for the README's report screenshot: the demo's kind of churn features, three shifted.

    python docs/report_example.py /tmp/example
    driftline compare /tmp/example/train.parquet /tmp/example/live.parquet --html report.html
    chromium --headless --no-sandbox --screenshot=docs/report.png --window-size=1200,1640 \\
        file://$PWD/report.html
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 7
TRAIN_ROWS = 5000
LIVE_ROWS = 3000
PLANS = ["basic", "pro", "team", "enterprise"]


def frame(rng: np.random.Generator, rows: int, shifted: bool) -> pd.DataFrame:
    """Six features; ``shifted`` moves monthly_spend, session_minutes and plan."""
    data = pd.DataFrame({
        "tenure_months": rng.gamma(2.0, 12.0, rows),
        "monthly_spend": rng.normal(70, 20, rows),
        "session_minutes": rng.lognormal(3, 0.5, rows),
        "age": rng.normal(45, 12, rows),
        "plan": rng.choice(PLANS, rows, p=[0.5, 0.3, 0.15, 0.05]),
        "region": rng.choice(["eu", "us", "apac"], rows),
    })
    if shifted:
        data["monthly_spend"] += 25
        data["session_minutes"] += 20
        data["plan"] = rng.choice(PLANS, rows, p=[0.25, 0.3, 0.3, 0.15])
    return data


def main(directory: str) -> None:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    frame(rng, TRAIN_ROWS, shifted=False).to_parquet(out / "train.parquet")
    frame(rng, LIVE_ROWS, shifted=True).to_parquet(out / "live.parquet")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
