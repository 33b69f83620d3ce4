"""Numeric drift statistics against SciPy on the raw values, over generated families of columns
(issue 13, points 1 to 3 and 7).

Tolerances, and why:

* Normed Wasserstein: from profiles (``compare``) within 2 % of ``wasserstein_distance /
  std`` on the raw values, plus 0.0005 on near-zero scores. From histograms of the SDK's
  160 buckets alone (the processor's baseline windows, old profiles), where the norm is
  the buckets' standard deviation,
  within 3 %, plus ``WASSERSTEIN_ABS`` (0.002, a fiftieth of the 0.1 threshold) for the
  near-zero scores of unshifted columns, where a bucket's smear is all there is. Families:
  unit spread at offsets 0, 1e3 and 1e5, codes 1/2 with 2 % twos, 0/1 flags, integer codes
  0..9, heavy tails (Pareto 1.5, Student t3), lognormal, and two rows moved to a new extreme.
  Offsets beyond about 1e5 spreads are past what a base-2 exponential histogram resolves at
  its finest scale (20: a bucket is 6.6e-7 of its position, 0.66 spreads wide at 1e6 and
  661 at 1e9); docs/ml_drift.md says so with the measured errors.
* KS statistic: ``0 <= D_exact - D_hist <= share``, ``share`` the largest share of one
  side's rows in one bucket at the common scale (see test_drift_accuracy).
* Null calibration: same-distribution draws of 500 rows against 500 from one reference,
  200 draws per column kind, seeded; the small-reference verdict (KS, or chi-square for
  columns of few values) may flag at most 7 % of them at p < 0.05.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp, wasserstein_distance

from driftline import compare, drift, exphist, profile

WASSERSTEIN_REL = 0.02
WASSERSTEIN_ABS = 0.002
# Profiles: 2 %, plus 0.0005 (a two-hundredth of the threshold) for unshifted columns at
# 1e5 with unit spread, where even scale 20 leaves buckets a fifteenth of a spread wide.
WASSERSTEIN_EXACT_ABS = 0.0005
# Histograms only: the norm is the buckets' standard deviation, up to 1.5 % off on heavy
# tails at scale 2 (buckets 19 % wide), measured; see docs/ml_drift.md.
WASSERSTEIN_REL_BUCKET_NORM = 0.03
NULL_DRAWS = 200
NULL_ROWS = 500
MAX_FALSE_ALARMS = 0.07

Family = Callable[[np.random.Generator, int, float], np.ndarray]

# Each family draws a column with a shift (0: the reference's distribution).
FAMILIES: dict[str, Family] = {
    "unit spread at 0": lambda r, n, s: r.normal(s, 1, n),
    "unit spread at 1e3": lambda r, n, s: r.normal(1e3 + s, 1, n),
    "unit spread at 1e5": lambda r, n, s: r.normal(1e5 + s, 1, n),
    "codes 1/2, 2 % twos": lambda r, n, s: 1.0 + (r.random(n) < 0.02 * (1 + 2 * s)),
    "codes 1/2, 2 % ones": lambda r, n, s: 2.0 - (r.random(n) < 0.02 * (1 + 2 * s)),
    "flags 0/1": lambda r, n, s: (r.random(n) < 0.3 + 0.1 * s).astype(np.float64),
    "integer codes 0..9": lambda r, n, s: np.minimum(
        r.integers(0, 10, n) + (r.random(n) < s), 9).astype(np.float64),
    "pareto 1.5": lambda r, n, s: (r.pareto(1.5, n) + 1) * (1 + s),
    "student t3": lambda r, n, s: r.standard_t(3, n) + s,
    "lognormal": lambda r, n, s: r.lognormal(s, 1, n),
}
SHIFTS = (0.0, 0.1, 0.3, 1.0)
SIZES = (500, 20_000)


def _moved_extremes(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Integers 0..99; the current side has two rows moved to a new maximum."""
    reference = rng.integers(0, 100, n).astype(np.float64)
    current = rng.integers(0, 100, n).astype(np.float64) + round(10 * shift)
    current[:2] = 1e4
    return reference, current


