"""The chain every push exporter sends through: queue, then retry, then timeout, then send.

After the collector's ``exporterhelper``, with its keys and defaults: ``sending_queue``
(``enabled``, ``num_consumers``, ``queue_size``, ``storage``), ``retry_on_failure``
(``enabled``, ``initial_interval``, ``randomization_factor``, ``multiplier``,
``max_interval``, ``max_elapsed_time``) and ``timeout``. A full queue refuses new data with
``DataRefusedError`` (the sender sees RESOURCE_EXHAUSTED / 429 and retries), so nothing
is dropped silently. With ``storage`` naming a ``file_storage`` extension the queue lives
on disk: an item is written (and fsynced) before it is accepted and deleted only once sent
or rejected for good, so a crash loses nothing; an item sent just before a crash may be
sent again after the restart (at-least-once).

Shutdown stops retrying first (waits are interrupted), then gives each queued item one more
attempt; what still fails is counted as dropped, or stays on disk with a persistent queue.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftline.durations import non_negative_duration_problem, parse_duration
from driftline.processor.component import DataRefusedError, not_honoured

_log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = "5s"
DEFAULT_INITIAL_INTERVAL = "5s"
DEFAULT_RANDOMIZATION_FACTOR = 0.5
DEFAULT_MULTIPLIER = 1.5
DEFAULT_MAX_INTERVAL = "30s"
DEFAULT_MAX_ELAPSED_TIME = "300s"  # 0 retries for ever
DEFAULT_NUM_CONSUMERS = 10
DEFAULT_QUEUE_SIZE = 1000
# The collector's sending_queue::sizer values.
SIZER_REQUESTS = "requests"
SIZERS = (SIZER_REQUESTS, "items", "bytes")
JOIN_TIMEOUT_S = 10.0
_ITEM_SUFFIX = ".item"


@dataclass(slots=True)
class RetryConfig:
    """``retry_on_failure``: exponential backoff with jitter, up to ``max_elapsed_time``."""

    enabled: bool = True
    initial_interval: str | float = DEFAULT_INITIAL_INTERVAL
    randomization_factor: float = DEFAULT_RANDOMIZATION_FACTOR
    multiplier: float = DEFAULT_MULTIPLIER
    max_interval: str | float = DEFAULT_MAX_INTERVAL
    max_elapsed_time: str | float = DEFAULT_MAX_ELAPSED_TIME

    def validate(self) -> list[str]:
        problems = [p for p in (
            non_negative_duration_problem("initial_interval", self.initial_interval),
            non_negative_duration_problem("max_interval", self.max_interval),
            non_negative_duration_problem("max_elapsed_time", self.max_elapsed_time),
        ) if p]
        if not 0 <= self.randomization_factor <= 1:
            problems.append(f"randomization_factor: must be between 0 and 1, got "
                            f"{self.randomization_factor!r}")
        if self.multiplier < 1:
            problems.append(f"multiplier: must be at least 1, got {self.multiplier!r}")
        return problems


@dataclass(slots=True)
class QueueConfig:
    """``sending_queue``: ``queue_size`` requests waiting for ``num_consumers`` senders."""

    enabled: bool = True
    num_consumers: int = DEFAULT_NUM_CONSUMERS
    queue_size: int = DEFAULT_QUEUE_SIZE
    storage: str = ""  # a file_storage extension ID: the queue persists on disk
    # The collector's unit of queue_size; here the queue always counts requests.
    sizer: str = field(default=SIZER_REQUESTS, metadata=not_honoured(
        "queue_size counts requests here, whatever the sizer", honoured=(SIZER_REQUESTS,)))

    def validate(self) -> list[str]:
        problems = []
        if self.sizer not in SIZERS:
            problems.append(f"sizer: must be one of {', '.join(SIZERS)}, got {self.sizer!r}")
        if self.num_consumers < 1:
            problems.append(f"num_consumers: must be at least 1, got {self.num_consumers!r}")
        if self.queue_size < 1:
            problems.append(f"queue_size: must be at least 1, got {self.queue_size!r}")
        if self.storage and not self.enabled:
            problems.append(f"storage: {self.storage!r} needs the queue (enabled: true); "
                            "without it nothing would send what the storage holds")
        return problems


@dataclass(slots=True)
class SendingConfig:
    """The keys every push exporter's config embeds (as fields of the same names)."""

    timeout: str | float = DEFAULT_TIMEOUT
    retry_on_failure: RetryConfig = field(default_factory=RetryConfig)
    sending_queue: QueueConfig = field(default_factory=QueueConfig)

    def validate(self) -> list[str]:
        problems = [p for p in (non_negative_duration_problem("timeout", self.timeout),) if p]
        problems += [f"retry_on_failure::{p}" for p in self.retry_on_failure.validate()]
        problems += [f"sending_queue::{p}" for p in self.sending_queue.validate()]
        return problems


