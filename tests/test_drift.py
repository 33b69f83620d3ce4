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
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

from driftline import _drift_methods, drift, exphist

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


# --- the special functions and the tests built on them ----------------------------------


def test_gammaincc_matches_scipy_on_a_grid() -> None:
    from scipy.special import gammaincc

    for a in [0.5, 1.0, 1.5, 2.0, 4.5, 10.0, 50.0, 200.0, 1000.0]:
        for x in [1e-3, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 300.0, 1000.0, 1500.0]:
            expected = gammaincc(a, x)
            assert _drift_methods.gammaincc(a, x) == pytest.approx(expected, rel=1e-10,
                                                                   abs=1e-300)


def test_kolmogorov_survival_matches_scipy_on_a_grid() -> None:
    from scipy.special import kolmogorov

    for x in np.r_[0.0, np.linspace(0.05, 3.0, 120), 5.0]:
        assert _drift_methods.kolmogorov_sf(x) == pytest.approx(kolmogorov(x), abs=1e-12)


@pytest.mark.parametrize(("n", "m"), [(50, 50), (100, 300), (300, 300), (1000, 1000),
                                      (500, 20_000), (5000, 5000)])
def test_ks_p_value_tracks_scipy_asymptotic_p_value(n: int, m: int) -> None:
    """Stephens' corrected Kolmogorov limit against scipy's ``kstwo`` at n m / (n + m):
    within 3 % of max(p, 0.05), so verdicts at p < 0.05 can only differ at the border."""
    rng = np.random.default_rng(n + m)
    for shift in [0.0, 0.05, 0.1, 0.2, 0.4]:
        a, b = rng.normal(0, 1, n), rng.normal(shift, 1, m)
        exact = ks_2samp(a, b, method="asymp")
        ours = _drift_methods.ks_p_value(exact.statistic, n, m)
        assert abs(ours - exact.pvalue) <= 0.03 * max(exact.pvalue, 0.05)


def test_ks_on_histograms_matches_ks_2samp() -> None:
    reference, current = RNG.normal(0, 1, 5000), RNG.normal(0.1, 1.1, 4000)
    statistic, p_value = drift.ks(exphist.from_values(reference), exphist.from_values(current))
    exact = ks_2samp(reference, current, method="asymp")
    assert statistic == pytest.approx(exact.statistic, abs=0.005)
    # p moves fast with the statistic at this size: check it is the statistic's, and the verdict
    assert p_value == _drift_methods.ks_p_value(statistic, 5000, 4000)
    assert (p_value < drift.DEFAULT_KS_P_VALUE) == (exact.pvalue < drift.DEFAULT_KS_P_VALUE)


def test_ks_of_identical_histograms_is_zero_with_p_one() -> None:
    hist = exphist.from_values(RNG.lognormal(0, 1, 2000))
    assert drift.ks(hist, hist) == (0.0, 1.0)


def test_chi_square_matches_chi2_contingency() -> None:
    reference = {"a": 50, "b": 30, "c": 20, "d": 3}
    current = {"a": 40, "b": 45, "c": 10, "e": 2}
    keys = ["a", "b", "c", "d", "e"]
    table = [[reference.get(k, 0) for k in keys], [current.get(k, 0) for k in keys]]
    expected = chi2_contingency(table, correction=False)
    statistic, p_value = drift.chi_square(reference, current)
    assert statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert drift.chi_square({"a": 10}, {"a": 7}) == (0.0, 1.0)  # one category: nothing to test


def test_binned_numeric_methods_match_numpy_formulas_on_the_merged_bins() -> None:
    reference = exphist.from_values(RNG.lognormal(0, 1, 20_000))
    current = exphist.from_values(RNG.lognormal(0.3, 1.2, 20_000))
    ref, cur = drift.merged_bins(reference, current)
    assert ref.size >= 8 and (ref / ref.sum()).min() >= drift.DEFAULT_MIN_BIN_SHARE
    p, q = ref / ref.sum(), cur / cur.sum()
    floored_p = np.maximum(p, drift.PROBABILITY_FLOOR)
    floored_q = np.maximum(q, drift.PROBABILITY_FLOOR)
    assert drift.kl(reference, current) == pytest.approx(
        np.sum(floored_p * np.log(floored_p / floored_q)))
    assert drift.hellinger(reference, current) == pytest.approx(
        np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2))
    assert drift.jensen_shannon_numeric(reference, current) == pytest.approx(jensenshannon(p, q))


def test_total_variation_and_categorical_kl_match_formulas() -> None:
    reference = {"a": 500, "b": 300, "c": 200}
    current = {"a": 200, "b": 300, "d": 500}
    assert drift.total_variation(reference, current) == pytest.approx(0.5)
    assert drift.total_variation(reference, reference) == 0.0


