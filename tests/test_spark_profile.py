"""Reference profiles built on Spark (``driftline.spark``): per-partition builders merged on
the driver equal the local profile of the same rows, and ``driftline profile`` reads the
directory of Parquet parts Spark writes.

One local[2] SparkSession for the whole run (session-scoped). Skips without pyspark or
Java, except under ``CI=true`` where that is a broken CI image (the ``spark`` extra and the
Makefile's Debian packages install both) and the tests fail instead.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftline import profile, semconv
from driftline.profile import Profile, ProfileError
from tests.conftest import missing_dependency

ROWS = 20_000
PARTITIONS = 7
# Floating-point sums and moments merge in another order than the local path's chunks.
FLOAT_REL_TOLERANCE = 1e-12
SPLIT_BYTES = "32k"
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
MISSING_SPARK = "needs pyspark (pip install 'driftline[spark]') and Java (default-jre-headless)"


def _missing_spark() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return MISSING_SPARK
    return None if shutil.which("java") else MISSING_SPARK


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The one local[2] SparkSession of a test run (a JVM costs seconds to start)."""
    reason = _missing_spark()
    if reason is not None:
        missing_dependency(reason)
    from pyspark.sql import SparkSession

    with pytest.MonkeyPatch.context() as patch:
        # The executors' Python: this one, which has this Driftline installed.
        patch.setenv("PYSPARK_PYTHON", sys.executable)
        yield from _session(SparkSession)


