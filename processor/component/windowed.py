"""What the configs of the windowing processors (``ml_drift``, ``ml_performance``) share:
``window`` and ``grace`` kept as written in YAML and parsed on use."""

from __future__ import annotations

from driftline.durations import parse_duration


class WindowedConfig:
    """A mixin for a frozen dataclass with ``window`` and ``grace`` fields (durations as
    written: ``"60s"`` or seconds)."""

    __slots__ = ()
    window: str | float
    grace: str | float

    @property
    def window_s(self) -> float:
        return parse_duration(self.window)

    @property
    def grace_s(self) -> float:
        return parse_duration(self.grace)
