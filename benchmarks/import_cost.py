"""What ``import driftline.auto`` adds to a scikit-learn application's start.

Run: ``.venv-dev/bin/python benchmarks/import_cost.py [--runs 15] [--before PYTHON]``. Each
run is a fresh process that imports scikit-learn (as the application does anyway), then
times ``import driftline.auto`` alone: with scikit-learn already imported, that includes
setting up the providers from the default ``OTEL_*`` settings (OTLP over gRPC) and
instrumenting scikit-learn. ``--before PYTHON`` runs the same in another interpreter (an
install of an earlier commit), alternating with this one; medians and spread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

DEFAULT_RUNS = 15
APP = """
import time, sys
import sklearn.linear_model, sklearn.ensemble
start = time.perf_counter()
import driftline.auto
added_ms = (time.perf_counter() - start) * 1e3
otlp = sum(m.startswith(("grpc", "opentelemetry.exporter.otlp")) for m in sys.modules)
print(f"{added_ms:.1f} {otlp}")
import os
os._exit(0)
"""


def _once(python: str, env: dict[str, str]) -> tuple[float, int]:
    # From a neutral folder: ``-c`` puts the working directory first on sys.path.
    out = subprocess.run([python, "-c", APP], capture_output=True, text=True, check=True,
                         env=env, cwd=tempfile.gettempdir()).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--before", help="interpreter with an earlier driftline installed")
    parser.add_argument("--before-path", default="",
                        help="PYTHONPATH for --before (where its dependencies are)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    pythons = {"this checkout": (sys.executable, env)}
    if args.before:
        pythons["before"] = (args.before, {**env, "PYTHONPATH": args.before_path})
    added: dict[str, list[float]] = {name: [] for name in pythons}
    otlp_modules: dict[str, int] = {}
    for run in range(args.runs):
        order = list(pythons) if run % 2 == 0 else list(reversed(pythons))
        for name in order:
            ms, modules = _once(*pythons[name])
            added[name].append(ms)
            otlp_modules[name] = modules
    print(f"\n`import driftline.auto` after scikit-learn, ms: median (min-max) of {args.runs} "
          "alternating processes\n")
    print("| driftline | added to start (ms) | gRPC/OTLP modules imported at start |")
    print("|---|---:|---:|")
    for name, values in added.items():
        print(f"| {name} | {statistics.median(values):.0f} ({min(values):.0f}-"
              f"{max(values):.0f}) | {otlp_modules[name]} |")


if __name__ == "__main__":
    main()
