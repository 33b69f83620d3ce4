"""One stream's production data in one window, mergeable and serialisable for the checkpoint.

Exponential histograms arriving in a window are queued per column and merged in one
vectorised pass when the window is read (evaluation, checkpoint) or the queue reaches
``PENDING_MERGE_LIMIT``; the result equals merging them one by one (``exphist.merge``).
Histograms are kept in the profile's JSON dict form when written, so a checkpoint is read by
the same code that reads profiles.
"""

from __future__ import annotations

import base64
import contextlib
import json
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from driftline import exphist
from driftline.exphist import Buckets, ExpHistogram
from driftline.processor.ml_drift import explicit as _explicit
from driftline.processor.ml_drift.explicit import ExplicitHistogram
from driftline.processor.ml_drift.part_blob import parts_blob, parts_from_blob
from driftline.profile import (
    KIND_CATEGORICAL,
    KIND_NUMERIC,
    ROLE_FEATURE,
    ROLE_PREDICTION,
    ColumnProfile,
    Profile,
)


@dataclass(frozen=True, slots=True)
class CheckpointDelta:
    """What an open window's checkpoint needs since the last one: its state without
    histograms (JSON); the merged histograms that changed (column, JSON); the parts queued
    since, as one ``parts_blob`` (None: none); and whether a merge folded every queued part
    into those histograms (then the stored parts are dropped before these are added)."""

    state: str
    columns: list[tuple[str, str]]
    parts: bytes | None
    folded: bool


@dataclass(frozen=True, slots=True)
class StreamKey:
    """What a drift verdict is about: one operation of one version of one model."""

    model_name: str
    model_version: str
    operation: str

    def text(self) -> str:
        return json.dumps([self.model_name, self.model_version, self.operation])

    @classmethod
    def from_text(cls, text: str) -> StreamKey:
        return cls(*json.loads(text))


# Queued histograms per column; at this many they are merged (bounds memory per window).
# Each window merges at its own limit, between half of this and all of it (``merge_limit``):
# windows filled at the same pace (the models of one app) would otherwise all merge, and be
# rewritten in the checkpoint, in the same request.
PENDING_MERGE_LIMIT = 256
_EMPTY = np.zeros(0, dtype=np.int64)

# An exponential histogram as it arrives, cheaper to build than an ExpHistogram: (scale,
# zero_count, positive offset, positive counts, negative offset, negative counts, count,
# sum, min, max), counts as int64 arrays.
Part = tuple[int, int, int, np.ndarray, int, np.ndarray, int, float, float, float]
_POSITIVE, _NEGATIVE = 2, 4  # index of a sign's offset in a Part (its counts follow)


