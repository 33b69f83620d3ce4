"""Feature distributions as classic histograms on the reference profile's bins, scraped by a
real Prometheus: production and reference on the same ``le`` bounds, so a dashboard can
draw one over the other, and production counts exact at those bounds."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from driftline import exphist
from driftline.exporters.prometheus_series import classic_bins
from driftline.profile import save
from tests._collector import (
    LOOPBACK,
    PROMETHEUS_EXPORTER,
    PROTOCOL_HTTP,
    post_metrics,
    running_collector,
)
from tests.conftest import run_prometheus
from tests.processor.ml_drift.test_ml_drift import app_batch, reference


def _buckets(result: list[dict]) -> dict[str, float]:
    return {series["metric"]["le"]: float(series["value"][1]) for series in result}


@pytest.mark.integration
def test_feature_histogram_and_reference_share_bounds_in_prometheus(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    profile = reference(rng)
    save(profile, tmp_path / "profiles" / "churn.json")
    production = rng.normal(45, 10, 2000)
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "exporters": {"prometheus": {"endpoint": f"{LOOPBACK}:0",
                                     "reference_profiles": str(tmp_path / "profiles")}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                              "exporters": ["prometheus"]}},
                    "telemetry": {"metrics": {"level": "none"}}},
    }
    (tmp_path / "collector").mkdir()
    (tmp_path / "prometheus").mkdir()
    with running_collector(config, tmp_path / "collector") as collector:
        post_metrics(collector.endpoints[PROTOCOL_HTTP],
                     app_batch(time.time_ns(), {"age": production}))
        with run_prometheus([collector.endpoint_of(PROMETHEUS_EXPORTER)], tmp_path / "prometheus",
                            scrape_interval_s=1) as prometheus:
            current = _buckets(prometheus.wait_for(
                'ml_feature_value_bucket{ml_feature_name="age"}'))
            expected_reference = _buckets(prometheus.wait_for(
                'ml_feature_value_reference_bucket{ml_feature_name="age"}'))
    bounds = classic_bins.reference_bounds(profile.columns["age"].histogram)
    assert len(bounds) == 9  # the reference's deciles
    assert set(current) == set(expected_reference) == {*(_le(b) for b in bounds), "+Inf"}
    for bound in bounds:  # production counts are exact at the reference's bucket edges
        assert current[_le(bound)] == np.sum(production <= bound)
    # The reference puts about a tenth of its rows below each decile, production fewer
    # (it is shifted up by half a standard deviation).
    reference_rows = profile.columns["age"].histogram.total
    first = _le(bounds[0])
    assert expected_reference[first] / reference_rows == pytest.approx(0.1, abs=0.03)
    assert current[first] / production.size < 0.07
    assert current["+Inf"] == production.size


def _le(bound: float) -> str:
    """The ``le`` label value Prometheus stores for ``bound``."""
    return repr(bound) if not float(bound).is_integer() else str(int(bound))


def test_bucket_counts_are_exact_at_bucket_edges_and_sum_to_the_total() -> None:
    rng = np.random.default_rng(3)
    values = np.r_[rng.normal(0, 1, 5000), np.zeros(30)]
    hist = exphist.from_values(values)
    edges = tuple(float(b) for b in exphist.lower_boundary(np.arange(-3, 4), hist.scale))
    bounds = (-1.5, 0.0, *edges)
    counts = classic_bins.bucket_counts(hist, tuple(sorted(set(bounds))))
    assert sum(counts) == values.size
    cumulative = np.cumsum(counts)
    for bound, below in zip(sorted(set(bounds)), cumulative, strict=False):
        if bound >= 0:  # positive edges and zero are exact
            assert below == np.sum(values <= bound), bound
        else:  # inside a negative bucket: within that bucket's count
            assert abs(below - np.sum(values <= bound)) <= max(hist.negative.counts)
