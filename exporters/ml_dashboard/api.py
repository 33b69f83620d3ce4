"""The dashboard's JSON API (docs/dashboard.md), the page's only data source.

``GET /api/models?from=&to=``,
``GET /api/windows?model=&version=&operation=&from=&to=&parts=&detail=`` and
``GET /api/distributions?model=&version=&operation=&window=``; times are Unix seconds, a
window is named by its start in Unix nanoseconds (``id`` in ``/api/windows``). Stored parts
are JSON already and are handed on as text, so a day of windows is not parsed per request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline import semconv
from driftline.exphist import ExpHistogram
from driftline.exporters.ml_dashboard.collect import KIND_CATEGORICAL, KIND_NUMERIC, summary
from driftline.exporters.ml_dashboard.history import History, StreamKey
from driftline.profile import ColumnProfile, Profile
from driftline.report import category_shares, numeric_densities

NS_PER_S = 1_000_000_000
DEFAULT_RANGE_S = 3600.0
# The overview draws each model's dataset-share trend with at most this many points, each
# the highest share of its part of the range.
TREND_POINTS = 120
ROLE_CURRENT = "current"
WINDOW_PARTS = ("drift", "performance", "predictions", "service", "estimated")


class ApiError(ValueError):
    """A request the API cannot answer: ``status`` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Api:
    history: History
    profiles: Callable[[], Mapping[tuple[str, str], Profile]]
    stale_after_s: float
    clock_ns: Callable[[], int]

    # --- /api/models ------------------------------------------------------------------------
    def models(self, query: Mapping[str, str]) -> str:
        now_ns = self.clock_ns()
        from_ns, to_ns = _range(query, now_ns)
        verdicts = self.history.last_verdicts()
        trends: dict[int, list[tuple[int, float]]] = {}
        step_ns = -(-(to_ns - from_ns) // TREND_POINTS)
        for stream, start_ns, share in self.history.shares(from_ns, to_ns, step_ns):
            trends.setdefault(stream, []).append([start_ns / NS_PER_S, share])
        models = []
        for stream in self.history.streams():
            last = verdicts.get(stream["id"])
            last_seen_ns = stream["last_seen_ns"]
            models.append({
                "name": stream["name"], "version": stream["version"],
                "operation": stream["operation"], "framework": stream["framework"],
                "last_seen": _s(last_seen_ns),
                "stale": bool(last_seen_ns) and now_ns - last_seen_ns > self.stale_after_s
                * NS_PER_S,
                "last_window": None if last is None else dict(zip(
                    ("start", "evaluated", "rows", "share", "dataset_drifted", "drifted",
                     "features"), (_s(last[0]), _s(last[1]), *last[2:]), strict=True)),
                "trend": trends.get(stream["id"], []),
            })
        return json.dumps({"now": now_ns / NS_PER_S, "from": from_ns / NS_PER_S,
                           "to": to_ns / NS_PER_S,
                           "stale_after_s": self.stale_after_s, "models": models},
                          allow_nan=False)

    # --- /api/windows -----------------------------------------------------------------------
    def windows(self, query: Mapping[str, str]) -> str:
        key, stream = self._stream(query)
        now_ns = self.clock_ns()
        from_ns, to_ns = _range(query, now_ns)
        rows_of = self.history.windows(stream, from_ns, to_ns)
        detail = _detail(query.get("detail", ""), rows_of)
        wanted = _parts(query.get("parts", ""))
        parts = []
        for row in rows_of:
            (start_ns, end_ns, evaluated_ns, rows, share, dataset_drifted, drifted, features,
             *texts) = row
            head = json.dumps({"id": str(start_ns), "start": _s(start_ns), "end": _s(end_ns),
                               "evaluated": _s(evaluated_ns), "rows": rows, "share": share,
                               "dataset_drifted": dataset_drifted, "drifted": drifted,
                               "features": features}, allow_nan=False)
            tail = ",".join(f'"{name}":{text or "null"}' for name, text in
                            zip(WINDOW_PARTS, texts, strict=True) if name in wanted)
            if start_ns == detail:
                tail += f',"scores":{self.history.scores(stream, start_ns) or "null"}'
            parts.append(head[:-1] + "," + tail + "}")
        head = json.dumps({"model": {"name": key.name, "version": key.version,
                                     "operation": key.operation},
                           "from": from_ns / NS_PER_S, "to": to_ns / NS_PER_S,
                           "reference": self._reference(key)}, allow_nan=False)
        return f'{head[:-1]},"windows":[{",".join(parts)}]}}'


    def _reference(self, key: StreamKey) -> dict[str, Any] | None:
        profile = self._profile(key)
        if profile is None:
            return None
        out: dict[str, Any] = {"rows": profile.row_count}
        classes = profile.columns.get(semconv.PROFILE_COLUMN_PREDICTION_CLASS)
        if classes is not None and classes.kind == KIND_CATEGORICAL:
            out["classes"] = classes.category_counts()
        confidence = profile.columns.get(semconv.PROFILE_COLUMN_PREDICTION_CONFIDENCE)
        if confidence is not None and confidence.histogram is not None:
            out["confidence"] = _clean(summary(confidence.histogram))
        return out

    # --- /api/distributions -----------------------------------------------------------------
    def distributions(self, query: Mapping[str, str]) -> str:
        key, stream = self._stream(query)
        window = query.get("window", "")
        if window:
            try:
                start_ns = int(window)
            except ValueError:
                raise ApiError(400, f"window: the start of a window in Unix nanoseconds (the "
                                    f"'id' of /api/windows), got {window!r}") from None
        else:
            latest = self.history.latest_distribution_start(stream)
            if latest is None:
                raise ApiError(404, f"model {key.name!r}: no distributions stored yet")
            start_ns = latest
        stored = self.history.distributions(stream, start_ns)
        if stored is None:
            raise ApiError(404, f"model {key.name!r}: no distributions for window {start_ns}")
        profile = self._profile(key)
        wanted = query.get("column")
        columns = {}
        for column, data in sorted(stored.items()):
            if wanted and column != wanted:
                continue
            reference = profile.columns.get(column) if profile is not None else None
            columns[column] = _drawn(column, data, reference)
        return json.dumps({"model": {"name": key.name, "version": key.version,
                                     "operation": key.operation},
                           "window": str(start_ns), "start": _s(start_ns),
                           "reference": profile is not None, "columns": columns},
                          allow_nan=False)

    # --- helpers ----------------------------------------------------------------------------
    def _stream(self, query: Mapping[str, str]) -> tuple[StreamKey, int]:
        name = query.get("model")
        if not name:
            raise ApiError(400, "model: required, a model name from /api/models")
        key = StreamKey(name, query.get("version", ""), query.get("operation", ""))
        stream = self.history.stream_id(key)
        if stream is None:
            raise ApiError(404, f"no history for model {name!r} version {key.version!r} "
                                f"operation {key.operation!r}; /api/models lists them")
        return key, stream

    def _profile(self, key: StreamKey) -> Profile | None:
        profiles = self.profiles()
        return profiles.get((key.name, key.version)) or profiles.get((key.name, ""))


def _parts(wanted: str) -> frozenset[str]:
    """The parts a page asked for (``parts=drift,service``), all of them by default: a tab
    needs one, and a day of windows carries all four."""
    if not wanted:
        return frozenset(WINDOW_PARTS)
    names = frozenset(wanted.split(","))
    unknown = names - set(WINDOW_PARTS)
    if unknown:
        raise ApiError(400, f"parts: a comma-separated subset of {', '.join(WINDOW_PARTS)}, "
                            f"got {', '.join(sorted(unknown))}")
    return names


def _detail(wanted: str, rows: list[tuple[Any, ...]]) -> int | None:
    """The window whose every-method scores go with the answer: ``latest`` (the last one
    with a drift verdict) or a window id; none when not asked."""
    if wanted == "latest":
        drifts = [row[0] for row in rows if row[8] is not None]
        return drifts[-1] if drifts else None
    if not wanted:
        return None
    try:
        return int(wanted)
    except ValueError:
        raise ApiError(400, f"detail: 'latest' or a window id (Unix nanoseconds), got "
                            f"{wanted!r}") from None


def _drawn(column: str, data: Mapping[str, Any], reference: ColumnProfile | None
           ) -> dict[str, Any]:
    """One column of a window as the HTML report draws it: numeric densities on a shared
    grid, or category shares; the reference side is null without a profile column."""
    if data["kind"] == KIND_NUMERIC:
        current = ExpHistogram.from_dict(data["histogram"])
        ref = reference.histogram if reference is not None else None
        densities = numeric_densities(ref if ref is not None else current, current)
        return {"kind": KIND_NUMERIC, "rows": int(current.count),
                "edges": _floats(densities.edges),
                "reference": _floats(densities.reference) if ref is not None else None,
                "current": _floats(densities.current)}
    counts = {str(k): int(v) for k, v in data["counts"].items()}
    current_profile = ColumnProfile(column, ROLE_CURRENT, KIND_CATEGORICAL, sum(counts.values()),
                                    0, frequencies=counts)
    shares = category_shares(reference if reference is not None and reference.frequencies
                             else current_profile, current_profile)
    has_reference = reference is not None and bool(reference.frequencies)
    return {"kind": KIND_CATEGORICAL, "rows": sum(counts.values()),
            "categories": [[name, ref if has_reference else None, cur]
                           for name, ref, cur in shares]}


def _floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in values.items()}


def _range(query: Mapping[str, str], now_ns: int) -> tuple[int, int]:
    """``from``/``to`` (Unix seconds) as nanoseconds; the last hour by default."""
    try:
        to_ns = int(float(query["to"]) * NS_PER_S) if query.get("to") else now_ns
        from_ns = (int(float(query["from"]) * NS_PER_S) if query.get("from")
                   else to_ns - int(DEFAULT_RANGE_S * NS_PER_S))
    except ValueError:
        raise ApiError(400, "from/to: Unix seconds, e.g. from=1700000000&to=1700003600, got "
                            f"from={query.get('from')!r} to={query.get('to')!r}") from None
    if from_ns >= to_ns:
        raise ApiError(400, f"from: must be before to, got from={query.get('from')!r} "
                            f"to={query.get('to')!r}")
    return from_ns, to_ns


def _s(time_ns: int | None) -> float | None:
    return None if not time_ns else time_ns / NS_PER_S
