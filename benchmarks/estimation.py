"""Estimated against realised performance over chunks of 5 000 rows: Driftline (the
``ml_drift`` path: per predicted class an exponential histogram of 1 - confidence, read with
the profile's calibration) and NannyML's CBPE, on the same chunks.

NannyML is never a dependency: it runs in its own virtualenv as a subprocess
(``python -m venv /tmp/nannyml-venv && /tmp/nannyml-venv/bin/pip install nannyml``), and
also provides two public data sets it ships (synthetic car loan, binary; synthetic credit
card, three classes), written to CSV for both sides. Without it, only the generated data
sets are measured, by Driftline alone.

    python benchmarks/estimation.py [--nannyml-python /tmp/nannyml-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from driftline import calibration, exphist, profile
from driftline.estimation import estimate, histogram_points

CHUNK_ROWS = 5_000
REFERENCE_ROWS = 100_000
GENERATED_CHUNKS = 20
DEFAULT_NANNYML = "/tmp/nannyml-venv/bin/python"
BINARY_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")

# Run inside NannyML's virtualenv: argv = [workdir]; reads the data sets' CSVs and spec,
# writes nannyml.json {data set: {metric: [estimate per chunk]}}.
NANNYML_SCRIPT = r'''
import json, sys, time
from pathlib import Path
import pandas as pd
import nannyml as nml
work = Path(sys.argv[1])
spec = json.loads((work / "spec.json").read_text())


def canon(column):
    """Labels as text, 1.0 as "1" (a CSV column of labels with gaps reads as floats)."""
    try:
        return column.astype(float).astype(int).astype(str)
    except ValueError:
        return column.astype(str)


out = {}
for name, s in spec.items():
    reference = pd.read_csv(work / f"{name}.reference.csv")
    analysis = pd.read_csv(work / f"{name}.analysis.csv").drop(columns=[s["target"]])
    for frame in (reference, analysis):
        frame[s["prediction"]] = canon(frame[s["prediction"]])
    reference[s["target"]] = canon(reference[s["target"]])
    binary = len(s["probabilities"]) == 2
    if binary:
        # NannyML's binary CBPE takes the positive class's probability and 0/1 labels.
        positive = s["classes"][1]
        for frame in (reference, analysis):
            frame[s["prediction"]] = (frame[s["prediction"]] == positive).astype(int)
        reference[s["target"]] = (reference[s["target"]] == positive).astype(int)
        proba = s["probabilities"][1]
        problem = "classification_binary"
    else:
        proba = dict(zip(s["classes"], s["probabilities"]))
        problem = "classification_multiclass"
    metrics = s["metrics"]
    started = time.perf_counter()
    estimator = nml.CBPE(y_pred_proba=proba, y_pred=s["prediction"], y_true=s["target"],
                         metrics=metrics, chunk_size=s["chunk_rows"], problem_type=problem)
    estimator.fit(reference)
    result = estimator.estimate(analysis).filter(period="analysis").to_df()
    out[name] = {m: [float(v) for v in result[(m, "value")]] for m in metrics}
    out[name]["seconds"] = time.perf_counter() - started
(work / "nannyml.json").write_text(json.dumps(out))
'''


def _generated(rows: int, shift: float, rng: np.random.Generator, classes: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """A fixed concept (logistic / softmax of the inputs); ``shift`` moves the inputs."""
    x = rng.normal(0.0, 1.0, (rows, 4))
    if classes == 2:
        x[:, :2] *= 1.0 + 0.35 * shift
        x[:, 0] += shift
        p = 1 / (1 + np.exp(-x @ np.array([3.0, -2.25, 1.5, 0.75])))
        return x, (rng.random(rows) < p).astype(int)
    x *= 1.0 + 0.3 * shift
    x[:, 0] += shift
    logits = 1.5 * np.stack([2 * x[:, 0], x[:, 2] - 2 * x[:, 1], 1.5 * x[:, 3] - x[:, 0]], 1)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return x, (rng.random(rows)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)


def _scored(model: LogisticRegression, x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    scores = model.predict_proba(x)
    frame = pd.DataFrame({f"p{j}": scores[:, j] for j in range(scores.shape[1])})
    frame["y_pred"] = model.predict(x)
    frame["y_true"] = y
    return frame


def _quiet() -> dict[str, str]:
    """NannyML's environment without its usage analytics (no network here)."""
    return {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}


