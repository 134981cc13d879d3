"""A collected table out: ``<runs_dir>/<profile>/<table>.md`` (the paper's layout, Method | SST | QQP | STS |
Average, mean ± sample std over seeds and n), ``.csv`` (every number unrounded) and ``.png`` (grouped bars with std
error bars; needs matplotlib, the ``research`` extra)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .paths import profile_dir
from .profiles import PROFILES
from .results import TableResult
from .tables import METRIC_COLUMNS


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
        ax.bar(
            xs,
            means,
            width=width * 0.95,
            yerr=errors,
            capsize=2,
            color=colors(i % colors.N),
            label=f"{row.row.label} (n={row.n})",
            error_kw={"linewidth": 0.8},
        )
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(
        [f"{c}\n({'accuracy' if c in ('SST', 'QQP') else 'Pearson' if c == 'STS' else 'mean'})" for c in columns]
    )
    lowest = min([0.0] + [(r.cells[c].mean or 0.0) - (r.cells[c].std or 0.0) for r in rows for c in columns])
    ax.set_ylim(min(0.0, lowest - 0.05), 1.0)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_ylabel("dev score")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{result.table.title}\nprofile {result.profile}; bars: mean over seeds, whiskers: std", fontsize=10)
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=2 if len(rows) > 3 else 1,
        fontsize="small",
        frameon=False,
    )
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


__all__ = ["plot_table", "to_csv", "to_markdown", "write_table"]
