"""The ``batch`` processor: fewer, larger batches for the exporters, after the collector's.

Modeled on the OpenTelemetry Collector's ``processor/batchprocessor``. Incoming resources
are held per signal until ``send_batch_size`` items (metric data points, spans or log
records) are pending, or ``timeout`` has passed since the first of them arrived; then they
go to the next consumer as one batch, cut at ``send_batch_max_size`` items when that is set.
``shutdown`` refuses new data, sends everything pending and joins the timer thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from driftline.durations import non_negative_duration_problem, parse_duration
from driftline.processor.component import (
    ComponentError,
    Consumer,
    consumer_of,
    not_honoured,
)
from driftline.processor.component.factories import ProcessorFactory
from driftline.processor.component.signals import (
    ITEMS_FIELD,
    SCOPES_FIELD,
    SIGNAL_LOGS,
    SIGNAL_METRICS,
    SIGNAL_TRACES,
    item_count,
    points_of,
)

_log = logging.getLogger(__name__)

TYPE = "batch"
DEFAULT_TIMEOUT = "200ms"
DEFAULT_SEND_BATCH_SIZE = 8192
DEFAULT_SEND_BATCH_MAX_SIZE = 0  # no limit
JOIN_TIMEOUT_S = 10.0



def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """The processor's YAML node; ``timeout`` is kept as written and parsed on use."""

    timeout: str | float = DEFAULT_TIMEOUT
    send_batch_size: int = DEFAULT_SEND_BATCH_SIZE
    send_batch_max_size: int = DEFAULT_SEND_BATCH_MAX_SIZE
    # The collector batches per distinct value of these client-metadata keys; requests reach
    # Driftline's pipelines without client metadata, so there is one batch per signal.
    metadata_keys: tuple[str, ...] = field(default=(), metadata=not_honoured(
        "requests carry no client metadata here, so all go into one batch per signal",
        honoured=((),)))

    @property
    def timeout_s(self) -> float:
        return parse_duration(self.timeout)

    def validate(self) -> list[str]:
        problems: list[str] = []
        # 0 is allowed, as in the collector: every batch is sent at once (cut at the max).
        if (problem := non_negative_duration_problem("timeout", self.timeout)) is not None:
            problems.append(problem)
        size_ok = _is_count(self.send_batch_size) and self.send_batch_size >= 1
        if not size_ok:
            problems.append("send_batch_size: must be a positive number of items (data "
                            f"points, spans or log records), got {self.send_batch_size!r}")
        max_size = self.send_batch_max_size
        if not _is_count(max_size) or max_size < 0:
            problems.append("send_batch_max_size: must be 0 (no limit) or a positive number "
                            f"of items, got {max_size!r}")
        elif size_ok and 0 < max_size < self.send_batch_size:
            problems.append(f"send_batch_max_size: must be 0 (no limit) or at least "
                            f"send_batch_size ({self.send_batch_size}), got {max_size}")
        return problems


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What the processor did: batches sent by trigger, items sent and lost downstream."""

    size_trigger_sends: int = 0
    timeout_trigger_sends: int = 0
    shutdown_sends: int = 0
    items_sent: int = 0
    # Items of batches the next consumer raised on; each failure is also logged.
    items_failed: int = 0
    current_pending_items: int = 0


# --- counting and cutting OTLP resources ---------------------------------------------------


def _trim(signal: str, resource: Any, cut: int, head: bool) -> None:
    """Keep in ``resource`` (a copy) the items before ``cut`` (``head``) or from ``cut`` on.

    A container without items (an empty metric or scope) stays with the head when it sits
    at or before the cut, so every container ends up in exactly one of the two parts.
    """
    offset = 0
    scopes = getattr(resource, SCOPES_FIELD[signal])
    drop_scopes: list[int] = []
    for s, scope in enumerate(scopes):
        scope_start = offset
        if signal == SIGNAL_METRICS:
            drop_metrics: list[int] = []
            for m, metric in enumerate(scope.metrics):
                points = points_of(metric)
                kept, offset = _trim_leaf(points, offset, cut, head)
                if not kept:
                    drop_metrics.append(m)
            for m in reversed(drop_metrics):
                del scope.metrics[m]
            remaining = len(scope.metrics)
        else:
            kept, offset = _trim_leaf(getattr(scope, ITEMS_FIELD[signal]), offset, cut, head)
            remaining = int(kept)
        if remaining == 0 and (offset > scope_start or (scope_start <= cut) != head):
            drop_scopes.append(s)
    for s in reversed(drop_scopes):
        del scopes[s]


def _trim_leaf(items: Any, offset: int, cut: int, head: bool) -> tuple[bool, int]:
    """Trim one repeated field in place; (whether anything of it stays, the next offset)."""
    n = len(items)
    if n == 0:
        return (offset <= cut) == head, offset
    before = min(max(cut - offset, 0), n)  # items of this field before the cut
    if head:
        del items[before:]
        return before > 0, offset + n
    del items[:before]
    return n - before > 0, offset + n


def split(signal: str, batch: Sequence[Any], limit: int) -> tuple[list[Any], list[Any]]:
    """``batch`` cut after ``limit`` items: (the first ``limit`` items, the rest).

    Resources, scopes and metrics cut in two are copied, descriptors and attributes kept on
    both sides, as the collector's ``splitMetrics``/``splitTraces``/``splitLogs`` do.
    """
    head: list[Any] = []
    rest: list[Any] = []
    budget = limit
    for index, resource in enumerate(batch):
        if budget <= 0 and item_count(signal, [resource]) > 0:
            rest.extend(batch[index:])
            break
        n = item_count(signal, [resource])
        if n <= budget:
            head.append(resource)
            budget -= n
            continue
        first, second = type(resource)(), type(resource)()
        first.CopyFrom(resource)
        second.CopyFrom(resource)
        _trim(signal, first, budget, head=True)
        _trim(signal, second, budget, head=False)
        head.append(first)
        rest.append(second)
        rest.extend(batch[index + 1:])
        break
    return head, rest


# --- the processor ------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """What one signal holds: resources in arrival order, their item count, the deadline."""

    resources: list[Any]
    items: int = 0
    deadline: float | None = None  # monotonic seconds; set when the first resource arrives


class BatchProcessor:
    """One instance batches every signal of its pipeline, each separately.

    Sends happen in the calling thread (size trigger) or the timer thread (timeout), one at
    a time under ``_send_lock`` so batches leave in the order they were cut. A failing next
    consumer is logged and counted: the sender was already told its data was accepted.
    """

    def __init__(self, config: BatchConfig, next_consumer: Consumer,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout_s = config.timeout_s
        self._size = config.send_batch_size
        self._max_size = config.send_batch_max_size
        self._next = next_consumer
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._send_lock = threading.Lock()
        self._pending = {signal: _Pending([]) for signal in SCOPES_FIELD}
        self._counts = dict.fromkeys(BatchStats.__dataclass_fields__, 0)
        self._closed = False
        self._timer: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread that sends batches whose ``timeout`` has passed."""
        if self._timer is not None or self._timeout_s == 0:
            return
        self._timer = threading.Thread(target=self._run_timer, name="driftline-batch",
                                       daemon=True)
        self._timer.start()

    def shutdown(self) -> None:
        """Refuse new data, stop the timer, send everything pending. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
        if self._timer is not None:
            self._timer.join(JOIN_TIMEOUT_S)
            self._timer = None
        for signal in SCOPES_FIELD:
            self._send_due(signal, "shutdown_sends", everything=True)

    def stats(self) -> BatchStats:
        with self._lock:
            counts = dict(self._counts)
            counts["current_pending_items"] = sum(p.items for p in self._pending.values())
        return BatchStats(**counts)

    def consume_metrics(self, batch: Sequence[ResourceMetrics]) -> None:
        self._consume(SIGNAL_METRICS, batch)

    def consume_traces(self, batch: Sequence[ResourceSpans]) -> None:
        self._consume(SIGNAL_TRACES, batch)

    def consume_logs(self, batch: Sequence[ResourceLogs]) -> None:
        self._consume(SIGNAL_LOGS, batch)

    def _consume(self, signal: str, batch: Sequence[Any]) -> None:
        if not batch:
            return
        items = item_count(signal, batch)
        with self._lock:
            if self._closed:
                raise ComponentError("batch: the processor is shut down and accepts no more "
                                     "data")
            pending = self._pending[signal]
            if pending.deadline is None:
                pending.deadline = self._clock() + self._timeout_s
                self._wake.notify_all()
            pending.resources.extend(batch)
            pending.items += items
            full = self._timeout_s == 0 or pending.items >= self._size
        if full:
            self._send_due(signal, "size_trigger_sends",
                           everything=self._timeout_s == 0)

    def _take(self, signal: str, everything: bool) -> list[Any] | None:
        """Cut the next batch to send off ``signal``'s pending data, under ``_lock``."""
        pending = self._pending[signal]
        if not pending.resources:
            return None
        if not everything and pending.items < self._size:
            return None
        limit = self._max_size or pending.items
        if pending.items <= limit:
            batch, rest = pending.resources, []
        else:
            batch, rest = split(signal, pending.resources, limit)
        sent = min(limit, pending.items)
        pending.resources = rest
        pending.items -= sent
        pending.deadline = (self._clock() + self._timeout_s) if rest else None
        if rest:
            self._wake.notify_all()  # the timer may be waiting with no deadline at all
        return batch

    def _send_due(self, signal: str, trigger: str, everything: bool) -> None:
        """Send batches of ``signal`` while they are due: full ones, or all with ``everything``."""
        with self._send_lock:
            while True:
                with self._lock:
                    batch = self._take(signal, everything)
                if batch is None:
                    return
                self._send(signal, batch, trigger)

    def _send(self, signal: str, batch: list[Any], trigger: str) -> None:
        items = item_count(signal, batch)
        try:
            consumer_of(signal, self._next)(batch)
        except Exception as exc:
            with self._lock:
                self._counts["items_failed"] += items
            _log.error("batch: the next consumer failed on %d %s item(s), which are lost: %s",
                       items, signal, exc, exc_info=True)
            return
        with self._lock:
            self._counts[trigger] += 1
            self._counts["items_sent"] += items

    def _run_timer(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                deadlines = [p.deadline for p in self._pending.values()
                             if p.deadline is not None]
                now = self._clock()
                due = [s for s, p in self._pending.items()
                       if p.deadline is not None and p.deadline <= now]
                if not due:
                    self._wake.wait(min(deadlines) - now if deadlines else None)
                    continue
            for signal in due:
                self._send_due(signal, "timeout_trigger_sends", everything=True)


class Factory(ProcessorFactory):
    """``processors: {batch: {timeout: 200ms, send_batch_size: 8192, send_batch_max_size: 0}}``."""

    TYPE = TYPE
    CONFIG = BatchConfig
    SIGNALS = (SIGNAL_METRICS, SIGNAL_TRACES, SIGNAL_LOGS)
    COMPONENT = BatchProcessor
