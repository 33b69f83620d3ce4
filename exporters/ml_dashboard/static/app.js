// Driftline's built-in dashboard: plain JavaScript, no build step. The state lives in the URL
// fragment (#view=model&model=churn&tab=drift&range=3600), so a link shows what its sender saw.
// Every number comes from the processor's JSON API (/api/models, /api/windows,
// /api/distributions); charts are uPlot (vendored), bars are SVG drawn here.
"use strict";

const PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
  "#8c8c8c", "#ccb974", "#64b5cd"];
const TABS = ["drift", "distributions", "performance", "predictions", "service"];
// ml_drift estimates these of a binary model's positive class.
const POSITIVE_CLASS_METRICS = ["precision", "recall", "f1"];
const PERFORMANCE = ["accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse", "r2"];
const DEFAULT_RANGE_S = 3600;
// The parts of each window a tab draws (/api/windows?parts=).
const TAB_PARTS = { drift: "drift", distributions: "predictions,service",
  performance: "performance,estimated", predictions: "predictions", service: "service" };
const TOKEN_KEY = "driftline.dashboard.token";
const charts = [];

// --- state in the URL ------------------------------------------------------------------------
function state() {
  const params = new URLSearchParams(location.hash.slice(1));
  return Object.fromEntries(params.entries());
}

function link(changes, base) {
  const params = new URLSearchParams(Object.entries(Object.assign({}, base || state(), changes))
    .filter(([, v]) => v !== undefined && v !== null && v !== ""));
  return "#" + params.toString();
}

function go(changes) { location.hash = link(changes); }

function range(s) {
  const now = Date.now() / 1000;
  if (s.range === "custom" && s.from && s.to) return [Number(s.from), Number(s.to)];
  const span = Number(s.range) || DEFAULT_RANGE_S;
  return [now - span, now];
}

// --- API -------------------------------------------------------------------------------------
async function api(path, params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined
    && v !== null && v !== "")).toString();
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch("/api/" + path + (query ? "?" + query : ""), { headers });
  const body = await response.json();
  if (response.status === 401) {
    // A token sent and refused is said so, and forgotten: the page shows no data until a
    // token the processor accepts is typed.
    sessionStorage.removeItem(TOKEN_KEY);
    await askToken(token ? "The processor refused this token (401: " +
      (body.error || response.statusText) + "). Type the token of its bearertokenauth." : "");
    return api(path, params);
  }
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function askToken(message) {
  const refused = document.getElementById("login-error");
  refused.textContent = message || "";
  refused.hidden = !message;
  return new Promise((resolve) => {
    const dialog = document.getElementById("login");
    const form = document.getElementById("login-form");
    form.onsubmit = () => {
      sessionStorage.setItem(TOKEN_KEY, document.getElementById("login-token").value.trim());
      resolve();
    };
    if (!dialog.open) dialog.showModal();
  });
}

// --- formatting ------------------------------------------------------------------------------
function fmt(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return value.toLocaleString("en");
  const d = digits || 4;
  return Math.abs(value) >= 1e4 || Math.abs(value) < 1e-3 && value !== 0
    ? value.toExponential(2) : Number(value.toPrecision(d)).toString();
}

function pct(value) { return value === null || value === undefined ? "–" : (100 * value).toFixed(0) + " %"; }

function when(seconds) {
  if (!seconds) return "–";
  return new Date(seconds * 1000).toLocaleString("en-GB", { hour12: false });
}

function ago(seconds, now) {
  if (!seconds) return "never";
  const s = Math.max(0, Math.round(now - seconds));
  if (s < 120) return s + " s ago";
  if (s < 7200) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " days ago";
}

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function badge(kind, text) { return el("span", { class: "badge " + kind, text }); }

function verdictBadge(window) {
  if (!window || window.dataset_drifted === null || window.dataset_drifted === undefined) {
    return badge("none", "no verdict");
  }
  return window.dataset_drifted ? badge("drift", "dataset drift") : badge("ok", "no drift");
}

function card(title, ...children) {
  return el("section", { class: "card" }, el("h2", { text: title }), ...children);
}

