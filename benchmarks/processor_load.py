"""How many histogram data points per second one processor sustains, and whether it stays flat.

Run: ``.venv-dev/bin/python benchmarks/processor_load.py`` (steps, then a 10-minute soak;
``--soak-s 0`` skips the soak, ``--write-results`` appends the tables to RESULTS.md).

Several client processes each call the OpenTelemetry SDK's own ``OTLPMetricExporter.export()``
(OTLP/gRPC) with pre-built ``MetricsData`` shaped like Driftline's recorder output: one
resource, and per model one ``ml.feature.value`` exponential histogram of about 40 buckets
per feature plus an ``ml.predict.rows`` point. They drive ONE ``driftline collector``
subprocess (otlp receiver, ``ml_drift`` with reference profiles for every model, prometheus
exporter). The offered rate
steps up; per step the table gives offered and achieved histogram points per second and the
p50/p99 latency of ``export()``. The sustained rate is the highest step with p99 < 100 ms and
at least 95% of the offered rate achieved. A soak at that rate then samples the processor's
RSS (``/proc/<pid>/status`` VmRSS) every 10 s.

The SDK exporter encodes every point in Python (about 28 us per histogram point here), so on
a small machine the clients, not the processor, limit the rate: 50 000 points/s would take
1.4 cores of client encoding alone. ``--client-mode preencoded`` separates the two: each
client still calls the SDK's ``OTLPMetricExporter.export()``, but its ``_translate_data``
(the SDK's ``encode_metrics``) runs once per batch and the times are re-stamped in the
protobuf; the table also gives the processor's CPU use per step (1.0 = one core).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing as mp
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from driftline.durations import parse_duration

LOOPBACK = "127.0.0.1"
DEFAULT_CLIENTS = 4
DEFAULT_STEPS = (5_000, 10_000, 20_000, 35_000, 50_000, 70_000, 100_000)
DEFAULT_STEP_S = 15.0
DEFAULT_SOAK_S = 600.0
DEFAULT_FEATURES = 20
DEFAULT_MODELS_PER_EXPORT = 1  # one app instance with one model, as the recorder sends
DEFAULT_WINDOW = "60s"  # the default config's
BUCKETS_PER_HISTOGRAM = 40
ROWS_PER_HISTOGRAM = 1_000
PROFILE_ROWS = 5_000
P99_LIMIT_S = 0.100
MIN_ACHIEVED_SHARE = 0.95
RSS_SAMPLE_S = 10.0
# After a window (plus its grace) has closed, the processor holds a steady amount of state.
SOAK_SETTLE_S = 10.0
FLAT_TOLERANCE = 0.10
EXPORT_TIMEOUT_S = 10.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
# Client data is re-stamped this often so every point falls in an open window.
RESTAMP_S = 1.0
RESULTS_PATH = Path(__file__).with_name("RESULTS.md")
RESULTS_HEADING = "## Processor load: benchmarks/processor_load.py"
_LISTENING = re.compile(r"^receiver \S+ listening on (\S+) \(OTLP/gRPC\)$")
_EXPORTER_LISTENING = re.compile(r"^exporter prometheus listening on (\S+)")
_ROWS_LINE = re.compile(r"^ml_predict_rows_total\{[^}]*\} (\S+)")


# --- what the clients send ----------------------------------------------------------------


def model_name(client: int, model: int) -> str:
    return f"load-c{client}-m{model}"


def feature_name(feature: int) -> str:
    return f"f{feature:02d}"


def _feature_values(rng: np.random.Generator, feature: int, size: int) -> np.ndarray:
    # Realistic shapes: a mix of normal, log-normal (prices, durations) and signed features.
    kind = feature % 3
    if kind == 0:
        return rng.normal(40 + feature, 10, size)
    if kind == 1:
        return rng.lognormal(3, 0.6, size)
    return rng.normal(0, 1 + feature / 10, size)


class Batches:
    """A client's pre-built histograms, turned into ``MetricsData`` with fresh timestamps."""

    def __init__(self, client: int, models: int, features: int, seed: int) -> None:
        from driftline import exphist, semconv

        rng = np.random.default_rng(seed)
        self._semconv = semconv
        self._client = client
        self._models = models
        self._features = features
        self._resource: Any = None
        self._hists = [[exphist.from_values(_feature_values(rng, f, ROWS_PER_HISTOGRAM),
                                            max_size=BUCKETS_PER_HISTOGRAM)
                        for f in range(features)] for _ in range(models)]

    @property
    def histogram_points(self) -> int:
        return self._models * self._features

    def build(self, time_ns: int) -> Any:
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            Buckets,
            ExponentialHistogram,
            ExponentialHistogramDataPoint,
            Metric,
            MetricsData,
            NumberDataPoint,
            ResourceMetrics,
            ScopeMetrics,
            Sum,
        )
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        sc = self._semconv
        if self._resource is None:  # Resource.create runs the SDK's detectors: once
            self._resource = Resource.create({sc.SERVICE_NAME: f"load-client-{self._client}"})
        # As the SDK exports: one ResourceMetrics per resource (its encoder keys them by
        # resource, so a second one with the same resource would replace the first), one
        # metric per name holding the points of every model.
        points, rows = [], []
        for m in range(self._models):
            model = {sc.ML_MODEL_NAME: model_name(self._client, m), sc.ML_MODEL_VERSION: "1",
                     sc.ML_MODEL_FRAMEWORK: sc.FRAMEWORK_SKLEARN,
                     sc.ML_OPERATION: sc.OPERATION_PREDICT}
            for f, hist in enumerate(self._hists[m]):
                points.append(ExponentialHistogramDataPoint(
                    attributes={**model, sc.ML_FEATURE_NAME: feature_name(f)},
                    start_time_unix_nano=time_ns - 1, time_unix_nano=time_ns,
                    count=hist.count, sum=hist.sum, scale=hist.scale,
                    zero_count=hist.zero_count,
                    positive=Buckets(hist.positive.offset, hist.positive.counts.tolist()),
                    negative=Buckets(hist.negative.offset, hist.negative.counts.tolist()),
                    flags=0, min=hist.min, max=hist.max))
            rows.append(NumberDataPoint(model, time_ns - 1, time_ns, ROWS_PER_HISTOGRAM))
        metrics = [
            Metric(sc.ML_FEATURE_VALUE, None, sc.UNIT_DIMENSIONLESS,
                   ExponentialHistogram(points, AggregationTemporality.DELTA)),
            Metric(sc.ML_PREDICT_ROWS, None, sc.UNIT_ROWS,
                   Sum(rows, AggregationTemporality.DELTA, True)),
        ]
        scope = InstrumentationScope(f"{sc.SCOPE_PREFIX}sklearn")
        resource_metrics = [ResourceMetrics(self._resource, [ScopeMetrics(scope, metrics, "")],
                                            "")]
        return MetricsData(resource_metrics)


