"""Reading the config's sources into one YAML document, as the collector's ``confmap``.

``--config`` sources (a path, ``file:PATH``, ``yaml:INLINE``, ``env:NAME``) are read with
PyYAML's safe loader (keys written twice reported, since YAML keeps only the last; YAML
errors explained with the line to look at), keys written ``a::b`` nested, and merged in
order with the ``--set`` items after them. Variables (``${env:VAR}``) are expanded later,
by ``expand``; what each component's mapping means is ``decode``'s job. This module also
finds the file and line a problem's YAML path was written at.
"""

from __future__ import annotations

import contextlib
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from driftline.processor.service.expand import (
    PATH_SEPARATOR,
    SCHEME_ENV,
    SCHEME_FILE,
)
from driftline.processor.service.expand import join_path as _join
from driftline.processor.service.sections import SECTIONS

# Config sources as the collector's --config takes them: a path, or a provider URI.
_SOURCE = re.compile(r"(file|yaml|env):(.*)", re.DOTALL)
_AT_LINE = re.compile(r"YAML [^:]* at line (\d+)")


class ConfigError(ValueError):
    """The config file has problems; ``problems`` lists each as ``"yaml::path: message"``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


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
                     f"'{key_node.value}/b')" if path in SECTIONS else "")
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


def read_sources(path: Sources, sets: typing.Sequence[str], environ: Mapping[str, str]
                 ) -> tuple[Any, list[str]]:
    """The merged document of the sources ``path`` and the ``sets`` items, and the problems
    of reading them (each prefixed with its source when there are several)."""
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
    return merged, problems


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
