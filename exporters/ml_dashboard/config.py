"""The YAML node of an ``ml_dashboard`` exporter (docs/dashboard.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from driftline.durations import (
    non_negative_duration_problem,
    parse_duration,
    positive_duration_problem,
)
from driftline.processor.component.auth import AuthConfig
from driftline.processor.component.endpoints import endpoint_problem

TYPE = "ml_dashboard"
DEFAULT_ENDPOINT = "127.0.0.1:8050"
DEFAULT_WINDOW_S = 60.0  # as ml_drift's default: the app's own metrics are windowed alike
DEFAULT_GRACE_S = 5.0
DEFAULT_RETENTION_S = 30 * 24 * 3600.0
DEFAULT_MAX_MEGABYTES = 1024
DEFAULT_STALE_AFTER_S = 600.0
DEFAULT_FLUSH_INTERVAL_S = 1.0
DEFAULT_PROFILE_RELOAD_S = 10.0
# A history file smaller than this cannot hold one day of a single model.
MIN_MAX_MEGABYTES = 1


@dataclass(slots=True)
class HistoryConfig:
    """``history``: where the closed windows are kept and for how long."""

    path: str = ""  # "" keeps the history in memory only (lost at restart)
    retention: str | float = DEFAULT_RETENTION_S
    max_megabytes: int = DEFAULT_MAX_MEGABYTES

    def validate(self) -> list[str]:
        problems = []
        if not isinstance(self.path, str):
            problems.append(f"path: must be a file path, got {self.path!r}")
        elif self.path and Path(self.path).is_dir():
            problems.append(f"path: {self.path!r} is a directory; name a file such as "
                            "./state/dashboard.sqlite")
        problem = positive_duration_problem("retention", self.retention)
        if problem:
            problems.append(problem)
        if (not isinstance(self.max_megabytes, int) or isinstance(self.max_megabytes, bool)
                or self.max_megabytes < MIN_MAX_MEGABYTES):
            problems.append(f"max_megabytes: must be an integer of at least "
                            f"{MIN_MAX_MEGABYTES}, got {self.max_megabytes!r}")
        return problems

    @property
    def retention_s(self) -> float:
        return parse_duration(self.retention)


@dataclass(slots=True)
class MlDashboardConfig:
    """``exporters: {ml_dashboard: {...}}``: a metrics exporter placed after ``ml_drift`` (and
    receiving ``ml_performance``'s gauges) that keeps each closed window and serves the page."""

    endpoint: str = DEFAULT_ENDPOINT
    # Windows of the app's own metrics (distributions, class mix, latency): set it to
    # ml_drift's window so a drift verdict and its distributions describe the same rows.
    window: str | float = DEFAULT_WINDOW_S
    grace: str | float = DEFAULT_GRACE_S
    history: HistoryConfig | None = None
    # A directory of reference profiles: the "reference" side of distributions and class mix.
    # Optional and re-read every 10 s: a missing directory only leaves that side empty (the
    # processors that need profiles say so themselves).
    reference_profiles: str = ""
    # A model whose app sent nothing for this long is listed as having stopped sending.
    stale_after: str | float = DEFAULT_STALE_AFTER_S
    auth: AuthConfig | None = None

    def validate(self) -> list[str]:
        problems = []
        problem = endpoint_problem("endpoint", self.endpoint)
        if problem:
            problems.append(problem)
        for key, value in (("window", self.window), ("stale_after", self.stale_after)):
            problem = positive_duration_problem(key, value)
            if problem:
                problems.append(problem)
        problem = non_negative_duration_problem("grace", self.grace)
        if problem:
            problems.append(problem)
        if self.history is not None:
            problems.extend(f"history::{p}" for p in self.history.validate())
        if not isinstance(self.reference_profiles, str):
            problems.append(f"reference_profiles: must be a directory, got "
                            f"{self.reference_profiles!r}")
        if self.auth is not None:
            problems.extend(f"auth::{p}" for p in self.auth.validate())
        return problems
