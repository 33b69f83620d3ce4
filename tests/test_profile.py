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
            assert got.pop("moments") == pytest.approx(want.pop("moments"), rel=1e-12)
    assert actual == expected


def test_columns_profiled_in_threads_equal_columns_profiled_one_by_one(monkeypatch) -> None:
    frame = _frame(50_000)
    frame["signed"] = RNG.normal(0, 1, 50_000)
    frame["counts"] = RNG.poisson(3, 50_000).astype(float)
    monkeypatch.setattr(profile, "PROFILE_THREADS", 4)
    threaded = profile.ProfileBuilder("m")
    threaded.add_columns((str(name), frame[name].to_numpy()) for name in frame.columns)
    serial = profile.ProfileBuilder("m")
    for name in frame.columns:
        serial.add_column(str(name), frame[name].to_numpy())
    assert ([c.to_dict() for c in threaded.build().columns.values()]
            == [c.to_dict() for c in serial.build().columns.values()])
    assert threaded.build().columns["counts"].histogram.total == 50_000


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
                assert got.pop("moments") == pytest.approx(want.pop("moments"), rel=1e-12)
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
    assert column.histogram.to_dict() == exphist.from_values(
        np.array([1.0, 2.0]), profile.DEFAULT_MAX_BUCKETS).to_dict()


def _assert_same_columns(got: profile.Profile, want: profile.Profile) -> None:
    """Bucket for bucket and count for count; histogram sums and moments only
    approximately, since chunked inputs add their parts in another order."""
    assert got.row_count == want.row_count
    assert list(got.columns) == list(want.columns)
    for name, column in want.columns.items():
        expected, actual = column.to_dict(), got.columns[name].to_dict()
        if "histogram" in expected:
            assert actual["histogram"].pop("sum") == pytest.approx(
                expected["histogram"].pop("sum"), rel=1e-12)
            assert actual.pop("moments") == pytest.approx(expected.pop("moments"), rel=1e-12)
        assert actual == expected, name


def _arrow_frame(rows: int) -> pd.DataFrame:
    frame = _frame(rows)
    frame.loc[::97, "age"] = np.nan
    frame.loc[::89, "plan"] = None
    frame["visits"] = RNG.integers(0, 20, rows)
    return frame


def test_arrow_table_and_record_batch_profile_like_the_dataframe() -> None:
    import pyarrow as pa

    frame = _arrow_frame(5000)
    want = profile.capture(frame, model="m")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    _assert_same_columns(profile.capture(table, model="m"), want)
    _assert_same_columns(profile.capture(table.combine_chunks().to_batches()[0], model="m"),
                         want)
    # A categorical column arrives as an Arrow dictionary column; nulls stay missing.
    categorical = frame.assign(plan=frame["plan"].astype("category"))
    dictionary = pa.Table.from_pandas(categorical, preserve_index=False)
    chunked = pa.concat_tables([dictionary.slice(0, 2500), dictionary.slice(2500)])
    _assert_same_columns(profile.capture(chunked, model="m"), want)


def test_numpy_array_profiles_like_the_dataframe() -> None:
    frame = _frame(3000).drop(columns="plan")
    want = profile.capture(frame.set_axis(["f0", "f1"], axis=1), model="m")
    _assert_same_columns(profile.capture(frame.to_numpy(), model="m"), want)


def test_arrow_dataset_streams_in_batches_like_the_dataframe(tmp_path: Path) -> None:
    import pyarrow.dataset as ds

    frame = _arrow_frame(6000)
    labels = RNG.choice(["yes", "no"], 6000)
    truth = RNG.choice([0, 1], 6000)
    for part, rows in enumerate(np.array_split(np.arange(6000), 3)):
        frame.iloc[rows].to_parquet(tmp_path / f"part-{part}.parquet", index=False)
    want = profile.capture(frame, labels, target=truth, model="m", task="classification")
    dataset = ds.dataset(tmp_path, format="parquet")
    got = profile.capture(dataset, labels, target=truth, model="m", task="classification",
                          chunk_rows=700)
    _assert_same_columns(got, want)
    # A directory of Parquet files profiles as one data set, from the CLI's entry point too.
    _assert_same_columns(profile.profile_file(tmp_path, model="m", chunk_rows=1000),
                         profile.capture(frame, model="m"))