// --- charts ----------------------------------------------------------------------------------
function chart(container, title, x, series, options) {
  const opts = options || {};
  const box = el("div", { class: "chart", "data-chart": title });
  container.append(box);
  const width = Math.max(260, box.clientWidth || container.clientWidth || 600);
  const plot = new uPlot({
    width, height: opts.height || 220,
    scales: { x: { time: true }, y: opts.y || {} },
    legend: { show: opts.legend !== false },
    cursor: { show: opts.cursor !== false },
    axes: opts.axes || [{}, { size: 56 }],
    bands: opts.bands || [],
    // "values" is a uPlot series option (a legend formatter): the data goes apart.
    series: [{}, ...series.map(({ values, ...s }, i) => Object.assign({
      stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false,
      value: (u, v) => fmt(v) }, s))],
  }, [x, ...series.map((s) => s.values)], box);
  charts.push([plot, box, opts.height || 220]);
  return plot;
}

window.addEventListener("resize", () => {
  for (const [plot, box, height] of charts) {
    if (box.isConnected) plot.setSize({ width: Math.max(260, box.clientWidth), height });
  }
});

function destroyCharts() {
  while (charts.length) charts.pop()[0].destroy();
}

// A long range has more windows than the chart has pixels: each run of windows becomes one
// point holding its highest value (a drifted window still shows), so a day of one-minute
// windows draws in milliseconds instead of a second.
const MAX_POINTS = 300;

function thinned(x, series) {
  if (x.length <= MAX_POINTS) return [x, series];
  const step = Math.ceil(x.length / MAX_POINTS);
  const runs = [];
  for (let i = 0; i < x.length; i += step) runs.push(i);
  const highest = (values, i) => {
    let best = null;
    for (let j = i; j < Math.min(i + step, values.length); j++) {
      if (values[j] !== null && values[j] !== undefined && (best === null || values[j] > best)) best = values[j];
    }
    return best;
  };
  return [runs.map((i) => x[i]),
    series.map((s) => Object.assign({}, s, { values: runs.map((i) => highest(s.values, i)) }))];
}

// Bars as SVG: groups of (label, [values]) with one colour per series; values are drawn to
// the largest one, each bar's title gives its exact value.
function bars(groups, seriesNames, colours, options) {
  const opts = options || {};
  const width = 640, height = opts.height || 220, left = 44, bottom = 46, top = 8;
  const maxValue = Math.max(1e-12, ...groups.flatMap(([, values]) => values.filter((v) => v !== null)));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", "100%");
  svg.setAttribute("style", "max-width:760px");
  svg.setAttribute("role", "img");
  const node = (tag, attributes, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attributes)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const plotWidth = width - left - 8, plotHeight = height - bottom - top;
  const slot = plotWidth / Math.max(1, groups.length);
  const barWidth = opts.overlap ? slot : slot * 0.8 / seriesNames.length;
  for (let t = 0; t <= 4; t++) {
    const y = top + plotHeight - plotHeight * t / 4;
    svg.append(node("line", { x1: left, x2: width - 8, y1: y, y2: y, stroke: "#e5e7eb" }));
    svg.append(node("text", { x: left - 4, y: y + 4, "text-anchor": "end" }, fmt(maxValue * t / 4, 2)));
  }
  groups.forEach(([label, values], i) => {
    values.forEach((value, s) => {
      if (value === null) return;
      const h = plotHeight * value / maxValue;
      const x = left + i * slot + (opts.overlap ? 0 : slot * 0.1 + s * barWidth);
      const rect = node("rect", { x, y: top + plotHeight - h, width: Math.max(1, barWidth - 1),
        height: h, fill: colours[s], "fill-opacity": opts.overlap ? 0.55 : 0.85,
        "data-series": seriesNames[s] });
      rect.append(node("title", {}, `${label} · ${seriesNames[s]}: ${fmt(value)}`));
      svg.append(rect);
    });
    const every = Math.ceil(groups.length / (opts.labels || 12));
    if (i % every === 0) {
      const text = node("text", { x: left + i * slot + slot / 2, y: height - bottom + 14,
        "text-anchor": "middle" }, String(label).slice(0, 12));
      svg.append(text);
    }
  });
  const legend = el("div", { class: "muted" }, seriesNames.flatMap((name, s) =>
    [el("span", { class: "legend-key", style: `background:${colours[s]}` }), name]));
  return el("div", {}, svg, legend);
}

