"""The checkpoint's blobs of queued points: exact round trips, damage named, a file of an
unreleased schema refused, and every point kept across restarts that merge differently."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest

from driftline import exphist
from driftline.processor.ml_drift import window as _ml_window
from driftline.processor.ml_drift.part_blob import parts_blob, parts_from_blob
from driftline.processor.ml_drift.window import Part, StreamKey, Window
from driftline.processor.ml_drift.window_store import (
    SCHEMA_VERSION,
    Changes,
    WindowStore,
    WindowStoreError,
)


def _part(rng: np.random.Generator, top: int, negative: bool) -> Part:
    pos = rng.integers(0, top, size=int(rng.integers(0, 40)), dtype=np.int64)
    neg = rng.integers(0, top, size=int(rng.integers(1, 9)), dtype=np.int64) if negative \
        else np.zeros(0, dtype=np.int64)
    return (int(rng.integers(-4, 21)), int(rng.integers(0, 5)), int(rng.integers(-300, 300)),
            pos, int(rng.integers(-50, 50)), neg, pos.size + neg.size,
            float(rng.normal()), float(-rng.random()), float(rng.random()))


def assert_same_parts(got: list[tuple[str, Part]], expected: list[tuple[str, Part]]) -> None:
    assert len(got) == len(expected)
    for (column, part), (want_column, want) in zip(got, expected, strict=True):
        assert column == want_column
        for index in (0, 1, 2, 4, 6, 7, 8, 9):
            assert part[index] == want[index]
        for index in (3, 5):
            assert part[index].dtype == np.int64
            np.testing.assert_array_equal(part[index], want[index])


@pytest.mark.parametrize("top", [2, 250, 60_000, 3_000_000_000, 2**62])
def test_parts_of_many_columns_round_trip_at_every_count_width(top: int) -> None:
    rng = np.random.default_rng(top % 1000)
    parts = [(f"feature_{i % 7}", _part(rng, top, negative=i % 3 == 0)) for i in range(60)]
    blob = parts_blob(parts)
    assert_same_parts(parts_from_blob(blob), parts)
    if top < 256:  # the narrowest width that holds the counts: one byte per bucket
        buckets = sum(p[3].size + p[5].size for _, p in parts)
        assert len(blob) < 100 * 60 + buckets + 200


def test_nan_and_infinite_sums_and_bounds_round_trip() -> None:
    empty = np.zeros(0, dtype=np.int64)
    part: Part = (3, 2, 0, empty, 0, empty, 2, float("nan"), float("inf"), float("-inf"))
    [(column, back)] = parts_from_blob(parts_blob([("x", part)]))
    assert column == "x" and back[1] == 2 and np.isnan(back[7])
    assert back[8:] == (float("inf"), float("-inf"))


@pytest.mark.parametrize("damage", ["truncated", "magic", "sizes", "column"])
def test_damaged_blobs_are_named_as_such(damage: str) -> None:
    rng = np.random.default_rng(1)
    blob = bytearray(parts_blob([("a", _part(rng, 100, True)), ("b", _part(rng, 100, True))]))
    if damage == "truncated":
        blob = blob[:-3]
    elif damage == "magic":
        blob[:4] = b"NOPE"
    else:
        names_size = struct.unpack_from("<I", blob, 8)[0]
        ints_at = 16 + names_size
        field = 0 if damage == "column" else 4  # the first part's column index / size
        struct.pack_into("<q", blob, ints_at + 8 * field, 5 if damage == "column" else 999)
    with pytest.raises(ValueError, match="damaged checkpoint parts"):
        parts_from_blob(bytes(blob))


def test_a_file_of_an_unreleased_schema_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "ml.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "INSERT INTO meta VALUES ('schema', '2');")
    db.commit()
    db.close()
    with pytest.raises(WindowStoreError, match=f"'{path}': schema version 2, this "
                       f"Driftline writes {SCHEMA_VERSION}; move the file away"):
        WindowStore(path)
    tables = {row[0] for row in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"meta"}


@pytest.mark.parametrize("then_added", [1, 60])  # 60: the second process merges again
def test_a_merge_while_restoring_keeps_every_point_through_the_next_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, then_added: int,
) -> None:
    """A restart under a lower merge limit (another PENDING_MERGE_LIMIT, another
    version) may merge stored points while reading them back. The next checkpoint drops
    the window's stored points, so it must rewrite every merged column and the points
    queued after the merge; a second restart still sees every point once. (The limits are
    set by monkeypatching ``merge_limit``, standing in for two versions.)"""
    rng = np.random.default_rng(8)
    key = StreamKey("churn", "3", "predict")
    sent: dict[str, list[exphist.ExpHistogram]] = {"x": [], "y": []}
    store = WindowStore(tmp_path / "ml.sqlite")

    def commit(window: Window) -> None:
        store.commit(Changes(open_windows={(key.text(), 7): window.checkpoint_delta()}))

    def add(window: Window, column: str, n: int) -> None:
        for _ in range(n):
            hist = exphist.from_values(rng.normal(10, 3, 30))
            sent[column].append(hist)
            window.add_numeric(column, hist)

    def restored() -> Window:
        [(_, state)] = store.load().windows.values()
        window = Window.from_dict(key, 7, state)
        window.add_parts(store.load().parts.get((key.text(), 7), ()))
        return window

    try:
        monkeypatch.setattr(_ml_window, "merge_limit", lambda *_: 1000)  # the first process
        first = Window(key, 7)
        add(first, "x", 5)
        add(first, "y", 150)
        commit(first)

        monkeypatch.setattr(_ml_window, "merge_limit", lambda *_: 100)  # the second one
        second = restored()  # merges x and y at y's 100th point; 50 of y queued after
        add(second, "y", then_added)
        commit(second)

        monkeypatch.setattr(_ml_window, "merge_limit", lambda *_: 1000)
        third = restored()
        for column, hists in sent.items():
            got, expected = third.numeric[column], exphist.merge(hists)
            assert (got.count, got.scale, got.positive.offset) == \
                (expected.count, expected.scale, expected.positive.offset)
            np.testing.assert_array_equal(got.positive.counts, expected.positive.counts)
    finally:
        store.close()
