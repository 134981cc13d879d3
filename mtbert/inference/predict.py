"""Batch prediction for one task's split, and the minBERT leaderboard file writers.

Prediction sorts rows by length so each batch pads little, then restores the original order.

Every task of one file of inputs (``examples/predict.py --input_file inputs.csv --tasks all``): :func:`read_inputs`
reads a CSV/TSV/JSON Lines file (a ``text`` column, with ``text_pair`` for pairs), :func:`input_tasks` picks the
tasks that fit its columns, :func:`predict_tasks` predicts them together (:func:`tasks_logits`: one batch order for
every task, each batch through ``model.forward_tasks``, so tasks that tokenize alike share one encoder pass) and
:func:`write_task_predictions` writes one file with a column per task.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.collators import MODEL_COLUMNS, TaskCollator
from ..data.static_shapes import StaticShapeCollator
from ..hub.publish import discard, fresh_staging_dir, publish
from ..models.mtbert.configuration_mtbert import MultitaskConfigError
from ..models.mtbert.heads_mtbert import head_class, input_layout
from ..models.mtbert.kinds_mtbert import get_kind
from ..models.mtbert.modeling_mtbert import quantized_linear_count, sdpa_kernels
from ..tasks.token_data import token_results
from .prediction_speed import prefetched

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


class TaskSplits(dict[str, Any]):
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
    indices: Sequence[int] | np.ndarray | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    progress: bool = True,
    pad_to_multiple_of: int | None = None,
    cudnn_attention: bool = False,
    desc: str | None = None,
    length_buckets: Sequence[int] | None = None,
) -> torch.Tensor:
    """A model's raw float32 logits (on the CPU) for the rows ``indices`` of a tokenized split (default: all), in
    that order. Rows are batched longest first so each batch pads little (to a multiple of ``pad_to_multiple_of``
    tokens if given: fewer shapes for a compiled encoder); ``(rows, num_labels)`` for sentence
    classification, ``(rows,)`` for pair tasks. A model with int8-quantized linear layers
    (``modeling_mtbert.quantize_int8``) runs without ``autocast`` (its kernels take float32 inputs; a logged line).
    On CUDA, attention runs without cuDNN's kernel, which would build a plan for each new batch shape
    (``modeling_mtbert.sdpa_kernels``), unless ``cudnn_attention``. ``length_buckets``: pad each batch to the
    smallest of these lengths that holds it (``mtbert.data.static_shapes``: few shapes, for graphs or compiled
    kernels). On CUDA the next batches are collated in a background thread and the logits copied back once at the end
    (``mtbert.inference.prediction_speed``)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if autocast is not None and quantized_linear_count(model):
        logger.info("predicting %s without the bf16 autocast: the model's linear layers are int8-quantized", task)
        autocast = None
    rows_at = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    columns = _model_columns(dataset)
    rows = dataset.select_columns(columns)[rows_at.tolist()] if len(rows_at) else {c: [] for c in columns}
    lengths = np.array([len(x) for x in rows["input_ids"]], dtype=np.int64)
    if "input_ids_b" in rows:
        lengths = np.maximum(lengths, [len(x) for x in rows["input_ids_b"]])
    order = np.argsort(-lengths, kind="stable")
    collate: Callable = TaskCollator(pad_token_id, pad_to_multiple_of)
    if length_buckets:
        collate = StaticShapeCollator(collate, length_buckets, pad_token_id)
    autocast = autocast or contextlib.nullcontext
    was_training = model.training
    model.eval()
    pieces = []
    starts = range(0, len(order), batch_size)

    def batches():
        for start in starts:
            batch = collate([{c: rows[c][i] for c in columns} for i in order[start : start + batch_size]])
            yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    try:
        for batch in tqdm(
            prefetched(batches(), enabled=device.type == "cuda"),
            total=len(starts),
            desc=desc or f"Predicting {task}",
            disable=not progress,
            leave=False,
        ):
            with autocast(), sdpa_kernels(device, cudnn_attention):
                pieces.append(model(task=task, **batch).logits.float())
    finally:
        model.train(was_training)
    return _in_row_order(model, task, [piece.cpu() for piece in pieces], order)


def _in_row_order(model, task: str, pieces: list[torch.Tensor], order: np.ndarray) -> torch.Tensor:
    """The logits of batches taken in ``order``, put back in row order (a token task's padded to one length)."""
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
    rows_at = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    logits = task_logits(
        model, task, dataset, batch_size, pad_token_id, device, rows_at, autocast, progress,
        cudnn_attention=cudnn_attention,
    )  # fmt: skip
    return task_results(model, task, dataset, rows_at, logits)