// The dataset share as one SVG polyline (50 models: 50 charts would cost
// more than the whole table).
function sparkline(points, from, to) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 160 32");
  svg.setAttribute("width", "160");
  svg.setAttribute("height", "32");
  svg.setAttribute("data-points", String(points.length));
  const line = document.createElementNS(ns, "polyline");
  // From the first window to the last in the range: a model that sent for a minute of the
  // day still shows its trend.
  const t0 = points.length ? points[0][0] : from;
  const t1 = points.length > 1 ? points[points.length - 1][0] : to;
  line.setAttribute("points", points.map(([t, share]) =>
    `${(160 * (t - t0) / (t1 - t0 || 1)).toFixed(1)},${(30 - 28 * share).toFixed(1)}`).join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#c0392b");
  line.setAttribute("stroke-width", "1.5");
  const title = document.createElementNS(ns, "title");
  title.textContent = "share of drifted features over the time range";
  svg.append(title, line);
  return svg;
}

// --- overview --------------------------------------------------------------------------------
async function overview(main, s) {
  const [from, to] = range(s);
  const data = await api("models", { from, to });
  document.getElementById("crumbs").replaceChildren("Overview");
  if (!data.models.length) {
    main.append(card("No models yet", el("p", { class: "muted",
      text: "Send predictions from an instrumented app (import driftline.auto); each model " +
        "appears here after its first closed window." })));
    return;
  }
  const table = el("table", { id: "models" }, el("thead", {}, el("tr", {},
    ["model", "version", "operation", "verdict", "drifted features", "rows (last window)",
      "last evaluation", "dataset share"].map((h, i) => el("th", {
        class: [4, 5].includes(i) ? "num" : (i === 2 ? "hide-narrow" : null), text: h })))));
  const body = el("tbody");
  table.append(body);
  const stale = [];
  for (const model of data.models) {
    const last = model.last_window;
    const target = { view: "model", model: model.name, version: model.version,
      op: model.operation, tab: "drift", range: s.range, from: s.from, to: s.to };
    const trend = el("div", { class: "trend" }, sparkline(model.trend, from, to));
    const row = el("tr", { "data-model": model.name, "data-version": model.version,
      "data-operation": model.operation, "data-share": last ? last.share : "" },
      el("td", {}, el("a", { href: link(target, {}) , text: model.name }),
        model.stale ? [" ", badge("stale", "stopped sending")] : null),
      el("td", { text: model.version || "–" }),
      el("td", { class: "hide-narrow", text: model.operation || "–" }),
      el("td", {}, verdictBadge(last)),
      el("td", { class: "num", text: last && last.features !== null
        ? `${last.drifted}/${last.features} (${pct(last.share)})` : "–" }),
      el("td", { class: "num", text: last ? fmt(last.rows) : "–" }),
      el("td", { title: last ? when(last.evaluated) : "", text: last ? ago(last.evaluated, data.now) : "–" }),
      el("td", {}, trend));
    body.append(row);
    if (model.stale) stale.push(model);
  }
  main.append(card(`Models (${data.models.length})`, table));
  main.append(card("Stopped sending", stale.length
    ? el("ul", { id: "stale" }, stale.map((m) => el("li", { "data-model": m.name },
      `${m.name} ${m.version} (${m.operation || "–"}): last data ${ago(m.last_seen, data.now)}`)))
    : el("p", { class: "muted", id: "stale", text: `Every model sent data within the last ` +
      `${Math.round(data.stale_after_s / 60)} min.` })));
}

