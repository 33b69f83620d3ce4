"""Calibration in the profile and performance estimated without labels (docs/estimation.md).

The data: a concept that never changes (labels drawn from a fixed logistic or softmax of the
features), a logistic regression fitted on it, and production chunks of 5 000 rows whose
features shift (covariate shift). Realised metrics come from scikit-learn on the raw rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import isotonic_regression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from driftline import calibration, cli, compare, exphist, profile
from driftline.estimation import Points, estimate, histogram_points

DATA = Path(__file__).parent / "testdata"
REFERENCE_ROWS = 100_000
CHUNK_ROWS = 5_000
SHIFTS = np.linspace(-1.5, 1.5, 16)
WEIGHTS = np.array([3.0, -2.25, 1.5, 0.75])


def _binary(rng: np.random.Generator, rows: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(0.0, 1.0, (rows, 4))
    x[:, :2] *= 1.0 + 0.35 * shift  # rows nearer to or farther from the boundary
    x[:, 0] += shift
    return x, (rng.random(rows) < 1 / (1 + np.exp(-x @ WEIGHTS))).astype(int)


def _three(rng: np.random.Generator, rows: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(0.0, 1.0, (rows, 4)) * (1.0 + 0.3 * shift)
    x[:, 0] += shift
    logits = 1.5 * np.stack([2 * x[:, 0], x[:, 2] - 2 * x[:, 1], 1.5 * x[:, 3] - x[:, 0]], 1)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return x, (rng.random(rows)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)


@pytest.fixture(scope="module", params=["binary", "three"])
def fitted(request: pytest.FixtureRequest) -> dict:
    make = _binary if request.param == "binary" else _three
    rng = np.random.default_rng(7)
    x, y = make(rng, 2 * REFERENCE_ROWS, 0.0)
    model = LogisticRegression(max_iter=500).fit(x[:REFERENCE_ROWS], y[:REFERENCE_ROWS])
    xr, yr = x[REFERENCE_ROWS:], y[REFERENCE_ROWS:]
    captured = profile.capture(xr, model.predict(xr), probabilities=model.predict_proba(xr),
                               target=yr, model="m", classes=model.classes_)
    chunks = [make(rng, CHUNK_ROWS, shift) for shift in SHIFTS]
    return {"model": model, "profile": captured, "chunks": chunks, "kind": request.param}


def _window_points(cal: calibration.Calibration, scores: np.ndarray) -> dict[str, Points]:
    """What the processor reads from a window: per predicted class, the exponential
    histogram of 1 - confidence the app exports (160 buckets)."""
    top = scores.argmax(axis=1)
    doubt = calibration.uncertainty(scores.max(axis=1))
    return {c.label: histogram_points(exphist.from_values(doubt[top == j]),
                                      c.zero_confidence())
            for j, c in enumerate(cal.classes) if (top == j).any()}


def test_estimates_track_realised_performance_under_covariate_shift(fitted: dict) -> None:
    """Accuracy within 0.005 on average and 0.015 at most over chunks of 5 000 rows; binary
    ROC AUC within 0.01 on average; precision, recall and F1 within 0.015 on average."""
    model, cal = fitted["model"], fitted["profile"].calibration
    errors: dict[str, list[float]] = {}
    realised_accuracy = []
    for x, y in fitted["chunks"]:
        scores = model.predict_proba(x)
        predicted = model.classes_[scores.argmax(axis=1)]
        found, unknown = estimate(cal, _window_points(cal, scores))
        assert unknown == 0
        got = {e.metric: e for e in found}
        truth = {"accuracy": accuracy_score(y, predicted)}
        if fitted["kind"] == "binary":
            truth.update(precision=precision_score(y, predicted), recall=recall_score(y, predicted),
                         f1=f1_score(y, predicted), roc_auc=roc_auc_score(y, scores[:, 1]))
        assert set(got) == set(truth)
        for metric, value in truth.items():
            errors.setdefault(metric, []).append(got[metric].value - value)
            assert got[metric].lower <= got[metric].value <= got[metric].upper
        realised_accuracy.append(truth["accuracy"])
    # The shift moves the realised accuracy (the test would pass a constant estimate else).
    assert max(realised_accuracy) - min(realised_accuracy) > 0.05
    mae = {m: float(np.mean(np.abs(e))) for m, e in errors.items()}
    assert mae["accuracy"] <= 0.005, mae
    assert max(np.abs(errors["accuracy"])) <= 0.015, errors["accuracy"]
    if fitted["kind"] == "binary":
        assert mae["roc_auc"] <= 0.01, mae
        assert max(mae[m] for m in ("precision", "recall", "f1")) <= 0.015, mae


def test_calibration_map_is_the_isotonic_regression_of_the_bins(fitted: dict) -> None:
    """Each class's knots are the blocks of SciPy's weighted isotonic regression of
    correctness on confidence over the bins (levels to 1e-9 where no knots were merged), and
    realised metrics from the bins are sklearn's on the raw rows."""
    cal = fitted["profile"].calibration
    for c in cal.classes:
        used = np.flatnonzero(c.rows)[::-1]
        fitted_y = isotonic_regression(c.correct_rows[used] / c.rows[used],
                                       weights=c.rows[used].astype(float)).x
        xs, ys = c.knots
        assert np.all(np.diff(ys) >= 0) and len(xs) <= calibration.MAX_KNOTS
        levels = np.unique(np.round(fitted_y, 12))
        if len(levels) <= calibration.MAX_KNOTS:
            assert np.allclose(ys, levels, atol=1e-9)
    x, y = fitted["chunks"][3]
    model = fitted["model"]
    scores = model.predict_proba(x)
    builder = calibration.CalibrationBuilder([f"p{j}" for j in range(scores.shape[1])])
    builder.add(scores, model.predict(x), y)
    realised = calibration.realised(builder.build())
    predicted = model.predict(x)
    assert realised["accuracy"] == pytest.approx(accuracy_score(y, predicted), abs=1e-12)
    if fitted["kind"] == "binary":
        assert realised["precision"] == pytest.approx(precision_score(y, predicted), abs=1e-12)
        assert realised["recall"] == pytest.approx(recall_score(y, predicted), abs=1e-12)
        assert realised["roc_auc"] == pytest.approx(roc_auc_score(y, scores[:, 1]), abs=1e-3)