def _cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1313)
    cases = []
    for n in SIZES:
        for shift in SHIFTS:
            for name, draw in FAMILIES.items():
                cases.append((f"{name} n={n} shift={shift}", draw(rng, n, 0.0),
                              draw(rng, n, shift)))
            cases.append((f"moved extremes n={n} shift={shift}",
                          *_moved_extremes(rng, n, shift)))
    return cases


CASES = _cases()


def _exact_normed(reference: np.ndarray, current: np.ndarray) -> float:
    return float(wasserstein_distance(reference, current)
                 / max(reference.std(), drift.MIN_NORM_STD))


def _profile(values: np.ndarray) -> profile.Profile:
    builder = profile.ProfileBuilder("m")
    builder.add_column("x", values)
    builder.add_rows(values.size)
    return builder.build()


def _misses(estimate: Callable[[np.ndarray, np.ndarray], float], relative: float,
            absolute: float) -> list[tuple[str, float, float]]:
    misses = []
    for name, reference, current in CASES:
        exact = _exact_normed(reference, current)
        got = estimate(reference, current)
        if abs(got - exact) > relative * exact + absolute:
            misses.append((name, got, exact))
    return misses


def test_normed_wasserstein_of_profiles_within_2_percent_of_scipy() -> None:
    """Profiles saw the raw data: the norm is the reference's exact standard deviation, and
    their 1280 buckets per sign are fine enough for 2 % even on unshifted columns (with the
    SDK's 160 the smear left up to 0.0017 on scores near 0.003)."""
    wasserstein = drift.Thresholds(overrides={"x": ("wasserstein", 0.1)})

    def from_profiles(reference: np.ndarray, current: np.ndarray) -> float:
        result = compare.compare(_profile(reference), _profile(current), wasserstein)
        assert result.columns[0].method == "wasserstein"
        return result.columns[0].score

    assert not _misses(from_profiles, WASSERSTEIN_REL, WASSERSTEIN_EXACT_ABS)


def test_normed_wasserstein_of_histograms_within_2_percent_of_scipy() -> None:
    """Histograms only (baseline windows, old profiles): both moments from the buckets."""
    assert not _misses(lambda r, c: drift.wasserstein_normed(
        exphist.from_values(r), exphist.from_values(c)), WASSERSTEIN_REL_BUCKET_NORM,
        WASSERSTEIN_ABS)


@pytest.mark.parametrize("offset", [1e6, 1e7, 1e9])
def test_unit_spread_far_from_zero_scores_within_2_percent(offset: float) -> None:
    """The issue's one-sigma shift of N(1e6, 1) was missed. At 1e7 and beyond, unit spread
    sits in a bucket or two even at scale 20: profiles score a location shift by the exact
    mean gap over the exact spread (within 2 % of SciPy), and unshifted draws stay far below
    the threshold (the bucket model read the noise of min and max as drift: 0.26 at 1e9)."""
    rng = np.random.default_rng(12)
    wasserstein = drift.Thresholds(overrides={"x": ("wasserstein", 0.1)})
    for shift in (0.0, 0.3, 1.0):
        for _ in range(5):
            reference, current = rng.normal(offset, 1, 5000), rng.normal(offset + shift, 1, 5000)
            [result] = compare.compare(_profile(reference), _profile(current),
                                       wasserstein).columns
            exact = _exact_normed(reference, current)
            if shift:
                assert result.score == pytest.approx(exact, rel=WASSERSTEIN_REL)
                assert result.drifted
            else:
                assert result.score < exact + 0.01 and not result.drifted


@pytest.mark.parametrize(("offset", "spread"), [(1e4, 1.0), (1e6, 1.0), (1e9, 1e4)])
def test_bucket_moments_are_stable_far_from_zero(offset: float, spread: float) -> None:
    """Mean and spread from the same buckets, the spread summed around their mean: the exact
    mean squared minus a bucket second moment left a variance off by 2 x mean x the bucket
    mean's error (negative, floored, or far too large)."""
    rng = np.random.default_rng(4)
    values = rng.normal(offset, spread, 5000)
    hist = exphist.from_values(values)
    mean, std = exphist.bin_moments(hist)
    width = offset * (2 ** 2.0 ** -hist.scale - 1)  # one bucket at the offset
    assert abs(mean - values.mean()) <= width
    # The bucket model's spread is at most the raw one plus a bucket's own (uniform) spread.
    assert values.std() * 0.97 - width <= std <= np.hypot(values.std(), width) * 1.03


