"""The ``driftline`` command: profile, compare, collector, validate, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from driftline.labels import TASKS

if TYPE_CHECKING:
    from driftline.compare import Comparison
    from driftline.processor.service.config import Config

# Exit statuses: drift found or not is a result, not a failure; bad input is a usage error.
EXIT_OK = 0
EXIT_BAD_INPUT = 2
# `driftline validate`: the config (or its file) has problems.
EXIT_INVALID_CONFIG = 1
DESCRIPTION = ("Driftline: drift and performance monitoring for ML models, the OpenTelemetry "
               "way. Capture reference profiles, compare data offline, run the processor.")
# The optional dependencies a command may need, by the top-level module that is missing:
# the command then names the extra to install instead of showing a traceback.
EXTRA_OF_MODULE = {"pandas": "data", "pyarrow": "data", "sklearn": "sklearn", "torch": "torch"}
# A command whose own extra holds all it needs is named by that extra instead.
EXTRA_OF_COMMAND = {"demo": "demo"}


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], Callable[[int], None] | None]]:
    """``start(path)`` gives a rows callback drawing a bar on stderr, or None when disabled."""
    from driftline._progress import Progress, expected_rows, wanted

    bars: list[Progress] = []
    show = wanted(sys.stderr, enabled)

    def start(path: str) -> Callable[[int], None] | None:
        if not show:
            return None
        if bars:
            bars.pop().close()
        bar = Progress(Path(path).name, sys.stderr, expected_rows(path))
        bars.append(bar)
        return bar

    try:
        yield start
    finally:
        for bar in bars:
            bar.close()


def _profile(args: argparse.Namespace) -> int:
    from driftline import profile

    data_types = {}
    for declared in args.data_type:
        column, _, data_type = declared.partition("=")
        if not column or not data_type:
            print(f"driftline profile: --data-type {declared!r}: expected COLUMN=TYPE, e.g. "
                  "review=text", file=sys.stderr)
            return EXIT_BAD_INPUT
        data_types[column] = data_type
    try:
        with _progress(args.progress) as start:
            built = profile.profile_file(args.data, model=args.model, version=args.version,
                                         prediction_column=args.prediction_column,
                                         target_column=args.target_column,
                                         task=args.task, on_rows=start(args.data),
                                         probability_columns=args.probability_columns,
                                         multivariate=args.multivariate,
                                         data_types=data_types)
    except FileNotFoundError as exc:
        print(f"driftline profile: {args.data}: no such file ({exc})", file=sys.stderr)
        return EXIT_BAD_INPUT
    except profile.ProfileError as exc:
        print(f"driftline profile: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    profile.save(built, args.output)
    print(f"wrote {args.output}: {built.row_count} rows, {len(built.columns)} columns "
          f"for model {built.model_name!r} version {built.model_version!r}")
    return 0


def _names(text: str) -> list[str]:
    """A comma-separated list of column names."""
    names = [name.strip() for name in text.split(",")]
    if len(names) < 2 or not all(names):
        raise argparse.ArgumentTypeError(f"expected two or more column names separated by "
                                         f"commas, got {text!r}")
    return names


def _compare(args: argparse.Namespace) -> int:
    from driftline import compare, drift, report
    from driftline.profile import ProfileError

    few = args.low_cardinality_values
    if few is None:
        few = drift.DEFAULT_LOW_CARDINALITY_VALUES
    elif not 0 <= few <= drift.MAX_LOW_CARDINALITY_VALUES:
        print(f"driftline compare: --low-cardinality-values must be from 0 (off) to "
              f"{drift.MAX_LOW_CARDINALITY_VALUES}, got {few}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        with _progress(args.progress) as start:
            reference, current = compare.load_pair(args.reference, args.current,
                                                   model=args.model or "", on_rows=start)
        result = compare.compare(reference, current,
                                 drift.Thresholds(low_cardinality_values=few))
    except ProfileError as exc:
        print(f"driftline compare: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(compare.to_json(result), indent=1))
    else:
        print(_table(result))
    if args.html:
        path = Path(args.html)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(report.render_html(
                result, reference, current,
                sources=(Path(args.reference).name, Path(args.current).name)), encoding="utf-8")
        except OSError as exc:
            print(f"driftline compare: cannot write {path}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _table(result: Comparison) -> str:
    """Columns drifted first; the dataset verdict and any columns not compared below."""
    header = ("column", "role", "kind", "method", "score", "threshold", "p-value", "verdict")
    ordered = sorted(result.columns, key=lambda r: not r.drifted)  # stable: profile order
    rows = [header] + [(r.column, r.role, r.kind, r.method, _cell(r.score),
                        # A test's threshold is a significance level: drifted when p < it.
                        _cell(r.threshold) if r.p_value is None else f"p<{_cell(r.threshold)}",
                        _cell(r.p_value), "DRIFTED" if r.drifted else "stable")
                       for r in ordered]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    numeric = {4, 5, 6}
    lines = ["  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]
    features = result.features()
    drifted = sum(r.drifted for r in features)
    lines.append("")
    lines.append(f"dataset drift: {'YES' if result.dataset_drifted else 'no'} - {drifted} of "
                 f"{len(features)} features drifted (share {result.drift_share:.2f}, "
                 f"threshold {result.share_threshold:.2f})")
    lines += [f"not compared: {name} ({reason})" for name, reason in result.skipped]
    return "\n".join(lines)


def _collector(args: argparse.Namespace) -> int:
    from driftline.processor.service.service import run_collector

    return run_collector(args.config, sets=args.set)


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _listed(ids: Iterable[object], noun: str) -> str:
    """``2 exporters (file, prometheus)``; the count alone when there are none."""
    names = sorted(str(i) for i in ids)
    counted = _counted(len(names), noun)
    return f"{counted} ({', '.join(names)})" if names else counted


def _started(config: Config) -> dict[str, set[object]]:
    """The components a collector run of ``config`` starts, per section."""
    started: dict[str, set[object]] = {"receivers": set(), "processors": set(),
                                       "exporters": set(),
                                       "extensions": set(config.service_extensions)}
    for pipeline in config.pipelines.values():
        started["receivers"].update(pipeline.receivers)
        started["processors"].update(pipeline.processors)
        started["exporters"].update(pipeline.exporters)
    return started


def validation_summary(config: Config) -> str:
    """One line: the pipelines and the components they start, then any defined but unused.

    Unused components are valid, as in the collector, but never started (a health_check
    defined and not listed in service::extensions serves nothing), so the line says so.
    """
    started = _started(config)
    defined = {"receivers": config.receivers, "processors": config.processors,
               "exporters": config.exporters, "extensions": config.extensions}
    parts = [_listed(config.pipelines, "pipeline")]
    parts += [_listed(started[section], section[:-1]) for section in defined]
    unused = [f"{section}::{cid}" for section, ids in defined.items()
              for cid in sorted(ids) if cid not in started[section]]
    if unused:
        parts.append(f"defined but not used, so not started: {', '.join(unused)}")
    return "; ".join(parts)


def _validate(args: argparse.Namespace) -> int:
    """Exit 0 with one OK line on stdout (and a ``warning:`` line on stderr per collector
    setting written but not used), or 1 with one ``FILE[:LINE]: problem`` line per problem on
    stderr."""
    from driftline.processor.service.config import ConfigError, load_config, problem_lines

    sources = [*args.files, *args.config]
    if not sources:
        print("driftline validate: give a config: driftline validate FILE or --config FILE",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        config = load_config(sources, sets=args.set)
    except ConfigError as exc:
        for line in problem_lines(sources, exc, args.set):
            print(line, file=sys.stderr)
        return EXIT_INVALID_CONFIG
    for warning in problem_lines(sources, ConfigError(list(config.warnings)), args.set):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{' + '.join(sources)}: OK: {validation_summary(config)}")
    return EXIT_OK


def _add_config_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--config`` (repeatable, merged in order) and ``--set``, as the collector takes them."""
    parser.add_argument(
        "--config", action="append", default=[], required=required, metavar="SOURCE",
        help="collector-style YAML config: a file path, file:PATH, yaml:INLINE (e.g. "
             "'yaml:processors::batch::timeout: 2s') or env:NAME; repeat it to merge several "
             "in order (maps merged key by key, a later list replaces an earlier one)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY::PATH=VALUE",
        help="set one setting after every --config, e.g. --set processors::batch::timeout=2s "
             "(the value is YAML)")


