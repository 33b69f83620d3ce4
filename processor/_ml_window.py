"""One stream's production data in one window, mergeable and serialisable for the checkpoint.

Histograms are kept in the profile's JSON dict form when written, so a checkpoint is read by
the same code that reads profiles.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from driftline import exphist
from driftline.exphist import ExpHistogram
from driftline.processor import _explicit
from driftline.processor._explicit import ExplicitHistogram
from driftline.profile import (
    KIND_CATEGORICAL,
    KIND_NUMERIC,
    ROLE_FEATURE,
    ROLE_PREDICTION,
    ColumnProfile,
    Profile,
)


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


class Window:
    """One stream's data in one window (or the merge of several); touched under a lock."""

    __slots__ = ("categorical", "explicit", "framework", "index", "key", "numeric",
                 "resource", "rows")

    def __init__(self, key: StreamKey, index: int) -> None:
        self.key = key
        self.index = index
        self.numeric: dict[str, ExpHistogram] = {}
        self.explicit: dict[str, ExplicitHistogram] = {}
        self.categorical: dict[str, Counter[str]] = {}
        self.rows = 0
        self.framework = ""
        self.resource: list[KeyValue] | None = None

    def row_count(self) -> int:
        """``ml.predict.rows`` when the app sends it, else the largest column count (an app
        with only its own histogram views sends no row counter)."""
        if self.rows:
            return self.rows
        counts = [h.count for h in self.numeric.values()]
        counts += [h.count for h in self.explicit.values()]
        counts += [round(sum(c.values())) for c in self.categorical.values()]
        return int(max(counts, default=0))

    def columns(self) -> set[str]:
        return set(self.numeric) | set(self.explicit) | set(self.categorical)

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
        self.resource = [kv for kv in self.resource if by_key.get(kv.key) == kv.value]

    def add_numeric(self, column: str, histogram: ExpHistogram) -> None:
        current = self.numeric.get(column)
        self.numeric[column] = histogram if current is None \
            else exphist.merge([current, histogram])

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

    def to_dict(self) -> dict[str, Any]:
        resource = Resource(attributes=self.resource or []).SerializeToString()
        return {
            "numeric": {c: h.to_dict() for c, h in self.numeric.items()},
            "explicit": {c: h.to_dict() for c, h in self.explicit.items()},
            "categorical": {c: dict(v) for c, v in self.categorical.items()},
            "rows": self.rows, "framework": self.framework,
            "resource": (base64.b64encode(resource).decode()
                         if self.resource is not None else None),
        }

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
