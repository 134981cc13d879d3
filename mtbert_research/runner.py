"""Runs: each (config, seed) is ``python <train script> <config> --seed S --output_dir
<runs_dir>/<profile>/<config stem>/seed<S> ...`` in a subprocess, logged to ``train.log`` in that folder. A folder
that already holds ``metrics.json`` is finished and skipped, so an interrupted sweep continues where it stopped; a
row shared by several tables (e.g. Table 2's baseline is Table 1's last row) is trained once.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtbert.training.checkpoints import last_good_checkpoint

from .paths import DEFAULT_TRAIN_SCRIPT, LOG_FILE, METRICS_FILE, RUN_RECORD, ExperimentError, run_dir
from .tables import Table


@dataclass(frozen=True)
class Run:
    config: str
    seed: int
    output_dir: Path

    @property
    def stem(self) -> str:
        return Path(self.config).stem

    @property
    def name(self) -> str:
        return f"{self.stem}/seed{self.seed}"

    @property
    def finished(self) -> bool:
        return (self.output_dir / METRICS_FILE).is_file()


def plan_runs(tables: Sequence[Table], seeds: Sequence[int], runs_dir: str | os.PathLike, profile: str) -> list[Run]:
    """Every (config, seed) of the tables once, in table order; a config shared by tables is run once."""
    runs: dict[Path, Run] = {}
    configs_by_stem: dict[str, str] = {}
    for table in tables:
        for row in table.rows:
            stem = Path(row.config).stem
            other = configs_by_stem.setdefault(stem, os.path.abspath(row.config))
            if other != os.path.abspath(row.config):
                raise ExperimentError(
                    f"two configs share the run folder name {stem!r}: {other} and {row.config}; rename one"
                )
            for seed in seeds:
                path = run_dir(runs_dir, profile, row.config, seed)
                runs.setdefault(path, Run(row.config, int(seed), path))
    return list(runs.values())


def run_command(command: Sequence[str], log_path: str | os.PathLike) -> int:
    """Run one training subprocess, stdout and stderr appended to ``log_path``; returns the exit code."""
    with open(log_path, "a", encoding="utf-8") as log:
        log.write("$ " + shlex.join(command) + "\n\n")
        log.flush()
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode


def log_tail(path: str | os.PathLike, lines: int = 30) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


@dataclass
class ExecutionReport:
    ran: list[Run] = field(default_factory=list)
    skipped: list[Run] = field(default_factory=list)
    failed: list[tuple[Run, str]] = field(default_factory=list)  # (run, reason)

    @property
    def ok(self) -> bool:
        return not self.failed


def _settings_differ(recorded: list[str] | None, wanted: list[str]) -> bool:
    """Whether two train.py argument lists differ in anything but the spelling of --output_dir."""
    if recorded is None:
        return False

    def settings(args: list[str]) -> list[str]:
        args = list(args)
        if "--output_dir" in args:
            del args[args.index("--output_dir") : args.index("--output_dir") + 2]
        return args

    return settings(recorded) != settings(wanted)


def execute_runs(
    runs: Sequence[Run],
    arguments: Callable[[Run], list[str]],
    train_script: str | os.PathLike | None = None,
    python: str | None = None,
    runner: Callable[[Sequence[str], str], int] | None = None,
    progress: bool = True,
    tail_lines: int = 30,
    out=None,
    resume: bool = True,
    jobs: int = 1,
) -> ExecutionReport:
    """Run every unfinished run (``python train.py <arguments(run)>``), one after another (or ``jobs`` at a time).

    Finished runs (``metrics.json`` present) are skipped; an unfinished one that left a complete checkpoint (the
    paper profile saves one per epoch) continues from it (``resume``). A failing run prints its log's tail and the
    others go on; the report lists the failures. ``runner(command, log_path) -> exit code`` defaults to
    ``run_command``.
    """
    from tqdm.auto import tqdm

    out = out or sys.stderr
    runner = runner or run_command
    script = str(train_script or DEFAULT_TRAIN_SCRIPT)
    python = python or sys.executable
    report = ExecutionReport()
    pending = []
    for run in runs:
        (report.skipped if run.finished else pending).append(run)
    if report.skipped:
        print(f"skipping {len(report.skipped)} finished runs (delete a run's folder to rerun it)", file=out)
        changed = [r.name for r in report.skipped if _settings_differ(recorded_arguments(r.output_dir), arguments(r))]
        if changed:
            print(
                f"warning: {len(changed)} finished run(s) were trained with other settings than asked now "
                f"(see run.json in each): {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}",
                file=out,
            )
    bar = tqdm(
        total=len(pending), desc="runs", unit="run", disable=not progress or not pending, file=out, dynamic_ncols=True
    )

    def execute(run: Run) -> str | None:
        """Run one (config, seed); returns why it failed, or None."""
        run.output_dir.mkdir(parents=True, exist_ok=True)
        run_arguments = arguments(run)
        command = [python, script, *run_arguments]
        checkpoint = last_good_checkpoint(str(run.output_dir)) if resume else None
        if checkpoint and "--resume_from_checkpoint" not in command:
            command += ["--resume_from_checkpoint", checkpoint]  # an interrupted run with checkpoints continues
        with open(run.output_dir / RUN_RECORD, "w", encoding="utf-8") as handle:
            json.dump(
                {"config": run.config, "seed": run.seed, "arguments": run_arguments, "command": command},
                handle,
                indent=2,
            )
        try:
            code = runner(command, str(run.output_dir / LOG_FILE))
        except OSError as error:
            return f"could not start: {error}"
        if code != 0:
            return f"exit code {code}"
        return None if run.finished else f"exited 0 but wrote no {METRICS_FILE}"

    def record(run: Run, reason: str | None) -> None:
        bar.update(1)
        if reason is None:
            report.ran.append(run)
            return
        report.failed.append((run, reason))
        log_path = run.output_dir / LOG_FILE
        tail = log_tail(log_path, tail_lines).rstrip()
        message = f"\nrun {run.name} failed ({reason}); last lines of {log_path}:\n{tail}\n"
        if progress and pending:
            bar.write(message, file=out)
        else:
            print(message, file=out)

    if jobs <= 1:
        for run in pending:
            bar.set_postfix_str(run.name, refresh=True)
            record(run, execute(run))
    else:  # several runs at once: a small model leaves most of a GPU idle, so concurrent runs finish sooner
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(execute, run): run for run in pending}
            bar.set_postfix_str(f"{min(jobs, len(pending))} at a time", refresh=True)
            for future in as_completed(futures):
                record(futures[future], future.result())
    bar.close()
    return report


def recorded_arguments(folder: Path) -> list[str] | None:
    try:
        with open(folder / RUN_RECORD, encoding="utf-8") as handle:
            return list(json.load(handle)["arguments"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


__all__ = ["ExecutionReport", "Run", "execute_runs", "log_tail", "plan_runs", "recorded_arguments", "run_command"]
