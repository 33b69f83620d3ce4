"""The component model every pipeline part follows, after the OpenTelemetry Collector's.

Data moves between components as OTLP protobuf messages (``ResourceMetrics``,
``ResourceSpans``, ``ResourceLogs``), the processor's equivalent of the collector's pdata. A
factory turns a config dataclass, which its ``create`` validates, and the ``Settings`` the
service hands it (ID, logger, telemetry) into a component wired to the next consumer of its
pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from driftline.processor.component.settings import Settings, TelemetrySettings
from driftline.processor.component.signals import SIGNAL_LOGS, SIGNAL_METRICS, SIGNAL_TRACES

__all__ = [
    "NOT_HONOURED",
    "AuthenticationError",
    "Component",
    "ComponentConfig",
    "ComponentError",
    "Consumer",
    "DataRefusedError",
    "Factory",
    "Host",
    "HostAware",
    "LogsConsumer",
    "MetricsConsumer",
    "PartialRejection",
    "PipelineFeeder",
    "PipelineWatcher",
    "ServerAuthenticator",
    "Settings",
    "TelemetrySettings",
    "TracesConsumer",
    "consumer_of",
    "not_honoured",
    "require_next",
    "validated",
]


class Component(Protocol):
    def start(self) -> None:
        """Begin work (bind sockets, start threads). Raise ``ComponentError`` on failure."""

    def shutdown(self) -> None:
        """Stop accepting, drain what was accepted, join threads. Idempotent."""


@runtime_checkable
class MetricsConsumer(Protocol):
    def consume_metrics(self, batch: Sequence[ResourceMetrics]) -> None: ...


@runtime_checkable
class TracesConsumer(Protocol):
    def consume_traces(self, batch: Sequence[ResourceSpans]) -> None: ...


@runtime_checkable
class LogsConsumer(Protocol):
    def consume_logs(self, batch: Sequence[ResourceLogs]) -> None: ...


Consumer = MetricsConsumer | TracesConsumer | LogsConsumer


def consumer_of(signal: str, consumer: Consumer) -> Callable[[Sequence[Any]], None]:
    """The method of ``consumer`` that takes batches of ``signal``: named in code, as the
    protocols above declare it, so a consumer is never looked up by a method-name string."""
    if signal == SIGNAL_METRICS:
        return consumer.consume_metrics
    if signal == SIGNAL_TRACES:
        return consumer.consume_traces
    if signal == SIGNAL_LOGS:
        return consumer.consume_logs
    raise ValueError(f"unknown signal {signal!r}; one of metrics, traces, logs")


@dataclass(frozen=True, slots=True)
class Host:
    """What the running service offers its components (the collector's ``component.Host``):
    the started extensions by their ID text (``bearertokenauth/clients``). A component that
    needs it is ``HostAware``: ``set_host(host)`` is called before anything starts."""

    extensions: Mapping[str, Any] = field(default_factory=dict)
    # The first consumer of each pipeline by its ID text (``logs``, ``metrics/drift``), so a
    # component can feed another pipeline (ml_drift's alerts into the logs pipelines).
    pipelines: Mapping[str, Any] = field(default_factory=dict)

    def pipelines_for(self, signal: str, wanted: list[str] | None, where: str) -> list[Any]:
        """The first consumers of the pipelines ``wanted`` (IDs), or of every pipeline of
        ``signal`` when None; ``where`` (a YAML path) goes into the error for a missing ID."""
        of_signal = sorted(p for p in self.pipelines if p.split("/")[0] == signal)
        if wanted is None:
            return [self.pipelines[p] for p in of_signal]
        missing = [p for p in wanted if p not in self.pipelines]
        if missing:
            raise ComponentError(f"{where}: {', '.join(missing)} not in service::pipelines "
                                 f"({signal} pipelines: {', '.join(of_signal) or 'none'})")
        return [self.pipelines[p] for p in wanted]

    def extension(self, name: str, where: str) -> Any:
        """The extension ``name``; ``where`` (a YAML path) goes into the error if missing."""
        try:
            return self.extensions[name]
        except KeyError:
            known = ", ".join(sorted(self.extensions)) or "none"
            raise ComponentError(f"{where}: extension '{name}' is not enabled in "
                                 f"service::extensions (enabled: {known})") from None


@runtime_checkable
class HostAware(Protocol):
    """A component that reaches extensions or other pipelines through the ``Host``."""

    def set_host(self, host: Host) -> None: ...


class ComponentConfig(Protocol):
    def validate(self) -> list[str]:
        """Problems as ``"key::sub_key: message"`` relative to the component's own YAML node."""


@runtime_checkable
class PipelineFeeder(Protocol):
    """A config whose component sends into other pipelines (``ml_drift``'s alerts into the
    logs pipelines): the service adds these edges to the pipeline graph, which orders
    shutdown (a pipeline stops before the pipelines it feeds)."""

    def fed_pipelines(self) -> Mapping[str, Sequence[str] | None]:
        """Pipeline IDs fed, per signal; None for every pipeline of that signal."""


class Factory(Protocol):
    TYPE: str
    CONFIG: type[Any]  # a dataclass; YAML keys are its field names, nested dataclasses nest

    def default_config(self) -> Any: ...

    def create(self, config: Any, next_consumer: Consumer | None,
               settings: Settings | None = None) -> Component:
        """A new, unstarted component; ``validated(config, settings)`` first, always."""


def validated(config: ComponentConfig, settings: Settings) -> Any:
    """``config`` if its ``validate()`` finds no problem, else ``ComponentError`` listing
    them: every ``create()`` calls it, so a component never runs on a config the loader
    would have refused (tests and embedders build configs in code)."""
    problems = config.validate()
    if problems:
        raise ComponentError(f"{settings.id}: invalid config: " + "; ".join(problems))
    return config


def require_next(next_consumer: Consumer | None, settings: Settings) -> Consumer:
    """The next consumer of a processor or receiver; ``ComponentError`` if there is none."""
    if next_consumer is None:
        raise ComponentError(f"{settings.id}: needs a next consumer (an exporter or processor)")
    return next_consumer


class ComponentError(RuntimeError):
    """A component could not start or run; the message says which and what to do."""


class DataRefusedError(ComponentError):
    """A component refused data it could take later (the memory limit is reached): senders
    get gRPC ``RESOURCE_EXHAUSTED`` / HTTP 429 and retry; nothing was accepted."""


class PartialRejection(ComponentError):
    """A consumer kept part of a batch and rejected ``rejected`` items (data points, spans or
    log records) for good, e.g. points it cannot use. Receivers answer success with OTLP's
    ``partial_success`` (the count and ``message``), so senders do not retry them."""

    def __init__(self, rejected: int, message: str) -> None:
        super().__init__(message)
        self.rejected = rejected
        self.message = message


class AuthenticationError(ComponentError):
    """A request's credentials are missing or wrong: gRPC ``UNAUTHENTICATED`` / HTTP 401."""


@runtime_checkable
class ServerAuthenticator(Protocol):
    """An extension that checks the credentials of a receiver's requests (the collector's
    ``extensionauth.Server``); receivers name it under ``auth::authenticator``."""

    def authenticate(self, headers: Mapping[str, str]) -> None:
        """Return if ``headers`` (names in lower case) carry valid credentials, else raise
        ``AuthenticationError`` saying what is missing, never the expected secret."""


@runtime_checkable
class PipelineWatcher(Protocol):
    """An extension told when the service is up (every component started) and when it is
    about to stop (the collector's ``extension.PipelineWatcher``), e.g. ``health_check``."""

    def ready(self) -> None: ...

    def not_ready(self) -> None: ...


# Field metadata of a config setting the collector has and Driftline accepts without acting on
# it: the loader logs a warning naming the key when a YAML file writes it.
NOT_HONOURED = "driftline.not_honoured"


def not_honoured(reason: str, *, honoured: tuple[Any, ...] = ()) -> dict[str, Any]:
    """Field metadata for a collector setting accepted so configs copy across, but unused:
    ``field(default=..., metadata=not_honoured(...))``.

    ``reason`` ends the warning (what Driftline does instead); values in ``honoured`` (e.g.
    the one behaviour Driftline has) are written without a warning.
    """
    return {NOT_HONOURED: (reason, honoured)}
