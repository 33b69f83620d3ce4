"""Deferred merging in ml_drift windows: histograms queued per column and merged in one
vectorised pass give exactly what ``exphist.merge`` one by one gives, and a huge point is
downscaled on receipt."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest

from driftline import exphist
from driftline.exphist import ExpHistogram
from driftline.processor.component.ml_points import histogram_from_point
from driftline.processor.ml_drift.part_blob import parts_from_blob
from driftline.processor.ml_drift.points import part_from_point
from driftline.processor.ml_drift.window import (
    PENDING_MERGE_LIMIT,
    StreamKey,
    Window,
    merge_many,
)
from driftline.processor.ml_drift.window_store import WindowStore
from tests.processor.ml_drift.test_ml_drift import (
    MODEL,
    NS,
    T0,
    Capture,
    Clock,
    app_batch,
    exp_point,
    rows_point,
)
from tests.processor.ml_drift.test_ml_drift_store import started

KEY = StreamKey("churn", "3", "predict")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(21)


def random_histograms(rng: np.random.Generator, n: int) -> list[ExpHistogram]:
    """Histograms of varied scales, spans, signs and zeros (some needing a downscale when
    merged, one empty)."""
    hists = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            values = rng.normal(40, 10, 200)
        elif kind == 1:
            values = rng.lognormal(0, 3, 300)  # a wide span: a coarse scale
        elif kind == 2:
            values = np.concatenate([rng.normal(-5, 2, 50), np.zeros(7), rng.normal(5, 1, 50)])
        elif kind == 3:
            values = rng.uniform(1.0, 1.001, 40)  # a narrow span: a fine scale
        else:
            values = rng.normal(0, 1e6, 100)
        hists.append(exphist.from_values(values, max_size=int(rng.integers(8, 161))))
    hists.append(exphist.empty())
    return hists


def one_by_one(hists: list[ExpHistogram]) -> ExpHistogram:
    """What the window did before: keep the first, merge each next one into it."""
    return functools.reduce(lambda a, b: exphist.merge([a, b]), hists)


def assert_same(got: ExpHistogram, want: ExpHistogram) -> None:
    assert (got.scale, got.zero_count, got.count) == (want.scale, want.zero_count, want.count)
    assert (got.positive.offset, got.negative.offset) == (want.positive.offset,
                                                           want.negative.offset)
    np.testing.assert_array_equal(got.positive.counts, want.positive.counts)
    np.testing.assert_array_equal(got.negative.counts, want.negative.counts)
    assert got.sum == want.sum or (math.isnan(got.sum) and math.isnan(want.sum))
    assert (got.min, got.max) == (want.min, want.max)


def test_vectorised_merge_equals_merging_one_by_one(rng: np.random.Generator) -> None:
    hists = random_histograms(rng, 40)
    want = one_by_one(hists)
    assert want.scale < max(h.scale for h in hists)  # the merge did have to downscale
    assert_same(merge_many(hists), want)
    assert_same(merge_many(hists), exphist.merge(hists))


def test_window_queue_merges_as_one_by_one_past_the_bound(rng: np.random.Generator) -> None:
    hists = random_histograms(rng, 2 * PENDING_MERGE_LIMIT + 17)
    window = Window(KEY, 0)
    for hist in hists:
        window.add_numeric("age", hist)
    assert_same(window.numeric["age"], one_by_one(hists))
    # Points arriving after a read go on top of the merged state.
    window.add_numeric("age", hists[0])
    assert_same(window.numeric["age"], one_by_one([*hists, hists[0]]))


def test_parts_read_from_otlp_points_merge_like_histograms(rng: np.random.Generator) -> None:
    hists = random_histograms(rng, 12)[:-1]
    points = [exp_point(h, MODEL, T0) for h in hists]
    window = Window(KEY, 0)
    for point in points:
        window.add_numeric("age", part_from_point(point))
    assert_same(window.numeric["age"], one_by_one([histogram_from_point(p) for p in points]))


def test_a_single_point_is_kept_as_it_came(rng: np.random.Generator) -> None:
    hist = exphist.from_values(rng.normal(40, 10, 500))
    window = Window(KEY, 0)
    window.add_numeric("age", hist)
    assert_same(window.numeric["age"], hist)


def test_a_huge_point_is_downscaled_on_receipt() -> None:
    counts = np.ones(1_000_000, dtype=np.int64)
    huge = ExpHistogram(20, 0, exphist.Buckets(5, counts), exphist.Buckets(0, counts[:0]),
                        1_000_000, 1.5e6, 1.0, 2.0)
    window = Window(KEY, 0)
    window.add_numeric("age", huge)
    stored = window.numeric["age"]
    assert stored.positive.counts.size <= exphist.DEFAULT_MAX_SIZE
    assert int(stored.positive.counts.sum()) == 1_000_000
    assert_same(stored, exphist.merge([huge]))


def test_the_checkpoint_holds_queued_points_and_restores_them_exactly(
    tmp_path: Path, rng: np.random.Generator,
) -> None:
    """Open windows are written incrementally (merged state + queued parts); across a merge
    past the bound and a restart the file still gives the one-by-one merge."""
    clock, capture = Clock(T0), Capture()
    proc = started(tmp_path, clock, capture)
    sent = []
    try:
        clock.at(2)
        for i in range(PENDING_MERGE_LIMIT + 40):
            values = rng.normal(40, 10 + i % 7, 20)
            sent.append(exphist.from_values(values))
            proc.consume_metrics(app_batch(T0 + NS, {"age": values}))
    finally:
        proc.shutdown()  # the open window stays in the file
    store = WindowStore(tmp_path / "ml.sqlite")
    try:
        snapshot = store.load()
    finally:
        store.close()
    [((stream, index), (closed, state))] = snapshot.windows.items()
    assert closed == 0
    blobs = snapshot.parts[(stream, index)]
    queued = [part for blob in blobs for part in parts_from_blob(blob)]
    assert 0 < len(queued) < PENDING_MERGE_LIMIT  # merged once, the rest queued
    window = Window.from_dict(StreamKey.from_text(stream), index, state)
    window.add_parts(blobs)
    assert_same(window.numeric["age"], one_by_one(sent))
    assert window.rows == sum(20 for _ in sent)

    again = started(tmp_path, clock, capture)  # and the processor resumes from it
    try:
        assert again.stats().restored_windows == 1
        clock.at(12)
        assert rows_point(again.evaluate_due()).as_int == 20 * len(sent)
    finally:
        again.shutdown()
