from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from driftline.columns import IDENTITY_SAMPLE_ROWS, CategoryColumn, _distinct_values

RNG = np.random.default_rng(11)


def _strings(rows: int) -> np.ndarray:
    labels = np.asarray(["a", "b", "c", "d"], dtype=object)
    values = labels[RNG.integers(0, labels.size, rows)]
    # Past the sampled rows: missing values, a rare label, and a label equal to a sampled
    # one but a different object, so counting by address alone would split it.
    tail = 10 * IDENTITY_SAMPLE_ROWS
    values[tail] = None
    values[tail + 1] = float("nan")
    values[tail + 2] = "rare"
    values[tail + 3] = "".join(["a"])
    return values


@pytest.mark.parametrize("values", [
    np.asarray(["x", "y", None, "x"] * 25, dtype=object),  # too small to sample
    _strings(20 * IDENTITY_SAMPLE_ROWS),
])
def test_distinct_values_count_like_a_counter(values: np.ndarray) -> None:
    ours = _distinct_values(values)
    # The NaN key is its own object on both sides; repr orders the keys of mixed types.
    assert sorted(ours.items(), key=repr) == sorted(Counter(values.tolist()).items(), key=repr)
    assert sum(ours.values()) == values.size


def test_string_column_counts_missing_and_labels_as_the_row_by_row_path() -> None:
    values = _strings(20 * IDENTITY_SAMPLE_ROWS)
    fast = CategoryColumn(top_k=3)
    fast.add(values)
    present = [v for v in values.tolist() if isinstance(v, str)]
    assert fast.count == values.size
    assert fast.missing == 2
    kept, other = fast.top()
    expected = Counter(present)
    assert kept == dict(expected.most_common(3))
    assert other == sum(expected.values()) - sum(kept.values())
    assert expected["rare"] == 1 and expected["a"] == sum(1 for v in present if v == "a")


@pytest.mark.parametrize("values", [
    np.array([1, "1", 1.0, True, None] * 2000, dtype=object),
    np.array([True, False, True] * 2000),
])
def test_mixed_types_keep_their_printed_labels(values: np.ndarray) -> None:
    column = CategoryColumn(top_k=10)
    column.add(values)
    expected = Counter(str(v) for v in values.tolist() if v is not None)
    assert column.top() == (dict(expected.most_common(10)), 0)
    assert column.missing == int(sum(v is None for v in values.tolist()))
