"""The factory most components write the same way: ``default_config()`` is the config
class's defaults, ``create()`` validates against the ID in the settings, then builds the
component. A component's ``Factory`` subclasses one of these and names its ``TYPE``,
``CONFIG``, ``SIGNALS`` and ``COMPONENT``; a component built another way writes its own
``create()`` (the ``Factory`` protocol is the contract, not these classes)."""

from __future__ import annotations

from typing import Any, ClassVar

from driftline.processor.component import Consumer, require_next, validated
from driftline.processor.component.settings import KIND_EXPORTER, KIND_PROCESSOR, Settings


class _ConfiguredFactory:
    TYPE: ClassVar[str]
    KIND: ClassVar[str]
    CONFIG: ClassVar[type[Any]]
    SIGNALS: ClassVar[tuple[str, ...]]
    COMPONENT: ClassVar[Any]

    def default_config(self) -> Any:
        return self.CONFIG()

    def create(self, config: Any, next_consumer: Consumer | None = None,
               settings: Settings | None = None) -> Any:
        settings = settings or Settings.of(self.KIND, self.TYPE)
        return self._build(validated(config, settings), next_consumer, settings)

    def _build(self, config: Any, next_consumer: Consumer | None, settings: Settings) -> Any:
        raise NotImplementedError


class ProcessorFactory(_ConfiguredFactory):
    """``COMPONENT(config, next_consumer)``; a processor without a next consumer is refused."""

    KIND = KIND_PROCESSOR

    def _build(self, config: Any, next_consumer: Consumer | None, settings: Settings) -> Any:
        return self.COMPONENT(config, require_next(next_consumer, settings))


class PushExporterFactory(_ConfiguredFactory):
    """``COMPONENT(component_id, config)``: a push exporter names its queue and its log lines
    by its ID (``otlp/backup``)."""

    KIND = KIND_EXPORTER

    def _build(self, config: Any, next_consumer: Consumer | None, settings: Settings) -> Any:
        return self.COMPONENT(settings.id, config)