def task_results(model, task: str, dataset, indices: np.ndarray, logits: torch.Tensor) -> dict[str, np.ndarray]:
    """``{"index", "predictions", "scores"}`` of a task from its logits for the rows ``indices`` of ``dataset``."""
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
    path: str,
    ids: Sequence[str],
    predictions: Sequence[Any] | np.ndarray,
    kind: str,
    column: str,
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
    task_splits: Mapping[str, Mapping[str, Any]],
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
    every one is written (:mod:`mtbert.hub.publish`), so a task whose prediction fails leaves ``output_dir`` as it was.
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
                    logger.warning(
                        "%s holds only the first %d of %d rows (%s): not a full leaderboard file",
                        path,
                        len(dataset),
                        full,
                        setting,
                    )
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


# ---------------------------------------------------------------------------------------------------------------
# Every task of one file of inputs (examples/predict.py --input_file ... --tasks all)
# ---------------------------------------------------------------------------------------------------------------

#: ``--tasks all``: every task whose input the file holds (a model's own task named ``all`` wins)
ALL_TASKS = "all"
#: input files by extension: CSV, TSV (quotes are text, as in minBERT/GLUE files) and JSON Lines
INPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
#: the file the predictions go to in ``output_dir``, with the input file's extension
PREDICTIONS_STEM = "predictions"


@dataclass
class InputRows:
    """An input file's rows: ``ids`` (its ``id`` column, else row numbers), ``text``, ``text_pair`` (``None``
    without that column) and each row's ``tokens`` for token tasks (its ``tokens`` column, else the text's words)."""

    path: str
    format: str
    ids: list[str]
    text: list[str]
    text_pair: list[str] | None
    tokens: list[list[str]]

    @property
    def pairs(self) -> bool:
        return self.text_pair is not None


def _input_records(path: str, fmt: str) -> list[dict[str, Any]]:
    """The file's rows as mappings: CSV/TSV rows by their header, JSON Lines objects."""
    from ..data.validation import DataFileError

    with open(path, encoding="utf-8", newline="") as handle:
        if fmt != "jsonl":
            if fmt == "tsv":
                return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
            return list(csv.DictReader(handle))
        records = []
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                raise DataFileError(
                    f"input_file {path!r}: line {number} is not a JSON object (JSON Lines: one object per line)"
                )
            records.append(record)
        return records


def read_inputs(path: str) -> InputRows:
    """The rows of a CSV, TSV or JSON Lines file of inputs, checked: a ``text`` column (and ``text_pair`` for
    sentence pairs), no empty text; one :class:`~mtbert.data.validation.DataFileError` line naming ``input_file``
    otherwise."""
    from ..data.validation import DataFileError, clean_text

    if not isinstance(path, str) or not path.strip():
        raise DataFileError("input_file is empty: name a .csv, .tsv or .jsonl file of inputs")
    where = f"input_file {path!r}"
    fmt = INPUT_FORMATS.get(os.path.splitext(path)[1].lower())
    if not os.path.isfile(os.path.expanduser(path)):
        raise DataFileError(f"{where} is not a file")
    if fmt is None:
        raise DataFileError(f"{where}: use a .csv, .tsv or .jsonl file (a text column, and text_pair for pairs)")
    try:
        records = _input_records(os.path.expanduser(path), fmt)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as error:
        if isinstance(error, DataFileError):
            raise
        raise DataFileError(f"{where} could not be read as {fmt} ({error})") from None
    if not records:
        raise DataFileError(f"{where} has no rows")
    columns = [str(c) for c in records[0] if c is not None]
    if "text" not in columns:
        raise DataFileError(
            f"{where} has no text column (found {', '.join(columns) or 'none'}); name the sentence column text, "
            "and a pair's second sentence text_pair"
        )
    pairs = "text_pair" in columns
    rows = InputRows(path, fmt, [], [], [] if pairs else None, [])
    for number, record in enumerate(records, start=1):
        text = clean_text(record.get("text"))
        second = clean_text(record.get("text_pair")) if pairs else None
        if not text or (pairs and not second):
            raise DataFileError(f"{where}: row {number} has an empty {'text' if not text else 'text_pair'}")
        row_id = record.get("id")
        rows.ids.append(str(row_id).strip() if row_id not in (None, "") else str(number - 1))
        rows.text.append(text)
        if rows.text_pair is not None and second:
            rows.text_pair.append(second)
        words = record.get("tokens")  # a token task's words: a list (JSON Lines) or one spaced string
        words = words.split() if isinstance(words, str) else words if isinstance(words, list) else None
        rows.tokens.append([str(w) for w in words] if words else text.split())
    return rows


