"""Variable expansion in a config (the collector's ``confmap`` providers): ``${env:VAR}``,
``${VAR:-default}``, ``${file:PATH}``, ``$$``. A value that was a whole reference keeps the
text it came from (``EnvInt``, ``EnvWord``...), so the decoder can tell YAML typed it."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PATH_SEPARATOR = "::"
# ${NAME} and ${NAME:-default}: the collector's default scheme is env.
_SHORTHAND = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?::-.*)?", re.DOTALL)
_ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# ``$$``, a whole ``${...}``, or a ``${`` that is never closed (reported, not kept as text).
_REFERENCE = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_INTEGER = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
SCHEME_FILE = "file"
SCHEME_YAML = "yaml"
SCHEME_ENV = "env"


def join_path(*parts: object) -> str:
    """A YAML path (``exporters::file::path``) from its parts, empty ones left out."""
    return PATH_SEPARATOR.join(str(p) for p in parts if p != "")


def substitute(node: Any, environ: Mapping[str, str], path: str, problems: list[str]) -> Any:
    """Replace ``${env:VAR}`` and ``${env:VAR:-default}`` in every string value; ``$$`` is ``$``.

    A value that is exactly one reference is re-read as YAML, so ``port: ${env:PORT}`` gives
    an integer as the collector does; inside a longer string the text is inserted as is.
    """
    if isinstance(node, dict):
        return {k: substitute(v, environ, join_path(path, k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, environ, path, problems) for v in node]
    if not isinstance(node, str) or "$" not in node:
        return node

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group(1) is None:
            problems.append(f"{path}: '${{' is never closed with '}}' in {node!r}; write "
                            "${env:NAME} or ${env:NAME:-default}, or $$ for a literal $")
            return ""
        return _resolve(match.group(1), environ, path, problems)

    whole = _REFERENCE.fullmatch(node)
    text = _REFERENCE.sub(replace, node)
    if whole is not None and whole.group(1) is not None:
        return _typed(text)
    return text


class EnvInt(int):
    """An integer read from the environment; ``text`` is how it was written there."""

    text: str


class EnvFloat(float):
    """A number read from the environment; ``text`` is how it was written there."""

    text: str


def _remembering(number: EnvInt | EnvFloat, text: str) -> EnvInt | EnvFloat:
    number.text = text
    return number


class EnvList(list[Any]):
    """A YAML list read from the environment or a file; ``text`` is how it was written."""

    text: str


class EnvMap(dict[Any, Any]):
    """A YAML map read from the environment or a file; ``text`` is how it was written."""

    text: str


def _holding(decoded: list[Any] | dict[Any, Any], text: str) -> EnvList | EnvMap:
    held = EnvList(decoded) if isinstance(decoded, list) else EnvMap(decoded)
    held.text = text
    return held


class EnvWord(str):
    """``true`` or ``false`` read from the environment: a bool where a setting wants one."""

    @property
    def truth(self) -> bool:
        return self.strip() == "true"


def _typed(text: str) -> Any:
    """A list or map when ``text`` is YAML holding one; an integer, number or
    ``true``/``false`` when it spells one; else ``text``.

    Deliberately narrower than YAML 1.1, which would read "on" as true and "0123" as octal.
    Numbers and words remember their text, so a string setting gets exactly what was written
    (``_coerce`` turns them into what the setting's type asks for).
    """
    stripped = text.strip()
    if stripped.startswith(("[", "{")) or "\n" in stripped:
        # A list or map, decoded as the collector decodes a value holding YAML.
        with contextlib.suppress(yaml.YAMLError):
            decoded = yaml.safe_load(text)
            if isinstance(decoded, list | dict):
                return _holding(decoded, text)
    if _INTEGER.fullmatch(stripped):
        return _remembering(EnvInt(stripped), text)
    if _FLOAT.fullmatch(stripped):
        return _remembering(EnvFloat(stripped), text)
    if stripped in ("true", "false"):
        return EnvWord(text)
    return text


def _read_reference_file(name: str, reference: str, path: str, problems: list[str]) -> str:
    """The text of the file ``${file:NAME}`` names, as is (relative to the working directory,
    as the collector's file provider reads it)."""
    try:
        return Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problems.append(f"{path}: cannot read the file of '${{{reference}}}': {reason} "
                        f"(looked for '{Path(name).absolute()}')")
        return ""


def _resolve(reference: str, environ: Mapping[str, str], path: str,
             problems: list[str]) -> str:
    if _SHORTHAND.fullmatch(reference) and not reference.startswith(("env:", "file:")):
        reference = f"{SCHEME_ENV}:{reference}"
    scheme, colon, rest = reference.partition(":")
    if colon and scheme == SCHEME_FILE:
        return _read_reference_file(rest, reference, path, problems)
    if not colon or scheme != SCHEME_ENV:
        problems.append(f"{path}: unsupported reference '${{{reference}}}'; write "
                        "${NAME}, ${env:NAME}, ${env:NAME:-default} or ${file:PATH} (and $$ "
                        "for a literal $)")
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