def write_profiles(directory: Path, clients: int, models: int, features: int) -> None:
    """A reference profile for every model the clients send, so windows are evaluated."""
    from driftline.profile import ProfileBuilder, save

    rng = np.random.default_rng(1)
    columns = {feature_name(f): _feature_values(rng, f, PROFILE_ROWS) for f in range(features)}
    for client in range(clients):
        for m in range(models):
            builder = ProfileBuilder(model_name(client, m), "1")
            for name, values in columns.items():
                builder.add_column(name, values)
            builder.add_rows(PROFILE_ROWS)
            save(builder.build(), directory / f"{model_name(client, m)}.json")


# --- a client process ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientResult:
    """One client's run: points sent and accepted, failures, export latencies in seconds."""

    offered_points: int
    accepted_points: int
    failures: int
    latencies_s: list[float]


MODE_SDK = "sdk"
MODE_PREENCODED = "preencoded"


class SdkSender:
    """``OTLPMetricExporter.export(MetricsData)``: encoding is part of each call."""

    def __init__(self, endpoint: str, batches: Batches) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import MetricExportResult

        self._success = MetricExportResult.SUCCESS
        self._batches = batches
        self._exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True,
                                            timeout=EXPORT_TIMEOUT_S)
        self._data = batches.build(time.time_ns())

    def restamp(self) -> None:
        self._data = self._batches.build(time.time_ns())

    def send(self) -> bool:
        return self._exporter.export(self._data) == self._success

    def close(self) -> None:
        self._exporter.shutdown()


