"""Peak memory and time of ``driftline profile`` on a large Parquet file.

Run: ``.venv-dev/bin/python benchmarks/profile_memory.py [--size-gb 10] [--keep]``. It writes a
Parquet file of about the given size under ``/tmp`` (20 float64 columns and 5 categorical
string columns, one row group at a time so the writer stays small), profiles it with the
real CLI in a subprocess, and prints a Markdown row: file size, rows, seconds, the child's
peak resident memory and whether that is under 1 GB (issue 4: "A 10 GB Parquet file
profiles in under 1 GB of resident memory"). The file is deleted afterwards.

Peak RSS comes from ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` (KiB on Linux), the
largest resident set of any child waited for, so the writer runs in this process and only
the profiler is a child.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
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


def profile_child(data: Path, output: Path) -> tuple[float, float]:
    """Run ``driftline profile`` as a child; returns (seconds, peak RSS in MB)."""
    command = [sys.executable, "-m", "driftline.cli", "profile", str(data), "-o", str(output),
               "--model", "benchmark"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, peak_kib / KIB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=DEFAULT_SIZE_GB)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to write the file")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
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
        seconds, peak_mb = profile_child(data, output)
        print("| file size (GB) | rows | seconds | peak RSS (MB) | under 1 GB |")
        print("|---:|---:|---:|---:|---|")
        print(f"| {data.stat().st_size / BYTES_PER_GB:.2f} | {rows:,} | {seconds:.0f} | "
              f"{peak_mb:.0f} | {'yes' if peak_mb < RSS_LIMIT_MB else 'no'} |")
    finally:
        if not args.keep:
            data.unlink(missing_ok=True)
        output.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
