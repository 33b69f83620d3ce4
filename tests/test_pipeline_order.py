"""The component graph's start and shutdown order, with components that record it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from driftline.processor.component import Host
from driftline.processor.service.config import parse_config
from driftline.processor.service.pipeline import build
from driftline.processor.service.registry import Factories

EVENTS: list[str] = []


@dataclass
class _Config:
    def validate(self) -> list[str]:
        return []


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


class _Feeder(_Component):
    """Feeds other pipelines, as ml_drift's alerts do: it defines set_host."""

    def set_host(self, host: Host) -> None:
        self.host = host


def _factory(kind: str, cls: type[_Component], signals: tuple[str, ...]) -> Any:
    class Factory:
        TYPE = kind
        CONFIG = _Config
        SIGNALS = signals

        def default_config(self) -> _Config:
            return _Config()

        def create(self, config: _Config, next_consumer: Any = None,
                   component_id: str = kind) -> _Component:
            return cls(component_id)

    return Factory()


def _run(processors: dict[str, list[str]]) -> list[str]:
    """Start and shut down pipelines with these processors (``feeder`` feeds others; the
    rest are plain), one receiver ``recv`` and one exporter ``out``; the events, in order."""
    both = ("metrics", "logs")
    names = sorted({name for chain in processors.values() for name in chain})
    factories = Factories.of(
        receivers=[_factory("recv", _Component, both)],
        processors=[_factory(n, _Feeder if n == "feeder" else _Component, both) for n in names],
        exporters=[_factory("out", _Component, both)])
    config = parse_config({
        "receivers": {"recv": None}, "processors": dict.fromkeys(names),
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
