"""The pipeline checks of a config (the collector's ``otelcol`` config validation): every
pipeline ID is ``signal[/name]``, every component a pipeline or ``service::extensions``
lists is configured, of the right kind and supports the pipeline's signal, and every
``authenticator`` names an enabled extension."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from driftline.processor.service.decode import (
    unknown_problem,
)
from driftline.processor.service.expand import join_path as _join
from driftline.processor.service.registry import (
    KIND_EXTENSION,
    SIGNALS,
    Factories,
    signals_of,
)
from driftline.processor.service.sections import (
    SECTIONS,
    ComponentID,
    PipelineConfig,
    PipelineID,
    other_kind,
)

_PIPELINE_KEYS = ("receivers", "processors", "exporters")
_AUTHENTICATOR_KEY = "authenticator"


def check_references(node: Any, path: str, kind: str, defined: Mapping[ComponentID, Any],
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
            elsewhere = other_kind(cid.type, kind, factories, "list it in")
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


def check_extension_uses(sections: Mapping[str, Mapping[ComponentID, Any]],
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


def check_pipelines(node: Any, sections: Mapping[str, Mapping[ComponentID, Any]],
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
            refs[section] = check_references(body.get(section), _join(where, section),
                                             SECTIONS[section], sections[section],
                                             declared[section], factories, pid.signal, problems)
        for section in ("receivers", "exporters"):
            if not body.get(section):
                problems.append(f"{_join(where, section)}: a pipeline needs at least one "
                                f"{SECTIONS[section]}")
        pipelines[pid] = PipelineConfig(refs["receivers"], refs["processors"], refs["exporters"])
    return pipelines
