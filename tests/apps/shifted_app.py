"""A model service instrumented by one line, for the end-to-end test.

Run as ``python -m tests.apps.shifted_app``; ``OTEL_*`` variables say where telemetry goes.
The recorder flushes at interpreter exit.
"""
# ruff: noqa: I001  (the instrumentation line stays first, as users are told to write it)

import driftline.auto  # the only instrumentation line

import numpy as np
from sklearn.linear_model import LogisticRegression

import driftline
from tests.apps import fraud_data


def main() -> None:
    X, y = fraud_data.training_rows()
    model = driftline.register(LogisticRegression().fit(X, y), name=fraud_data.MODEL_NAME,
                               version=fraud_data.MODEL_VERSION)
    for batch in np.array_split(fraud_data.live_rows(), 30):
        model.predict_proba(batch)


if __name__ == "__main__":
    main()
