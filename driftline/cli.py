"""The ``driftline`` command: profile, compare, collector, validate, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _profile(args: argparse.Namespace) -> int:
    from driftline import profile

    built = profile.profile_file(args.data, model=args.model, version=args.version,
                                 prediction_column=args.prediction_column, task=args.task)
    profile.save(built, args.output)
    print(f"wrote {args.output}: {built.row_count} rows, {len(built.columns)} columns "
          f"for model {built.model_name!r} version {built.model_version!r}")
    return 0


def _collector(args: argparse.Namespace) -> int:
    from driftline.processor.service import run_collector

    return run_collector(args.config)


def _validate(args: argparse.Namespace) -> int:
    from driftline.processor.config import validate_file

    problems = validate_file(args.config)
    for problem in problems:
        print(f"{args.config}: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.config}: valid")
    return 1 if problems else 0


def _demo(args: argparse.Namespace) -> int:
    from driftline.demo import run_demo

    return run_demo(args.workdir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("profile", help="capture a reference profile from CSV or Parquet")
    p.add_argument("data", help="a .csv or .parquet file of training rows")
    p.add_argument("-o", "--output", required=True, help="where to write the profile JSON")
    p.add_argument("--model", required=True, help="model name (ml.model.name)")
    p.add_argument("--version", default="", help="model version (ml.model.version)")
    p.add_argument("--prediction-column", help="the column holding the model's predictions")
    p.add_argument("--task", choices=("classification", "regression"),
                   help="how to read the prediction column (default: from its dtype)")
    p.set_defaults(func=_profile)

    c = commands.add_parser("collector", help="run the processor service")
    c.add_argument("--config", required=True, help="collector-style YAML config")
    c.set_defaults(func=_collector)

    v = commands.add_parser("validate", help="check a processor config without starting it")
    v.add_argument("config")
    v.set_defaults(func=_validate)

    d = commands.add_parser("demo", help="train, profile, serve, drift: end to end on this machine")
    d.add_argument("--workdir", default="driftline-demo",
                   help="where the demo writes its profile and output files")
    d.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