def test_calibration_round_trips_and_merges(tmp_path: Path, fitted: dict) -> None:
    """Saved and loaded, the map is the same; the merge of two halves' profiles has the
    whole's bins."""
    whole = fitted["profile"]
    path = tmp_path / "p.json"
    profile.save(whole, path)
    loaded = profile.load(path)
    document = json.loads(path.read_text())["calibration"]
    assert [c["label"] for c in document["classes"]] == [c.label for c in whole.calibration.classes]
    assert all(len(c["map"]["confidence"]) <= calibration.MAX_KNOTS for c in document["classes"])
    for a, b in zip(whole.calibration.classes, loaded.calibration.classes, strict=True):
        assert np.array_equal(a.rows, b.rows) and np.array_equal(a.correct_rows, b.correct_rows)
        assert np.allclose(a.knots[1], b.knots[1])
    x, y = fitted["chunks"][0]
    model = fitted["model"]
    halves = [profile.capture(x[s], model.predict(x[s]), probabilities=model.predict_proba(x[s]),
                              target=y[s], model="m", classes=model.classes_)
              for s in (slice(0, 2000), slice(2000, None))]
    both = profile.capture(x, model.predict(x), probabilities=model.predict_proba(x), target=y,
                           model="m", classes=model.classes_)
    merged = profile.merge(*halves).calibration
    for a, b in zip(merged.classes, both.calibration.classes, strict=True):
        assert np.array_equal(a.rows, b.rows) and np.array_equal(a.correct_rows, b.correct_rows)


