"""Component configs decoded from YAML: a config dataclass overlaid with a YAML node, each
value checked against its field's type (durations, optional sections, values that came from
``${env:...}``), with errors that name the YAML path and suggest the closest known key."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
import typing
from typing import Any

from driftline.durations import bare_number_problem
from driftline.processor.component import NOT_HONOURED
from driftline.processor.service.expand import EnvFloat, EnvInt, EnvList, EnvMap, EnvWord
from driftline.processor.service.expand import join_path as _join

_SUGGESTION_CUTOFF = 0.6
NOT_USED = "accepted as the collector reads it, but not used by Driftline"


def closest(word: str, known: typing.Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(known), n=1, cutoff=_SUGGESTION_CUTOFF)
    return matches[0] if matches else None


def unknown_problem(word: str, what: str, known: typing.Iterable[str],
                    hint: str | None = None) -> str:
    """``unknown <what> '<word>'; <hint or closest known> (known: ...)``.

    ``hint`` (e.g. "indent it under service") replaces the spelling suggestion: a key in the
    wrong place is usually mis-indented, not misspelt.
    """
    known = sorted(known)
    suggestion = closest(word, known)
    if hint:
        advice = f"; {hint}"
    elif suggestion:
        advice = f"; did you mean '{suggestion}'?"
    else:
        advice = ""
    listing = ", ".join(known) if known else "none"
    return f"unknown {what} '{word}'{advice} (known: {listing})"


def setting_paths(config: Any, prefix: str = "") -> dict[str, str]:
    """Every setting name of a config dataclass, nested ones too, with its path inside it.

    Lets a misplaced key be answered with where it belongs (``grpc`` → ``protocols::grpc``).
    The first (shallowest) path wins for a name used at several depths.
    """
    found: dict[str, str] = {}
    nested: list[tuple[Any, str]] = []
    if isinstance(config, type):
        # Without complete defaults its own settings are still known, not nested ones.
        with contextlib.suppress(TypeError):
            config = config()
    hints = field_hints(config if isinstance(config, type) else type(config))
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        where = _join(prefix, f.name)
        found.setdefault(f.name, where)
        section = optional_section(hints.get(f.name))
        current = None if isinstance(config, type) else getattr(config, f.name, None)
        if dataclasses.is_dataclass(current):
            nested.append((current, where))
        elif section is not None:
            nested.append((section, where))
    for child, where in nested:
        for name, path in setting_paths(child, where).items():
            found.setdefault(name, path)
    return found


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
        if not isinstance(value, list | tuple):
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


def _wants_bool(hint: Any) -> bool:
    if hint is bool:
        return True
    args = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType,
                                                               typing.Union) else ()
    return bool in args and str not in args


def _coerce(hint: Any, value: Any) -> Any:
    # An int stays an int where a float is expected, so messages quote what was written.
    if hint is str and isinstance(value, EnvInt | EnvFloat | EnvList | EnvMap):
        return value.text  # a string setting gets the text, as the collector gives it
    if isinstance(value, EnvWord):
        return value.truth if _wants_bool(hint) else str(value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: _coerce(args[1], v) for k, v in value.items()}
    if origin in (list, tuple) and isinstance(value, list):
        items = [a for a in args if a is not Ellipsis]
        if len(items) == 1:
            value = [_coerce(items[0], v) for v in value]
        return tuple(value) if origin is tuple else value
    return value


def field_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        return {}  # unresolvable annotations: leave type checks to the config's validate()


def optional_section(hint: Any) -> type | None:
    """The dataclass ``X`` when ``hint`` is ``X | None``: a section enabled by being written."""
    if typing.get_origin(hint) not in (types.UnionType, typing.Union):
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) == 1 and len(typing.get_args(hint)) == 2 and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


_DURATION = str | float  # a config field of this type is a duration (driftline.durations)


def _not_honoured_warning(f: dataclasses.Field[Any], where: str, value: Any) -> str | None:
    """The warning for a collector setting written but not acted on here, if ``f`` is one."""
    marked = f.metadata.get(NOT_HONOURED)
    if marked is None:
        return None
    reason, honoured = marked
    if value in honoured:
        return None
    return f"{where}: {NOT_USED}: {reason}"


def _overlay(default: Any, node: Any, path: str, problems: list[str],
             warnings: list[str] | None = None) -> Any:
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
    hints = field_hints(type(default))
    sections = {name: cls for name in fields
                if (cls := optional_section(hints.get(name))) is not None}
    values: dict[str, Any] = {name: None for name in sections if name not in node}
    nested = setting_paths(default)
    for key, value in node.items():
        where = _join(path, key)
        if key not in fields:
            belongs = nested.get(key) if isinstance(key, str) else None
            hint = f"it belongs at {_join(path, belongs)}: indent it there" if belongs else None
            problems.append(f"{where}: {unknown_problem(str(key), 'key', fields, hint)}")
            continue
        current = getattr(default, key)
        if key in sections and current is None:
            current = sections[key]()
        if dataclasses.is_dataclass(current):
            values[key] = _overlay(current, value, where, problems, warnings)
            continue
        hint = hints.get(key)
        value = _coerce(hint, value)
        if _accepts(hint, value) is False:
            problems.append(f"{where}: must be {_describe(hint)}, got {value!r}")
            continue
        if hint == _DURATION and (problem := bare_number_problem(where, value)) is not None:
            problems.append(problem)  # kept, so validate() does not report it again
        if warnings is not None and (
                warning := _not_honoured_warning(fields[key], where, value)) is not None:
            warnings.append(warning)
        values[key] = value
    try:
        return dataclasses.replace(default, **values)
    except (TypeError, ValueError) as exc:
        problems.append(f"{path}: {exc}")
        return default


def component_config(factory: Any, node: Any, path: str, problems: list[str],
                      warnings: list[str]) -> Any:
    try:
        defaults = factory.CONFIG()
    except TypeError as exc:  # a factory bug, but the operator should still see the rest
        problems.append(f"{path}: the component has no complete default config: {exc}")
        return None
    config = _overlay(defaults, node, path, problems, warnings)
    try:
        found = config.validate()
    except Exception as exc:  # a validate() bug must not hide the other problems
        found = [f"cannot validate: {type(exc).__name__}: {exc}"]
    problems.extend(_join(path, p) for p in found)
    return config
