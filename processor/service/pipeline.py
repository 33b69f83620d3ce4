"""The component graph of a loaded config: create, wire, start and stop in the right order.

As in the collector's ``service/internal/graph``: exporters are created first (shared by
every pipeline naming them), then each pipeline's processors back to front (one instance per
pipeline), then receivers, which fan out to the first processor of every pipeline they feed
(or straight to its exporters). Start goes against the data flow, shutdown with it, so no
component ever hands data to one that is not running. A processor whose config is a
``PipelineFeeder`` (``ml_drift``'s alerts, ``ml_performance``'s gauges) adds edges from its
pipeline to the pipelines it feeds; pipelines stop in the order of that graph. The
processor's own metrics (``self_telemetry``) start after every component and stop before any.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from driftline.processor.component import (
    ComponentError,
    Consumer,
    Host,
    HostAware,
    PartialRejection,
    PipelineFeeder,
    PipelineWatcher,
    Settings,
    consumer_of,
)
from driftline.processor.service.config import ComponentID, Config, PipelineID
from driftline.processor.service.registry import (
    KIND_EXPORTER,
    KIND_EXTENSION,
    KIND_PROCESSOR,
    KIND_RECEIVER,
    SIGNAL_LOGS,
    SIGNAL_METRICS,
    SIGNAL_TRACES,
    SIGNALS,
    Factories,
    default_factories,
)
from driftline.processor.service.self_telemetry import (
    SelfTelemetry,
    TelemetrySettings,
    stats_sources,
)

_log = logging.getLogger(__name__)


class FanOut:
    """Hands each batch to every consumer of its signal; consumers must not modify it.

    Every consumer gets the batch even when an earlier one raises. When none took it, the
    first error is re-raised (the sender retries: nobody has a copy). When some took it, a
    retry would give them a second copy: the others' refusals are logged and counted in
    ``dropped_batches`` instead, and a partial rejection is passed on.
    """

    def __init__(self, metrics: Sequence[Consumer] = (), traces: Sequence[Consumer] = (),
                 logs: Sequence[Consumer] = ()) -> None:
        self._consumers = {SIGNAL_METRICS: tuple(metrics), SIGNAL_TRACES: tuple(traces),
                           SIGNAL_LOGS: tuple(logs)}
        self.dropped_batches = 0

    @property
    def signals(self) -> tuple[str, ...]:
        return tuple(signal for signal, consumers in self._consumers.items() if consumers)

    def consume_metrics(self, batch: Sequence[Any]) -> None:
        self._fan(SIGNAL_METRICS, batch)

    def consume_traces(self, batch: Sequence[Any]) -> None:
        self._fan(SIGNAL_TRACES, batch)

    def consume_logs(self, batch: Sequence[Any]) -> None:
        self._fan(SIGNAL_LOGS, batch)

    def _fan(self, signal: str, batch: Sequence[Any]) -> None:
        consumers = self._consumers[signal]
        if not consumers:
            raise ComponentError(f"no pipeline consumes {signal} here")
        errors: list[Exception] = []
        partial: PartialRejection | None = None
        took = 0
        for consumer in consumers:
            try:
                consumer_of(signal, consumer)(batch)
                took += 1
            except PartialRejection as exc:  # it kept the rest
                took += 1
                partial = partial or exc
            except Exception as exc:
                errors.append(exc)
        if errors and not took:
            for exc in errors[1:]:
                _log.error("fan-out: another consumer also failed: %s", exc, exc_info=exc)
            raise errors[0]
        for exc in errors:
            self.dropped_batches += 1
            _log.error("fan-out: a consumer of %s refused a batch another one took (%s: %s); "
                       "it is dropped there, not handed back for a retry that would "
                       "duplicate it elsewhere", signal, type(exc).__name__, exc)
        if partial is not None:
            raise partial


@dataclass(frozen=True, slots=True)
class Node:
    """One created component and where it sits in the config."""

    kind: str
    id: ComponentID
    pipeline: PipelineID | None  # set for processors, which exist once per pipeline
    component: Any
    config: Any

    def __str__(self) -> str:
        where = f" in pipeline '{self.pipeline}'" if self.pipeline else ""
        return f"{self.kind} '{self.id}'{where}"


class Pipelines:
    """The running graph: ``start()`` then ``shutdown()``, each in dependency order.

    Extensions start first and stop last; every ``HostAware`` component gets the ``Host``
    (the extensions, the pipelines) before anything starts. The self-telemetry thread,
    unless ``telemetry.level`` is ``none``, starts last and stops first.
    """

    def __init__(self, exporters: list[Node], processors: list[list[Node]],
                 receivers: list[Node], extensions: list[Node] | None = None,
                 entries: dict[PipelineID, Any] | None = None,
                 telemetry: TelemetrySettings | None = None) -> None:
        self._exporters = exporters
        self._processors = processors  # per pipeline, in data-flow order
        self._receivers = receivers
        self._extensions = extensions or []
        self._started: list[Node] = []
        self._entries = dict(entries or {})
        self._telemetry_settings = telemetry or TelemetrySettings()
        self.self_telemetry: SelfTelemetry | None = None
        self.host = Host({str(node.id): node.component for node in self._extensions},
                         {str(pid): entry for pid, entry in (entries or {}).items()})

    def nodes(self) -> Iterator[Node]:
        """Every component in shutdown order: receivers, processors, exporters, extensions.

        Each pipeline's processors stop front to back, so what one flushes while stopping
        (a ``batch``'s held items) reaches the next while it still runs. A pipeline stops
        before the pipelines it feeds (``feed_order``), so what a processor sends while
        stopping still finds the other pipelines' processors and exporters running.
        """
        yield from self._receivers
        for chain in feed_order(self._processors, list(self._entries)):
            yield from chain
        yield from self._exporters
        yield from self._extensions

    def _start_order(self) -> list[Node]:
        order = list(self._extensions)
        order.extend(self._exporters)
        for chain in self._processors:
            order.extend(reversed(chain))
        order.extend(self._receivers)
        return order

    def start(self) -> None:
        """Start extensions, exporters, processors back to front, then receivers.

        If one fails, the ones already started are shut down again and a ``ComponentError``
        names the component that failed.
        """
        for node in self._start_order():
            if isinstance(node.component, HostAware):
                node.component.set_host(self.host)
        for node in self._start_order():
            try:
                node.component.start()
            except Exception as exc:
                # Failures here are logged; the start failure is the error to report.
                with contextlib.suppress(ComponentError):
                    self.shutdown()
                raise ComponentError(f"cannot start {node}: {exc}") from exc
            self._started.append(node)
        self._start_self_telemetry()
        self._tell_watchers(ready=True)

    def _tell_watchers(self, ready: bool) -> None:
        """``ready()`` once everything runs, ``not_ready()`` as shutdown begins, to every
        ``PipelineWatcher`` extension (``health_check``), as the collector does."""
        for node in self._extensions:
            watcher = node.component
            if isinstance(watcher, PipelineWatcher):
                try:
                    if ready:
                        watcher.ready()
                    else:
                        watcher.not_ready()
                except Exception as exc:
                    _log.error("extension %s failed in %s(): %s", node.id,
                               "ready" if ready else "not_ready", exc)

    def _start_self_telemetry(self) -> None:
        settings = self._telemetry_settings
        metrics_entries = [entry for pid, entry in self._entries.items()
                           if pid.signal == SIGNAL_METRICS]
        if not settings.enabled or not metrics_entries:
            return
        self.self_telemetry = SelfTelemetry(stats_sources(list(self.nodes())), metrics_entries,
                                            settings.interval_s, resource=settings.resource)
        self.self_telemetry.start()

    def shutdown(self) -> None:
        """Shut down what was started: receivers, processors front to back, exporters.

        Every component is shut down even if one fails; the first failure is raised after.
        """
        self._tell_watchers(ready=False)
        telemetry, self.self_telemetry = self.self_telemetry, None
        if telemetry is not None:
            telemetry.shutdown()
        started = {id(n) for n in self._started}
        first_error: ComponentError | None = None
        for node in self.nodes():
            if id(node) not in started:
                continue
            try:
                node.component.shutdown()
            except Exception as exc:
                _log.error("shutting down %s failed: %s", node, exc, exc_info=True)
                first_error = first_error or ComponentError(f"cannot shut down {node}: {exc}")
        self._started.clear()
        if first_error is not None:
            raise first_error


def fed_pipelines(config: Any, pipelines: Sequence[PipelineID]) -> list[PipelineID]:
    """The pipelines a processor with ``config`` feeds besides its own: none unless the
    config is a ``PipelineFeeder``; a signal's None means every pipeline of that signal."""
    if not isinstance(config, PipelineFeeder):
        return []
    fed: list[PipelineID] = []
    for signal, wanted in config.fed_pipelines().items():
        fed += [pid for pid in pipelines if pid.signal == signal
                and (wanted is None or str(pid) in wanted)]
    return fed


def feed_order(chains: Sequence[list[Node]], pipelines: Sequence[PipelineID]) -> list[list[Node]]:
    """``chains`` (one per pipeline, in config order) ordered so a pipeline comes before
    every pipeline its processors feed: a topological order of the feed edges, ties and
    cycles (two pipelines feeding each other) left in config order."""
    ids = [chain[0].pipeline if chain else None for chain in chains]
    feeds = {i: {ids.index(pid) for node in chain
                 for pid in fed_pipelines(node.config, pipelines) if pid in ids} - {i}
             for i, chain in enumerate(chains)}
    fed_by = {i: {j for j, targets in feeds.items() if i in targets} for i in feeds}
    order: list[int] = []
    while len(order) < len(chains):
        left = [i for i in feeds if i not in order]
        ready = [i for i in left if not (fed_by[i] - set(order))]
        order.append(ready[0] if ready else left[0])  # a cycle: config order breaks it
    return [chains[i] for i in order]


def _create(factories: Factories, kind: str, cid: ComponentID, config: Any,
            next_consumer: Consumer | None, telemetry: TelemetrySettings,
            pipeline: PipelineID | None = None) -> Node:
    factory = factories.of_kind(kind)[cid.type]
    where = f"{kind} '{cid}'" + (f" in pipeline '{pipeline}'" if pipeline else "")
    try:
        component = factory.create(config, next_consumer, Settings.of(kind, str(cid), telemetry))
    except Exception as exc:
        raise ComponentError(f"cannot create {where}: {exc}") from exc
    return Node(kind, cid, pipeline, component, config)


def _one_or_fan(signal: str, consumers: list[Any]) -> Any:
    if len(consumers) == 1:
        return consumers[0]
    return FanOut(**{signal: consumers})


def build(config: Config, factories: Factories | None = None,
          telemetry: TelemetrySettings | None = None) -> Pipelines:
    """Create every component used by a pipeline and wire them; nothing is started yet.

    Components configured but used by no pipeline are not created (as in the collector).
    ``telemetry`` replaces the config's ``service::telemetry::metrics`` (tests, embedding).
    """
    factories = default_factories() if factories is None else factories
    telemetry = telemetry or TelemetrySettings.of(config)
    extensions = [_create(factories, KIND_EXTENSION, cid, config.extensions[cid], None,
                          telemetry)
                  for cid in config.service_extensions]
    exporters: dict[ComponentID, Node] = {}
    for pipeline in config.pipelines.values():
        for cid in pipeline.exporters:
            if cid not in exporters:
                exporters[cid] = _create(factories, KIND_EXPORTER, cid, config.exporters[cid],
                                         None, telemetry)

    chains: list[list[Node]] = []
    entries: dict[PipelineID, Any] = {}
    for pid, pipeline in config.pipelines.items():
        next_consumer = _one_or_fan(pid.signal,
                                    [exporters[cid].component for cid in pipeline.exporters])
        chain: list[Node] = []
        for cid in reversed(pipeline.processors):
            node = _create(factories, KIND_PROCESSOR, cid, config.processors[cid],
                           next_consumer, telemetry, pid)
            chain.insert(0, node)
            next_consumer = node.component
        chains.append(chain)
        entries[pid] = next_consumer

    receivers: list[Node] = []
    receiver_ids = dict.fromkeys(cid for p in config.pipelines.values() for cid in p.receivers)
    for cid in receiver_ids:
        fed = {signal: [entries[pid] for pid, p in config.pipelines.items()
                        if pid.signal == signal and cid in p.receivers]
               for signal in SIGNALS}
        receivers.append(_create(factories, KIND_RECEIVER, cid, config.receivers[cid],
                                 FanOut(**fed), telemetry))
    return Pipelines(list(exporters.values()), chains, receivers, extensions, entries,
                     telemetry)
