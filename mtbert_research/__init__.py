"""mtbert's research tools, kept apart from the product (``mtbert``): the paper's tables rerun over seeds, error
analysis and plots. Install with ``pip install -e ".[research]"`` from a clone (adds matplotlib for the charts).

- ``tables``: the paper's Tables 1, 2, 3 and 5, each row a config in ``<config_dir>/paper/``.
- ``profiles``: ``fast`` (a CPU shortcut, not the paper's setting) and ``paper``; one run's train.py arguments.
- ``runner``: every (config, seed) as one training subprocess; finished runs are skipped, so a sweep resumes.
- ``results``: mean ± sample std of each row over its finished seeds.
- ``reports``: a table as Markdown (the paper's layout), CSV and a PNG chart.
- ``cli``: the command line of ``examples/run_experiments.py`` (also ``python -m mtbert_research``).
- ``paths``: where configs, the training script and run folders are (relative to the current directory unless
  given: nothing points into the git checkout).
- ``analysis``: the paper's error analysis of a saved model on the dev sets.
- ``plots``: gradient-conflict telemetry over training, and groups of finished runs side by side.
"""

from .cli import main
from .paths import ExperimentError, profile_dir, run_dir
from .profiles import FAST_PROFILE, PAPER_PROFILE, PROFILES, Profile, train_arguments
from .reports import plot_table, to_csv, to_markdown, write_table
from .results import Cell, RowResult, TableResult, collect_table, finished_seeds
from .runner import ExecutionReport, Run, execute_runs, plan_runs, run_command
from .tables import ALL_TABLES, METRIC_COLUMNS, TABLES, Row, Table, resolve_tables

__all__ = [
    "ALL_TABLES",
    "FAST_PROFILE",
    "METRIC_COLUMNS",
    "PAPER_PROFILE",
    "PROFILES",
    "TABLES",
    "Cell",
    "ExecutionReport",
    "ExperimentError",
    "Profile",
    "Row",
    "RowResult",
    "Run",
    "Table",
    "TableResult",
    "collect_table",
    "execute_runs",
    "finished_seeds",
    "main",
    "plan_runs",
    "plot_table",
    "profile_dir",
    "resolve_tables",
    "run_command",
    "run_dir",
    "to_csv",
    "to_markdown",
    "train_arguments",
    "write_table",
]
