"""Compare groups of finished runs task by task: per group, a dot per run and the mean ± std over its runs as a
point with error bars, plus optional target lines.

Each group is a label and the runs' ``metrics.json`` files (or their folders). A group may mix runs that score
different tasks (e.g. three single-task fine-tunes); its Average is then the mean of its per-task means. Every panel
(SST, QQP, STS, Average) spans the same height in metric units, so a gap of 0.01 looks the same size in each and a
gap of 0.001 looks small; the values are printed beside the points.

    python examples/plot_runs.py --output docs/img/issue7_minilm.png \\
        --group "three single-task fine-tunes" runs/baseline/*/seed*/metrics.json \\
        --group "minilm_best" runs/cpu/dual_sts_seed1 runs/cpu/dual_sts_seed2 runs/cpu/dual_sts_seed3 \\
        --target SST=0.485 QQP=0.844 STS=0.856 Average=0.75
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from mtbert_research.plots import RUN_COLUMNS as COLUMNS
from mtbert_research.plots import plot_run_groups as plot
from mtbert_research.plots import read_run_group


def read_group(paths: list[str]) -> dict[str, list[float]]:
    """``mtbert_research.plots.read_run_group``; a missing or foreign file exits with one line."""
    try:
        return read_run_group(paths)
    except ValueError as error:
        sys.exit(f"error: {error}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--group",
        nargs="+",
        action="append",
        required=True,
        metavar=("LABEL", "RUN"),
        help="a label, then the group's metrics.json files or run folders",
    )
    parser.add_argument(
        "--target",
        nargs="*",
        default=[],
        metavar="COLUMN=VALUE",
        help="a dashed line per column (SST, QQP, STS, Average)",
    )
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
