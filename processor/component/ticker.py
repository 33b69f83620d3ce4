"""The background loop of the components that act on a clock (``ml_drift`` and
``ml_performance`` evaluate windows, ``memory_limiter`` measures memory): one daemon thread
calling ``tick`` every interval until the component shuts down."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

# How long shutdown waits for a tick in progress before leaving the daemon thread behind.
JOIN_TIMEOUT_S = 10.0


class Ticker:
    """Calls ``tick`` every ``interval_s`` from a daemon thread named ``name``.

    A tick that raises is logged on ``logger`` with ``failure`` and the next tick runs as
    usual: one bad window must not stop every later one. ``stop`` (an event the component
    may share, e.g. with a writer whose waits it cuts) is set by ``stop()``.
    """

    def __init__(self, name: str, interval_s: float, tick: Callable[[], None],
                 logger: logging.Logger, failure: str,
                 stop: threading.Event | None = None) -> None:
        self._name = name
        self._interval_s = interval_s
        self._tick = tick
        self._logger = logger
        self._failure = failure
        self._stop = stop or threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        """Stop ticking and wait up to ``timeout_s`` for a tick in progress. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._tick()
            except Exception:
                self._logger.exception(self._failure)
