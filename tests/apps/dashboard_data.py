"""The rows and model of tests/apps/dashboard_app.py, apart from the app so that the test
process can build the same reference profile without importing ``driftline.auto``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

MODEL_NAME = "dash"
MODEL_VERSION = "1"
FEATURES = ("age", "income", "tenure", "calls")
SHIFTED = "age"
SHIFT = 3.0  # reference standard deviations
TRAIN_ROWS = 5000
BATCH_ROWS = 50
BATCHES_PER_WINDOW = 8
SEED = 5


def rows(rng: np.random.Generator, n: int, shifted: bool = False
         ) -> tuple[pd.DataFrame, np.ndarray]:
    """Features (``age`` moved by ``SHIFT`` when ``shifted``) and their true class."""
    X = rng.normal(size=(n, len(FEATURES)))
    y = (X[:, 1] + 0.5 * X[:, 2] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    if shifted:
        X[:, FEATURES.index(SHIFTED)] += SHIFT
    return pd.DataFrame(X, columns=list(FEATURES)), y


def train() -> LogisticRegression:
    X, y = rows(np.random.default_rng(SEED), TRAIN_ROWS)
    return LogisticRegression().fit(X, y)
