"""A scoring service for the dashboard test: ``import driftline.auto``, one window as trained
then one with ``age`` shifted, the labels of every prediction sent right after it.

Run as ``python -m tests.apps.dashboard_app WINDOW_S`` with ``OTEL_*`` pointing at the
processor, ``DRIFTLINE_PREDICTION_RECORDS_RATIO=1`` and ``OTEL_LOGS_EXPORTER=otlp``; prints
``{"windows": [[start_ns, phase], ...]}``.
"""
# ruff: noqa: I001  (the instrumentation line stays first, as users are told to write it)

import driftline.auto  # the only instrumentation line

import json
import sys
import time

import numpy as np

import driftline
from driftline.instrumentation.sklearn import SklearnInstrumentor
from tests.apps.dashboard_data import (BATCH_ROWS, BATCHES_PER_WINDOW, MODEL_NAME, MODEL_VERSION,
                                       SEED, rows, train)


def main() -> None:
    window_s = float(sys.argv[1])
    model = driftline.register(train(), name=MODEL_NAME, version=MODEL_VERSION)
    recorder = SklearnInstrumentor().recorder
    rng = np.random.default_rng(SEED + 1)
    start_s = (time.time() // window_s + 1) * window_s
    windows = []
    for phase in ("as trained", "shifted"):
        time.sleep(max(0.0, start_s + 0.05 - time.time()))
        for _ in range(BATCHES_PER_WINDOW):
            X, y = rows(rng, BATCH_ROWS, shifted=phase == "shifted")
            model.predict_proba(X)
            driftline.record_ground_truth(list(driftline.last_prediction_ids()), y,
                                          model=MODEL_NAME, version=MODEL_VERSION)
        recorder.force_flush()  # lands inside this window
        spent_s = time.time() - start_s
        print(f"phase {phase!r} took {spent_s:.3f} s of its {window_s} s window",
              file=sys.stderr, flush=True)
        if spent_s >= window_s:  # its rows fell into the next window: say so, not later
            sys.exit(f"phase {phase!r} overran its window ({spent_s:.3f} s >= {window_s} s): "
                     "the machine is too loaded for this window length")
        windows.append([int(start_s * 1e9), phase])
        start_s += window_s
    print(json.dumps({"windows": windows}), flush=True)


if __name__ == "__main__":
    main()
