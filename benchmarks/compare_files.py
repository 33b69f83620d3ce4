"""``driftline compare`` on two Parquet files, as a whole process, next to a NumPy script.

Run: ``.venv-dev/bin/python benchmarks/compare_files.py [--rows 1000000] [--runs 5]``. It
writes two Parquet files under ``/tmp`` with ``drift_peers.py``'s 25 columns (20 numeric,
5 categorical written as plain ``string`` columns, which Parquet dictionary-encodes; 7
columns shifted), then runs, alternating, each as its own process from start to exit:

* ``driftline compare REF CUR --json`` (the CLI as installed);
* ``compare_files.py psi REF CUR``: a plain script that reads both files with pandas and
  computes ``drift_peers.py``'s PSI per column (reference deciles for numeric columns,
  category shares by ``value_counts`` for the others; PSI >= 0.1 flags a column).

Wall time per process, peak RSS of each (``os.wait4``), medians and spread over the runs,
the ratio driftline / script per run, and the columns each flagged.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import drift_peers

DEFAULT_ROWS = 1_000_000
DEFAULT_RUNS = 5
ROW_GROUP_ROWS = 250_000
DRIFTLINE = Path(sys.executable).with_name("driftline")
TARGET_RATIO = 0.4


def write_side(path: Path, rows: int, current: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = drift_peers.generate(rows, current)
    columns = {}
    for name, values in data.items():
        if values.dtype == object:  # plain strings: Parquet dictionary-encodes the pages
            labels, codes = np.unique(values, return_inverse=True)
            columns[name] = pa.DictionaryArray.from_arrays(
                pa.array(codes.astype(np.int32)), pa.array(labels.tolist())).cast(pa.string())
        else:
            columns[name] = pa.array(values)
    pq.write_table(pa.table(columns), path, row_group_size=ROW_GROUP_ROWS)


def psi_script(reference: str, current: str) -> None:
    """The baseline: pandas reads both files; decile PSI per numeric column (NumPy), PSI of
    the category shares per categorical one (pandas ``value_counts``, hashing)."""
    import pandas as pd

    ref, cur = pd.read_parquet(reference), pd.read_parquet(current)
    flagged = []
    for name in ref.columns:
        if ref[name].dtype.kind == "f":
            r, c = ref[name].to_numpy(), cur[name].to_numpy()
            edges = np.unique(np.quantile(r, np.linspace(0, 1, drift_peers.DECILES + 1)[1:-1]))
            ref_counts = np.bincount(np.searchsorted(edges, r, side="right"),
                                     minlength=edges.size + 1)
            cur_counts = np.bincount(np.searchsorted(edges, c, side="right"),
                                     minlength=edges.size + 1)
        else:
            shares = pd.concat([ref[name].value_counts(), cur[name].value_counts()],
                               axis=1).fillna(0)
            ref_counts, cur_counts = shares.iloc[:, 0].to_numpy(), shares.iloc[:, 1].to_numpy()
        if drift_peers._psi(ref_counts, cur_counts) >= drift_peers.PSI_THRESHOLD:
            flagged.append(name)
    print(json.dumps(sorted(flagged)))


def _run_with_rss(command: list[str], env: dict[str, str] | None = None
                  ) -> tuple[float, float, str]:
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env,
                                   cwd=tempfile.gettempdir())
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code not in (0, 1):  # driftline compare exits 1 when a column drifted
            raise SystemExit(f"{' '.join(command[:3])} failed ({code}): "
                             f"{err.read().decode()[-2000:]}")
        return seconds, usage.ru_maxrss / 1024, out.read().decode()


def _flagged_driftline(output: str) -> list[str]:
    result = json.loads(output)
    return sorted(c["column"] for c in result["columns"] if c["drifted"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--before", help="a driftline command of an earlier install, run "
                        "alongside")
    parser.add_argument("--before-path", default="", help="PYTHONPATH for --before")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="driftline-compare-") as folder:
        ref, cur = Path(folder) / "reference.parquet", Path(folder) / "current.parquet"
        write_side(ref, args.rows, current=False)
        write_side(cur, args.rows, current=True)
        commands = {
            "driftline compare": [str(DRIFTLINE), "compare", str(ref), str(cur), "--json"],
            "NumPy/pandas decile PSI": [sys.executable, str(Path(__file__).resolve()), "psi",
                                        str(ref), str(cur)],
        }
        envs: dict[str, dict[str, str] | None] = {name: None for name in commands}
        if args.before:
            commands["driftline compare, before"] = [args.before, "compare", str(ref),
                                                     str(cur), "--json"]
            envs["driftline compare, before"] = {**os.environ,
                                                 "PYTHONPATH": args.before_path}
        times: dict[str, list[float]] = {name: [] for name in commands}
        rss: dict[str, list[float]] = {name: [] for name in commands}
        flagged: dict[str, list[str]] = {}
        for run in range(args.runs):
            order = list(commands) if run % 2 == 0 else list(reversed(commands))
            for name in order:
                seconds, peak_mb, out = _run_with_rss(commands[name], envs[name])
                times[name].append(seconds)
                rss[name].append(peak_mb)
                flagged[name] = (_flagged_driftline(out) if name.startswith("driftline")
                                 else json.loads(out))
        size_mb = (ref.stat().st_size + cur.stat().st_size) / 2 / 1e6
    ratios = [d / s for d, s in zip(times["driftline compare"],
                                    times["NumPy/pandas decile PSI"], strict=True)]
    print(f"\n{args.rows:,} rows x {len(drift_peers.COLUMNS)} columns per side, "
          f"{size_mb:.0f} MB of Parquet per side; {args.runs} alternating runs\n")
    print("| process | seconds, median (min-max) | peak RSS (MB) | flagged columns | "
          "exactly the 7 shifted |")
    print("|---|---:|---:|---|---|")
    for name in commands:
        print(f"| {name} | {statistics.median(times[name]):.2f} "
              f"({min(times[name]):.2f}-{max(times[name]):.2f}) | "
              f"{statistics.median(rss[name]):.0f} | {len(flagged[name])} | "
              f"{'yes' if flagged[name] == sorted(drift_peers.SHIFTED) else 'no'} |")
    print(f"\nratio driftline / script: median {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}-{max(ratios):.2f}), target <= {TARGET_RATIO}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "psi":
        psi_script(sys.argv[2], sys.argv[3])
    else:
        main()
