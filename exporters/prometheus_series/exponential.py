"""Exponential histograms (feature and prediction distributions) exposed as classic ones.

Each series gets fixed bounds when it first appears: the reference profile's deciles when
``reference_profiles`` names the profiles' directory (the reference's own counts exposed
next to it as ``<name>_reference``), else powers of two (``classic_bins``). Points are
queued per series and folded into the bounds in one vectorised pass every ``fold_at``
points and before every scrape. A point finds its series through its attribute bytes
(``Routes``), without decoding its labels, since clients send the same series in the same
order request after request.

``ExponentialHistograms`` owns this state; it runs under the lock of the
``PrometheusSeries`` that owns it (the ``Ledger`` it admits series and counts drops in).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric

from driftline import semconv
from driftline.exphist import ExpHistogram
from driftline.exporters.prometheus_series import classic_bins, text
from driftline.exporters.prometheus_series.points import (
    KIND_HISTOGRAM,
    LABEL_CACHE_SIZE,
    REASON_EXPONENTIAL_HISTOGRAM,
    Exemplar,
    Family,
    Histogram,
    LabelKey,
    bucket_exemplars,
)
from driftline.processor.component import ComponentError
from driftline.processor.component.attribute_bytes import (
    AttributeKey,
    attribute_bytes,
    has_attribute_key,
)
from driftline.processor.component.ml_points import check_header, histogram_from_point
from driftline.profile import Profile, ProfileError, load_directory

# Exponential points wait in a queue per series and are folded in one vectorised pass this
# often (and before every scrape), so each costs an append, not a conversion. A fold's fixed
# cost is spread over this many points; a queued point holds its serialized buckets (tens of
# bytes for tens of buckets), so a full queue takes about 50 kB per series.
FOLD_EVERY_POINTS = 512
REFERENCE_HELP = "The reference profile's distribution on the same buckets"
_DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


@dataclass(slots=True)
class ExponentialSeries:
    """An exponential-histogram series exposed as a classic one: its fixed bounds, the counts
    folded so far and the points still queued (``classic_bins.PendingPoints``)."""

    name: str
    key: LabelKey
    bounds: tuple[float, ...]
    counts: np.ndarray
    pending: classic_bins.PendingPoints = field(default_factory=classic_bins.PendingPoints)
    count: int = 0
    sum: float | None = 0.0
    time_unix_nano: int = 0
    seen_s: float = 0.0
    exemplars: tuple[Exemplar | None, ...] = ()
    # The queue length at which this series folds: spread over the upper half of
    # FOLD_EVERY_POINTS by its labels' hash, so series fed at the same pace (all of one
    # app's) do not all fold in the same request.
    fold_at: int = FOLD_EVERY_POINTS

    def __post_init__(self) -> None:
        half = FOLD_EVERY_POINTS // 2
        self.fold_at = half + hash(self.key) % (half + 1)

    def restart(self) -> None:
        """Forget what was folded: a cumulative point replaces the state."""
        self.counts[:] = 0
        self.pending = classic_bins.PendingPoints()
        self.count = 0
        self.sum = 0.0

    @property
    def line_count(self) -> int:
        """Sample lines it takes exposed: its buckets, ``+Inf``, sum and count."""
        return len(self.bounds) + 3


# A point's attribute key (bytes and number of attributes) and its series.
Route = tuple[AttributeKey, ExponentialSeries]
RouteKey = tuple[str, LabelKey]  # a metric's name and the labels all its points share
_UNREADABLE = -1  # the attribute count of a route whose bytes could not be read: never matches


@dataclass(slots=True)
class Routes:
    """How the points of one metric (under the same base labels) find their series.

    ``by_attributes`` maps a point's attribute bytes (``attribute_bytes``) to its series.
    Clients send the same series in the same order request after request, so
    ``by_position`` keeps the last request's route at each position: whether a point has
    the attributes expected at its position is checked without walking its wire bytes
    (``has_attribute_key``).
    """

    by_attributes: dict[bytes, ExponentialSeries] = field(default_factory=dict)
    by_position: list[Route | None] = field(default_factory=list)


class Ledger(Protocol):
    """What the series' owner keeps for every series: families, labels, limits and drops."""

    def family(self, name: str, kind: str, help_text: str) -> Family | None: ...

    def exposed(self, name: str) -> Family | None: ...

    def labels(self, point: Any, base: Mapping[str, str]) -> LabelKey: ...

    def admit(self, key: LabelKey, lines: int) -> bool: ...

    def unadmit(self, key: LabelKey, lines: int) -> None: ...

    def drop(self, reason: str, count: int = 1) -> None: ...