// --- one model -------------------------------------------------------------------------------
async function model(main, s) {
  const [from, to] = range(s);
  const tab = TABS.includes(s.tab) ? s.tab : "drift";
  const base = { view: "model", model: s.model, version: s.version, op: s.op, range: s.range,
    from: s.from, to: s.to };
  document.getElementById("crumbs").replaceChildren(
    el("a", { href: link({ view: "overview", range: s.range, from: s.from, to: s.to }, {}), text: "Overview" }),
    ` / ${s.model} ${s.version || ""} ${s.op ? "(" + s.op + ")" : ""}`);
  main.append(el("nav", { class: "tabs" }, TABS.map((t) => el("a", {
    href: link(Object.assign({}, base, { tab: t }), {}), class: t === tab ? "active" : null,
    "data-tab": t, text: t[0].toUpperCase() + t.slice(1) }))));
  // Every method's scores come for one window only (the drift table's): a day of them for
  // 30 features is megabytes.
  const data = await api("windows", { model: s.model, version: s.version || "",
    operation: s.op || "", from, to, parts: TAB_PARTS[tab],
    detail: tab === "drift" ? (s.window || "latest") : "" });
  const pane = el("div", { id: "pane", "data-tab": tab });
  main.append(pane);
  // Named *Tab: a global function "performance" would replace window.performance.
  const tabs = { drift: driftTab, distributions: distributionsTab, performance: performanceTab,
    predictions: predictionsTab, service: serviceTab };
  await tabs[tab](pane, data, s);
}

function drifted(windows) { return windows.filter((w) => w.drift); }

function driftTab(pane, data, s) {
  const windows = drifted(data.windows);
  if (!windows.length) {
    pane.append(card("Drift", el("p", { class: "muted", text: "No window of this model has a " +
      "drift verdict in this time range (no profile, or fewer rows than min_rows)." })));
    return;
  }
  const x = windows.map((w) => w.start);
  const columns = [...new Set(windows.flatMap((w) => Object.keys(w.drift.columns)))].sort();
  const scores = card("Drift score per feature (verdict method) and its threshold");
  pane.append(scores);
  const series = columns.map((c) => ({ label: c,
    values: windows.map((w) => (w.drift.columns[c] || [])[1] ?? null) }));
  const thresholds = [...new Set(windows.flatMap((w) => Object.values(w.drift.columns)
    .map((v) => v[2]).filter((t) => t !== null)))];
  for (const t of thresholds) {
    series.push({ label: `threshold ${fmt(t)}`, values: x.map(() => t), stroke: "#111827",
      dash: [6, 4], width: 1 });
  }
  const [tx, ts] = thinned(x, series);
  chart(scores, "scores", tx, ts, { height: 280 });
  const share = card("Share of drifted features");
  pane.append(share);
  const [sx, ss] = thinned(x, [{ label: "dataset share", values: windows.map((w) => w.share) }]);
  chart(share, "share", sx, ss, { y: { range: [0, 1] } });
  if (tx.length < x.length) {
    share.append(el("p", { class: "muted", text: `${x.length} windows drawn as ${tx.length} ` +
      "points, each the highest value of its run of windows." }));
  }
  // The table: one window's columns sorted by score (the latest unless one is picked).
  const picked = windows.find((w) => w.id === s.window) || windows[windows.length - 1];
  const select = el("select", { id: "drift-window", "aria-label": "window" },
    windows.slice(-300).reverse().map((w) => el("option", { value: w.id,
      selected: w.id === picked.id ? "" : null, text: when(w.start) })));
  select.onchange = () => go({ window: select.value });
  const rows = Object.entries(picked.drift.columns).sort((a, b) => (b[1][1] ?? -1) - (a[1][1] ?? -1));
  const table = el("table", { id: "drift-table", "data-window": picked.id },
    el("thead", {}, el("tr", {}, ["feature", "method", "score", "threshold", "verdict",
      "other statistics"].map((h, i) => el("th", { class: [2, 3].includes(i) ? "num"
        : (i === 5 ? "hide-narrow" : null), text: h })))),
    el("tbody", {}, rows.map(([column, [method, score, threshold, isDrifted]]) => {
      const context = Object.entries((picked.scores || {})[column] || {})
        .filter(([m]) => m !== method).map(([m, v]) => `${m} ${fmt(v)}`).join(", ");
      return el("tr", { "data-column": column, "data-method": method, "data-score": score,
        "data-threshold": threshold, "data-verdict": isDrifted ? "drift" : "ok" },
        el("td", {}, el("a", { href: link({ tab: "distributions", column, window: picked.id }),
          text: column })),
        el("td", { text: method }), el("td", { class: "num", text: fmt(score) }),
        el("td", { class: "num", text: fmt(threshold) }),
        el("td", {}, isDrifted ? badge("drift", "drift") : badge("ok", "ok")),
        el("td", { class: "muted hide-narrow", text: context }));
    })));
  pane.append(card("Features of one window, by score",
    el("div", { class: "controls" }, "window starting", select,
      verdictBadge(picked), el("span", { class: "muted",
        text: `${picked.drifted}/${picked.features} drifted, ${fmt(picked.rows)} rows` })),
    table));
}