@pytest.mark.parametrize("offset", [3.0, 1e9])  # one pass, and two around the mean
def test_exact_moments_of_merged_profiles_are_numpy_ones(offset: float) -> None:
    rng = np.random.default_rng(6)
    values = rng.normal(offset, 1, 30_000)
    parts = [_profile(values[:10_000]), _profile(values[10_000:])]
    merged = profile.merge(*parts).columns["x"]
    assert merged.mean == pytest.approx(values.mean(), rel=1e-15)
    assert merged.std == pytest.approx(values.std(), rel=1e-9)
    reloaded = profile.from_dict(profile.merge(*parts).to_dict()).columns["x"]
    assert (reloaded.mean, reloaded.m2) == (merged.mean, merged.m2)


def test_old_profiles_without_moments_still_load_and_score() -> None:
    """A profile written before moments and values existed is read, and scored with the
    buckets' moments."""
    rng = np.random.default_rng(2)
    reference, current = rng.normal(3, 1, 2000), rng.normal(3.5, 1, 2000)
    data = _profile(reference).to_dict()
    for column in data["columns"]:
        column.pop("moments")
        column.pop("values", None)
    old = profile.from_dict(data)
    assert old.columns["x"].std is None and old.columns["x"].values is None
    result = compare.compare(old, _profile(current))
    assert result.columns[0].method == "wasserstein"
    assert result.columns[0].score == pytest.approx(_exact_normed(reference, current),
                                                    rel=WASSERSTEIN_REL_BUCKET_NORM)


def _bucket_share(reference: exphist.ExpHistogram, current: exphist.ExpHistogram) -> float:
    counts = exphist.common_bins([reference, current]).counts
    return float((counts / counts.sum(axis=1, keepdims=True)).max())


def test_ks_never_exceeds_the_exact_statistic_by_more_than_a_bucket() -> None:
    misses = []
    for name, reference, current in CASES:
        ref_hist, cur_hist = exphist.from_values(reference), exphist.from_values(current)
        statistic, _ = drift.ks(ref_hist, cur_hist)
        exact = ks_2samp(reference, current, method="asymp").statistic
        if statistic - exact > 1e-12 or exact - statistic > _bucket_share(ref_hist, cur_hist):
            misses.append((name, statistic, exact))
    assert not misses


def test_ks_of_integer_rows_with_two_moved_to_a_new_maximum() -> None:
    """The issue's case: 600 integer rows, two moved to a new maximum (coarser scale on one
    side): the exact D is 2/600 and p = 1; interpolation made D = 0.226, p = 5.6e-14."""
    rng = np.random.default_rng(13)
    reference = rng.integers(1, 40, 600).astype(np.float64)
    current = reference.copy()
    current[:2] = 5000.0
    statistic, p_value = drift.ks(exphist.from_values(reference), exphist.from_values(current))
    exact = ks_2samp(reference, current)
    assert statistic == pytest.approx(exact.statistic, abs=1e-12)
    assert p_value > 0.99


NULL_KINDS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "normal": lambda r, n: r.normal(0, 1, n),
    "unit spread at 1e4": lambda r, n: r.normal(1e4, 1, n),
    "lognormal": lambda r, n: r.lognormal(0, 1, n),
    "pareto": lambda r, n: r.pareto(1.5, n) + 1,
    "integers 0..30": lambda r, n: r.integers(0, 31, n).astype(np.float64),
    "poisson 4": lambda r, n: r.poisson(4, n).astype(np.float64),
    "integer codes 0..9": lambda r, n: r.integers(0, 10, n).astype(np.float64),
    "codes 1/2": lambda r, n: 1.0 + (r.random(n) < 0.3),
    "flags 0/1": lambda r, n: (r.random(n) < 0.1).astype(np.float64),
    "zero-inflated": lambda r, n: np.where(r.random(n) < 0.4, 0.0, r.exponential(2, n)),
}


