"""The config's component sections and the IDs written in them (``type[/name]`` for
components, ``signal[/name]`` for pipelines): what reading, decoding and the pipeline
checks all name."""

from __future__ import annotations

import re
from dataclasses import dataclass

from driftline.processor.service.registry import (
    KIND_EXPORTER,
    KIND_EXTENSION,
    KIND_PROCESSOR,
    KIND_RECEIVER,
    Factories,
)

SECTIONS = {
    "receivers": KIND_RECEIVER,
    "processors": KIND_PROCESSOR,
    "exporters": KIND_EXPORTER,
    "extensions": KIND_EXTENSION,
}
SECTION_OF = {kind: section for section, kind in SECTIONS.items()}
ARTICLES = {KIND_RECEIVER: "a", KIND_PROCESSOR: "a", KIND_EXPORTER: "an", KIND_EXTENSION: "an"}
_TYPE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


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


def other_kind(type_: str, kind: str, factories: Factories,
                verb: str | None = None) -> str | None:
    """``"'file' is an exporter type here, not a receiver[: <verb> exporters]"`` when
    ``type_`` names a component of another kind."""
    for section, other in SECTIONS.items():
        if other != kind and type_ in factories.of_kind(other):
            advice = f": {verb} {section}" if verb else ""
            return (f"'{type_}' is {ARTICLES[other]} {other} type here, not "
                    f"{ARTICLES[kind]} {kind}{advice}")
    return None
