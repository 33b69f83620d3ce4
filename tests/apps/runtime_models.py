"""The runtimes' end-to-end models, shared by the service and the test (no instrumentation):
each trained on ``fraud_data``'s rows and saved by the test, loaded and served by the service
as its runtime serves, and read back as labels and class probabilities for the reference
profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

RUNTIMES = ("xgboost", "lightgbm", "onnxruntime")
ROUNDS = 5


def model_name(runtime: str) -> str:
    return f"fraud-{runtime}"


def train(runtime: str, X: np.ndarray, y: np.ndarray) -> Any:
    """An XGBoost or LightGBM booster, or an ONNX Runtime session of a converted
    scikit-learn classifier."""
    if runtime == "xgboost":
        import xgboost as xgb

        return xgb.train({"objective": "binary:logistic", "nthread": 1},
                         xgb.DMatrix(X, label=y), ROUNDS)
    if runtime == "lightgbm":
        import lightgbm as lgb

        return lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1},
                         lgb.Dataset(X, y), ROUNDS)
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    model_bytes = to_onnx(LogisticRegression().fit(X, y),
                          X[:1].astype(np.float32)).SerializeToString()
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    session.model_bytes = model_bytes  # for save()
    return session


def save(runtime: str, model: Any, directory: Path) -> Path:
    """The model as its runtime stores it (the service loads it, as a service would)."""
    if runtime == "xgboost":
        path = directory / "model.ubj"
        model.save_model(path)
    elif runtime == "lightgbm":
        path = directory / "model.txt"
        model.save_model(path)
    else:
        path = directory / "model.onnx"
        path.write_bytes(model.model_bytes)
    return path


def load(runtime: str, path: Path) -> Any:
    if runtime == "xgboost":
        import xgboost as xgb

        return xgb.Booster(model_file=str(path))
    if runtime == "lightgbm":
        import lightgbm as lgb

        return lgb.Booster(model_file=str(path))
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def serve(runtime: str, model: Any, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities of classes 0 and 1) of ``batch``, by the runtime's own call."""
    if runtime == "xgboost":
        import xgboost as xgb

        positive = model.predict(xgb.DMatrix(batch))
    elif runtime == "lightgbm":
        positive = model.predict(batch)
    else:
        labels, maps = model.run(None, {"X": batch.astype(np.float32)})
        return labels, np.array([[m[0], m[1]] for m in maps])
    return (positive > 0.5).astype(int), np.column_stack([1 - positive, positive])
