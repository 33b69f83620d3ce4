"""Data of the end-to-end test's model service, shared with the test (no instrumentation)."""

from __future__ import annotations

import numpy as np

SEED = 8
ROWS = 3000
FEATURES = 4
SHIFTED_FEATURE = 2
SHIFT_IN_STD = 2.0
MODEL_NAME = "fraud"
MODEL_VERSION = "2"


def training_rows() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    X = rng.normal(0, 1, (ROWS, FEATURES))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


def live_rows() -> np.ndarray:
    """Production rows: feature f2 moved by two standard deviations, the others as trained."""
    live = np.random.default_rng(SEED + 1).normal(0, 1, (ROWS, FEATURES))
    live[:, SHIFTED_FEATURE] += SHIFT_IN_STD
    return live
