"""The collector-style YAML config: load, substitute, overlay on defaults, validate.

Modeled on the OpenTelemetry Collector's ``confmap`` and ``otelcol/config.go``: the file is
read with PyYAML's safe loader (keys written twice reported, since YAML keeps only the
last), ``${env:VAR}`` / ``${env:VAR:-default}`` are substituted, each component's YAML
mapping is laid over its factory's default config dataclass, and every problem in the file
is collected (not just the first) as ``"yaml::path: message"``. Messages say what to change;
a key in the wrong place is answered with where it belongs, since a first config's mistakes
are mostly indentation. docs/config.md is the reference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from driftline.durations import bare_number_problem, parse_duration, positive_duration_problem
from driftline.processor.service.decode import (
    NOT_USED,
    component_config,
    setting_paths,
    unknown_problem,
)
from driftline.processor.service.expand import (
    PATH_SEPARATOR,
    SCHEME_ENV,
    SCHEME_FILE,
    substitute,
)
from driftline.processor.service.expand import join_path as _join
from driftline.processor.service.registry import (
    KIND_EXPORTER,
    KIND_EXTENSION,
    KIND_PROCESSOR,
    KIND_RECEIVER,
    SIGNALS,
    Factories,
    default_factories,
    signals_of,
)

__all__ = [
    "ComponentID",
    "Config",
    "ConfigError",
    "PipelineConfig",
    "PipelineID",
    "TelemetryMetricsConfig",
    "key_lines",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_set",
    "problem_line",
    "validate_file",
]

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

_SECTIONS = {
    "receivers": KIND_RECEIVER,
    "processors": KIND_PROCESSOR,
    "exporters": KIND_EXPORTER,
    "extensions": KIND_EXTENSION,
}
_SECTION_OF = {kind: section for section, kind in _SECTIONS.items()}
_ARTICLES = {KIND_RECEIVER: "a", KIND_PROCESSOR: "a", KIND_EXPORTER: "an", KIND_EXTENSION: "an"}
_CONNECTORS = "connectors"
_TOP_LEVEL_KEYS = (*_SECTIONS, _CONNECTORS, "service")
_SERVICE_KEYS = ("pipelines", "extensions", "telemetry")
_PIPELINE_KEYS = ("receivers", "processors", "exporters")
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
# Config sources as the collector's --config takes them: a path, or a provider URI.
_SOURCE = re.compile(r"(file|yaml|env):(.*)", re.DOTALL)
_AUTHENTICATOR_KEY = "authenticator"
_TYPE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_AT_LINE = re.compile(r"YAML [^:]* at line (\d+)")


class ConfigError(ValueError):
    """The config file has problems; ``problems`` lists each as ``"yaml::path: message"``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True, order=True)
