"""The ``prometheus`` exporter's config (also the base of ``prometheusremotewrite``'s
series settings): its YAML keys, their defaults and their validation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from driftline.durations import parse_non_negative_duration
from driftline.processor.component.endpoints import MAX_PORT

TYPE = "prometheus"
DEFAULT_ENDPOINT = "127.0.0.1:9464"
DEFAULT_NAMESPACE = ""
# Series not updated for this long disappear from /metrics, as in the collector's exporter.
# It must exceed the processor's window, or drift gauges blink between windows.
DEFAULT_METRIC_EXPIRATION = "5m"
# Unit "1" on a gauge becomes "_ratio" only when enabled: Driftline's dimensionless gauges
# (ml.drift.score, ml.drift.detected) are scores and flags, and keep their plain names.
DEFAULT_ADD_RATIO_SUFFIX = False
OPENMETRICS_TYPE = "application/openmetrics-text"
DEFAULT_ENABLE_OPEN_METRICS = False
# Series exposed at most; beyond, points of new series are dropped and counted (reason
# "series_limit") until old series expire.
DEFAULT_MAX_SERIES = 50_000
# The exposition's size bound, estimated per series when it is admitted (its label bytes
# times its lines): a count alone let 300 series of 1 MB labels make a 300 MiB /metrics.
DEFAULT_MAX_EXPOSITION_BYTES = 64 * 1024 * 1024
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_RESERVED_LABEL_PREFIX = "__"


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as its parts; ``ValueError`` when it is not one."""
    host, sep, port_text = endpoint.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > MAX_PORT:
        raise ValueError(f"must be host:port, got {endpoint!r}")
    return host, int(port_text)


@dataclass(slots=True)
class PrometheusExporterConfig:
    """The YAML node of a ``prometheus`` exporter; field names are the keys."""

    endpoint: str = DEFAULT_ENDPOINT
    namespace: str = DEFAULT_NAMESPACE
    const_labels: dict[str, str] = field(default_factory=dict)
    metric_expiration: str | float = DEFAULT_METRIC_EXPIRATION
    add_ratio_suffix: bool = DEFAULT_ADD_RATIO_SUFFIX
    reference_profiles: str = ""  # a directory of profiles: feature histograms on their bins
    enable_open_metrics: bool = DEFAULT_ENABLE_OPEN_METRICS  # with exemplars, when asked
    max_series: int = DEFAULT_MAX_SERIES
    max_exposition_bytes: int = DEFAULT_MAX_EXPOSITION_BYTES

    def validate(self) -> list[str]:
        """Every problem as ``key: message``, relative to this exporter's node."""
        problems: list[str] = []
        if self.reference_profiles and not Path(self.reference_profiles).is_dir():
            problems.append(f"reference_profiles: {self.reference_profiles!r} is not a "
                            "directory of profiles")
        if not isinstance(self.endpoint, str):
            problems.append(f"endpoint: must be host:port, got {self.endpoint!r}")
        else:
            try:
                split_endpoint(self.endpoint)
            except ValueError as err:
                problems.append(f"endpoint: {err}")
        if not isinstance(self.namespace, str):
            problems.append(f"namespace: must be a string, got {self.namespace!r}")
        if not isinstance(self.const_labels, Mapping):
            problems.append(f"const_labels: must be a mapping, got {self.const_labels!r}")
        else:
            for name, value in self.const_labels.items():
                if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) or name.startswith(
                    _RESERVED_LABEL_PREFIX
                ):
                    problems.append(
                        f"const_labels::{name}: must be a label name matching "
                        f"[a-zA-Z_][a-zA-Z0-9_]* and not starting with '__'"
                    )
                if not isinstance(value, str | int | float) or isinstance(value, bool):
                    problems.append(f"const_labels::{name}: must be a string, got {value!r}")
        if not isinstance(self.max_series, int) or self.max_series < 1:
            problems.append(f"max_series: must be a positive integer, got {self.max_series!r}")
        if isinstance(self.max_exposition_bytes, bool) or not isinstance(
                self.max_exposition_bytes, int) or self.max_exposition_bytes < 1:
            problems.append(f"max_exposition_bytes: must be a positive integer, got "
                            f"{self.max_exposition_bytes!r}")
        if not isinstance(self.add_ratio_suffix, bool):
            problems.append(
                f"add_ratio_suffix: must be true or false, got {self.add_ratio_suffix!r}"
            )
        try:
            parse_non_negative_duration(self.metric_expiration)
        except ValueError as err:
            problems.append(f"metric_expiration: {err}")
        return problems
