"""A new user's first hour, run against the built wheel: ``python wheel_smoke.py WHEEL``.

Creates a fresh virtualenv in a temporary folder outside the checkout, installs the wheel
with no extras, and runs from that folder what the README promises the bare install does:
``driftline --version`` (and ``python -m driftline``), ``driftline validate`` on every config
shipped in the wheel, a ``driftline collector`` on the shipped default config that receives
one real OpenTelemetry SDK export and answers on ``/metrics``, and a command that needs an
extra exiting 2 with the line that names it. Then it installs the ``demo`` extra and runs
``driftline demo``. Any step that fails stops the script with exit status 1 and says which.
Only the standard library runs here; everything else runs inside the new virtualenv.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

STEP_TIMEOUT_S = 600
COLLECTOR_START_TIMEOUT_S = 30
SCRAPE_TIMEOUT_S = 30
LISTENING = re.compile(r"^receiver \S+ listening on (\S+) \((OTLP/gRPC|OTLP/HTTP)\)$", re.M)
PROMETHEUS_LISTENING = re.compile(r"^exporter prometheus listening on (\S+)$", re.M)


class SmokeFailure(Exception):
    """A step did not do what a user is promised."""


def run(step: str, argv: list[str], cwd: Path, env: dict[str, str],
        expect_status: int = 0) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=STEP_TIMEOUT_S, check=False)
    took_s = time.monotonic() - started
    if done.returncode != expect_status:
        raise SmokeFailure(f"{step}: exit {done.returncode}, wanted {expect_status}\n"
                           f"$ {' '.join(argv)}\n{done.stdout}\n{done.stderr}")
    print(f"ok  {step} ({took_s:.1f} s)")
    return done


def wheel_version(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    return re.search(r"^Version: (\S+)$", text, re.M).group(1)


def check_version(bin_dir: Path, here: Path, env: dict[str, str], version: str) -> None:
    for step, argv in (("driftline --version", [str(bin_dir / "driftline"), "--version"]),
                       ("python -m driftline --version",
                        [str(bin_dir / "python"), "-m", "driftline", "--version"])):
        out = run(step, argv, here, env).stdout.strip()
        if out != f"driftline {version}":
            raise SmokeFailure(f"{step} printed {out!r}, wanted 'driftline {version}'")


def check_shipped_configs(bin_dir: Path, here: Path, env: dict[str, str]) -> None:
    listing = run("list shipped configs", [str(bin_dir / "python"), "-c", textwrap.dedent("""
        import importlib.resources as r
        for f in sorted(r.files("driftline.collector_config").iterdir()):
            if f.name.endswith(".yaml"):
                print(f)
        """)], here, env).stdout.split()
    if not listing:
        raise SmokeFailure("the wheel ships no collector configs")
    (here / "profiles").mkdir(exist_ok=True)
    for config in listing:
        run(f"driftline validate {Path(config).name}",
            [str(bin_dir / "driftline"), "validate", config], here, env)


def check_missing_extra(bin_dir: Path, here: Path, env: dict[str, str]) -> None:
    (here / "train.csv").write_text("a,b\n1,2\n3,4\n")
    done = run("driftline profile without the data extra",
               [str(bin_dir / "driftline"), "profile", "train.csv", "-o", "p.json",
                "--model", "m"], here, env, expect_status=2)
    lines = done.stderr.strip().splitlines()
    if len(lines) != 1 or "pip install 'driftline[data]'" not in lines[0]:
        raise SmokeFailure(f"wanted one line naming the data extra, got:\n{done.stderr}")


EXPORT_ONE_POINT = """
import sys
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

reader = PeriodicExportingMetricReader(
    OTLPMetricExporter(endpoint=sys.argv[1], insecure=True), export_interval_millis=60_000)
