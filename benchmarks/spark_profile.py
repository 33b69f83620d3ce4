"""Rows per second of a reference profile built on Spark (local[N]) vs the local path.

Run: ``.venv/bin/python benchmarks/spark_profile.py --rows 10000000`` (needs the ``spark``
extra and Java). Spark writes the data set as Parquet parts (not timed); then the same
directory is profiled by ``profile.profile_file`` (one process, the local path) and by
``driftline.spark.capture`` on ``spark.read.parquet`` (``local[N]``: N executor cores), and
the two profiles are checked equal (buckets and counts). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_ROWS = 10_000_000
DEFAULT_CORES = 2
NUMERIC_COLUMNS = 8
CATEGORIES = 30


def _write(spark: object, rows: int, out: Path) -> None:
    from pyspark.sql import functions as F

    df = spark.range(rows)  # type: ignore[attr-defined]
    columns = [F.randn(seed=i).alias(f"x{i}") * (i + 1) + i for i in range(NUMERIC_COLUMNS)]
    columns.append(F.concat(F.lit("c"), (F.rand(seed=99) * CATEGORIES).cast("int")
                            .cast("string")).alias("city"))
    columns.append((F.rand(seed=7) * 3).cast("int").alias("label"))
    df.select(*columns).write.parquet(str(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--cores", type=int, default=DEFAULT_CORES)
    args = parser.parse_args(argv)

    from pyspark.sql import SparkSession

    from driftline import profile
    from driftline import spark as driftline_spark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master(f"local[{args.cores}]")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.memory", "2g")
             .getOrCreate())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "train"
            _write(spark, args.rows, data)
            started = time.perf_counter()
            local = profile.profile_file(data, model="m", prediction_column="label")
            local_s = time.perf_counter() - started
            df = spark.read.parquet(str(data))
            partitions = df.rdd.getNumPartitions()
            started = time.perf_counter()
            built = driftline_spark.capture(df, "label", model="m")
            spark_s = time.perf_counter() - started
    finally:
        spark.stop()
    same = all(
        built.columns[n].histogram == local.columns[n].histogram
        if built.columns[n].histogram is None else
        {k: v for k, v in built.columns[n].histogram.to_dict().items() if k != "sum"}
        == {k: v for k, v in local.columns[n].histogram.to_dict().items() if k != "sum"}
        for n in local.columns) and all(
        built.columns[n].frequencies == local.columns[n].frequencies for n in local.columns)
    print(f"{args.rows:,} rows x {NUMERIC_COLUMNS} numeric + 1 text + 1 label column; "
          f"{partitions} Parquet partitions; profiles equal: {same}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("| path | seconds | rows/s |")
    print("|---|---:|---:|")
    print(f"| local: profile_file (one process) | {local_s:.1f} | {args.rows / local_s:,.0f} |")
    print(f"| Spark local[{args.cores}]: driftline.spark.capture | {spark_s:.1f} | "
          f"{args.rows / spark_s:,.0f} |")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