@pytest.mark.parametrize("kind", list(NULL_KINDS))
def test_small_reference_verdicts_are_calibrated_under_no_drift(kind: str) -> None:
    """500 rows against 500 more from the same distribution, 200 times: the default verdict
    on a small reference flags at most 7 % at p < 0.05."""
    rng = np.random.default_rng(100 + list(NULL_KINDS).index(kind))
    draw = NULL_KINDS[kind]
    alarms = 0
    methods = set()
    for _ in range(NULL_DRAWS):
        result = compare.compare(_profile(draw(rng, NULL_ROWS)), _profile(draw(rng, NULL_ROWS)))
        verdict = result.columns[0]
        methods.add(verdict.method)
        assert verdict.p_value is not None
        alarms += verdict.drifted
    assert methods <= {"ks", "chisquare"}
    assert alarms / NULL_DRAWS <= MAX_FALSE_ALARMS, (kind, alarms)


def test_histogram_ks_is_calibrated_on_integer_windows() -> None:
    """The processor's path, histograms only: integer-valued windows of 500 rows against a
    500-row reference flag at most 7 % of same-distribution draws."""
    rng = np.random.default_rng(77)
    alarms = 0
    for _ in range(NULL_DRAWS):
        reference = exphist.from_values(rng.poisson(12, NULL_ROWS).astype(np.float64))
        current = exphist.from_values(rng.poisson(12, NULL_ROWS).astype(np.float64))
        verdict = drift.numeric_scores("x", reference, current, drift.Thresholds())[0]
        assert verdict.method == "ks"
        alarms += verdict.drifted
    assert alarms / NULL_DRAWS <= MAX_FALSE_ALARMS


# --- point 3: numeric columns of few values are judged as categories --------------------


def _codes(rng: np.random.Generator, n: int, shares: list[float]) -> np.ndarray:
    return rng.choice(np.arange(1, len(shares) + 1, dtype=np.float64), n, p=shares)


@pytest.mark.parametrize(("rows", "method"), [(5000, "jensenshannon"), (400, "chisquare")])
def test_few_valued_numeric_columns_are_judged_as_categories(rows: int, method: str) -> None:
    """Codes 1..4: the verdict is Evidently's categorical one, computed on the exact counts
    (SciPy's Jensen-Shannon distance and chi-square test on the same table)."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chi2_contingency

    rng = np.random.default_rng(31)
    reference = _codes(rng, rows, [0.5, 0.3, 0.15, 0.05])
    current = _codes(rng, rows, [0.3, 0.3, 0.2, 0.2])
    [result] = compare.compare(_profile(reference), _profile(current)).columns
    table = np.array([[np.count_nonzero(side == v) for v in (1, 2, 3, 4)]
                      for side in (reference, current)])
    assert result.method == method
    assert result.kind == "numeric"  # the column stays numeric; its verdict is categorical
    if method == "jensenshannon":
        assert result.score == pytest.approx(jensenshannon(table[0], table[1]), rel=1e-9)
    else:
        exact = chi2_contingency(table, correction=False)
        assert result.p_value == pytest.approx(exact.pvalue, rel=1e-9)
    assert result.drifted


def test_the_census_like_code_column_is_not_flagged_when_unshifted() -> None:
    """Codes 1/2 with 2 % ones, 42 chunks of unshifted data against the whole: the issue
    saw 41 of 42 flagged on a real census column. The bucket second moment of the twos
    (bucket (1.989, 2]) fell short of 4 by more than the variance, which was clamped to 0
    and floored: normed Wasserstein 2.15 against an exact 0.016 here, every chunk flagged.
    Now the verdict is categorical, and the forced Wasserstein is SciPy's within 2 %."""
    rng = np.random.default_rng(42)
    whole = 2.0 - (rng.random(42 * 2000) < 0.02)
    reference = _profile(whole)
    wasserstein = drift.Thresholds(overrides={"x": ("wasserstein", 0.1)})
    flagged = 0
    for chunk in np.split(whole, 42):
        current = _profile(chunk)
        [result] = compare.compare(reference, current).columns
        assert result.method == "jensenshannon"
        flagged += result.drifted
        [forced] = compare.compare(reference, current, wasserstein).columns
        assert forced.score == pytest.approx(_exact_normed(whole, chunk), rel=WASSERSTEIN_REL)
        histograms = drift.wasserstein_normed(reference.columns["x"].histogram,
                                              exphist.from_values(chunk))
        assert histograms == pytest.approx(_exact_normed(whole, chunk),
                                           rel=WASSERSTEIN_REL_BUCKET_NORM)
    assert flagged == 0