class Window:
    """One stream's data in one window (or the merge of several); touched under a lock."""

    __slots__ = ("_compacted", "_folded", "_merge_limit", "_numeric", "_pending",
                 "_resource_text", "_unwritten", "categorical", "explicit", "framework",
                 "index", "key", "resource", "rows")

    def __init__(self, key: StreamKey, index: int) -> None:
        self.key = key
        self.index = index
        self._numeric: dict[str, ExpHistogram] = {}
        self._pending: dict[str, list[Part]] = {}
        self._merge_limit = merge_limit(key, index)
        # Checkpoint bookkeeping (see ``checkpoint_delta``): the parts queued since the last
        # call, the columns merged since, and whether a merge folded every queued part (the
        # stored ones included) into the merged histograms.
        self._unwritten: list[tuple[str, Part]] = []
        self._compacted: set[str] = set()
        self._folded = False
        self.explicit: dict[str, ExplicitHistogram] = {}
        self.categorical: dict[str, Counter[str]] = {}
        self.rows = 0
        self.framework = ""
        self.resource: list[KeyValue] | None = None
        # ``resource`` as the checkpoint writes it, with the list it was made from (every
        # commit writes the state; the resource rarely changes).
        self._resource_text: tuple[list[KeyValue] | None, str | None] = (None, None)

    def row_count(self) -> int:
        """``ml.predict.rows`` when the app sends it, else the largest column count (an app
        with only its own histogram views sends no row counter)."""
        if self.rows:
            return self.rows
        counts = [h.count for h in self.numeric.values()]
        counts += [h.count for h in self.explicit.values()]
        counts += [round(sum(c.values())) for c in self.categorical.values()]
        return int(max(counts, default=0))

    @property
    def numeric(self) -> dict[str, ExpHistogram]:
        """Merged histogram per column (queued points are merged first)."""
        if self._pending:
            self._merge_pending()
        return self._numeric

    @numeric.setter
    def numeric(self, value: dict[str, ExpHistogram]) -> None:
        self._numeric = value
        self._pending = {}
        self._unwritten = []
        self._compacted = set(value)
        self._folded = True

    def has_column(self, column: str) -> bool:
        return (column in self._numeric or column in self._pending
                or column in self.explicit or column in self.categorical)

    def columns(self) -> set[str]:
        return (set(self._numeric) | set(self._pending) | set(self.explicit)
                | set(self.categorical))

    def add_resource(self, attributes: Iterable[KeyValue]) -> None:
        """Keep the resource attributes every sender of this stream shares.

        Replicas of one service differ only in instance attributes; the drift verdict is
        about all of them, so it carries what they have in common.
        """
        incoming = list(attributes)
        if self.resource is None:
            self.resource = [KeyValue(key=kv.key, value=kv.value) for kv in incoming]
            return
        by_key = {kv.key: kv.value for kv in incoming}
        shared = [kv for kv in self.resource if by_key.get(kv.key) == kv.value]
        if len(shared) != len(self.resource):  # unchanged: the same list stays
            self.resource = shared

    def add_numeric(self, column: str, histogram: ExpHistogram | Part) -> None:
        """Queue ``histogram`` for ``column``; one wider than ``max_size`` buckets per sign is
        downscaled now, so a huge point is not held as it came."""
        part = part_of(histogram) if isinstance(histogram, ExpHistogram) else histogram
        if max(part[3].size, part[5].size) > exphist.DEFAULT_MAX_SIZE:
            part = part_of(exphist.merge([histogram_of(part)]))
        pending = self._pending.setdefault(column, [])
        pending.append(part)
        self._unwritten.append((column, part))
        if len(pending) >= self._merge_limit:
            self._merge_pending()

    def _merge_pending(self) -> None:
        """Merge every column's queued parts (all at once, so a merge lets the checkpoint
        drop all the window's stored parts: see ``checkpoint_delta``)."""
        for column, pending in self._pending.items():
            current = self._numeric.get(column)
            if current is not None:
                pending.insert(0, part_of(current))
            self._numeric[column] = histogram_of(pending[0]) if len(pending) == 1 \
                else merge_parts(pending)
            self._compacted.add(column)
        self._pending = {}
        self._unwritten = []
        self._folded = True

    def check(self) -> None:
        """Raise ``ValueError`` when a histogram lies beyond the limits arriving points are
        held to (``exphist.check_buckets``): a checkpoint written before they were checked,
        or damaged, must not cost more memory than its buckets at the next evaluation."""
        parts = [part_of(h) for h in self._numeric.values()]
        parts += [p for pending in self._pending.values() for p in pending]
        for part in parts:
            scale = part[0]
            for sign in (_POSITIVE, _NEGATIVE):
                exphist.check_buckets(scale, part[sign], part[sign + 1].size)

    def add_explicit(self, column: str, histogram: ExplicitHistogram) -> None:
        """Raises ``ValueError`` when the bounds differ from the column's earlier points."""
        current = self.explicit.get(column)
        self.explicit[column] = histogram if current is None \
            else _explicit.merge(current, histogram)

    def absorb(self, other: Window) -> None:
        """Add ``other``'s data (an earlier window of the same stream) to this one."""
        for column, hist in other.numeric.items():
            self.add_numeric(column, hist)
        for column, ehist in other.explicit.items():
            with contextlib.suppress(ValueError):  # changed bounds: keep the first ones
                self.add_explicit(column, ehist)
        for column, counts in other.categorical.items():
            self.categorical.setdefault(column, Counter()).update(counts)
        self.rows += other.rows
        self.framework = self.framework or other.framework
        if other.resource is not None:
            self.add_resource(other.resource)

    # --- checkpoint form ------------------------------------------------------------------

    def checkpoint_delta(self) -> CheckpointDelta:
        """What the checkpoint needs since the last call, without merging queued points
        (see ``CheckpointDelta``). The window is its merged histograms with its stored parts
        on top, in order (``add_parts`` reads them back)."""
        state = json.dumps({"numeric": {}, **self.to_dict(numeric=False)})
        columns = [(c, json.dumps(histogram_dict(self._numeric[c])))
                   for c in sorted(self._compacted) if c in self._numeric]
        parts = parts_blob(self._unwritten) if self._unwritten else None
        delta = CheckpointDelta(state, columns, parts, self._folded)
        self._compacted = set()
        self._unwritten = []
        self._folded = False
        return delta

    def add_parts(self, blobs: Iterable[bytes]) -> None:
        """Queue the parts a checkpoint holds (``checkpoint_delta``), marked as stored.

        A merge while queueing them (this process merges at a lower limit than the one that
        wrote them) folds stored parts into memory: then the next checkpoint rewrites the
        merged columns, drops the stored parts and writes again those queued after it."""
        self._compacted = set()  # what ``from_dict`` read is what the file holds
        self._folded = False
        for blob in blobs:
            for column, part in parts_from_blob(blob):
                self.add_numeric(column, part)
        if not self._folded:  # every queued part is in the file as it is
            self._unwritten = []

    def to_dict(self, numeric: bool = True) -> dict[str, Any]:
        """The window's state (``numeric`` False: without the histograms)."""
        return {
            **({"numeric": {c: histogram_dict(h) for c, h in self.numeric.items()}}
               if numeric else {}),
            "explicit": {c: h.to_dict() for c, h in self.explicit.items()},
            "categorical": {c: dict(v) for c, v in self.categorical.items()},
            "rows": self.rows, "framework": self.framework,
            "resource": self._resource_as_text(),
        }

    def _resource_as_text(self) -> str | None:
        made_from, text = self._resource_text
        if made_from is not self.resource or text is None:
            text = None if self.resource is None else base64.b64encode(
                Resource(attributes=self.resource).SerializeToString()).decode()
            self._resource_text = (self.resource, text)
        return text

    @classmethod
    def from_dict(cls, key: StreamKey, index: int, data: dict[str, Any]) -> Window:
        window = cls(key, index)
        window.numeric = {c: ExpHistogram.from_dict(h) for c, h in data["numeric"].items()}
        window.explicit = {c: ExplicitHistogram.from_dict(h)
                           for c, h in data["explicit"].items()}
        window.categorical = {c: Counter(v) for c, v in data["categorical"].items()}
        window.rows = int(data["rows"])
        window.framework = str(data["framework"])
        if data.get("resource") is not None:
            resource = Resource.FromString(base64.b64decode(data["resource"]))
            window.resource = list(resource.attributes)
        return window


