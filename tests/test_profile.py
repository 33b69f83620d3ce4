"""Reference profiles: capture, files, streaming, merge and damaged input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftline import exphist, profile, semconv

RNG = np.random.default_rng(5)


def _frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({
        "age": RNG.normal(40, 10, rows),
        "balance": RNG.lognormal(5, 1, rows),
        "plan": RNG.choice(["basic", "pro", "team"], rows),
    })


def test_capture_numeric_categorical_and_predictions() -> None:
    frame = _frame(2000)
    frame.loc[:9, "age"] = np.nan
    labels = RNG.choice([0, 1], 2000)
    probabilities = RNG.dirichlet([1, 1], 2000)
    built = profile.capture(frame, labels, probabilities=probabilities, model="churn",
                            version="3")
    assert (built.model_name, built.model_version, built.row_count) == ("churn", "3", 2000)
    age = built.columns["age"]
    assert (age.kind, age.role, age.count, age.missing) == ("numeric", "feature", 2000, 10)
    assert age.histogram.count == 1990
    assert age.histogram.sum == pytest.approx(np.nansum(frame["age"]))
    plan = built.columns["plan"]
    assert plan.kind == "categorical"
    assert plan.frequencies == frame["plan"].value_counts().to_dict()
    classes = built.columns[semconv.PROFILE_COLUMN_PREDICTION_CLASS]
    assert classes.role == "prediction"
    assert classes.frequencies == {"0": int((labels == 0).sum()), "1": int((labels == 1).sum())}
    confidence = built.columns[semconv.PROFILE_COLUMN_PREDICTION_CONFIDENCE]
    assert confidence.histogram.max == pytest.approx(probabilities.max())


def test_regression_predictions_are_numeric_values() -> None:
    built = profile.capture(RNG.normal(size=(100, 2)), RNG.normal(size=100), model="m")
    column = built.columns[semconv.ML_PREDICTION_VALUE]
    assert column.kind == "numeric" and column.histogram.count == 100
    assert list(built.columns)[:2] == ["f0", "f1"]


def test_save_load_round_trip(tmp_path: Path) -> None:
    built = profile.capture(_frame(500), RNG.choice(["a", "b"], 500), model="m", version="1")
    profile.save(built, tmp_path / "m.json")
    assert profile.load(tmp_path / "m.json").to_dict() == built.to_dict()
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_profiles_of_two_parts_merge_into_the_profile_of_the_whole() -> None:
    frame = _frame(10_000)
    whole = profile.capture(frame, model="m", version="1", top_k=10)
    left = profile.capture(frame.iloc[:3000], model="m", version="1", top_k=10)
    right = profile.capture(frame.iloc[3000:], model="m", version="1", top_k=10)
    merged = profile.merge(left, right)
    expected, actual = whole.to_dict(), merged.to_dict()
    expected.pop("created_time_unix_nano")
    actual.pop("created_time_unix_nano")
    for want, got in zip(expected["columns"], actual["columns"], strict=True):
        if "histogram" in want:  # the parts' sums add in another order
            assert got["histogram"].pop("sum") == pytest.approx(
                want["histogram"].pop("sum"), rel=1e-12)
    assert actual == expected


def test_top_k_folds_rare_categories_into_other() -> None:
    values = np.array([f"v{i % 30}" for i in range(3000)])
    built = profile.capture(pd.DataFrame({"c": values}), model="m", top_k=5)
    column = built.columns["c"]
    assert len(column.frequencies) == 5
    assert sum(column.frequencies.values()) + column.other == 3000


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cli_profiles_files_in_chunks_like_capture(tmp_path: Path, suffix: str) -> None:
    frame = _frame(3000)
    frame["pred"] = RNG.choice(["yes", "no"], 3000)
    data = tmp_path / f"train{suffix}"
    frame.to_csv(data, index=False) if suffix == ".csv" else frame.to_parquet(data)
    out = tmp_path / "p.json"
    result = subprocess.run(
        [sys.executable, "-m", "driftline.cli", "profile", str(data), "-o", str(out),
         "--model", "churn", "--version", "3", "--prediction-column", "pred"],
        capture_output=True, text=True, check=True)
    assert "3000 rows" in result.stdout
    from_file = profile.load(out)
    direct = profile.capture(frame.drop(columns="pred"), frame["pred"], model="churn",
                             version="3")
    chunked = profile.profile_file(data, model="churn", version="3", prediction_column="pred",
                                   chunk_rows=700)
    for built in (from_file, chunked):
        assert built.row_count == 3000
        for name in ("age", "balance", semconv.PROFILE_COLUMN_PREDICTION_CLASS):
            got, want = built.columns[name].to_dict(), direct.columns[name].to_dict()
            if "histogram" in want:  # chunked sums add in another order
                assert got["histogram"].pop("sum") == pytest.approx(
                    want["histogram"].pop("sum"), rel=1e-12)
            assert got == want


def test_damaged_and_unknown_files_get_clear_errors(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(profile.ProfileError, match="not valid JSON"):
        profile.load(bad_json)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(profile.ProfileError, match="not a Driftline profile"):
        profile.load(other)
    future = profile.capture(_frame(10), model="m").to_dict()
    future["format_version"] = 99
    (tmp_path / "future.json").write_text(json.dumps(future))
    with pytest.raises(profile.ProfileError, match="unsupported format_version 99"):
        profile.load(tmp_path / "future.json")
    damaged = profile.capture(_frame(10), model="m").to_dict()
    del damaged["columns"][0]["histogram"]
    (tmp_path / "damaged.json").write_text(json.dumps(damaged))
    with pytest.raises(profile.ProfileError, match="damaged profile"):
        profile.load(tmp_path / "damaged.json")


def test_missing_and_infinite_values_are_missing_not_values() -> None:
    values = np.array([1.0, np.nan, np.inf, -np.inf, 2.0])
    column = profile.capture(values.reshape(-1, 1), model="m").columns["f0"]
    assert (column.count, column.missing) == (5, 3)
    assert column.histogram.to_dict() == exphist.from_values(np.array([1.0, 2.0])).to_dict()