def test_low_cardinality_threshold_is_configurable() -> None:
    rng = np.random.default_rng(8)
    reference = rng.integers(0, 10, 3000).astype(np.float64)  # ten values: numeric by default
    current = rng.integers(0, 10, 3000).astype(np.float64)
    sides = _profile(reference), _profile(current)
    assert compare.compare(*sides).columns[0].method == "wasserstein"
    ten = drift.Thresholds(low_cardinality_values=10)
    assert compare.compare(*sides, ten).columns[0].method == "jensenshannon"
    codes = _profile(1.0 + (rng.random(3000) < 0.3)), _profile(1.0 + (rng.random(3000) < 0.3))
    off = drift.Thresholds(low_cardinality_values=0)
    assert compare.compare(*codes, off).columns[0].method == "wasserstein"


def test_histogram_buckets_map_to_the_reference_values() -> None:
    """The processor's path: the window histogram's bucket at each reference value counts as
    that value (integer codes keep buckets of their own), anything else as ``__other__``."""
    rng = np.random.default_rng(9)
    reference = _profile(_codes(rng, 3000, [0.4, 0.3, 0.2, 0.1])).columns["x"]
    current = np.concatenate([_codes(rng, 1000, [0.1, 0.2, 0.3, 0.4]), [0.0, 7.5, -3.0]])
    ref_counts, cur_counts = drift.value_categories(reference.values,
                                                    exphist.from_values(current))
    assert ref_counts == {str(v): int(np.count_nonzero(reference_values == v))
                          for v, reference_values in
                          ((v, np.repeat(list(reference.values), list(
                              reference.values.values()))) for v in (1, 2, 3, 4))}
    assert cur_counts == {**{str(v): int(np.count_nonzero(current == v)) for v in (1, 2, 3, 4)},
                          "__other__": 3}


def test_config_takes_and_checks_low_cardinality_values() -> None:
    from driftline.processor.ml_drift.config import ThresholdsConfig

    assert ThresholdsConfig().to_thresholds().low_cardinality_values == 5
    assert ThresholdsConfig(low_cardinality_values=8).to_thresholds().low_cardinality_values \
        == 8
    [problem] = ThresholdsConfig(low_cardinality_values=-1).validate()
    assert problem.startswith("low_cardinality_values:")
    [problem] = ThresholdsConfig(low_cardinality_values=1000).validate()
    assert "20" in problem


def test_compare_cli_takes_the_low_cardinality_threshold(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for side in ("ref", "cur"):
        pd.DataFrame({"code": 1 + (rng.random(2000) < 0.3).astype(int)}).to_csv(
            tmp_path / f"{side}.csv", index=False)

    def method(*options: str) -> tuple[int, str]:
        run = subprocess.run([sys.executable, "-m", "driftline.cli", "compare",
                              str(tmp_path / "ref.csv"), str(tmp_path / "cur.csv"), "--json",
                              *options], capture_output=True, text=True, check=False)
        if run.returncode:
            return run.returncode, run.stderr
        return 0, json.loads(run.stdout)["columns"][0]["method"]

    assert method() == (0, "jensenshannon")
    assert method("--low-cardinality-values", "0") == (0, "wasserstein")
    code, message = method("--low-cardinality-values", "99")
    assert code == 2 and "--low-cardinality-values must be from 0 (off) to 20" in message


def test_profiles_count_few_values_exactly_and_drop_them_past_the_cap() -> None:
    from collections import Counter

    from driftline.columns import MAX_DISTINCT_VALUES

    rng = np.random.default_rng(10)
    late = np.concatenate([np.ones(2000), rng.choice([1.0, 2.0, 7.5], 3000)])  # 2, 7.5 late
    assert _profile(late).columns["x"].values == dict(sorted(Counter(late.tolist()).items()))
    wide = np.arange(MAX_DISTINCT_VALUES + 1, dtype=np.float64).repeat(10)
    assert _profile(wide).columns["x"].values is None
    left, right = np.arange(12.0).repeat(3), np.arange(10.0, 22.0).repeat(2)
    assert profile.merge(_profile(left), _profile(left)).columns["x"].values == {
        float(v): 6 for v in range(12)}
    assert profile.merge(_profile(left), _profile(right)).columns["x"].values is None