def input_tasks(specs: dict[str, dict[str, Any]], requested: Sequence[str] | None, rows: InputRows) -> tuple[str, ...]:
    """The tasks to predict for the file: those ``--tasks`` lists, or with ``all`` (the default) every task whose
    input the file holds (a ``text_pair`` column: pair tasks; else one-sentence and token tasks)."""
    fits = {name: head_class(spec).pair == rows.pairs for name, spec in specs.items()}
    holds = "sentence pairs (a text_pair column)" if rows.pairs else "single sentences (no text_pair column)"
    if requested is None or (list(requested) == [ALL_TASKS] and ALL_TASKS not in specs):
        tasks = tuple(name for name, fit in fits.items() if fit)
        if not tasks:
            kinds = ", ".join(f"{name} ({spec['kind']})" for name, spec in specs.items())
            raise MultitaskConfigError(
                f"tasks all: {rows.path} holds {holds}, and no task of the model reads them (it has {kinds})"
            )
        return tasks
    requested = list(requested)
    if not requested:
        raise MultitaskConfigError(f"tasks: name at least one of {', '.join(specs)}, or all")
    for name in requested:
        if name not in specs:
            also = "" if ALL_TASKS in specs else ", or all alone"
            raise MultitaskConfigError(f"tasks: unknown task {name!r}; the model has {', '.join(specs)}{also}")
        if requested.count(name) > 1:
            raise MultitaskConfigError(f"tasks: {name!r} is listed more than once")
        if not fits[name]:
            reads = "compares two sentences" if head_class(specs[name]).pair else "reads one sentence"
            raise MultitaskConfigError(
                f"tasks: task {name!r} ({specs[name]['kind']}) {reads}, and {rows.path} holds {holds}"
            )
    return tuple(requested)


def tokenize_inputs(rows: InputRows, tokenizer, specs: dict[str, dict[str, Any]], tasks: Sequence[str],
                    max_length: int):  # fmt: skip
    """``{task: tokenized dataset}`` of the rows, tokenized once per input layout (tasks of one layout share it)."""
    import datasets

    from ..data.tokenization import tokenize_task

    columns: dict[str, list] = {"id": rows.ids, "text": rows.text}
    if rows.text_pair is not None:
        columns["text_pair"] = rows.text_pair
    if any(get_kind(specs[task]).input == "tokens" for task in tasks):
        columns["tokens"] = rows.tokens
    dataset = datasets.Dataset.from_dict(columns)
    by_layout, out = {}, {}
    for task in tasks:
        layout = input_layout(specs[task])
        if layout not in by_layout:
            by_layout[layout] = tokenize_task(dataset, tokenizer, specs[task], max_length)
        out[task] = by_layout[layout]
    return out


def _row_lengths(dataset) -> np.ndarray:
    """Each tokenized row's longest sequence (what its batch pads to)."""
    keys = [k for k in ("input_ids", "input_ids_b", "pair_input_ids_a", "pair_input_ids_b") if k in dataset.features]
    return np.max([[len(ids) for ids in dataset[k]] for k in keys], axis=0).astype(np.int64)


