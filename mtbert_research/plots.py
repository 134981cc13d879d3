"""Plots people would rather look at than read: gradient-conflict telemetry over training, and groups of finished
runs side by side, task by task. matplotlib (the ``research`` extra) is imported only when a figure is drawn.

The trainer's telemetry only logs numbers (``grad_cos_<a>_<b>``, ``grad_conflict_fraction``, ``grad_norm_ratio``,
``pcgrad_projections``) into ``trainer_state.json``; everything here reads them back.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

# The columns of a run comparison: (column, key in metrics.json); "Average" is computed.
RUN_COLUMNS = {"SST": "eval_sst_accuracy", "QQP": "eval_qqp_accuracy", "STS": "eval_sts_pearson"}


def load_log_history(path: str) -> list[dict[str, Any]]:
    """The Trainer's log history from a run folder, a checkpoint folder, or a ``trainer_state.json`` file."""
    if os.path.isdir(path):
        path = os.path.join(path, "trainer_state.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no trainer_state.json (train with save_strategy or let the run finish)")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)["log_history"]


def conflict_summary(history: list[dict[str, Any]]) -> dict[str, float]:
    """Over all logged telemetry steps: mean conflicting fraction, share of steps with any conflict, mean cosines."""
    rows = [h for h in history if "grad_conflict_fraction" in h]
    if not rows:
        raise ValueError("no gradient telemetry in this log: train with gradient_telemetry: true")
    summary = {
        "telemetry_steps": len(rows),
        "mean_conflict_fraction": sum(r["grad_conflict_fraction"] for r in rows) / len(rows),
        "steps_with_a_conflict": sum(r["grad_conflict_fraction"] > 0 for r in rows) / len(rows),
        "mean_norm_ratio": sum(r["grad_norm_ratio"] for r in rows) / len(rows),
    }
    for key in sorted({k for r in rows for k in r if k.startswith("grad_cos_")}):
        values = [r[key] for r in rows if key in r]
        summary[f"mean_{key}"] = sum(values) / len(values)
    return summary


