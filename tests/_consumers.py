"""Next consumers for component tests: one that keeps what it gets, one that refuses once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from driftline.processor.component import DataRefusedError

ALL_SIGNALS = ("metrics", "traces", "logs")


class Recorder:
    """Keeps every batch it gets, per signal, or raises ``error``. It declares ``signals``:
    the services a receiver in front of it serves."""

    def __init__(self, signals: Sequence[str] = ALL_SIGNALS,
                 error: Exception | None = None) -> None:
        self.signals = tuple(signals)
        self.error = error
        self.metrics: list[list[Any]] = []
        self.traces: list[list[Any]] = []
        self.logs: list[list[Any]] = []

    def consume_metrics(self, batch: Sequence[Any]) -> None:
        self._keep(self.metrics, batch)

    def consume_traces(self, batch: Sequence[Any]) -> None:
        self._keep(self.traces, batch)

    def consume_logs(self, batch: Sequence[Any]) -> None:
        self._keep(self.logs, batch)

    def _keep(self, kept: list[list[Any]], batch: Sequence[Any]) -> None:
        if self.error is not None:
            raise self.error
        kept.append(list(batch))


class RefusesOnce(Recorder):
    """Refuses the first metrics batch as a full memory limiter would, then accepts."""

    refused = False

    def consume_metrics(self, batch: Sequence[Any]) -> None:
        if not self.refused:
            self.refused = True
            raise DataRefusedError("memory limit reached")
        super().consume_metrics(batch)
