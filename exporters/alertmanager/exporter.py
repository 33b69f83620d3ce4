"""The ``alertmanager`` exporter: ``ml.drift.alert`` log records to Prometheus Alertmanager.

At the end of a logs pipeline; other records pass by unexported. Posts to Alertmanager's v2
API (``POST /api/v2/alerts``): one alert per record, labels from the record's model, column
and method (sanitised to Prometheus label names), ``alertname`` ``MLDrift``, the record's
text as the ``summary`` annotation and its other attributes as annotations, ``startsAt``
the window's end and ``endsAt`` that plus ``resolve_timeout``, so an alert that is not
repeated resolves itself. Sent through the shared retry and queue chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from driftline.durations import parse_duration, positive_duration_problem
from driftline.exporters.sending.alerts import (
    LABEL_ATTRIBUTES,
    JsonPoster,
    iso_time,
    label_name,
    text_of,
    url_problems,
)
from driftline.exporters.sending.push import client_problems
from driftline.exporters.sending.queue import DEFAULT_TIMEOUT, QueueConfig, RetryConfig
from driftline.processor.component.factories import PushExporterFactory
from driftline.processor.component.signals import SIGNAL_LOGS
from driftline.processor.component.tls import TlsConfig

TYPE = "alertmanager"
ALERTNAME = "MLDrift"
DEFAULT_RESOLVE_TIMEOUT = "5m"
DEFAULT_SEVERITY = "warning"
API_PATH = "/api/v2/alerts"


@dataclass(slots=True)
class AlertmanagerExporterConfig:
    endpoint: str = ""  # Alertmanager's base URL, e.g. http://127.0.0.1:9093
    resolve_timeout: str | float = DEFAULT_RESOLVE_TIMEOUT
    severity: str = DEFAULT_SEVERITY
    generator_url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    tls: TlsConfig = field(default_factory=TlsConfig)
    timeout: str | float = DEFAULT_TIMEOUT
    retry_on_failure: RetryConfig = field(default_factory=RetryConfig)
    sending_queue: QueueConfig = field(default_factory=QueueConfig)

    def validate(self) -> list[str]:
        problems = url_problems(self.endpoint)
        problem = positive_duration_problem("resolve_timeout", self.resolve_timeout)
        if problem:
            problems.append(problem)
        return problems + client_problems(self)



class AlertmanagerExporter(JsonPoster):
    def __init__(self, name: str, config: AlertmanagerExporterConfig) -> None:
        super().__init__(name, config.endpoint.rstrip("/") + API_PATH, config)
        self._resolve_ns = round(parse_duration(config.resolve_timeout) * 1e9)

    def payload(self, records: list[tuple[dict[str, Any], Any]]) -> list[dict[str, Any]]:
        alerts = []
        for resource, record in records:
            attributes = {**resource, **{kv.key: text_of(kv.value) for kv in record.attributes}}
            labels = {"alertname": ALERTNAME, "severity": self._config.severity}
            labels.update({label_name(k): str(attributes[k]) for k in LABEL_ATTRIBUTES
                           if attributes.get(k) not in (None, "")})
            annotations = {label_name(k): str(v) for k, v in attributes.items()
                           if k not in LABEL_ATTRIBUTES}
            annotations["summary"] = record.body.string_value
            alert = {"labels": labels, "annotations": annotations,
                     "startsAt": iso_time(record.time_unix_nano),
                     "endsAt": iso_time(record.time_unix_nano + self._resolve_ns)}
            if self._config.generator_url:
                alert["generatorURL"] = self._config.generator_url
            alerts.append(alert)
        return alerts


class Factory(PushExporterFactory):
    TYPE = TYPE
    CONFIG = AlertmanagerExporterConfig
    SIGNALS = (SIGNAL_LOGS,)
    COMPONENT = AlertmanagerExporter