def _session(builder_class: Any) -> Iterator[Any]:
    session = (builder_class.builder.master("local[2]").appName("driftline-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "1000")
               # Input splits of about one small row group: several partitions, no shuffle.
               .config("spark.sql.files.maxPartitionBytes", SPLIT_BYTES)
               .config("spark.sql.files.openCostInBytes", "0")
               .config("spark.ui.showConsoleProgress", "false")
               # A test JVM lives seconds: the C1 compiler alone starts it sooner.
               .config("spark.driver.extraJavaOptions", JVM_OPTIONS)
               .getOrCreate())
    try:
        yield session
    finally:
        session.stop()


def _table(rows: int, seed: int) -> Any:
    """Features of several kinds (nulls, NaN, negatives, few distinct values, text with
    nulls and tied counts), a class prediction and a target."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 1, rows)
    income[rng.random(rows) < 0.05] = np.nan
    age = rng.integers(18, 90, rows).astype(np.int64)
    balance = rng.normal(-50, 400, rows)
    code = rng.integers(0, 6, rows).astype(np.float64)
    # 120 cities, some tied: more than top_k=50 kept, fewer than the 200 candidates held.
    cities = np.array([f"city{i:03d}" for i in range(120)], dtype=object)
    city = cities[rng.integers(0, 120, rows)]
    city[rng.random(rows) < 0.02] = None
    label = rng.integers(0, 3, rows)
    target = np.where(rng.random(rows) < 0.9, label, (label + 1) % 3)
    return pa.table({
        "income": pa.array(income, mask=np.isnan(income)),
        "age": pa.array(age, mask=rng.random(rows) < 0.01),
        "balance": balance, "code": code,
        "city": pa.array(city.tolist(), type=pa.string()),
        "label": label.astype(np.int64), "churned": target.astype(np.int64)})


@pytest.fixture(scope="module")
def parts(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The table as Spark writes it: a directory of Parquet parts, _SUCCESS, .crc files."""
    local = tmp_path_factory.mktemp("spark_source") / "data.parquet"
    import pyarrow.parquet as pq

    # One row group per partition to be: Spark splits the file by row groups (no shuffle).
    pq.write_table(_table(ROWS, seed=7), local, row_group_size=-(-ROWS // PARTITIONS))
    out = tmp_path_factory.mktemp("spark_out") / "train"
    spark.read.parquet(str(local)).write.parquet(str(out))
    return out


def _assert_same_profile(spark_profile: Profile, local: Profile) -> None:
    assert spark_profile.row_count == local.row_count == ROWS
    assert list(spark_profile.columns) == list(local.columns)
    for name, mine in spark_profile.columns.items():
        theirs = local.columns[name]
        assert (mine.role, mine.kind, mine.count, mine.missing) == (
            theirs.role, theirs.kind, theirs.count, theirs.missing), name
        assert mine.frequencies == theirs.frequencies, name
        assert list(mine.frequencies) == list(theirs.frequencies), name
        assert mine.other == theirs.other, name
        assert mine.values == theirs.values, name
        if mine.histogram is None:
            assert theirs.histogram is None
            continue
        a, b = mine.histogram.to_dict(), theirs.histogram.to_dict()
        for key in ("scale", "zero_count", "positive", "negative", "count", "min", "max"):
            assert a[key] == b[key], (name, key)
        assert math.isclose(a["sum"], b["sum"], rel_tol=FLOAT_REL_TOLERANCE), name
        for moment in ("mean", "m2"):
            assert math.isclose(getattr(mine, moment), getattr(theirs, moment),
                                rel_tol=FLOAT_REL_TOLERANCE), (name, moment)


def test_spark_profile_equals_the_local_profile_of_the_same_rows(spark: Any, parts: Path
                                                                 ) -> None:
    df = spark.read.parquet(str(parts))
    assert df.rdd.getNumPartitions() > 1
    built = profile.capture(df, "label", target="churned", model="churn", version="3")
    local = profile.profile_file(parts, model="churn", version="3",
                                 prediction_column="label", target_column="churned")
    _assert_same_profile(built, local)
    # The roles and kinds a reader of the profile relies on, and the raw counts behind them.
    table = _table(ROWS, seed=7)
    assert built.columns["city"].kind == profile.KIND_CATEGORICAL
    assert built.columns["churned"].role == profile.ROLE_TARGET
    assert built.columns["income"].missing == table.column("income").null_count
    kept = built.columns["city"].frequencies
    assert len(kept) == profile.DEFAULT_TOP_K
    true_counts = table.column("city").value_counts().to_pylist()
    exact = {c["values"]: c["counts"] for c in true_counts if c["values"] is not None}
    assert all(exact[label] == count for label, count in kept.items())
    ranked = sorted(exact.items(), key=lambda item: (-item[1], item[0]))
    assert list(kept) == [label for label, _ in ranked[:profile.DEFAULT_TOP_K]]
    assert built.columns["city"].other == sum(exact.values()) - sum(kept.values())


def test_spark_capture_matches_capture_of_the_arrow_table(spark: Any, parts: Path) -> None:
    """The same rows from memory (one pyarrow Table, profiled locally in one chunk) and
    from Spark (seven partitions of about 2 900 rows, batches of 1 000)."""
    import pyarrow.dataset as ds

    from driftline import spark as driftline_spark

    table = ds.dataset(parts, format="parquet").to_table()
    local = profile.capture(table, "label", target="churned", model="churn", version="3")
    built = driftline_spark.capture(spark.read.parquet(str(parts)), "label",
                                    target="churned", model="churn", version="3")
    _assert_same_profile(built, local)


def test_spark_capture_names_a_missing_column(spark: Any, parts: Path) -> None:
    from driftline import spark as driftline_spark

    with pytest.raises(ProfileError, match="target: no column 'nope'"):
        driftline_spark.capture(spark.read.parquet(str(parts)), "label", target="nope",
                                model="churn")


def test_cli_profiles_the_directory_spark_wrote(parts: Path, tmp_path: Path) -> None:
    assert (parts / "_SUCCESS").exists() and list(parts.glob(".*.crc"))
    out = tmp_path / "churn.profile.json"
    done = subprocess.run([sys.executable, "-m", "driftline", "profile", str(parts),
                           "--model", "churn", "--version", "3", "--prediction-column",
                           "label", "--target-column", "churned", "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = profile.load(out)
    assert written.row_count == ROWS
    assert "label" not in written.columns  # profiled as the prediction, not a feature
    predicted = written.columns[semconv.PROFILE_COLUMN_PREDICTION_CLASS]
    labels = _table(ROWS, seed=7).column("label").to_numpy()
    assert predicted.frequencies == {str(v): int((labels == v).sum()) for v in (0, 1, 2)}
