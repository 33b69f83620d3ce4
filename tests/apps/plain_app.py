"""A model service with no Driftline code at all, for ``opentelemetry-instrument``.

Run as ``opentelemetry-instrument python -m tests.apps.plain_app``; the instrumentor is
found through its entry point and the model is named by DRIFTLINE_MODEL_NAME.
"""

import numpy as np
from sklearn.linear_model import LogisticRegression

ROWS = 500
CALLS = 5


def main() -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(ROWS, 3))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    for batch in np.array_split(X, CALLS):
        model.predict(batch)


if __name__ == "__main__":
    main()
