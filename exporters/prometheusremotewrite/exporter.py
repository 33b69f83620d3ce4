"""The ``prometheusremotewrite`` exporter: metrics pushed to Prometheus' remote write API.

Metrics are named and labelled exactly as the ``prometheus`` exporter exposes them (it
keeps the same state: deltas accumulated, expiry), and after each batch the series it
touched are sent as one snappy-compressed ``WriteRequest`` (remote write 1.0), timestamped
with their points' times, through the shared retry and queue chain. A 4xx other than 429
(an out-of-order sample, say) is not retried, as the remote write specification says.

A batch is never refused upstream once it is in the state (a retry would add its deltas
twice): when the sending queue is full, its series go with the next batch's request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cramjam

from driftline.exporters.prometheus_series.series import (
    DEFAULT_ADD_RATIO_SUFFIX,
    DEFAULT_METRIC_EXPIRATION,
    DEFAULT_NAMESPACE,
    PrometheusExporterConfig,
    PrometheusSeries,
    Sample,
)
from driftline.exporters.prometheusremotewrite.proto import write_request_class
from driftline.exporters.sending.http import post
from driftline.exporters.sending.push import PushExporter, client_problems
from driftline.exporters.sending.queue import (
    DEFAULT_TIMEOUT,
    Item,
    QueueConfig,
    RetryConfig,
)
from driftline.processor.component import DataRefusedError
from driftline.processor.component.factories import PushExporterFactory
from driftline.processor.component.signals import SIGNAL_METRICS
from driftline.processor.component.tls import TlsConfig

_log = logging.getLogger(__name__)

TYPE = "prometheusremotewrite"
NAME_LABEL = "__name__"
MS_PER_NS = 1_000_000
HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}


@dataclass(slots=True)
class RemoteWriteExporterConfig:
    endpoint: str = ""  # e.g. http://127.0.0.1:9090/api/v1/write
    namespace: str = DEFAULT_NAMESPACE
    const_labels: dict[str, str] = field(default_factory=dict)
    metric_expiration: str | float = DEFAULT_METRIC_EXPIRATION
    add_ratio_suffix: bool = DEFAULT_ADD_RATIO_SUFFIX
    headers: dict[str, str] = field(default_factory=dict)
    tls: TlsConfig = field(default_factory=TlsConfig)
    timeout: str | float = DEFAULT_TIMEOUT
    retry_on_failure: RetryConfig = field(default_factory=RetryConfig)
    sending_queue: QueueConfig = field(default_factory=QueueConfig)

    def naming(self) -> PrometheusExporterConfig:
        """The pull exporter's settings that decide names, labels and expiry."""
        return PrometheusExporterConfig(namespace=self.namespace, const_labels=self.const_labels,
                                        metric_expiration=self.metric_expiration,
                                        add_ratio_suffix=self.add_ratio_suffix)

    def validate(self) -> list[str]:
        problems = []
        if not self.endpoint.startswith(("http://", "https://")):
            problems.append(f"endpoint: required, the remote write URL (e.g. "
                            f"http://prometheus:9090/api/v1/write), got {self.endpoint!r}")
        problems += [p for p in self.naming().validate() if not p.startswith("endpoint")]
        return problems + client_problems(self)


def write_request(samples: Sequence[Sample], now_ns: int) -> bytes:
    """The snappy-compressed ``WriteRequest`` of ``samples``, one series per sample; a sample
    without a time of its own (``target_info``) is stamped ``now_ns``."""
    request = write_request_class()()
    for sample in samples:
        series = request.timeseries.add()
        for name, value in sorted([(NAME_LABEL, sample.name), *sample.labels]):
            series.labels.add(name=name, value=value)
        time_ns = sample.time_unix_nano or now_ns
        series.samples.add(value=sample.value, timestamp=time_ns // MS_PER_NS)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


class RemoteWriteExporter(PushExporter):
    def __init__(self, name: str, config: RemoteWriteExporterConfig) -> None:
        super().__init__(name, config)
        self._config = config
        self._state = PrometheusSeries(config.naming())
        self._ssl = config.tls.ssl_context() if config.endpoint.startswith("https") else None
        self._unsent_lock = threading.Lock()
        # When the queue refused a request: the state clock at the start of its batch.
        self._unsent_since: float | None = None

    def consume_metrics(self, batch: Sequence[Any]) -> None:
        """Fold ``batch`` into the state, then queue the series it changed, with those of
        earlier batches whose request the full queue refused."""
        since = self._state.clock()
        self._state.consume_metrics(batch)
        with self._unsent_lock:
            if self._unsent_since is not None:
                since = min(since, self._unsent_since)
            samples = self._state.snapshot(seen_since_s=since)
            if not samples:
                return
            try:
                self._submit_item(Item(SIGNAL_METRICS, write_request(samples, time.time_ns()),
                                       len(samples)))
            except DataRefusedError as exc:
                if self._unsent_since is None:
                    _log.warning("%s: %s; the changed series go with the next batch",
                                 self._name, exc)
                self._unsent_since = since
                return
            self._unsent_since = None

    def _send_item(self, item: Item, timeout_s: float) -> None:
        post(self._config.endpoint, item.body, {**HEADERS, **self._config.headers}, timeout_s,
             self._ssl)


class Factory(PushExporterFactory):
    TYPE = TYPE
    CONFIG = RemoteWriteExporterConfig
    SIGNALS = (SIGNAL_METRICS,)
    COMPONENT = RemoteWriteExporter
