"""Drift statistics from histograms against the same statistics on the raw data.

Tolerances: values are assumed uniform within a bucket, and at the scales 160 buckets
reach for these shapes (2 to 5) a bucket spans 2 % to 19 % of its position; Wasserstein
integrates CDF differences, so its error stays near 3 % of the reference spread. PSI bins
are merged exponential buckets holding >= 10 % of the reference, close to but not exactly
deciles, so PSI agrees with decile PSI within 25 %.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from driftline import drift, exphist

RNG = np.random.default_rng(11)
N = 100_000

SHAPES = {
    "normal": lambda shift: RNG.normal(shift, 1, N),
    "lognormal": lambda shift: RNG.lognormal(shift, 0.8, N),
    "uniform": lambda shift: RNG.uniform(-1 + shift, 1 + shift, N),
    "exponential": lambda shift: RNG.exponential(1 + shift, N),
    "zero-inflated": lambda shift: np.r_[RNG.normal(shift, 1, N // 2), np.zeros(N // 2)],
}


def decile_psi(reference: np.ndarray, current: np.ndarray) -> float:
    edges = np.quantile(reference, np.linspace(0, 1, 11))
    edges[0], edges[-1] = -np.inf, np.inf
    ref = np.maximum(np.histogram(reference, edges)[0] / reference.size, drift.PROBABILITY_FLOOR)
    cur = np.maximum(np.histogram(current, edges)[0] / current.size, drift.PROBABILITY_FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5])
def test_wasserstein_matches_scipy_on_raw_data(shape: str, shift: float) -> None:
    reference, current = SHAPES[shape](0.0), SHAPES[shape](shift)
    exact = wasserstein_distance(reference, current)
    ours = drift.wasserstein(exphist.from_values(reference), exphist.from_values(current))
    assert ours == pytest.approx(exact, abs=0.03 * reference.std())


@pytest.mark.parametrize("shape", ["normal", "lognormal", "exponential"])
@pytest.mark.parametrize("shift", [0.05, 0.25, 0.5])
def test_psi_matches_decile_psi(shape: str, shift: float) -> None:
    reference, current = SHAPES[shape](0.0), SHAPES[shape](shift)
    ours = drift.psi(exphist.from_values(reference), exphist.from_values(current))
    assert ours == pytest.approx(decile_psi(reference, current), rel=0.25, abs=0.002)


def test_normed_wasserstein_verdicts() -> None:
    reference = exphist.from_values(RNG.normal(10, 2, N))
    unshifted = exphist.from_values(RNG.normal(10, 2, N))
    shifted = exphist.from_values(RNG.normal(11, 2, N))  # half a standard deviation
    thresholds = drift.Thresholds()
    calm = drift.numeric_scores("x", reference, unshifted, thresholds)
    moved = drift.numeric_scores("x", reference, shifted, thresholds)
    assert [s.method for s in calm] == ["wasserstein", "ks", "psi"]
    assert not calm[0].drifted and calm[0].score < 0.02
    assert moved[0].drifted and moved[0].score == pytest.approx(0.5, abs=0.03)


def test_constant_reference_column_is_normed_by_the_floor() -> None:
    reference = exphist.from_values(np.full(1000, 3.0))
    current = exphist.from_values(np.full(1000, 3.0))
    assert drift.wasserstein_normed(reference, current) == 0.0


def test_psi_tails_outside_reference_are_merged_not_infinite() -> None:
    reference = exphist.from_values(RNG.normal(0, 1, N))
    far_away = exphist.from_values(RNG.normal(50, 1, 1000))
    score = drift.psi(reference, far_away)
    assert np.isfinite(score) and score > 1.0


def test_jensen_shannon_and_categorical_psi_match_formulas() -> None:
    reference = {"a": 500, "b": 300, "c": 200}
    current = {"a": 200, "b": 300, "d": 500}
    keys = ["a", "b", "c", "d"]
    ref = np.array([reference.get(k, 0) for k in keys], dtype=float)
    cur = np.array([current.get(k, 0) for k in keys], dtype=float)
    assert drift.jensen_shannon(reference, current) == pytest.approx(jensenshannon(ref, cur))
    p = np.maximum(ref / ref.sum(), drift.PROBABILITY_FLOOR)
    q = np.maximum(cur / cur.sum(), drift.PROBABILITY_FLOOR)
    assert drift.categorical_psi(reference, current) == pytest.approx(
        np.sum((q - p) * np.log(q / p)))
    assert drift.jensen_shannon(reference, reference) == pytest.approx(0.0, abs=1e-12)


def test_dataset_share_counts_each_column_once_by_its_verdict_statistic() -> None:
    t = drift.Thresholds()
    scores = [
        drift.DriftScore("a", "numeric", "wasserstein", 0.5, t.wasserstein),
        drift.DriftScore("a", "numeric", "psi", 0.0, t.psi),
        drift.DriftScore("b", "numeric", "wasserstein", 0.01, t.wasserstein),
        drift.DriftScore("b", "numeric", "psi", 0.9, t.psi),  # context only, not the verdict
        drift.DriftScore("c", "categorical", "jensenshannon", 0.2, t.jensenshannon),
        drift.DriftScore("d", "categorical", "jensenshannon", 0.0, t.jensenshannon),
    ]
    assert drift.dataset_share(scores) == pytest.approx(0.5)
    assert drift.dataset_share([]) == 0.0