async function distributionsTab(pane, data, s) {
  const withRows = data.windows.filter((w) => w.service || w.predictions);
  if (!withRows.length) {
    pane.append(card("Distributions", el("p", { class: "muted",
      text: "No window with the app's distributions in this time range." })));
    return;
  }
  const picked = withRows.find((w) => w.id === s.window) || withRows[withRows.length - 1];
  const body = await api("distributions", { model: s.model, version: s.version || "",
    operation: s.op || "", window: picked.id });
  const names = Object.keys(body.columns);
  const column = names.includes(s.column) ? s.column : (names[0] || "");
  const windowSelect = el("select", { id: "dist-window", "aria-label": "window" },
    withRows.slice(-300).reverse().map((w) => el("option", { value: w.id,
      selected: w.id === picked.id ? "" : null, text: when(w.start) })));
  windowSelect.onchange = () => go({ window: windowSelect.value });
  const columnSelect = el("select", { id: "dist-column", "aria-label": "column" },
    names.map((n) => el("option", { value: n, selected: n === column ? "" : null, text: n })));
  columnSelect.onchange = () => go({ column: columnSelect.value });
  const controls = el("div", { class: "controls" }, "column", columnSelect, "window starting",
    windowSelect);
  const shown = body.columns[column];
  const box = card(`${column}: reference vs current`, controls);
  pane.append(box);
  if (!shown) return;
  const names2 = shown.reference === null || (shown.categories && shown.categories.every((c) => c[1] === null))
    ? ["current"] : ["reference", "current"];
  const colours = names2.length === 2 ? ["#4c72b0", "#dd8452"] : ["#dd8452"];
  let groups;
  if (shown.kind === "numeric") {
    groups = shown.current.map((v, i) => [fmt(shown.edges[i], 3),
      names2.length === 2 ? [shown.reference[i], v] : [v]]);
    box.append(el("p", { class: "muted", text: `density (share per unit), ${fmt(shown.rows)} ` +
      `rows in the window; ${body.reference ? "reference from the profile" : "no profile"}` }));
    box.append(bars(groups, names2, colours, { overlap: true, labels: 8 }));
  } else {
    groups = shown.categories.map(([name, ref, cur]) => [name, names2.length === 2 ? [ref, cur] : [cur]]);
    box.append(el("p", { class: "muted", text: `share of rows per category, ${fmt(shown.rows)} rows` }));
    box.append(bars(groups, names2, colours, {}));
  }
  box.querySelector("svg").setAttribute("data-column", column);
}

