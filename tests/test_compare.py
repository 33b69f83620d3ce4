"""``driftline compare``: verdicts per column as JSON, table and HTML; inputs and bad input."""

from __future__ import annotations

import html
import json
import os
import pty
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftline import cli, compare, drift, profile, report

REFERENCE_ROWS = 3000
CURRENT_ROWS = 2000
SHIFTED = {"spend", "plan"}
STABLE = {"age", "region"}
REQUIRED_KEYS = {"column", "kind", "method", "score", "threshold", "drifted"}


def make_frame(rows: int, shifted: bool, seed: int) -> pd.DataFrame:
    """Two numeric and two categorical features; ``shifted`` moves spend and plan."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.normal(45, 12, rows),
        "spend": rng.normal(70, 20, rows),
        "plan": rng.choice(["basic", "pro", "team"], rows, p=[0.6, 0.3, 0.1]),
        "region": rng.choice(["eu", "us", "apac"], rows),
    })
    if shifted:
        frame["spend"] += 30
        frame["plan"] = rng.choice(["basic", "pro", "team"], rows, p=[0.2, 0.3, 0.5])
    return frame


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """The same reference and current data as CSV, Parquet and profile JSON."""
    reference = make_frame(REFERENCE_ROWS, shifted=False, seed=1)
    current = make_frame(CURRENT_ROWS, shifted=True, seed=2)
    paths = {}
    for side, frame in (("ref", reference), ("cur", current)):
        paths[f"{side}.csv"] = tmp_path / f"{side}.csv"
        paths[f"{side}.parquet"] = tmp_path / f"{side}.parquet"
        paths[f"{side}.json"] = tmp_path / f"{side}.json"
        frame.to_csv(paths[f"{side}.csv"], index=False)
        frame.to_parquet(paths[f"{side}.parquet"])
        profile.save(profile.profile_file(paths[f"{side}.parquet"], model="churn"),
                     paths[f"{side}.json"])
    return paths


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    status = cli.main(["compare", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def compare_json(capsys: pytest.CaptureFixture[str], reference: Path,
                 current: Path) -> dict:
    status, out, _ = run(capsys, reference, current, "--json")
    assert status == 0
    return json.loads(out)


def test_json_schema_and_verdicts(files: dict[str, Path],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    result = compare_json(capsys, files["ref.parquet"], files["cur.parquet"])
    by_column = {c["column"]: c for c in result["columns"]}
    assert set(by_column) == SHIFTED | STABLE
    for item in result["columns"]:
        assert set(item) >= REQUIRED_KEYS
        assert item["kind"] == ("numeric" if item["column"] in {"age", "spend"}
                                else "categorical")
        assert item["drifted"] == (item["column"] in SHIFTED), item
        assert isinstance(item["score"], float) and isinstance(item["threshold"], float)
        if "p_value" in item:  # only methods that have one (KS, chi-square) carry it
            assert 0.0 <= item["p_value"] <= 1.0
    assert result["drift_share"] == pytest.approx(len(SHIFTED) / len(by_column))
    assert result["dataset_drifted"] is True
    assert result["skipped"] == []


def test_same_distribution_does_not_drift(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    make_frame(REFERENCE_ROWS, shifted=False, seed=3).to_parquet(tmp_path / "a.parquet")
    make_frame(CURRENT_ROWS, shifted=False, seed=4).to_parquet(tmp_path / "b.parquet")
    result = compare_json(capsys, tmp_path / "a.parquet", tmp_path / "b.parquet")
    assert [c["drifted"] for c in result["columns"]] == [False] * 4
    assert (result["drift_share"], result["dataset_drifted"]) == (0.0, False)


def test_drift_share_counts_features_only(files: dict[str, Path]) -> None:
    reference = profile.load(files["ref.json"])
    current = profile.load(files["cur.json"])
    # Make the drifted "plan" a prediction column: it keeps its verdict but leaves the
    # dataset share, which is over features only. Roles come from the reference.
    columns = {name: c if name != "plan" else replace(c, role=profile.ROLE_PREDICTION)
               for name, c in reference.columns.items()}
    result = compare.compare(replace(reference, columns=columns), current)
    plan = next(r for r in result.columns if r.column == "plan")
    assert (plan.role, plan.drifted) == ("prediction", True)
    assert result.drift_share == pytest.approx(1 / 3)
    assert result.dataset_drifted is False


@pytest.mark.parametrize("reference,current", [
    ("ref.csv", "cur.csv"), ("ref.parquet", "cur.csv"), ("ref.json", "cur.json"),
    ("ref.json", "cur.parquet"), ("ref.csv", "cur.json"),
])
def test_data_files_and_profiles_give_the_same_json(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str],
        reference: str, current: str) -> None:
    expected = compare_json(capsys, files["ref.parquet"], files["cur.parquet"])
    got = compare_json(capsys, files[reference], files[current])
    assert [c["column"] for c in got["columns"]] == [c["column"] for c in expected["columns"]]
    for mine, theirs in zip(got["columns"], expected["columns"], strict=True):
        assert mine.keys() == theirs.keys()
        assert (mine["method"], mine["drifted"]) == (theirs["method"], theirs["drifted"])
        # CSV text may round a float's last bit differently from Parquet's binary.
        assert mine["score"] == pytest.approx(theirs["score"], rel=1e-9, abs=1e-12)
    assert got["drift_share"] == expected["drift_share"]
    assert got["dataset_drifted"] == expected["dataset_drifted"]


def test_table_lists_drifted_columns_first(files: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, files["ref.json"], files["cur.parquet"])
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["column", "role", "kind", "method", "score", "threshold",
                                "p-value", "verdict"]
    assert {line.split()[1] for line in lines[1:5]} == {"feature"}
    verdicts = [(line.split()[0], line.split()[-1]) for line in lines[1:5]]
    assert {c for c, v in verdicts[:2]} == SHIFTED
    assert [v for _, v in verdicts] == ["DRIFTED", "DRIFTED", "stable", "stable"]
    assert "dataset drift: YES - 2 of 4 features drifted (share 0.50" in out


@pytest.mark.parametrize("name,content,message", [
    ("missing.json", None, "no such file"),
    ("broken.json", "{not json", "not valid JSON"),
    ("other.json", '{"hello": 1}', "not a Driftline profile"),
    ("damaged.json", '{"format": "driftline.profile", "format_version": 1, "columns": []}',
     "damaged profile"),
    ("table.xlsx", "x", "unsupported file type"),
    ("broken.parquet", b"PAR1 this is not really parquet", "cannot read data file"),
])
def test_bad_input_exits_2_naming_the_problem(
        files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        name: str, content: str | bytes | None, message: str) -> None:
    bad = tmp_path / name
    if isinstance(content, bytes):
        bad.write_bytes(content)
    elif content is not None:
        bad.write_text(content)
    for args in ((bad, files["cur.parquet"]), (files["ref.json"], bad)):
        status, out, err = run(capsys, *args, "--json")
        assert status == 2
        assert out == ""
        assert err.startswith("driftline compare: ")
        assert str(bad) in err and message in err, err


def test_columns_on_one_side_or_of_another_kind_are_skipped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reference = make_frame(REFERENCE_ROWS, shifted=False, seed=5)
    current = make_frame(CURRENT_ROWS, shifted=False, seed=6).drop(columns=["region"])
    current["age"] = current["age"].round().astype(int).astype(str) + " years"
    current["extra"] = 1.0
    reference.to_parquet(tmp_path / "a.parquet")
    current.to_parquet(tmp_path / "b.parquet")
    result = compare_json(capsys, tmp_path / "a.parquet", tmp_path / "b.parquet")
    assert [c["column"] for c in result["columns"]] == ["spend", "plan"]
    assert result["skipped"] == [
        {"column": "age", "reason": "numeric in reference, categorical in current"},
        {"column": "region", "reason": "not in current"},
        {"column": "extra", "reason": "not in reference"},
    ]


def test_p_value_is_written_only_where_the_method_has_one() -> None:
    with_p = compare.ColumnResult("a", "numeric", "feature", "ks", 0.3, 0.05, True, 0.001)
    without = compare.ColumnResult("b", "numeric", "feature", "wasserstein", 0.3, 0.1, True,
                                   None)
    document = compare.to_json(compare.Comparison((with_p, without), 1.0, True, 0.5))
    first, second = document["columns"]
    assert first["p_value"] == 0.001
    assert "p_value" not in second
    assert document["drift_share"] == 1.0 and document["dataset_drifted"] is True


def test_progress_goes_to_stderr_only_when_asked(files: dict[str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, out_quiet, err_quiet = run(capsys, files["ref.csv"], files["cur.parquet"], "--json")
    assert err_quiet == ""  # captured stderr is not a terminal
    _, out, err = run(capsys, files["ref.csv"], files["cur.parquet"], "--json", "--progress")
    assert out == out_quiet  # stdout stays pure JSON
    assert f"ref.csv: {REFERENCE_ROWS:,} rows" in err
    assert f"cur.parquet: [{'#' * 24}] 100% {CURRENT_ROWS:,} rows" in err
    assert "\r" not in err  # not a terminal: one final line per file, no redraws


def test_profile_command_progress_and_bad_input(files: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "p.json"
    status = cli.main(["profile", str(files["ref.csv"]), "--model", "m", "-o", str(output),
                       "--progress"])
    _, err = capsys.readouterr()
    assert status == 0 and profile.load(output).row_count == REFERENCE_ROWS
    assert f"ref.csv: {REFERENCE_ROWS:,} rows" in err
    status = cli.main(["profile", str(tmp_path / "nope.xlsx"), "--model", "m", "-o",
                       str(output)])
    assert status == 2
    assert "unsupported data file type" in capsys.readouterr().err


# --- the HTML report --------------------------------------------------------------------------


def test_html_report_is_self_contained_and_readable(
        files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "out" / "report.html"
    status, _, err = run(capsys, files["ref.json"], files["cur.parquet"], "--html", path)
    assert status == 0 and f"wrote {path}" in err
    page = path.read_text()
    for external in ("http://", "https://", "src=", "<script", "url(", "@import", "<link"):
        assert external not in page, external
    sections = dict(re.findall(r'<section class="column" data-column="([^"]+)"[^>]*'
                               r'data-drifted="(true|false)"', page))
    assert sections == {"spend": "true", "plan": "true", "age": "false", "region": "false"}
    assert 'id="dataset" data-drifted="true"' in page
    # Both series are drawn for every column.
    assert page.count('data-series="reference"') == 4
    assert page.count('data-series="current"') == 4


def test_html_escapes_every_text(tmp_path: Path) -> None:
    name = '<img src=x onerror="alert(1)">'
    frame = pd.DataFrame({name: ["<b>", "&amp;", '"q"'] * 50, "x": np.arange(150.0)})
    frame.to_csv(tmp_path / "a.csv", index=False)
    reference = compare.load_side(tmp_path / "a.csv")
    page = report.render_html(compare.compare(reference, reference), reference, reference)
    assert "<img" not in page and "<b>" not in page
    assert html_escape(name) in page and "&amp;amp;" in page


def html_escape(text: str) -> str:
    return html.escape(text, quote=True)


def test_numeric_densities_hold_the_mass_on_at_most_40_bars() -> None:
    rng = np.random.default_rng(9)
    values = rng.lognormal(3, 1, 20_000)
    values[:5] = 1e9  # far outliers must not squash the plot
    ref = profile.capture(pd.DataFrame({"v": values}), model="m").columns["v"].histogram
    cur = profile.capture(pd.DataFrame({"v": values * 1.5}), model="m").columns["v"].histogram
    densities = report.numeric_densities(ref, cur)
    widths = np.diff(densities.edges)
    assert len(widths) <= report.MAX_NUMERIC_BARS and (widths > 0).all()
    assert densities.edges[-1] < 1e4  # clipped at the 99.5 % quantile, not at 1e9
    for series in (densities.reference, densities.current):
        mass = float((series * widths).sum())
        assert 0.98 <= mass <= 1.0 + 1e-9


def test_constant_and_zero_columns_render(tmp_path: Path) -> None:
    frame = pd.DataFrame({"zero": np.zeros(200), "seven": np.full(200, 7.0)})
    side = profile.capture(frame, model="m")
    result = compare.compare(side, side)
    assert [r.drifted for r in result.columns] == [False, False]
    page = report.render_html(result, side, side)
    assert page.count('class="bar"') >= 4


def test_thresholds_are_passed_through(files: dict[str, Path]) -> None:
    reference = profile.load(files["ref.json"])
    current = profile.load(files["cur.json"])
    lenient = compare.compare(reference, current,
                              drift.Thresholds(wasserstein=1e9, jensenshannon=1e9,
                                               dataset_share=0.9))
    assert [r.threshold for r in lenient.columns] == [1e9] * 4
    assert [r.drifted for r in lenient.columns] == [False] * 4
    assert (lenient.drift_share, lenient.dataset_drifted, lenient.share_threshold) == (
        0.0, False, 0.9)


def test_progress_redraws_in_place_on_a_terminal(files: dict[str, Path]) -> None:
    leader, follower = pty.openpty()
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "driftline.cli", "compare", str(files["ref.csv"]),
             str(files["cur.parquet"]), "--json"],
            stdout=subprocess.PIPE, stderr=follower, check=True, timeout=120)
        os.close(follower)
        follower = -1
        err = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: all read
                break
            if not chunk:
                break
            err += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert json.loads(completed.stdout)["dataset_drifted"] is True
    text = err.decode()
    assert f"\rref.csv: {REFERENCE_ROWS:,} rows" in text  # no --progress needed on a tty
    assert f"] 100% {CURRENT_ROWS:,} rows" in text