class SendError(Exception):
    """A failed attempt. ``retryable`` as the protocol says (gRPC code, HTTP status);
    ``retry_after_s`` is the server's own wait (gRPC RetryInfo, HTTP Retry-After)."""

    def __init__(self, message: str, *, retryable: bool, retry_after_s: float | None = None,
                 ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Item:
    """One request waiting to be sent: its signal, encoded body and how many points,
    spans or log records it holds."""

    signal: str
    body: bytes
    count: int


@dataclass(frozen=True, slots=True)
class SenderStats:
    queue_size: int = 0
    queue_capacity: int = 0
    sent_items: int = 0
    refused_items: int = 0
    dropped_items: int = 0
    retries: int = 0


class Backoff:
    """Waits between attempts: ``initial * multiplier**n`` capped at ``max_interval``, each
    randomised by ``randomization_factor`` either way (the collector's backoff)."""

    def __init__(self, config: RetryConfig, rng: random.Random | None = None) -> None:
        self._initial_s = parse_duration(config.initial_interval)
        self._max_s = parse_duration(config.max_interval)
        self._factor = config.randomization_factor
        self._multiplier = config.multiplier
        self._rng = rng or random.Random()
        self._next_s = self._initial_s

    def next_wait_s(self) -> float:
        wait = self._next_s
        self._next_s = min(self._next_s * self._multiplier, self._max_s)
        return wait * (1 + self._factor * (2 * self._rng.random() - 1))


class _DiskQueue:
    """Queued items as files in ``directory``, named in arrival order."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._sequence = max((_sequence_of(p) for p in self._files()), default=0)

    def _files(self) -> list[Path]:
        return sorted(self._directory.glob(f"*{_ITEM_SUFFIX}"))

    def load(self) -> list[tuple[Path, Item]]:
        """What a previous run left unsent, oldest first; unreadable files are skipped."""
        found = []
        for path in self._files():
            try:
                _, signal, count = path.stem.split("-")
                found.append((path, Item(signal, path.read_bytes(), int(count))))
            except (OSError, ValueError) as exc:
                _log.error("sending queue: skipping unreadable %s: %s", path, exc)
        return found

    def write(self, item: Item) -> Path:
        self._sequence += 1
        path = self._directory / f"{self._sequence:020d}-{item.signal}-{item.count}{_ITEM_SUFFIX}"
        temporary = path.with_suffix(".tmp")
        with open(temporary, "wb") as out:
            out.write(item.body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        return path


def _sequence_of(path: Path) -> int:
    """The arrival number in a queued file's name; 0 for a stray file (``load`` skips it)."""
    number = path.stem.split("-")[0]
    return int(number) if number.isdigit() else 0


class Sender:
    """Queue, retry and timeout around ``send(item, timeout_s)``, which raises ``SendError``.

    ``storage_directory`` makes the queue persistent. ``submit`` never blocks on the
    network; it raises ``DataRefusedError`` when the queue is full.
    """

    def __init__(self, name: str, send: Callable[[Item, float], None], config: SendingConfig,
                 storage_directory: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._send = send
        self._config = config
        self._timeout_s = parse_duration(config.timeout)
        self._max_elapsed_s = parse_duration(config.retry_on_failure.max_elapsed_time)
        self._clock = clock
        self._disk = _DiskQueue(storage_directory) if storage_directory else None
        self._queue: deque[tuple[Item, Path | None]] = deque()
        self._ready = threading.Condition()
        self._stopping = threading.Event()
        self._consumers: list[threading.Thread] = []
        self._counts = {"sent_items": 0, "refused_items": 0, "dropped_items": 0, "retries": 0}
        self._in_flight = 0

    def start(self) -> None:
        if self._disk is not None:
            for path, item in self._disk.load():
                self._queue.append((item, path))
        consumers = self._config.sending_queue.num_consumers
        if not self._config.sending_queue.enabled:
            return
        for n in range(consumers):
            thread = threading.Thread(target=self._consume, name=f"{self._name}-sender-{n}",
                                      daemon=True)
            thread.start()
            self._consumers.append(thread)

    def submit(self, item: Item) -> None:
        """Queue ``item`` (or, with the queue disabled, send it now with retries)."""
        if not self._config.sending_queue.enabled:
            if self._stopping.is_set():
                raise DataRefusedError(f"{self._name} is shutting down")
            self._deliver(item, None)
            return
        with self._ready:  # checked under the lock the consumers exit under: none is left
            if self._stopping.is_set():
                raise DataRefusedError(f"{self._name} is shutting down")
            if len(self._queue) + self._in_flight >= self._config.sending_queue.queue_size:
                self._counts["refused_items"] += item.count
                raise DataRefusedError(
                    f"{self._name}: sending queue is full ({self._config.sending_queue.queue_size}"
                    " requests); the backend is slow or down")
            path = self._disk.write(item) if self._disk is not None else None
            self._queue.append((item, path))
            self._ready.notify()

    def stats(self) -> SenderStats:
        with self._ready:
            return SenderStats(queue_size=len(self._queue) + self._in_flight,
                               queue_capacity=self._config.sending_queue.queue_size,
                               **self._counts)

    def _consume(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping.is_set():
                    self._ready.wait()
                if not self._queue:
                    return
                item, path = self._queue.popleft()
                self._in_flight += 1
            try:
                self._deliver(item, path)
            finally:
                with self._ready:
                    self._in_flight -= 1

    def _deliver(self, item: Item, path: Path | None) -> None:
        """Send with retries; the item's file goes once it is sent or rejected for good."""
        sent = self._attempts(item)
        # An item on disk that shutdown kept from being sent stays there for the next run.
        kept = path is not None and not sent and self._stopping.is_set()
        if path is not None and not kept:
            path.unlink(missing_ok=True)
        with self._ready:
            if sent:
                self._counts["sent_items"] += item.count
            elif not kept:
                self._counts["dropped_items"] += item.count

    def _attempts(self, item: Item) -> bool:
        retry = self._config.retry_on_failure
        backoff = Backoff(retry)
        deadline = self._clock() + self._max_elapsed_s if self._max_elapsed_s else None
        while True:
            try:
                self._send(item, self._timeout_s)
                return True
            except SendError as exc:
                if not exc.retryable or not retry.enabled or self._stopping.is_set():
                    _log.error("%s: dropping %d items: %s", self._name, item.count, exc)
                    return False
                wait_s = max(backoff.next_wait_s(), exc.retry_after_s or 0.0)
                if deadline is not None and self._clock() + wait_s > deadline:
                    _log.error("%s: dropping %d items after retrying for %.0f s: %s",
                               self._name, item.count, self._max_elapsed_s, exc)
                    return False
                with self._ready:
                    self._counts["retries"] += 1
                _log.warning("%s: %s; retrying in %.1f s", self._name, exc, wait_s)
                if self._stopping.wait(wait_s):
                    return self._last_attempt(item)

    def _last_attempt(self, item: Item) -> bool:
        try:
            self._send(item, self._timeout_s)
            return True
        except SendError as exc:
            _log.error("%s: shutting down, %d items not sent: %s", self._name, item.count, exc)
            return False

    def shutdown(self) -> None:
        """Stop retrying, give what is queued one attempt each, join the consumers (within
        JOIN_TIMEOUT_S in all); what is still queued then is counted as dropped (it stays
        on disk with a persistent queue)."""
        with self._ready:
            self._stopping.set()
            self._ready.notify_all()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for thread in self._consumers:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._consumers.clear()
        with self._ready:
            left = sum(item.count for item, _ in self._queue)
            self._queue.clear()  # a consumer still stuck in a send must not send them late
            if left:
                self._counts["dropped_items"] += left
                _log.error("%s: shutting down with %d items still queued", self._name, left)


def storage_directory(host: Any, storage: str, exporter_id: str, where: str) -> Path | None:
    """The directory a ``file_storage`` extension gives this exporter, or None."""
    if not storage:
        return None
    extension = host.extension(storage, where)
    return Path(extension.directory_for(exporter_id))
