"""Plots people would rather look at than read: gradient-conflict telemetry over training."""

from __future__ import annotations

import json
import os
from typing import Any


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
