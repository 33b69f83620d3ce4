"""The checkpoint's parts blob keeps its byte layout (issue 21: laying its records out with
NumPy instead of one ``struct.pack`` per part was tried, and measured slower): a checkpoint
written before reads the same, and one written now is what the record format says."""

from __future__ import annotations

import json
import math
import struct

import numpy as np

from driftline.processor.ml_drift.part_blob import parts_blob, parts_from_blob

# The layout the module documents: header, column names (JSON), one record per part
# (8 little-endian int64, then 3 float64), then every count in the narrowest unsigned type.
HEADER = struct.Struct("<4sIII")
RECORD = struct.Struct("<" + "q" * 8 + "d" * 3)


def test_blob_bytes_follow_the_record_layout() -> None:
    parts = [
        ("age", (3, 2, -7, np.array([1, 300, 0], dtype=np.int64), 4, np.zeros(0, np.int64),
                 303, 41.5, -math.inf, math.inf)),
        ("income", (-2, 0, 5, np.zeros(0, np.int64), -1, np.array([2, 9], dtype=np.int64),
                    11, math.nan, -3.0, 0.0)),
        ("age", (20, 2**53, -2**31, np.array([65_535], dtype=np.int64), 2**31 - 1,
                 np.array([7], dtype=np.int64), 2**53, -0.0, 1.0, 2.0)),
    ]
    names = json.dumps(["age", "income"]).encode()
    records = [RECORD.pack(0, 3, 2, -7, 3, 4, 0, 303, 41.5, -math.inf, math.inf),
               RECORD.pack(1, -2, 0, 5, 0, -1, 2, 11, math.nan, -3.0, 0.0),
               RECORD.pack(0, 20, 2**53, -2**31, 1, 2**31 - 1, 1, 2**53, -0.0, 1.0, 2.0)]
    counts = np.array([1, 300, 0, 2, 9, 65_535, 7], dtype="<u2").tobytes()  # max 65 535
    assert parts_blob(parts) == b"".join(
        (HEADER.pack(b"DLP3", 3, len(names), 2), names, *records, counts))
    back = parts_from_blob(parts_blob(parts))
    assert [column for column, _ in back] == ["age", "income", "age"]
    assert back[2][1][1] == 2**53 and back[1][1][5].tolist() == [2, 9]


def test_an_empty_blob_reads_back_empty() -> None:
    assert parts_from_blob(parts_blob([])) == []