def _plain_log_ticks(ax) -> None:
    """Log-axis ticks as plain numbers (``2``, ``5``, ``10``, ``20``), not ``2×10⁰``; minor ticks labelled only when
    the axis spans less than about one and a half decades (otherwise the decades alone are labelled)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    low, high = ax.get_ylim()
    ax.yaxis.set_minor_formatter(plain if high / max(low, 1e-12) < 30 else NullFormatter())


def plot_gradient_telemetry(history: list[dict[str, Any]], output_png: str, title: str | None = None) -> str:
    """Pairwise task-gradient cosines, conflicting fraction and norm ratio against the training step.

    Every line has its own colour, line style and marker; two series that are identical (PCGrad with two tasks
    projects exactly once per conflicting ordered pair) are drawn as one line whose label names both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [h for h in history if "grad_conflict_fraction" in h]
    if not rows:
        raise ValueError("no gradient telemetry in this log: train with gradient_telemetry: true")
    steps = [r["step"] for r in rows]
    marker = "o" if len(rows) <= 60 else None  # markers while they stay apart
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1, 1, 1)), "v"), ((0, (1, 1)), "P")]
    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    for i, key in enumerate(sorted({k for r in rows for k in r if k.startswith("grad_cos_")})):
        linestyle, mark = styles[i % len(styles)]
        axes[0].plot(
            steps,
            [r.get(key, np.nan) for r in rows],
            linestyle=linestyle,
            marker=mark if marker else None,
            markersize=4,
            label=key[len("grad_cos_") :].replace("_", " vs "),
        )
    axes[0].axhline(0.0, color="black", linewidth=0.8)
    axes[0].set_ylim(-1.05, 1.05)
    axes[0].set_ylabel("cosine of task gradients")
    axes[0].legend(loc="best", fontsize="small")
    conflict = np.array([r["grad_conflict_fraction"] for r in rows], dtype=float)
    projected = None
    if any("pcgrad_projections" in r for r in rows):
        tasks = len([k for k in rows[0] if k.startswith("grad_norm_") and k != "grad_norm_ratio"])
        pairs = max(1, tasks * (tasks - 1))
        projected = np.array([r.get("pcgrad_projections", 0) / pairs for r in rows], dtype=float)
    if projected is not None and np.allclose(projected, conflict):
        axes[1].plot(
            steps,
            conflict,
            color="tab:red",
            marker=marker,
            markersize=4,
            label="conflicting pairs = PCGrad projections / T(T-1) (identical here)",
        )
    else:
        axes[1].plot(steps, conflict, color="tab:red", marker=marker, markersize=4, label="conflicting pairs")
        if projected is not None:
            axes[1].plot(
                steps,
                projected,
                color="tab:purple",
                linestyle="--",
                marker="s" if marker else None,
                markersize=4,
                label="PCGrad projections / T(T-1)",
            )
    axes[1].set_ylim(-0.05, 1.05)
    axes[1].set_ylabel("fraction")
    axes[1].legend(loc="best", fontsize="small")
    axes[2].plot(steps, [r["grad_norm_ratio"] for r in rows], color="tab:green", marker=marker, markersize=4)
    axes[2].axhline(1.0, color="black", linewidth=0.8)
    axes[2].set_yscale("log")
    ratios = [r["grad_norm_ratio"] for r in rows]
    axes[2].set_ylim(min(1.0, min(ratios)) / 1.15, max(ratios) * 1.15)  # 1 (equal norms) always in view
    _plain_log_ticks(axes[2])
    axes[2].set_ylabel("largest / smallest\ntask-gradient norm (log)")
    axes[2].set_xlabel("optimizer step")
    for ax in axes:
        ax.grid(alpha=0.3)
    summary = conflict_summary(history)
    fig.suptitle(
        title
        or f"Task-gradient conflicts on the shared encoder "
        f"(mean conflicting fraction {summary['mean_conflict_fraction']:.2f})"
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output_png)), exist_ok=True)
    fig.savefig(output_png, dpi=120)
    plt.close(fig)
    return output_png


# ---------------------------------------------------------------------------------------------------------------
# Groups of finished runs
# ---------------------------------------------------------------------------------------------------------------