# --- verdicts: method choice, p-values, overrides ---------------------------------------


def test_p_value_scores_drift_below_their_level() -> None:
    assert drift.DriftScore("x", "numeric", "ks", 0.3, 0.05, p_value=0.01).drifted
    assert not drift.DriftScore("x", "numeric", "ks", 0.3, 0.05, p_value=0.2).drifted


def test_small_references_get_a_test_and_large_ones_a_distance() -> None:
    t = drift.Thresholds()
    small = exphist.from_values(RNG.normal(0, 1, 500))
    large = exphist.from_values(RNG.normal(0, 1, 5000))
    current = exphist.from_values(RNG.normal(0.5, 1, 500))
    on_small = drift.numeric_scores("x", small, current, t)
    on_large = drift.numeric_scores("x", large, current, t)
    assert [s.method for s in on_small] == ["ks", "wasserstein", "psi"]
    assert on_small[0].p_value is not None and on_small[0].threshold == drift.DEFAULT_KS_P_VALUE
    assert on_small[0].drifted and on_large[0].drifted
    assert [s.method for s in on_large] == ["wasserstein", "ks", "psi"]
    few = {"a": 300, "b": 200}
    many = {"a": 3000, "b": 2000}
    moved = {"a": 100, "b": 150}
    assert [s.method for s in drift.categorical_scores("c", few, moved, t)] == [
        "chisquare", "jensenshannon", "psi"]
    assert [s.method for s in drift.categorical_scores("c", many, moved, t)] == [
        "jensenshannon", "chisquare", "psi"]
    assert drift.categorical_scores("c", few, moved, t)[0].drifted


def test_overrides_replace_the_verdict_method_of_one_column() -> None:
    t = drift.Thresholds(overrides={"x": ("hellinger", 0.2), "c": ("total_variation", 0.05)})
    reference = exphist.from_values(RNG.normal(0, 1, 5000))
    current = exphist.from_values(RNG.normal(0.2, 1, 5000))
    scores = drift.numeric_scores("x", reference, current, t)
    assert (scores[0].method, scores[0].threshold) == ("hellinger", 0.2)
    assert drift.numeric_scores("other", reference, current, t)[0].method == "wasserstein"
    cat = drift.categorical_scores("c", {"a": 10, "b": 10}, {"a": 12, "b": 8}, t)
    assert (cat[0].method, cat[0].score) == ("total_variation", pytest.approx(0.1))
    assert cat[0].drifted
    with pytest.raises(drift.DriftMethodError, match="does not apply"):
        drift.Thresholds(overrides={"x": ("chisquare", 0.05)}).method_for("x", "numeric")
    with pytest.raises(drift.DriftMethodError, match="unknown drift method"):
        t.threshold("energy")


def test_context_scores_are_configurable_and_checked() -> None:
    reference = exphist.from_values(RNG.normal(0, 1, 5000))
    scores = drift.numeric_scores("x", reference, reference, drift.Thresholds(),
                                  context=("kl", "hellinger", "jensenshannon"))
    assert [s.method for s in scores] == ["wasserstein", "kl", "hellinger", "jensenshannon"]
    assert all(not s.drifted for s in scores)
    with pytest.raises(drift.DriftMethodError):
        drift.numeric_scores("x", reference, reference, drift.Thresholds(),
                             context=("total_variation",))


def test_processor_thresholds_config_carries_every_method() -> None:
    from driftline.processor.ml_drift.processor import ThresholdsConfig

    assert ThresholdsConfig().to_thresholds() == drift.Thresholds()
    config = ThresholdsConfig(ks=0.01, small_reference_rows=5000)
    assert config.to_thresholds().method_for("x", "numeric", 3000) == ("ks", 0.01)
    problems = ThresholdsConfig(ks=2.0, total_variation=-1.0, small_reference_rows=-3).validate()
    assert [p.split(":")[0] for p in problems] == ["ks", "total_variation",
                                                   "small_reference_rows"]


def test_unknown_current_categories_fold_into_the_references_other() -> None:
    from driftline.profile import ColumnProfile

    column = ColumnProfile("plan", "feature", "categorical", 100, 0,
                           frequencies={"basic": 60, "pro": 30}, other=10)
    reference = column.category_counts()
    assert reference == {"basic": 60, "pro": 30, "__other__": 10}
    current = {"basic": 5, "team": 7, "enterprise": 3, "__other__": 1}
    assert drift.fold_unknown(current, reference) == {"basic": 5, "__other__": 11}