def merged(windows: Sequence[Window]) -> Window:
    """One window holding the data of ``windows`` (oldest first), keyed as the last one."""
    last = windows[-1]
    out = Window(last.key, last.index)
    for window in windows:
        out.absorb(window)
    return out


def as_profile(window: Window, prediction_columns: Iterable[str]) -> Profile:
    """A reference built from production windows (the ``baseline``)."""
    predictions = set(prediction_columns)
    columns: dict[str, ColumnProfile] = {}
    for name, hist in window.numeric.items():
        role = ROLE_PREDICTION if name in predictions else ROLE_FEATURE
        columns[name] = ColumnProfile(name, role, KIND_NUMERIC, int(hist.count), 0, hist)
    for name, counts in window.categorical.items():
        role = ROLE_PREDICTION if name in predictions else ROLE_FEATURE
        frequencies = {k: int(v) for k, v in counts.items()}
        columns[name] = ColumnProfile(name, role, KIND_CATEGORICAL, sum(frequencies.values()),
                                      0, None, frequencies)
    return Profile(window.key.model_name, window.key.model_version, 0, window.rows, columns)


def merge_limit(key: StreamKey, index: int) -> int:
    """The queue length at which this window merges: spread over the upper half of
    ``PENDING_MERGE_LIMIT`` by a checksum of the window (the same in every process)."""
    half = PENDING_MERGE_LIMIT // 2
    return half + zlib.crc32(f"{key.text()}|{index}".encode()) % (half + 1)


