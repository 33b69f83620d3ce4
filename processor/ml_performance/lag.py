"""The label lag of a window: how long after its end its latest labels were joined."""

from __future__ import annotations

from driftline import semconv
from driftline.processor.component.otlp_build import WindowGauges

NS_PER_S = 1_000_000_000


def add_label_lag(gauges: WindowGauges, end_ns: int, now_ns: int) -> None:
    """``ml.performance.labels.lag``: seconds from the window's end to ``now_ns``, the
    evaluation that joined its latest labels (a window is evaluated again each time labels
    join it, after ``grace``, so the value includes up to a grace and a tick; labels that
    came within the window count 0 plus those). Lets a dashboard show how late labels come
    without storing an arrival time per prediction."""
    gauges.add(semconv.ML_PERFORMANCE_LABELS_LAG, semconv.UNIT_SECONDS,
               max(0, now_ns - end_ns) / NS_PER_S)
