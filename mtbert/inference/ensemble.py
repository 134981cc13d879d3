"""Prediction-time ensembles of trained multitask models (e.g. the same recipe trained with several seeds).

Members are combined by averaging what each predicts, on the scale the prediction is made on:
- sentence classification: the mean of the softmax probabilities, then the argmax (score: its mean probability);
- paraphrase with a classifier head: the mean sigmoid probability, positive above 0.5;
- paraphrase with a cosine head: the mean cosine, positive above the first member's ``cosine_threshold``;
- similarity (pair regression): the mean predicted score;
- token classification: per sub-token, the mean of the softmax probabilities, then each word takes its first
  sub-token's argmax (one list of tags per row, as ``predict_task`` gives it).

Every member must have the same tasks, with the same kinds (and label counts, score ranges, cosine-or-not paraphrase
heads); they may differ in everything else, input layout included: each member reads its task's rows tokenized for
its own head. An ensemble costs one forward pass per member; ``mtbert.inference.averaging`` gives one model instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..metrics import score_tasks
from ..models.mtbert.configuration_mtbert import MultitaskConfigError
from ..models.mtbert.heads_mtbert import CosineThreshold, input_layout, objective
from ..models.mtbert.kinds_mtbert import get_kind
from ..tasks.token_data import token_results
from .predict import leaderboard_name, task_logits, write_leaderboard_file

logger = logging.getLogger("mtbert")

METRICS_FILE = "ensemble_metrics.json"


# ---------------------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------------------


def check_compatible(configs: Sequence[Any], names: Sequence[str] | None = None) -> None:
    """Raise ``MultitaskConfigError`` unless the members' predictions can be averaged task by task.

    ``configs`` are the members' ``MultitaskBertConfig`` (or anything with ``.tasks``); ``names`` label them in the
    message (default ``model 0``, ``model 1``...).
    """
    if not configs:
        raise MultitaskConfigError("an ensemble needs at least one model")
    names = list(names) if names is not None else [f"model {i}" for i in range(len(configs))]
    first, first_name = configs[0].tasks, names[0]
    for config, name in zip(configs[1:], names[1:]):
        tasks = config.tasks
        if set(tasks) != set(first):
            raise MultitaskConfigError(
                f"ensemble members must have the same tasks: {first_name} has {', '.join(first)} but {name} has "
                f"{', '.join(tasks)}"
            )
        for task, spec in first.items():
            other = tasks[task]
            if other["kind"] != spec["kind"]:
                raise MultitaskConfigError(
                    f"ensemble members must have the same task kinds: task {task!r} is {spec['kind']} in "
                    f"{first_name} but {other['kind']} in {name}"
                )
            if other["num_labels"] != spec["num_labels"]:
                raise MultitaskConfigError(
                    f"task {task!r} has {spec['num_labels']} labels in {first_name} but {other['num_labels']} "
                    f"in {name}"
                )
            if other["score_range"] != spec["score_range"]:
                raise MultitaskConfigError(
                    f"task {task!r} scores on {spec['score_range']} in {first_name} but {other['score_range']} "
                    f"in {name}"
                )
            mine, theirs = objective(spec), objective(other)
            if type(mine) is not type(theirs):
                raise MultitaskConfigError(
                    f"task {task!r} has {mine.noun} in {first_name} but {theirs.noun} in {name}: a cosine "
                    "similarity and a probability cannot be averaged"
                )
            if isinstance(mine, CosineThreshold) and spec["cosine_threshold"] != other["cosine_threshold"]:
                logger.warning(
                    "task %r: cosine_threshold %s in %s but %s in %s; the ensemble uses the first model's (%s)",
                    task,
                    spec["cosine_threshold"],
                    first_name,
                    other["cosine_threshold"],
                    name,
                    spec["cosine_threshold"],
                )


# ---------------------------------------------------------------------------------------------------------------
# Logits of one member, then the combination
# ---------------------------------------------------------------------------------------------------------------


def combine_logits(spec: dict[str, Any], member_logits: Sequence[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """``(predictions, scores)`` of the ensemble from each member's logits for one task (``spec``: the first
    member's task specification, whose ``cosine_threshold`` is used)."""
    if not member_logits:
        raise MultitaskConfigError("an ensemble needs at least one model")
    predictions, scores = objective(spec).combine(member_logits)
    return predictions.double().numpy(), scores.double().numpy()


