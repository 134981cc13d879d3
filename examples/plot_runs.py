"""Compare groups of finished runs task by task: one dot per run, a bar at each group's mean, optional target lines.

Each group is a label and the runs' ``metrics.json`` files (or their folders). A group may mix runs that score
different tasks (e.g. three single-task fine-tunes); its Average is then the mean of its per-task means. The y axis
is zoomed to the data, so differences of a few thousandths stay visible (unlike a 0-1 bar chart).

    python examples/plot_runs.py --output docs/img/issue7_minilm.png \\
        --group "three single-task fine-tunes" runs/baseline/*/seed*/metrics.json \\
        --group "minilm_best" runs/cpu/dual_sts_seed1 runs/cpu/dual_sts_seed2 runs/cpu/dual_sts_seed3 \\
        --target SST=0.485 QQP=0.844 STS=0.856 Average=0.75
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

COLUMNS = {"SST": "eval_sst_accuracy", "QQP": "eval_qqp_accuracy", "STS": "eval_sts_pearson"}


def read_group(paths: list[str]) -> dict[str, list[float]]:
    """Per-task values of a group's runs, plus ``Average``: per run when it scores every task, else the mean of the
    per-task means."""
    values: dict[str, list[float]] = {column: [] for column in COLUMNS}
    averages = []
    for path in paths:
        file = os.path.join(path, "metrics.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            sys.exit(f"error: no metrics.json at {path!r}")
        with open(file, encoding="utf-8") as handle:
            metrics = json.load(handle)
        found = {column: metrics[key] for column, key in COLUMNS.items() if key in metrics}
        if not found:
            sys.exit(f"error: {file} has none of {', '.join(COLUMNS.values())}")
        for column, value in found.items():
            values[column].append(float(value))
        if len(found) == len(COLUMNS):
            averages.append(float(np.mean(list(found.values()))))
    if len(averages) == len(paths):  # every run scored every task
        values["Average"] = averages
    elif all(values.values()):  # the tasks were scored by different runs: one average of the task means
        values["Average"] = [float(np.mean([np.mean(v) for v in values.values()]))]
    else:
        values["Average"] = []
    return values


def plot(groups: list[tuple[str, dict[str, list[float]]]], targets: dict[str, float], output: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [*COLUMNS, "Average"]
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 4.2))
    colors = plt.get_cmap("tab10")
    for ax, column in zip(axes, columns):
        shown = []
        for i, (label, values) in enumerate(groups):
            points = values[column]
            if not points:
                continue
            mean = float(np.mean(points))
            ax.bar(i, mean, width=0.6, color=colors(i), alpha=0.35)
            ax.scatter(np.full(len(points), i) + np.linspace(-0.12, 0.12, len(points)), points, color=colors(i), s=18, zorder=3)
            ax.annotate(f"{mean:.3f}", (i, mean), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8)
            shown += points
        if column in targets:
            ax.axhline(targets[column], color="black", linestyle="--", linewidth=0.9)
            ax.annotate(f"target {targets[column]:g}", (0.98, targets[column]), xycoords=("axes fraction", "data"),
                        fontsize=7, ha="right", va="bottom")
            shown.append(targets[column])
        if shown:
            low, high = min(shown), max(shown)
            pad = max(0.004, 0.25 * (high - low))
            ax.set_ylim(low - pad, high + pad)
        ax.set_title(column, fontsize=10)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([str(i + 1) for i in range(len(groups))])
        ax.grid(axis="y", alpha=0.3)
    handles = [matplotlib.patches.Patch(color=colors(i), alpha=0.6, label=f"{i + 1}: {label} (n={len(v['SST'] or v['STS'])})")
               for i, (label, v) in enumerate(groups)]
    fig.legend(handles=handles, loc="lower center", ncol=1, fontsize="small", frameon=False,
               bbox_to_anchor=(0.5, -0.02 - 0.05 * len(groups)))
    fig.suptitle(title + "\ndots: one run each; bars: group mean; dashed: target", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", nargs="+", action="append", required=True, metavar=("LABEL", "RUN"),
                        help="a label, then the group's metrics.json files or run folders")
    parser.add_argument("--target", nargs="*", default=[], metavar="COLUMN=VALUE",
                        help="a dashed line per column (SST, QQP, STS, Average)")
    parser.add_argument("--title", default="Dev scores")
    parser.add_argument("--output", required=True, help="the .png to write")
    args = parser.parse_args(argv)
    groups = []
    for group in args.group:
        if len(group) < 2:
            parser.error(f"--group {group[0]!r}: give a label and at least one run")
        groups.append((group[0], read_group(group[1:])))
    targets = {}
    for item in args.target:
        column, _, value = item.partition("=")
        if column not in [*COLUMNS, "Average"]:
            parser.error(f"--target {item!r}: the column must be one of SST, QQP, STS, Average")
        try:
            targets[column] = float(value)
        except ValueError:
            parser.error(f"--target {item!r}: {value!r} is not a number")
    plot(groups, targets, args.output, args.title)
    print(args.output)
    for label, values in groups:
        print(label, {c: (round(float(np.mean(v)), 4), len(v)) for c, v in values.items() if v})


if __name__ == "__main__":
    main()
