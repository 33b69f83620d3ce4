"""Peak memory and time of ``driftline profile`` on a large Parquet file.

Run: ``.venv-dev/bin/python benchmarks/profile_memory.py [--size-gb 10] [--keep]``. It writes a
Parquet file of about the given size under ``/tmp`` (20 float64 columns and 5 categorical
string columns, one row group at a time so the writer stays small), profiles it with the
real CLI in a subprocess, and prints a Markdown row: file size, rows, seconds, the child's
peak resident memory and whether that is under 1 GB (issue 4: "A 10 GB Parquet file
profiles in under 1 GB of resident memory"). The file is deleted afterwards.

Peak RSS is the profiler child's own ``ru_maxrss`` (``os.wait4``, KiB on Linux).
``--runs N`` profiles the file N times; ``--before PYTHON`` (with ``--before-path`` for its
dependencies) alternates with an earlier install on the same file, for a side-by-side row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_SIZE_GB = 10.0
NUMERIC_COLUMNS = 20
CATEGORICAL_COLUMNS = 5
CATEGORIES_PER_COLUMN = 40
ROW_GROUP_ROWS = 250_000
FREE_DISK_FACTOR = 2  # refuse unless twice the file size is free
RSS_LIMIT_MB = 1024
BYTES_PER_GB = 1024**3
KIB = 1024
SEED = 11


def write_parquet(path: Path, size_bytes: int, seed: int = SEED) -> int:
    """Write row groups until the file reaches ``size_bytes``; returns the row count.

    Numeric columns are normal floats (incompressible, so size tracks rows); categorical ones
    draw from a small pool of labels, as real categorical features do.
    """
    rng = np.random.default_rng(seed)
    pools = [pa.array([f"c{c}_{v}" for v in range(CATEGORIES_PER_COLUMN)])
             for c in range(CATEGORICAL_COLUMNS)]
    names = ([f"x{i}" for i in range(NUMERIC_COLUMNS)]
             + [f"cat{i}" for i in range(CATEGORICAL_COLUMNS)])
    schema = pa.schema([(n, pa.float64()) for n in names[:NUMERIC_COLUMNS]]
                       + [(n, pa.string()) for n in names[NUMERIC_COLUMNS:]])
    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        while True:
            numeric = [pa.array(rng.normal(i, 1 + i, ROW_GROUP_ROWS))
                       for i in range(NUMERIC_COLUMNS)]
            categorical = [pool.take(pa.array(rng.zipf(1.5, ROW_GROUP_ROWS) % len(pool)))
                           for pool in pools]
            writer.write_table(pa.table(numeric + categorical, schema=schema))
            rows += ROW_GROUP_ROWS
            # The footer is small; flushed row groups are on disk already.
            if path.stat().st_size >= size_bytes:
                break
    return rows


def profile_child(data: Path, output: Path, python: str = sys.executable,
                  pythonpath: str | None = None) -> tuple[float, float]:
    """Run ``driftline profile`` as a child; returns (seconds, its peak RSS in MB)."""
    command = [python, "-m", "driftline.cli", "profile", str(data), "-o", str(output),
               "--model", "benchmark"]
    env = dict(os.environ) if pythonpath is None else {**os.environ, "PYTHONPATH": pythonpath}
    start = time.perf_counter()
    # From a neutral folder, so ``-m`` finds the installed driftline, not a checkout.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env,
                               cwd=tempfile.gettempdir())
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"driftline profile failed with {python}")
    return seconds, usage.ru_maxrss / KIB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=DEFAULT_SIZE_GB)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to write the file")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--runs", type=int, default=1, help="profile runs per interpreter")
    parser.add_argument("--before", help="interpreter with an earlier driftline installed, "
                        "run alternately on the same file")
    parser.add_argument("--before-path", default=None, help="PYTHONPATH for --before")
    args = parser.parse_args()
    size_bytes = int(args.size_gb * BYTES_PER_GB)
    directory = Path(args.dir)
    free = shutil.disk_usage(directory).free
    if free < FREE_DISK_FACTOR * size_bytes:
        print(f"refusing: {directory} has {free / BYTES_PER_GB:.1f} GB free, need "
              f"{FREE_DISK_FACTOR * args.size_gb:.1f} GB ({FREE_DISK_FACTOR}x the file)",
              file=sys.stderr)
        return 1
    data = directory / f"driftline-profile-memory-{os.getpid()}.parquet"
    output = directory / f"driftline-profile-memory-{os.getpid()}.json"
    try:
        start = time.perf_counter()
        rows = write_parquet(data, size_bytes)
        print(f"wrote {data} ({data.stat().st_size / BYTES_PER_GB:.2f} GB, {rows:,} rows) in "
              f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
        children = {"this checkout": (sys.executable, None)}
        if args.before:
            children["before"] = (args.before, args.before_path)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in children}
        for run in range(args.runs):
            order = list(children) if run % 2 == 0 else list(reversed(children))
            for name in order:
                results[name].append(profile_child(data, output, *children[name]))
        print("| driftline | file size (GB) | rows | seconds, median (min-max) | rows/s | "
              "peak RSS (MB), max | under 1 GB |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for name, runs in results.items():
            seconds = [s for s, _ in runs]
            peak_mb = max(m for _, m in runs)
            middle = statistics.median(seconds)
            print(f"| {name} | {data.stat().st_size / BYTES_PER_GB:.2f} | {rows:,} | "
                  f"{middle:.1f} ({min(seconds):.1f}-{max(seconds):.1f}) | "
                  f"{rows / middle:,.0f} | {peak_mb:.0f} | "
                  f"{'yes' if peak_mb < RSS_LIMIT_MB else 'no'} |")
    finally:
        if not args.keep:
            data.unlink(missing_ok=True)
        output.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
