"""Rows of token-level tasks (NER, slot filling, POS): sentences split into words, one tag per word.

Sources:
- CoNLL-style text files (``format: conll``): one token per line, its tag in the last column, a blank line between
  sentences, ``-DOCSTART-`` lines skipped (CoNLL-2003, WNUT, most slot-filling sets).
- Any ``datasets`` table (CSV/JSON Lines/parquet files, a Hub dataset) with a tokens column (a list of words, or one
  string of space-separated words) and a tags column (names, or ids; a ``ClassLabel`` sequence brings its names).

Every split becomes a ``Dataset`` with ``id``, ``tokens`` (list of words), ``text`` (the words joined by spaces, for
people and the pipeline) and ``label`` (one tag id per word; absent on unlabelled splits). A task without
``label_names`` takes its tag set from its training split (:func:`infer_label_names`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

import datasets

from ..models.mtbert.kinds_mtbert import IGNORE_INDEX, get_kind

logger = logging.getLogger(__name__)

#: keys a ``task_data`` entry of a token task may add to the ``files``/``hub`` keys
TOKEN_KEYS = ("tokens_column", "tags_column")


def read_conll(path: str) -> list[dict[str, Any]]:
    """Sentences of a CoNLL-style file as ``{"id", "tokens", "tags"}`` records (tags as written: names)."""
    from ..data.validation import DataFileError

    if not os.path.isfile(path):
        raise DataFileError(f"{path}: file not found")
    records: list[dict[str, Any]] = []
    tokens: list[str] = []
    tags: list[str] = []
    problems = 0

    def flush():
        if tokens:
            records.append({"id": str(len(records)), "tokens": list(tokens), "tags": list(tags)})
            tokens.clear()
            tags.clear()

    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                flush()
                continue
            if fields[0] == "-DOCSTART-":
                flush()
                continue
            if len(fields) < 2:
                problems += 1
                if problems <= 3:
                    logger.warning(
                        "%s line %d: a token with no tag (%r): the sentence is kept, the token is not",
                        path,
                        line_number,
                        line.strip(),
                    )
                continue
            tokens.append(fields[0])
            tags.append(fields[-1])
    flush()
    if not records:
        raise DataFileError(
            f"{path}: no sentence found; a CoNLL file has one 'token ... tag' per line and a blank "
            "line between sentences"
        )
    return records


def infer_label_names(tag_lists: Iterable[Iterable[Any]]) -> list[str]:
    """The tag set of a training split, in a stable order: ``O`` first, then each entity type's ``B-`` before its
    ``I-`` (types alphabetically), then any other tag alphabetically. A BIO type gets both its ``B-`` and ``I-`` tag
    even when the training split shows only one (every entity was one word long there; dev may hold longer ones)."""
    seen = {str(tag) for tags in tag_lists for tag in tags}
    order = []
    if "O" in seen:
        order.append("O")
    types = sorted({tag[2:] for tag in seen if len(tag) > 2 and tag[:2] in ("B-", "I-", "E-", "S-")})
    for entity in types:
        if f"B-{entity}" in seen or f"I-{entity}" in seen:
            seen |= {f"B-{entity}", f"I-{entity}"}
        order.extend(p + entity for p in ("B-", "I-", "E-", "S-") if p + entity in seen)
    order.extend(sorted(seen - set(order)))
    return order


def token_features(labelled: bool) -> datasets.Features:
    feats = {
        "id": datasets.Value("string"),
        "tokens": datasets.Sequence(datasets.Value("string")),
        "text": datasets.Value("string"),
    }
    if labelled:
        feats["label"] = datasets.Sequence(datasets.Value("int64"))
    return datasets.Features(feats)


def _words(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.split()
    try:
        return [str(w) for w in value]
    except TypeError:
        return None


def token_rows(
    task: str,
    spec: dict[str, Any],
    records: Iterable[dict[str, Any]],
    where: str,
    tokens_column: str = "tokens",
    tags_column: str | None = "tags",
    id_column: str | None = "id",
    tag_names: list[str] | None = None,
    keep_unlabelled: bool = False,
) -> datasets.Dataset:
    """Checked rows of a token task as a ``Dataset``; sentences with no word, or with a tag count that differs from
    the word count, are skipped and counted; a tag the task does not know stops the run with one clear line.
    ``keep_unlabelled``: a sentence without tags (none given) is kept with label ``None`` (no loss for this task;
    a row shared with other tasks)."""
    from ..data.validation import DataFileError, LoadReport

    kind = get_kind(spec)
    report = LoadReport(f"{task} {where}")
    columns: dict[str, list] = {"id": [], "tokens": [], "text": []}
    if tags_column is not None:
        columns["label"] = []
    unknown: dict[str, int] = {}
    for row_number, record in enumerate(records):
        words = _words(record.get(tokens_column))
        if not words or any(not w.strip() for w in words):
            report.skipped["no words" if not words else "empty word"] += 1
            continue
        label = None
        if tags_column is not None:
            raw: Any = record.get(tags_column)
            if isinstance(raw, str):
                raw = raw.split()
            unlabelled = keep_unlabelled and not raw  # no tags given: a row shared with other tasks
            if not unlabelled and (raw is None or len(raw) != len(words)):
                report.skipped["tag count differs from word count"] += 1
                continue
            if tag_names is not None and not unlabelled:  # ids of a ClassLabel sequence: its names
                raw = [tag_names[int(t)] if isinstance(t, int) and 0 <= t < len(tag_names) else t for t in raw]
            label, reason = (None, None) if unlabelled else kind.parse_label(list(raw), spec)
            if reason is not None:
                for tag in raw:
                    if str(tag) not in spec["label_names"]:
                        unknown[str(tag)] = unknown.get(str(tag), 0) + 1
                report.skipped[reason] += 1
                continue
        row_id = record.get(id_column) if id_column else None
        columns["id"].append(str(row_id).strip() if row_id not in (None, "") else str(row_number))
        columns["tokens"].append(words)
        columns["text"].append(" ".join(words))
        if tags_column is not None:
            columns["label"].append(label)
        report.kept += 1
    if unknown:
        shown = ", ".join(f"{tag!r} ({n}x)" for tag, n in sorted(unknown.items(), key=lambda kv: -kv[1])[:5])
        raise DataFileError(
            f"{report.source}: tags the task does not know: {shown}; its label_names are "
            f"{', '.join(spec['label_names'])}. Add them to tasks.{task}.label_names (or leave label_names out to "
            "take the tag set from the training split)"
        )
    (logger.warning if report.skipped else logger.info)(report.message())
    if report.kept == 0:
        raise DataFileError(f"{report.message()}: no usable sentence, so this split cannot be used")
    return datasets.Dataset.from_dict(columns, features=token_features(tags_column is not None))


def complete_label_names(task: str, spec: dict[str, Any], train_tags: Iterable[Iterable[Any]]) -> None:
    """Give a token task without ``label_names`` the tag set of its training split (in place, logged)."""
    if spec.get("label_names"):
        return
    names = infer_label_names(train_tags)
    spec["label_names"] = names
    spec["num_labels"] = len(names)
    logger.info("task %s: %d tags read from its training split: %s", task, len(names), ", ".join(names))


def tokenize_token_batch(batch: dict[str, list], tokenizer, spec: dict[str, Any], max_length: int) -> dict[str, list]:
    """Sub-word ids of each sentence, the word of each sub-token (``word_ids``), and, for labelled rows, the
    aligned ``token_labels`` (first sub-token of each word; every sub-token with ``label_all_tokens``)."""
    from ..models.mtbert.heads_mtbert import align_word_labels, tokenize_words

    out: dict[str, list] = tokenize_words(tokenizer, batch["tokens"], max_length)
    out["length"] = [len(ids) for ids in out["input_ids"]]
    if "label" in batch:  # a row without tags (shared with other tasks) has none to learn: -100 everywhere
        out["token_labels"] = [
            align_word_labels(word_ids, labels, spec.get("label_all_tokens", False))
            if labels is not None
            else [IGNORE_INDEX] * len(word_ids)
            for word_ids, labels in zip(out["word_ids"], batch["label"])
        ]
    return out


def word_predictions(token_values, word_ids: list[int], num_words: int, fill=0) -> list:
    """Per word, the value at its first sub-token; words cut off by truncation get ``fill`` (tag 0, usually
    ``O``)."""
    from ..models.mtbert.heads_mtbert import first_token_positions

    values = [token_values[p] for p in first_token_positions(word_ids)]
    return values + [fill] * (num_words - len(values))


def outside_index(spec: dict[str, Any]) -> int:
    """The tag that words cut off by truncation get: ``O`` where the task has it, else the first tag."""
    names = spec.get("label_names") or []
    return names.index("O") if "O" in names else 0


def token_results(dataset, logits, postprocess, spec: dict[str, Any]) -> dict[str, Any]:
    """Word-level ``{"index", "predictions", "scores"}`` of a token task from its sub-token ``logits``
    (``(rows, length, tags)``, any padding beyond each row's tokens): each word takes its first sub-token's tag and
    probability; words cut off by truncation get ``O`` with score 0. ``predictions``/``scores`` are object arrays of
    one list per row."""
    import numpy as np
    import torch

    logits = torch.as_tensor(np.asarray(logits)).float()
    predictions, scores = postprocess(logits)
    predictions, scores = predictions.tolist(), scores.tolist()
    word_ids, tokens = dataset["word_ids"], dataset["tokens"]
    fill = outside_index(spec)
    out_predictions = np.empty(len(word_ids), dtype=object)
    out_scores = np.empty(len(word_ids), dtype=object)
    for row, ids in enumerate(word_ids):
        out_predictions[row] = word_predictions(predictions[row], ids, len(tokens[row]), fill)
        out_scores[row] = word_predictions(scores[row], ids, len(tokens[row]), 0.0)
    return {"index": np.arange(len(word_ids)), "predictions": out_predictions, "scores": out_scores}