provider = MeterProvider(metric_readers=[reader])
provider.get_meter("smoke").create_counter("smoke.requests").add(7, {"route": "/predict"})
assert provider.force_flush(10_000), "the export did not complete"
provider.shutdown()
"""


def check_collector(bin_dir: Path, here: Path, env: dict[str, str]) -> None:
    import urllib.request

    # Ports the OS picks (one picked here and bound later can be taken in between); the
    # collector prints them.
    collector_env = {**env, "DRIFTLINE_OTLP_GRPC_ENDPOINT": "127.0.0.1:0",
                     "DRIFTLINE_OTLP_HTTP_ENDPOINT": "127.0.0.1:0",
                     "DRIFTLINE_PROMETHEUS_ENDPOINT": "127.0.0.1:0",
                     "DRIFTLINE_DASHBOARD_ENDPOINT": "127.0.0.1:0",
                     "DRIFTLINE_PROFILES": str(here / "profiles"),
                     "DRIFTLINE_OUTPUT": str(here / "output")}
    config = run("find the shipped default config", [str(bin_dir / "python"), "-c",
                 "import importlib.resources as r; "
                 "print(r.files('driftline.collector_config') / 'default.yaml')"],
                 here, env).stdout.strip()
    log_path = here / "collector.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([str(bin_dir / "driftline"), "collector", "--config", config],
                                   cwd=here, env=collector_env, stdout=log,
                                   stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + COLLECTOR_START_TIMEOUT_S
        endpoints: dict[str, str] = {}
        while time.monotonic() < deadline and len(endpoints) < 3:
            if process.poll() is not None:
                raise SmokeFailure(f"the collector exited {process.returncode}:\n"
                                   f"{log_path.read_text()}")
            log_text = log_path.read_text()
            endpoints = {m.group(2): m.group(1) for m in LISTENING.finditer(log_text)}
            if prometheus := PROMETHEUS_LISTENING.search(log_text):
                endpoints["prometheus"] = prometheus.group(1)
            time.sleep(0.1)
        if len(endpoints) < 3:
            raise SmokeFailure(f"the collector did not listen:\n{log_path.read_text()}")
        print("ok  driftline collector --config <shipped default.yaml> listens")
        run("an SDK export reaches the collector",
            [str(bin_dir / "python"), "-c", EXPORT_ONE_POINT, endpoints["OTLP/gRPC"]], here, env)
        deadline = time.monotonic() + SCRAPE_TIMEOUT_S
        body = ""
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://{endpoints['prometheus']}/metrics",
                                        timeout=5) as response:
                body = response.read().decode()
            if re.search(r'^smoke_requests_total\{.*route="/predict".*\} 7(\.0)?$', body, re.M):
                print("ok  /metrics shows the exported point")
                break
            time.sleep(0.2)
        else:
            raise SmokeFailure(f"/metrics never showed smoke_requests_total 7:\n{body[-2000:]}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise SmokeFailure("the collector did not stop within 30 s of SIGTERM") from None
    if process.returncode != 0:
        raise SmokeFailure(f"the collector exited {process.returncode} after SIGTERM:\n"
                           f"{log_path.read_text()}")


def main(wheel_arg: str) -> int:
    wheel = Path(wheel_arg).resolve()
    version = wheel_version(wheel)
    with tempfile.TemporaryDirectory(prefix="driftline-smoke-") as tmp:
        here = Path(tmp)
        venv = here / "venv"
        # No variables of the caller's virtualenv or checkout may leak into the user's shell.
        env = {key: value for key, value in os.environ.items()
               if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        try:
            run("python -m venv", [sys.executable, "-m", "venv", str(venv)], here, env)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            run("pip install driftline (no extras)", [*pip, str(wheel)], here, env)
            check_version(venv / "bin", here, env, version)
            check_shipped_configs(venv / "bin", here, env)
            check_missing_extra(venv / "bin", here, env)
            check_collector(venv / "bin", here, env)
            run("pip install 'driftline[demo]'", [*pip, f"{wheel}[demo]"], here, env)
            try:
                demo = run("driftline demo", [str(venv / "bin" / "driftline"), "demo"], here,
                           env)
            except SmokeFailure:
                log = here / "driftline-demo" / "output" / "processor.log"
                if log.exists():
                    print("the demo's processor log, last lines:", file=sys.stderr)
                    print("\n".join(log.read_text().splitlines()[-40:]), file=sys.stderr)
                raise
            print(textwrap.indent(demo.stdout.strip().splitlines()[-1], "    "))
        except (SmokeFailure, subprocess.TimeoutExpired) as exc:
            print(f"FAILED {exc}", file=sys.stderr)
            return 1
    print("wheel smoke: every step passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
