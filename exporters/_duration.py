"""Durations as the collector's YAML spells them: ``"1s"``, ``"500ms"``, ``"1m30s"`` or a number.

A bare number means seconds, so ``flush_interval: 2`` and ``flush_interval: "2s"`` agree.
"""

from __future__ import annotations

import math
import re

_UNIT_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration_s(value: object) -> float:
    """Seconds in ``value``; raise ``ValueError`` saying what is accepted when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration such as '1s' or '500ms', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip())
    else:
        raise ValueError(f"must be a duration such as '1s' or '500ms', got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"must be a non-negative duration, got {value!r}")
    return seconds


def _parse_text(text: str) -> float:
    if _NUMBER.fullmatch(text):
        return float(text)
    position = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"must be a duration such as '1s' or '500ms', got {text!r}")
    return total