@torch.no_grad()
def tasks_logits(
    model,
    splits: dict[str, Any],
    batch_size: int = 128,
    pad_token_id: int = 0,
    device: torch.device | str | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    progress: bool = True,
    cudnn_attention: bool = False,
) -> dict[str, torch.Tensor]:
    """Every task's raw float32 logits (on the CPU) for the same rows, each tokenized for its task
    (``{task: dataset}``, row ``i`` the same input in each), in row order as :func:`task_logits` gives them.

    The rows are batched longest first in one order for all tasks, and each batch of every task goes through
    ``model.forward_tasks`` together: tasks whose heads tokenize alike get equal batches and share one encoder pass
    (``modeling_mtbert.EncoderPasses``)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if autocast is not None and quantized_linear_count(model):
        logger.info("predicting without the bf16 autocast: the model's linear layers are int8-quantized")
        autocast = None
    tasks = list(splits)
    rows = {task: splits[task].select_columns(_model_columns(splits[task]))[:] for task in tasks}
    order = np.argsort(-np.max([_row_lengths(splits[task]) for task in tasks], axis=0), kind="stable")
    collate = TaskCollator(pad_token_id)
    autocast = autocast or contextlib.nullcontext
    was_training = model.training
    model.eval()
    pieces: dict[str, list[torch.Tensor]] = {task: [] for task in tasks}
    try:
        for start in tqdm(
            range(0, len(order), batch_size), desc=f"Predicting {', '.join(tasks)}", disable=not progress, leave=False
        ):
            chunk = order[start : start + batch_size]
            batches = {}
            for task, columns in rows.items():
                batch = collate([{c: values[i] for c, values in columns.items()} for i in chunk])
                batch.pop("labels", None)  # a labelled split's labels: prediction reads the inputs only
                batches[task] = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast(), sdpa_kernels(device, cudnn_attention):
                outputs = model.forward_tasks(batches)
            for task in tasks:
                pieces[task].append(outputs[task].logits.float().cpu())
    finally:
        model.train(was_training)
    return {task: _in_row_order(model, task, pieces[task], order) for task in tasks}


def predict_tasks(model, splits: dict[str, Any], batch_size: int = 128, pad_token_id: int = 0,
                  device: torch.device | str | None = None, progress: bool = True,
                  cudnn_attention: bool = False) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """:func:`predict_task` of every ``{task: dataset}`` of the same rows, the tasks predicted together
    (:func:`tasks_logits`): ``{task: {"index", "predictions", "scores"}}``."""
    logits = tasks_logits(model, splits, batch_size, pad_token_id, device, progress=progress,
                          cudnn_attention=cudnn_attention)  # fmt: skip
    indices = np.arange(len(next(iter(splits.values()))))
    return {task: task_results(model, task, splits[task], indices, logits[task]) for task in splits}


def prediction_value(spec: dict[str, Any], value: Any) -> Any:
    """A row's prediction as a predictions file holds it: a label name, a score, or a token task's tags."""
    names = spec.get("label_names")
    if get_kind(spec).label_is_sequence:
        return [names[int(i)] for i in value]  # type: ignore[index]  # a token kind always names its tags
    return names[int(value)] if names else float(value)


def write_task_predictions(path: str, rows: InputRows, specs: dict[str, dict[str, Any]],
                           results: dict[str, dict[str, np.ndarray]]) -> None:  # fmt: skip
    """One file in the input's format: ``id``, ``text`` (``text_pair``) and a column per task (tags joined by
    spaces in CSV/TSV, a list in JSON Lines)."""
    columns = {"id": rows.ids, "text": rows.text, **({"text_pair": rows.text_pair} if rows.pairs else {})}
    for task, result in results.items():
        columns[task] = [prediction_value(specs[task], value) for value in result["predictions"]]
    records = [dict(zip(columns, values)) for values in zip(*columns.values())]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        if rows.format == "jsonl":
            handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
            return
        writer = csv.writer(handle, delimiter="\t" if rows.format == "tsv" else ",", lineterminator="\n")
        writer.writerow(columns)
        for record in records:
            writer.writerow(" ".join(v) if isinstance(v, list) else v for v in record.values())


def predict_file(model, tokenizer, input_file: str, output_dir: str, tasks: Sequence[str] | None = None,
                 batch_size: int = 128, max_length: int = 128, progress: bool = True) -> str:  # fmt: skip
    """Predict the tasks ``tasks`` (default: all that fit) for every row of ``input_file`` and write
    ``<output_dir>/predictions.<ext>`` (moved into place once written whole); returns its path."""
    rows = read_inputs(input_file)
    specs = model.config.tasks
    tasks = input_tasks(specs, tasks, rows)
    splits = tokenize_inputs(rows, tokenizer, specs, tasks, max_length)
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    results = predict_tasks(model, splits, batch_size, pad_token_id, progress=progress)
    name = PREDICTIONS_STEM + (".jsonl" if rows.format == "jsonl" else f".{rows.format}")
    staging = fresh_staging_dir(output_dir)
    try:
        write_task_predictions(os.path.join(staging, name), rows, specs, results)
    except BaseException:
        discard(staging)
        raise
    publish(staging, output_dir)
    return os.path.join(output_dir, name)