def _pad_token_logits(member_logits: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A token task's ``(rows, length, tags)`` logits of every member padded to one length (members batch alike, but
    their padded lengths need not agree); the padding is never read (no word starts there)."""
    longest = max(x.shape[1] for x in member_logits)
    return [torch.nn.functional.pad(x, (0, 0, 0, longest - x.shape[1]), value=-100.0) for x in member_logits]


def combine_results(spec: dict[str, Any], member_logits: Sequence[torch.Tensor], dataset) -> tuple[Any, Any]:
    """``(predictions, scores)`` of the ensemble for the rows of a tokenized split: :func:`combine_logits`, and for a
    token task the combined sub-token tags put back on the words (``dataset``'s ``word_ids``/``tokens``), one list
    per row."""
    if get_kind(spec).target != "tags":
        return combine_logits(spec, member_logits)
    member_logits = _pad_token_logits(member_logits)
    rows = dataset.select_columns(["word_ids", "tokens"])
    result = token_results(rows, member_logits[0], lambda _: objective(spec).combine(member_logits), spec)
    return result["predictions"], result["scores"]


def _datasets_per_member(models: Sequence[Any], task: str, dataset) -> list:
    if isinstance(dataset, (list, tuple)):
        if len(dataset) != len(models):
            raise MultitaskConfigError(f"{len(dataset)} datasets for {len(models)} models: pass one per model")
        if len({len(d) for d in dataset}) > 1:
            raise MultitaskConfigError(f"the members' {task!r} datasets have different numbers of rows")
        return list(dataset)
    formats = {input_layout(m.config.tasks[task]) for m in models}
    if len(formats) > 1:
        raise MultitaskConfigError(
            f"the members read task {task!r} in different layouts ({', '.join(sorted(formats))}): pass one dataset "
            "per model, each tokenized for that model's head"
        )
    return [dataset] * len(models)


def ensemble_predict_task(
    models: Sequence[Any],
    task: str,
    dataset,
    batch_size: int = 128,
    pad_token_id: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Predict a tokenized split with an ensemble: ``{"index", "predictions", "scores"}`` like ``predict_task``.

    ``dataset`` is one tokenized split, or a list of them (one per model, the same rows) when the members read the
    task in different layouts (e.g. a joined pair and a pair encoded separately). ``device``: where every member
    runs (default: each member's own device). An ensemble of one model gives that model's ``predict_task`` result.
    """
    models = list(models)
    check_compatible([m.config for m in models])
    if task not in models[0].config.tasks:
        raise MultitaskConfigError(f"unknown task {task!r}; the ensemble has {', '.join(models[0].config.tasks)}")
    member_data = _datasets_per_member(models, task, dataset)
    member_logits = [
        task_logits(m, task, d, batch_size=batch_size, pad_token_id=pad_token_id, device=device, progress=progress)
        for m, d in zip(models, member_data)
    ]
    predictions, scores = combine_results(models[0].config.tasks[task], member_logits, member_data[0])
    return {"index": np.arange(len(member_data[0])), "predictions": predictions, "scores": scores}


# ---------------------------------------------------------------------------------------------------------------
# Saved models → leaderboard files and dev metrics
# ---------------------------------------------------------------------------------------------------------------


_PROBE = "Hello, WORLD! Naïve café [UNK] 12345 don't re-tokenize"


def _check_same_tokenizer(first, other, first_path: str, path: str) -> None:
    same = (
        first.get_vocab() == other.get_vocab()
        and first(_PROBE)["input_ids"] == other(_PROBE)["input_ids"]
        and first.pad_token_id == other.pad_token_id
    )
    if not same:
        raise MultitaskConfigError(
            f"{path!r} uses another tokenizer than {first_path!r}: an ensemble reads every row through one tokenizer"
        )


def _for_task(data_args, task: str):
    """``data_args`` with only ``task``'s ``task_data`` entry: each task is loaded on its own here, and the other
    entries would name tasks it does not know."""
    entries = data_args.task_data
    if not isinstance(entries, dict) or set(entries) <= {task}:
        return data_args
    return dataclasses.replace(data_args, task_data={task: entries[task]} if task in entries else None)


def _object_array(rows: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    out[:] = [list(r) for r in rows]
    return out


def predict_ensemble(
    model_paths: Sequence[str],
    data_args,
    output_dir: str,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    quantize: str | None = None,
) -> tuple[list[str], dict[str, float]]:
    """Write the ensemble's leaderboard files (dev and test of every task) into ``output_dir`` and score its dev sets.

    Members are loaded one at a time (only one model is in memory); each is checked (same tasks and kinds, same
    tokenizer) before any weights are loaded. Returns the written paths and the dev metrics
    ``{"eval_<task>_<metric>": ..., "eval_average": ...}``, also written to ``<output_dir>/ensemble_metrics.json``.
    ``quantize="int8"``: every member predicts with its linear layers quantized to int8 (CPU only, checked first;
    ``modeling_mtbert.quantize_int8``).
    """
    from ..cli.run import load_tokenized
    from ..models.mtbert.modeling_mtbert import quantize_int8, resolve_quantize
    from .loading import load_config, load_model, load_tokenizer

    quantize = resolve_quantize(quantize, device)
    model_paths = [str(p) for p in model_paths]
    if not model_paths:
        raise MultitaskConfigError("predict_ensemble needs at least one model")
    configs = [load_config(path) for path in model_paths]  # every folder checked before any weights are read
    check_compatible(configs, [repr(p) for p in model_paths])
    tokenizer = load_tokenizer(model_paths[0])
    for path in model_paths[1:]:
        _check_same_tokenizer(tokenizer, load_tokenizer(path), model_paths[0], path)
    pad_token_id = tokenizer.pad_token_id or 0
    tasks = configs[0].tasks
    kinds = {task: spec["kind"] for task, spec in tasks.items()}

    # one tokenization per (task, input layout) the members read
    data: dict[tuple[str, str], dict[str, Any]] = {}
    for config in configs:
        for task, spec in config.tasks.items():
            key = (task, input_layout(spec))
            if key not in data:
                task_args = _for_task(data_args, task)
                data[key] = load_tokenized({task: spec}, task_args, tokenizer, splits=("dev", "test"))[task]
    splits = {}  # a task of your own may have no test split
    for task in tasks:
        variants = [d for (t, _), d in data.items() if t == task]
        splits[task] = [split for split in ("dev", "test") if split in variants[0]]
        for split in splits[task]:
            ids = variants[0][split]["id"]
            if any(v[split]["id"] != ids for v in variants[1:]):
                raise MultitaskConfigError(f"task {task!r} {split}: the rows differ between input layouts")

    logits: dict[tuple[str, str], list[torch.Tensor]] = {(t, s): [] for t in tasks for s in splits[t]}
    member_dev_metrics = []
    for path, config in zip(model_paths, configs):
        model = load_model(path, device=device)
        if quantize == "int8":
            model = quantize_int8(model, device=device, inplace=True)
        member_dev = {}
        for task, spec in config.tasks.items():
            for split in splits[task]:
                dataset = data[(task, input_layout(spec))][split]
                out = task_logits(model, task, dataset, batch_size=batch_size, pad_token_id=pad_token_id)
                logits[(task, split)].append(out)
            dev = data[(task, input_layout(spec))]["dev"]
            member_dev[task] = combine_results(spec, logits[(task, "dev")][-1:], dev)[0]  # the member alone
        member_dev_metrics.append(member_dev)
        del model

    written: list[str] = []
    dev_predictions, dev_labels = {}, {}
    for task, spec in tasks.items():
        reference = data[(task, input_layout(spec))]
        for split in splits[task]:
            predictions, _ = combine_results(spec, logits[(task, split)], reference[split])
            name, column = leaderboard_name(task, split)
            path = os.path.join(output_dir, name)
            write_leaderboard_file(path, reference[split]["id"], predictions, spec["kind"], column, spec)
            written.append(path)
            if split == "dev":
                dev_predictions[task] = predictions
                labels = reference["dev"]["label"]
                dev_labels[task] = _object_array(labels) if get_kind(spec).label_is_sequence else np.asarray(labels)

    label_names = {task: spec.get("label_names") for task, spec in tasks.items()}
    metrics = score_tasks(kinds, dev_predictions, dev_labels, label_names=label_names)
    for path, member_dev in zip(model_paths, member_dev_metrics):
        member = score_tasks(kinds, member_dev, dev_labels, label_names=label_names)
        logger.info("dev average of %s alone: %.4f", path, member["eval_average"])
    logger.info("dev average of the ensemble of %d models: %.4f", len(model_paths), metrics["eval_average"])
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, METRICS_FILE), "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2, sort_keys=True)
    return written, metrics


__all__ = ["check_compatible", "combine_logits", "ensemble_predict_task", "predict_ensemble", "task_logits"]
