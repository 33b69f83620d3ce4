"""A new user's first commands behave: version, ``python -m``, help, missing extras, pipes,
the compare table's roles, file permissions, import cost, and a wheel that holds it all.

The commands run as real subprocesses of the installed ``driftline`` (the one next to this
Python); under ``make test`` that is the wheel, installed non-editable outside the checkout.
"""

from __future__ import annotations

import ast
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import driftline
from driftline import profile

DRIFTLINE = Path(sys.executable).with_name("driftline")
PROCESS_TIMEOUT_S = 120
CHECKOUT = Path(os.environ.get("DRIFTLINE_CHECKOUT", Path(__file__).resolve().parents[1]))
# Exporters off, so the subprocesses need no collector.
QUIET_OTEL = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
              "OTEL_LOGS_EXPORTER": "none"}
# Modules made unimportable, as on an install without the `data` extra.
WITHOUT_DATA_EXTRA = (
    "import sys\n"
    "class Missing:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.partition('.')[0] in ('pandas', 'pyarrow'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Missing())\n"
    "from driftline.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def run(argv: list[str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, check=False, **kwargs)


@pytest.mark.parametrize("argv", [[str(DRIFTLINE), "--version"],
                                  [sys.executable, "-m", "driftline", "--version"]])
def test_version_from_the_command_and_python_m(argv: list[str], tmp_path: Path) -> None:
    result = run(argv, tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"driftline {driftline.__version__}"


def test_help_texts_carry_no_restructuredtext_markup(tmp_path: Path) -> None:
    commands = ["profile", "compare", "collector", "validate", "demo"]
    for argv in [["--help"], *[[command, "--help"] for command in commands]]:
        result = run([str(DRIFTLINE), *argv], tmp_path)
        assert result.returncode == 0, result.stderr
        assert "usage: driftline" in result.stdout
        for markup in ("``", ":class:", ":func:", ".. "):
            assert markup not in result.stdout, (argv, result.stdout)


def test_validate_takes_the_config_as_the_collector_does(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("receivers: {otlp: {protocols: {http: {endpoint: 127.0.0.1:0}}}}\n"
                      "exporters: {file: {path: out.jsonl}}\n"
                      "service: {pipelines: {metrics: {receivers: [otlp], "
                      "exporters: [file]}}}\n")

    spelled = [run([str(DRIFTLINE), "validate", *argv], tmp_path)
               for argv in (["--config", str(config)], [f"--config={config}"], [str(config)])]

    assert [r.returncode for r in spelled] == [0, 0, 0], [r.stderr for r in spelled]
    assert all(r.stdout.startswith(f"{config}: OK: 1 pipeline") for r in spelled)
    missing = run([str(DRIFTLINE), "validate"], tmp_path)
    assert missing.returncode == 2
    assert "give a config" in missing.stderr


@pytest.mark.parametrize("argv,line", [
    (["profile", "train.csv", "-o", "p.json", "--model", "m"],
     "driftline profile: this needs pandas, which is not installed: "
     "pip install 'driftline[data]'"),
    (["compare", "train.parquet", "train.parquet"],
     "driftline compare: this needs pyarrow, which is not installed: "
     "pip install 'driftline[data]'"),
    (["demo", "--workdir", "demo"],
     "driftline demo: this needs pandas, which is not installed: "
     "pip install 'driftline[demo]'"),
])
def test_a_command_missing_its_extra_names_it_in_one_line(argv: list[str], line: str,
                                                          tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("a,b\n1,2\n")
    (tmp_path / "train.parquet").write_bytes(b"PAR1")

    result = run([sys.executable, "-c", WITHOUT_DATA_EXTRA, *argv], tmp_path)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line]
    assert not (tmp_path / "p.json").exists()


def _wide_profiles(tmp_path: Path) -> tuple[Path, Path]:
    """Two profiles with enough columns that the JSON output outgrows a pipe's buffer."""
    rng = np.random.default_rng(7)
    paths = []
    for side in ("ref", "cur"):
        frame = pd.DataFrame(rng.normal(size=(300, 400)),
                             columns=[f"feature_{i}" for i in range(400)])
        path = tmp_path / f"{side}.json"
        profile.save(profile.capture(frame, np.zeros(300), model="wide"), path)
        paths.append(path)
    return paths[0], paths[1]


def test_compare_json_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    reference, current = _wide_profiles(tmp_path)
    process = subprocess.Popen([str(DRIFTLINE), "compare", str(reference), str(current),
                                "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=tmp_path)
    first = process.stdout.readline()  # what `| head -1` reads, then it goes away
    process.stdout.close()
    _, stderr = process.communicate(timeout=PROCESS_TIMEOUT_S)

    assert first.strip() == b"{"
    assert process.returncode == 0
    assert b"Traceback" not in stderr and b"BrokenPipeError" not in stderr, stderr.decode()


def test_compare_table_shows_each_column_role(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frames = {}
    for side, shift in (("ref", 0.0), ("cur", 5.0)):
        frames[side] = pd.DataFrame({"age": rng.normal(40, 5, 2000),
                                     "label": rng.normal(shift, 1, 2000)})
    for side, frame in frames.items():
        built = profile.capture(frame[["age"]], np.zeros(2000), target=frame["label"].to_numpy(),
                                model="m")
        profile.save(built, tmp_path / f"{side}.json")

    result = run([str(DRIFTLINE), "compare", "ref.json", "cur.json"], tmp_path)

    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:4]}
    assert rows["age"][1] == "feature" and rows["age"][-1] == "stable"
    target = next(row for name, row in rows.items() if row[1] == "target")
    assert target[-1] == "DRIFTED"  # a drifted target, shown as one


def test_profiles_respect_the_umask(tmp_path: Path) -> None:
    code = ("import os, numpy as np\n"
            "os.umask(0o022)\n"
            "from driftline import profile\n"
            "built = profile.capture(np.arange(20.0).reshape(-1, 2), np.zeros(10), model='m')\n"
            "profile.save(built, 'shared/p.json')\n")

    result = run([sys.executable, "-c", code], tmp_path)

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "shared" / "p.json").stat().st_mode) == 0o644
    assert os.listdir(tmp_path / "shared") == ["p.json"]  # no temporary file left behind


def test_auto_imports_sklearn_only_when_the_application_does(tmp_path: Path) -> None:
    code = ("import sys\n"
            "import driftline.auto\n"
            "print('sklearn' in sys.modules)\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "print(hasattr(LogisticRegression.predict, '__wrapped__'))\n")

    result = run([sys.executable, "-c", code], tmp_path, env={**os.environ, **QUIET_OTEL})

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def _folders() -> dict[str, str]:
    """setup.py's map of packages to top-level folders, read without running setup()."""
    tree = ast.parse((CHECKOUT / "setup.py").read_text())
    assignment = next(node for node in tree.body if isinstance(node, ast.Assign)
                      and getattr(node.targets[0], "id", "") == "FOLDERS")
    return ast.literal_eval(assignment.value)


def _wheel(tmp_path: Path) -> Path:
    """The wheel `make test` built and installed, or one built here from the checkout."""
    if given := os.environ.get("DRIFTLINE_WHEEL"):
        return Path(given)
    result = run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                  "--wheel-dir", str(tmp_path), str(CHECKOUT)], tmp_path)
    assert result.returncode == 0, result.stderr
    return next(tmp_path.glob("driftline-*.whl"))


def test_the_wheel_holds_every_module_and_data_file(tmp_path: Path) -> None:
    with zipfile.ZipFile(_wheel(tmp_path)) as archive:
        inside = set(archive.namelist())
    expected = set()
    for package, folder in _folders().items():
        for path in (CHECKOUT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                relative = path.relative_to(CHECKOUT / folder).as_posix()
                expected.add(f"{package.replace('.', '/')}/{relative}")

    assert any(name.endswith(".yaml") for name in expected)  # data files are looked for too
    assert "driftline/processor/extensions/file_storage.py" in expected
    assert sorted(expected - inside) == []
    # Nothing else either: a module deleted or moved in the source must not ship from a stale
    # build folder.
    shipped = {name for name in inside if name.startswith("driftline/")}
    assert sorted(shipped - expected) == []


def test_under_make_test_the_suite_runs_the_installed_wheel() -> None:
    if "DRIFTLINE_WHEEL" not in os.environ:
        assert os.environ.get("CI") != "true", "CI must run the suite against the wheel"
        pytest.skip("run from the checkout (make dev); `make test` runs the installed wheel")
    installed = Path(driftline.__file__).resolve()

    assert "site-packages" in installed.parts  # the wheel's copy, not an editable finder
    assert (CHECKOUT / "driftline").resolve() not in installed.parents
    assert not (Path.cwd() / "driftline").exists()  # nothing in the run folder shadows it