def _demo(args: argparse.Namespace) -> int:
    from driftline.demo import run_demo

    return run_demo(args.workdir, keep_running=args.keep_running)


def build_parser() -> argparse.ArgumentParser:
    from driftline import __version__

    parser = argparse.ArgumentParser(prog="driftline", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"driftline {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("profile", help="capture a reference profile from CSV or Parquet")
    p.add_argument("data", help="a .csv or .parquet file, or a directory of .parquet files, "
                                "of training rows")
    p.add_argument("-o", "--output", required=True, help="where to write the profile JSON")
    p.add_argument("--model", required=True, help="model name (ml.model.name)")
    p.add_argument("--version", default="", help="model version (ml.model.version)")
    p.add_argument("--prediction-column", help="the column holding the model's predictions")
    p.add_argument("--target-column",
                   help="the column holding the true labels or values (role 'target')")
    p.add_argument("--probability-columns", type=_names, metavar="P0,P1,...",
                   help="the columns holding the class probabilities, in the model's class "
                        "order: with --prediction-column and --target-column the profile "
                        "holds a calibration, and the processor and compare estimate "
                        "performance without labels (docs/estimation.md)")
    p.add_argument("--multivariate", action="store_true",
                   help="also store a PCA of the numeric features and the reference's "
                        "per-row reconstruction errors: multivariate drift, a change in the "
                        "features' correlations no single column shows (docs/ml_drift.md)")
    p.add_argument("--task", choices=TASKS,
                   help="how to read the prediction column (default: classes when it holds "
                        "integers, booleans or text, values when it holds floats)")
    p.add_argument("--data-type", action="append", default=[], metavar="COLUMN=TYPE",
                   help="read COLUMN as TYPE: numerical, categorical, text (descriptors and "
                        "a vocabulary) or numerical_sequence (a projection), as "
                        "driftline.monitor().log(data_type=...) does; repeatable. Undeclared "
                        "columns are read from their values")
    p.add_argument("--progress", action="store_true",
                   help="show rows processed on stderr (default: only on a terminal)")
    p.set_defaults(func=_profile)

    m = commands.add_parser(
        "compare", help="compare two profiles or data files: per-column drift verdicts",
        description="Compare CURRENT with REFERENCE column by column with the processor's "
                    "statistics and thresholds. Each side is a profile .json or a .csv or "
                    ".parquet data file (profiled on the fly). Exit status 0 whether or not "
                    "drift is found, 2 on unreadable input.")
    m.add_argument("reference", help="reference profile .json, or .csv/.parquet data")
    m.add_argument("current", help="current profile .json, or .csv/.parquet data")
    m.add_argument("--json", action="store_true",
                   help="print one JSON object instead of the table")
    m.add_argument("--html", metavar="FILE",
                   help="also write a self-contained HTML report with charts")
    m.add_argument("--model", help="model name for data-file sides (default: the other "
                                   "side's, else the file name)")
    m.add_argument("--progress", action="store_true",
                   help="show rows processed on stderr (default: only on a terminal)")
    m.add_argument("--low-cardinality-values", type=int, metavar="N",
                   help="judge numeric columns whose reference has at most N distinct "
                        "values as categories (default 5, as Evidently; 0: never)")
    m.set_defaults(func=_compare)

    c = commands.add_parser("collector", help="run the processor service")
    _add_config_arguments(c, required=True)
    c.set_defaults(func=_collector)

    v = commands.add_parser(
        "validate", help="check a processor config without starting it",
        description="Check a config as `driftline collector --config ...` would, without "
                    "starting anything: environment references are resolved, profile "
                    "directories read. Exit 0 with one OK line naming the pipelines and "
                    "components, or 1 with every problem on stderr, one per line, each "
                    "naming the YAML path of the bad key.")
    v.add_argument("files", nargs="*", metavar="FILE",
                   help="collector-style YAML config (as --config FILE)")
    _add_config_arguments(v, required=False)
    v.set_defaults(func=_validate)

    d = commands.add_parser("demo", help="train, profile, serve, drift: end to end on this machine")
    d.add_argument("--workdir", default="driftline-demo",
                   help="where the demo writes its profile, config and output files")
    d.add_argument("--keep-running", action="store_true",
                   help="leave the processor running after the demo, until Ctrl-C")
    d.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return status
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF_MODULE.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        extra = EXTRA_OF_COMMAND.get(args.command, extra)
        print(f"driftline {args.command}: this needs {exc.name}, which is not installed: "
              f"pip install 'driftline[{extra}]'", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader went away (`driftline compare ... --json | head`): not an error of ours.
        # Point stdout at /dev/null so the interpreter's own flush at exit stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
