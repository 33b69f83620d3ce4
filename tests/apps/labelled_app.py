"""A scoring service that names its predictions and, later, sends their labels: run with
``DRIFTLINE_PREDICTION_RECORDS_RATIO=1`` and ``OTEL_LOGS_EXPORTER=otlp`` so
``import driftline.auto`` emits ``ml.prediction`` records; prints the IDs it used."""

import json

import numpy as np
from sklearn.linear_model import LogisticRegression

import driftline
import driftline.auto  # instruments scikit-learn

ROWS = 40


def main() -> None:
    rng = np.random.default_rng(8)
    X = rng.normal(size=(ROWS, 2))
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    driftline.register(model, name="churn", version="2")
    request_ids = [f"req-{i}" for i in range(ROWS // 2)]
    with driftline.prediction_ids(request_ids):
        model.predict_proba(X[: ROWS // 2])
    model.predict_proba(X[ROWS // 2:])
    generated = list(driftline.last_prediction_ids())
    driftline.record_ground_truth([*request_ids, *generated], y, model="churn", version="2")
    print(json.dumps({"chosen": request_ids, "generated": generated}))


if __name__ == "__main__":
    main()