def test_target_is_profiled_with_its_role_and_kind_by_dtype() -> None:
    frame = _frame(1000)
    frame["label"] = RNG.choice(["churned", "stayed"], 1000)
    frame["amount"] = RNG.normal(100, 5, 1000)
    by_name = profile.capture(frame.drop(columns="amount"), target="label", model="m")
    label = by_name.columns["label"]
    assert (label.role, label.kind) == ("target", "categorical")
    assert label.frequencies == frame["label"].value_counts().to_dict()
    assert [c.name for c in by_name.features()] == ["age", "balance", "plan"]
    by_array = profile.capture(frame.drop(columns=["label", "amount"]),
                               target=frame["amount"], model="m")
    amount = by_array.columns["amount"]  # a Series keeps its name
    assert (amount.role, amount.kind, amount.histogram.count) == ("target", "numeric", 1000)
    unnamed = profile.capture(RNG.normal(size=(50, 2)), target=RNG.choice([0, 1], 50),
                              model="m", task="classification").columns["target"]
    assert (unnamed.role, unnamed.kind) == ("target", "categorical")
    assert set(unnamed.frequencies) <= {"0", "1"}
    with pytest.raises(profile.ProfileError, match="no column 'nope'"):
        profile.capture(frame, target="nope", model="m")


def test_cli_target_column(tmp_path: Path) -> None:
    frame = _frame(800)
    frame["churned"] = RNG.choice(["yes", "no"], 800)
    data = tmp_path / "train.parquet"
    frame.to_parquet(data)
    out = tmp_path / "p.json"
    subprocess.run(
        [sys.executable, "-m", "driftline.cli", "profile", str(data), "-o", str(out),
         "--model", "churn", "--target-column", "churned"],
        capture_output=True, text=True, check=True)
    column = profile.load(out).columns["churned"]
    assert (column.role, column.kind) == ("target", "categorical")
    assert column.frequencies == frame["churned"].value_counts().to_dict()
    missing = subprocess.run(
        [sys.executable, "-m", "driftline.cli", "profile", str(data), "-o", str(out),
         "--model", "churn", "--target-column", "nope"], capture_output=True, text=True)
    assert missing.returncode == 2 and "no column 'nope'" in missing.stderr


def test_truncated_file_and_damaged_counts_name_the_problem(tmp_path: Path) -> None:
    text = json.dumps(profile.capture(_frame(50), model="m").to_dict())
    truncated = tmp_path / "truncated.json"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(profile.ProfileError, match=r"truncated.json: not valid JSON \(line 1\)"):
        profile.load(truncated)
    for bad in (5, "12,3", [1, -2], [1.5], None):
        damaged = json.loads(text)
        damaged["columns"][0]["histogram"]["positive"]["counts"] = bad
        (tmp_path / "counts.json").write_text(json.dumps(damaged))
        with pytest.raises(profile.ProfileError,
                           match=r"columns\[0\]\.histogram\.positive\.counts: must be a list"):
            profile.load(tmp_path / "counts.json")


def test_progress_knows_the_rows_of_a_parquet_directory(tmp_path: Path) -> None:
    from driftline._progress import expected_rows

    for part in range(3):
        _frame(400 + part).to_parquet(tmp_path / f"part-{part}.parquet")
    assert expected_rows(tmp_path) == 1203
    assert expected_rows(tmp_path / "part-0.parquet") == 400
    (tmp_path / "train.csv").write_text("a\n1\n")
    assert expected_rows(tmp_path / "train.csv") is None


def test_bucket_offsets_past_every_float_are_refused_with_the_column(tmp_path: Path) -> None:
    """A bucket no float64 can fall in (scale 0, offset near 2**31) would make a comparison
    allocate over its whole index span: the profile is refused, naming the column."""
    text = json.dumps(profile.capture(_frame(50), model="m").to_dict())
    for sign, scale, offset in (("positive", 0, 2**31 - 2), ("negative", 0, -(2**31)),
                                ("positive", 20, 1024 << 20)):
        damaged = json.loads(text)
        histogram = damaged["columns"][0]["histogram"]
        histogram["scale"] = scale
        # The other sign's buckets emptied: their offsets belong to the profile's own scale.
        histogram["positive"] = histogram["negative"] = {"offset": 0, "counts": []}
        histogram[sign] = {"offset": offset, "counts": [5]}
        (tmp_path / "offset.json").write_text(json.dumps(damaged))
        with pytest.raises(profile.ProfileError,
                           match=rf"columns\[0\]\.histogram\.{sign}: .*scale {scale}"):
            profile.load(tmp_path / "offset.json")
    damaged = json.loads(text)
    damaged["columns"][0]["histogram"]["scale"] = 100
    (tmp_path / "scale.json").write_text(json.dumps(damaged))
    with pytest.raises(profile.ProfileError, match=r"columns\[0\]\.histogram\.scale"):
        profile.load(tmp_path / "scale.json")