def part_of(hist: ExpHistogram) -> Part:
    """``hist`` as the tuple windows queue (see ``Part``)."""
    return (hist.scale, hist.zero_count, hist.positive.offset, hist.positive.counts,
            hist.negative.offset, hist.negative.counts, hist.count, hist.sum, hist.min,
            hist.max)


def histogram_of(part: Part) -> ExpHistogram:
    """The ``ExpHistogram`` a ``Part`` holds, as it is (not downscaled)."""
    scale, zero_count, pos_offset, pos, neg_offset, neg, count, total, low, high = part
    return ExpHistogram(scale, zero_count, Buckets(pos_offset, pos), Buckets(neg_offset, neg),
                        count, total, low, high)


def merge_parts(parts: Sequence[Part], max_size: int = exphist.DEFAULT_MAX_SIZE
                ) -> ExpHistogram:
    """``exphist.merge`` of the histograms ``parts`` hold, in one vectorised pass: every
    bucket of every part is mapped to the common scale at once and summed by one
    ``bincount``.

    Same result as ``exphist.merge`` (and as merging one by one): the common scale is the
    finest one at which the union of all bucket spans fits ``max_size``. Counts are summed
    as float64, exact below 2**53 per bucket.
    """
    parts = [p for p in parts if p[6]]
    if not parts:
        return exphist.empty()
    # One transposition instead of a Python loop over the parts per field.
    (scales_of, zero_counts, pos_offsets, pos_counts, neg_offsets, neg_counts, counts_of,
     sums, mins, maxs) = zip(*parts, strict=True)
    scales = np.array(scales_of, dtype=np.int64)
    base = int(scales.min())
    uneven = int(scales.max()) != base
    # Every bucket's index at the finest common scale, and which buckets hold counts: the
    # span is sized by those, not by the zeros the SDK pads delta points with.
    found: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
    shift = 0
    for sign, offsets_of, arrays in ((_POSITIVE, pos_offsets, pos_counts),
                                     (_NEGATIVE, neg_offsets, neg_counts)):
        lengths = np.array(list(map(len, arrays)), dtype=np.int64)
        counts = np.concatenate(arrays) if lengths.any() else _EMPTY
        occupied = counts != 0
        if not occupied.any():
            found[sign] = None
            continue
        offsets = np.array(offsets_of, dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        index = np.arange(counts.size, dtype=np.int64) + np.repeat(offsets - starts, lengths)
        if uneven:  # parts of one column mostly share a scale: no shift to lay out then
            index >>= np.repeat(scales - base, lengths)
        index, counts = index[occupied], counts[occupied]
        shift = max(shift, exphist.scale_reduction(int(index.min()), int(index.max()),
                                                   max_size))
        found[sign] = (index, counts)
    scale = max(base - shift, exphist.MIN_SCALE)
    summed: dict[int, Buckets] = {}
    for sign, entry in found.items():
        if entry is None:
            summed[sign] = Buckets(0, _EMPTY)
            continue
        index, counts = entry
        if base != scale:
            index >>= base - scale
        low = int(index.min())
        summed[sign] = Buckets(low, np.bincount(index - low, weights=counts).astype(np.int64))
    return ExpHistogram(
        scale=scale,
        zero_count=sum(zero_counts),
        positive=summed[_POSITIVE],
        negative=summed[_NEGATIVE],
        count=sum(counts_of),
        sum=float(sum(sums)),
        min=min(mins),
        max=max(maxs),
    )


def merge_many(hists: Sequence[ExpHistogram],
               max_size: int = exphist.DEFAULT_MAX_SIZE) -> ExpHistogram:
    """``exphist.merge(hists)`` in one vectorised pass (see ``merge_parts``)."""
    return merge_parts([part_of(h) for h in hists], max_size)


def histogram_dict(hist: ExpHistogram) -> dict[str, Any]:
    """``hist.to_dict()``, with the counts converted by NumPy (the checkpoint's hot path)."""
    return {
        "scale": int(hist.scale),
        "zero_count": int(hist.zero_count),
        "positive": {"offset": int(hist.positive.offset),
                     "counts": hist.positive.counts.tolist()},
        "negative": {"offset": int(hist.negative.offset),
                     "counts": hist.negative.counts.tolist()},
        "count": int(hist.count),
        "sum": float(hist.sum),
        "min": float(hist.min),
        "max": float(hist.max),
    }
