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


def plot_gradient_telemetry(history: list[dict[str, Any]], output_png: str, title: str | None = None) -> str:
    """Pairwise task-gradient cosines, conflicting fraction and norm ratio against the training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [h for h in history if "grad_conflict_fraction" in h]
    if not rows:
        raise ValueError("no gradient telemetry in this log: train with gradient_telemetry: true")
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    for key in sorted({k for r in rows for k in r if k.startswith("grad_cos_")}):
        axes[0].plot(steps, [r.get(key) for r in rows], label=key[len("grad_cos_"):].replace("_", " vs "))
    axes[0].axhline(0.0, color="black", linewidth=0.8)
    axes[0].set_ylabel("cosine of task gradients")
    axes[0].legend(loc="best", fontsize="small")
    axes[1].plot(steps, [r["grad_conflict_fraction"] for r in rows], color="tab:red", label="conflicting pairs")
    if any("pcgrad_projections" in r for r in rows):
        tasks = len([k for k in rows[0] if k.startswith("grad_norm_") and k != "grad_norm_ratio"])
        pairs = max(1, tasks * (tasks - 1))
        axes[1].plot(steps, [r.get("pcgrad_projections", 0) / pairs for r in rows], color="tab:purple",
                     linestyle="--", label="PCGrad projections / T(T-1)")
    axes[1].set_ylim(-0.05, 1.05)
    axes[1].set_ylabel("fraction")
    axes[1].legend(loc="best", fontsize="small")
    axes[2].plot(steps, [r["grad_norm_ratio"] for r in rows], color="tab:green")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("largest / smallest\ntask-gradient norm")
    axes[2].set_xlabel("optimizer step")
    summary = conflict_summary(history)
    fig.suptitle(title or f"Task-gradient conflicts on the shared encoder "
                          f"(mean conflicting fraction {summary['mean_conflict_fraction']:.2f})")
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


def plot_run_groups(
    groups: list[tuple[str, dict[str, list[float]]]], targets: dict[str, float], output: str, title: str
) -> None:
    """One panel per column: a dot per run, a bar at each group's mean, a dashed line per target. The y axis is
    zoomed to the data, so differences of a few thousandths stay visible (unlike a 0-1 bar chart)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt

    columns = [*RUN_COLUMNS, "Average"]
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
            ax.scatter(np.full(len(points), i) + np.linspace(-0.12, 0.12, len(points)), points, color=colors(i),
                       s=18, zorder=3)
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
    handles = [
        matplotlib.patches.Patch(color=colors(i), alpha=0.6, label=f"{i + 1}: {label} (n={len(v['SST'] or v['STS'])})")
        for i, (label, v) in enumerate(groups)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=1, fontsize="small", frameon=False,
               bbox_to_anchor=(0.5, -0.02 - 0.05 * len(groups)))
    fig.suptitle(title + "\ndots: one run each; bars: group mean; dashed: target", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, dpi=120, bbox_inches="tight")
    plt.close(fig)


__all__ = ["load_log_history", "conflict_summary", "plot_gradient_telemetry", "RUN_COLUMNS", "read_run_group",
           "plot_run_groups"]
