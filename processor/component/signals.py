"""The three OTLP signals and how their items are counted: what every component and the
service share about the data (the collector's ``pipeline.Signal`` and pdata counts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SIGNAL_METRICS = "metrics"
SIGNAL_TRACES = "traces"
SIGNAL_LOGS = "logs"
SIGNALS = (SIGNAL_METRICS, SIGNAL_TRACES, SIGNAL_LOGS)
DEFAULT_SIGNALS = (SIGNAL_METRICS,)

# The field of a resource holding its scopes, and of a scope holding its items (metrics
# hold theirs one level down, in each metric's data points).
SCOPES_FIELD = {SIGNAL_METRICS: "scope_metrics", SIGNAL_TRACES: "scope_spans",
                SIGNAL_LOGS: "scope_logs"}
ITEMS_FIELD = {SIGNAL_TRACES: "spans", SIGNAL_LOGS: "log_records"}


def points_of(metric: Any) -> Any:
    """The repeated data points of ``metric``, whatever its type; ``()`` if it has none."""
    kind = metric.WhichOneof("data")
    return getattr(metric, kind).data_points if kind else ()


def _leaves(signal: str, scope: Any) -> list[Any]:
    """The repeated fields holding the items of ``scope`` (one per metric for metrics)."""
    if signal == SIGNAL_METRICS:
        return [points_of(metric) for metric in scope.metrics]
    return [getattr(scope, ITEMS_FIELD[signal])]


def item_count(signal: str, batch: Sequence[Any]) -> int:
    """Data points (metrics), spans (traces) or log records (logs) in ``batch``."""
    return sum(len(leaf) for resource in batch
               for scope in getattr(resource, SCOPES_FIELD[signal])
               for leaf in _leaves(signal, scope))
