"""The collector-style YAML config: load, substitute, overlay on defaults, validate.

Modeled on the OpenTelemetry Collector's ``confmap`` and ``otelcol/config.go``: the file is
read with ``yaml.safe_load``, ``${env:VAR}`` / ``${env:VAR:-default}`` are substituted, each
component's YAML mapping is laid over its factory's default config dataclass, and every
problem in the file is collected (not just the first) as ``"yaml::path: message"``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from driftline.durations import parse_duration
from driftline.processor.registry import (
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
    "load_config",
    "parse_config",
    "parse_duration",
    "validate_file",
]

PATH_SEPARATOR = "::"
LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
DEFAULT_LOG_LEVEL = "info"

_SECTIONS = {
    "receivers": KIND_RECEIVER,
    "processors": KIND_PROCESSOR,
    "exporters": KIND_EXPORTER,
    "extensions": KIND_EXTENSION,
}
_TOP_LEVEL_KEYS = (*_SECTIONS, "service")
_SERVICE_KEYS = ("pipelines", "extensions", "telemetry")
_PIPELINE_KEYS = ("receivers", "processors", "exporters")
_TYPE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REFERENCE = re.compile(r"\$\$|\$\{([^}]*)\}")
_SUGGESTION_CUTOFF = 0.6
_INTEGER = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")


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
class Config:
    """A loaded, valid config: component configs by ID and the pipelines that use them.

    IDs use each factory's canonical type (``otlp_grpc`` is stored as ``otlp``).
    """

    receivers: Mapping[ComponentID, Any]
    processors: Mapping[ComponentID, Any]
    exporters: Mapping[ComponentID, Any]
    extensions: Mapping[ComponentID, Any]
    pipelines: Mapping[PipelineID, PipelineConfig]
    service_extensions: tuple[ComponentID, ...] = ()
    log_level: str = DEFAULT_LOG_LEVEL


def _join(*parts: object) -> str:
    return PATH_SEPARATOR.join(str(p) for p in parts if p != "")


def _closest(word: str, known: typing.Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(known), n=1, cutoff=_SUGGESTION_CUTOFF)
    return matches[0] if matches else None


def _unknown(word: str, what: str, known: typing.Iterable[str]) -> str:
    known = sorted(known)
    suggestion = _closest(word, known)
    hint = f"; did you mean '{suggestion}'?" if suggestion else ""
    listing = ", ".join(known) if known else "none"
    return f"unknown {what} '{word}'{hint} (known: {listing})"


# --- environment substitution -------------------------------------------------------------


def _substitute(node: Any, environ: Mapping[str, str], path: str, problems: list[str]) -> Any:
    """Replace ``${env:VAR}`` and ``${env:VAR:-default}`` in every string value; ``$$`` is ``$``.

    A value that is exactly one reference is re-read as YAML, so ``port: ${env:PORT}`` gives
    an integer as the collector does; inside a longer string the text is inserted as is.
    """
    if isinstance(node, dict):
        return {k: _substitute(v, environ, _join(path, k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, environ, path, problems) for v in node]
    if not isinstance(node, str) or "$" not in node:
        return node

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return _resolve(match.group(1), environ, path, problems)

    whole = _REFERENCE.fullmatch(node)
    text = _REFERENCE.sub(replace, node)
    if whole is not None and whole.group(0) != "$$":
        return _typed(text)
    return text


class _EnvInt(int):
    """An integer read from the environment; ``text`` is how it was written there."""

    text: str


class _EnvFloat(float):
    """A number read from the environment; ``text`` is how it was written there."""

    text: str


def _remembering(number: _EnvInt | _EnvFloat, text: str) -> _EnvInt | _EnvFloat:
    number.text = text
    return number


def _typed(text: str) -> str | int | float | bool:
    """An integer, number or ``true``/``false`` when ``text`` spells one, else ``text``.

    Deliberately narrower than YAML 1.1, which would read "on" as true and "0123" as octal.
    Numbers remember their text, so a string setting still gets exactly what was written.
    """
    stripped = text.strip()
    if _INTEGER.fullmatch(stripped):
        return _remembering(_EnvInt(stripped), text)
    if _FLOAT.fullmatch(stripped):
        return _remembering(_EnvFloat(stripped), text)
    if stripped in ("true", "false"):
        return stripped == "true"
    return text


def _resolve(reference: str, environ: Mapping[str, str], path: str,
             problems: list[str]) -> str:
    scheme, colon, rest = reference.partition(":")
    if not colon or scheme != "env":
        problems.append(f"{path}: unsupported reference '${{{reference}}}'; write "
                        "${env:NAME} or ${env:NAME:-default} (and $$ for a literal $)")
        return ""
    name, has_default, default = rest.partition(":-")
    if not _ENV_NAME_PATTERN.fullmatch(name):
        problems.append(f"{path}: invalid environment variable name {name!r} in "
                        f"'${{{reference}}}'")
        return ""
    if name in environ:
        return environ[name]
    if has_default:
        return default
    problems.append(f"{path}: environment variable {name} is not set; set it or give a "
                    f"default with ${{env:{name}:-default}}")
    return ""


# --- component configs --------------------------------------------------------------------

_SIMPLE_TYPES: dict[type, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
}


def _accepts(hint: Any, value: Any) -> bool | None:
    """Whether ``value`` fits a simple annotation; ``None`` when the hint is not simple."""
    if hint is type(None):
        return value is None
    if hint in _SIMPLE_TYPES:
        if hint is float:
            return isinstance(value, int | float) and not isinstance(value, bool)
        if hint is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, hint)
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        verdicts = [_accepts(arg, value) for arg in typing.get_args(hint)]
        if any(v is None for v in verdicts):
            return None
        return any(verdicts)
    if origin in (list, tuple):
        if not isinstance(value, list):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if len(args) == 1 and args[0] in _SIMPLE_TYPES:
            return all(_accepts(args[0], v) for v in value)
        return True
    return None


def _describe(hint: Any) -> str:
    if hint in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[hint]
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in typing.get_args(hint) if a is not type(None))
    if origin in (list, tuple):
        return "a list"
    return str(hint)


def _coerce(hint: Any, value: Any) -> Any:
    # An int stays an int where a float is expected, so messages quote what was written.
    if hint is str and isinstance(value, _EnvInt | _EnvFloat):
        return value.text
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        return {}  # unresolvable annotations: leave type checks to the config's validate()


def _optional_section(hint: Any) -> type | None:
    """The dataclass ``X`` when ``hint`` is ``X | None``: a section enabled by being written."""
    if typing.get_origin(hint) not in (types.UnionType, typing.Union):
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) == 1 and len(typing.get_args(hint)) == 2 and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def _overlay(default: Any, node: Any, path: str, problems: list[str]) -> Any:
    """``default`` (a dataclass instance) with the settings of YAML mapping ``node`` laid over.

    Unknown keys and values of the wrong simple type are reported and left at their default,
    so ``validate()`` still runs on the rest and every problem is reported in one pass.

    A field typed ``SomeConfig | None`` is an optional section, as the collector's OTLP
    receiver treats ``protocols::grpc``/``http``: once its parent mapping is written, the
    section is on when its key is written (even empty, then with its defaults) and off when
    it is left out.
    """
    if node is None:
        return default
    if not isinstance(node, dict):
        problems.append(f"{path}: must be a mapping of settings, got {node!r}")
        return default
    fields = {f.name: f for f in dataclasses.fields(default) if f.init}
    hints = _hints(type(default))
    sections = {name: cls for name in fields
                if (cls := _optional_section(hints.get(name))) is not None}
    values: dict[str, Any] = {name: None for name in sections if name not in node}
    for key, value in node.items():
        where = _join(path, key)
        if key not in fields:
            problems.append(f"{where}: {_unknown(str(key), 'key', fields)}")
            continue
        current = getattr(default, key)
        if key in sections and current is None:
            current = sections[key]()
        if dataclasses.is_dataclass(current):
            values[key] = _overlay(current, value, where, problems)
            continue
        hint = hints.get(key)
        value = _coerce(hint, value)
        if _accepts(hint, value) is False:
            problems.append(f"{where}: must be {_describe(hint)}, got {value!r}")
            continue
        values[key] = value
    try:
        return dataclasses.replace(default, **values)
    except (TypeError, ValueError) as exc:
        problems.append(f"{path}: {exc}")
        return default


def _component_config(factory: Any, node: Any, path: str, problems: list[str]) -> Any:
    try:
        defaults = factory.CONFIG()
    except TypeError as exc:  # a factory bug, but the operator should still see the rest
        problems.append(f"{path}: the component has no complete default config: {exc}")
        return None
    config = _overlay(defaults, node, path, problems)
    try:
        found = config.validate()
    except Exception as exc:  # a validate() bug must not hide the other problems
        found = [f"cannot validate: {type(exc).__name__}: {exc}"]
    problems.extend(_join(path, p) for p in found)
    return config


def _components(section: str, node: Any, factories: Factories, declared: set[ComponentID],
                problems: list[str]) -> dict[ComponentID, Any]:
    """Valid-typed component configs of one section; ``declared`` gets every ID written."""
    kind = _SECTIONS[section]
    known = factories.of_kind(kind)
    if node is None:
        return {}
    if not isinstance(node, dict):
        problems.append(f"{section}: must be a mapping of component IDs to settings")
        return {}
    configs: dict[ComponentID, Any] = {}
    spelled: dict[ComponentID, str] = {}
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
            problems.append(f"{path}: {_unknown(cid.type, f'{kind} type', known)}")
            continue
        canonical = ComponentID(factory.TYPE, cid.name)
        declared.add(canonical)
        if canonical in configs:
            problems.append(f"{path}: duplicates '{spelled[canonical]}' (both are "
                            f"{kind} '{canonical}'); keep one of them")
            continue
        spelled[canonical] = str(key)
        configs[canonical] = _component_config(factory, settings, path, problems)
    return configs


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
        problems.append(f"{path}: must be a list of {kind} IDs, got {node!r}")
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
            problems.append(f"{path}: references {kind} '{item}' which is not configured; "
                            f"define it under {kind}s or remove it "
                            f"(configured: {', '.join(map(str, defined)) or 'none'})")
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


def _pipeline_id(key: Any, path: str, problems: list[str]) -> PipelineID | None:
    text = str(key)
    signal, slash, name = text.partition("/")
    if signal not in SIGNALS:
        problems.append(f"{path}: {_unknown(signal, 'signal', SIGNALS)}; a pipeline ID is "
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
            message = _unknown(str(unknown), "key", _PIPELINE_KEYS)
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


def _log_level(node: Any, problems: list[str]) -> str:
    path = _join("service", "telemetry")
    if node is None:
        return DEFAULT_LOG_LEVEL
    if not isinstance(node, dict):
        problems.append(f"{path}: must be a mapping, e.g. logs: {{level: info}}")
        return DEFAULT_LOG_LEVEL
    for key in node:
        if key != "logs":
            problems.append(f"{_join(path, key)}: {_unknown(str(key), 'key', ['logs'])}")
    logs = node.get("logs") or {}
    if not isinstance(logs, dict):
        problems.append(f"{_join(path, 'logs')}: must be a mapping, e.g. {{level: info}}")
        return DEFAULT_LOG_LEVEL
    for key in logs:
        if key != "level":
            problems.append(f"{_join(path, 'logs', key)}: {_unknown(str(key), 'key', ['level'])}")
    level = logs.get("level", DEFAULT_LOG_LEVEL)
    if not isinstance(level, str) or level.lower() not in LOG_LEVELS:
        problems.append(f"{_join(path, 'logs', 'level')}: must be one of "
                        f"{', '.join(LOG_LEVELS)}, got {level!r}")
        return DEFAULT_LOG_LEVEL
    return level.lower()


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
    data = _substitute(data, environ, "", env_problems)
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            problems.append(f"{key}: {_unknown(str(key), 'top-level key', _TOP_LEVEL_KEYS)}")
    declared: dict[str, set[ComponentID]] = {s: set() for s in _SECTIONS}
    sections = {s: _components(s, data.get(s), factories, declared[s], problems)
                for s in _SECTIONS}

    service = data.get("service")
    pipelines: dict[PipelineID, PipelineConfig] = {}
    service_extensions: tuple[ComponentID, ...] = ()
    log_level = DEFAULT_LOG_LEVEL
    if not isinstance(service, dict):
        problems.append("service: required, with service::pipelines naming the receivers, "
                        "processors and exporters of each pipeline")
    else:
        for key in service:
            if key not in _SERVICE_KEYS:
                problems.append(f"{_join('service', key)}: "
                                f"{_unknown(str(key), 'key', _SERVICE_KEYS)}")
        pipelines = _pipelines(service.get("pipelines"), sections, declared, factories,
                               problems)
        service_extensions = _references(service.get("extensions"),
                                         _join("service", "extensions"), KIND_EXTENSION,
                                         sections["extensions"], declared["extensions"],
                                         factories, None, problems)
        log_level = _log_level(service.get("telemetry"), problems)
    # A value whose substitution failed is reported once, not again by its validation.
    failed = {p.partition(": ")[0] for p in env_problems}
    problems = env_problems + [p for p in problems if p.partition(": ")[0] not in failed]
    if problems:
        raise ConfigError(problems)
    return Config(sections["receivers"], sections["processors"], sections["exporters"],
                  sections["extensions"], pipelines, service_extensions, log_level)


def _yaml_error(exc: yaml.MarkedYAMLError) -> str:
    """``YAML syntax error at line L, column C: problem (while ... at line L2, column C2)``."""
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    message = f"YAML syntax error{where}: {exc.problem or exc.context or 'invalid YAML'}"
    if exc.problem and exc.context and exc.context_mark is not None:
        started = exc.context_mark
        message += (f" ({exc.context} started at line {started.line + 1}, "
                    f"column {started.column + 1})")
    return message


def load_config(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None,
                factories: Factories | None = None) -> Config:
    """Read, substitute and validate the YAML file at ``path``; ``ConfigError`` if not valid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read the config file: {exc}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_error(exc)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"YAML syntax error: {exc}"]) from exc
    return parse_config(data, environ=environ, factories=factories)


def validate_file(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None,
                  factories: Factories | None = None) -> list[str]:
    """Every problem of the config file at ``path``; an empty list when it is valid."""
    try:
        load_config(path, environ=environ, factories=factories)
    except ConfigError as exc:
        return exc.problems
    return []
