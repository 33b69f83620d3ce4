"""Reference profiles of Spark DataFrames: one profile builder per partition, merged on the
driver.

Each partition is profiled where it lives (``DataFrame.mapInArrow``: Arrow batches, no
pandas, no rows through the JVM-Python row path) by the same ``ProfileBuilder`` the local
path uses, and only its bounded state travels to the driver (kilobytes per partition: the
histograms and at most ``4 * top_k`` categories per column). The merged builder has the
same buckets and counts as one builder fed every row; docs/scale.md says how top-K stays
exact and what floating-point sums may differ by.

Needs ``pip install 'driftline[spark]'`` (pyspark) on the driver; the executors need
Driftline installed in their Python too, as for any Python UDF.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

from driftline.profile import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_TOP_K,
    Profile,
    ProfileBuilder,
    ProfileError,
    add_chunk,
)

__all__ = ["capture", "is_spark_dataframe", "partition_states"]

# The one column of what each partition sends back: its pickled ProfileBuilder.
STATE_COLUMN = "driftline_profile_state"
STATE_SCHEMA = f"{STATE_COLUMN} binary"


def is_spark_dataframe(data: Any) -> bool:
    """A ``pyspark.sql.DataFrame`` (classic or Spark Connect), told apart without importing
    pyspark."""
    return type(data).__module__.startswith("pyspark.sql") and hasattr(data, "mapInArrow")


def partition_states(batches: Iterator[Any], *, model: str, version: str = "",
                     predictions: str | None = None, target: str | None = None,
                     task: str | None = None, top_k: int = DEFAULT_TOP_K,
                     chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Any]:
    """Profile one partition's Arrow record batches; yields one batch holding the builder.

    Spark hands batches of ``spark.sql.execution.arrow.maxRecordsPerBatch`` rows (10 000 by
    default): they are joined into chunks of ``chunk_rows`` first, as the local path reads
    files, so a histogram is computed per chunk rather than per small batch. Any engine
    that maps a function over Arrow batches of partitions can call this (Dask, Ray Data).
    """
    import pyarrow as pa

    builder = ProfileBuilder(model, version, top_k=top_k)
    pending: list[Any] = []
    rows = 0

    def flush() -> None:
        chunk = pending[0] if len(pending) == 1 else \
            pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
        add_chunk(builder, chunk, predictions, target=target, task=task)
        pending.clear()

    for batch in batches:
        if not batch.num_rows:
            continue
        pending.append(batch)
        rows += batch.num_rows
        if rows >= chunk_rows:
            flush()
            rows = 0
    if pending:
        flush()
    yield pa.RecordBatch.from_pydict({STATE_COLUMN: [pickle.dumps(builder)]},
                                     schema=pa.schema([(STATE_COLUMN, pa.binary())]))


def capture(df: Any, predictions: str | None = None, *, target: str | None = None,
            model: str, version: str = "", task: str | None = None,
            top_k: int = DEFAULT_TOP_K, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Profile:
    """The reference profile of a Spark DataFrame, as ``profile.capture`` would build it
    from the same rows.

    ``predictions`` and ``target`` name columns of ``df`` (the model's output and the true
    label or value), profiled in their roles; every other column is a feature.
    """
    if not is_spark_dataframe(df):
        raise ProfileError(f"driftline.spark.capture takes a pyspark.sql.DataFrame, got "
                           f"{type(df).__name__}")
    for role, name in (("predictions", predictions), ("target", target)):
        if name is not None and name not in df.columns:
            raise ProfileError(f"{role}: no column '{name}' (columns: {', '.join(df.columns)})")
    options = {"model": model, "version": version, "predictions": predictions,
               "target": target, "task": task, "top_k": top_k, "chunk_rows": chunk_rows}

    def profile_partition(batches: Iterator[Any]) -> Iterator[Any]:
        return partition_states(batches, **options)  # type: ignore[arg-type]

    merged = ProfileBuilder(model, version, top_k=top_k)
    for row in df.mapInArrow(profile_partition, STATE_SCHEMA).collect():
        merged.merge(pickle.loads(row[STATE_COLUMN]))
    return merged.build()
