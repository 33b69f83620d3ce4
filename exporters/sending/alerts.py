"""What the alert exporters share: picking ``ml.drift.alert`` records out of a logs batch,
and posting JSON through the retry and queue chain (``_push.PushExporter``)."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from driftline import semconv
from driftline.exporters.sending.http import post
from driftline.exporters.sending.push import PushExporter
from driftline.exporters.sending.queue import Item
from driftline.processor.component.signals import SIGNAL_LOGS

ALERT_EVENTS = (semconv.EVENT_DRIFT_ALERT,)
CONTENT_TYPE = "application/json"
# Record attributes that become Alertmanager labels (they identify the alert); the others
# become annotations.
LABEL_ATTRIBUTES = (semconv.ML_MODEL_NAME, semconv.ML_MODEL_VERSION, semconv.ML_OPERATION,
                    semconv.ML_DRIFT_SUBJECT, semconv.ML_FEATURE_NAME, semconv.ML_DRIFT_METHOD,
                    semconv.SERVICE_NAME)
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def text_of(value: AnyValue) -> str | float | int | bool:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in ("string_value", "int_value", "double_value",
                                            "bool_value") else ""


def label_name(key: str) -> str:
    name = _LABEL_UNSAFE.sub("_", key)
    return f"_{name}" if name[:1].isdigit() else name


def iso_time(time_ns: int) -> str:
    return datetime.datetime.fromtimestamp(time_ns / 1e9, datetime.UTC).isoformat()


def alert_records(batch: Sequence[Any]) -> list[tuple[dict[str, Any], Any]]:
    """(resource attributes, record) of every alert record in a logs batch."""
    found = []
    for resource_logs in batch:
        resource = {kv.key: text_of(kv.value) for kv in resource_logs.resource.attributes}
        for scope in resource_logs.scope_logs:
            found += [(resource, r) for r in scope.log_records if r.event_name in ALERT_EVENTS]
    return found


def url_problems(endpoint: str) -> list[str]:
    if not endpoint.startswith(("http://", "https://")):
        return [f"endpoint: required, an http:// or https:// URL, got {endpoint!r}"]
    return []


class JsonPoster(PushExporter):
    """Sends the alert JSON of each batch through the retry and queue chain."""

    def __init__(self, name: str, url: str, config: Any) -> None:
        super().__init__(name, config)
        self._url = url
        self._config = config
        self._ssl = config.tls.ssl_context() if url.startswith("https://") else None

    def consume_logs(self, batch: Sequence[Any]) -> None:
        records = alert_records(batch)
        if records:
            self._submit_item(Item(SIGNAL_LOGS, json.dumps(self.payload(records)).encode(),
                                   len(records)))

    def payload(self, records: list[tuple[dict[str, Any], Any]]) -> Any:
        raise NotImplementedError

    def _send_item(self, item: Item, timeout_s: float) -> None:
        post(self._url, item.body, {"Content-Type": CONTENT_TYPE, **self._config.headers},
             timeout_s, self._ssl)
