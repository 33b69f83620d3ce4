"""The component graph's start and shutdown order, with components that record it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from driftline.processor.component import Host, Settings
from driftline.processor.service.config import parse_config
from driftline.processor.service.pipeline import build
from driftline.processor.service.registry import Factories

EVENTS: list[str] = []


@dataclass
class _Config:
    def validate(self) -> list[str]:
        return []


@dataclass
class _FeederConfig:
    """Declares the pipelines its component feeds, as ml_drift's ``alerts::pipelines``."""

    feeds: list[str] = field(default_factory=lambda: ["metrics", "logs"])

    def validate(self) -> list[str]:
        return []

    def fed_pipelines(self) -> dict[str, list[str] | None]:
        fed: dict[str, list[str] | None] = {}
        for pid in self.feeds:
            fed.setdefault(pid.split("/")[0], []).append(pid)  # type: ignore[union-attr]
        return fed


class _Component:
    def __init__(self, name: str) -> None:
        self.name = name

    def start(self) -> None:
        EVENTS.append(f"start {self.name}")

    def shutdown(self) -> None:
        EVENTS.append(f"stop {self.name}")

    def consume_metrics(self, batch: Any) -> None:
        """Nothing flows in this test."""

    consume_logs = consume_metrics


class _HostUser(_Component):
    """Reaches the Host (as a receiver does for its authenticator) but feeds no pipeline."""

    def set_host(self, host: Host) -> None:
        self.host = host


def _factory(kind: str, cls: type[_Component], signals: tuple[str, ...],
             config_type: type[Any] = _Config) -> Any:
    class Factory:
        TYPE = kind
        CONFIG = config_type
        SIGNALS = signals

        def default_config(self) -> Any:
            return config_type()

        def create(self, config: Any, next_consumer: Any = None,
                   settings: Settings | None = None) -> _Component:
            return cls(settings.id if settings else kind)

    return Factory()


def _run(processors: dict[str, list[str]],
         configs: dict[str, Any] | None = None) -> list[str]:
    """Start and shut down pipelines with these processors (``feeder*`` feed others, as
    their config says; ``host_user`` reaches the Host; the rest are plain), one receiver
    ``recv`` and one exporter ``out``; the events, in order."""
    both = ("metrics", "logs")
    names = sorted({name for chain in processors.values() for name in chain})

    def processor(name: str) -> Any:
        if name.startswith("feeder"):
            return _factory(name, _Component, both, _FeederConfig)
        return _factory(name, _HostUser if name == "host_user" else _Component, both)

    factories = Factories.of(
        receivers=[_factory("recv", _Component, both)],
        processors=[processor(n) for n in names],
        exporters=[_factory("out", _Component, both)])
    config = parse_config({
        "receivers": {"recv": None},
        "processors": {name: (configs or {}).get(name) for name in names},
        "exporters": {"out": None},
        "service": {"pipelines": {
            signal: {"receivers": ["recv"], "processors": chain, "exporters": ["out"]}
            for signal, chain in processors.items()},
            "telemetry": {"metrics": {"level": "none"}}},
    }, factories=factories)
    pipelines = build(config, factories)
    EVENTS.clear()
    pipelines.start()
    pipelines.shutdown()
    return list(EVENTS)


def test_feeders_stop_before_the_other_processors_of_every_pipeline() -> None:
    assert _run({"logs": ["plain"], "metrics": ["feeder"]}) == [
        "start out", "start plain", "start feeder", "start recv",
        "stop recv", "stop feeder", "stop plain", "stop out"]


def test_a_pipeline_stops_front_to_back_so_a_batch_flushes_into_a_running_feeder() -> None:
    """``[batch, ml_performance]``: the batch's held items, flushed while it stops, must
    reach the feeder behind it before that stops; the feeding pipeline stops first."""
    events = _run({"metrics": ["other"], "logs": ["plain", "feeder"]})
    stops = [event for event in events if event.startswith("stop")]
    assert stops == ["stop recv", "stop plain", "stop feeder", "stop other", "stop out"]


def test_a_processor_reaching_the_host_but_feeding_nothing_keeps_the_config_order() -> None:
    """The order comes from the pipeline graph, not from a component defining ``set_host``
    (which used to move its pipeline first)."""
    stops = [e for e in _run({"metrics": ["plain"], "logs": ["host_user"]})
             if e.startswith("stop")]
    assert stops == ["stop recv", "stop plain", "stop host_user", "stop out"]


def test_a_chain_of_feeding_pipelines_stops_in_feed_order() -> None:
    """``metrics/a`` feeds ``metrics/b``, which feeds ``logs``: whatever the config order,
    each stops before the one it feeds."""
    events = _run({"logs": ["plain"], "metrics/b": ["feeder_b"], "metrics/a": ["feeder_a"]},
                  {"feeder_b": {"feeds": ["logs"]}, "feeder_a": {"feeds": ["metrics/b"]}})
    stops = [e for e in events if e.startswith("stop")]
    assert stops == ["stop recv", "stop feeder_a", "stop feeder_b", "stop plain", "stop out"]
