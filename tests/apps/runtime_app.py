"""A model service serving an XGBoost booster, a LightGBM booster and an ONNX Runtime
session, instrumented by one line, for the runtimes' end-to-end test.

Run as ``python -m tests.apps.runtime_app MODELS`` (``MODELS/{runtime}/model.*``, saved by
the test); ``OTEL_*`` variables say where telemetry goes.
The recorders flush at interpreter exit.
"""
# ruff: noqa: I001  (the instrumentation line stays first, as users are told to write it)

import driftline.auto  # the only instrumentation line

import sys
from pathlib import Path

import numpy as np

import driftline
from tests.apps import fraud_data, runtime_models

BATCHES = 30


def main(models: Path) -> None:
    for runtime in runtime_models.RUNTIMES:
        [path] = models.glob(f"{runtime}/model.*")
        model = driftline.register(runtime_models.load(runtime, path),
                                   name=runtime_models.model_name(runtime),
                                   version=fraud_data.MODEL_VERSION)
        for batch in np.array_split(fraud_data.live_rows(), BATCHES):
            runtime_models.serve(runtime, model, batch)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
