"""The paper's Tables 1, 2, 3 and 5: each row a config in ``<config_dir>/paper/`` with the paper's method label
(and the paper's reported numbers, shown for reference); ``all`` is the four of them. Config files can be given
too (a "custom" table).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .paths import ExperimentError, paper_config_dir

# The paper's columns: (column header, key in metrics.json).
METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("SST", "eval_sst_accuracy"),
    ("QQP", "eval_qqp_accuracy"),
    ("STS", "eval_sts_pearson"),
    ("Average", "eval_average"),
)


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
            Row(
                "t2_qqp_cosine_mean_0.75",
                'Cosine sim., "MEAN" pooling, 0.75 threshold',
                (0.513, 0.811, 0.867, 0.730),
            ),
            Row(
                "t2_qqp_concat_sep_cls_1layer",
                'Concat. w/ [SEP], "CLS" pooling, 1-layer',
                (0.478, 0.856, 0.871, 0.735),
            ),
            Row(
                "t2_qqp_concat_sep_mean_1layer",
                'Concat. w/ [SEP], "MEAN" pooling, 1-layer',
                (0.495, 0.839, 0.870, 0.735),
            ),
            Row(
                "t2_qqp_concat_sep_cls_2layer",
                'Concat. w/ [SEP], "CLS" pooling, 2-layer',
                (0.510, 0.849, 0.868, 0.742),
            ),
            Row(
                "t2_qqp_concat_sep_mean_2layer",
                'Concat. w/ [SEP], "MEAN" pooling, 2-layer',
                (0.507, 0.839, 0.868, 0.738),
            ),
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
            Row(
                "t5_qqp_concat_nosep_cls_1layer",
                'Direct concatenation, "CLS" pooling, 1-layer',
                (0.501, 0.849, 0.871, 0.740),
            ),
            Row("t1_sts_cosine_mean", "Baseline", (0.512, 0.745, 0.876, 0.711)),
            Row(
                "t2_qqp_cosine_mean_0.75",
                'Cosine sim., "MEAN" pooling, 0.75 threshold',
                (0.513, 0.811, 0.867, 0.730),
            ),
            Row(
                "t2_qqp_concat_sep_cls_1layer",
                'Concat. w/ [SEP], "CLS" pooling, 1-layer',
                (0.478, 0.856, 0.871, 0.735),
            ),
        ),
    ),
}
ALL_TABLES = ("table1", "table2", "table3", "table5")

# A paper config given on its own (not as a table) is labelled as in the first table that has it.
DEFAULT_LABELS: dict[str, str] = {}
for _table in TABLES.values():
    for _row in _table.rows:
        DEFAULT_LABELS.setdefault(_row.config, _row.label)


def paper_config_path(stem: str, config_dir: str | os.PathLike | None = None) -> Path:
    """``<config_dir>/paper/<stem>.yaml`` (``config_dir`` default: ``examples/configs`` in the current directory)."""
    return paper_config_dir(config_dir) / f"{stem}.yaml"


def resolve_tables(names: Sequence[str], config_dir: str | os.PathLike | None = None) -> list[Table]:
    """Table names (``table1`` ... ``all``), paper config stems and config files → tables with config paths.

    Stems and files that are not tables are gathered, in order, into one table named ``custom``. Tables and stems
    are looked up in ``<config_dir>/paper/`` (``config_dir`` default: ``examples/configs`` in the current
    directory); config files are taken as given.
    """
    if not names:
        raise ExperimentError(f"name a table ({', '.join((*ALL_TABLES, 'all'))}) or config files")
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
            if not r.config.endswith((".yaml", ".yml", ".json"))
            else r
            for r in custom
        )
        out.append(Table("custom", "Selected configs", rows))
    for table in out:
        for row in table.rows:
            if not os.path.isfile(row.config):
                raise ExperimentError(f"{table.name}: config file {row.config!r} not found")
    return out


__all__ = [
    "ALL_TABLES",
    "DEFAULT_LABELS",
    "METRIC_COLUMNS",
    "TABLES",
    "Row",
    "Table",
    "paper_config_path",
    "resolve_tables",
]
