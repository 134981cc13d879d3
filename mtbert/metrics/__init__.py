"""Offline evaluation metrics for mtbert tasks.

``evaluate.load("accuracy")`` fetches its script from the Hugging Face Hub,
which fails on air-gapped training nodes. mtbert therefore ships its four
metrics (accuracy, f1, pearsonr, spearmanr) as local ``evaluate`` modules in
this package, and this facade maps a task *kind* to the metrics reported for
it. Nothing here imports the rest of ``mtbert``, so it stays importable while
other modules change.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import evaluate
import numpy as np

from ..kinds_mtbert import TASK_KIND_CLASSES, KindTable, get_kind
from .entities import entity_scores

__all__ = [
    "METRIC_NAMES",
    "PRIMARY_METRIC",
    "TASK_KINDS",
    "average_score",
    "compute_task_metrics",
    "load_metric",
    "metric_path",
    "score_tasks",
]

_METRICS_DIR = Path(__file__).resolve().parent

#: Metric modules shipped in this package (one folder each, script of the same name).
METRIC_NAMES: tuple[str, ...] = ("accuracy", "f1", "pearsonr", "spearmanr")

#: Each metric a kind reports (its ``metrics``) that a packaged metric computes: (packaged metric, key it returns).
_PACKAGED: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "accuracy"),
    "f1": ("f1", "f1"),
    "pearson": ("pearsonr", "pearsonr"),
    "spearman": ("spearmanr", "spearmanr"),
}

TASK_KINDS: tuple[str, ...] = tuple(TASK_KIND_CLASSES)


#: The metric each task kind contributes to the overall average (the paper's
#: "average" is the mean of SST accuracy, QQP accuracy and STS-B Pearson; a token task's entity F1).
PRIMARY_METRIC: Mapping[str, str] = KindTable("primary_metric")

# One id per process: evaluate names its lock/cache files after experiment_id,
# so concurrent DDP ranks (or several jobs on a shared cache) never collide.
_EXPERIMENT_ID = f"mtbert-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def metric_path(name: str) -> Path:
    """Folder of the packaged metric ``name`` (loadable with ``evaluate.load(str(path))``)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}; packaged metrics are {', '.join(METRIC_NAMES)}.")
    return _METRICS_DIR / name


