"""Collecting a table: mean ± sample std of each row's metrics over its finished seeds."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .paths import METRICS_FILE, profile_dir, run_dir
from .runner import recorded_arguments
from .tables import METRIC_COLUMNS, Row, Table


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


def _recorded_backbone(folder: Path) -> str | None:
    """The backbone a finished run used: its ``--model_name_or_path`` flag, or its config's."""
    arguments = recorded_arguments(folder)
    if not arguments:
        return None
    backbone = None
    for flag, value in itertools.pairwise(arguments):
        if flag == "--model_name_or_path":
            backbone = value
    if backbone is None:
        try:
            from mtbert.cli.arguments import load_config_file

            backbone = load_config_file(arguments[0]).get("model_name_or_path")
        except Exception:  # a moved or edited config only loses the note
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


__all__ = ["Cell", "RowResult", "TableResult", "collect_table", "finished_seeds"]
