"""Durations as the collector's YAML spells them: ``"10s"``, ``"500ms"``, ``"1m30s"``, ``"1h"``.

In Python a number means seconds (the config dataclasses' defaults are numbers of seconds);
in a config file a bare number other than 0 is refused (``bare_number_problem``), since the
collector reads it as nanoseconds. Config fields typed ``str | float`` are durations.
"""

from __future__ import annotations

import math
import re

_SECONDS_PER_UNIT = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN = re.compile(rf"[+-]?{_NUMBER}")
_COMPOUND = re.compile(rf"([+-]?)((?:{_NUMBER}(?:ns|us|µs|ms|s|m|h))+)")
_PART = re.compile(rf"({_NUMBER})(ns|us|µs|ms|s|m|h)")
_EXPECTED = "a duration such as '10s', '500ms', '2m', '1h' or a number of seconds"


def parse_duration(value: object) -> float:
    """Seconds in ``value`` (may be negative); ``ValueError`` saying what is accepted if not one."""
    if isinstance(value, bool):
        raise ValueError(f"must be {_EXPECTED}, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip(), value)
    else:
        raise ValueError(f"must be {_EXPECTED}, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite duration, got {value!r}")
    return seconds


def _parse_text(text: str, original: str) -> float:
    if _PLAIN.fullmatch(text):
        return float(text)
    match = _COMPOUND.fullmatch(text)
    if match is None:
        raise ValueError(f"must be {_EXPECTED}, got {original!r}")
    total = sum(float(n) * _SECONDS_PER_UNIT[unit] for n, unit in _PART.findall(match.group(2)))
    return -total if match.group(1) == "-" else total


def parse_non_negative_duration(value: object) -> float:
    """Seconds in ``value``, which must be zero or more; ``ValueError`` otherwise."""
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError(f"must be a duration of zero or more, got {value!r}")
    return seconds


def positive_duration_problem(key: str, value: object) -> str | None:
    """``"key: message"`` when ``value`` is not a duration above zero, else ``None``."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        return f"{key}: {exc}"
    if seconds <= 0:
        return f"{key}: must be a positive duration, got {value!r}"
    return None


def non_negative_duration_problem(key: str, value: object) -> str | None:
    """``"key: message"`` when ``value`` is not a duration of zero or more, else ``None``."""
    try:
        parse_non_negative_duration(value)
    except ValueError as exc:
        return f"{key}: {exc}"
    return None


def bare_number_problem(key: str, value: object) -> str | None:
    """``"key: message"`` when a config file writes a duration as a bare number other than 0.

    The collector reads a bare number as nanoseconds (Go's ``time.Duration``), so
    ``timeout: 2`` there is 2 ns; refusing it here keeps one file meaning one thing in both.
    """
    if isinstance(value, str) and _PLAIN.fullmatch(value.strip()):
        value = float(value) if "." in value else int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value == 0:
        return None
    return (f"{key}: a bare number is not a duration: the collector reads {value!r} as "
            f"{value!r} nanoseconds; write the unit, e.g. '{value!r}s' for seconds (or ms, m, h)")
