"""The recorder's multivariate hook: each row's reconstruction error by the PCA attached to
the model (``driftline.multivariate.attach``), computed in the recorder thread and recorded
as one more numeric feature, ``ml.multivariate.reconstruction_error`` (one small matrix
product per drained batch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from driftline.columns import NUMERIC_KINDS, table_columns
from driftline.multivariate import Pca


def reconstruction_errors(pca: Pca, inputs: Any, feature_names: Sequence[str] | None
                          ) -> np.ndarray | None:
    """The rows' errors, NaN where a value is missing; None when the inputs lack a column
    of the PCA (then nothing is recorded for them)."""
    if type(inputs) is np.ndarray and inputs.ndim == 2 and inputs.dtype.kind in NUMERIC_KINDS:
        names = [str(n) for n in feature_names] if feature_names is not None \
            and len(feature_names) == inputs.shape[1] else [f"f{i}" for i in
                                                            range(inputs.shape[1])]
        index = {name: i for i, name in enumerate(names)}
        if any(name not in index for name in pca.columns):
            return None
        return pca.errors(inputs[:, [index[name] for name in pca.columns]])
    return pca.column_errors(dict(table_columns(inputs, feature_names)))
