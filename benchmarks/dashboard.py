"""How fast the built-in dashboard answers with a day of history, and how big that history is.

Run: ``.venv-dev/bin/python benchmarks/dashboard.py`` (needs ``chromium`` and
``npm ci --prefix tests/js`` for the page timings; ``--models``, ``--features``,
``--windows`` change the load; ``--keep DIR`` keeps the history file).

The history is written the way the ``ml_dashboard`` exporter writes it (``History.write``,
one transaction per minute of all models, each window with ml_drift's verdicts and scores,
ml_performance's metrics, the class mix, confidence and margin, latency and the app's
distributions compacted to 32 buckets per sign): 50 models x 30 features x 1440 one-minute
windows (one day) by default. Histograms are drawn once per feature and their counts
re-drawn (Poisson, 16 copies per feature, one picked per window), so the stored bytes are
those of real, varying windows.

Then one exporter serves that file on a free port, and the script times, 7 times each
(median, min-max): the JSON API behind the overview (``/api/models`` over 24 h) and behind a
model's drift tab (``/api/windows`` over 24 h), and the page in one headless Chromium from
navigation until it has drawn everything (``#main[data-ready]``), for both views.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from driftline import exphist, semconv
from driftline.exporters.ml_dashboard.collect import compact
from driftline.exporters.ml_dashboard.config import HistoryConfig, MlDashboardConfig
from driftline.exporters.ml_dashboard.exporter import MlDashboard
from driftline.exporters.ml_dashboard.history import History, StreamKey, WindowUpdate

WINDOW_NS = 60 * 10**9
REPEATS = 7
VARIANTS = 16
ROOT = Path(__file__).resolve().parent.parent
JS_DIR = ROOT / "tests" / "js"
PAGE_SCRIPT = """
const { chromium } = require("playwright-core");
const [exe, urls, repeats] = [process.argv[1], JSON.parse(process.argv[2]), +process.argv[3]];
(async () => {
  const browser = await chromium.launch({ executablePath: exe, args: ["--headless",
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const out = {};
  for (const [name, url] of Object.entries(urls)) {
    out[name] = [];
    for (let i = 0; i < repeats + 1; i++) {
      await page.goto("about:blank");
      const start = Date.now();
      await page.goto(url);
      await page.waitForSelector("#main[data-ready]", { timeout: 60000 });
      if (i) out[name].push(Date.now() - start);  // the first load warms the caches
    }
  }
  await browser.close();
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def build(path: Path, models: int, features: int, windows: int, end_ns: int) -> float:
    rng = np.random.default_rng(1)
    names = [f"feature_{i:02d}" for i in range(features)]
    templates = [compact(exphist.from_values(rng.lognormal(i % 4, 0.6, 5000)))
                 for i in range(features)]
    # Each window draws one of VARIANTS re-drawn copies per feature (drawing 30 per window
    # would make the build, not the dashboard, the slow part).
    variants = [[exphist.ExpHistogram(
        t.scale, t.zero_count, exphist.Buckets(
            t.positive.offset, rng.poisson(t.positive.counts / 5).astype(np.int64)),
        t.negative, 0, t.sum / 5, t.min, t.max).to_dict() for _ in range(VARIANTS)]
        for t in templates]
    history = History(str(path), 10 * 1024**3)
    start = time.perf_counter()
    first_ns = end_ns - windows * WINDOW_NS
    keys = [StreamKey(f"model_{m:02d}", "1", "predict_proba") for m in range(models)]
    for w in range(windows):
        start_ns = first_ns + w * WINDOW_NS
        updates = []
        for key in keys:
            scores = rng.gamma(2.0, 0.03, features)
            columns = {n: ["wasserstein", float(s), 0.1, int(s >= 0.1)]
                       for n, s in zip(names, scores, strict=True)}
            context = {n: {"wasserstein": float(s), "ks": float(s / 3), "psi": float(s * 2)}
                       for n, s in zip(names, scores, strict=True)}
            drifted = int((scores >= 0.1).sum())
            distributions = {n: {"kind": "numeric",
                                 "histogram": variants[i][int(rng.integers(VARIANTS))]}
                             for i, n in enumerate(names)}
            distributions[semconv.ML_PREDICTION_CLASS_METRIC] = {
                "kind": "categorical", "counts": {"0": int(rng.poisson(600)),
                                                  "1": int(rng.poisson(400))}}
            accuracy = float(rng.uniform(0.8, 0.9))
            updates.append(WindowUpdate(
                key, start_ns, start_ns + WINDOW_NS, "sklearn", evaluated_ns=start_ns,
                rows=1000, share=drifted / features, dataset_drifted=int(drifted * 2
                                                                          >= features),
                drifted=drifted, features=features,
                drift={"columns": columns}, scores=context,
                performance={"accuracy": accuracy, "precision": accuracy, "recall": accuracy,
                             "f1": accuracy, "roc_auc": accuracy + 0.05, "labels": 200,
                             "classes": {c: {"precision": accuracy, "recall": accuracy,
                                             "f1": accuracy, "labels": 100} for c in "01"}},
                predictions={"classes": {"0": 600, "1": 400},
                             "confidence": {"count": 1000, "mean": 0.7, "p10": 0.55,
                                            "p50": 0.7, "p90": 0.9},
                             "margin": {"count": 1000, "mean": 0.4, "p10": 0.1, "p50": 0.4,
                                        "p90": 0.8}},
                service={"rows": 1000, "rows_per_s": 16.7, "errors": 0, "calls": 100,
                         "calls_per_s": 1.67, "latency_mean_s": 0.002,
                         "latency_p50_s": 0.0015, "latency_p95_s": 0.004,
                         "latency_p99_s": 0.008},
                distributions=distributions))
        history.write(updates, {key: (start_ns + WINDOW_NS, "sklearn") for key in keys})
    seconds = time.perf_counter() - start
    history.close()
    return seconds


def timed(url: str) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(REPEATS):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as response:
            size = len(response.read())
        times.append(time.perf_counter() - start)
    return times, size


def page_times(urls: dict[str, str]) -> dict[str, list[float]]:
    chromium, node = shutil.which("chromium"), shutil.which("node")
    if not chromium or not node or not (JS_DIR / "node_modules" / "playwright-core").is_dir():
        print("page timings skipped: needs chromium, node and npm ci --prefix tests/js")
        return {}
    ran = subprocess.run([node, "-e", PAGE_SCRIPT, chromium, json.dumps(urls), str(REPEATS)],
                         capture_output=True, text=True, check=True, cwd=JS_DIR, timeout=600)
    return {k: [v / 1000 for v in values] for k, values in json.loads(ran.stdout).items()}


def row(name: str, seconds: list[float], extra: str = "") -> str:
    ms = sorted(1000 * s for s in seconds)
    return (f"| {name} | {statistics.median(ms):.0f} | {ms[0]:.0f}-{ms[-1]:.0f} | "
            f"{extra} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--windows", type=int, default=1440)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true",
                        help="time the history already in --keep instead of building it")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="driftline-dashboard-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dashboard.sqlite"
    stamp = folder / "end_ns"
    if args.reuse and path.exists() and stamp.exists():
        end_ns, build_s = int(stamp.read_text()), 0.0
    else:
        path.unlink(missing_ok=True)
        end_ns = time.time_ns() // WINDOW_NS * WINDOW_NS
        build_s = build(path, args.models, args.features, args.windows, end_ns)
        stamp.write_text(str(end_ns))
    size_mb = path.stat().st_size / 1024**2
    load = f"{args.models} models x {args.features} features x {args.windows} windows"
    print(f"history: {load}, built in {build_s:.0f} s, {size_mb:.0f} MiB "
          f"({path.stat().st_size / (args.models * args.windows) / 1024:.1f} KiB per window)")
    dashboard = MlDashboard(MlDashboardConfig(
        endpoint="127.0.0.1:0", history=HistoryConfig(path=str(path),
                                                      max_megabytes=10 * 1024)))
    dashboard.start()
    try:
        base = f"http://127.0.0.1:{dashboard.port}"
        day = f"from={end_ns / 1e9 - 86400}&to={end_ns / 1e9 + 60}"
        picked = f"model_{args.models // 2:02d}"
        model = f"model={picked}&version=1&operation=predict_proba"
        overview_api, overview_bytes = timed(f"{base}/api/models?{day}")
        # What the drift tab asks for: the drift part, every method's scores of the last window.
        drift_api, drift_bytes = timed(f"{base}/api/windows?{model}&{day}&parts=drift"
                                       "&detail=latest")
        pages = page_times({
            "overview": f"{base}/#view=overview&range=86400",
            "drift": f"{base}/#view=model&model={picked}&version=1&op=predict_proba"
                     f"&tab=drift&range=86400"})
    finally:
        dashboard.shutdown()
    print()
    print(f"| {load} (history {size_mb:.0f} MiB) | median ms | min-max ms | response |")
    print("|---|---:|---:|---|")
    print(row("overview: `/api/models`, 24 h", overview_api,
              f"{overview_bytes / 1024:.0f} KiB JSON"))
    print(row("drift tab: `/api/windows` of one model, 24 h", drift_api,
              f"{drift_bytes / 1024:.0f} KiB JSON"))
    for name, label in (("overview", "overview page in Chromium, until drawn"),
                        ("drift", "drift tab page in Chromium, until drawn")):
        if name in pages:
            print(row(label, pages[name], "API call included"))
    if args.keep is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