function performanceTab(pane, data) {
  // Realised metrics (ml_performance, once labels join) and ml_drift's estimates without
  // labels (docs/estimation.md) of the same windows, side by side.
  const windows = data.windows.filter((w) => w.performance || w.estimated);
  if (!windows.length) {
    pane.append(card("Performance", el("p", { class: "muted", text: "No labels joined and no " +
      "estimate in this time range: send ml.ground_truth records and add ml_performance to a " +
      "logs pipeline (docs/performance.md), or profile the model with its probabilities and " +
      "labels for estimates (docs/estimation.md)." })));
    return;
  }
  const x = windows.map((w) => w.start);
  const realised = (w, m) => (w.performance ? w.performance[m] ?? null : null);
  const estimated = (w, m, bound) => (w.estimated && w.estimated[m] ? w.estimated[m][bound] ?? null : null);
  const metrics = PERFORMANCE.filter((m) => windows.some((w) => typeof realised(w, m) === "number"));
  const guessed = PERFORMANCE.filter((m) => windows.some((w) => typeof estimated(w, m, "value") === "number"));
  const labelled = windows.filter((w) => w.performance);
  const positiveClass = labelled.map((w) => w.performance.positive).find((c) => c !== undefined);
  const over = card("Per window");
  pane.append(over);
  if (metrics.length) {
    chart(over, "performance", x, metrics.map((m) => ({ label: m,
      values: windows.map((w) => realised(w, m)) })));
  }
  // Each estimate beside its realised value, with its band shaded between lower and upper.
  // Estimated precision, recall and F1 are the positive class's (docs/estimation.md): beside
  // them the realised value of that class (named by the binary ROC AUC), not the macro one.
  const positive = (w) => (w.performance && w.performance.positive !== undefined
    ? (w.performance.classes || {})[w.performance.positive] : undefined);
  const realisedOf = (w, m) => (POSITIVE_CLASS_METRICS.includes(m)
    ? (positive(w) ? positive(w)[m] ?? null : null) : realised(w, m));
  for (const m of guessed) {
    const series = [
      { label: m + " estimated", stroke: PALETTE[1], values: windows.map((w) => estimated(w, m, "value")) },
      { label: "lower", stroke: PALETTE[1], width: 0.5, dash: [4, 4], values: windows.map((w) => estimated(w, m, "lower")) },
      { label: "upper", stroke: PALETTE[1], width: 0.5, dash: [4, 4], values: windows.map((w) => estimated(w, m, "upper")) }];
    const paired = windows.map((w) => realisedOf(w, m));
    if (paired.some((v) => typeof v === "number")) {
      const label = POSITIVE_CLASS_METRICS.includes(m)
        ? `${m} realised (class ${positiveClass})`
        : m + " realised";
      series.unshift({ label, stroke: PALETTE[0], values: paired });
    }
    const first = series.length - 3;
    chart(over, "estimated-" + m, x, series, { bands: [{ series: [first + 3, first + 2], fill: "rgba(221,132,82,0.15)" }] });
  }
  const labels = card("Labels joined per window");
  pane.append(labels);
  chart(labels, "labels", x, [{ label: "labels", values: windows.map((w) => realised(w, "labels")) }]);
  // How late labels come: from a window's end to the evaluation that joined its latest ones.
  if (windows.some((w) => typeof realised(w, "lag_s") === "number")) {
    chart(labels, "lag", x, [{ label: "label lag (s)", values: windows.map((w) => realised(w, "lag_s")) }]);
  }
  // Daily: each metric's mean over the day's windows weighted by their labels (exact for
  // accuracy, an approximation for the macro averages).
  const days = new Map();
  for (const w of labelled) {
    const day = new Date(w.start * 1000).toISOString().slice(0, 10);
    const entry = days.get(day) || { labels: 0, sums: {}, weights: {} };
    const n = w.performance.labels || 0;
    entry.labels += n;
    for (const m of metrics) {
      if (typeof w.performance[m] === "number") {
        entry.sums[m] = (entry.sums[m] || 0) + w.performance[m] * n;
        entry.weights[m] = (entry.weights[m] || 0) + n;
      }
    }
    days.set(day, entry);
  }
  pane.append(card("Daily (label-weighted)", el("table", { id: "perf-daily" },
    el("thead", {}, el("tr", {}, ["day", "labels", ...metrics].map((h, i) => el("th", { class: i ? "num" : null, text: h })))),
    el("tbody", {}, [...days.entries()].reverse().map(([day, e]) => el("tr", {},
      el("td", { text: day }), el("td", { class: "num", text: fmt(e.labels) }),
      metrics.map((m) => el("td", { class: "num", text: e.weights[m] ? fmt(e.sums[m] / e.weights[m]) : "–" }))))))));
  const latest = labelled[labelled.length - 1];
  const classes = latest ? Object.entries(latest.performance.classes || {}).sort() : [];
  if (classes.length) {
    const names = ["precision", "recall", "f1"];
    pane.append(card(`Per class, window starting ${when(latest.start)}`,
      bars(classes.map(([c, v]) => [c, names.map((n) => v[n] ?? null)]), names, PALETTE.slice(0, 3), {}),
      el("table", { id: "perf-classes" }, el("thead", {}, el("tr", {}, ["class", "labels", ...names, "roc_auc"]
        .map((h, i) => el("th", { class: i ? "num" : null, text: h })))),
      el("tbody", {}, classes.map(([c, v]) => el("tr", { "data-class": c },
        el("td", { text: c }), el("td", { class: "num", text: fmt(v.labels) }),
        [...names, "roc_auc"].map((n) => el("td", { class: "num", text: fmt(v[n]) }))))))));
  }
  const head = ["window starting", "labels", "label lag (s)", ...metrics, ...guessed.map((m) =>
    m + " estimated" + (POSITIVE_CLASS_METRICS.includes(m) && positiveClass !== undefined ? ` (class ${positiveClass})` : ""))];
  pane.append(card("Windows", el("table", { id: "perf-windows" },
    el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { class: i ? "num" : null, text: h })))),
    el("tbody", {}, windows.slice(-50).reverse().map((w) => el("tr", { "data-window": w.id,
      "data-accuracy": realised(w, "accuracy") ?? "", "data-lag": realised(w, "lag_s") ?? "",
      "data-estimated-accuracy": estimated(w, "accuracy", "value") ?? "",
      "data-estimated-accuracy-lower": estimated(w, "accuracy", "lower") ?? "",
      "data-estimated-accuracy-upper": estimated(w, "accuracy", "upper") ?? "" },
      el("td", { text: when(w.start) }), el("td", { class: "num", text: fmt(realised(w, "labels")) }),
      el("td", { class: "num", text: fmt(realised(w, "lag_s"), 3) }),
      metrics.map((m) => el("td", { class: "num", text: fmt(realised(w, m)) })),
      guessed.map((m) => el("td", { class: "num", text: estimated(w, m, "value") === null ? "–"
        : `${fmt(estimated(w, m, "value"))} [${fmt(estimated(w, m, "lower"))}, ${fmt(estimated(w, m, "upper"))}]` }))))))));
}