class PreencodedSender:
    """The SDK's own ``OTLPMetricExporter.export()`` with its encoding memoised: the batch is
    encoded once by the SDK's ``encode_metrics`` and ``_translate_data`` hands that request
    back (times re-stamped in the protobuf); channel, retries and the call are the SDK's."""

    def __init__(self, endpoint: str, batches: Batches) -> None:
        from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import (
            encode_metrics,
        )
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import MetricExportResult

        request = encode_metrics(batches.build(time.time_ns()))

        class MemoisedExporter(OTLPMetricExporter):
            def _translate_data(self, data: Any) -> Any:
                return request

        self._success = MetricExportResult.SUCCESS
        self._request = request
        self._data = batches.build(time.time_ns())  # what export() is given (not encoded)
        self._exporter = MemoisedExporter(endpoint=endpoint, insecure=True,
                                          timeout=EXPORT_TIMEOUT_S)

    def restamp(self) -> None:
        now = time.time_ns()
        for resource_metrics in self._request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    data = getattr(metric, metric.WhichOneof("data"))
                    for point in data.data_points:
                        point.start_time_unix_nano, point.time_unix_nano = now - 1, now

    def send(self) -> bool:
        return self._exporter.export(self._data) == self._success

    def close(self) -> None:
        self._exporter.shutdown()


