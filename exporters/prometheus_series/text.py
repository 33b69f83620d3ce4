"""OTLP names and values in the Prometheus text format 0.0.4.

The rules are those of the OpenTelemetry specification "Prometheus and OpenMetrics
compatibility" (OTLP metric points to Prometheus), as the collector's translator applies
them: invalid characters become ``_``, UCUM units become words appended as a suffix,
``{annotation}`` units are dropped, and monotonic sums end in ``_total``. Unit ``1`` becomes
``_ratio`` only when asked (``ratio=True``, for gauges): see ``unit_suffix``.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

_INVALID_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_REPEATED_UNDERSCORES = re.compile(r"__+")
_ANNOTATION = re.compile(r"\{[^}]*\}")

TOTAL_SUFFIX = "_total"
RATIO_SUFFIX = "ratio"
DIMENSIONLESS_UNIT = "1"
LABEL_VALUE_SEPARATOR = ";"

# UCUM units to the words Prometheus uses (the collector's prometheus translator table).
UNIT_WORDS: Mapping[str, str] = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "%": "percent",
}
# The denominator of "foo/bar" units, singular: "By/s" -> "bytes_per_second".
PER_UNIT_WORDS: Mapping[str, str] = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}

# Integral floats below this print without a fraction ("3", not "3.0"), as Go's exporters do.
_MAX_EXACT_INTEGRAL = 1e15


def sanitize_metric_name(name: str) -> str:
    """``name`` with characters outside ``[a-zA-Z0-9_:]`` as ``_``, runs of ``_`` collapsed."""
    cleaned = _REPEATED_UNDERSCORES.sub("_", _INVALID_METRIC_CHARS.sub("_", name)).strip("_")
    if not cleaned:
        return "_"
    return f"_{cleaned}" if cleaned[0].isdigit() else cleaned


def sanitize_label_name(key: str) -> str:
    """An attribute key as a label name: ``ml.feature.name`` -> ``ml_feature_name``."""
    cleaned = _REPEATED_UNDERSCORES.sub("_", _INVALID_LABEL_CHARS.sub("_", key))
    if not cleaned:
        return "_"
    return f"key_{cleaned}" if cleaned[0].isdigit() else cleaned


def unit_suffix(unit: str, *, ratio: bool = False) -> str:
    """The name suffix for an OTLP unit, without the leading ``_``; empty for none.

    The spec's "1 -> ratio" is a SHOULD, and UCUM ``1`` means dimensionless, not a ratio:
    drift scores and 0/1 flags are not ratios, so ``_ratio`` is added only when ``ratio``.
    """
    unit = unit.strip()
    if unit == DIMENSIONLESS_UNIT:
        return RATIO_SUFFIX if ratio else ""
    main, _, per = unit.partition("/")
    main_word = _word(_ANNOTATION.sub("", main).strip(), UNIT_WORDS)
    per_word = _word(_ANNOTATION.sub("", per).strip(), PER_UNIT_WORDS)
    if main_word == DIMENSIONLESS_UNIT:
        main_word = ""
    if per_word:
        return f"{main_word}_per_{per_word}" if main_word else f"per_{per_word}"
    return main_word


def _word(unit: str, words: Mapping[str, str]) -> str:
    if not unit or unit == DIMENSIONLESS_UNIT:
        return unit
    if unit in words:
        return words[unit]
    return _REPEATED_UNDERSCORES.sub("_", _INVALID_LABEL_CHARS.sub("_", unit)).strip("_")


def metric_name(
    name: str, unit: str, *, namespace: str = "", ratio: bool = False, is_counter: bool = False
) -> str:
    """The Prometheus family name of an OTLP metric: namespace, name, unit, then ``_total``."""
    full = f"{namespace}_{name}" if namespace else name
    result = sanitize_metric_name(full)
    if is_counter and result.endswith(TOTAL_SUFFIX) and result != TOTAL_SUFFIX:
        # "io.bytes_total" in By: the unit goes before the type suffix, which stays single.
        result = result.removesuffix(TOTAL_SUFFIX)
    suffix = unit_suffix(unit, ratio=ratio)
    if suffix and result != suffix and not result.endswith(f"_{suffix}"):
        result = f"{result}_{suffix}"
    if is_counter:
        result = f"{result}{TOTAL_SUFFIX}"
    return result


def attribute_value(value: AnyValue) -> str:
    """An OTLP attribute value as a label value: strings as is, the rest as JSON-ish text."""
    return _plain(_python_value(value))


def _python_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "array_value":
        return [_python_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _python_value(item.value) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_value(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def labels_from_attributes(attributes: Iterable[KeyValue]) -> dict[str, str]:
    """Attributes as labels. Keys that sanitise alike join their values with ``;`` in key order."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    for item in attributes:
        if not item.key:
            continue
        grouped.setdefault(sanitize_label_name(item.key), []).append(
            (item.key, attribute_value(item.value))
        )
    return {
        label: LABEL_VALUE_SEPARATOR.join(value for _, value in sorted(pairs))
        for label, pairs in grouped.items()
    }


def format_value(value: float) -> str:
    """A sample value or ``le`` bound: ``NaN``, ``+Inf``, ``-Inf``, integers without fraction."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < _MAX_EXACT_INTEGRAL:
        return str(int(value))
    return repr(value)


def escape_label_value(value: str) -> str:
    """Backslash, double quote and newline escaped, as the text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text with backslash and newline escaped (quotes stay as they are)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_labels(labels: Iterable[tuple[str, str]]) -> str:
    """``{a="1",b="2"}`` for the given (name, value) pairs; empty text for none."""
    body = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels)
    return f"{{{body}}}" if body else ""
