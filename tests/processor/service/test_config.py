"""The collector-style config loader: one test per validation rule, fixtures in testdata/."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

import driftline.processor
from driftline import cli
from driftline.processor.ml_drift.processor import DEFAULT_GRACE, DEFAULT_MIN_ROWS, MlDriftConfig
from driftline.processor.otlp_receiver.config import OtlpReceiverConfig
from driftline.processor.service.config import (
    DEFAULT_TELEMETRY_METRICS_INTERVAL_S,
    DEFAULT_TELEMETRY_METRICS_LEVEL,
    ComponentID,
    ConfigError,
    PipelineConfig,
    PipelineID,
    TelemetryMetricsConfig,
    key_lines,
    load_config,
    parse_config,
    parse_duration,
    problem_line,
    validate_file,
)
from driftline.processor.service.registry import KIND_EXPORTER, KIND_PROCESSOR, default_factories

DATA = Path(__file__).parent / "testdata"


def known(names: Iterable[str]) -> str:
    """The ``(known: ...)`` tail of an unknown-name message, as the loader sorts it."""
    return f"(known: {', '.join(sorted(names))})"


def settings_of(config_class: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_class) if f.init]


def types_of(kind: str) -> list[str]:
    """Every accepted spelling of the component types of ``kind`` in this install."""
    return list(default_factories().of_kind(kind))
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


def test_unclosed_env_reference_is_an_error(environ: dict[str, str]) -> None:
    assert problems_of("bad_env_unclosed.yaml", environ) == [
        "exporters::file::path: '${' is never closed with '}' in '${env:OUT'; write "
        "${env:NAME} or ${env:NAME:-default}, or $$ for a literal $"
    ]


@pytest.mark.parametrize(("written", "expected"), [
    ("$$", "$"),
    ("$$$$", "$$"),
    ("a$$b", "a$b"),
    ("$${env:OUT}", "${env:OUT}"),
    ("$$${env:NAME}", "$value"),
    ("price$5", "price$5"),  # a lone $ not before '{' is kept
    ("${env:NAME}-${env:NAME}", "value-value"),
    ("p-${env:EMPTY}", "p-"),  # set but empty: the empty value, as in the collector
    ("p-${env:EMPTY:-fallback}", "p-"),
    ("p-${env:UNSET:-}", "p-"),
    ("${env:UNSET:-127.0.0.1:4317}", "127.0.0.1:4317"),  # the default may hold ':'
])
def test_env_substitution_edge_cases(environ: dict[str, str], written: str,
                                     expected: str) -> None:
    config = parse_config({
        "receivers": {"otlp": None},
        "exporters": {"file": {"path": environ["OUT"]}, "file/x": {"path": written}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                              "exporters": ["file"]}}},
    }, environ={**environ, "NAME": "value", "EMPTY": ""})

    assert config.exporters[ComponentID("file", "x")].path == expected


@pytest.mark.parametrize(("written", "problem"), [
    # The collector's default scheme is env: ${NAME} is ${env:NAME}.
    ("${NAME}", "environment variable NAME is not set; set it or give a default with "
                "${env:NAME:-default}"),
    ("${file:/no/such/x}", "cannot read the file of '${file:/no/such/x}': No such file or "
                           "directory (looked for '/no/such/x')"),
    ("${http:x}", "unsupported reference '${http:x}'; write ${NAME}, ${env:NAME}, "
                  "${env:NAME:-default} or ${file:PATH} (and $$ for a literal $)"),
    ("${env:1BAD}", "invalid environment variable name '1BAD' in '${env:1BAD}'"),
    ("${env:A}${env:B}", "environment variable A is not set; set it or give a default with "
                         "${env:A:-default}"),
])
def test_bad_env_references_name_the_path(environ: dict[str, str], written: str,
                                          problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({
            "receivers": {"otlp": None},
            "exporters": {"file": {"path": written}},
            "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                                  "exporters": ["file"]}}},
        }, environ={})

    assert caught.value.problems[0] == f"exporters::file::path: {problem}"


def test_every_unset_variable_is_reported(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "${env:EP}"}}}},
            "exporters": {"file": {"path": "${env:A}/${env:B}"}},
            "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                                  "exporters": ["file"]}}},
        }, environ={})

    assert [(p.partition(": ")[0], p.split()[3]) for p in caught.value.problems] == [
        ("receivers::otlp::protocols::grpc::endpoint", "EP"),
        ("exporters::file::path", "A"),
        ("exporters::file::path", "B"),
    ]


def test_unknown_key_is_rejected_naming_the_known_ones(environ: dict[str, str]) -> None:
    assert problems_of("bad_unknown_key.yaml", environ) == [
        "processors::ml_drift::windw: unknown key 'windw'; did you mean 'window'? "
        f"{known(settings_of(MlDriftConfig))}"
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


def test_full_config_with_several_pipelines_per_signal(environ: dict[str, str]) -> None:
    config = load_config(DATA / "good_full.yaml", environ=environ)

    assert set(config.pipelines) == {PipelineID("metrics"), PipelineID("metrics", "canary"),
                                     PipelineID("traces"), PipelineID("logs")}
    serverless = ComponentID("otlp", "serverless")  # written otlphttp/serverless
    metrics = config.pipelines[PipelineID("metrics")]
    assert metrics.receivers == (ComponentID("otlp"), serverless)  # via otlp_http/serverless
    canary = config.pipelines[PipelineID("metrics", "canary")]
    assert canary == PipelineConfig((ComponentID("otlp"),), (ComponentID("ml_drift", "canary"),),
                                    (ComponentID("file", "canary"),))
    assert config.pipelines[PipelineID("logs")].receivers == (serverless,)
    assert config.receivers[serverless].protocols.grpc is None
    assert config.receivers[serverless].protocols.http.endpoint == "127.0.0.1:0"
    assert config.processors[ML_DRIFT].window_s == 60.0
    assert config.processors[ComponentID("ml_drift", "canary")].min_rows == 20
    assert config.exporters[ComponentID("file", "canary")].path == f"{environ['OUT']}.canary-$1"
    assert config.log_level == "debug"
    assert config.telemetry_metrics == TelemetryMetricsConfig(level="detailed", interval_s=30.0)


def test_telemetry_metrics_defaults(environ: dict[str, str]) -> None:
    config = load_config(DATA / "valid.yaml", environ=environ)

    assert config.telemetry_metrics.level == DEFAULT_TELEMETRY_METRICS_LEVEL == "basic"
    assert config.telemetry_metrics.interval_s == DEFAULT_TELEMETRY_METRICS_INTERVAL_S == 10.0
    assert config.log_level == "info"


@pytest.mark.parametrize(("metrics", "expected"), [
    ({"level": "none"}, TelemetryMetricsConfig("none", 10.0)),
    ({"level": "Normal", "interval": "500ms"}, TelemetryMetricsConfig("normal", 0.5)),
    ({"interval": "2s"}, TelemetryMetricsConfig("basic", 2.0)),
    (None, TelemetryMetricsConfig("basic", 10.0)),
])
def test_telemetry_metrics_settings(environ: dict[str, str], metrics: object,
                                    expected: TelemetryMetricsConfig) -> None:
    config = parse_config({
        "receivers": {"otlp": None},
        "exporters": {"file": {"path": environ["OUT"]}},
        "service": {"telemetry": {"metrics": metrics},
                    "pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }, environ=environ)

    assert config.telemetry_metrics == expected


def test_bad_telemetry_metrics(environ: dict[str, str]) -> None:
    assert problems_of("bad_telemetry_metrics.yaml", environ) == [
        "service::telemetry::metrics::adress: unknown key 'adress'; did you mean 'address'? "
        "(known: address, interval, level, readers, views)",
        "service::telemetry::metrics::level: must be one of none, basic, normal, detailed, "
        "got 'verbose'",
        "service::telemetry::metrics::interval: must be a positive duration, got '0s'",
    ]


def test_pipeline_without_receivers(environ: dict[str, str]) -> None:
    assert problems_of("bad_no_receivers.yaml", environ) == [
        "service::pipelines::metrics::receivers: a pipeline needs at least one receiver"
    ]


def test_pipeline_without_exporters(environ: dict[str, str]) -> None:
    assert problems_of("bad_no_exporters.yaml", environ) == [
        "service::pipelines::metrics::exporters: a pipeline needs at least one exporter"
    ]


def test_service_extension_that_is_not_defined(environ: dict[str, str]) -> None:
    assert problems_of("bad_undefined_extension.yaml", environ) == [
        "service::extensions: references extension 'health_check' which is not configured; "
        "define it under extensions or remove it (configured: none)"
    ]


def test_word_where_a_number_is_expected(environ: dict[str, str]) -> None:
    assert problems_of("bad_wrong_type.yaml", environ) == [
        "receivers::otlp::protocols::grpc::max_recv_msg_size_mib: must be an integer, "
        "got 'sixteen'",
        "processors::ml_drift::thresholds::wasserstein: must be a number, got 'high'",
    ]


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
        "YAML syntax error at line 4, column 1 ('exporters:'): expected ',' or '}', but got "
        "'<scalar>' (while parsing a flow mapping started at line 3, column 16); close the "
        "'{' of line 3 with '}', or quote a value holding ',' or '{'"
    ]


def test_tab_indentation_is_named_with_its_line(environ: dict[str, str]) -> None:
    assert problems_of("bad_tabs.yaml", environ) == [
        "YAML syntax error at line 6, column 1 ('\\tendpoint: 127.0.0.1:4317'): found "
        "character '\\t' that cannot start any token; YAML indents with spaces only: "
        "replace the tab on line 6 with spaces"
    ]


def test_misaligned_key_is_a_syntax_error_with_an_indentation_hint(
        environ: dict[str, str]) -> None:
    assert problems_of("bad_indentation.yaml", environ) == [
        "YAML syntax error at line 11, column 6 ('     exporters: [file]'): expected "
        "<block end>, but found '<block mapping start>' (while parsing a block mapping "
        "started at line 9, column 5); line 11 is indented differently from the keys before "
        "it: keys of one mapping start in the same column, and a nested key is indented "
        "further than its parent"
    ]


def test_setting_indented_as_a_component_says_where_it_belongs(
        environ: dict[str, str]) -> None:
    assert problems_of("bad_indentation_setting.yaml", environ) == [
        "processors::window: unknown processor type 'window'; it looks like setting window "
        "of processor 'ml_drift': indent it so its path is processors::ml_drift::window "
        f"{known(types_of(KIND_PROCESSOR))}"
    ]


def test_nested_setting_written_one_level_too_high(environ: dict[str, str]) -> None:
    assert problems_of("bad_misplaced_key.yaml", environ) == [
        "receivers::otlp::grpc: unknown key 'grpc'; it belongs at "
        "receivers::otlp::protocols::grpc: indent it there "
        f"{known(settings_of(OtlpReceiverConfig))}"
    ]


def test_misplaced_sections_are_pointed_to_their_parent(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({
            "receivers": {"otlp": None},
            "prometheus": None,
            "pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}},
            "exporters": {"file": {"path": environ["OUT"]}},
            "service": {"metrics": {"receivers": ["otlp"]}, "exporters": ["file"],
                        "pipelines": {"metrics": {"receivers": ["otlp"],
                                                  "exporters": ["file"]}}},
        }, environ=environ)

    known_top = "(known: connectors, exporters, extensions, processors, receivers, service)"
    known_service = "(known: extensions, pipelines, telemetry)"
    assert caught.value.problems == [
        f"prometheus: unknown top-level key 'prometheus'; 'prometheus' is an exporter type: "
        f"indent it under exporters {known_top}",
        f"pipelines: unknown top-level key 'pipelines'; it belongs under service: indent it "
        f"there {known_top}",
        f"service::metrics: unknown key 'metrics'; a pipeline belongs under "
        f"service::pipelines: indent it there {known_service}",
        f"service::exporters: unknown key 'exporters'; that list belongs to a pipeline: "
        f"indent it under service::pipelines::<signal> {known_service}",
    ]


def test_key_written_twice_is_reported_with_both_lines(environ: dict[str, str]) -> None:
    assert problems_of("bad_duplicate_key.yaml", environ) == [
        "receivers::otlp: written twice (lines 3 and 7); YAML keeps only the last, so merge "
        "them or remove one (two components of one type need names: 'otlp/a', 'otlp/b')"
    ]


def test_duplicate_keys_and_other_problems_are_reported_together(
        tmp_path: Path, environ: dict[str, str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text((DATA / "bad_duplicate_key.yaml").read_text()
                      .replace("exporters: [file]", "exporters: [fil]"))

    problems = validate_file(config, environ=environ)

    assert [p.partition(": ")[0] for p in problems] == [
        "receivers::otlp", "service::pipelines::metrics::exporters"]


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
    assert err[0] == (f"{bad}:6: processors::ml_drift::window: must be a positive duration, "
                      "got '-5s'")
    assert len(err) == 2

    assert cli.main(["validate", str(DATA / "valid.yaml")]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{DATA / 'valid.yaml'}: OK: 2 pipelines (metrics, traces); 1 receiver (otlp); "
        "1 processor (ml_drift); 1 exporter (file); 0 extensions")


def test_public_api_is_pinned() -> None:
    assert sorted(driftline.processor.__all__) == [
        "ComponentError", "Config", "ConfigError", "load_config", "run_collector",
        "validate_file",
    ]


def _problems(data: dict[str, object], environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ=environ)
    return caught.value.problems


def test_section_written_as_a_list(environ: dict[str, str]) -> None:
    assert _problems({
        "receivers": ["otlp"],
        "exporters": {"file": {"path": environ["OUT"]}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }, environ)[0] == (
        "receivers: must be a mapping of component IDs to settings, got ['otlp']; write each "
        "component as a key ending in ':' on its own line under receivers")


def test_pipeline_list_written_as_a_word(environ: dict[str, str]) -> None:
    assert _problems({
        "receivers": {"otlp": None},
        "exporters": {"file": {"path": environ["OUT"]}},
        "service": {"pipelines": {"metrics": {"receivers": "otlp", "exporters": ["file"]}}},
    }, environ) == [
        "service::pipelines::metrics::receivers: must be a list of receiver IDs, got 'otlp'; "
        "write [otlp]"]


def test_component_defined_in_the_section_of_another_kind(environ: dict[str, str]) -> None:
    assert _problems({
        "receivers": {"otlp": None},
        "exporters": {"file": {"path": environ["OUT"]}, "ml_drift/out": None},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }, environ) == [
        "exporters::ml_drift/out: unknown exporter type 'ml_drift'; 'ml_drift' is a processor "
        f"type here, not an exporter {known(types_of(KIND_EXPORTER))}"]


def test_pipeline_lists_a_component_under_the_wrong_kind(environ: dict[str, str]) -> None:
    assert _problems({
        "receivers": {"otlp": None},
        "exporters": {"file": {"path": environ["OUT"]}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp", "file"],
                                             "exporters": ["file"]}}},
    }, environ) == [
        "service::pipelines::traces::receivers: references receiver 'file' which is not "
        "configured; 'file' is an exporter type here, not a receiver: list it in exporters "
        "(configured: otlp)"]


def test_authenticator_must_be_an_enabled_extension(environ: dict[str, str]) -> None:
    assert problems_of("bad_authenticator_not_enabled.yaml", environ) == [
        "receivers::otlp::protocols::grpc::auth::authenticator: extension 'bearertokenauth' "
        "is not enabled; define it under extensions and list it in service::extensions "
        "(enabled: none)"]


def test_enabled_authenticator_is_accepted(tmp_path: Path, environ: dict[str, str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text((DATA / "bad_authenticator_not_enabled.yaml").read_text()
                      .replace("service:\n", "service:\n  extensions: [bearertokenauth]\n"))

    loaded = load_config(config, environ=environ)

    assert loaded.service_extensions == (ComponentID("bearertokenauth"),)
    grpc = loaded.receivers[ComponentID("otlp")].protocols.grpc
    assert grpc.auth.authenticator == "bearertokenauth"


def test_the_reference_example_in_the_docs_is_valid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "config.md"
    example = docs.read_text(encoding="utf-8").split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "profiles").mkdir()
    monkeypatch.chdir(tmp_path)  # the example's profiles default is ./profiles

    config = parse_config(yaml.safe_load(example), environ={})

    assert set(config.pipelines) == {PipelineID("metrics"), PipelineID("traces")}
    assert config.service_extensions == (ComponentID("health_check"),)
    assert config.telemetry_metrics == TelemetryMetricsConfig("basic", 10.0)


def test_anchors_aliases_and_merge_keys_are_yaml_not_duplicates(
        tmp_path: Path, environ: dict[str, str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("""\