def read_run_group(paths: list[str]) -> dict[str, list[float]]:
    """Per-task values of a group's runs (``metrics.json`` files or their folders), plus ``Average``: per run when
    it scores every task, else the mean of the per-task means. A missing or foreign file raises ``ValueError``."""
    values: dict[str, list[float]] = {column: [] for column in RUN_COLUMNS}
    averages = []
    for path in paths:
        file = os.path.join(path, "metrics.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise ValueError(f"no metrics.json at {path!r}")
        with open(file, encoding="utf-8") as handle:
            metrics = json.load(handle)
        found = {column: metrics[key] for column, key in RUN_COLUMNS.items() if key in metrics}
        if not found:
            raise ValueError(f"{file} has none of {', '.join(RUN_COLUMNS.values())}")
        for column, value in found.items():
            values[column].append(float(value))
        if len(found) == len(RUN_COLUMNS):
            averages.append(float(np.mean(list(found.values()))))
    if len(averages) == len(paths):  # every run scored every task
        values["Average"] = averages
    elif all(values.values()):  # the tasks were scored by different runs: one average of the task means
        values["Average"] = [float(np.mean([np.mean(v) for v in values.values()]))]
    else:
        values["Average"] = []
    return values


def _std(points: list[float]) -> float:
    """The sample standard deviation over runs (n - 1), 0 for a single run."""
    return float(np.std(points, ddof=1)) if len(points) > 1 else 0.0


def run_group_scale(
    groups: list[tuple[str, dict[str, list[float]]]], targets: dict[str, float], min_span: float = 0.05
) -> tuple[float, dict[str, tuple[float, float]]]:
    """The y range of each panel of :func:`plot_run_groups`: every panel spans the same height in metric units
    (the widest panel's data, mean ± std and targets, padded; at least ``min_span``), centred on its own data, so a
    difference of 0.01 is as tall in the SST panel as in the STS panel and a difference of 0.001 looks small.

    Returns ``(span, {column: (low, high)})``."""
    columns = [*RUN_COLUMNS, "Average"]
    extents = {}
    for column in columns:
        shown = [targets[column]] if column in targets else []
        for _, values in groups:
            points = values.get(column) or []
            if points:
                mean, std = float(np.mean(points)), _std(points)
                shown += [*points, mean - std, mean + std]
        if shown:
            extents[column] = (min(shown), max(shown))
    widest = max((high - low for low, high in extents.values()), default=0.0)
    span = max(min_span, 1.3 * widest)
    limits = {}
    for column in columns:
        low, high = extents.get(column, (0.5, 0.5))
        middle = (low + high) / 2
        limits[column] = (middle - span / 2, middle + span / 2)
    return span, limits


def plot_run_groups(
    groups: list[tuple[str, dict[str, list[float]]]], targets: dict[str, float], output: str, title: str
) -> None:
    """One panel per column (SST, QQP, STS, Average): per group, each run a small dot and the group's mean ± std
    over its runs as a point with error bars, the value printed beside it; a dashed line per target.

    Every panel's y axis spans the same height in metric units (:func:`run_group_scale`), so differences look as
    large as they are, in every panel alike; no bars (a bar's length on a cut axis exaggerates small gaps)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [*RUN_COLUMNS, "Average"]
    span, limits = run_group_scale(groups, targets)
    fig, axes = plt.subplots(1, len(columns), figsize=(max(3.0, 1.0 + 1.1 * len(groups)) * len(columns), 4.6))
    colors = plt.get_cmap("tab10")
    names = ["\n".join(textwrap.wrap(label, 16)) or label for label, _ in groups]
    for ax, column in zip(axes, columns):
        for i, (_, values) in enumerate(groups):
            points = values.get(column) or []
            if not points:
                ax.annotate("not scored", (i, sum(limits[column]) / 2), ha="center", fontsize=7, color="grey")
                continue
            mean, std = float(np.mean(points)), _std(points)
            jitter = np.linspace(-0.15, 0.15, len(points)) if len(points) > 1 else np.zeros(1)
            ax.scatter(i - 0.12 + jitter * 0.5, points, color=colors(i), s=14, alpha=0.6, zorder=3, edgecolors="none")
            ax.errorbar(
                i + 0.12,
                mean,
                yerr=std if len(points) > 1 else None,
                fmt="o",
                color=colors(i),
                markersize=6,
                capsize=4,
                elinewidth=1.4,
                zorder=4,
            )
            text = f"{mean:.3f}" + (f"\n±{std:.3f}" if len(points) > 1 else "") + f"\nn={len(points)}"
            ax.annotate(
                text,
                (i + 0.12, mean),
                textcoords="offset points",
                xytext=(9, 0),
                va="center",
                fontsize=7,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5},
            )
        if column in targets:
            ax.axhline(targets[column], color="black", linestyle="--", linewidth=0.9)
            ax.annotate(
                f"target {targets[column]:g}",
                (0.02, targets[column]),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                ha="left",
                va="bottom",
            )
        ax.set_ylim(*limits[column])
        ax.set_xlim(-0.6, len(groups) - 0.1)
        ax.set_title(column, fontsize=10)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(names, fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"{title}\nsmall dots: one run each; large point with bars: mean ± std over the runs; dashed: target. "
        f"Every panel spans {span:.3f}",
        fontsize=9,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, dpi=120, bbox_inches="tight")
    plt.close(fig)


__all__ = [
    "RUN_COLUMNS",
    "conflict_summary",
    "load_log_history",
    "plot_gradient_telemetry",
    "plot_run_groups",
    "read_run_group",
    "run_group_scale",
]
