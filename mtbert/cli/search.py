"""Hyperparameter search for :class:`~mtbert.training.trainer.MultitaskTrainer` (Optuna, through the stock search).

    trainer = MultitaskTrainer(model_init=lambda: build_model(model_args), args=args, train_dataset=..., ...)
    recorder = SearchRecorder(trainer)
    best = trainer.hyperparameter_search(hp_space=multitask_search_space(), n_trials=20,
                                         compute_objective=recorder.objective)
    recorder.write(args.output_dir)      # search_results.csv and search_results.md, one row per trial

The default space (:func:`multitask_search_space`) searches the shared (encoder) learning rate, the heads' learning
rate, the task-sampling temperature and the loss-based task weighting; the objective is ``eval_average`` (the mean of
every task's primary dev metric), maximised. Optuna is an optional extra: ``pip install 'mtbert[search]'``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["SearchRecorder", "multitask_search_space"]


def multitask_search_space(
    learning_rate: tuple[float, float] = (1e-5, 2e-4),
    head_learning_rate: tuple[float, float] | None = (1e-5, 1e-3),
    sampling_temperature: tuple[float, float] | None = (1.0, 5.0),
    task_weighting: Sequence[str] | None = ("static", "uncertainty", "dwa", "dbmtl"),
) -> Callable[[Any], dict[str, Any]]:
    """An Optuna ``hp_space``: log-uniform learning rates, a uniform temperature and a categorical weighting (a
    setting given None is not searched). Each key is a training argument, set on ``args`` for the trial."""

    def space(trial) -> dict[str, Any]:
        params = {"learning_rate": trial.suggest_float("learning_rate", *learning_rate, log=True)}
        if head_learning_rate is not None:
            params["head_learning_rate"] = trial.suggest_float("head_learning_rate", *head_learning_rate, log=True)
        if sampling_temperature is not None:
            params["sampling_temperature"] = trial.suggest_float("sampling_temperature", *sampling_temperature)
        if task_weighting:
            params["task_weighting"] = trial.suggest_categorical("task_weighting", list(task_weighting))
        return params

    return space


class SearchRecorder:
    """``compute_objective`` that also records every trial (its parameters and dev metrics) for a results table."""

    def __init__(self, trainer, metric: str = "eval_average"):
        self.trainer = trainer
        self.metric = metric
        self.rows: list[dict[str, Any]] = []

    def objective(self, metrics: dict[str, float]) -> float:
        if self.metric not in metrics:
            raise KeyError(f"the search objective {self.metric} is not among the dev metrics: {sorted(metrics)}")
        trial = getattr(self.trainer, "_trial", None)
        params = dict(getattr(trial, "params", None) or (trial if isinstance(trial, dict) else {}))
        number = getattr(trial, "number", len(self.rows))
        scores = {
            k: v
            for k, v in metrics.items()
            if k.startswith("eval_") and not k.endswith(("_runtime", "_samples_per_second", "_steps_per_second"))
        }
        self.rows.append({"trial": number, **params, **scores})
        return float(metrics[self.metric])

    def write(self, output_dir: str) -> tuple[str, str]:
        """``search_results.csv`` and ``search_results.md`` in ``output_dir``, best ``metric`` first."""
        os.makedirs(output_dir, exist_ok=True)
        rows = sorted(self.rows, key=lambda r: -float(r.get(self.metric, float("-inf"))))
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        csv_path = os.path.join(output_dir, "search_results.csv")
        with open(csv_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

        def cell(value) -> str:
            return f"{value:.4g}" if isinstance(value, float) else str(value)

        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
        md_path = os.path.join(output_dir, "search_results.md")
        with open(md_path, "w") as handle:
            handle.write(f"# Hyperparameter search ({len(rows)} trials, objective {self.metric}, best first)\n\n")
            handle.write("\n".join(lines) + "\n")
        return csv_path, md_path
