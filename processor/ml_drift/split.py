"""Telling that a model's traffic was split across processors (sharding, docs/scale.md).

Behind the collector's ``loadbalancing`` exporter each model reaches one processor; while
replicas are added or removed, a model's points move to another one mid-window. The
processor that receives them then holds only part of the window, and must not judge it as
if it were whole.

What it can see: a cumulative stream it has never seen whose start time lies before the
window preceding its first point here, while this processor was already running at that
start. Every stream exports at least once per window (the export interval is at most the
window, which drift per window needs anyway), so such a stream exported earlier: to another
processor. Its first point here is only the base of the next delta (counting the whole
cumulative value would count again what the other processor counted), and the model's
window is marked split: it is not judged here, a WARNING names it and ``split_windows``
counts it. Delta streams carry no such evidence (a moved delta stream looks like a new
one), which is why the sharded deployment turns deltas into cumulative streams in front of
the load balancer (``deltatocumulative`` in
collector-config/otelcol/sharded-loadbalancer.yaml).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Hashable

_log = logging.getLogger(__name__)

# Split marks kept for windows this many windows behind the newest one marked; older ones
# are evaluated (or gone) already.
KEPT_WINDOWS = 8


class SplitDetector:
    """Marks (stream key, window index) pairs whose traffic partly went to another
    processor. Windowing marks them and evaluation takes them, each under this object's
    own lock."""

    def __init__(self, window_ns: int, component_start_ns: int) -> None:
        self._lock = threading.Lock()
        self._window_ns = window_ns
        self._start_ns = component_start_ns
        self._marked: set[tuple[Hashable, int]] = set()
        self.stats: Counter[str] = Counter()

    def moved(self, start_ns: int, time_ns: int) -> bool:
        """Whether the first point here of a cumulative stream (``start_ns``, ``time_ns``)
        shows that its earlier points went to another processor."""
        previous_window_start = (time_ns // self._window_ns - 1) * self._window_ns
        return self._start_ns <= start_ns < previous_window_start

    def mark(self, key: Hashable, model: str, time_ns: int, stream: str) -> None:
        """Count a moved stream of ``model``; its window at ``time_ns`` is not judged here."""
        index = time_ns // self._window_ns
        with self._lock:
            self.stats["split_streams"] += 1
            if (key, index) in self._marked:
                return
            self._marked = {(k, i) for k, i in self._marked if i > index - KEPT_WINDOWS}
            self._marked.add((key, index))
        _log.warning("ml_drift: model %s: window starting at %d ns is split across "
                     "processors and is not judged here (counted in split_windows): the "
                     "cumulative stream %s first reached this processor long after it "
                     "started, while this processor was running, so its earlier points "
                     "went to another one (a rebalance of the load balancer)",
                     model, index * self._window_ns, stream)

    def take(self, key: Hashable, index: int) -> bool:
        """Whether window ``index`` of ``key`` is split (then counted, and forgotten)."""
        with self._lock:
            if (key, index) not in self._marked:
                return False
            self._marked.discard((key, index))
            self.stats["split_windows"] += 1
            return True

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self.stats)