class ComponentID:
    """``type[/name]``: one configured instance of a component type."""

    type: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.type}/{self.name}" if self.name else self.type

    @classmethod
    def parse(cls, text: object) -> ComponentID:
        """Split ``"type/name"``; ``ValueError`` when the ID is malformed."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"a component ID must be a string 'type[/name]', got {text!r}")
        type_, slash, name = text.partition("/")
        if not _TYPE_PATTERN.fullmatch(type_):
            raise ValueError(f"invalid component type {type_!r} in {text!r}: use letters, "
                             "digits and '_', starting with a letter")
        if slash and not name.strip():
            raise ValueError(f"the name after '/' in {text!r} must not be empty")
        return cls(type_, name)


@dataclass(frozen=True, slots=True, order=True)
class PipelineID:
    """``signal[/name]``, e.g. ``metrics`` or ``metrics/drift``."""

    signal: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.signal}/{self.name}" if self.name else self.signal


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """The components of one pipeline, in data-flow order."""

    receivers: tuple[ComponentID, ...]
    processors: tuple[ComponentID, ...]
    exporters: tuple[ComponentID, ...]


@dataclass(frozen=True, slots=True)
class TelemetryMetricsConfig:
    """``service::telemetry::metrics``: how much the processor reports about itself, how often.

    ``level`` is the collector's: ``none`` (nothing), ``basic`` (the essentials),
    ``normal``, ``detailed`` (everything, per component); ``interval_s`` is the report period.
    """

    level: str = DEFAULT_TELEMETRY_METRICS_LEVEL
    interval_s: float = DEFAULT_TELEMETRY_METRICS_INTERVAL_S


@dataclass(frozen=True, slots=True)
class Config:
    """A loaded, valid config: component configs by ID and the pipelines that use them.

    IDs use each factory's canonical type (``otlp_grpc`` is stored as ``otlp``).
    ``service_extensions`` are the extensions to start, ``log_level`` and
    ``telemetry_metrics`` the ``service::telemetry`` settings.
    """

    receivers: Mapping[ComponentID, Any]
    processors: Mapping[ComponentID, Any]
    exporters: Mapping[ComponentID, Any]
    extensions: Mapping[ComponentID, Any]
    pipelines: Mapping[PipelineID, PipelineConfig]
    service_extensions: tuple[ComponentID, ...] = ()
    log_level: str = DEFAULT_LOG_LEVEL
    telemetry_metrics: TelemetryMetricsConfig = TelemetryMetricsConfig()
    # ``"yaml::path: message"`` for each collector setting written but not acted on here.
    warnings: tuple[str, ...] = ()
    # service::telemetry::resource: attributes of the processor's own telemetry; a value of
    # None removes a default attribute (service.name), as in the collector.
    telemetry_resource: tuple[tuple[str, str | None], ...] = ()
    log_encoding: str = LOG_ENCODING_CONSOLE


def _components(section: str, node: Any, factories: Factories, declared: set[ComponentID],
                problems: list[str], warnings: list[str]) -> dict[ComponentID, Any]:
    """Valid-typed component configs of one section; ``declared`` gets every ID written."""
    kind = _SECTIONS[section]
    known = factories.of_kind(kind)
    if node is None:
        return {}
    if not isinstance(node, dict):
        problems.append(f"{section}: must be a mapping of component IDs to settings, got "
                        f"{node!r}; write each component as a key ending in ':' on its own "
                        f"line under {section}")
        return {}
    configs: dict[ComponentID, Any] = {}
    spelled: dict[ComponentID, str] = {}
    above: list[tuple[str, Any]] = []  # (ID as written, factory) of the components so far
    for key, settings in node.items():
        path = _join(section, key)
        try:
            cid = ComponentID.parse(key)
        except ValueError as exc:
            problems.append(f"{path}: {exc}")
            continue
        factory = known.get(cid.type)
        if factory is None:
            declared.add(cid)
            hint = (_setting_of_above(str(key), above, kind)
                     or _other_kind(cid.type, kind, factories))
            problems.append(f"{path}: {unknown_problem(cid.type, f'{kind} type', known, hint)}")
            continue
        above.append((str(key), factory))
        canonical = ComponentID(factory.TYPE, cid.name)
        declared.add(canonical)
        if canonical in configs:
            problems.append(f"{path}: duplicates '{spelled[canonical]}' (both are "
                            f"{kind} '{canonical}'); keep one of them")
            continue
        spelled[canonical] = str(key)
        configs[canonical] = component_config(factory, settings, path, problems, warnings)
    return configs


def _setting_of_above(key: str, above: list[tuple[str, Any]], kind: str) -> str | None:
    """A hint when ``key``, taken for a component ID, is a setting of a component above it."""
    for written, factory in reversed(above):
        try:
            belongs = setting_paths(factory.CONFIG()).get(key)
        except TypeError:
            continue
        if belongs is not None:
            return (f"it looks like setting {belongs} of {kind} '{written}': indent it so "
                    f"its path is {_join(_SECTION_OF[kind], written, belongs)}")
    return None


def _other_kind(type_: str, kind: str, factories: Factories,
                verb: str | None = None) -> str | None:
    """``"'file' is an exporter type here, not a receiver[: <verb> exporters]"`` when
    ``type_`` names a component of another kind."""
    for section, other in _SECTIONS.items():
        if other != kind and type_ in factories.of_kind(other):
            advice = f": {verb} {section}" if verb else ""
            return (f"'{type_}' is {_ARTICLES[other]} {other} type here, not "
                    f"{_ARTICLES[kind]} {kind}{advice}")
    return None


def _misplaced_top_level(key: str, factories: Factories) -> str | None:
    """Where a top-level key that is not a section belongs, when that is clear."""
    if key in ("pipelines", "telemetry"):
        return "it belongs under service: indent it there"
    if key.partition("/")[0] in SIGNALS:
        return "a pipeline belongs under service::pipelines: indent it there"
    type_ = key.partition("/")[0]
    for section, kind in _SECTIONS.items():
        if type_ in factories.of_kind(kind):
            return f"'{type_}' is {_ARTICLES[kind]} {kind} type: indent it under {section}"
    return None


def _misplaced_in_service(key: str) -> str | None:
    """Where a key written directly under ``service`` belongs, when that is clear."""
    if key.partition("/")[0] in SIGNALS:
        return "a pipeline belongs under service::pipelines: indent it there"
    if key in ("receivers", "processors", "exporters"):
        return ("that list belongs to a pipeline: indent it under "
                "service::pipelines::<signal>")
    return None


# --- service ------------------------------------------------------------------------------


def _references(node: Any, path: str, kind: str, defined: Mapping[ComponentID, Any],
                declared: set[ComponentID], factories: Factories, signal: str | None,
                problems: list[str]) -> tuple[ComponentID, ...]:
    """The IDs a pipeline (or service::extensions) lists, each checked against the config.

    An ID declared with a problem of its own was already reported at its definition.
    """
    if node is None:
        return ()
    if not isinstance(node, list):
        example = f"[{node}]" if isinstance(node, str) else f"[{kind}_type/name]"
        problems.append(f"{path}: must be a list of {kind} IDs, got {node!r}; write {example}")
        return ()
    known = factories.of_kind(kind)
    ids: list[ComponentID] = []
    for item in node:
        try:
            cid = ComponentID.parse(item)
        except ValueError as exc:
            problems.append(f"{path}: {exc}")
            continue
        factory = known.get(cid.type)
        canonical = ComponentID(factory.TYPE, cid.name) if factory else cid
        if canonical not in defined:
            if canonical in declared:
                continue
            elsewhere = _other_kind(cid.type, kind, factories, "list it in")
            advice = (f"{elsewhere}" if factory is None and elsewhere
                      else f"define it under {kind}s or remove it")
            problems.append(f"{path}: references {kind} '{item}' which is not configured; "
                            f"{advice} (configured: {', '.join(map(str, defined)) or 'none'})")
            continue
        if canonical in ids:
            problems.append(f"{path}: {kind} '{item}' is listed twice")
            continue
        if signal is not None and signal not in signals_of(factory):
            problems.append(f"{path}: {kind} '{item}' does not support {signal} (it "
                            f"supports: {', '.join(signals_of(factory))})")
            continue
        ids.append(canonical)
    return tuple(ids)


def _extension_uses(config: Any, path: str) -> typing.Iterator[tuple[str, Any]]:
    """``(yaml path, value)`` of every ``authenticator`` setting in a component's config.

    As in the collector's ``configauth``, a component names the extension that authenticates
    its requests; the name must be an extension enabled in ``service::extensions``.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return
    for f in dataclasses.fields(config):
        value = getattr(config, f.name, None)
        where = _join(path, f.name)
        if f.name == _AUTHENTICATOR_KEY and isinstance(value, str) and value.strip():
            yield where, value
        else:
            yield from _extension_uses(value, where)


