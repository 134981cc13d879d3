"""Batch prediction for one task's split, and the minBERT leaderboard file writers.

Prediction sorts rows by length so each batch pads little, then restores the original order.
"""

from __future__ import annotations

import contextlib
import logging
import os
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .collators import MODEL_COLUMNS, TaskCollator
from .kinds_mtbert import get_kind
from .modeling_mtbert import quantized_linear_count, sdpa_kernels
from .publish import discard, fresh_staging_dir, publish
from .token_data import token_results

# minBERT's leaderboard files: task -> (file prefix, header column), spelled as the leaderboard spells them.
LEADERBOARD_FILES = {
    "sst": ("sst", "Predicted_Sentiment"),
    "qqp": ("para", "Predicted_Is_Paraphrase"),
    "sts": ("sts", "Predicted_Similiary"),
}


# A note beside the leaderboard files when some of them hold only the first rows of their split (a cap was set).
PARTIAL_NOTE = "PARTIAL"
# The data setting that caps each split's rows, named in the warning and the note.
CAP_SETTINGS = {"dev": "max_eval_samples", "test": "max_predict_samples"}

logger = logging.getLogger(__name__)


class TaskSplits(dict):
    """One task's ``{split: tokenized dataset}``, remembering the rows a split had before a cap (``full_rows``:
    ``{split: rows}``, only for the capped splits), so the leaderboard files can say they are partial."""

    def __init__(self, *args, full_rows: dict[str, int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.full_rows = dict(full_rows or {})


def cap_splits(raw: dict[str, Any], caps: dict[str, int | None]) -> dict[str, int]:
    """Keep only the first ``caps[split]`` rows of each split in ``raw`` (in place); returns ``{split: rows before}``
    for the splits that lost rows."""
    full_rows = {}
    for split, cap in caps.items():
        if cap and split in raw and len(raw[split]) > cap:
            full_rows[split] = len(raw[split])
            raw[split] = raw[split].select(range(cap))
    return full_rows


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
    pad_to_multiple_of: int | None = None,
    cudnn_attention: bool = False,
) -> torch.Tensor:
    """A model's raw float32 logits (on the CPU) for the rows ``indices`` of a tokenized split (default: all), in
    that order. Rows are batched longest first so each batch pads little (to a multiple of ``pad_to_multiple_of``
    tokens if given: fewer shapes for a compiled encoder); ``(rows, num_labels)`` for sentence
    classification, ``(rows,)`` for pair tasks. A model with int8-quantized linear layers
    (``modeling_mtbert.quantize_int8``) runs without ``autocast`` (its kernels take float32 inputs; a logged line).
    On CUDA, attention runs without cuDNN's kernel, which would build a plan for each new batch shape
    (``modeling_mtbert.sdpa_kernels``), unless ``cudnn_attention``."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if autocast is not None and quantized_linear_count(model):
        logger.info("predicting %s without the bf16 autocast: the model's linear layers are int8-quantized", task)
        autocast = None
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    columns = _model_columns(dataset)
    rows = dataset.select_columns(columns)[indices.tolist()] if len(indices) else {c: [] for c in columns}
    lengths = np.array([len(x) for x in rows["input_ids"]], dtype=np.int64)
    if "input_ids_b" in rows:
        lengths = np.maximum(lengths, [len(x) for x in rows["input_ids_b"]])
    order = np.argsort(-lengths, kind="stable")
    collate = TaskCollator(pad_token_id, pad_to_multiple_of)
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
            with autocast(), sdpa_kernels(device, cudnn_attention):
                pieces.append(model(task=task, **batch).logits.float().cpu())
    finally:
        model.train(was_training)
    if not pieces:
        return model.task_head(task).empty_logits()
    if pieces[0].dim() == 3:  # a token task: (rows, length, tags) per batch, padded to the longest batch
        longest = max(piece.shape[1] for piece in pieces)
        pieces = [torch.nn.functional.pad(p, (0, 0, 0, longest - p.shape[1]), value=-100.0) for p in pieces]
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
    cudnn_attention: bool = False,
) -> dict[str, np.ndarray]:
    """Predict a tokenized split (or the rows ``indices`` of it).

    Returns ``{"index", "predictions", "scores"}`` arrays, in the order of ``indices`` (or of the dataset).
    """
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    logits = task_logits(
        model, task, dataset, batch_size, pad_token_id, device, indices, autocast, progress,
        cudnn_attention=cudnn_attention,
    )  # fmt: skip
    spec = model.config.tasks[task]
    if get_kind(spec).target == "tags":  # one tag per word, in the order of ``indices``
        rows = dataset.select_columns(["word_ids", "tokens"]).select(indices.tolist())
        result = token_results(rows, logits, partial(model.postprocess, task), spec)
        return {**result, "index": indices}
    predictions, scores = model.postprocess(task, logits)
    return {
        "index": indices,
        "predictions": predictions.double().numpy(),
        "scores": scores.float().double().numpy(),
    }


def format_prediction(kind: str, value, spec: dict[str, Any] | None = None) -> str:
    """Classes as integers, similarity scores as floats, a token task's tags as their names (the kind decides)."""
    return get_kind(kind).format_prediction(value, spec or {})


def leaderboard_name(task: str, split: str) -> tuple[str, str]:
    """``(file name, header column)`` of a task's leaderboard file (tasks of your own get
    ``<task>-<split>-output.csv``)."""
    prefix, column = LEADERBOARD_FILES.get(task, (task, "Predicted_Label"))
    return f"{prefix}-{split}-output.csv", column


def write_leaderboard_file(
    path: str, ids: Sequence[str], predictions: Sequence[float], kind: str, column: str,
    spec: dict[str, Any] | None = None,
) -> None:
    """One file in minBERT's format: a header ``id \\t <column>`` and rows ``<id> , <prediction>``.

    Written to a temporary name and renamed, so an interrupted run never leaves half a file.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(f"id \t {column} \n")
        for row_id, value in zip(ids, predictions):
            handle.write(f"{row_id} , {format_prediction(kind, value, spec)} \n")
    os.replace(tmp, path)


def write_predictions(
    model,
    task_splits: dict[str, dict[str, Any]],
    output_dir: str,
    batch_size: int = 128,
    pad_token_id: int = 0,
    known: dict[tuple[str, str], dict[str, np.ndarray]] | None = None,
    progress: bool = True,
    cudnn_attention: bool = False,
) -> list[str]:
    """Predict every ``{task: {split: tokenized dataset}}`` and write the leaderboard files into ``output_dir``.

    ``known`` holds predictions already made (e.g. the dev sets scored by the last evaluation), keyed by
    ``(task, split)``, so they are not computed twice. A split capped by ``max_eval_samples``/``max_predict_samples``
    (a :class:`TaskSplits` with ``full_rows``) is written as it is, with a warning and a line in
    ``<output_dir>/PARTIAL`` (the files keep the leaderboard format; a run without partial files removes the note).

    All the files or none: they are written into a staging folder beside ``output_dir`` and moved into it only when
    every one is written (:mod:`mtbert.publish`), so a task whose prediction fails leaves ``output_dir`` as it was.
    """
    written, partial = [], []
    staging = fresh_staging_dir(output_dir)
    try:
        for task, splits in task_splits.items():
            spec = model.config.tasks[task]
            kind = spec["kind"]
            for split, dataset in splits.items():
                result = (known or {}).get((task, split))
                if result is None or len(result["predictions"]) != len(dataset):
                    result = predict_task(
                        model, task, dataset, batch_size=batch_size, pad_token_id=pad_token_id, progress=progress,
                        cudnn_attention=cudnn_attention,
                    )  # fmt: skip
                name, column = leaderboard_name(task, split)
                write_leaderboard_file(
                    os.path.join(staging, name), dataset["id"], result["predictions"], kind, column, spec
                )
                path = os.path.join(output_dir, name)
                written.append(path)
                full = getattr(splits, "full_rows", {}).get(split)
                if full is not None and full > len(dataset):
                    setting = CAP_SETTINGS.get(split, "a row cap")
                    partial.append(f"{name}: the first {len(dataset):,} of {full:,} rows ({setting} {len(dataset)})")
                    logger.warning("%s holds only the first %d of %d rows (%s): not a full leaderboard file",
                                   path, len(dataset), full, setting)
        if partial:
            with open(os.path.join(staging, PARTIAL_NOTE), "w", encoding="utf-8") as handle:
                handle.write("These leaderboard files hold only part of their split (rows capped by a data setting):")
                handle.write("\n")
                handle.writelines(f"{line}\n" for line in partial)
    except BaseException:
        discard(staging)
        raise
    if not written:  # no task with these splits: nothing to put in place
        discard(staging)
        return written
    publish(staging, output_dir, replace=[PARTIAL_NOTE])  # files written anew in full: an earlier note no longer holds
    return written
