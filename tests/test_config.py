"""The collector-style config loader: one test per validation rule, fixtures in tests/data."""

from __future__ import annotations

from pathlib import Path

import pytest

import driftline.processor
from driftline import cli
from driftline.processor.config import (
    ComponentID,
    ConfigError,
    PipelineID,
    load_config,
    parse_config,
    parse_duration,
    validate_file,
)
from driftline.processor.ml_drift import DEFAULT_GRACE, DEFAULT_MIN_ROWS, MlDriftConfig

DATA = Path(__file__).parent / "data"
ML_DRIFT = ComponentID("ml_drift")


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """The variables the fixtures reference: an (empty) profile directory and an output file."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    return {"PROFILES": str(profiles), "OUT": str(tmp_path / "out.jsonl")}


def problems_of(name: str, environ: dict[str, str]) -> list[str]:
    return validate_file(DATA / name, environ=environ)


def test_valid_config_overlays_yaml_on_defaults(environ: dict[str, str]) -> None:
    config = load_config(DATA / "valid.yaml", environ=environ)

    assert set(config.pipelines) == {PipelineID("metrics"), PipelineID("traces")}
    metrics = config.pipelines[PipelineID("metrics")]
    assert metrics.receivers == (ComponentID("otlp"),)
    assert metrics.processors == (ML_DRIFT,)
    assert metrics.exporters == (ComponentID("file"),)
    assert config.pipelines[PipelineID("traces")].processors == ()
    drift_config = config.processors[ML_DRIFT]
    assert drift_config.profiles == environ["PROFILES"]
    assert drift_config.window_s == 30.0  # ${env:WINDOW:-30s} with WINDOW unset
    assert drift_config.min_rows == 50  # a whole-value reference is typed: int, not "50"
    assert drift_config.grace_s == 0.5
    assert drift_config.thresholds.wasserstein == 0.2
    assert drift_config.thresholds.psi == MlDriftConfig().thresholds.psi  # default kept
    endpoint = config.receivers[ComponentID("otlp")].protocols.grpc.endpoint
    assert endpoint == "127.0.0.1:0"
    assert config.exporters[ComponentID("file")].path == environ["OUT"]


def test_defaults_apply_where_yaml_is_silent(environ: dict[str, str]) -> None:
    config = parse_config({
        "receivers": {"otlp": None},
        "processors": {"ml_drift": {"profiles": environ["PROFILES"]}},
        "exporters": {"file": {"path": environ["OUT"]}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                              "processors": ["ml_drift"],
                                              "exporters": ["file"]}}},
    }, environ=environ)

    drift_config = config.processors[ML_DRIFT]
    assert drift_config.min_rows == DEFAULT_MIN_ROWS
    assert drift_config.grace == DEFAULT_GRACE
    assert config.receivers[ComponentID("otlp")].protocols.grpc.endpoint == "127.0.0.1:4317"


def test_env_variable_wins_over_its_default(environ: dict[str, str]) -> None:
    config = load_config(DATA / "valid.yaml",
                         environ={**environ, "WINDOW": "45s", "MIN_ROWS": "7"})

    assert config.processors[ML_DRIFT].window_s == 45.0
    assert config.processors[ML_DRIFT].min_rows == 7


def test_env_variable_without_default_is_substituted_when_set(environ: dict[str, str]) -> None:
    config = load_config(DATA / "bad_env_unset.yaml",
                         environ={**environ, "DRIFTLINE_TEST_UNSET": "4317"})

    endpoint = config.receivers[ComponentID("otlp")].protocols.grpc.endpoint
    assert endpoint == "127.0.0.1:4317"  # inside a longer string: inserted as text


def test_numeric_env_value_in_a_string_setting_keeps_its_text(environ: dict[str, str]) -> None:
    config = load_config(DATA / "valid.yaml", environ={**environ, "OUT": "0123"})

    assert config.exporters[ComponentID("file")].path == "0123"  # not 123, not octal 83


def test_env_variable_without_default_unset_is_an_error(environ: dict[str, str]) -> None:
    assert problems_of("bad_env_unset.yaml", environ) == [
        "receivers::otlp::protocols::grpc::endpoint: environment variable "
        "DRIFTLINE_TEST_UNSET is not set; set it or give a default with "
        "${env:DRIFTLINE_TEST_UNSET:-default}"
    ]


def test_double_dollar_is_a_literal_dollar(environ: dict[str, str]) -> None:
    config = parse_config({
        "receivers": {"otlp": None},
        "exporters": {"file": {"path": "/tmp/out-$${env:OUT}.jsonl"}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }, environ=environ)

    assert config.exporters[ComponentID("file")].path == "/tmp/out-${env:OUT}.jsonl"


def test_unknown_key_is_rejected_naming_the_known_ones(environ: dict[str, str]) -> None:
    assert problems_of("bad_unknown_key.yaml", environ) == [
        "processors::ml_drift::windw: unknown key 'windw'; did you mean 'window'? "
        "(known: grace, min_rows, profiles, thresholds, window)"
    ]


def test_unknown_component_type_suggests_the_closest(environ: dict[str, str]) -> None:
    # The pipeline's reference to the bad ID is not reported a second time.
    assert problems_of("bad_unknown_type.yaml", environ) == [
        "receivers::otlpp: unknown receiver type 'otlpp'; did you mean 'otlp'? "
        "(known: otlp, otlp_grpc, otlp_http, otlphttp)"
    ]


def test_pipeline_reference_to_undefined_component(environ: dict[str, str]) -> None:
    assert problems_of("bad_undefined_reference.yaml", environ) == [
        "service::pipelines::metrics::processors: references processor 'ml_drift/canary' "
        "which is not configured; define it under processors or remove it (configured: none)"
    ]


def test_bad_durations(environ: dict[str, str]) -> None:
    assert problems_of("bad_duration.yaml", environ) == [
        "processors::ml_drift::window: must be a positive duration, got '-5s'",
        "processors::ml_drift::grace: must be a duration such as '10s', '500ms', '2m', '1h' "
        "or a number of seconds, got 'soon'",
    ]


def test_missing_profile_directory_names_the_path(environ: dict[str, str]) -> None:
    [problem] = problems_of("bad_missing_profiles.yaml", environ)

    assert problem.startswith("processors::ml_drift::profiles: directory "
                              "'./no-such-profiles-directory' does not exist (resolved to '")
    assert str(Path("no-such-profiles-directory").absolute()) in problem


def test_damaged_profile_in_directory_is_reported(environ: dict[str, str]) -> None:
    (Path(environ["PROFILES"]) / "broken.json").write_text("{not json")

    [problem] = problems_of("valid.yaml", environ)

    assert problem.startswith("processors::ml_drift::profiles: ")
    assert "broken.json: not valid JSON (line 1)" in problem


def test_otlp_grpc_spelling_is_accepted(environ: dict[str, str]) -> None:
    config = load_config(DATA / "valid_otlp_grpc.yaml", environ=environ)

    assert list(config.receivers) == [ComponentID("otlp", "apps")]
    pipeline = config.pipelines[PipelineID("metrics", "drift")]
    assert pipeline.receivers == (ComponentID("otlp", "apps"),)


def test_otlp_and_otlp_grpc_together_are_duplicates(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({
            "receivers": {"otlp": None, "otlp_grpc": None},
            "exporters": {"file": {"path": environ["OUT"]}},
            "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                                  "exporters": ["file"]}}},
        }, environ=environ)

    assert caught.value.problems == [
        "receivers::otlp_grpc: duplicates 'otlp' (both are receiver 'otlp'); keep one of them"
    ]


def test_yaml_syntax_error_gives_line_and_column(environ: dict[str, str]) -> None:
    assert problems_of("bad_yaml_syntax.yaml", environ) == [
        "YAML syntax error at line 4, column 1: expected ',' or '}', but got '<scalar>' "
        "(while parsing a flow mapping started at line 3, column 16)"
    ]


def test_component_in_pipeline_of_unsupported_signal(environ: dict[str, str]) -> None:
    assert problems_of("bad_signal.yaml", environ) == [
        "service::pipelines::traces::processors: processor 'ml_drift' does not support "
        "traces (it supports: metrics)"
    ]


def test_every_problem_is_reported_in_one_pass(environ: dict[str, str]) -> None:
    problems = problems_of("bad_many.yaml", environ)

    assert [p.partition(": ")[0] for p in problems] == [
        "receivers::otlp::protocols::grpc::endpoint",
        "processors::ml_drift::min_rows",
        "processors::ml_drift::thresholds::dataset_share",
        "service::pipelines::metrics::exporters",
        "service::telemetry::logs::level",
    ]
    assert problems[1] == "processors::ml_drift::min_rows: must be an integer, got 'lots'"


def test_config_error_holds_the_list(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DATA / "bad_duration.yaml", environ=environ)

    assert len(caught.value.problems) == 2
    assert str(caught.value).splitlines() == caught.value.problems


@pytest.mark.parametrize(("text", "seconds"), [
    ("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("1m30s", 90.0),
    (15, 15.0), (0.25, 0.25), ("3", 3.0),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["ten seconds", "5x", "", "s", True, None, [1]])
def test_not_durations(text: object) -> None:
    with pytest.raises(ValueError, match="must be a duration"):
        parse_duration(text)


def test_validate_command_prints_problems_and_fails(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    bad = DATA / "bad_duration.yaml"

    assert cli.main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{bad}: processors::ml_drift::window: must be a positive duration, got '-5s'"

    assert cli.main(["validate", str(DATA / "valid.yaml")]) == 0
    assert capsys.readouterr().out.strip() == f"{DATA / 'valid.yaml'}: valid"


def test_public_api_is_pinned() -> None:
    assert sorted(driftline.processor.__all__) == [
        "ComponentError", "Config", "ConfigError", "load_config", "run_collector",
        "validate_file",
    ]
