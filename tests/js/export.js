// Exports one known set of metrics, spans and log records to `driftline collector` with the
// OpenTelemetry JavaScript SDK, over one OTLP transport, then exits (status 1 on any failure).
// Run by tests/test_js_sdk_interop.py, which checks every value in the collector's files.
//
//   node export.js <json|proto|grpc> <base URL, e.g. http://127.0.0.1:4318>
"use strict";

const { diag, DiagConsoleLogger, DiagLogLevel } = require("@opentelemetry/api");
const { SeverityNumber } = require("@opentelemetry/api-logs");
const { resourceFromAttributes } = require("@opentelemetry/resources");
const { MeterProvider, PeriodicExportingMetricReader } = require("@opentelemetry/sdk-metrics");
const {
  AggregationTemporalityPreference,
} = require("@opentelemetry/exporter-metrics-otlp-http");
const { BasicTracerProvider, SimpleSpanProcessor } = require("@opentelemetry/sdk-trace-base");
const { LoggerProvider, SimpleLogRecordProcessor } = require("@opentelemetry/sdk-logs");

// One export a run: the reader never fires on its own, forceFlush() collects once.
const NEVER_MS = 3600 * 1000;
const TRANSPORTS = {
  json: {
    metrics: "@opentelemetry/exporter-metrics-otlp-http",
    traces: "@opentelemetry/exporter-trace-otlp-http",
    logs: "@opentelemetry/exporter-logs-otlp-http",
    paths: true,
  },
  proto: {
    metrics: "@opentelemetry/exporter-metrics-otlp-proto",
    traces: "@opentelemetry/exporter-trace-otlp-proto",
    logs: "@opentelemetry/exporter-logs-otlp-proto",
    paths: true,
  },
  grpc: {
    metrics: "@opentelemetry/exporter-metrics-otlp-grpc",
    traces: "@opentelemetry/exporter-trace-otlp-grpc",
    logs: "@opentelemetry/exporter-logs-otlp-grpc",
    paths: false,
  },
};

function url(transport, base, path) {
  return transport.paths ? `${base}${path}` : base;
}

async function exportMetrics(transport, base, protocol, temporality) {
  const { OTLPMetricExporter } = require(transport.metrics);
  const exporter = new OTLPMetricExporter({
    url: url(transport, base, "/v1/metrics"),
    temporalityPreference: temporality === "delta"
      ? AggregationTemporalityPreference.DELTA
      : AggregationTemporalityPreference.CUMULATIVE,
  });
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: NEVER_MS });
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ "service.name": `js-${protocol}` }),
    readers: [reader],
  });
  const meter = provider.getMeter("driftline.interop.js");
  const rows = meter.createCounter("js.rows", { unit: "{row}" });
  const latency = meter.createHistogram("js.latency", {
    unit: "s",
    advice: { explicitBucketBoundaries: [0.1, 1] },
  });
  const attributes = { "ml.model.name": "churn", temporality };
  rows.add(5, attributes);
  rows.add(7, attributes);
  latency.record(0.05, attributes);
  latency.record(0.5, attributes);
  latency.record(2, attributes);
  await provider.forceFlush();
  // A second collection: cumulative repeats the running total (12 + 3), delta sends 3.
  rows.add(3, attributes);
  await provider.forceFlush();
  // No shutdown: it would collect and export a third time. main() exits the process.
}

async function exportTraces(transport, base, protocol) {
  const { OTLPTraceExporter } = require(transport.traces);
  const exporter = new OTLPTraceExporter({ url: url(transport, base, "/v1/traces") });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": `js-${protocol}` }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const span = provider.getTracer("driftline.interop.js").startSpan(`predict ${protocol}`);
  span.setAttribute("ml.batch.size", 32);
  span.end();
  await provider.forceFlush();
  await provider.shutdown();
}

async function exportLogs(transport, base, protocol) {
  const { OTLPLogExporter } = require(transport.logs);
  const exporter = new OTLPLogExporter({ url: url(transport, base, "/v1/logs") });
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ "service.name": `js-${protocol}` }),
    processors: [new SimpleLogRecordProcessor({ exporter })],
  });
  provider.getLogger("driftline.interop.js").emit({
    severityNumber: SeverityNumber.WARN,
    severityText: "WARN",
    body: `drift ${protocol}`,
    attributes: { "ml.prediction.id": `id-${protocol}` },
  });
  await provider.forceFlush();
  await provider.shutdown();
}

async function main() {
  // Export failures are logged by the SDK, not thrown: print them for the test's message.
  diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.WARN);
  const [protocol, base] = process.argv.slice(2);
  const transport = TRANSPORTS[protocol];
  if (!transport || !base) {
    throw new Error("usage: node export.js <json|proto|grpc> <base URL>");
  }
  await exportMetrics(transport, base, protocol, "delta");
  await exportMetrics(transport, base, protocol, "cumulative");
  await exportTraces(transport, base, protocol);
  await exportLogs(transport, base, protocol);
  process.exit(0);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
