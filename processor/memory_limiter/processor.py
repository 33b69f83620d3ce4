"""The ``memory_limiter`` processor: refuse data while the process uses too much memory.

After the OpenTelemetry Collector's ``memorylimiterprocessor``. Every ``check_interval`` a
thread measures the process; above the soft limit (``limit - spike``) every consume raises
``DataRefusedError``, which the receivers answer with gRPC ``RESOURCE_EXHAUSTED`` / HTTP 429
so senders retry later, and memory is handed back (``gc.collect()``, glibc ``malloc_trim``).
Below the soft limit again, data is accepted again.

What is measured: the resident set size (``/proc/self/statm``), not the Python heap. The
collector reads Go's heap (``runtime.MemStats``) because the Go runtime returns freed memory
to the OS; CPython's allocators keep freed arenas, so no heap figure tells how close the
process is to the OOM killer or a cgroup limit. RSS is what those act on.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from driftline.durations import parse_duration, positive_duration_problem
from driftline.processor.component import (
    ComponentError,
    Consumer,
    DataRefusedError,
    consumer_of,
)
from driftline.processor.component.factories import ProcessorFactory
from driftline.processor.component.signals import (
    SIGNAL_LOGS,
    SIGNAL_METRICS,
    SIGNAL_TRACES,
    item_count,
)
from driftline.processor.component.ticker import Ticker

_log = logging.getLogger(__name__)

TYPE = "memory_limiter"
DEFAULT_CHECK_INTERVAL = 0  # required: no default, as in the collector
DEFAULT_LIMIT_MIB = 0
DEFAULT_SPIKE_LIMIT_MIB = 0
DEFAULT_LIMIT_PERCENTAGE = 0
DEFAULT_SPIKE_LIMIT_PERCENTAGE = 0
# The spike allowance when none is configured: 20% of the limit, the collector's advice.
DEFAULT_SPIKE_FRACTION = 0.2
MIB = 1 << 20
PERCENT = 100

PROC_STATM = Path("/proc/self/statm")
PROC_MEMINFO = Path("/proc/meminfo")
CGROUP_V2_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")
CGROUP_V1_MEMORY_LIMIT = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
_KIB = 1024

_ITEM_NAMES = {SIGNAL_METRICS: "metric_points", SIGNAL_TRACES: "spans",
               SIGNAL_LOGS: "log_records"}


def _count_problem(key: str, value: object, upper: int | None = None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 \
            or (upper is not None and value > upper):
        bound = f" up to {upper}" if upper is not None else ""
        return f"{key}: must be an integer of 0 or more{bound}, got {value!r}"
    return None


@dataclass(frozen=True, slots=True)
class MemoryLimiterConfig:
    """The processor's YAML node; ``limit_mib`` wins over ``limit_percentage`` when both are set."""

    check_interval: str | float = DEFAULT_CHECK_INTERVAL
    limit_mib: int = DEFAULT_LIMIT_MIB
    spike_limit_mib: int = DEFAULT_SPIKE_LIMIT_MIB
    limit_percentage: int = DEFAULT_LIMIT_PERCENTAGE
    spike_limit_percentage: int = DEFAULT_SPIKE_LIMIT_PERCENTAGE

    @property
    def check_interval_s(self) -> float:
        return parse_duration(self.check_interval)

    def validate(self) -> list[str]:
        problems: list[str] = []
        if self.check_interval in (0, "0", "", None):
            problems.append("check_interval: required: how often to measure the memory "
                            "in use, e.g. 1s")
        elif (problem := positive_duration_problem("check_interval",
                                                   self.check_interval)) is not None:
            problems.append(problem)
        counts = [_count_problem("limit_mib", self.limit_mib),
                  _count_problem("spike_limit_mib", self.spike_limit_mib),
                  _count_problem("limit_percentage", self.limit_percentage, PERCENT),
                  _count_problem("spike_limit_percentage", self.spike_limit_percentage,
                                 PERCENT)]
        problems.extend(p for p in counts if p)
        if any(counts):
            return problems
        if self.limit_mib == 0 and self.limit_percentage == 0:
            problems.append("limit_mib: required: set limit_mib (MiB) or limit_percentage "
                            "(% of the memory available to the process)")
        elif self.limit_mib > 0:
            if self.spike_limit_mib >= self.limit_mib:
                problems.append(f"spike_limit_mib: must be less than limit_mib "
                                f"({self.limit_mib}), got {self.spike_limit_mib}")
        elif self.spike_limit_percentage >= self.limit_percentage:
            problems.append(f"spike_limit_percentage: must be less than limit_percentage "
                            f"({self.limit_percentage}), got {self.spike_limit_percentage}")
        return problems