receivers:
  otlp:
exporters:
  file: &file
    path: ${env:OUT}
    flush_interval: 2s
  file/b:
    <<: *file
    path: ${env:OUT}.b
service:
  pipelines:
    metrics: &pipeline
      receivers: [otlp]
      exporters: [file, file/b]
    metrics/copy: *pipeline
""")

    loaded = load_config(config, environ=environ)

    b = loaded.exporters[ComponentID("file", "b")]
    assert (b.path, b.flush_interval) == (f"{environ['OUT']}.b", "2s")
    assert (loaded.pipelines[PipelineID("metrics", "copy")]
            == loaded.pipelines[PipelineID("metrics")])


@pytest.mark.parametrize(("text", "problem"), [
    ("receivers:\n  otlp:\n---\nexporters:\n",
     "YAML syntax error at line 3, column 1 ('---'): but found another document (expected a "
     "single document in the stream started at line 1, column 1); a config is one YAML "
     "document: remove the '---' on line 3 and what follows, or split the file"),
    ("receivers: &r\n  - *r\n",
     "YAML alias loop at line 1: the node anchored there contains an alias to itself; write "
     "the values out instead"),
])
def test_yaml_that_cannot_be_a_config(tmp_path: Path, environ: dict[str, str], text: str,
                                      problem: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)

    assert validate_file(config, environ=environ) == [problem]


@pytest.mark.parametrize("word", ["true", "false"])
def test_env_true_false_is_a_bool_for_a_flag_and_text_for_a_string(
        environ: dict[str, str], word: str) -> None:
    config = parse_config({
        "receivers": {"otlp": None},
        "exporters": {"file": {"path": "${env:WORD}"},
                      "prometheus": {"add_ratio_suffix": "${env:WORD}",
                                     "const_labels": {"flag": "${env:WORD}",
                                                      "build": "${env:BUILD}"}}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"],
                                              "exporters": ["file", "prometheus"]}}},
    }, environ={**environ, "WORD": word, "BUILD": "0123"})

    assert config.exporters[ComponentID("file")].path == word
    prometheus = config.exporters[ComponentID("prometheus")]
    assert prometheus.add_ratio_suffix is (word == "true")
    assert prometheus.const_labels == {"flag": word, "build": "0123"}  # text, not 123
    assert {type(v) for v in prometheus.const_labels.values()} == {str}


def test_key_lines_map_yaml_paths_to_lines() -> None:
    lines = key_lines(DATA / "bad_many.yaml")

    assert lines["receivers"] == 2
    assert lines["receivers::otlp::protocols::grpc::endpoint"] == 6
    assert lines["processors::ml_drift::thresholds::dataset_share"] == 12
    assert lines["service::pipelines::metrics::exporters"] == 21
    assert key_lines(DATA / "bad_tabs.yaml") == {}  # unreadable YAML: its error says where
    assert key_lines(DATA / "no-such-file.yaml") == {}


@pytest.mark.parametrize(("problem", "line"), [
    ("processors::ml_drift::min_rows: must be an integer, got 'lots'", 10),
    # A key left out is placed at its nearest written parent.
    ("processors::ml_drift::thresholds::psi: must be a number", 11),
    ("service::pipelines::metrics::exporters: references exporter 'prometheus'", 21),
    ("YAML syntax error at line 4, column 1 ('x'): expected", 4),
    ("the config is empty; it needs receivers", None),
    ("extensions::health_check: nowhere in the file", None),
])
def test_problem_line(problem: str, line: int | None) -> None:
    assert problem_line(problem, key_lines(DATA / "bad_many.yaml")) == line