def generated_set(classes: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    x, y = _generated(2 * REFERENCE_ROWS, 0.0, rng, classes)
    model = LogisticRegression(max_iter=500).fit(x[:REFERENCE_ROWS], y[:REFERENCE_ROWS])
    reference = _scored(model, x[REFERENCE_ROWS:], y[REFERENCE_ROWS:])
    chunks = [_scored(model, *_generated(CHUNK_ROWS, shift, rng, classes))
              for shift in np.linspace(-1.5, 1.5, GENERATED_CHUNKS)]
    spec = {"probabilities": [f"p{j}" for j in range(classes)], "prediction": "y_pred",
            "target": "y_true", "classes": [str(c) for c in model.classes_]}
    return reference, pd.concat(chunks, ignore_index=True), spec


def nannyml_sets(python: str, work: Path) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, dict]]:
    """NannyML's bundled synthetic data sets, exported to CSV by its own interpreter."""
    script = r'''
import sys, nannyml as nml
from pathlib import Path
work = Path(sys.argv[1])
ref, ana, tgt = nml.load_synthetic_car_loan_dataset()
ref.to_csv(work / "car_loan.ref.raw.csv", index=False)
ana.merge(tgt, on="id").to_csv(work / "car_loan.ana.raw.csv", index=False)
ref, ana, tgt = nml.load_synthetic_multiclass_classification_dataset()
ref.to_csv(work / "credit_card.ref.raw.csv", index=False)
ana.merge(tgt, on="id").to_csv(work / "credit_card.ana.raw.csv", index=False)
'''
    subprocess.run([python, "-c", script, str(work)], check=True, env=_quiet())
    sets = {}
    ref = pd.read_csv(work / "car_loan.ref.raw.csv")
    ana = pd.read_csv(work / "car_loan.ana.raw.csv")
    for frame in (ref, ana):
        frame["p1"] = frame["y_pred_proba"]
        frame["p0"] = 1.0 - frame["y_pred_proba"]
        # The data set's y_pred is not the argmax on 2.7 % of the rows (a noisy threshold);
        # both tools estimate the argmax here, as the app reads predict_proba.
        frame["y_pred"] = (frame["p1"] > frame["p0"]).astype(int)
    sets["nannyml car loan (binary, public)"] = (
        ref[["p0", "p1", "y_pred", "repaid"]], ana[["p0", "p1", "y_pred", "repaid"]],
        {"probabilities": ["p0", "p1"], "prediction": "y_pred", "target": "repaid",
         "classes": ["0", "1"]})
    ref = pd.read_csv(work / "credit_card.ref.raw.csv")
    ana = pd.read_csv(work / "credit_card.ana.raw.csv")
    classes = ["highstreet_card", "prepaid_card", "upmarket_card"]
    columns = [f"y_pred_proba_{c}" for c in classes]
    ref["y_pred"] = np.asarray(classes)[ref[columns].to_numpy().argmax(axis=1)]
    ana["y_pred"] = np.asarray(classes)[ana[columns].to_numpy().argmax(axis=1)]
    sets["nannyml credit card (3 classes, public)"] = (
        ref[[*columns, "y_pred", "y_true"]], ana[[*columns, "y_pred", "y_true"]],
        {"probabilities": columns, "prediction": "y_pred", "target": "y_true",
         "classes": classes})
    return sets


def driftline_run(reference: pd.DataFrame, analysis: pd.DataFrame, spec: dict
                  ) -> tuple[dict[str, list[float]], dict[str, list[float]], float]:
    """Per chunk: Driftline's estimate (through histograms, as ml_drift) and the realised
    value (scikit-learn on the rows); seconds to profile and estimate."""
    started = time.perf_counter()
    captured = profile.capture(reference, spec["prediction"],
                               probabilities=spec["probabilities"], target=spec["target"],
                               model="bench", classes=spec["classes"])
    cal = captured.calibration
    estimated: dict[str, list[float]] = {}
    realised: dict[str, list[float]] = {}
    seconds = time.perf_counter() - started
    binary = len(spec["probabilities"]) == 2
    for start in range(0, len(analysis) - CHUNK_ROWS + 1, CHUNK_ROWS):
        chunk = analysis.iloc[start:start + CHUNK_ROWS]
        scores = chunk[spec["probabilities"]].to_numpy(dtype=float)
        top = scores.argmax(axis=1)
        doubt = calibration.uncertainty(scores.max(axis=1))
        began = time.perf_counter()
        points = {c.label: histogram_points(exphist.from_values(doubt[top == j]),
                                            c.zero_confidence())
                  for j, c in enumerate(cal.classes) if (top == j).any()}
        found, _ = estimate(cal, points)
        seconds += time.perf_counter() - began
        for item in found:
            estimated.setdefault(item.metric, []).append(item.value)
        truth = chunk[spec["target"]].astype(str).to_numpy()
        predicted = np.asarray(spec["classes"], dtype=object)[top]
        realised.setdefault("accuracy", []).append(accuracy_score(truth, predicted))
        if binary:
            positive = spec["classes"][1]
            for metric, fn in (("precision", precision_score), ("recall", recall_score),
                               ("f1", f1_score)):
                realised.setdefault(metric, []).append(fn(truth, predicted, pos_label=positive))
            realised.setdefault("roc_auc", []).append(
                roc_auc_score(truth == positive, scores[:, 1]))
    return estimated, realised, seconds