def test_an_existing_profile_without_calibration_still_works(capsys: pytest.CaptureFixture
                                                             ) -> None:
    """A profile file written before calibrations existed loads, compares, and reports no
    performance."""
    old = DATA / "profile_v1_no_calibration.json"
    assert "calibration" not in json.loads(old.read_text())
    loaded = profile.load(old)
    assert loaded.calibration is None
    assert cli.main(["compare", str(old), str(old), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["columns"] and "estimated_performance" not in document
    assert "realised_performance" not in document


def test_cli_profile_and_compare_report_estimated_and_realised(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture
                                                               ) -> None:
    """`driftline profile --probability-columns` stores the calibration; `compare --json`
    on a shifted data file reports the estimate beside the realised value, and without the
    target column the estimate only; the HTML report shows both."""
    rng = np.random.default_rng(11)
    x, y = _binary(rng, 40_000, 0.0)
    model = LogisticRegression().fit(x, y)

    def table(rows: int, shift: float, with_target: bool = True) -> pd.DataFrame:
        xs, ys = _binary(rng, rows, shift)
        scores = model.predict_proba(xs)
        frame = pd.DataFrame(xs, columns=["a", "b", "c", "d"])
        frame["pred"] = model.predict(xs)
        frame["p0"], frame["p1"] = scores[:, 0], scores[:, 1]
        if with_target:
            frame["label"] = ys
        return frame

    table(40_000, 0.0).to_parquet(tmp_path / "train.parquet")
    shifted = table(CHUNK_ROWS, 1.2)
    shifted.to_csv(tmp_path / "prod.csv", index=False)
    shifted.drop(columns="label").to_csv(tmp_path / "unlabelled.csv", index=False)
    out = tmp_path / "ref.json"
    assert cli.main(["profile", str(tmp_path / "train.parquet"), "-o", str(out), "--model", "m",
                     "--prediction-column", "pred", "--probability-columns", "p0,p1",
                     "--target-column", "label"]) == 0
    saved = json.loads(out.read_text())
    assert saved["calibration"]["probability_columns"] == ["p0", "p1"]
    assert {c["name"] for c in saved["columns"]} >= {"a", "ml.prediction.confidence", "label"}
    assert not {"p0", "p1", "pred"} & {c["name"] for c in saved["columns"]}
    capsys.readouterr()
    html = tmp_path / "report.html"
    assert cli.main(["compare", str(out), str(tmp_path / "prod.csv"), "--json",
                     "--html", str(html)]) == 0
    document = json.loads(capsys.readouterr().out)
    truth = accuracy_score(shifted["label"], shifted["pred"])
    assert document["realised_performance"]["accuracy"] == pytest.approx(truth, abs=1e-12)
    assert document["realised_performance"]["roc_auc"] == pytest.approx(
        roc_auc_score(shifted["label"], shifted["p1"]), abs=1e-3)
    estimated = document["estimated_performance"]
    assert set(estimated) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert estimated["accuracy"]["value"] == pytest.approx(truth, abs=0.015)
    assert estimated["accuracy"]["lower"] < truth < estimated["accuracy"]["upper"]
    page = html.read_text()
    assert 'id="performance"' in page and 'data-metric="roc_auc"' in page
    assert cli.main(["compare", str(out), str(tmp_path / "unlabelled.csv"), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert "realised_performance" not in document
    assert document["estimated_performance"]["accuracy"]["value"] == pytest.approx(
        estimated["accuracy"]["value"], abs=1e-12)


def test_profile_without_predictions_or_classes_says_what_to_give(tmp_path: Path) -> None:
    """Probability columns named without a prediction column or classes: an error that
    says what to give; from arrays (capture), the profile is kept without a calibration."""
    frame = pd.DataFrame({"a": [1.0, 2.0], "p0": [0.9, 0.2], "p1": [0.1, 0.8], "y": [0, 1]})
    with pytest.raises(profile.ProfileError, match="prediction"):
        profile.capture(frame, probabilities=["p0", "p1"], target="y", model="m")
    kept = profile.capture(frame[["a"]], probabilities=frame[["p0", "p1"]].to_numpy(),
                           target=frame["y"], model="m")
    assert kept.calibration is None and "ml.prediction.confidence" in kept.columns


def test_compare_module_reads_no_performance_without_probability_columns(tmp_path: Path,
                                                                         fitted: dict) -> None:
    """A data file without the probability columns is compared for drift only."""
    path = tmp_path / "ref.json"
    profile.save(fitted["profile"], path)
    pd.DataFrame(fitted["chunks"][0][0], columns=["f0", "f1", "f2", "f3"]).to_csv(
        tmp_path / "x.csv", index=False)
    reference, current = compare.load_pair(path, tmp_path / "x.csv")
    result = compare.compare(reference, current)
    assert result.estimated_performance == () and result.realised_performance == ()


def test_estimates_on_a_public_data_set() -> None:
    """NannyML's synthetic car loan data set (shipped in the nannyml package, Apache-2.0;
    here its score, label and period columns): estimated from the reference's calibration
    over the analysis period's ten chunks of 5 000 rows, accuracy within 0.005 on average
    and 0.015 at most, ROC AUC within 0.01 on average, of sklearn's realised values."""
    data = pd.read_parquet(DATA / "nannyml_car_loan.parquet")
    scores = np.column_stack([1.0 - data["y_pred_proba"], data["y_pred_proba"]])
    predicted = scores.argmax(axis=1)
    reference = (data["period"] == "reference").to_numpy()
    captured = profile.capture(scores[reference], predicted[reference],
                               probabilities=scores[reference],
                               target=data["repaid"].to_numpy()[reference], model="car_loan",
                               classes=[0, 1])
    cal = captured.calibration
    analysis = np.flatnonzero(~reference)
    errors: dict[str, list[float]] = {"accuracy": [], "roc_auc": []}
    for start in range(0, analysis.size, CHUNK_ROWS):
        rows = analysis[start:start + CHUNK_ROWS]
        found, _ = estimate(cal, _window_points(cal, scores[rows]))
        got = {e.metric: e.value for e in found}
        truth = data["repaid"].to_numpy()[rows]
        errors["accuracy"].append(got["accuracy"] - accuracy_score(truth, predicted[rows]))
        errors["roc_auc"].append(got["roc_auc"] - roc_auc_score(truth, scores[rows, 1]))
    assert len(errors["accuracy"]) == 10
    assert np.mean(np.abs(errors["accuracy"])) <= 0.005, errors
    assert np.max(np.abs(errors["accuracy"])) <= 0.015, errors
    assert np.mean(np.abs(errors["roc_auc"])) <= 0.01, errors


def test_the_app_exports_uncertainty_per_predicted_class() -> None:
    """``ml.prediction.uncertainty``: per predicted class (the argmax), the count of its
    rows and the sum of 1 - confidence (0 below the floor), as NumPy computes them."""
    from opentelemetry.sdk.trace import TracerProvider

    from driftline import semconv
    from driftline.instrumentation.recorder import Recorder
    from driftline.instrumentation.sklearn import SklearnInstrumentor
    from tests._otel import InMemoryMetricExporter

    rng = np.random.default_rng(4)
    x, y = _three(rng, 3000, 0.0)
    model = LogisticRegression(max_iter=500).fit(x, y)
    x[:5] *= 50  # a few rows certain past the floor: the zero bucket
    exported = InMemoryMetricExporter()
    recorder = Recorder(exported, export_interval_s=3600.0)
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), recorder=recorder)
    try:
        scores = model.predict_proba(x)
        assert recorder.force_flush()
    finally:
        instrumentor.uninstrument()
        recorder.shutdown()
    points = {p.attributes[semconv.ML_PREDICTION_CLASS]: p
              for p in exported.points(semconv.ML_PREDICTION_UNCERTAINTY)}
    top = scores.argmax(axis=1)
    doubt = 1.0 - scores.max(axis=1)
    doubt[doubt < calibration.UNCERTAINTY_FLOOR] = 0.0
    assert set(points) == {str(c) for c in model.classes_}
    assert sum(p.zero_count for p in points.values()) == int((doubt == 0).sum()) > 0
    for j, label in enumerate(model.classes_):
        point = points[str(label)]
        assert point.count == int((top == j).sum())
        assert point.sum == pytest.approx(doubt[top == j].sum(), rel=1e-12)
        assert point.max <= 1 - 1 / len(model.classes_)
