"""``profile``/``compare`` on Parquet files (issue 17): string columns read as dictionaries
and counted from their indices, numeric columns as NumPy views, no pandas on that path,
and the same profile as reading every value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftline import columns, profile

RNG = np.random.default_rng(23)
ROWS = 3000


def _frame() -> pd.DataFrame:
    labels = np.array(["red", "green", "blue", "", "nul\x00"], dtype=object)
    colour = labels[RNG.integers(0, labels.size, ROWS)]
    colour[RNG.random(ROWS) < 0.1] = None
    counts = pd.array(RNG.integers(-5, 50, ROWS), dtype="Int64")
    counts[RNG.random(ROWS) < 0.05] = pd.NA
    return pd.DataFrame({"colour": colour, "amount": RNG.lognormal(2, 1, ROWS),
                         "count": counts, "city": RNG.choice(["a", "b"], ROWS)})


def _write(path: Path, frame: pd.DataFrame) -> Path:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table.replace_schema_metadata(None), path, row_group_size=1000)
    return path


def test_a_parquet_file_profiles_as_its_values_do(tmp_path: Path) -> None:
    frame = _frame()
    from_file = profile.profile_file(_write(tmp_path / "data.parquet", frame), model="m",
                                     chunk_rows=700)
    builder = profile.ProfileBuilder("m")
    builder.add_columns([(name, frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
                          if pd.api.types.is_numeric_dtype(frame[name])
                          else frame[name].to_numpy(dtype=object, na_value=None))
                         for name in frame.columns])
    builder.add_rows(len(frame))
    from_values = builder.build()
    assert from_file.row_count == ROWS
    for name in frame.columns:
        got, expected = from_file.columns[name], from_values.columns[name]
        assert (got.kind, got.count, got.missing) == (expected.kind, expected.count,
                                                       expected.missing), name
        assert got.frequencies == expected.frequencies, name
        assert got.other == expected.other, name
        if expected.histogram is not None:  # sums differ by rounding: added per chunk
            got_hist, expected_hist = got.histogram.to_dict(), expected.histogram.to_dict()
            assert got_hist.pop("sum") == pytest.approx(expected_hist.pop("sum"), rel=1e-12)
            assert got_hist == expected_hist, name
    colour = from_file.columns["colour"]
    assert colour.missing == int(frame["colour"].isna().sum())
    assert colour.frequencies["nul"] == int((frame["colour"] == "nul\x00").sum())


def test_string_columns_are_counted_from_dictionary_indices_not_decoded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def decoded(self, values):
        raise AssertionError("a string column was decoded into Python objects")
    monkeypatch.setattr(columns.CategoryColumn, "_add_strings", decoded)
    monkeypatch.setattr(columns.CategoryColumn, "_add_any", decoded)
    built = profile.profile_file(_write(tmp_path / "data.parquet", _frame()), model="m")
    assert sum(built.columns["city"].frequencies.values()) == ROWS


def test_profiling_a_parquet_file_does_not_import_pandas(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.parquet", _frame())
    code = ("import sys; from driftline import profile; "
            f"p = profile.profile_file({str(path)!r}, model='m'); "
            "print(p.row_count, 'pandas' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.split() == [str(ROWS), "False"]


def test_numeric_columns_are_views_and_nulls_become_nan() -> None:
    batch = pa.record_batch({"x": pa.array(RNG.normal(size=3)),
                             "n": pa.array([1, None, 3], type=pa.int64())})
    x = profile._arrow_values(batch.column("x"), counted=True)
    assert not x.flags.owndata and np.array_equal(x, batch.column("x").to_numpy())
    n = profile._arrow_values(batch.column("n"), counted=True)
    assert n.dtype == np.float64 and np.array_equal(n, [1.0, np.nan, 3.0], equal_nan=True)
