"""What the alert exporters share: picking ``ml.drift.alert`` records out of a logs batch,
and posting JSON through the retry and queue chain (``_sending``)."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from driftline import semconv
from driftline.exporters._http import post
from driftline.exporters._sending import (
    Item,
    Sender,
    SendingConfig,
    storage_directory,
)
from driftline.processor.component import Host

ALERT_EVENTS = (semconv.EVENT_DRIFT_ALERT,)
CONTENT_TYPE = "application/json"
SIGNAL_LOGS = "logs"
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


class JsonPoster:
    """Sends the alert JSON of each batch through the retry and queue chain."""

    def __init__(self, name: str, url: str, config: Any) -> None:
        self._name = name
        self._url = url
        self._config = config
        self._sending = SendingConfig(config.timeout, config.retry_on_failure,
                                      config.sending_queue)
        self._host = Host()
        self._sender: Sender | None = None
        self._ssl = config.tls.ssl_context() if url.startswith("https://") else None

    def set_host(self, host: Host) -> None:
        self._host = host

    def start(self) -> None:
        directory = storage_directory(self._host, self._sending.sending_queue.storage,
                                      self._name,
                                      f"exporters::{self._name}::sending_queue::storage")
        self._sender = Sender(self._name, self._post, self._sending, directory)
        self._sender.start()

    def shutdown(self) -> None:
        if self._sender is not None:
            self._sender.shutdown()

    def stats(self) -> Any:
        return self._sender.stats() if self._sender is not None else None

    def consume_logs(self, batch: Sequence[Any]) -> None:
        records = alert_records(batch)
        if not records:
            return
        if self._sender is None:
            raise RuntimeError(f"{self._name} is not started")
        payload = self.payload(records)
        self._sender.submit(Item(SIGNAL_LOGS, json.dumps(payload).encode(), len(records)))

    def payload(self, records: list[tuple[dict[str, Any], Any]]) -> Any:
        raise NotImplementedError

    def _post(self, item: Item, timeout_s: float) -> None:
        post(self._url, item.body, {"Content-Type": CONTENT_TYPE, **self._config.headers},
             timeout_s, self._ssl)