@functools.cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load a packaged metric from its local folder, without touching the Hub.

    Cached per process. ``keep_in_memory=True`` keeps each ``compute`` call's
    inputs in an in-memory Arrow buffer instead of cache files on disk, and
    every metric is computed independently on each rank.
    """
    return evaluate.load(
        str(metric_path(name)),
        experiment_id=_EXPERIMENT_ID,
        keep_in_memory=True,
    )


def _as_1d(values, what: str) -> np.ndarray:
    if hasattr(values, "detach"):  # torch.Tensor without importing torch
        values = values.detach().cpu()
        if values.is_floating_point():  # numpy has no bfloat16
            values = values.double()
        values = values.numpy()
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:  # (N, 1) regression head output
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}.")
    return array


def compute_task_metrics(
    kind: str, predictions, references, num_labels: int | None = None, label_names=None
) -> dict[str, float]:
    """Metrics for one task of the given kind.

    ``sentence_classification`` -> ``{"accuracy"}``;
    ``pair_classification`` -> ``{"accuracy", "f1"}`` (binary F1, positive label 1; macro F1 over the classes
    when ``num_labels`` > 2 or a class id above 1 occurs, e.g. 3-way NLI);
    ``sentence_regression``, ``pair_regression`` -> ``{"pearson", "spearman"}``;
    ``token_classification`` -> ``{"f1", "precision", "recall", "accuracy"}`` (seqeval's strict IOB2 entity
    scores and word accuracy, :mod:`mtbert.metrics.entities`): ``predictions``/``references`` are one list of tag
    ids per sentence, named by ``label_names``.

    ``predictions`` are class ids for classification (take the argmax of the
    logits first) and scores for regression; a trailing singleton dimension is
    accepted. Raises ``ValueError`` for an unknown kind, empty input or
    predictions and references of different lengths.
    """
    if kind not in TASK_KIND_CLASSES:
        raise ValueError(f"Unknown task kind {kind!r}; expected one of {', '.join(TASK_KIND_CLASSES)}.")
    if get_kind(kind).target == "tags":
        return _tag_metrics(predictions, references, label_names)
    predictions = _as_1d(predictions, "predictions")
    references = _as_1d(references, "references")
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references differ in length ({len(predictions)} vs {len(references)}).")
    if len(predictions) == 0:
        raise ValueError("Cannot compute metrics on empty predictions and references.")

    results: dict[str, float] = {}
    task_kind = get_kind(kind)
    multiclass = (
        task_kind.is_pair
        and task_kind.target == "classes"
        and ((num_labels or 2) > 2 or max(predictions.max(), references.max()) > 1)
    )
    for key in task_kind.metrics:
        metric_name, metric_key = _PACKAGED[key]
        options = {"average": "macro"} if multiclass and metric_name == "f1" else {}
        output = load_metric(metric_name).compute(predictions=predictions, references=references, **options)
        results[key] = float(output[metric_key])
    return results


def _tag_metrics(predictions, references, label_names) -> dict[str, float]:
    if not label_names:
        raise ValueError("token_classification metrics need the task's label_names (tag ids are named by them)")
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references differ in length ({len(predictions)} vs {len(references)}).")
    if len(predictions) == 0:
        raise ValueError("Cannot compute metrics on empty predictions and references.")
    names = list(label_names)
    name = lambda row: [names[int(i)] for i in row]  # noqa: E731
    return entity_scores([name(r) for r in references], [name(p) for p in predictions])


def average_score(task_metrics: Mapping[str, Mapping[str, float]], kinds: Mapping[str, str]) -> float:
    """Mean over tasks of each task's primary metric (see ``PRIMARY_METRIC``).

    ``task_metrics`` maps task name -> the dict from ``compute_task_metrics``;
    ``kinds`` maps task name -> task kind. Every task in ``task_metrics`` must
    have a kind and its primary metric.
    """
    if not task_metrics:
        raise ValueError("average_score needs metrics for at least one task.")
    scores = []
    for task, metrics in task_metrics.items():
        if task not in kinds:
            raise ValueError(f"No task kind given for task {task!r}.")
        kind = kinds[task]
        if kind not in PRIMARY_METRIC:
            raise ValueError(
                f"Unknown task kind {kind!r} for task {task!r}; expected one of {', '.join(TASK_KIND_CLASSES)}."
            )
        primary = PRIMARY_METRIC[kind]
        if primary not in metrics:
            raise ValueError(f"Task {task!r} ({kind}) has no {primary!r} metric; got {sorted(metrics)}.")
        scores.append(float(metrics[primary]))
    return float(np.mean(scores))


def score_tasks(
    kinds: Mapping[str, str],
    predictions: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    prefix: str = "eval",
    label_names: Mapping[str, Sequence[str] | None] | None = None,
) -> dict[str, float]:
    """Every task's metrics plus their average, keyed as Trainer logs them: ``{prefix}_{task}_{metric}`` and
    ``{prefix}_average`` (the paper's mean of the tasks' primary metrics). ``label_names``: per task, the names of
    its tags (token tasks' entity metrics need them)."""
    per_task, metrics = {}, {}
    for task, kind in kinds.items():
        names = (label_names or {}).get(task)
        per_task[task] = compute_task_metrics(kind, predictions[task], np.asarray(labels[task]), label_names=names)
        for name, value in per_task[task].items():
            metrics[f"{prefix}_{task}_{name}"] = float(value)
    metrics[f"{prefix}_average"] = average_score(per_task, kinds)
    return metrics
