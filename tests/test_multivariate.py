"""Multivariate drift (driftline.multivariate): a PCA of the reference's standardised numeric
features in the profile, each row's reconstruction error judged like any column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from driftline import cli, profile
from driftline.multivariate import DEFAULT_VARIANCE_SHARE, RECONSTRUCTION_ERROR_COLUMN

ROWS = 20_000


def _frame(rng: np.random.Generator, correlation: float, rows: int = ROWS) -> pd.DataFrame:
    """Three standard normal features (marginals never move); a and b correlated."""
    a = rng.normal(0.0, 1.0, rows)
    b = correlation * a + np.sqrt(1 - correlation**2) * rng.normal(0.0, 1.0, rows)
    return pd.DataFrame({"a": a, "b": b, "c": rng.normal(0.0, 1.0, rows),
                         "plan": rng.choice(["x", "y"], rows)})


def test_reconstruction_errors_are_sklearns_pca(tmp_path: Path) -> None:
    """The stored PCA reconstructs as scikit-learn's PCA of the standardised columns with
    the same number of components (errors to 1e-9); the profile round-trips it."""
    rng = np.random.default_rng(1)
    frame = _frame(rng, 0.9)
    captured = profile.capture(frame, model="m", multivariate=True)
    pca = captured.multivariate
    assert pca is not None and pca.columns == ("a", "b", "c")
    assert pca.explained >= DEFAULT_VARIANCE_SHARE
    z = StandardScaler().fit_transform(frame[["a", "b", "c"]])
    reference = PCA(n_components=len(pca.components)).fit(z)
    expected = np.linalg.norm(z - reference.inverse_transform(reference.transform(z)), axis=1)
    assert np.allclose(pca.errors(frame[["a", "b", "c"]].to_numpy()), expected, atol=1e-9)
    column = captured.columns[RECONSTRUCTION_ERROR_COLUMN]
    assert column.count == ROWS and column.histogram.sum == pytest.approx(expected.sum())
    profile.save(captured, tmp_path / "p.json")
    assert profile.load(tmp_path / "p.json").multivariate == pca


def test_correlation_flip_fires_only_the_multivariate_verdict(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture
                                                              ) -> None:
    """Marginals unchanged, correlation of a and b from +0.9 to -0.9: no column drifts on
    its own, the reconstruction error does; with the correlation kept, nothing drifts."""
    rng = np.random.default_rng(2)
    _frame(rng, 0.9).to_csv(tmp_path / "train.csv", index=False)
    _frame(rng, -0.9, 5000).to_csv(tmp_path / "flipped.csv", index=False)
    _frame(rng, 0.9, 5000).to_csv(tmp_path / "same.csv", index=False)
    assert cli.main(["profile", str(tmp_path / "train.csv"), "-o", str(tmp_path / "p.json"),
                     "--model", "m", "--multivariate"]) == 0
    verdicts = {}
    for name in ("flipped", "same"):
        capsys.readouterr()
        assert cli.main(["compare", str(tmp_path / "p.json"), str(tmp_path / f"{name}.csv"),
                         "--json"]) == 0
        document = json.loads(capsys.readouterr().out)
        verdicts[name] = {c["column"]: c["drifted"] for c in document["columns"]}
    assert verdicts["flipped"] == {"a": False, "b": False, "c": False, "plan": False,
                                   RECONSTRUCTION_ERROR_COLUMN: True}
    assert not any(verdicts["same"].values())
    assert set(verdicts["same"]) == set(verdicts["flipped"])


@pytest.mark.integration
def test_the_recorder_sends_errors_and_the_processor_judges_them(tmp_path: Path) -> None:
    """An instrumented model with the profile's PCA attached sends each row's reconstruction
    error (OTLP/HTTP, the SDK's exporter) to a real collector; ml_drift flags that column
    alone when the correlation flips."""
    import time

    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.trace import TracerProvider
    from sklearn.linear_model import LinearRegression

    import driftline
    from driftline.instrumentation.recorder import Recorder
    from driftline.instrumentation.sklearn import SklearnInstrumentor
    from driftline.multivariate import attach
    from tests._collector import LOOPBACK, PROTOCOL_HTTP, running_collector
    from tests.processor.ml_drift.test_ml_drift_sdk_e2e import verdicts

    rng = np.random.default_rng(3)
    train = _frame(rng, 0.9)[["a", "b", "c"]]
    captured = profile.capture(train, model="mv", multivariate=True)
    profile.save(captured, tmp_path / "profiles" / "mv.json")
    model = LinearRegression().fit(train, train["a"] + train["c"])
    attach(driftline.register(model, name="mv"), captured)
    output = tmp_path / "metrics.jsonl"
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"ml_drift": {"profiles": str(tmp_path / "profiles"), "window": "2s",
                                    "grace": "0.5s", "min_rows": 100}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"pipelines": {"metrics": {
            "receivers": ["otlp"], "processors": ["ml_drift"], "exporters": ["file"]}}},
    }
    flipped = _frame(rng, -0.9, 3000)[["a", "b", "c"]]
    with running_collector(config, tmp_path) as collector:
        recorder = Recorder(OTLPMetricExporter(
            endpoint=f"http://{collector.endpoints[PROTOCOL_HTTP]}/v1/metrics"),
            export_interval_s=3600.0)
        instrumentor = SklearnInstrumentor()
        instrumentor.instrument(tracer_provider=TracerProvider(), recorder=recorder)
        try:
            model.predict(flipped)
            assert recorder.force_flush()
        finally:
            instrumentor.uninstrument()
            recorder.shutdown()
        deadline = time.monotonic() + 30.0
        while verdicts(output)[0] < len(flipped) and time.monotonic() < deadline:
            time.sleep(0.2)

    rows, detected = verdicts(output)
    assert rows == len(flipped), collector.stderr()
    by_column = {column: values for (column, _), values in detected.items()}
    assert by_column[RECONSTRUCTION_ERROR_COLUMN] == [1]
    assert by_column["a"] == by_column["b"] == by_column["c"] == [0]