function predictionsTab(pane, data) {
  const windows = data.windows.filter((w) => w.predictions);
  if (!windows.length) {
    pane.append(card("Predictions", el("p", { class: "muted", text: "No predictions in this time range." })));
    return;
  }
  const latest = [...windows].reverse().find((w) => w.predictions.classes);
  if (latest) {
    const current = latest.predictions.classes;
    const reference = (data.reference && data.reference.classes) || null;
    const share = (counts, c) => { const t = Object.values(counts).reduce((a, b) => a + b, 0); return t ? (counts[c] || 0) / t : 0; };
    const classes = [...new Set([...Object.keys(current), ...Object.keys(reference || {})])].sort();
    const names = reference ? ["training profile", "current"] : ["current"];
    const colours = reference ? ["#4c72b0", "#dd8452"] : ["#dd8452"];
    pane.append(card(`Class mix, window starting ${when(latest.start)}`,
      bars(classes.map((c) => [c, reference ? [share(reference, c), share(current, c)] : [share(current, c)]]), names, colours, {}),
      el("table", { id: "class-mix" }, el("thead", {}, el("tr", {}, ["class", ...names.map((n) => n + " share"), "rows"].map((h, i) => el("th", { class: i ? "num" : null, text: h })))),
        el("tbody", {}, classes.map((c) => el("tr", { "data-class": c, "data-share": share(current, c) },
          el("td", { text: c }), reference ? el("td", { class: "num", text: pct(share(reference, c)) }) : null,
          el("td", { class: "num", text: pct(share(current, c)) }), el("td", { class: "num", text: fmt(current[c] || 0) })))))));
  }
  const x = windows.map((w) => w.start);
  for (const name of ["confidence", "margin"]) {
    if (!windows.some((w) => w.predictions[name])) continue;
    const box = card(`${name[0].toUpperCase() + name.slice(1)} over time (10th, 50th, 90th percentile)`);
    pane.append(box);
    const series = ["p10", "p50", "p90"].map((q) => ({ label: q,
      values: windows.map((w) => (w.predictions[name] || {})[q] ?? null) }));
    const ref = data.reference && data.reference[name];
    if (ref) series.push({ label: "profile p50", values: x.map(() => ref.p50), stroke: "#111827", dash: [6, 4], width: 1 });
    chart(box, name, x, series, { y: { range: [0, 1] } });
  }
}

