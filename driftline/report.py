"""A self-contained HTML drift report: one file, inline CSS and SVG, no script, no URL.

It can be mailed, attached to a CI run or opened from disk anywhere. Per column it draws the
reference and current distributions over each other (numeric: densities on the histograms'
common grid; categorical: side-by-side bars of the top categories) beside the scores and the
verdict. Elements carry stable classes and ``data-*`` attributes so tests and scrapers can
read them.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass

import numpy as np

from driftline import exphist
from driftline.compare import ColumnResult, Comparison, p_value
from driftline.profile import KIND_NUMERIC, ColumnProfile, Profile

DEFAULT_TITLE = "Driftline drift report"
MAX_NUMERIC_BARS = 40
MAX_CATEGORIES = 20
# The plot spans these quantiles of both sides, so a few far outliers cannot squash it.
LOW_QUANTILE = 0.005
HIGH_QUANTILE = 0.995
CHART_WIDTH = 560
CHART_HEIGHT = 220
MARGIN_LEFT = 56
MARGIN_RIGHT = 12
MARGIN_TOP = 12
MARGIN_BOTTOM = 30
CATEGORY_ROW_HEIGHT = 22
CATEGORY_LABEL_WIDTH = 130
# Room right of the longest bar for its "51% → 27%" label.
CATEGORY_VALUE_WIDTH = 84
MAX_LABEL_CHARS = 22
REFERENCE_COLOR = "#4c72b0"
CURRENT_COLOR = "#dd8452"
SERIES = (("reference", REFERENCE_COLOR), ("current", CURRENT_COLOR))

_CSS = f"""
body {{ font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
  background: #f5f6f8; color: #1d2430; }}
header {{ background: #1d2430; color: #fff; padding: 18px 28px; }}
header h1 {{ margin: 0 0 6px; font-size: 22px; }}
header p {{ margin: 2px 0; color: #cfd5df; }}
main {{ padding: 18px 28px; display: grid; grid-template-columns: repeat(auto-fill,
  minmax(520px, 1fr)); gap: 16px; }}
.summary {{ grid-column: 1 / -1; background: #fff; border-radius: 8px; padding: 12px 16px;
  box-shadow: 0 1px 2px rgba(0,0,0,.08); }}
.summary table {{ border-collapse: collapse; width: 100%; }}
.summary th, .summary td {{ text-align: left; padding: 4px 10px;
  border-bottom: 1px solid #eceef2; }}
.summary td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
section.column {{ background: #fff; border-radius: 8px; padding: 12px 16px;
  box-shadow: 0 1px 2px rgba(0,0,0,.08); border-top: 4px solid #3a9d5d; }}
section.column[data-drifted="true"] {{ border-top-color: #c8413b; }}
section.column h2 {{ margin: 0; font-size: 17px; display: flex; align-items: center; gap: 8px; }}
.kind {{ color: #6b7585; font-weight: normal; font-size: 13px; }}
.verdict {{ display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px;
  font-weight: 600; text-transform: uppercase; letter-spacing: .03em; }}
.verdict.drifted {{ background: #fbe3e1; color: #a32f29; }}
.verdict.stable {{ background: #e0f3e6; color: #276b3f; }}
header .verdict {{ font-size: 14px; }}
dl.scores {{ display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px;
  margin: 8px 0; font-size: 13px; }}
dl.scores dt {{ color: #6b7585; }}
dl.scores dd {{ margin: 0; font-variant-numeric: tabular-nums; }}
.legend {{ font-size: 12px; color: #4a5260; margin: 4px 0; }}
.swatch {{ display: inline-block; width: 11px; height: 11px; border-radius: 2px;
  vertical-align: -1px; margin: 0 4px 0 10px; }}
.swatch.reference {{ background: {REFERENCE_COLOR}; }}
.swatch.current {{ background: {CURRENT_COLOR}; }}
svg.chart {{ width: 100%; height: auto; }}
svg.chart text {{ font-size: 11px; fill: #4a5260; }}
.skipped {{ grid-column: 1 / -1; color: #6b7585; }}
"""


# --- numbers --------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4g}"


def threshold_text(threshold: float, p: float | None) -> str:
    """A test's threshold is a significance level (drifted when p < it), a distance's a
    minimum score: say which, since both read "0.05"."""
    return f"p < {_fmt(threshold)}" if p is not None else _fmt(threshold)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


# --- numeric densities ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Densities:
    """Bars on a shared x grid: ``edges`` (n+1) and per side the density (share / width)."""

    edges: np.ndarray
    reference: np.ndarray
    current: np.ndarray


def _quantile(low: np.ndarray, high: np.ndarray, counts: np.ndarray, q: float) -> float:
    """Value below which ``q`` of the mass lies, values uniform within a bin."""
    total = counts.sum()
    cumulative = np.cumsum(counts) / total
    i = int(np.searchsorted(cumulative, q, side="left"))
    i = min(i, counts.size - 1)
    before = cumulative[i - 1] if i else 0.0
    inside = (q - before) / (cumulative[i] - before) if cumulative[i] > before else 0.0
    return float(low[i] + inside * (high[i] - low[i]))


def numeric_densities(reference: exphist.ExpHistogram, current: exphist.ExpHistogram,
                      max_bars: int = MAX_NUMERIC_BARS) -> Densities:
    """Both histograms on their common grid, clipped to the 0.5-99.5 % quantile range of
    either side and merged into at most ``max_bars`` bars; heights are share / width."""
    bins = exphist.common_bins([reference, current])
    lows, highs = [], []
    for row, hist in enumerate((reference, current)):
        low, high = exphist.clipped_edges(bins.low, bins.high, bins.counts[row],
                                          hist.min, hist.max)
        lows.append(low)
        highs.append(high)
    # One grid for both sides: the union of their narrowed edges.
    low = np.minimum(lows[0], lows[1])
    high = np.maximum(highs[0], highs[1])
    counts = bins.counts.astype(np.float64)
    start = min(_quantile(lows[r], highs[r], counts[r], LOW_QUANTILE)
                for r in range(2) if counts[r].sum())
    stop = max(_quantile(lows[r], highs[r], counts[r], HIGH_QUANTILE)
               for r in range(2) if counts[r].sum())
    if not stop > start:  # a constant column: one bar around the value
        pad = max(abs(start) * 0.05, 0.5)
        start, stop = start - pad, stop + pad
    # Mass of each bin inside [start, stop], values uniform within a bin (point masses whole).
    width = high - low
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = np.where(width > 0,
                          (np.clip(high, start, stop) - np.clip(low, start, stop)) / width,
                          ((low >= start) & (low <= stop)).astype(np.float64))
    inside = np.nan_to_num(inside)
    clipped = counts * inside[None, :]
    bin_low = np.clip(low, start, stop)
    bin_high = np.clip(high, start, stop)
    keep = inside > 0
    bin_low, bin_high, clipped = bin_low[keep], bin_high[keep], clipped[:, keep]
    edges, grouped = _merge_bars(bin_low, bin_high, clipped, (stop - start) / max_bars)
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    widths = np.maximum(np.diff(edges), (stop - start) * 1e-9)
    density = grouped / totals / widths[None, :]
    return Densities(edges, density[0], density[1])


def _merge_bars(low: np.ndarray, high: np.ndarray, counts: np.ndarray,
                min_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Join neighbouring bins left to right until each spans ``min_width`` (point masses and
    the fine bins near zero join their neighbours)."""
    if low.size == 0:
        return np.array([0.0, 1.0]), np.zeros((counts.shape[0], 1))
    edges = [float(low[0])]
    groups: list[np.ndarray] = []
    acc = np.zeros(counts.shape[0])
    for i in range(low.size):
        acc = acc + counts[:, i]
        if high[i] - edges[-1] >= min_width or i == low.size - 1:
            edges.append(float(max(high[i], edges[-1])))
            groups.append(acc)
            acc = np.zeros(counts.shape[0])
    if len(groups) > 1 and edges[-1] - edges[-2] < min_width / 2:
        groups[-2] = groups[-2] + groups.pop()  # a sliver at the end joins its neighbour
        edges.pop(-2)
    return np.array(edges), np.array(groups).T


# --- SVG --------------------------------------------------------------------------------------


def _axis_ticks(start: float, stop: float, count: int = 5) -> list[float]:
    return [start + (stop - start) * i / (count - 1) for i in range(count)]


def numeric_svg(column: str, densities: Densities) -> str:
    """Two translucent bar series over one x axis."""
    edges = densities.edges
    start, stop = float(edges[0]), float(edges[-1])
    top = float(max(densities.reference.max(initial=0), densities.current.max(initial=0)))
    top = top if top > 0 else 1.0
    plot_w = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    span = stop - start if stop > start else 1.0

    def x(value: float) -> float:
        return MARGIN_LEFT + (value - start) / span * plot_w

    def y(value: float) -> float:
        return MARGIN_TOP + plot_h - value / top * plot_h

    parts = [f'<svg class="chart numeric" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" '
             f'role="img" aria-label="{_esc(column)}: reference and current densities"'
             '>']
    base = MARGIN_TOP + plot_h
    parts.append(f'<line x1="{MARGIN_LEFT}" y1="{base}" x2="{MARGIN_LEFT + plot_w}" '
                 f'y2="{base}" stroke="#9aa3b0"/>')
    ticks = _axis_ticks(start, stop)
    for i, tick in enumerate(ticks):
        # The outer labels hang inwards so they are never cut at the edge.
        anchor = "start" if i == 0 else "end" if i == len(ticks) - 1 else "middle"
        parts.append(f'<text x="{x(tick):.1f}" y="{base + 16}" text-anchor="{anchor}">'
                     f'{_esc(_fmt(tick))}</text>')
    parts.append(f'<text x="{MARGIN_LEFT - 6}" y="{MARGIN_TOP + 10}" text-anchor="end">'
                 f'{_esc(_fmt(top))}</text>')
    parts.append(f'<text x="{MARGIN_LEFT - 6}" y="{base}" text-anchor="end">0</text>')
    parts.append(f'<text x="12" y="{MARGIN_TOP + plot_h / 2:.0f}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {MARGIN_TOP + plot_h / 2:.0f})">density</text>')
    for (name, color), heights in zip(SERIES, (densities.reference, densities.current),
                                      strict=True):
        parts.append(f'<g class="series {name}" data-series="{name}" fill="{color}" '
                     f'fill-opacity="0.55" stroke="{color}" stroke-width="0.8">')
        for i, height in enumerate(heights):
            if height <= 0:
                continue
            left, right = x(float(edges[i])), x(float(edges[i + 1]))
            parts.append(f'<rect class="bar" x="{left:.2f}" y="{y(float(height)):.2f}" '
                         f'width="{max(right - left, 0.5):.2f}" '
                         f'height="{base - y(float(height)):.2f}"><title>{name} '
                         f'{_esc(_fmt(float(edges[i])))} to {_esc(_fmt(float(edges[i + 1])))}: '
                         f'density {_esc(_fmt(float(height)))}</title></rect>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def category_shares(reference: ColumnProfile, current: ColumnProfile,
                    limit: int = MAX_CATEGORIES) -> list[tuple[str, float, float]]:
    """(category, reference share, current share) for the ``limit`` largest categories of
    either side, largest first."""
    ref, cur = reference.category_counts(), current.category_counts()
    ref_total = sum(ref.values()) or 1.0
    cur_total = sum(cur.values()) or 1.0
    rows = [(key, ref.get(key, 0) / ref_total, cur.get(key, 0) / cur_total)
            for key in set(ref) | set(cur)]
    rows.sort(key=lambda row: (-max(row[1], row[2]), row[0]))
    return rows[:limit]


def categorical_svg(column: str, shares: list[tuple[str, float, float]]) -> str:
    """Horizontal bars, reference and current side by side per category."""
    top = max((max(r, c) for _, r, c in shares), default=0.0) or 1.0
    height = MARGIN_TOP + len(shares) * CATEGORY_ROW_HEIGHT + MARGIN_BOTTOM
    plot_w = CHART_WIDTH - CATEGORY_LABEL_WIDTH - MARGIN_RIGHT - CATEGORY_VALUE_WIDTH
    bar_h = (CATEGORY_ROW_HEIGHT - 6) / 2
    parts = [f'<svg class="chart categorical" viewBox="0 0 {CHART_WIDTH} {height}" '
             f'role="img" aria-label="{_esc(column)}: reference and current shares"'
             '>']
    groups = {name: [f'<g class="series {name}" data-series="{name}" fill="{color}" '
                     f'fill-opacity="0.85">'] for name, color in SERIES}
    for i, (category, ref, cur) in enumerate(shares):
        row_y = MARGIN_TOP + i * CATEGORY_ROW_HEIGHT
        label = (category if len(category) <= MAX_LABEL_CHARS
                 else category[:MAX_LABEL_CHARS - 1] + "…")
        text_y = row_y + CATEGORY_ROW_HEIGHT / 2 + 3
        parts.append(f'<text x="{CATEGORY_LABEL_WIDTH - 6}" y="{text_y:.1f}" '
                     f'text-anchor="end"><title>{_esc(category)}</title>{_esc(label)}</text>')
        for j, ((name, _), share) in enumerate(zip(SERIES, (ref, cur), strict=True)):
            bar_y = row_y + 2 + j * bar_h
            width = share / top * plot_w
            groups[name].append(
                f'<rect class="bar" data-category="{_esc(category)}" '
                f'x="{CATEGORY_LABEL_WIDTH}" y="{bar_y:.1f}" width="{max(width, 0.5):.1f}" '
                f'height="{bar_h:.1f}"><title>{name} {_esc(category)}: {share:.1%}</title></rect>')
        parts.append(f'<text x="{CATEGORY_LABEL_WIDTH + max(ref, cur) / top * plot_w + 4:.1f}" '
                     f'y="{text_y:.1f}">'
                     f'{ref:.0%} → {cur:.0%}</text>')
    for name, _ in SERIES:
        parts.extend(groups[name])
        parts.append("</g>")
    parts.append(f'<text x="{CATEGORY_LABEL_WIDTH}" y="{height - 8}">share of rows</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- page -----------------------------------------------------------------------------------


def _badge(drifted: bool) -> str:
    word = "drifted" if drifted else "stable"
    return f'<span class="verdict {word}">{word}</span>'


def _missing_share(column: ColumnProfile) -> str:
    return f"{column.missing / column.count:.1%}" if column.count else "—"


def _column_section(result: ColumnResult, ref: ColumnProfile, cur: ColumnProfile) -> str:
    if result.kind == KIND_NUMERIC and ref.histogram is not None and cur.histogram is not None:
        chart = numeric_svg(result.column, numeric_densities(ref.histogram, cur.histogram))
    else:
        chart = categorical_svg(result.column, category_shares(ref, cur))
    rows = [("method", result.method), ("score", _fmt(result.score)),
            ("threshold", threshold_text(result.threshold, result.p_value))]
    if result.p_value is not None:
        rows.append(("p-value", _fmt(result.p_value)))
    for score in result.context:
        p = p_value(score)
        extra = f", p = {_fmt(p)}" if p is not None else ""
        rows.append((score.method, f"{_fmt(score.score)} (threshold "
                                   f"{threshold_text(score.threshold, p)}{extra}) — context"))
    rows.append(("missing", f"reference {_missing_share(ref)}, current {_missing_share(cur)}"))
    scores = "".join(f'<dt>{_esc(k)}</dt><dd class="{_esc(k)}">{_esc(v)}</dd>' for k, v in rows)
    drifted = "true" if result.drifted else "false"
    return (f'<section class="column" data-column="{_esc(result.column)}" '
            f'data-kind="{_esc(result.kind)}" data-role="{_esc(result.role)}" '
            f'data-drifted="{drifted}">'
            f'<h2><span class="name">{_esc(result.column)}</span>'
            f'<span class="kind">{_esc(result.kind)} · {_esc(result.role)}</span>'
            f'{_badge(result.drifted)}</h2>'
            f'<dl class="scores">{scores}</dl>'
            f'<div class="legend"><span class="swatch reference"></span>reference'
            f'<span class="swatch current"></span>current</div>'
            f'{chart}</section>')


def _summary(comparison: Comparison) -> str:
    ordered = sorted(comparison.columns, key=lambda r: (not r.drifted, r.column))
    rows = "".join(
        f'<tr data-column="{_esc(r.column)}"><td>{_esc(r.column)}</td><td>{_esc(r.kind)}</td>'
        f'<td>{_esc(r.method)}</td><td class="num">{_esc(_fmt(r.score))}</td>'
        f'<td class="num">{_esc(threshold_text(r.threshold, r.p_value))}</td>'
        f'<td class="num">{_esc(_fmt(r.p_value))}</td><td>{_badge(r.drifted)}</td></tr>'
        for r in ordered)
    return ('<div class="summary"><table><thead><tr><th>column</th><th>kind</th>'
            '<th>method</th><th>score</th><th>threshold</th><th>p-value</th><th>verdict</th>'
            f'</tr></thead><tbody>{rows}</tbody></table></div>')


def _performance(comparison: Comparison) -> str:
    """Estimated (with its band) and realised performance side by side, when known."""
    estimated = {e.metric: e for e in comparison.estimated_performance}
    realised = dict(comparison.realised_performance)
    metrics = list(dict.fromkeys([*estimated, *realised]))
    if not metrics:
        return ""
    rows = "".join(
        f'<tr data-metric="{_esc(m)}"><td>{_esc(m)}</td>'
        f'<td class="num">{_esc(_fmt(estimated[m].value) if m in estimated else "-")}</td>'
        f'<td class="num">{_esc(f"{_fmt(estimated[m].lower)} .. {_fmt(estimated[m].upper)}") if m in estimated else "-"}</td>'  # noqa: E501
        f'<td class="num">{_esc(_fmt(realised.get(m)))}</td></tr>' for m in metrics)
    return ('<div class="summary" id="performance"><h2>Performance of the current data</h2>'
            '<p>Estimated from the reference\'s calibration without labels (band: where the '
            'realised value falls with 95 % probability if the calibration holds); realised '
            'from the labels where the data has them.</p><table><thead><tr><th>metric</th>'
            '<th>estimated</th><th>band</th><th>realised</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></div>')


def _side(label: str, side: Profile, source: str | None) -> str:
    version = f" version {side.model_version}" if side.model_version else ""
    where = f"{source} (" if source else ""
    model = f"model {side.model_name}{version}, " if side.model_name else ""
    return f"{label}: {where}{model}{side.row_count:,} rows{')' if source else ''}"


def render_html(comparison: Comparison, reference: Profile, current: Profile,
                title: str = DEFAULT_TITLE, sources: tuple[str, str] | None = None) -> str:
    """The whole report as one HTML document (nothing external, no JavaScript).

    ``sources`` names where each side came from (file names) in the header.
    """
    ref_source, cur_source = sources or (None, None)
    features = comparison.features()
    drifted = sum(r.drifted for r in features)
    verdict = "Dataset drift detected" if comparison.dataset_drifted else "No dataset drift"
    sections = "".join(_column_section(r, reference.columns[r.column], current.columns[r.column])
                       for r in comparison.columns)
    skipped = ""
    if comparison.skipped:
        items = "".join(f"<li>{_esc(name)}: {_esc(reason)}</li>"
                        for name, reason in comparison.skipped)
        skipped = f'<div class="skipped">Not compared:<ul>{items}</ul></div>'
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    dataset = "true" if comparison.dataset_drifted else "false"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f'<header id="dataset" data-drifted="{dataset}" '
        f'data-drift-share="{comparison.drift_share:.6g}">'
        f"<h1>{_esc(title)}</h1>"
        f'<p class="dataset-verdict">{_badge(comparison.dataset_drifted)} {_esc(verdict)}: '
        f"{drifted} of {len(features)} features drifted (share {comparison.drift_share:.2f}, "
        f"threshold {comparison.share_threshold:.2f})</p>"
        f"<p>{_esc(_side('Reference', reference, ref_source))}<br>"
        f"{_esc(_side('Current', current, cur_source))}</p>"
        f"<p>Generated {_esc(created)} by driftline compare</p></header>"
        f"<main>{_performance(comparison)}{_summary(comparison)}{sections}{skipped}"
        "</main></body></html>\n"
    )
