"""The collector-style YAML config: load, substitute, overlay on defaults, validate.

Modeled on the OpenTelemetry Collector's ``confmap`` and ``otelcol/config.go``, one job per
module: ``confmap`` reads and merges the sources (files, ``yaml:``, ``env:``, ``--set``),
``expand`` substitutes ``${env:VAR}`` / ``${file:PATH}``, ``decode`` lays each component's
YAML mapping over its factory's default config dataclass, ``pipeline_checks`` checks what
the pipelines reference and ``telemetry_config`` reads ``service::telemetry``. This module
runs them in that order and collects every problem (not just the first) as
``"yaml::path: message"``. Messages say what to change; a key in the wrong place is
answered with where it belongs, since a first config's mistakes are mostly indentation.
docs/config.md is the reference.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from driftline.durations import parse_duration
from driftline.processor.service.confmap import (  # noqa: F401  (re-exported)
    ConfigError,
    Sources,
    key_lines,
    parse_set,
    problem_line,
    problem_lines,
    read_sources,
)
from driftline.processor.service.decode import (
    component_config,
    setting_paths,
    unknown_problem,
)
from driftline.processor.service.expand import join_path as _join
from driftline.processor.service.expand import substitute
from driftline.processor.service.pipeline_checks import (
    check_extension_uses,
    check_pipelines,
    check_references,
)
from driftline.processor.service.registry import (
    KIND_EXTENSION,
    SIGNALS,
    Factories,
    default_factories,
)
from driftline.processor.service.sections import (
    ARTICLES,
    SECTION_OF,
    SECTIONS,
    ComponentID,
    PipelineConfig,
    PipelineID,
    other_kind,
)
from driftline.processor.service.telemetry_config import (  # noqa: F401  (re-exported)
    DEFAULT_LOG_LEVEL,
    DEFAULT_TELEMETRY_METRICS_INTERVAL_S,
    DEFAULT_TELEMETRY_METRICS_LEVEL,
    LOG_ENCODING_CONSOLE,
    LOG_ENCODING_JSON,
    LOG_ENCODINGS,
    LOG_LEVELS,
    TELEMETRY_METRICS_LEVELS,
    TelemetryMetricsConfig,
    parse_telemetry,
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
_CONNECTORS = "connectors"
_TOP_LEVEL_KEYS = (*SECTIONS, _CONNECTORS, "service")
_SERVICE_KEYS = ("pipelines", "extensions", "telemetry")


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
    telemetry_metrics: TelemetryMetricsConfig = field(default_factory=TelemetryMetricsConfig)
    # ``"yaml::path: message"`` for each collector setting written but not acted on here.
    warnings: tuple[str, ...] = ()
    # service::telemetry::resource: attributes of the processor's own telemetry; a value of
    # None removes a default attribute (service.name), as in the collector.
    telemetry_resource: tuple[tuple[str, str | None], ...] = ()
    log_encoding: str = LOG_ENCODING_CONSOLE


def _components(section: str, node: Any, factories: Factories, declared: set[ComponentID],
                problems: list[str], warnings: list[str]) -> dict[ComponentID, Any]:
    """Valid-typed component configs of one section; ``declared`` gets every ID written."""
    kind = SECTIONS[section]
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
                     or other_kind(cid.type, kind, factories))
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
                    f"its path is {_join(SECTION_OF[kind], written, belongs)}")
    return None


def _misplaced_top_level(key: str, factories: Factories) -> str | None:
    """Where a top-level key that is not a section belongs, when that is clear."""
    if key in ("pipelines", "telemetry"):
        return "it belongs under service: indent it there"
    if key.partition("/")[0] in SIGNALS:
        return "a pipeline belongs under service::pipelines: indent it there"
    type_ = key.partition("/")[0]
    for section, kind in SECTIONS.items():
        if type_ in factories.of_kind(kind):
            return f"'{type_}' is {ARTICLES[kind]} {kind} type: indent it under {section}"
    return None


def _misplaced_in_service(key: str) -> str | None:
    """Where a key written directly under ``service`` belongs, when that is clear."""
    if key.partition("/")[0] in SIGNALS:
        return "a pipeline belongs under service::pipelines: indent it there"
    if key in ("receivers", "processors", "exporters"):
        return ("that list belongs to a pipeline: indent it under "
                "service::pipelines::<signal>")
    return None


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
    declared: dict[str, set[ComponentID]] = {s: set() for s in SECTIONS}
    sections = {s: _components(s, data.get(s), factories, declared[s], problems, warnings)
                for s in SECTIONS}
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
        pipelines = check_pipelines(service.get("pipelines"), sections, declared, factories,
                                    problems)
        service_extensions = check_references(service.get("extensions"),
                                              _join("service", "extensions"), KIND_EXTENSION,
                                              sections["extensions"], declared["extensions"],
                                              factories, None, problems)
        (log_level, log_encoding), telemetry_metrics, telemetry_resource = parse_telemetry(
            service.get("telemetry"), problems, warnings)
        if isinstance(service.get("extensions"), list | None):
            check_extension_uses(sections, service_extensions, declared["extensions"],
                                 factories, problems)
    # A value whose substitution failed is reported once, not again by its validation.
    failed = {p.partition(": ")[0] for p in env_problems}
    problems = env_problems + [p for p in problems if p.partition(": ")[0] not in failed]
    if problems:
        raise ConfigError(problems)
    return Config(sections["receivers"], sections["processors"], sections["exporters"],
                  sections["extensions"], pipelines, service_extensions, log_level,
                  telemetry_metrics, tuple(warnings), telemetry_resource, log_encoding)


def load_config(path: Sources, *, sets: typing.Sequence[str] = (),
                environ: Mapping[str, str] | None = None,
                factories: Factories | None = None) -> Config:
    """Read, merge, substitute and validate a config; ``ConfigError`` if not valid.

    ``path`` is one source or several, merged in order as the collector merges repeated
    ``--config`` flags: a file path, ``file:PATH``, ``yaml:INLINE`` or ``env:NAME``. Each
    ``sets`` item (``key::path=value``) is applied after them, as ``--set``.
    """
    environ = os.environ if environ is None else environ
    merged, problems = read_sources(path, sets, environ)
    try:
        config = parse_config(merged, environ=environ, factories=factories)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def validate_file(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None,
                  factories: Factories | None = None) -> list[str]:
    """Every problem of the config file at ``path``; an empty list when it is valid."""
    try:
        load_config(path, environ=environ, factories=factories)
    except ConfigError as exc:
        return exc.problems
    return []
