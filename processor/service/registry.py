"""Which component types exist: the factories the config loader and pipeline builder use.

Built by a function, never at import, so tests can assemble their own set of factories.
Exporter modules are imported lazily and are optional: a missing module leaves its type
unknown (the loader then says so) instead of breaking the processor.

Third-party components plug in through entry points, one group per kind
(``driftline.receivers``, ``driftline.processors``, ``driftline.exporters``,
``driftline.extensions``); each entry point names a factory class (or instance) with the
same ``TYPE``/``CONFIG``/``create`` as a built-in one, and is configured like one. A
built-in type wins over a plug-in of the same type; a plug-in that fails to load is logged
and left out, so it cannot stop the processor.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from driftline.processor.component.settings import (
    KIND_EXPORTER,
    KIND_EXTENSION,
    KIND_PROCESSOR,
    KIND_RECEIVER,
)
from driftline.processor.component.signals import (  # noqa: F401  (the service re-exports them)
    DEFAULT_SIGNALS,
    SIGNAL_LOGS,
    SIGNAL_METRICS,
    SIGNAL_TRACES,
    SIGNALS,
)

_log = logging.getLogger(__name__)


PLUGIN_GROUP_PREFIX = "driftline."
# Component modules, each with a ``Factory``; optional ones may be missing from an install.
_RECEIVER_MODULES = ("driftline.processor.otlp_receiver.receiver",)
_PROCESSOR_MODULES = ("driftline.processor.ml_drift.processor",
                      "driftline.processor.batch.processor",
                      "driftline.processor.memory_limiter.processor",
                      "driftline.processor.ml_performance.processor")
_EXTENSION_MODULES = ("driftline.processor.extensions.health_check",
                      "driftline.processor.extensions.bearertokenauth",
                      "driftline.processor.extensions.file_storage")
_EXPORTER_MODULES = ("driftline.exporters.prometheus.exporter",
                     "driftline.exporters.file.exporter",
                     "driftline.exporters.otlp_grpc.exporter",
                     "driftline.exporters.otlp_http.exporter",
                     "driftline.exporters.prometheusremotewrite.exporter",
                     "driftline.exporters.alertmanager.exporter",
                     "driftline.exporters.webhook.exporter",
                     "driftline.exporters.ml_dashboard.exporter")


@dataclass(frozen=True, slots=True)
class Factories:
    """Factories per component kind, keyed by every accepted spelling of their type."""

    receivers: Mapping[str, Any]
    processors: Mapping[str, Any]
    exporters: Mapping[str, Any]
    extensions: Mapping[str, Any]

    @classmethod
    def of(
        cls,
        receivers: Iterable[Any] = (),
        processors: Iterable[Any] = (),
        exporters: Iterable[Any] = (),
        extensions: Iterable[Any] = (),
    ) -> Factories:
        """Index factory objects by their ``TYPE`` and any ``ALIASES`` they declare."""
        return cls(_index(receivers), _index(processors), _index(exporters), _index(extensions))

    def of_kind(self, kind: str) -> Mapping[str, Any]:
        return {
            KIND_RECEIVER: self.receivers,
            KIND_PROCESSOR: self.processors,
            KIND_EXPORTER: self.exporters,
            KIND_EXTENSION: self.extensions,
        }[kind]


def _index(factories: Iterable[Any]) -> dict[str, Any]:
    index: dict[str, Any] = {}
    for factory in factories:
        for spelling in (factory.TYPE, *getattr(factory, "ALIASES", ())):
            index[spelling] = factory
    return index


def signals_of(factory: Any) -> tuple[str, ...]:
    """The signals a factory's components consume (``("metrics",)`` unless it says more)."""
    return tuple(getattr(factory, "SIGNALS", DEFAULT_SIGNALS))


def _optional_factory(module_name: str) -> Any | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the module exists but one of its own imports is missing: say so loudly
        _log.debug("optional component module %s is not installed", module_name)
        return None
    return module.Factory()


def _factories(module_names: Iterable[str]) -> list[Any]:
    return [f for f in map(_optional_factory, module_names) if f is not None]


def plugin_factories(kind: str) -> list[Any]:
    """Factories installed by other distributions under ``driftline.<kind>s``."""
    found = []
    for entry_point in metadata.entry_points(group=f"{PLUGIN_GROUP_PREFIX}{kind}s"):
        try:
            loaded = entry_point.load()
            factory = loaded() if isinstance(loaded, type) else loaded
            factory.TYPE  # noqa: B018 - a factory without a TYPE cannot be configured
        except Exception as exc:  # a broken plug-in must not stop the processor
            _log.error("plug-in %s %r (%s) cannot be loaded and is left out: %s", kind,
                       entry_point.name, entry_point.value, exc)
            continue
        found.append(factory)
    return found


def _with_plugins(kind: str, builtin: list[Any]) -> list[Any]:
    types = {f.TYPE for f in builtin}
    plugins = []
    for factory in plugin_factories(kind):
        if factory.TYPE in types:
            _log.warning("plug-in %s type %r is ignored: a built-in one has that type",
                         kind, factory.TYPE)
            continue
        plugins.append(factory)
    return plugins + builtin  # built-ins indexed last, so their aliases win too


def default_factories() -> Factories:
    """Every component type shipped with Driftline, plus installed plug-ins."""
    return Factories.of(
        receivers=_with_plugins(KIND_RECEIVER, _factories(_RECEIVER_MODULES)),
        processors=_with_plugins(KIND_PROCESSOR, _factories(_PROCESSOR_MODULES)),
        exporters=_with_plugins(KIND_EXPORTER, _factories(_EXPORTER_MODULES)),
        extensions=_with_plugins(KIND_EXTENSION, _factories(_EXTENSION_MODULES)),
    )
