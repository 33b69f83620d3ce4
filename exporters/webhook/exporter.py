"""The ``webhook`` exporter: ``ml.drift.alert`` log records POSTed as JSON to any URL.

At the end of a logs pipeline; other records pass by unexported. Each batch is one object
``{"alerts": [...]}``; an alert carries its event name, time, severity, summary text, the
resource attributes and every attribute of its record. Sent through the shared retry and
queue chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from driftline.exporters.sending.alerts import JsonPoster, iso_time, text_of, url_problems
from driftline.exporters.sending.push import client_problems
from driftline.exporters.sending.queue import DEFAULT_TIMEOUT, QueueConfig, RetryConfig
from driftline.processor.component.factories import PushExporterFactory
from driftline.processor.component.signals import SIGNAL_LOGS
from driftline.processor.component.tls import TlsConfig

TYPE = "webhook"


@dataclass(slots=True)
class WebhookExporterConfig:
    endpoint: str = ""  # the URL each batch of alerts is POSTed to
    headers: dict[str, str] = field(default_factory=dict)
    tls: TlsConfig = field(default_factory=TlsConfig)
    timeout: str | float = DEFAULT_TIMEOUT
    retry_on_failure: RetryConfig = field(default_factory=RetryConfig)
    sending_queue: QueueConfig = field(default_factory=QueueConfig)

    def validate(self) -> list[str]:
        problems = url_problems(self.endpoint)
        return problems + client_problems(self)



class WebhookExporter(JsonPoster):
    def __init__(self, name: str, config: WebhookExporterConfig) -> None:
        super().__init__(name, config.endpoint, config)

    def payload(self, records: list[tuple[dict[str, Any], Any]]) -> dict[str, Any]:
        return {"alerts": [
            {"event": record.event_name, "time": iso_time(record.time_unix_nano),
             "severity": record.severity_text, "summary": record.body.string_value,
             "resource": resource,
             "attributes": {kv.key: text_of(kv.value) for kv in record.attributes}}
            for resource, record in records]}


class Factory(PushExporterFactory):
    TYPE = TYPE
    CONFIG = WebhookExporterConfig
    SIGNALS = (SIGNAL_LOGS,)
    COMPONENT = WebhookExporter
