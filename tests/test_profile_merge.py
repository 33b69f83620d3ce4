"""Profile builders of parts merge into the builder of the whole (what ``driftline.spark``
relies on), and a profile does not depend on the order its rows came in."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyarrow as pa
import pytest

from driftline.profile import ProfileBuilder, ProfileError, add_chunk

ROWS = 9_000
PARTS = 4


def _table(rows: int) -> pa.Table:
    rng = np.random.default_rng(11)
    values = rng.normal(3, 2, rows)
    values[rng.random(rows) < 0.03] = np.nan
    labels = np.array([f"v{i}" for i in range(80)], dtype=object)[rng.integers(0, 80, rows)]
    return pa.table({"x": pa.array(values, mask=np.isnan(values)),
                     "flag": rng.integers(0, 3, rows).astype(np.float64),
                     "kind": pa.array(labels.tolist(), type=pa.string()),
                     "pred": rng.integers(0, 2, rows)})


# 80 labels: within the 4 * top_k candidates a builder holds, so no count is folded away.
TOP_K = 20


def _parts(table: pa.Table) -> list[pa.Table]:
    bounds = np.linspace(0, table.num_rows, PARTS + 1).astype(int).tolist()
    return [table.slice(lo, hi - lo) for lo, hi in itertools.pairwise(bounds)]


def _built(parts: list[pa.Table], top_k: int = TOP_K) -> ProfileBuilder:
    merged = ProfileBuilder("m", "1", top_k=top_k)
    for part in parts:
        builder = ProfileBuilder("m", "1", top_k=top_k)
        add_chunk(builder, part, "pred")
        merged.merge(builder)
    return merged


def test_merged_part_builders_equal_one_builder_of_all_rows() -> None:
    table = _table(ROWS)
    whole = ProfileBuilder("m", "1", top_k=TOP_K)
    add_chunk(whole, table, "pred")
    # Parts in reverse order: the merge must not depend on the order either.
    parts = _parts(table)
    merged = _built(parts[::-1]).build()
    one = whole.build()
    assert merged.row_count == one.row_count == ROWS
    assert list(merged.columns) == list(one.columns)
    for name, column in merged.columns.items():
        other = one.columns[name]
        assert (column.count, column.missing, column.other) == (
            other.count, other.missing, other.other), name
        assert list(column.frequencies.items()) == list(other.frequencies.items()), name
        assert column.values == other.values, name
        if column.histogram is not None:
            mine, theirs = column.histogram.to_dict(), other.histogram.to_dict()
            assert mine.pop("sum") == pytest.approx(theirs.pop("sum"), rel=1e-12)
            assert mine == theirs, name
            assert math.isclose(column.m2, other.m2, rel_tol=1e-12)
    flags = table.column("flag").to_numpy()
    assert merged.columns["flag"].values == {v: int((flags == v).sum()) for v in (0, 1, 2)}


def test_past_the_candidates_merged_counts_are_bounded() -> None:
    """With more labels than 4 * top_k, parts fold on their own: the kept counts are lower
    bounds of the true ones and kept + other still adds up to every row present."""
    table = _table(ROWS)
    parts = _parts(table)
    column = _built(parts, top_k=5).build().columns["kind"]
    true = {c["values"]: c["counts"] for c in table.column("kind").value_counts().to_pylist()}
    assert len(column.frequencies) == 5
    assert all(0 < count <= true[label] for label, count in column.frequencies.items())
    assert sum(column.frequencies.values()) + column.other == ROWS - column.missing


def test_top_k_ties_do_not_depend_on_row_order() -> None:
    """Two values with equal counts and room for one: the label decides, not which came
    first (a Spark profile's partitions arrive in any order)."""
    kept = []
    for order in (["b", "a"], ["a", "b"]):
        builder = ProfileBuilder("m", top_k=1)
        for value in order:
            builder.add_column("c", np.array([value], dtype=object))
        kept.append(builder.build().columns["c"].frequencies)
    assert kept == [{"a": 1}, {"a": 1}]


def test_builders_of_different_models_do_not_merge() -> None:
    with pytest.raises(ProfileError, match="different models"):
        ProfileBuilder("m", "1").merge(ProfileBuilder("m", "2"))


def test_a_part_builder_pickles_as_spark_ships_it_and_merges_the_same() -> None:
    """Spark's workers send their part's builder to the driver pickled: it must pickle
    (a lock in the projections cache once made it fail) and merge as the original does."""
    import pickle

    parts = _parts(_table(ROWS))
    direct = _built(parts).build()
    merged = ProfileBuilder("m", "1", top_k=TOP_K)
    for part in parts:
        builder = ProfileBuilder("m", "1", top_k=TOP_K)
        add_chunk(builder, part, "pred")
        merged.merge(pickle.loads(pickle.dumps(builder)))
    shipped = merged.build()
    assert shipped.row_count == direct.row_count == ROWS
    for name, column in shipped.columns.items():
        assert column.to_dict() == direct.columns[name].to_dict(), name
