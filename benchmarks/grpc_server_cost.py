"""What the OTLP/gRPC receiver itself costs, per request and per point, at saturation.

Run: ``.venv/bin/python benchmarks/grpc_server_cost.py`` (about a minute per row).

A subprocess runs the real ``OtlpReceiver`` (grpcio server, its thread pool, decoding, the
hand-over) with a consumer that does nothing, so what it spends is the server's own work.
Client processes call ``MetricsService/Export`` over raw gRPC channels with pre-serialized
requests (no encoding cost on the client side), closed loop, as fast as the server answers.
The server's CPU time comes from ``/proc/<pid>/stat``. Per request size and thread-pool
size, the table gives requests/s, histogram points/s, the server's CPU per request and per
point, and p50/p99 call latency; a least-squares fit over the sizes splits the CPU into a
fixed cost per request and a cost per point.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

LOOPBACK = "127.0.0.1"
EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
DEFAULT_SIZES = (1, 20, 200, 1000)
DEFAULT_WORKERS = (1, 2, 4, 8)
DEFAULT_CLIENTS = 2
DEFAULT_DURATION_S = 8.0
CALL_TIMEOUT_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BUCKETS = 40
# --workers value that selects the asyncio comparison server (serve_aio).
AIO_WORKERS = 0


def _request(points: int) -> bytes:
    """An ExportMetricsServiceRequest with ``points`` exponential histogram points."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.metrics.v1 import metrics_pb2

    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    metric = scope.metrics.add(name="ml.feature.value")
    metric.exponential_histogram.aggregation_temporality = 1
    for i in range(points):
        point = metric.exponential_histogram.data_points.add(
            time_unix_nano=time.time_ns(), count=1000, sum=1.0, scale=3)
        point.attributes.add(key="ml.feature.name").value.string_value = f"f{i}"
        point.positive.offset = 10
        point.positive.bucket_counts.extend([25] * BUCKETS)
    assert isinstance(metric, metrics_pb2.Metric)
    return request.SerializeToString()


def serve(workers: int) -> None:
    """The receiver with a do-nothing consumer; prints its port, runs until stdin closes."""
    import driftline.processor.otlp_receiver.receiver as receiver_module
    from driftline.processor.otlp_receiver.config import (
        GrpcConfig,
        OtlpReceiverConfig,
        ProtocolsConfig,
    )
    from driftline.processor.otlp_receiver.receiver import Factory

    class Nothing:
        def consume_metrics(self, batch: object) -> None:
            return None

    receiver_module.DEFAULT_MAX_WORKERS = workers
    factory = Factory()
    config = OtlpReceiverConfig(ProtocolsConfig(grpc=GrpcConfig(endpoint=f"{LOOPBACK}:0")))
    receiver = factory.create(config, Nothing())
    receiver.start()
    print(receiver.port, flush=True)
    sys.stdin.read()
    receiver.shutdown()


def serve_aio() -> None:
    """For comparison: a ``grpc.aio`` server whose Export decodes the request and hands it to
    a consumer that does nothing, on the event loop (no thread pool). Not the receiver: its
    consumers block (group commit), which an event loop would have to hop off again."""
    import asyncio

    import grpc
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    def export(body: bytes, context: object) -> bytes:
        request = ExportMetricsServiceRequest.FromString(body)
        list(request.resource_metrics)
        return b""

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.metrics.v1.MetricsService",
            {"Export": grpc.unary_unary_rpc_method_handler(export)}),))
        port = server.add_insecure_port(f"{LOOPBACK}:0")
        await server.start()
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(None)

    asyncio.run(main())


def _client(port: int, body: bytes, duration_s: float, out: Connection) -> None:
    import grpc

    channel = grpc.insecure_channel(f"{LOOPBACK}:{port}")
    call = channel.unary_unary(EXPORT_METHOD, request_serializer=None,
                               response_deserializer=None)
    call(body, timeout=CALL_TIMEOUT_S)
    latencies = []
    end = time.monotonic() + duration_s
    while (now := time.monotonic()) < end:
        call(body, timeout=CALL_TIMEOUT_S)
        latencies.append(time.monotonic() - now)
    out.send(latencies)
    channel.close()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def measure(workers: int, points: int, clients: int, duration_s: float) -> dict[str, float]:
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(workers)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        body = _request(points)
        context = mp.get_context("spawn")
        pipes, processes = [], []
        for _ in range(clients):
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_client, args=(port, body, duration_s, send))
            processes.append(process)
            pipes.append(receive)
        cpu_before, wall_before = _cpu_s(server.pid), time.monotonic()
        for process in processes:
            process.start()
        latencies = np.concatenate([np.array(pipe.recv()) for pipe in pipes])
        wall_s = time.monotonic() - wall_before
        cpu_s = _cpu_s(server.pid) - cpu_before
        for process in processes:
            process.join()
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait()
    requests = latencies.size
    return {"workers": workers, "points": points, "requests_s": requests / wall_s,
            "points_s": requests * points / wall_s, "cpu_cores": cpu_s / wall_s,
            "cpu_us_per_request": cpu_s / requests * 1e6,
            "cpu_us_per_point": cpu_s / requests / points * 1e6,
            "p50_ms": float(np.percentile(latencies, 50) * 1e3),
            "p99_ms": float(np.percentile(latencies, 99) * 1e3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=list(DEFAULT_SIZES))
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")],
                        default=list(DEFAULT_WORKERS),
                        help=f"thread pool sizes; {AIO_WORKERS}: a grpc.aio server instead")
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS)
    parser.add_argument("--duration-s", type=float, default=DEFAULT_DURATION_S)
    args = parser.parse_args(argv)
    if args.serve is not None:
        if args.serve == AIO_WORKERS:
            serve_aio()
        else:
            serve(args.serve)
        return 0
    print(f"{args.clients} closed-loop clients, {args.duration_s:.0f} s per row, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    print("| thread pool | points per request | requests/s | points/s | server CPU (cores) "
          "| CPU us per request | CPU us per point | p50 ms | p99 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for workers in args.workers:
        rows = [measure(workers, size, args.clients, args.duration_s) for size in args.sizes]
        for r in rows:
            print(f"| {workers or 'grpc.aio'} | {r['points']:,} | {r['requests_s']:,.0f} | "
                  f"{r['points_s']:,.0f} | {r['cpu_cores']:.2f} | "
                  f"{r['cpu_us_per_request']:.0f} | {r['cpu_us_per_point']:.2f} | "
                  f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |", flush=True)
        fit = np.polyfit([r["points"] for r in rows], [r["cpu_us_per_request"] for r in rows],
                         1)
        print(f"|  | fit: {fit[1]:.0f} us per request + {fit[0]:.2f} us per point |"
              "  |  |  |  |  |  |  |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
