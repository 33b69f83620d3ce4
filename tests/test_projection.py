"""The seeded random projection and its place in reference profiles (NumPy only, no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from driftline import exphist, profile, semconv
from driftline.projection import (
    DEFAULT_COMPONENTS,
    DEFAULT_MAX_FEATURES,
    DEFAULT_SEED,
    Projection,
    ProjectionError,
    for_input,
)

RNG = np.random.default_rng(11)
NAMES = [f"proj{i}" for i in range(DEFAULT_COMPONENTS)] + ["l2_norm"]


def test_defaults_are_the_documented_ones() -> None:
    assert (DEFAULT_COMPONENTS, DEFAULT_MAX_FEATURES, DEFAULT_SEED) == (16, 64, 42)
    assert Projection(DEFAULT_SEED, 100).column_names() == NAMES
    assert semconv.FEATURE_PROJECTION_PREFIX == "proj" and semconv.FEATURE_L2_NORM == "l2_norm"


def test_matrix_is_the_seeded_gaussian_scaled_by_sqrt_k() -> None:
    projection = Projection(7, 300, 8)
    expected = np.random.default_rng(7).standard_normal((8, 300)) / np.sqrt(8)
    assert np.array_equal(projection.matrix, expected)
    assert np.array_equal(Projection(7, 300, 8).matrix, projection.matrix)
    assert not np.array_equal(Projection(8, 300, 8).matrix, projection.matrix)
    assert not projection.matrix.flags.writeable
    assert Projection(7, 300, 8) == projection  # equality is the seed and the shape


def test_apply_gives_components_and_the_l2_norm_of_the_original_row() -> None:
    values = RNG.normal(size=(50, 3, 10, 10))
    flat = values.reshape(50, -1)
    projection = Projection(DEFAULT_SEED, 300)
    columns = projection.apply(values)
    assert [name for name, _ in columns] == NAMES
    by_name = dict(columns)
    np.testing.assert_allclose(by_name["l2_norm"], np.linalg.norm(flat, axis=1), rtol=1e-12)
    for i in range(DEFAULT_COMPONENTS):
        np.testing.assert_allclose(by_name[f"proj{i}"], flat @ projection.matrix[i], rtol=1e-9)
    # Johnson-Lindenstrauss: the projected norm estimates the original one.
    projected = np.sqrt(sum(by_name[f"proj{i}"] ** 2 for i in range(DEFAULT_COMPONENTS)))
    assert 0.6 < float(np.median(projected / by_name["l2_norm"])) < 1.4


def test_a_row_projects_to_the_same_bits_in_any_batch() -> None:
    values = RNG.normal(size=(40, 768))
    projection = Projection(DEFAULT_SEED, 768)
    whole = dict(projection.apply(values))
    for start, stop in ((0, 1), (3, 17), (17, 40)):
        part = dict(projection.apply(values[start:stop]))
        for name in NAMES:
            assert part[name].tobytes() == whole[name][start:stop].tobytes(), name


def test_non_finite_rows_give_non_finite_columns() -> None:
    values = RNG.normal(size=(4, 100))
    values[1, 5] = np.nan
    columns = dict(Projection(DEFAULT_SEED, 100).apply(values))
    assert not np.isfinite(columns["proj0"][1]) and not np.isfinite(columns["l2_norm"][1])
    assert np.isfinite(columns["proj0"][[0, 2, 3]]).all()


def test_wrong_width_and_bad_parameters_are_typed_errors() -> None:
    with pytest.raises(ProjectionError, match=r"rows have 99 values.*built for 100"):
        Projection(DEFAULT_SEED, 100).apply(np.ones((2, 99)))
    with pytest.raises(ProjectionError, match="seed: must be >= 0"):
        Projection(-1, 100)
    with pytest.raises(ProjectionError, match="components must be >= 1"):
        Projection(DEFAULT_SEED, 100, 0)
    with pytest.raises(ProjectionError, match="input_features: must be an integer"):
        Projection(DEFAULT_SEED, 1.5)  # type: ignore[arg-type]


def test_for_input_projects_only_past_the_limit() -> None:
    assert for_input(DEFAULT_MAX_FEATURES) is None
    assert for_input(DEFAULT_MAX_FEATURES + 1) == Projection(DEFAULT_SEED,
                                                             DEFAULT_MAX_FEATURES + 1)
    assert for_input(10, max_features=4, seed=3, components=5) == Projection(3, 10, 5)


def test_dict_round_trip_and_unknown_method() -> None:
    projection = Projection(5, 200, 4)
    data = projection.to_dict()
    assert data == {"method": "gaussian-numpy-default-rng", "seed": 5, "input_features": 200,
                    "components": 4}
    assert Projection.from_dict(json.loads(json.dumps(data))) == projection
    with pytest.raises(ProjectionError, match="unknown projection method 'pca'"):
        Projection.from_dict({**data, "method": "pca"})
    with pytest.raises(ProjectionError, match="missing field 'seed'"):
        Projection.from_dict({"input_features": 3})


# --- profiles ---------------------------------------------------------------------------------


def test_capture_with_a_projection_profiles_the_projected_columns(tmp_path: Path) -> None:
    images = RNG.normal(size=(300, 3, 8, 8))
    projection = Projection(DEFAULT_SEED, 192)
    built = profile.capture(images, RNG.choice([0, 1, 2], 300), model="vision", version="1",
                            projection=projection)
    assert built.projection == projection
    assert list(built.columns)[:17] == NAMES
    for name, values in projection.apply(images):
        expected = exphist.from_values(values, profile.DEFAULT_MAX_BUCKETS)
        assert built.columns[name].histogram.to_dict() == expected.to_dict()
    assert built.to_dict()["projection"] == projection.to_dict()
    profile.save(built, tmp_path / "vision.json")
    loaded = profile.load(tmp_path / "vision.json")
    assert loaded.projection == projection and loaded.to_dict() == built.to_dict()


def test_profiles_without_projection_keep_their_format() -> None:
    built = profile.capture(RNG.normal(size=(20, 2)), model="m")
    data = built.to_dict()
    assert "projection" not in data and data["format_version"] == 1
    assert profile.from_dict(data).projection is None


def test_a_damaged_projection_names_the_file(tmp_path: Path) -> None:
    data = profile.capture(RNG.normal(size=(20, 2)), model="m").to_dict()
    data["projection"] = {"seed": 1}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(profile.ProfileError, match=r"bad\.json: projection: missing field"):
        profile.load(path)


def test_profiles_projected_differently_do_not_merge() -> None:
    images = RNG.normal(size=(30, 100))
    left = profile.capture(images, model="m", projection=Projection(1, 100))
    right = profile.capture(images, model="m", projection=Projection(2, 100))
    with pytest.raises(profile.ProfileError, match="projected differently"):
        profile.merge(left, right)
    same = profile.merge(left, profile.capture(images, model="m", projection=Projection(1, 100)))
    assert same.projection == Projection(1, 100) and same.row_count == 60