def _check_extension_uses(sections: Mapping[str, Mapping[ComponentID, Any]],
                          enabled: tuple[ComponentID, ...], declared: set[ComponentID],
                          factories: Factories, problems: list[str]) -> None:
    """Every ``authenticator`` names an enabled extension; one declared with problems of its
    own was already reported there."""
    known = factories.of_kind(KIND_EXTENSION)
    for section, configs in sections.items():
        for cid, config in configs.items():
            for where, value in _extension_uses(config, _join(section, cid)):
                try:
                    named = ComponentID.parse(value)
                except ValueError as exc:
                    problems.append(f"{where}: {exc}")
                    continue
                factory = known.get(named.type)
                canonical = ComponentID(factory.TYPE, named.name) if factory else named
                bad_definition = (canonical in declared
                                  and canonical not in sections["extensions"])
                if canonical not in enabled and not bad_definition:
                    listed = ", ".join(map(str, enabled)) or "none"
                    problems.append(f"{where}: extension '{value}' is not enabled; define it "
                                    "under extensions and list it in service::extensions "
                                    f"(enabled: {listed})")


def _pipeline_id(key: Any, path: str, problems: list[str]) -> PipelineID | None:
    text = str(key)
    signal, slash, name = text.partition("/")
    if signal not in SIGNALS:
        problems.append(f"{path}: {unknown_problem(signal, 'signal', SIGNALS)}; a pipeline ID is "
                        "signal[/name]")
        return None
    if slash and not name.strip():
        problems.append(f"{path}: the name after '/' must not be empty")
        return None
    return PipelineID(signal, name)