@dataclass(frozen=True, slots=True)
class Limits:
    """The hard limit and the soft one (hard minus the spike allowance), in bytes."""

    hard_bytes: int
    soft_bytes: int


def limits_of(config: MemoryLimiterConfig, total_memory: Callable[[], int]) -> Limits:
    """The limits ``config`` sets; ``total_memory`` is only read for percentages."""
    if config.limit_mib > 0:
        hard = config.limit_mib * MIB
        spike = config.spike_limit_mib * MIB
    else:
        total = total_memory()
        hard = total * config.limit_percentage // PERCENT
        spike = total * config.spike_limit_percentage // PERCENT
    if spike == 0:
        spike = int(hard * DEFAULT_SPIKE_FRACTION)
    return Limits(hard, hard - spike)


def read_rss_bytes(statm: Path = PROC_STATM) -> int:
    """The process's resident set size: the second field of ``statm`` is in pages."""
    resident_pages = int(statm.read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _cgroup_limit_bytes() -> int | None:
    """The cgroup (v2, else v1) memory limit, or ``None`` when there is none."""
    for path in (CGROUP_V2_MEMORY_MAX, CGROUP_V1_MEMORY_LIMIT):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
        return None  # "max": no limit
    return None


def total_memory_bytes() -> int:
    """The memory the process may use: ``MemTotal``, or the cgroup limit when lower."""
    total = None
    for line in PROC_MEMINFO.read_text().splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * _KIB
            break
    if total is None:
        raise OSError(f"no MemTotal line in {PROC_MEMINFO}")
    cgroup = _cgroup_limit_bytes()
    return min(total, cgroup) if cgroup else total


def _malloc_trim() -> Callable[[], Any] | None:
    """glibc's ``malloc_trim(0)``, which returns freed heap pages to the OS, if available."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None  # not glibc (musl, macOS): gc.collect() alone must do
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


def release_memory() -> None:
    """Free unreachable objects and hand free heap pages back to the OS, so RSS drops."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim()


@dataclass(frozen=True, slots=True)
class MemoryLimiterStats:
    """Data refused and accepted per signal, and the last measurement against the limits."""

    refused_metric_points: int = 0
    refused_spans: int = 0
    refused_log_records: int = 0
    accepted_metric_points: int = 0
    accepted_spans: int = 0
    accepted_log_records: int = 0
    memory_checks: int = 0
    memory_check_failures: int = 0
    forced_collections: int = 0
    current_memory_bytes: int = 0
    soft_limit_bytes: int = 0
    hard_limit_bytes: int = 0
    current_refusing: int = 0  # 1 while data is refused


class MemoryLimiter:
    """Passes data on unchanged while memory is below the soft limit; refuses it above.

    ``read_memory`` and ``total_memory`` are the process's RSS and the memory it may use;
    unit tests pass their own to drive the state without allocating real memory.
    """

    def __init__(self, config: MemoryLimiterConfig, next_consumer: Consumer, *,
                 read_memory: Callable[[], int] = read_rss_bytes,
                 total_memory: Callable[[], int] = total_memory_bytes,
                 release: Callable[[], None] = release_memory) -> None:
        self._config = config
        self._interval_s = config.check_interval_s
        self._next = next_consumer
        self._read_memory = read_memory
        self._total_memory = total_memory
        self._release = release
        self._limits: Limits | None = None
        self._refusing = False
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(MemoryLimiterStats.__dataclass_fields__, 0)
        self._ticker = Ticker("driftline-memory-limiter", self._interval_s, self.check, _log,
                              "memory_limiter: the memory check failed; the next check runs "
                              "as usual")

    @property
    def limits(self) -> Limits | None:
        return self._limits

    def start(self) -> None:
        """Work out the limits, measure once, then measure every ``check_interval``."""
        if self._ticker.running:
            return
        try:
            limits = limits_of(self._config, self._total_memory)
        except (OSError, ValueError) as exc:
            raise ComponentError(f"memory_limiter: cannot read the total memory for "
                                 f"limit_percentage: {exc}; set limit_mib instead") from exc
        if limits.soft_bytes <= 0:
            raise ComponentError(f"memory_limiter: the soft limit ({limits.soft_bytes} bytes) "
                                 "must be above zero; raise limit_mib or limit_percentage")
        self._limits = limits
        with self._lock:
            self._counts["hard_limit_bytes"] = limits.hard_bytes
            self._counts["soft_limit_bytes"] = limits.soft_bytes
        _log.info("memory_limiter: soft limit %d MiB, hard limit %d MiB (resident memory, "
                  "checked every %ss)", limits.soft_bytes // MIB, limits.hard_bytes // MIB,
                  self._interval_s)
        self.check()
        self._ticker.start()

    def shutdown(self) -> None:
        """Stop measuring; data still arriving is passed on (receivers stop first)."""
        self._ticker.stop()

    def stats(self) -> MemoryLimiterStats:
        with self._lock:
            return MemoryLimiterStats(**self._counts)

    def check(self) -> None:
        """Measure once and switch between accepting and refusing; the thread calls this."""
        limits = self._limits
        if limits is None:
            return
        try:
            used = self._read_memory()
        except (OSError, ValueError, IndexError) as exc:
            with self._lock:
                self._counts["memory_check_failures"] += 1
            _log.error("memory_limiter: cannot measure memory, keeping the previous state: "
                       "%s", exc)
            return
        above = used > limits.soft_bytes
        if above:
            # Above the soft limit every check hands freed memory back, then decides from a
            # new reading (as the collector's limiter does after forcing a GC).
            self._release()
            with self._lock:
                self._counts["forced_collections"] += 1
            with contextlib.suppress(OSError, ValueError, IndexError):
                used = self._read_memory()
            above = used > limits.soft_bytes
        with self._lock:
            was = self._refusing
            self._refusing = above
            self._counts["memory_checks"] += 1
            self._counts["current_memory_bytes"] = used
            self._counts["current_refusing"] = int(above)
        if above and not was:
            _log.warning("memory_limiter: %d MiB in use is above the soft limit of %d MiB; "
                         "refusing data until it drops", used // MIB, limits.soft_bytes // MIB)
        elif was and not above:
            _log.info("memory_limiter: %d MiB in use is below the soft limit of %d MiB "
                      "again; accepting data", used // MIB, limits.soft_bytes // MIB)

    def consume_metrics(self, batch: Sequence[ResourceMetrics]) -> None:
        self._consume(SIGNAL_METRICS, batch)

    def consume_traces(self, batch: Sequence[ResourceSpans]) -> None:
        self._consume(SIGNAL_TRACES, batch)

    def consume_logs(self, batch: Sequence[ResourceLogs]) -> None:
        self._consume(SIGNAL_LOGS, batch)

    def _consume(self, signal: str, batch: Sequence[Any]) -> None:
        items = item_count(signal, batch)
        with self._lock:
            refusing = self._refusing
            outcome = "refused" if refusing else "accepted"
            self._counts[f"{outcome}_{_ITEM_NAMES[signal]}"] += items
            used = self._counts["current_memory_bytes"]
        if refusing:
            soft = self._limits.soft_bytes if self._limits else 0
            raise DataRefusedError(f"memory_limiter: {used // MIB} MiB in use is above the "
                                   f"soft limit of {soft // MIB} MiB; retry later")
        consumer_of(signal, self._next)(batch)


class Factory(ProcessorFactory):
    """``processors: {memory_limiter: {check_interval: 1s, limit_mib: 4000}}``."""

    TYPE = TYPE
    CONFIG = MemoryLimiterConfig
    SIGNALS = (SIGNAL_METRICS, SIGNAL_TRACES, SIGNAL_LOGS)
    COMPONENT = MemoryLimiter
