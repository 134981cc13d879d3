"""One split read by ``datasets`` (files and Hub sources alike) → mtbert's checked columns: split names, required
splits, the columns a task reads, and a token task's words and tags."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import datasets

from ...models.mtbert.kinds_mtbert import get_kind
from ...tasks.token_data import complete_label_names, token_rows
from ..validation import DataFileError, LoadReport, _to_dataset, _validated_rows, is_regression

logger = logging.getLogger("mtbert.data")  # one name for every source, as before the split (run.py sets its level)


# Split names a user may write; ``validation`` (and its short forms) is mtbert's ``dev``.
SPLIT_ALIASES = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "val": "dev", "test": "test"}
REQUIRED_SPLITS = ("train", "dev")


def split_name(name: Any, where: str) -> str:
    """mtbert's name (``train``, ``dev``, ``test``) for a split a user wrote, or a :class:`DataFileError`."""
    key = SPLIT_ALIASES.get(str(name).strip().lower())
    if key is None:
        raise DataFileError(f"{where}: unknown split {name!r}; use train, dev (or validation) or test")
    return key


def _split_mapping(splits: Any, where: str) -> dict[str, str]:
    if splits is None:
        return {}
    if not isinstance(splits, dict):
        raise DataFileError(
            f"{where}: write splits as a mapping such as {{train: train, dev: validation, test: test}}"
        )
    return {split_name(ours, where): str(theirs) for ours, theirs in splits.items()}


def _missing_split(task: str, split: str, where: str, required: Iterable[str] = REQUIRED_SPLITS) -> None:
    """A requested split the source lacks: train/dev (or an explicitly named split) is an error; test is optional."""
    if split in tuple(required):
        raise DataFileError(where)
    logger.info("task %s has no %s split (%s); it gets no %s predictions", task, split, where.split(";")[0], split)


def _has_labels(values: list) -> bool:
    """Whether a test split's label column holds real labels (GLUE's unlabelled test splits hold -1)."""

    def real(value):
        if value is None or (isinstance(value, str) and not value.strip()):
            return False
        try:
            return float(value) >= 0
        except (TypeError, ValueError):
            return True  # a label name

    return bool(values) and all(real(v) for v in values)


def _dataset_split(
    task: str,
    spec: dict[str, Any],
    raw: datasets.Dataset,
    split: str,
    where: str,
    text_columns: tuple[str, ...],
    label_column: str,
    id_column: str | None,
    label_scale: float = 1.0,
    id_required: bool = False,
    keep_unlabelled: bool = False,
) -> datasets.Dataset:
    """One loaded split → ``id``/``text``/``text_pair``/``label``; unknown label values are errors (strict)."""
    found = raw.column_names
    missing = [c for c in text_columns if c not in found]
    if split != "test" and label_column not in found:
        missing.append(label_column)
    if id_required and id_column and id_column not in found:
        missing.append(id_column)
    if missing:
        raise DataFileError(
            f"{where}: missing column(s) {', '.join(missing)}; found {', '.join(found)}. "
            f"Map yours with text_columns, label_column (and id_column) in task_data.{task}"
        )
    labelled = label_column in found and (split != "test" or _has_labels(raw[label_column]))
    report = LoadReport(f"{task} {where}")
    columns = _validated_rows(
        iter(raw),
        spec,
        tuple(text_columns),
        label_column if labelled else None,
        id_column if id_column in found else None,
        report,
        label_scale=label_scale,
        label_names=None if is_regression(spec) else spec.get("label_names"),
        strict_labels=True,
        keep_unlabelled=keep_unlabelled,
    )
    return _to_dataset(columns, spec, report)


def _need_label_names(task: str, spec: dict[str, Any], split: str) -> None:
    if not spec.get("label_names"):
        raise DataFileError(
            f"task {task!r}: its {split} split comes before any training split, so its tags are unknown; set "
            f"tasks.{task}.label_names"
        )


def _token_split(
    task: str,
    spec: dict[str, Any],
    raw: datasets.Dataset,
    split: str,
    where: str,
    tokens_column: str,
    tags_column: str,
    id_column: str | None,
    keep_unlabelled: bool = False,
) -> datasets.Dataset:
    """One loaded split of a token task (words and tags columns) → ``id``/``tokens``/``text``/``label``."""
    found = raw.column_names
    missing = [c for c in (tokens_column, *((tags_column,) if split != "test" else ())) if c not in found]
    if missing:
        raise DataFileError(
            f"{where}: missing column(s) {', '.join(missing)}; found {', '.join(found)}. Map yours with "
            f"tokens_column and tags_column in task_data.{task}"
        )
    labelled = tags_column in found and (split != "test" or len(raw) > 0)
    tag_names = None
    feature = raw.features.get(tags_column) if labelled else None
    inner = getattr(feature, "feature", None)
    if isinstance(feature, list) and feature:
        inner = feature[0]
    if isinstance(inner, datasets.ClassLabel):
        tag_names = list(inner.names)
        if split == "train" and not spec.get("label_names"):
            spec["label_names"], spec["num_labels"] = list(tag_names), len(tag_names)
            logger.info("task %s: %d tags from the dataset's ClassLabel names", task, len(tag_names))
    if labelled and split == "train":
        complete_label_names(task, spec, [tags for tags in raw[tags_column] if tags is not None])
    if labelled:
        _need_label_names(task, spec, split)
    return token_rows(
        task,
        spec,
        iter(raw),
        where,
        tokens_column,
        tags_column if labelled else None,
        id_column if id_column in found else None,
        tag_names,
        keep_unlabelled=keep_unlabelled,
    )


def _default_text_columns(spec: dict[str, Any]) -> tuple[str, ...]:
    return get_kind(spec).text_columns()


def _check_text_columns(task: str, spec: dict[str, Any], text_columns: Any, where: str) -> tuple[str, ...]:
    if isinstance(text_columns, str):
        text_columns = (text_columns,)
    text_columns = tuple(str(c) for c in text_columns)
    wanted = len(_default_text_columns(spec))
    if len(text_columns) != wanted:
        raise DataFileError(
            f"{where}.text_columns: task {task!r} ({spec['kind']}) reads {wanted} text column(s), "
            f"got {len(text_columns)} ({', '.join(text_columns) or 'none'})"
        )
    return text_columns