def _pipelines(node: Any, sections: Mapping[str, Mapping[ComponentID, Any]],
               declared: Mapping[str, set[ComponentID]], factories: Factories,
               problems: list[str]) -> dict[PipelineID, PipelineConfig]:
    path = _join("service", "pipelines")
    if not node:
        problems.append(f"{path}: at least one pipeline is required, e.g. metrics: "
                        "{receivers: [otlp], exporters: [prometheus]}")
        return {}
    if not isinstance(node, dict):
        problems.append(f"{path}: must be a mapping of pipeline IDs to pipelines")
        return {}
    pipelines: dict[PipelineID, PipelineConfig] = {}
    for key, body in node.items():
        where = _join(path, key)
        pid = _pipeline_id(key, where, problems)
        if pid is None:
            continue
        if not isinstance(body, dict):
            problems.append(f"{where}: must be a mapping with receivers, processors and "
                            "exporters")
            continue
        for unknown in sorted(set(body) - set(_PIPELINE_KEYS), key=str):
            message = unknown_problem(str(unknown), "key", _PIPELINE_KEYS)
            problems.append(f"{_join(where, unknown)}: {message}")
        refs = {}
        for section in _PIPELINE_KEYS:
            refs[section] = _references(body.get(section), _join(where, section),
                                        _SECTIONS[section], sections[section],
                                        declared[section], factories, pid.signal, problems)
        for section in ("receivers", "exporters"):
            if not body.get(section):
                problems.append(f"{_join(where, section)}: a pipeline needs at least one "
                                f"{_SECTIONS[section]}")
        pipelines[pid] = PipelineConfig(refs["receivers"], refs["processors"], refs["exporters"])
    return pipelines


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


