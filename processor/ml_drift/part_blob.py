"""Queued histogram points (``Part``s) as bytes for the ml_drift checkpoint.

A commit writes one blob per open window holding every point the window queued since the
previous commit, so a commit costs one row per window however many points arrived. The
blob is a small header, the column names, one fixed-width record per part (its integer and
float fields) and all bucket counts in the narrowest unsigned type that holds them
(most delta points count a few thousand rows at most: one or two bytes per bucket).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from driftline.processor.ml_drift.window import Part

_MAGIC = b"DLP3"
# magic, parts, bytes of the column names (JSON), bytes per bucket count
_HEADER = struct.Struct("<4sIII")
# One record per part: column index, scale, zero_count, positive offset and size, negative
# offset and size, count; then sum, min, max.
_INTS = 8
_FLOATS = 3
_RECORD = struct.Struct("<" + "q" * _INTS + "d" * _FLOATS)
_RECORD_DTYPE = np.dtype([("ints", "<i8", (_INTS,)), ("floats", "<f8", (_FLOATS,))])
_COUNT_TYPES = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<i8"}


def parts_blob(parts: Sequence[tuple[str, Part]]) -> bytes:
    """``(column, part)`` pairs as one blob; ``parts_from_blob`` gives them back in order."""
    names: dict[str, int] = {}
    records: list[bytes] = []
    arrays: list[np.ndarray] = []
    pack = _RECORD.pack
    for column, (scale, zero_count, pos_offset, pos, neg_offset, neg, count, total, low,
                 high) in parts:
        records.append(pack(names.setdefault(column, len(names)), scale, zero_count, pos_offset,
                            pos.size, neg_offset, neg.size, count, total, low, high))
        arrays.append(pos)
        arrays.append(neg)
    counts = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    width = _count_width(counts)
    columns = json.dumps(list(names)).encode()
    return b"".join((_HEADER.pack(_MAGIC, len(records), len(columns), width), columns,
                     *records, counts.astype(_COUNT_TYPES[width], copy=False).tobytes()))


def _count_width(counts: np.ndarray) -> int:
    """Bytes per count that hold every one of ``counts`` (int64 for anything unusual)."""
    if not counts.size:
        return 1
    if int(counts.min()) < 0:
        return 8
    top = int(counts.max())
    return next(w for w in (1, 2, 4, 8) if w == 8 or top < 1 << (8 * w))


def parts_from_blob(blob: bytes) -> list[tuple[str, Part]]:
    """The ``(column, part)`` pairs of a ``parts_blob``; ``ValueError`` when it is damaged."""
    try:
        magic, n, names_size, width = _HEADER.unpack_from(blob)
        if magic != _MAGIC or width not in _COUNT_TYPES:
            raise ValueError("not a parts blob")
        at = _HEADER.size
        names = json.loads(blob[at:at + names_size])
        at += names_size
        records = np.frombuffer(blob, dtype=_RECORD_DTYPE, count=n, offset=at)
        ints, floats = records["ints"], records["floats"]
        at += records.nbytes
        counts = np.frombuffer(blob, dtype=_COUNT_TYPES[width], offset=at).astype(np.int64)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"damaged checkpoint parts: {exc}") from exc
    sizes = ints[:, 4] + ints[:, 6]
    if int(sizes.sum()) != counts.size:
        raise ValueError("damaged checkpoint parts: the bucket counts do not add up")
    if ints.size and (int(ints[:, 0].min()) < 0 or int(ints[:, 0].max()) >= len(names)
                      or int(ints[:, [4, 6]].min()) < 0):
        raise ValueError("damaged checkpoint parts: a part names no column or has no size")
    out: list[tuple[str, Part]] = []
    start = 0
    for (index, scale, zero_count, pos_offset, pos_size, neg_offset, neg_size, count), \
            (total, low, high) in zip(ints.tolist(), floats.tolist(), strict=True):
        middle = start + pos_size
        end = middle + neg_size
        out.append((names[index], (scale, zero_count, pos_offset, counts[start:middle],
                                   neg_offset, counts[middle:end], count, total, low, high)))
        start = end
    return out
