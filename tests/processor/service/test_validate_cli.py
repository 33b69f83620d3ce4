"""``driftline validate`` and the collector's start-up errors, run as real subprocesses.

Each test starts the installed ``driftline`` console script (the one next to this Python),
as an operator would, and reads its exit status, stdout and stderr.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftline.collector_config import shipped
from driftline.processor.service.registry import default_factories

DATA = Path(__file__).parent / "testdata"
DEFAULT_CONFIG = shipped("default.yaml")
DRIFTLINE = Path(sys.executable).with_name("driftline")
# A safety net so a hung process fails the test instead of the run; not a speed assertion.
PROCESS_TIMEOUT_S = 60
# How `driftline validate` starts a problem line: FILE: or FILE:LINE:, then a space.
FILE_LINE = re.compile(r"(?P<file>.+?)(?::(?P<line>\d+))?: ")


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DRIFTLINE), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=PROCESS_TIMEOUT_S, check=False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The process environment without the operator's DRIFTLINE_* overrides, plus the
    PROFILES (an empty directory) and OUT variables the fixtures reference."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    return {**clean, "PROFILES": str(profiles), "OUT": str(tmp_path / "out.jsonl")}


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket is listening on for the whole test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_valid_config_prints_one_ok_line(env: dict[str, str], tmp_path: Path) -> None:
    config = DATA / "good_full.yaml"

    result = run(["validate", str(config)], env, tmp_path)

    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout == (
        f"{config}: OK: 4 pipelines (logs, metrics, metrics/canary, traces); "
        "2 receivers (otlp, otlp/serverless); 2 processors (ml_drift, ml_drift/canary); "
        "3 exporters (file, file/canary, file/traces); 0 extensions\n")


def test_components_defined_but_not_used_are_named(env: dict[str, str],
                                                    tmp_path: Path) -> None:
    config = DATA / "good_unused.yaml"

    result = run(["validate", str(config)], env, tmp_path)

    assert result.returncode == 0
    assert result.stdout == (
        f"{config}: OK: 1 pipeline (metrics); 1 receiver (otlp); 0 processors; "
        "1 exporter (file); 0 extensions; defined but not used, so not started: "
        "receivers::otlp/spare, processors::batch, extensions::health_check\n")


def test_shipped_default_config_validates(env: dict[str, str], tmp_path: Path) -> None:
    # default.yaml reads profiles from ./profiles unless DRIFTLINE_PROFILES says otherwise;
    # the env fixture made tmp_path/profiles, and the command runs in tmp_path.
    result = run(["validate", str(DEFAULT_CONFIG)], env, tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # The counts follow the shipped file; the pipelines it has always had must be there.
    summary = re.fullmatch(
        rf"{re.escape(str(DEFAULT_CONFIG))}: OK: \d+ pipelines \((?P<pipelines>[^)]*)\); "
        r"\d+ receivers? \([^)]*\); \d+ processors? \([^)]*\); \d+ exporters? \([^)]*\); "
        r"\d+ extensions?( \([^)]*\))?\n", result.stdout)
    assert summary is not None, result.stdout
    assert {"metrics", "traces"} <= set(summary["pipelines"].split(", "))


def test_default_config_without_its_profile_directory(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    missing = tmp_path / "not-there"

    result = run(["validate", str(DEFAULT_CONFIG)],
                 {**env, "DRIFTLINE_PROFILES": str(missing)}, tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    where, _, problem = result.stderr.partition(" ")
    assert problem == (
        f"processors::ml_drift::profiles: directory '{missing}' does not exist (resolved to "
        f"'{missing}'); create it and put the reference profiles there, or fix the path\n")
    # FILE:LINE: with the line of the profiles key in the shipped file.
    file, line = where.removesuffix(":").rsplit(":", 1)
    assert file == str(DEFAULT_CONFIG)
    assert DEFAULT_CONFIG.read_text().splitlines()[int(line) - 1].strip().startswith(
        "profiles:")


def test_every_problem_on_its_own_line(env: dict[str, str], tmp_path: Path) -> None:
    config = DATA / "bad_many.yaml"

    result = run(["validate", str(config)], env, tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    # FILE:LINE: yaml::path: message, the line being where the key is written.
    assert [line.removeprefix(f"{config}:").partition(": ")[0] for line in lines] == [
        "6", "10", "12", "21", "24"]
    assert [line.split(": ")[1] for line in lines] == [
        "receivers::otlp::protocols::grpc::endpoint",
        "processors::ml_drift::min_rows",
        "processors::ml_drift::thresholds::dataset_share",
        "service::pipelines::metrics::exporters",
        "service::telemetry::logs::level",
    ]
    text = config.read_text().splitlines()
    assert [text[n - 1].split(":")[0].strip() for n in (6, 10, 12, 21, 24)] == [
        "endpoint", "min_rows", "dataset_share", "exporters", "level"]


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("bad_*.yaml")))
def test_every_bad_fixture_fails_with_yaml_paths_or_lines(
        env: dict[str, str], tmp_path: Path, name: str) -> None:
    config = DATA / name

    result = run(["validate", str(config)], env, tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines
    for line in lines:
        located = FILE_LINE.match(line)
        assert located is not None and located["file"] == str(config), line
        assert located["line"] is not None, line  # every fixture's problem has a place
        problem = line[located.end():]
        # Each problem starts with the YAML path of the bad key (a top-level section name
        # or a path under one), or, for unreadable YAML, with the line and column.
        head = problem.partition(": ")[0]
        assert (head.partition("::")[0] in ("receivers", "processors", "exporters",
                                            "extensions", "service")
                or head.startswith("YAML syntax error at line ")), problem


def test_missing_file(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["validate", "no-such.yaml"], env, tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"no-such.yaml: cannot read the config file: no such file (looked for "
        f"'{tmp_path / 'no-such.yaml'}'); give the path of a collector-style YAML config, "
        "e.g. collector-config/default.yaml\n")


def test_directory_instead_of_a_file(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["validate", str(tmp_path)], env, tmp_path)

    assert result.returncode == 1
    assert result.stderr == (f"{tmp_path}: cannot read the config file: '{tmp_path}' is a "
                             "directory; give the path of a YAML file\n")


def test_file_that_is_not_utf8(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes("receivers:\n  otlp: # caf\u00e9\n".encode("latin-1"))

    result = run(["validate", str(config)], env, tmp_path)

    assert result.returncode == 1
    assert result.stderr == (f"{config}: cannot read the config file: not UTF-8 text (byte "
                             "0xe9 at offset 24); save it as UTF-8\n")


def test_empty_file(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "empty.yaml"
    config.write_text("# nothing yet\n")

    result = run(["validate", str(config)], env, tmp_path)

    assert result.returncode == 1
    assert result.stderr == (f"{config}: the config is empty; it needs receivers, exporters "
                             "and service::pipelines\n")


def test_collector_refuses_an_invalid_config_and_points_to_validate(
        env: dict[str, str], tmp_path: Path) -> None:
    config = DATA / "bad_unknown_type.yaml"

    result = run(["collector", "--config", str(config)], env, tmp_path)

    receivers = ", ".join(sorted(default_factories().receivers))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{config}:2: receivers::otlpp: unknown receiver type 'otlpp'; did you mean 'otlp'? "
        f"(known: {receivers})",  # with the key's line, as `driftline validate` prints it
        f"{config}: invalid config (1 problem(s)); fix it and check with `driftline validate`",
    ]


def bind_error(endpoint: str, key: str) -> re.Pattern[str]:
    """The collector's last word when a receiver cannot bind: which component, which
    endpoint, why, which key to change (relative to the receiver) and what to do."""
    return re.compile(
        rf"driftline collector: cannot start receiver '?otlp'?: cannot listen on "
        rf"{re.escape(endpoint)} \(.+\): the port is probably in use by another process; "
        rf"stop it or set {re.escape(key)} to another port")


def _receiver_config(tmp_path: Path, protocols: str) -> Path:
    config = tmp_path / "collector.yaml"
    config.write_text(f"""\
