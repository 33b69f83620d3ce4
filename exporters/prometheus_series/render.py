"""The series' state as Prometheus text 0.0.4 or OpenMetrics 1.0 lines (``HELP``/``TYPE``
headers, ``_bucket``/``_sum``/``_count`` samples, exemplars), and as plain samples."""

from __future__ import annotations

from collections.abc import Mapping

from driftline.exporters.prometheus_series import text
from driftline.exporters.prometheus_series.points import (
    DROP_REASONS,
    KIND_COUNTER,
    Exemplar,
    Family,
    Histogram,
    LabelKey,
    Point,
    Sample,
    Scalar,
)

DROPPED_POINTS_METRIC = "driftline_exporter_prometheus_dropped_points_total"
DROPPED_POINTS_HELP = "OTLP data points received by the prometheus exporter but not exposed."


def family_header(name: str, kind: str, help_text: str, openmetrics: bool) -> list[str]:
    if openmetrics and kind == KIND_COUNTER and name.endswith(text.TOTAL_SUFFIX):
        name = name[: -len(text.TOTAL_SUFFIX)]
    header = [f"# HELP {name} {text.escape_help(help_text)}"] if help_text else []
    return [*header, f"# TYPE {name} {kind}"]


SampleRow = tuple[str, LabelKey, float, "Exemplar | None"]


def samples_of(name: str, key: LabelKey, point: Point) -> list[SampleRow]:
    """The samples of one series: (sample name, labels, value, exemplar); histograms and
    summaries give their ``_bucket``/quantile, ``_sum`` and ``_count`` samples."""
    if isinstance(point, Scalar):
        return [(name, key, point.value, point.exemplar)]
    if isinstance(point, Histogram):
        samples: list[SampleRow] = []
        cumulative = 0
        exemplars = point.exemplars or (None,) * (len(point.bounds) + 1)
        for bound, count, exemplar in zip(point.bounds, point.bucket_counts, exemplars,
                                          strict=False):
            cumulative += count
            samples.append((f"{name}_bucket", (*key, ("le", text.format_value(bound))),
                            cumulative, exemplar))
        samples.append((f"{name}_bucket", (*key, ("le", "+Inf")), point.count, exemplars[-1]))
        if point.sum is not None:
            samples.append((f"{name}_sum", key, point.sum, None))
        samples.append((f"{name}_count", key, point.count, None))
        return samples
    samples = [(name, (*key, ("quantile", text.format_value(q))), v, None)
               for q, v in point.quantiles]
    samples.append((f"{name}_sum", key, point.sum, None))
    samples.append((f"{name}_count", key, point.count, None))
    return samples


def sample_lines(name: str, key: LabelKey, point: Point, *, openmetrics: bool = False
                  ) -> list[str]:
    lines = []
    for sample, labels, value, exemplar in samples_of(name, key, point):
        line = f"{sample}{text.format_labels(labels)} {text.format_value(value)}"
        if openmetrics and exemplar is not None:
            line += (f" # {text.format_labels(exemplar.labels) or '{}'} "
                     f"{text.format_value(exemplar.value)} "
                     f"{exemplar.time_unix_nano / 1e9:.3f}")
        lines.append(line)
    return lines


def exposition_lines(families: Mapping[str, Family], dropped: Mapping[str, int], *,
                     openmetrics: bool = False) -> list[str]:
    """The exposition's lines: families sorted by name, then the dropped-points counter; in
    OpenMetrics 1.0, with exemplars, counters' TYPE names without ``_total``, and ``# EOF``."""
    lines: list[str] = []
    for name in sorted(families):
        family = families[name]
        lines += family_header(name, family.kind, family.help, openmetrics)
        for key in sorted(family.series):
            lines.extend(sample_lines(name, key, family.series[key], openmetrics=openmetrics))
    lines += family_header(DROPPED_POINTS_METRIC, KIND_COUNTER, DROPPED_POINTS_HELP,
                           openmetrics)
    for reason in DROP_REASONS:
        labels = text.format_labels([("reason", reason)])
        lines.append(f"{DROPPED_POINTS_METRIC}{labels} {dropped[reason]}")
    if openmetrics:
        lines.append("# EOF")
    return lines


def samples_since(families: Mapping[str, Family], seen_since_s: float) -> list[Sample]:
    """Every sample of the series updated at or after ``seen_since_s``."""
    samples = []
    for name, family in families.items():
        for key, point in family.series.items():
            if point.seen_s >= seen_since_s:
                samples += [Sample(sample, labels, float(value), point.time_unix_nano)
                            for sample, labels, value, _ in samples_of(name, key, point)]
    return samples
