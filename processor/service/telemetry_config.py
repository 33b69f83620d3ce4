"""``service::telemetry``: the processor's own logs (level, encoding), metrics (level,
interval) and their resource, read as the collector reads them; the collector's keys
Driftline does not act on are accepted with a warning naming them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from driftline.durations import bare_number_problem, parse_duration, positive_duration_problem
from driftline.processor.service.decode import (
    NOT_USED,
    unknown_problem,
)
from driftline.processor.service.expand import join_path as _join

LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
DEFAULT_LOG_LEVEL = "info"
# service::telemetry::logs::encoding, the collector's two: text lines or one JSON object each.
LOG_ENCODING_CONSOLE = "console"
LOG_ENCODING_JSON = "json"
LOG_ENCODINGS = (LOG_ENCODING_CONSOLE, LOG_ENCODING_JSON)
# The collector's service::telemetry::metrics levels, least to most detailed.
TELEMETRY_METRICS_LEVELS = ("none", "basic", "normal", "detailed")
DEFAULT_TELEMETRY_METRICS_LEVEL = "basic"
DEFAULT_TELEMETRY_METRICS_INTERVAL_S = 10.0
# service::telemetry as the collector reads it (otelcol's telemetry config). Keys Driftline
# acts on, and the collector's others, accepted with a warning naming them.
_TELEMETRY_KEYS = ("logs", "metrics")
_TELEMETRY_COLLECTOR_KEYS = ("traces",)
_TELEMETRY_RESOURCE = "resource"
_TELEMETRY_LOGS_KEYS = ("level", "encoding")
_TELEMETRY_LOGS_COLLECTOR_KEYS = ("development", "disable_caller",
                                  "disable_stacktrace", "sampling", "output_paths",
                                  "error_output_paths", "initial_fields", "processors")
_TELEMETRY_METRICS_KEYS = ("level", "interval")
_TELEMETRY_METRICS_COLLECTOR_KEYS = ("readers", "views", "address")


@dataclass(frozen=True, slots=True)
class TelemetryMetricsConfig:
    """``service::telemetry::metrics``: how much the processor reports about itself, how often.

    ``level`` is the collector's: ``none`` (nothing), ``basic`` (the essentials),
    ``normal``, ``detailed`` (everything, per component); ``interval_s`` is the report period.
    """

    level: str = DEFAULT_TELEMETRY_METRICS_LEVEL
    interval_s: float = DEFAULT_TELEMETRY_METRICS_INTERVAL_S


def _settings(node: Any, path: str, known: tuple[str, ...], example: str,
              problems: list[str], collector_keys: tuple[str, ...] = (),
              warnings: list[str] | None = None) -> dict[Any, Any]:
    """The mapping at ``path`` with unknown keys reported; ``{}`` when absent or not a mapping.

    ``collector_keys`` are the collector's keys Driftline does not act on: accepted, each
    written one named in ``warnings``.
    """
    if node is None:
        return {}
    if not isinstance(node, dict):
        problems.append(f"{path}: must be a mapping, e.g. {example}, got {node!r}")
        return {}
    for key in node:
        if key in collector_keys and warnings is not None:
            warnings.append(f"{_join(path, key)}: {NOT_USED}")
        elif key not in known:
            listed = known + collector_keys
            problems.append(f"{_join(path, key)}: {unknown_problem(str(key), 'key', listed)}")
    return node


def _logs(node: Any, path: str, problems: list[str], warnings: list[str]
          ) -> tuple[str, str]:
    """``service::telemetry::logs``: the level and the encoding (``console`` or ``json``)."""
    logs = _settings(node, path, _TELEMETRY_LOGS_KEYS, "{level: info}", problems,
                     _TELEMETRY_LOGS_COLLECTOR_KEYS, warnings)
    level = logs.get("level", DEFAULT_LOG_LEVEL)
    if not isinstance(level, str) or level.lower() not in LOG_LEVELS:
        problems.append(f"{_join(path, 'level')}: must be one of "
                        f"{', '.join(LOG_LEVELS)}, got {level!r}")
        level = DEFAULT_LOG_LEVEL
    encoding = logs.get("encoding", LOG_ENCODING_CONSOLE)
    if encoding not in LOG_ENCODINGS:
        problems.append(f"{_join(path, 'encoding')}: must be one of "
                        f"{', '.join(LOG_ENCODINGS)}, got {encoding!r}")
        encoding = LOG_ENCODING_CONSOLE
    return level.lower(), encoding


def _telemetry_metrics(node: Any, path: str, problems: list[str],
                       warnings: list[str]) -> TelemetryMetricsConfig:
    metrics = _settings(node, path, _TELEMETRY_METRICS_KEYS,
                        "{level: basic, interval: 10s}", problems,
                        _TELEMETRY_METRICS_COLLECTOR_KEYS, warnings)
    default = TelemetryMetricsConfig()
    level = metrics.get("level", default.level)
    if not isinstance(level, str) or level.lower() not in TELEMETRY_METRICS_LEVELS:
        problems.append(f"{_join(path, 'level')}: must be one of "
                        f"{', '.join(TELEMETRY_METRICS_LEVELS)}, got {level!r}")
        level = default.level
    interval = metrics.get("interval", default.interval_s)
    problem = (bare_number_problem("interval", interval) if "interval" in metrics else None
               ) or positive_duration_problem("interval", interval)
    if problem is not None:
        problems.append(_join(path, problem))
        interval = default.interval_s
    return TelemetryMetricsConfig(level.lower(), parse_duration(interval))


def _telemetry_resource(node: Any, path: str, problems: list[str]
                        ) -> tuple[tuple[str, str | None], ...]:
    """``service::telemetry::resource``: attribute → value (text), or null to remove one."""
    if node is None:
        return ()
    if not isinstance(node, dict):
        problems.append(f"{path}: must be a mapping of resource attributes, e.g. "
                        f"{{deployment.environment.name: prod}}, got {node!r}")
        return ()
    attributes: list[tuple[str, str | None]] = []
    for key, value in node.items():
        if isinstance(value, dict | list):
            problems.append(f"{_join(path, key)}: must be a single value (or null to remove "
                            f"the attribute), got {value!r}")
            continue
        text = None if value is None else (str(value).lower() if isinstance(value, bool)
                                           else str(value))
        attributes.append((str(key), text))
    return tuple(attributes)


def parse_telemetry(node: Any, problems: list[str], warnings: list[str]
                    ) -> tuple[tuple[str, str], TelemetryMetricsConfig,
                               tuple[tuple[str, str | None], ...]]:
    """``service::telemetry``: the log level, the self-telemetry metrics settings and their
    resource; the collector's other keys (``traces``, ``logs::encoding``, ...) accepted with
    a warning."""
    path = _join("service", "telemetry")
    telemetry = _settings(node, path, (*_TELEMETRY_KEYS, _TELEMETRY_RESOURCE),
                          "{logs: {level: info}, metrics: {level: basic}}", problems,
                          _TELEMETRY_COLLECTOR_KEYS, warnings)
    return (_logs(telemetry.get("logs"), _join(path, "logs"), problems, warnings),
            _telemetry_metrics(telemetry.get("metrics"), _join(path, "metrics"), problems,
                               warnings),
            _telemetry_resource(telemetry.get(_TELEMETRY_RESOURCE),
                                _join(path, _TELEMETRY_RESOURCE), problems))
