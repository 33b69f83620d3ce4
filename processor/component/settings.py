"""What the service hands every factory besides the config: the component's ID, its logger
and the service's telemetry settings (the collector's ``{receiver,processor,...}.Settings``).

They live in the leaf so a component reads them without importing the service.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

KIND_RECEIVER = "receiver"
KIND_PROCESSOR = "processor"
KIND_EXPORTER = "exporter"
KIND_EXTENSION = "extension"

LEVEL_NONE = "none"
LEVEL_BASIC = "basic"
LEVEL_NORMAL = "normal"
LEVEL_DETAILED = "detailed"
# The collector's levels; every level but "none" exports every stats() field today.
LEVELS = (LEVEL_NONE, LEVEL_BASIC, LEVEL_NORMAL, LEVEL_DETAILED)
DEFAULT_LEVEL = LEVEL_BASIC
DEFAULT_INTERVAL_S = 10.0
# Components log under ``driftline.<kind>.<id>`` (``driftline.exporter.otlp/backup``).
LOGGER_PREFIX = "driftline"


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """``service::telemetry::metrics``: ``level`` (``none`` turns it off) and how often."""

    level: str = DEFAULT_LEVEL
    interval_s: float = DEFAULT_INTERVAL_S
    # service::telemetry::resource: (attribute, value or None to remove a default one).
    resource: tuple[tuple[str, str | None], ...] = ()

    @property
    def enabled(self) -> bool:
        return self.level != LEVEL_NONE

    @classmethod
    def of(cls, config: Any) -> TelemetrySettings:
        """The settings of a loaded ``Config``; defaults where it has no ``telemetry_metrics``."""
        node = getattr(config, "telemetry_metrics", None)
        resource = tuple(getattr(config, "telemetry_resource", ()))
        if node is None:
            return cls(resource=resource)
        return cls(str(getattr(node, "level", DEFAULT_LEVEL)).lower(),
                   float(getattr(node, "interval_s", DEFAULT_INTERVAL_S)), resource)


@dataclass(frozen=True, slots=True)
class Settings:
    """Handed to ``Factory.create`` with the config: ``id`` is the component's ID as written
    in YAML (``otlp/backup``), which names its state (a persistent queue's directory) and
    its errors; ``logger`` is where it may log; ``telemetry`` the service's settings."""

    kind: str
    id: str
    logger: logging.Logger
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)

    @classmethod
    def of(cls, kind: str, component_id: str,
           telemetry: TelemetrySettings | None = None) -> Settings:
        """The settings of component ``component_id`` of ``kind`` (``exporter``)."""
        return cls(kind, component_id,
                   logging.getLogger(f"{LOGGER_PREFIX}.{kind}.{component_id}"),
                   telemetry or TelemetrySettings())
