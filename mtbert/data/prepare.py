"""One call from a dataset of plain text columns to the tokenized rows a task's head reads.

train = mtbert.prepare_dataset(raw["train"], tokenizer, model.config, "nli", text_column="premise",
                               text_pair_column="hypothesis", label_column="label")
trainer = MultitaskTrainer(model, args, train_dataset={"nli": train, ...}, ...)
"""

from __future__ import annotations

from typing import Any

import datasets

__all__ = ["prepare_dataset"]


def _task_spec(config, task: str) -> dict[str, Any]:
    tasks = config.tasks if hasattr(config, "tasks") else config
    if task not in tasks:
        raise ValueError(f"unknown task {task!r}; the model's tasks are {', '.join(tasks)}")
    return tasks[task]


def prepare_dataset(
    dataset: datasets.Dataset,
    tokenizer,
    config,
    task: str,
    max_length: int = 128,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str | None = "label",
) -> datasets.Dataset:
    """Tokenize ``dataset`` for ``task`` of a model (``config``: the model's config, or its ``tasks`` dict).

    The columns ``text_column`` (and ``text_pair_column`` for a pair task) are the sentences; ``label_column`` holds
    class ids, class names (mapped through the task's ``label_names``) or scores; a dataset without it (a test split)
    is prepared unlabelled. Other columns are kept (an ``id`` column names the rows in leaderboard files). The rows
    get the layout the task's head reads (``input_ids``, or both sentences for a separately encoded pair), padded
    later by the trainer's collator.

    A token task (``token_classification``) reads a list of words per row from ``text_column`` (e.g.
    ``"tokens"``) and one tag per word from ``label_column`` (e.g. ``"ner_tags"``: names, or ids of a ``ClassLabel``
    sequence), checked against the task's ``label_names``.
    """
    from ..models.mtbert.heads_mtbert import head_class
    from ..models.mtbert.kinds_mtbert import get_kind
    from .tokenization import tokenize_task

    spec = _task_spec(config, task)
    if get_kind(spec).input == "tokens":
        return _prepare_tokens(dataset, tokenizer, spec, task, max_length, text_column, label_column)
    pair = head_class(spec).pair
    missing = [c for c in (text_column, text_pair_column) if c is not None and c not in dataset.column_names]
    if missing:
        raise ValueError(f"task {task!r}: no column(s) {', '.join(missing)}; found {', '.join(dataset.column_names)}")
    if pair and text_pair_column is None:
        raise ValueError(
            f"task {task!r} ({spec['kind']}) reads sentence pairs: name the second sentence's column "
            "with text_pair_column="
        )
    if not pair and text_pair_column is not None:
        raise ValueError(f"task {task!r} ({spec['kind']}) reads one sentence; text_pair_column is for pair tasks")
    renames = {text_column: "text", text_pair_column: "text_pair"}
    if label_column is not None and label_column in dataset.column_names:
        renames[label_column] = "label"
    renames = {old: new for old, new in renames.items() if old is not None and old != new}
    clashes = [new for new in renames.values() if new in dataset.column_names and new not in renames]
    if clashes:
        dataset = dataset.remove_columns(clashes)
    dataset = dataset.rename_columns(renames)
    if "label" in dataset.column_names:
        dataset = _labels(dataset, spec, task)
    return tokenize_task(dataset, tokenizer, spec, max_length)


def _prepare_tokens(dataset, tokenizer, spec, task, max_length, tokens_column, tags_column) -> datasets.Dataset:
    """A token task's rows (words and tags) checked and tokenized with sub-word label alignment."""
    from ..tasks.token_data import token_rows
    from .tokenization import tokenize_task

    if tokens_column not in dataset.column_names:
        raise ValueError(
            f"task {task!r} (token_classification): no column {tokens_column!r} of words; found "
            f"{', '.join(dataset.column_names)} (name it with text_column=)"
        )
    labelled = tags_column is not None and tags_column in dataset.column_names
    tag_names = None
    if labelled:
        inner = getattr(dataset.features[tags_column], "feature", None)
        tag_names = list(inner.names) if isinstance(inner, datasets.ClassLabel) else None
    rows = token_rows(
        task,
        spec,
        iter(dataset),
        "dataset",
        tokens_column,
        tags_column if labelled else None,
        "id" if "id" in dataset.column_names else None,
        tag_names,
    )
    return tokenize_task(rows, tokenizer, spec, max_length)


def _labels(dataset: datasets.Dataset, spec: dict[str, Any], task: str) -> datasets.Dataset:
    """Class names → ids; class ids as int64, scores as float32 (what the heads' losses expect)."""
    classification = spec["kind"].endswith("classification")
    feature = dataset.features["label"]
    if classification and getattr(feature, "dtype", None) in ("string", "large_string"):
        names = list(spec.get("label_names") or [])
        unknown = sorted(set(dataset["label"]) - set(names))
        if unknown:
            raise ValueError(
                f"task {task!r}: label(s) {', '.join(map(repr, unknown[:5]))} are not among its label_names {names}"
            )
        index = {name: i for i, name in enumerate(names)}
        features = dataset.features.copy()
        features["label"] = datasets.Value("int64")
        return dataset.map(
            lambda batch: {"label": [index[name] for name in batch["label"]]},
            batched=True, features=features, desc="Label names to ids",
        )  # fmt: skip
    if isinstance(feature, datasets.ClassLabel):
        return dataset
    return dataset.cast_column("label", datasets.Value("int64" if classification else "float32"))