def _errors(estimates: list[float], truth: list[float]) -> tuple[float, float]:
    diff = np.abs(np.asarray(estimates) - np.asarray(truth))
    return float(diff.mean()), float(diff.max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nannyml-python", default=DEFAULT_NANNYML,
                        help="the Python of a virtualenv with nannyml installed")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    have_nannyml = Path(args.nannyml_python).exists()
    work = Path(tempfile.mkdtemp(prefix="driftline-estimation-"))
    sets = {"generated binary (covariate shift)": generated_set(2, 1),
            "generated 3 classes (covariate shift)": generated_set(3, 2)}
    if have_nannyml:
        sets.update(nannyml_sets(args.nannyml_python, work))
    rows = []
    spec_out = {}
    ours = {}
    for i, (name, (reference, analysis, spec)) in enumerate(sets.items()):
        usable = len(analysis) // CHUNK_ROWS * CHUNK_ROWS
        analysis = analysis.iloc[:usable]
        ours[name] = driftline_run(reference, analysis, spec)
        key = f"set{i}"
        reference.to_csv(work / f"{key}.reference.csv", index=False)
        analysis.to_csv(work / f"{key}.analysis.csv", index=False)
        binary = len(spec["probabilities"]) == 2
        spec_out[key] = {**spec, "chunk_rows": CHUNK_ROWS,
                         "metrics": list(BINARY_METRICS) if binary else ["accuracy"]}
    theirs: dict = {}
    if have_nannyml:
        (work / "spec.json").write_text(json.dumps(spec_out))
        subprocess.run([args.nannyml_python, "-c", NANNYML_SCRIPT, str(work)], check=True,
                       env=_quiet())
        theirs = json.loads((work / "nannyml.json").read_text())
    for i, (name, (estimated, realised, seconds)) in enumerate(ours.items()):
        nanny = theirs.get(f"set{i}", {})
        for metric in realised:
            d_mae, d_max = _errors(estimated[metric], realised[metric])
            n_mae = n_max = None
            if metric in nanny and len(nanny[metric]) == len(realised[metric]):
                n_mae, n_max = _errors(nanny[metric], realised[metric])
            rows.append({"data": name, "metric": metric, "chunks": len(realised[metric]),
                         "realised_min": min(realised[metric]),
                         "realised_max": max(realised[metric]),
                         "driftline_mae": d_mae, "driftline_max": d_max,
                         "nannyml_mae": n_mae, "nannyml_max": n_max,
                         "driftline_s": seconds, "nannyml_s": nanny.get("seconds")})
    print("| data | metric | chunks | realised range | Driftline MAE | Driftline max | "
          "NannyML CBPE MAE | NannyML CBPE max |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        def cell(v: float | None) -> str:
            return "-" if v is None else f"{v:.4f}"
        print(f"| {r['data']} | {r['metric']} | {r['chunks']} | "
              f"{r['realised_min']:.3f}..{r['realised_max']:.3f} | {cell(r['driftline_mae'])} | "
              f"{cell(r['driftline_max'])} | {cell(r['nannyml_mae'])} | {cell(r['nannyml_max'])} |")
    print()
    for i, (name, (_, _, seconds)) in enumerate(ours.items()):
        nanny_s = theirs.get(f"set{i}", {}).get("seconds")
        print(f"{name}: Driftline {seconds:.2f} s (profile + estimates), NannyML "
              f"{'-' if nanny_s is None else f'{nanny_s:.2f} s'} (fit + estimate)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