def client_main(client: int, endpoint: str, models: int, features: int, mode: str,
                conn: Connection) -> None:
    """Wait for ``(rate, duration)`` commands; run each, send back a ``ClientResult``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    batches = Batches(client, models, features, seed=100 + client)
    sender: SdkSender | PreencodedSender = (
        SdkSender(endpoint, batches) if mode == MODE_SDK else PreencodedSender(endpoint, batches))
    conn.send("ready")
    while True:
        command = conn.recv()
        if command is None:
            break
        rate, duration_s = command
        per_export = batches.histogram_points
        interval_s = per_export / rate
        latencies: list[float] = []
        offered = accepted = failures = 0
        start = time.monotonic()
        sender.restamp()
        stamped = start
        n = 0
        while True:
            due = start + n * interval_s
            now = time.monotonic()
            if due - start >= duration_s or now - start >= duration_s:
                break
            if due > now:
                time.sleep(due - now)
            if time.monotonic() - stamped >= RESTAMP_S:
                sender.restamp()
                stamped = time.monotonic()
            t0 = time.perf_counter()
            ok = sender.send()
            latencies.append(time.perf_counter() - t0)
            offered += per_export
            if ok:
                accepted += per_export
            else:
                failures += 1
            n += 1
        conn.send(ClientResult(offered, accepted, failures, latencies))
    sender.close()


# --- the processor ------------------------------------------------------------------------


EXPORTER_PROMETHEUS = "prometheus"
EXPORTER_FILE = "file"


def processor_config(workdir: Path, window: str, exporter: str,
                     checkpoint: bool = True) -> dict[str, Any]:
    """The default config's shape: otlp -> ml_drift (SQLite checkpoint on, as in
    collector-config/default.yaml, unless ``checkpoint`` is False) -> one exporter."""
    exporters = ({"prometheus": {"endpoint": f"{LOOPBACK}:0"}} if exporter == EXPORTER_PROMETHEUS
                 else {"file": {"path": str(workdir / "metrics.jsonl")}})
    ml_drift: dict[str, Any] = {"profiles": str(workdir / "profiles"), "window": window,
                                "grace": "2s"}
    if checkpoint:
        ml_drift["checkpoint"] = {"path": str(workdir / "ml_drift.sqlite")}
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"ml_drift": ml_drift},
        "exporters": exporters,
        "service": {"pipelines": {"metrics": {
            "receivers": ["otlp"], "processors": ["ml_drift"], "exporters": [exporter]}}},
    }


@dataclass(frozen=True, slots=True)
class Processor:
    process: subprocess.Popen[str]
    endpoint: str  # OTLP/gRPC host:port
    metrics_url: str | None  # the prometheus exporter's /metrics

    @property
    def pid(self) -> int:
        return self.process.pid


def received_rows(metrics_url: str | None) -> float:
    """Rows the processor passed to its Prometheus exporter (sum of ml_predict_rows_total):
    what arrived, counted by the processor itself rather than by the clients (NaN without
    a Prometheus exporter)."""
    if metrics_url is None:
        return math.nan
    with urllib.request.urlopen(metrics_url, timeout=EXPORT_TIMEOUT_S) as response:
        text = response.read().decode()
    return sum(float(m.group(1)) for line in text.splitlines()
               if (m := _ROWS_LINE.match(line)))


@contextlib.contextmanager
def running_processor(workdir: Path, window: str, exporter_type: str,
                      checkpoint: bool = True) -> Iterator[Processor]:
    """A ``driftline collector`` subprocess serving OTLP/gRPC; SIGTERM on exit."""
    config_path = workdir / "collector.yaml"
    config_path.write_text(yaml.safe_dump(processor_config(workdir, window, exporter_type,
                                                           checkpoint)))
    log = (workdir / "collector.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "driftline.cli", "collector", "--config", str(config_path)],
        stdout=subprocess.PIPE, stderr=log, text=True, cwd=workdir)
    try:
        endpoint = None
        exporter = None if exporter_type == EXPORTER_PROMETHEUS else ""
        deadline = time.monotonic() + START_TIMEOUT_S
        assert process.stdout is not None
        while (endpoint is None or exporter is None) and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            if match := _LISTENING.match(line.strip()):
                endpoint = match.group(1)
            if match := _EXPORTER_LISTENING.match(line.strip()):
                exporter = match.group(1)
        if endpoint is None or exporter is None:
            raise RuntimeError(f"the processor did not start; see {workdir / 'collector.log'}")
        yield Processor(process, endpoint, f"http://{exporter}/metrics" if exporter else None)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- driving the steps --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepResult:
    offered_rate: float
    achieved_rate: float
    received_rate: float  # counted by the processor (rows seen / rows per point x features)
    p50_s: float
    p99_s: float
    exports: int
    failures: int
    processor_cpu: float  # CPU seconds per wall second (1.0 = one core busy)

    @property
    def sustained(self) -> bool:
        return (self.failures == 0 and self.p99_s < P99_LIMIT_S
                and self.achieved_rate >= MIN_ACHIEVED_SHARE * self.offered_rate)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class Clients:
    """Client processes, each holding a pipe; ``run`` drives them all for one step."""

    def __init__(self, count: int, endpoints: Sequence[str], models: int, features: int,
                 mode: str) -> None:
        """Client ``i`` sends to ``endpoints[i % len(endpoints)]``: each client's models
        reach one processor, as the load balancer routes them (docs/scale.md)."""
        context = mp.get_context("spawn")
        self._pipes: list[Connection] = []
        self._processes = []
        for client in range(count):
            parent, child = context.Pipe()
            endpoint = endpoints[client % len(endpoints)]
            process = context.Process(target=client_main,
                                      args=(client, endpoint, models, features, mode, child),
                                      daemon=True)
            process.start()
            self._pipes.append(parent)
            self._processes.append(process)
        for pipe in self._pipes:
            if pipe.recv() != "ready":
                raise RuntimeError("a client failed to start")

    def start(self, rate: float, duration_s: float) -> None:
        per_client = rate / len(self._pipes)
        for pipe in self._pipes:
            pipe.send((per_client, duration_s))

    def ready(self, timeout_s: float) -> bool:
        return all(pipe.poll(timeout_s) for pipe in self._pipes)

    def collect(self) -> list[ClientResult]:
        return [pipe.recv() for pipe in self._pipes]

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in self._processes:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()


def run_step(clients: Clients, processors: Sequence[Processor], features: int, rate: float,
             duration_s: float, rss_samples: list[tuple[float, int]] | None = None
             ) -> StepResult:
    """One step; received points and CPU are summed over ``processors`` (RSS: the first)."""
    pid = processors[0].pid

    def received() -> float:
        return sum(received_rows(p.metrics_url) for p in processors)

    def cpu() -> float:
        return sum(cpu_seconds(p.pid) for p in processors)

    rows0 = received()
    cpu0, t0 = cpu(), time.monotonic()
    clients.start(rate, duration_s)
    while not clients.ready(RSS_SAMPLE_S if rss_samples is not None else 1.0):
        if rss_samples is not None:
            rss_samples.append((time.monotonic() - t0, rss_bytes(pid)))
    results = clients.collect()
    elapsed = time.monotonic() - t0
    if rss_samples is not None:
        rss_samples.append((elapsed, rss_bytes(pid)))
    latencies = [x for r in results for x in r.latencies_s]
    points = (received() - rows0) / ROWS_PER_HISTOGRAM * features
    return StepResult(
        offered_rate=rate,
        achieved_rate=sum(r.accepted_points for r in results) / elapsed,
        received_rate=points / elapsed,
        p50_s=percentile(latencies, 50), p99_s=percentile(latencies, 99),
        exports=len(latencies), failures=sum(r.failures for r in results),
        processor_cpu=(cpu() - cpu0) / elapsed)


# --- reporting ----------------------------------------------------------------------------


def versions() -> str:
    import google.protobuf
    import grpc
    from opentelemetry.sdk.version import __version__ as sdk_version

    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"OpenTelemetry SDK {sdk_version}, grpcio {grpc.__version__}, protobuf "
            f"{google.protobuf.__version__} ({_protobuf_backend()} backend), NumPy "
            f"{np.__version__}")


def _protobuf_backend() -> str:
    from google.protobuf.internal import api_implementation

    return api_implementation.Type()


def steps_table(steps: Sequence[StepResult]) -> str:
    lines = ["| offered points/s | achieved points/s | received by processor | exports "
             "| failures | p50 ms | p99 ms | processor CPU (cores) | sustained |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for s in steps:
        lines.append(f"| {s.offered_rate:,.0f} | {s.achieved_rate:,.0f} "
                     f"| {s.received_rate:,.0f} | {s.exports} "
                     f"| {s.failures} | {s.p50_s * 1e3:.1f} | {s.p99_s * 1e3:.1f} "
                     f"| {s.processor_cpu:.2f} | {'yes' if s.sustained else 'no'} |")
    return "\n".join(lines)


def is_flat(values: Sequence[int]) -> bool:
    """Every value within ``FLAT_TOLERANCE`` of the first."""
    return all(abs(v - values[0]) <= FLAT_TOLERANCE * values[0] for v in values)


def soak_table(rate: float, step: StepResult, samples: Sequence[tuple[float, int]],
               warmup_s: float) -> str:
    values = [rss for _, rss in samples]
    first, last, low, high = values[0], values[-1], min(values), max(values)
    flat = is_flat(values)
    settled = [rss for t, rss in samples if t >= warmup_s]
    flat_settled = bool(settled) and is_flat(settled)
    mib = 1 << 20
    return "\n".join([
        "| soak rate points/s | achieved points/s | received points/s | duration s | p50 ms "
        "| p99 ms | RSS first MiB | RSS last MiB | RSS min MiB | RSS max MiB | flat ±10% |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
        f"| {rate:,.0f} | {step.achieved_rate:,.0f} | {step.received_rate:,.0f} "
        f"| {samples[-1][0]:.0f} "
        f"| {step.p50_s * 1e3:.1f} | {step.p99_s * 1e3:.1f} | {first / mib:.1f} "
        f"| {last / mib:.1f} | {low / mib:.1f} | {high / mib:.1f} | {'yes' if flat else 'no'} |",
        "",
        f"Flat within ±{FLAT_TOLERANCE:.0%} from the first sample taken after the first "
        f"window has closed ({warmup_s:.0f} s on): {'yes' if flat_settled else 'no'}"
        + (f" ({min(settled) / mib:.1f} to {max(settled) / mib:.1f} MiB)." if settled else "."),
        "",
        "RSS samples (s: MiB): " + ", ".join(f"{t:.0f}: {rss / mib:.1f}" for t, rss in samples),
    ])


STAGE_REPEATS = 30
STAGE_WARM_UP = 5


class _Discard:
    """The end of a pipeline that keeps nothing, to time one component alone."""

    def consume_metrics(self, batch: Sequence[Any]) -> None:
        pass


def stage_costs(workdir: Path, models: int, features: int) -> list[tuple[str, float]]:
    """CPU microseconds per histogram point of each stage, in this process, one at a time:
    what one core could do if that stage were all the processor did."""
    from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import (
        encode_metrics,
    )
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    from driftline.exporters.file.exporter import Factory as FileFactory
    from driftline.exporters.file.exporter import FileExporterConfig
    from driftline.exporters.prometheus.exporter import Factory as PrometheusFactory
    from driftline.exporters.prometheus.exporter import PrometheusExporterConfig
    from driftline.processor.ml_drift.processor import CheckpointConfig, MlDriftConfig
    from driftline.processor.ml_drift.processor import Factory as MlDriftFactory

    batches = Batches(0, models, features, seed=100)
    body = encode_metrics(batches.build(time.time_ns())).SerializeToString()
    points = batches.histogram_points

    def decoded(body: bytes) -> list[Any]:
        return list(ExportMetricsServiceRequest.FromString(body).resource_metrics)

    def per_point(action: Any) -> float:
        for _ in range(STAGE_WARM_UP):  # caches and the first windows
            action()
        start = time.process_time()
        for _ in range(STAGE_REPEATS):
            action()
        return (time.process_time() - start) / STAGE_REPEATS / points * 1e6

    profiles = str(workdir / "profiles")
    ml_drift = MlDriftFactory().create(MlDriftConfig(profiles=profiles, window=DEFAULT_WINDOW),
                                       _Discard())
    prometheus = PrometheusFactory.create(PrometheusExporterConfig(endpoint=f"{LOOPBACK}:0"))
    file = FileFactory.create(FileExporterConfig(path=str(workdir / "stage.jsonl")))
    # The whole default path in one thread: decode, ml_drift (with and without its
    # checkpoint: one commit per batch here) and the prometheus exporter after it.
    path_exporters = [PrometheusFactory.create(PrometheusExporterConfig(endpoint=f"{LOOPBACK}:0"))
                      for _ in range(2)]
    plain_path = MlDriftFactory().create(
        MlDriftConfig(profiles=profiles, window=DEFAULT_WINDOW), path_exporters[0])
    checkpointed_path = MlDriftFactory().create(
        MlDriftConfig(profiles=profiles, window=DEFAULT_WINDOW,
                      checkpoint=CheckpointConfig(path=str(workdir / "stage.sqlite"))),
        path_exporters[1])
    components = (ml_drift, prometheus, file, *path_exporters, plain_path, checkpointed_path)
    for component in components:
        component.start()
    try:
        return [
            ("decode the request (protobuf)",
             per_point(lambda: ExportMetricsServiceRequest.FromString(body))),
            # Each call gets a freshly decoded request, as in the processor (the same
            # protobuf objects fed again measure other costs).
            ("decode + ml_drift", per_point(lambda: ml_drift.consume_metrics(decoded(body)))),
            ("decode + prometheus exporter",
             per_point(lambda: prometheus.consume_metrics(decoded(body)))),
            ("decode + file exporter", per_point(lambda: file.consume_metrics(decoded(body)))),
            ("decode + ml_drift + prometheus, no checkpoint", per_point(
                lambda: plain_path.consume_metrics(decoded(body)))),
            ("decode + ml_drift with its checkpoint + prometheus", per_point(
                lambda: checkpointed_path.consume_metrics(decoded(body)))),
        ]
    finally:
        for component in components:
            component.shutdown()


def stage_table(costs: Sequence[tuple[str, float]]) -> str:
    lines = ["| stage (in process, one thread) | CPU us per histogram point "
             "| points/s on one core |", "|---|---:|---:|"]
    lines += [f"| {name} | {us:.1f} | {1e6 / us:,.0f} |" for name, us in costs]
    return "\n".join(lines)


PROFILE_TOP = 20
PY_SPY_RATE_HZ = 100


def start_py_spy(pid: int, duration_s: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` (only threads holding the GIL, per function) into ``out``."""
    py_spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(duration_s)),
         "--rate", str(PY_SPY_RATE_HZ), "--gil", "--function", "--nonblocking",
         "--format", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_table(raw: Path) -> str:
    """Top functions of a py-spy raw profile: share of GIL-holding samples, self and total."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = [re.sub(r"\(/.*?site-packages/", "(", f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    lines = [f"py-spy, {samples} samples of the processor holding the GIL.", "",
             "| function | self % | total % |", "|---|---:|---:|"]
    top = sorted(total, key=lambda f: -total[f])
    shown = [f for f in top if not f.startswith(("_bootstrap", "run (threading", "<module>"))]
    for frame in shown[:PROFILE_TOP]:
        lines.append(f"| `{frame}` | {100 * own.get(frame, 0) / samples:.1f} "
                     f"| {100 * total[frame] / samples:.1f} |")
    lines += ["", "| function (by self time) | self % |", "|---|---:|"]
    for frame in sorted(own, key=lambda f: -own[f])[:PROFILE_TOP]:
        lines.append(f"| `{frame}` | {100 * own[frame] / samples:.1f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS)
    parser.add_argument("--processors", type=int, default=1,
                        help="processor processes, each client's models sent to one of them "
                             "(sharded by model, docs/scale.md); CPU is their sum")
    parser.add_argument("--steps", type=lambda s: [float(x) for x in s.split(",")],
                        default=list(DEFAULT_STEPS),
                        help="offered histogram points per second, comma-separated")
    parser.add_argument("--step-s", type=float, default=DEFAULT_STEP_S)
    parser.add_argument("--soak-s", type=float, default=DEFAULT_SOAK_S)
    parser.add_argument("--soak-rate", type=float, default=None,
                        help="points/s for the soak (default: the sustained rate)")
    parser.add_argument("--models", type=int, default=DEFAULT_MODELS_PER_EXPORT,
                        help="models per export (one resource each)")
    parser.add_argument("--features", type=int, default=DEFAULT_FEATURES)
    parser.add_argument("--client-mode", choices=(MODE_SDK, MODE_PREENCODED),
                        default=MODE_SDK, help="how clients send (see the module docstring)")
    parser.add_argument("--window", default=DEFAULT_WINDOW, help="ml_drift window")
    parser.add_argument("--exporter", choices=(EXPORTER_PROMETHEUS, EXPORTER_FILE),
                        default=EXPORTER_PROMETHEUS, help="the pipeline's exporter")
    parser.add_argument("--no-checkpoint", action="store_true",
                        help="run ml_drift without its SQLite checkpoint")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="RAW",
                        help="profile the processor with py-spy during the last step")
    parser.add_argument("--write-results", action="store_true",
                        help=f"append the tables to {RESULTS_PATH.name}")
    parser.add_argument("--note", default="", help="a line added to the RESULTS.md section")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    per_export = args.models * args.features
    report = [f"Machine: {versions()}.", "",
              f"Client mode `{args.client_mode}`: {args.clients} client processes, "
              f"{per_export} histogram points per export "
              f"({args.models} models x {args.features} features, <= {BUCKETS_PER_HISTOGRAM} "
              f"buckets each, plus one rows counter per model); ml_drift window "
              f"{args.window}; exporter `{args.exporter}`; ml_drift checkpoint "
              f"{'off' if args.no_checkpoint else 'on'}; {args.step_s:.0f} s per step; "
              f"{args.processors} processor process(es).", ""]
    with tempfile.TemporaryDirectory(prefix="driftline-load-") as tmp:
        workdir = Path(tmp)
        (workdir / "profiles").mkdir()
        write_profiles(workdir / "profiles", args.clients, args.models, args.features)
        costs = stage_costs(workdir, args.models, args.features)
        report += ["Cost per stage, measured in this process before the run (the processor "
                   "runs them all, under one GIL):", "", stage_table(costs), ""]
        print(stage_table(costs), flush=True)
        with contextlib.ExitStack() as stack:
            processors = []
            for number in range(args.processors):
                home = workdir / f"processor{number}"
                home.mkdir()
                (home / "profiles").symlink_to(workdir / "profiles")
                processors.append(stack.enter_context(running_processor(
                    home, args.window, args.exporter, not args.no_checkpoint)))
            processor = processors[0]
            process = processor.process
            clients = Clients(args.clients, [p.endpoint for p in processors], args.models,
                              args.features, args.client_mode)
            try:
                steps = []
                for number, rate in enumerate(args.steps, 1):
                    spy = (start_py_spy(processor.pid, args.step_s, args.py_spy)
                           if args.py_spy and number == len(args.steps) else None)
                    step = run_step(clients, processors, args.features, rate, args.step_s)
                    if spy is not None:
                        spy.wait()
                    steps.append(step)
                    print(f"step {rate:,.0f}/s: achieved {step.achieved_rate:,.0f}/s, "
                          f"received {step.received_rate:,.0f}/s, "
                          f"p50 {step.p50_s * 1e3:.1f} ms, p99 {step.p99_s * 1e3:.1f} ms, "
                          f"CPU {step.processor_cpu:.2f}, failures {step.failures}",
                          flush=True)
                    if any(p.process.poll() is not None for p in processors):
                        raise RuntimeError("a processor exited during the steps")
                sustained = max((s.offered_rate for s in steps if s.sustained), default=0.0)
                report += [steps_table(steps), "",
                           f"Sustained rate (highest step with p99 < {P99_LIMIT_S * 1e3:.0f} ms, "
                           f"no failure, >= {MIN_ACHIEVED_SHARE:.0%} achieved): "
                           f"**{sustained:,.0f} histogram points/s**.", ""]
                if args.py_spy:
                    report += [f"Profile of the last step ({args.steps[-1]:,.0f} points/s "
                               "offered):", "", profile_table(args.py_spy), ""]
                soak_rate = args.soak_rate or sustained
                if args.soak_s > 0 and soak_rate > 0:
                    samples: list[tuple[float, int]] = [(0.0, rss_bytes(process.pid))]
                    soak = run_step(clients, processors, args.features, soak_rate,
                                    args.soak_s, samples)
                    report += [f"Soak: {args.soak_s:.0f} s at {soak_rate:,.0f} points/s, "
                               f"RSS of the processor every {RSS_SAMPLE_S:.0f} s.", "",
                               soak_table(soak_rate, soak, samples,
                                          parse_duration(args.window) + SOAK_SETTLE_S), ""]
            finally:
                clients.close()
    if args.note:
        report += [args.note, ""]
    text = "\n".join(report)
    print(text)
    if args.write_results:
        with RESULTS_PATH.open("a") as results:
            results.write(f"\n{RESULTS_HEADING}\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