receivers:
  otlp:
    protocols:
{protocols}
exporters:
  file:
    path: ${{env:OUT}}
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file]
""")
    return config


@pytest.mark.integration
def test_collector_with_grpc_port_in_use_exits_naming_endpoint_and_key(
        env: dict[str, str], tmp_path: Path, held_port: int) -> None:
    endpoint = f"127.0.0.1:{held_port}"
    config = _receiver_config(tmp_path, f"      grpc:\n        endpoint: {endpoint}")

    # validate checks the file, not the machine: the port is only tried at start.
    assert run(["validate", str(config)], env, tmp_path).returncode == 0
    result = run(["collector", "--config", str(config)], env, tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    error = [line for line in result.stderr.splitlines()
             if line.startswith("driftline collector: ")]
    assert len(error) == 1, result.stderr
    assert bind_error(endpoint, "protocols::grpc::endpoint").fullmatch(error[0]), error[0]


@pytest.mark.integration
def test_collector_with_http_port_in_use_exits_naming_endpoint_and_key(
        env: dict[str, str], tmp_path: Path, held_port: int) -> None:
    endpoint = f"127.0.0.1:{held_port}"
    config = _receiver_config(
        tmp_path, f"      grpc:\n        endpoint: 127.0.0.1:0\n"
                  f"      http:\n        endpoint: {endpoint}")

    result = run(["collector", "--config", str(config)], env, tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""  # nothing was announced as listening, not even gRPC
    error = [line for line in result.stderr.splitlines()
             if line.startswith("driftline collector: ")]
    assert len(error) == 1, result.stderr
    assert bind_error(endpoint, "protocols::http::endpoint").fullmatch(error[0]), error[0]
    assert f"({os.strerror(errno.EADDRINUSE)})" in error[0]


@pytest.mark.integration
@pytest.mark.parametrize(("kind", "component", "section"), [
    ("exporter", "prometheus", """\
exporters:
  prometheus:
    endpoint: {endpoint}
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheus]
"""),
    ("extension", "health_check", """\
exporters:
  file:
    path: ${{env:OUT}}
extensions:
  health_check:
    endpoint: {endpoint}
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file]
"""),
])
def test_collector_with_other_ports_in_use_exits_naming_the_endpoint(
        env: dict[str, str], tmp_path: Path, held_port: int, kind: str, component: str,
        section: str) -> None:
    # Each component words its own bind error; what they share is checked here: the exit
    # status, the component, the endpoint, the cause and the key to change.
    endpoint = f"127.0.0.1:{held_port}"
    config = tmp_path / "collector.yaml"
    config.write_text("receivers:\n  otlp:\n    protocols:\n      grpc:\n"
                      "        endpoint: 127.0.0.1:0\n" + section.format(endpoint=endpoint))

    result = run(["collector", "--config", str(config)], env, tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    error = [line for line in result.stderr.splitlines()
             if line.startswith("driftline collector: ")]
    assert len(error) == 1, result.stderr
    assert error[0].startswith(f"driftline collector: cannot start {kind} '{component}': ")
    assert endpoint in error[0]
    assert os.strerror(errno.EADDRINUSE) in error[0]
    assert "endpoint" in error[0].partition(os.strerror(errno.EADDRINUSE))[2]
