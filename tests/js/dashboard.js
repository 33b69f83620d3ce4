// Drives headless Chromium (Debian's, through playwright-core) over the built-in dashboard
// for tests/test_dashboard_browser.py: one browser, every view, what each view shows as JSON
// on stdout, a screenshot per view, every request and every console error.
//   node dashboard.js CHROMIUM OUT_DIR PROFILE_DIR  (then {"base": URL, "views": [...]} on stdin)
// The browser starts at once and waits for stdin, so the test launches it while the app runs.
"use strict";
const { chromium } = require("playwright-core");
const path = require("path");

const [executablePath, outDir, profileDir] = process.argv.slice(2);

function stdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (chunk) => chunks.push(chunk));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString()));
    process.stdin.on("error", reject);
  });
}
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run"];
const READY_TIMEOUT_MS = 15000;

// What a view shows, read from the page's own elements (numbers as the page holds them).
function read() {
  const rows = (selector) => [...document.querySelectorAll(selector)].map((row) => ({
    data: Object.assign({}, row.dataset), cells: [...row.children].map((c) => c.textContent.trim()) }));
  const svg = document.querySelector("svg[data-column]");
  return {
    tab: (document.getElementById("pane") || {}).dataset ? document.getElementById("pane").dataset.tab : "overview",
    error: [...document.querySelectorAll(".error")].map((e) => e.textContent),
    models: rows("#models tbody tr"),
    stale: document.getElementById("stale") ? document.getElementById("stale").textContent : null,
    drift: rows("#drift-table tbody tr"),
    driftWindow: document.getElementById("drift-table") ? document.getElementById("drift-table").dataset.window : null,
    charts: [...document.querySelectorAll("[data-chart]")].map((c) => c.dataset.chart),
    distribution: svg ? { column: svg.dataset.column,
      bars: Object.fromEntries(["reference", "current"].map((s) => [s, svg.querySelectorAll(`rect[data-series="${s}"]`).length])) } : null,
    performance: rows("#perf-windows tbody tr"),
    classes: rows("#perf-classes tbody tr"),
    classMix: rows("#class-mix tbody tr"),
    service: rows("#service-last tr"),
    scrollWidth: document.documentElement.scrollWidth,
    hash: location.hash,
    loginOpen: document.getElementById("login").open,
    loginError: document.getElementById("login-error").hidden ? null : document.getElementById("login-error").textContent,
    mainText: document.getElementById("main").textContent,
  };
}

(async () => {
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath, headless: true, args: FLAGS, viewport: { width: 1280, height: 900 } });
  const input = stdin();
  const requests = [];
  const errors = [];
  context.on("request", (request) => requests.push(request.url()));
  const watch = (page) => {
    page.on("console", (message) => { if (message.type() === "error") errors.push(message.text()); });
    page.on("pageerror", (error) => errors.push(String(error)));
  };
  const results = {};
  try {
    const page = context.pages()[0] || await context.newPage();
    const { base, views } = JSON.parse(await input);
    watch(page);
    let first = true;
    for (const view of views) {
      if (view.width) await page.setViewportSize({ width: view.width, height: view.height || 900 });
      if (first) {
        await page.goto(base + "#" + view.hash);
        first = false;
      } else if (view.hash) {
        await page.evaluate((hash) => {
          document.getElementById("main").removeAttribute("data-ready");
          location.hash = hash;
        }, view.hash);
      }
      if (view.token) {  // the page asks for the bearer token before its first data request
        await page.waitForSelector("#login[open]", { timeout: READY_TIMEOUT_MS });
        await page.fill("#login-token", view.token);
        await page.click("#login-form button");
      }
      // A view that shows no data (a refused token) names what to wait for instead.
      await page.waitForSelector(view.waitFor || "#main[data-ready]", { timeout: READY_TIMEOUT_MS });
      if (view.steps) {  // what a user does on the loaded view (the range picker)
        await page.evaluate(() => document.getElementById("main").removeAttribute("data-ready"));
        for (const step of view.steps) {
          if (step.select) await page.selectOption(step.select, step.value);
          else if (step.fill) await page.fill(step.fill, step.value);
          else if (step.click) await page.click(step.click);
        }
        await page.waitForSelector("#main[data-ready]", { timeout: READY_TIMEOUT_MS });
      }
      results[view.name] = await page.evaluate(read);
      await page.screenshot({ path: path.join(outDir, view.name + ".png"), fullPage: true });
    }
  } finally {
    await context.close();
  }
  process.stdout.write(JSON.stringify({ views: results, requests, errors }));
})().catch((error) => { console.error(error); process.exit(1); });
