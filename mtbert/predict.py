"""Batch prediction for one task's split, and the minBERT leaderboard file writers.

Prediction sorts rows by length so each batch pads little, then restores the original order.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .collators import MODEL_COLUMNS, TaskCollator

# minBERT's leaderboard files: task -> (file prefix, header column), spelled as the leaderboard spells them.
LEADERBOARD_FILES = {
    "sst": ("sst", "Predicted_Sentiment"),
    "qqp": ("para", "Predicted_Is_Paraphrase"),
    "sts": ("sts", "Predicted_Similiary"),
}


def _model_columns(dataset) -> list[str]:
    return [c for c in MODEL_COLUMNS if c in dataset.column_names]


@torch.no_grad()
def task_logits(
    model,
    task: str,
    dataset,
    batch_size: int = 128,
    pad_token_id: int = 0,
    device: torch.device | str | None = None,
    indices: Sequence[int] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """A model's raw float32 logits (on the CPU) for the rows ``indices`` of a tokenized split (default: all), in
    that order. Rows are batched longest first so each batch pads little; ``(rows, num_labels)`` for sentence
    classification, ``(rows,)`` for pair tasks."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    columns = _model_columns(dataset)
    rows = dataset.select_columns(columns)[indices.tolist()] if len(indices) else {c: [] for c in columns}
    lengths = np.array([len(x) for x in rows["input_ids"]], dtype=np.int64)
    if "input_ids_b" in rows:
        lengths = np.maximum(lengths, [len(x) for x in rows["input_ids_b"]])
    order = np.argsort(-lengths, kind="stable")
    collate = TaskCollator(pad_token_id)
    autocast = autocast or contextlib.nullcontext
    was_training = model.training
    model.eval()
    pieces = []
    try:
        for start in tqdm(
            range(0, len(order), batch_size), desc=f"Predicting {task}", disable=not progress, leave=False
        ):
            chunk = order[start : start + batch_size]
            batch = collate([{c: rows[c][i] for c in columns} for i in chunk])
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast():
                pieces.append(model(task=task, **batch).logits.float().cpu())
    finally:
        model.train(was_training)
    if not pieces:
        return model.task_head(task).empty_logits()
    sorted_logits = torch.cat(pieces)
    logits = torch.empty_like(sorted_logits)
    logits[torch.as_tensor(order)] = sorted_logits
    return logits


def predict_task(
    model,
    task: str,
    dataset,
    batch_size: int = 128,
    pad_token_id: int = 0,
    device: torch.device | str | None = None,
    indices: Sequence[int] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Predict a tokenized split (or the rows ``indices`` of it).

    Returns ``{"index", "predictions", "scores"}`` arrays, in the order of ``indices`` (or of the dataset).
    """
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    logits = task_logits(model, task, dataset, batch_size, pad_token_id, device, indices, autocast, progress)
    predictions, scores = model.postprocess(task, logits)
    return {
        "index": indices,
        "predictions": predictions.double().numpy(),
        "scores": scores.float().double().numpy(),
    }


def format_prediction(kind: str, value: float) -> str:
    """Classes as integers, similarity scores as floats."""
    return f"{value:.6g}" if kind.endswith("regression") else str(int(value))


def leaderboard_name(task: str, split: str) -> tuple[str, str]:
    """``(file name, header column)`` of a task's leaderboard file (tasks of your own get
    ``<task>-<split>-output.csv``)."""
    prefix, column = LEADERBOARD_FILES.get(task, (task, "Predicted_Label"))
    return f"{prefix}-{split}-output.csv", column


def write_leaderboard_file(
    path: str, ids: Sequence[str], predictions: Sequence[float], kind: str, column: str
) -> None:
    """One file in minBERT's format: a header ``id \\t <column>`` and rows ``<id> , <prediction>``.

    Written to a temporary name and renamed, so an interrupted run never leaves half a file.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(f"id \t {column} \n")
        for row_id, value in zip(ids, predictions):
            handle.write(f"{row_id} , {format_prediction(kind, value)} \n")
    os.replace(tmp, path)


def write_predictions(
    model,
    task_splits: dict[str, dict[str, Any]],
    output_dir: str,
    batch_size: int = 128,
    pad_token_id: int = 0,
    known: dict[tuple[str, str], dict[str, np.ndarray]] | None = None,
) -> list[str]:
    """Predict every ``{task: {split: tokenized dataset}}`` and write the leaderboard files into ``output_dir``.

    ``known`` holds predictions already made (e.g. the dev sets scored by the last evaluation), keyed by
    ``(task, split)``, so they are not computed twice.
    """
    written = []
    for task, splits in task_splits.items():
        kind = model.config.tasks[task]["kind"]
        for split, dataset in splits.items():
            result = (known or {}).get((task, split))
            if result is None or len(result["predictions"]) != len(dataset):
                result = predict_task(model, task, dataset, batch_size=batch_size, pad_token_id=pad_token_id)
            name, column = leaderboard_name(task, split)
            path = os.path.join(output_dir, name)
            write_leaderboard_file(path, dataset["id"], result["predictions"], kind, column)
            written.append(path)
    return written