class ExponentialHistograms:
    """The exponential-histogram series, their reference profiles and routes (see above)."""

    def __init__(self, ledger: Ledger, reference_profiles: str) -> None:
        self._ledger = ledger
        self._directory = reference_profiles
        self._profiles: Mapping[tuple[str, str], Profile] = {}
        self._series: dict[tuple[str, LabelKey], ExponentialSeries] = {}
        # Per (metric name, base labels): a point's attribute bytes to its series.
        self._routes: dict[RouteKey, Routes] = {}
        self._route_count = 0

    def load_reference_profiles(self) -> None:
        """Read ``reference_profiles`` (at start); a bad directory stops the exporter."""
        if not self._directory:
            return
        try:
            self._profiles = load_directory(self._directory)
        except (ProfileError, OSError) as exc:
            raise ComponentError(f"prometheus exporter: cannot load reference_profiles "
                                 f"{self._directory!r}: {exc}") from exc

    def _reference(self, metric: Metric, point: Any) -> ExpHistogram | None:
        attributes = {kv.key: text.attribute_value(kv.value) for kv in point.attributes}
        profile = self._profiles.get((attributes.get(semconv.ML_MODEL_NAME, ""),
                                      attributes.get(semconv.ML_MODEL_VERSION, "")))
        column = attributes.get(semconv.ML_FEATURE_NAME) or metric.name
        found = profile.columns.get(column) if profile is not None else None
        return found.histogram if found is not None else None

    def consume(self, metric: Metric, name: str, family: Family, base: Mapping[str, str],
                now: float) -> None:
        """Each point queued for its series' classic buckets; the queue is folded every
        ``fold_at`` points (at most ``FOLD_EVERY_POINTS``) and before every scrape.

        This is the exporter's hot loop: a point finds its series through ``Routes`` and
        each field is read once.
        """
        points = metric.exponential_histogram.data_points
        delta = metric.exponential_histogram.aggregation_temporality == _DELTA
        route_key = (name, tuple(base.items()))
        routes = self._routes.get(route_key) or Routes()
        expected = routes.by_position
        known = len(expected)
        order: list[Route | None] = []
        for position, point in enumerate(points):
            scale = point.scale
            try:
                check_header(point)
            except ValueError:  # beyond sane limits (ml_drift rejects it as partial success)
                self._ledger.drop(REASON_EXPONENTIAL_HISTOGRAM)
                order.append(None)
                continue
            route = expected[position] if position < known else None
            if route is None or not has_attribute_key(point, route[0]):
                route = self._route(routes, route_key, metric, name, base, point, now)
            order.append(route)
            if route is None:
                continue
            series = route[1]
            time_unix_nano = point.time_unix_nano
            if delta:
                if time_unix_nano > series.time_unix_nano:
                    series.time_unix_nano = time_unix_nano
            elif time_unix_nano < series.time_unix_nano:
                continue  # an older cumulative point arriving late
            else:  # cumulative: the newest point is the whole state
                series.restart()
                series.time_unix_nano = time_unix_nano
            negative = point.negative.SerializeToString() if point.HasField("negative") else b""
            queued = series.pending.add(scale, point.zero_count,
                                        point.positive.SerializeToString(), negative)
            series.count += point.count
            if series.sum is not None:
                series.sum = series.sum + point.sum if point.HasField("sum") else None
            series.seen_s = now
            if point.exemplars:
                series.exemplars = bucket_exemplars(series.bounds, point.exemplars,
                                                    family.series.get(series.key))
            if queued >= series.fold_at:
                self._fold(series)
        routes.by_position = order

    def _route(self, routes: Routes, route_key: RouteKey, metric: Metric, name: str,
               base: Mapping[str, str], point: Any, now: float) -> Route | None:
        """The route of a point not at its expected position: found by its attribute bytes,
        else by its labels (the series created if admitted; None if not)."""
        attributes = attribute_bytes(point)
        series = routes.by_attributes.get(attributes) if attributes is not None else None
        if series is None:
            key = self._ledger.labels(point, base)
            series = self._series.get((name, key))
            if series is None:
                lines = classic_bins.MAX_DEFAULT_BOUNDS + 3
                if not self._ledger.admit(key, lines):
                    return None
                try:
                    series = self._new_series(metric, name, key, point, now)
                except ValueError:  # counts past sane limits: never exportable, dropped
                    self._ledger.unadmit(key, lines)
                    self._ledger.drop(REASON_EXPONENTIAL_HISTOGRAM)
                    return None
                self._series[(name, key)] = series
            if attributes is not None:
                self._remember_route(routes, route_key, attributes, series)
        if attributes is None:
            return (b"", _UNREADABLE), series
        return (attributes, len(point.attributes)), series

    def _remember_route(self, routes: Routes, route_key: RouteKey, attributes: bytes,
                        series: ExponentialSeries) -> None:
        """Route ``attributes`` to ``series`` from now on.

        Bounded like the label cache: all routes are forgotten past ``LABEL_CACHE_SIZE``
        (attribute bytes that differ yet give the same labels could grow it without end).
        """
        if self._route_count >= LABEL_CACHE_SIZE:
            self._forget_routes()
            routes.by_attributes.clear()
        self._routes[route_key] = routes
        routes.by_attributes[attributes] = series
        self._route_count += 1

    def _forget_routes(self) -> None:
        self._routes = {}
        self._route_count = 0

    def _new_series(self, metric: Metric, name: str, key: LabelKey, point: Any,
                    now: float) -> ExponentialSeries:
        """A series' state, its bounds chosen from its profile or its first point."""
        reference = self._reference(metric, point)
        if reference is not None:
            bounds = classic_bins.reference_bounds(reference)
            self._expose_reference(f"{name}_reference", key, reference, bounds, now)
        else:
            bounds = classic_bins.default_bounds(histogram_from_point(point))
        return ExponentialSeries(name, key, bounds, np.zeros(len(bounds) + 1, dtype=np.int64))

    def _expose_reference(self, name: str, key: LabelKey, reference: ExpHistogram,
                          bounds: tuple[float, ...], now: float) -> None:
        family = self._ledger.family(name, KIND_HISTOGRAM, REFERENCE_HELP)
        if family is not None:
            family.series[key] = Histogram(bounds, classic_bins.bucket_counts(reference, bounds),
                                           reference.total, reference.sum, 0, now)

    def _fold(self, series: ExponentialSeries) -> None:
        if len(series.pending):
            series.counts += series.pending.fold(series.bounds)
        family = self._ledger.exposed(series.name)
        if family is not None:
            family.series[series.key] = Histogram(
                series.bounds, tuple(int(c) for c in series.counts), series.count, series.sum,
                series.time_unix_nano, series.seen_s, series.exemplars)

    def fold_all(self) -> None:
        """Fold every queued point into its series' family (before a scrape)."""
        for series in self._series.values():
            if len(series.pending):
                self._fold(series)

    def expire(self, families: Mapping[str, Family]) -> None:
        """Forget the series no longer in ``families`` (expired), and the routes to them."""
        kept = {(name, key): series for (name, key), series in self._series.items()
                if key in getattr(families.get(name), "series", {})}
        if len(kept) < len(self._series):
            self._forget_routes()  # they may lead to expired series
        self._series = kept

    def unexposed(self, families: Mapping[str, Family]) -> Iterator[ExponentialSeries]:
        """Series admitted but not in ``families`` yet (nothing folded): they count against
        the limits all the same."""
        for (name, key), series in self._series.items():
            if key not in getattr(families.get(name), "series", {}):
                yield series