def _telemetry(node: Any, problems: list[str], warnings: list[str]
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


def _connectors(node: Any, problems: list[str]) -> None:
    """``connectors``: the collector's section, accepted empty; Driftline has no connector."""
    if node is None or node == {}:
        return
    if not isinstance(node, dict):
        problems.append(f"{_CONNECTORS}: must be a mapping of component IDs to settings, got "
                        f"{node!r}")
        return
    for key in node:
        problems.append(f"{_join(_CONNECTORS, key)}: unknown connector type "
                        f"'{str(key).partition('/')[0]}'; Driftline has no connectors: join "
                        "pipelines by listing one receiver in several (known: none)")


# --- entry points -------------------------------------------------------------------------


def parse_config(data: Any, *, environ: Mapping[str, str] | None = None,
                 factories: Factories | None = None) -> Config:
    """Build a ``Config`` from the YAML document ``data``; ``ConfigError`` lists every problem."""
    environ = os.environ if environ is None else environ
    factories = default_factories() if factories is None else factories
    problems: list[str] = []
    if data is None:
        raise ConfigError(["the config is empty; it needs receivers, exporters and "
                           "service::pipelines"])
    if not isinstance(data, dict):
        raise ConfigError([f"the config must be a mapping at the top level, got {data!r}"])
    env_problems: list[str] = []
    warnings: list[str] = []
    data = substitute(data, environ, "", env_problems)
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            hint = _misplaced_top_level(str(key), factories)
            problems.append(f"{key}: "
                            f"{unknown_problem(str(key), 'top-level key', _TOP_LEVEL_KEYS, hint)}")
    declared: dict[str, set[ComponentID]] = {s: set() for s in _SECTIONS}
    sections = {s: _components(s, data.get(s), factories, declared[s], problems, warnings)
                for s in _SECTIONS}
    _connectors(data.get(_CONNECTORS), problems)

    service = data.get("service")
    pipelines: dict[PipelineID, PipelineConfig] = {}
    service_extensions: tuple[ComponentID, ...] = ()
    log_level, log_encoding = DEFAULT_LOG_LEVEL, LOG_ENCODING_CONSOLE
    telemetry_metrics = TelemetryMetricsConfig()
    telemetry_resource: tuple[tuple[str, str | None], ...] = ()
    if not isinstance(service, dict):
        problems.append("service: required, with service::pipelines naming the receivers, "
                        "processors and exporters of each pipeline")
    else:
        for key in service:
            if key not in _SERVICE_KEYS:
                hint = _misplaced_in_service(str(key))
                problems.append(f"{_join('service', key)}: "
                                f"{unknown_problem(str(key), 'key', _SERVICE_KEYS, hint)}")
        pipelines = _pipelines(service.get("pipelines"), sections, declared, factories,
                               problems)
        service_extensions = _references(service.get("extensions"),
                                         _join("service", "extensions"), KIND_EXTENSION,
                                         sections["extensions"], declared["extensions"],
                                         factories, None, problems)
        (log_level, log_encoding), telemetry_metrics, telemetry_resource = _telemetry(
            service.get("telemetry"), problems, warnings)
        if isinstance(service.get("extensions"), list | None):
            _check_extension_uses(sections, service_extensions, declared["extensions"],
                                  factories, problems)
    # A value whose substitution failed is reported once, not again by its validation.
    failed = {p.partition(": ")[0] for p in env_problems}
    problems = env_problems + [p for p in problems if p.partition(": ")[0] not in failed]
    if problems:
        raise ConfigError(problems)
    return Config(sections["receivers"], sections["processors"], sections["exporters"],
                  sections["extensions"], pipelines, service_extensions, log_level,
                  telemetry_metrics, tuple(warnings), telemetry_resource, log_encoding)


# Hints for PyYAML's problems, keyed by how the problem starts; {line} is the 1-based line
# of the problem, {opened} the line where the construct it belongs to started.
_YAML_HINTS = (
    ("found character '\\t'",
     "YAML indents with spaces only: replace the tab on line {line} with spaces"),
    ("expected <block end>",
     "line {line} is indented differently from the keys before it: keys of one mapping "
     "start in the same column, and a nested key is indented further than its parent"),
    ("mapping values are not allowed",
     "check the indentation of line {line}, and quote a value that contains ': '"),
    ("could not find expected ':'",
     "write 'key: value' (a space after ':') on line {line}, or check its indentation"),
    ("did not find expected key",
     "check the indentation of line {line}: keys of one mapping start in the same column"),
    ("expected ',' or '}'",
     "close the '{{' of line {opened} with '}}', or quote a value holding ',' or '{{'"),
    ("but found another document",
     "a config is one YAML document: remove the '---' on line {line} and what follows, or "
     "split the file"),
    ("expected ',' or ']'",
     "close the '[' of line {opened} with ']', or quote a value holding ',' or '['"),
)
_YAML_DEFAULT_HINT = ("check the indentation around line {line}: spaces only, keys of one "
                      "mapping in the same column")


def _yaml_error(exc: yaml.MarkedYAMLError, lines: list[str]) -> str:
    """``YAML syntax error at line L, column C ('text'): problem (context); hint``.

    PyYAML's wording is kept so it can be searched for; the hint says what to change, which
    for a first config is nearly always indentation.
    """
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    if mark is None:
        return f"YAML syntax error: {problem}"
    line = mark.line + 1
    text = lines[mark.line] if mark.line < len(lines) else ""
    message = f"YAML syntax error at line {line}, column {mark.column + 1} ({text!r}): {problem}"
    if exc.problem and exc.context and exc.context_mark is not None:
        started = exc.context_mark
        message += (f" ({exc.context} started at line {started.line + 1}, "
                    f"column {started.column + 1})")
    hint = next((h for start, h in _YAML_HINTS if problem.startswith(start)), _YAML_DEFAULT_HINT)
    opened = exc.context_mark.line + 1 if exc.context_mark is not None else line
    return f"{message}; {hint.format(line=line, opened=opened)}"


def _duplicate_keys(node: yaml.Node, path: str, problems: list[str],
                    seen: set[int]) -> None:
    """Report keys written twice in one mapping: ``yaml.safe_load`` keeps only the last.

    Two ``otlp:`` blocks pasted into ``receivers`` would otherwise lose the first silently.
    """
    if id(node) in seen:  # an alias to a node already walked
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _duplicate_keys(item, path, problems, seen)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    first: dict[tuple[str, str], int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            _duplicate_keys(value_node, path, problems, seen)
            continue
        where = _join(path, key_node.value)
        line = key_node.start_mark.line + 1
        key = (key_node.tag, key_node.value)
        if key in first:
            named = (f" (two components of one type need names: '{key_node.value}/a', "
                     f"'{key_node.value}/b')" if path in _SECTIONS else "")
            problems.append(f"{where}: written twice (lines {first[key]} and {line}); YAML "
                            f"keeps only the last, so merge them or remove one{named}")
        else:
            first[key] = line
        _duplicate_keys(value_node, where, problems, seen)


def _recursive_alias(node: yaml.Node, walking: set[int], done: set[int]) -> yaml.Node | None:
    """A node that contains itself through an alias (``&a [*a]``), which no config can be."""
    if id(node) in walking:
        return node
    if id(node) in done or not isinstance(node, yaml.CollectionNode):
        return None
    walking.add(id(node))
    children: list[yaml.Node] = (list(node.value) if isinstance(node, yaml.SequenceNode)
                                 else [n for pair in node.value for n in pair])
    found = next((c for child in children
                  if (c := _recursive_alias(child, walking, done)) is not None), None)
    walking.discard(id(node))
    done.add(id(node))
    return found


def _read_yaml(text: str) -> tuple[Any, list[str]]:
    """The YAML document in ``text`` and the keys it writes twice; ``ConfigError`` on bad YAML."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        problems: list[str] = []
        if node is None:
            return None, problems
        looped = _recursive_alias(node, set(), set())
        if looped is not None:
            line = looped.start_mark.line + 1
            raise ConfigError([f"YAML alias loop at line {line}: the node anchored there "
                               "contains an alias to itself; write the values out instead"])
        _duplicate_keys(node, "", problems, set())
        return loader.construct_document(node), problems
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_error(exc, text.splitlines())]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"YAML syntax error: {exc}"]) from exc
    finally:
        loader.dispose()


def _read_text(path: str | os.PathLike[str]) -> str:
    """The file's text; ``ConfigError`` saying what is wrong with the file and what to do."""
    where = Path(path)
    prefix = "cannot read the config file"
    try:
        return where.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        message = (f"{prefix}: no such file (looked for '{where.absolute()}'); give the path "
                   "of a collector-style YAML config, e.g. collector-config/default.yaml")
        raise ConfigError([message]) from exc
    except IsADirectoryError as exc:
        raise ConfigError([f"{prefix}: '{where}' is a directory; give the path of a YAML "
                           "file"]) from exc
    except PermissionError as exc:
        raise ConfigError([f"{prefix}: permission denied; make it readable by this user "
                           "(e.g. chmod a+r)"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{prefix}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                           f"offset {exc.start}); save it as UTF-8"]) from exc
    except OSError as exc:
        raise ConfigError([f"{prefix}: {exc.strerror or exc}"]) from exc


Sources = str | os.PathLike[str] | typing.Sequence[str | os.PathLike[str]]


def _source_list(sources: Sources) -> list[str | os.PathLike[str]]:
    if isinstance(sources, str | os.PathLike):
        return [sources]
    return list(sources)


def _file_of(source: str | os.PathLike[str]) -> str | os.PathLike[str] | None:
    """The file a ``--config`` source reads (a path or ``file:PATH``), else None."""
    if isinstance(source, os.PathLike):
        return source
    match = _SOURCE.fullmatch(source)
    if match is None:
        return source
    return match.group(2) if match.group(1) == SCHEME_FILE else None


def _read_source(source: str | os.PathLike[str], environ: Mapping[str, str]
                 ) -> tuple[Any, list[str]]:
    """The YAML document of one ``--config`` source, as the collector's providers read it: a
    path or ``file:PATH``, ``yaml:INLINE`` (``yaml:processors::batch::timeout: 2s``) or
    ``env:NAME`` (a variable holding YAML)."""
    path = _file_of(source)
    if path is not None:
        return _read_yaml(_read_text(path))
    scheme, rest = typing.cast(re.Match[str], _SOURCE.fullmatch(str(source))).groups()
    if scheme == SCHEME_ENV:
        if rest not in environ:
            raise ConfigError([f"environment variable {rest} is not set; set it to a YAML "
                               "config or give a file"])
        rest = environ[rest]
    return _read_yaml(rest)


def _expand_keys(node: Any) -> Any:
    """Keys written ``a::b`` become nested maps, as the collector's confmap reads any key
    (so ``yaml:processors::batch::timeout: 2s`` and ``--set`` address one setting)."""
    if isinstance(node, list):
        return [_expand_keys(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[Any, Any] = {}
    for key, value in node.items():
        value = _expand_keys(value)
        if isinstance(key, str) and PATH_SEPARATOR in key:
            first, _, rest = key.partition(PATH_SEPARATOR)
            key, value = first, _expand_keys({rest: value})
        out[key] = _merge(out[key], value) if key in out else value
    return out


def _merge(base: Any, later: Any) -> Any:
    """``later`` over ``base`` as the collector merges ``--config`` sources: maps merged key
    by key, anything else (a list too) replaced by the later value."""
    if isinstance(base, dict) and isinstance(later, dict):
        merged = dict(base)
        for key, value in later.items():
            merged[key] = _merge(merged[key], value) if key in merged else value
        return merged
    return later


def parse_set(text: str) -> dict[str, Any]:
    """``--set key::path=value`` as the mapping it sets; the value is YAML (``[a, b]`` is a
    list), as the collector reads it."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise ConfigError([f"--set {text!r}: write --set key::path=value, e.g. --set "
                           "processors::batch::timeout=2s"])
    data, problems = _read_yaml(f"{key.strip()}: {value}" if value.strip() else
                                f"{key.strip()}:")
    if problems or not isinstance(data, dict):
        raise ConfigError([f"--set {text!r}: not a setting: {'; '.join(problems)}"])
    return typing.cast(dict[str, Any], _expand_keys(data))


def load_config(path: Sources, *, sets: typing.Sequence[str] = (),
                environ: Mapping[str, str] | None = None,
                factories: Factories | None = None) -> Config:
    """Read, merge, substitute and validate a config; ``ConfigError`` if not valid.

    ``path`` is one source or several, merged in order as the collector merges repeated
    ``--config`` flags: a file path, ``file:PATH``, ``yaml:INLINE`` or ``env:NAME``. Each
    ``sets`` item (``key::path=value``) is applied after them, as ``--set``.
    """
    environ = os.environ if environ is None else environ
    sources = _source_list(path)
    several = len(sources) > 1
    merged: Any = None
    problems: list[str] = []
    for source in sources:
        try:
            data, found = _read_source(source, environ)
        except ConfigError as exc:
            if not several:
                raise
            raise ConfigError([f"{source}: {p}" for p in exc.problems]) from None
        problems += [f"{source}: {p}" for p in found] if several else found
        data = _expand_keys(data)
        merged = data if merged is None else _merge(merged, data)
    for text in sets:
        merged = _merge({} if merged is None else merged, parse_set(text))
    try:
        config = parse_config(merged, environ=environ, factories=factories)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def _key_lines(node: yaml.Node, path: str, lines: dict[str, int], seen: set[int]) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _key_lines(item, path, lines, seen)
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            where = path
            if isinstance(key_node, yaml.ScalarNode) and not key_node.tag.endswith(":merge"):
                where = _join(path, key_node.value)
                lines.setdefault(where, key_node.start_mark.line + 1)
            _key_lines(value_node, where, lines, seen)


def key_lines(path: str | os.PathLike[str]) -> dict[str, int]:
    """The 1-based line of every key written in the YAML file at ``path``, by YAML path.

    For pointing an editor at a problem (``FILE:LINE: yaml::path: message``); empty when the
    file cannot be read or parsed, whose own error already says where.
    """
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    lines: dict[str, int] = {}
    if node is not None:
        _key_lines(node, "", lines, set())
    return lines


def problem_line(problem: str, lines: Mapping[str, int]) -> int | None:
    """The line of the key a ``"yaml::path: message"`` problem names, or of its nearest
    written parent when the key itself was left out (a required setting); the line a YAML
    error names; else ``None``."""
    if (written := _AT_LINE.match(problem)) is not None:
        return int(written.group(1))
    path = problem.partition(": ")[0]
    while path:
        if path in lines:
            return lines[path]
        path = path.rpartition(PATH_SEPARATOR)[0]
    return None


def _written_paths(node: Any, prefix: str, out: dict[str, int | None]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            where = _join(prefix, key)
            out.setdefault(where, None)
            _written_paths(value, where, out)


def _origins(sources: list[str | os.PathLike[str]], sets: typing.Sequence[str]
             ) -> list[tuple[str, dict[str, int | None]]]:
    """``(label, {yaml path: line or None})`` for each source in merge order: files with the
    line of each key, ``yaml:``/``env:`` sources and ``--set`` items with their paths."""
    origins: list[tuple[str, dict[str, int | None]]] = []
    for source in sources:
        path = _file_of(source)
        if path is not None:
            origins.append((str(path), dict(key_lines(path))))
            continue
        written: dict[str, int | None] = {}
        with contextlib.suppress(ConfigError):
            _written_paths(_expand_keys(_read_source(source, os.environ)[0]), "", written)
        origins.append((f"'{source}'", written))
    for text in sets:
        written = {}
        with contextlib.suppress(ConfigError):
            _written_paths(parse_set(text), "", written)
        origins.append((f"--set '{text}'", written))
    return origins


def _place(problem: str, origins: list[tuple[str, dict[str, int | None]]]) -> str | None:
    """``LABEL[:LINE]`` of the last source writing the problem's key, else its nearest
    written parent: the merge took the value from there."""
    if (written := _AT_LINE.match(problem)) is not None and origins:
        return f"{origins[-1][0]}:{written.group(1)}"
    key = problem.partition(": ")[0]
    while key:
        for label, paths in reversed(origins):
            if key in paths:
                line = paths[key]
                return f"{label}:{line}" if line is not None else label
        key = key.rpartition(PATH_SEPARATOR)[0]
    return None


def problem_lines(path: Sources, error: ConfigError, sets: typing.Sequence[str] = ()
                  ) -> list[str]:
    """One ``FILE[:LINE]: problem`` line per problem of ``error`` (as compilers print it, so
    editors and CI annotations jump to the key).

    With several sources (``--config`` repeated, ``--set``), a problem is placed where the
    merge took its key from: the last source writing it, or its nearest parent; a source
    that is not a file is named instead (``--set processors::batch::timeout=2: ...``).
    """
    sources = _source_list(path)
    origins = _origins(sources, sets)
    labels = [str(s) for s in sources]
    first = labels[0] if labels else "config"
    out = []
    for problem in error.problems:
        own = next((i for i, label in enumerate(labels) if problem.startswith(f"{label}: ")),
                   None)
        if own is not None:  # a problem of reading that source (YAML syntax, duplicate key)
            problem = problem[len(labels[own]) + 2:]
            where = _place(problem, [origins[own]]) or origins[own][0]
        else:
            where = _place(problem, origins) or first
        out.append(f"{where}: {problem}")
    return out


def validate_file(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None,
                  factories: Factories | None = None) -> list[str]:
    """Every problem of the config file at ``path``; an empty list when it is valid."""
    try:
        load_config(path, environ=environ, factories=factories)
    except ConfigError as exc:
        return exc.problems
    return []