function serviceTab(pane, data) {
  const windows = data.windows.filter((w) => w.service);
  if (!windows.length) {
    pane.append(card("Service", el("p", { class: "muted", text: "No ml.predict.* metrics in this time range." })));
    return;
  }
  const x = windows.map((w) => w.start);
  const ms = (v) => (v === null || v === undefined ? null : v * 1000);
  const latency = card("Latency of the predict call (ms, from ml.predict.duration)");
  pane.append(latency);
  chart(latency, "latency", x, ["p50", "p95", "p99"].map((q) => ({ label: q,
    values: windows.map((w) => ms(w.service[`latency_${q}_s`])) })));
  const throughput = card("Throughput (per second, from ml.predict.rows and ml.predict.duration)");
  pane.append(throughput);
  chart(throughput, "throughput", x, [
    { label: "rows/s", values: windows.map((w) => w.service.rows_per_s) },
    { label: "calls/s", values: windows.map((w) => w.service.calls_per_s ?? null) },
    { label: "errors", values: windows.map((w) => w.service.errors) }]);
  const last = windows[windows.length - 1].service;
  pane.append(card("Last window", el("table", { id: "service-last" }, el("tbody", {},
    [["rows", last.rows], ["rows per second", last.rows_per_s], ["calls", last.calls],
      ["errors", last.errors], ["latency p50 (ms)", ms(last.latency_p50_s)],
      ["latency p95 (ms)", ms(last.latency_p95_s)], ["latency p99 (ms)", ms(last.latency_p99_s)]]
      .map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { class: "num", text: fmt(v) })))))));
}

// --- the range picker and the router ---------------------------------------------------------
function syncRange(s) {
  const preset = document.getElementById("range-preset");
  const custom = document.getElementById("range-custom");
  const value = s.range || String(DEFAULT_RANGE_S);
  preset.value = [...preset.options].some((o) => o.value === value) ? value : String(DEFAULT_RANGE_S);
  custom.hidden = preset.value !== "custom";
  const local = (sec) => new Date(sec * 1000 - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const [from, to] = range(s);
  document.getElementById("range-from").value = local(from);
  document.getElementById("range-to").value = local(to);
}

document.getElementById("range-preset").addEventListener("change", (event) => {
  if (event.target.value === "custom") {
    document.getElementById("range-custom").hidden = false;
    return;
  }
  go({ range: event.target.value, from: null, to: null });
});

document.getElementById("range").addEventListener("submit", (event) => {
  event.preventDefault();
  const seconds = (id) => new Date(document.getElementById(id).value).getTime() / 1000;
  go({ range: "custom", from: String(seconds("range-from")), to: String(seconds("range-to")) });
});

// Asked once per tab session: whether the API wants a bearer token (bearertokenauth).
let authChecked = false;

async function ensureToken() {
  if (authChecked || sessionStorage.getItem(TOKEN_KEY)) return;
  const response = await fetch("/api/auth");
  if (response.ok && (await response.json()).required) await askToken();
  authChecked = true;
}

async function render() {
  const s = state();
  syncRange(s);
  destroyCharts();
  const main = document.getElementById("main");
  main.replaceChildren();
  main.removeAttribute("data-ready");
  try {
    await ensureToken();
    if (s.view === "model" && s.model) await model(main, s);
    else await overview(main, s);
  } catch (error) {
    main.append(card("Could not load", el("p", { class: "error", text: String(error.message || error) })));
  }
  // Charts of the overview are drawn on the next frame; tests wait for this attribute.
  requestAnimationFrame(() => requestAnimationFrame(() => main.setAttribute("data-ready", "1")));
}

window.addEventListener("hashchange", render);
render();
