"""A Hugging Face dataset id (or a local folder laid out like one) as a task's source, with its columns and
splits mapped; the three default tasks have default datasets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import datasets

from ...models.mtbert.kinds_mtbert import get_kind
from ...tasks.token_data import TOKEN_KEYS
from ..validation import SPLITS, DataFileError
from .splits import (
    REQUIRED_SPLITS,
    _check_text_columns,
    _dataset_split,
    _default_text_columns,
    _missing_split,
    _split_mapping,
    _token_split,
)


@dataclass(frozen=True)
class HubSource:
    """A Hub dataset for one task: repository, configuration, split names and the columns to map."""

    path: str
    name: str | None
    text_columns: tuple[str, ...]
    label_column: str
    id_column: str | None = None
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "dev": "validation", "test": "test"})
    label_scale: float = 1.0
    required_splits: tuple[str, ...] = ("train", "dev")  # a missing test split is left out unless named in splits
    tokens_column: str = "tokens"  # token tasks: the words and their tags
    tags_column: str = "tags"


HUB_SOURCES: dict[str, HubSource] = {
    "sst": HubSource("SetFit/sst5", None, ("text",), "label"),
    "qqp": HubSource("nyu-mll/glue", "qqp", ("question1", "question2"), "label", id_column="idx"),
    # STS-B scores are stored in [0, 1] there; the task predicts 0-5.
    "sts": HubSource("sentence-transformers/stsb", None, ("sentence1", "sentence2"), "score", label_scale=5.0),
}


# Hugging Face Hub datasets (or local folders laid out like them)

HUB_KEYS = ("path", "name", "text_columns", "label_column", "id_column", "splits", "label_scale", *TOKEN_KEYS)


def hub_source(
    task: str,
    override: dict[str, Any] | str | None = None,
    spec: dict[str, Any] | None = None,
    where: str | None = None,
) -> HubSource:
    """The default Hub source of a task, updated by a user's ``hub_datasets`` (or ``task_data``) entry.

    ``override`` is a dataset id / folder, or a mapping of ``HUB_KEYS``. A task without a default needs ``path``;
    its columns default to ``text`` (and ``text_pair``) and ``label`` when ``spec`` is given.
    """
    where = where or f"hub_datasets.{task}"
    base = HUB_SOURCES.get(task)
    if isinstance(override, str):
        override = {"path": override}
    override = dict(override or {})
    if base is None and "path" not in override:
        raise DataFileError(f"task {task!r} has no default Hub dataset; set {where}.path (a dataset id or folder)")
    unknown = set(override) - set(HUB_KEYS)
    if unknown:
        raise DataFileError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid keys are {', '.join(HUB_KEYS)}"
        )
    fields: dict[str, Any] = dict(base.__dict__) if base else {"name": None, "id_column": None}
    if base is None and spec is not None:
        fields.update(text_columns=_default_text_columns(spec), label_column="label")
    user_splits = _split_mapping(override.pop("splits", None), f"{where}.splits")
    fields.update(override)
    for key in ("text_columns", "label_column"):
        if key not in fields:
            raise DataFileError(f"{where}: set {key} (the dataset's column names) for task {task!r}")
    if spec is not None:
        fields["text_columns"] = _check_text_columns(task, spec, fields["text_columns"], where)
    fields["text_columns"] = tuple(fields["text_columns"])
    default_splits = HubSource.__dataclass_fields__["splits"].default_factory()  # type: ignore[operator]
    fields["splits"] = {**fields.get("splits", default_splits), **user_splits}
    fields["label_scale"] = float(fields.get("label_scale", 1.0))
    fields["required_splits"] = tuple(sorted({*REQUIRED_SPLITS, *user_splits}))
    return HubSource(**fields)


def load_hub_task(
    task: str,
    spec: dict[str, Any],
    source: HubSource,
    splits: Iterable[str] = SPLITS,
    cache_dir: str | None = None,
    unlabelled_rows: Iterable[str] = (),
) -> dict[str, datasets.Dataset]:
    """The splits of a task from a Hub dataset, columns mapped to ``id``/``text``/``text_pair``/``label``.

    The dataset is loaded once; a ``test`` split it lacks is left out (unless ``splits`` names one explicitly).
    ``unlabelled_rows``: splits whose rows without the task's label are kept (label ``None``), see
    :func:`load_task_data`.
    """
    dataset = f"{source.path}" + (f" ({source.name})" if source.name else "")
    try:
        loaded = datasets.load_dataset(source.path, source.name, cache_dir=cache_dir)
    except Exception as error:  # every loader failure becomes one clear message
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataFileError(f"could not load {dataset} for task {task!r}: {first}") from None
    out = {}
    for split in splits:
        hub_split = source.splits.get(split, split)
        if "[" in hub_split and hub_split.split("[")[0] in loaded:  # a slice such as train[:1000] (already cached)
            try:
                piece = datasets.load_dataset(source.path, source.name, split=hub_split, cache_dir=cache_dir)
            except Exception as error:  # a file the builder cannot parse becomes one clear message
                raise DataFileError(f"{dataset}: split {hub_split!r} for task {task!r}: {error}") from None
        elif hub_split in loaded:
            piece = loaded[hub_split]
        else:
            _missing_split(
                task,
                split,
                f"{dataset} has no split {hub_split!r} (it has {', '.join(loaded)}); "
                f"map one with splits: {{{split}: <name>}} for task {task!r}",
                source.required_splits,
            )
            continue
        if get_kind(spec).input == "tokens":
            out[split] = _token_split(
                task,
                spec,
                piece,
                split,
                f"{dataset} split {hub_split!r}",
                source.tokens_column,
                source.tags_column,
                source.id_column or "id",
                keep_unlabelled=split in unlabelled_rows,
            )
            continue
        out[split] = _dataset_split(
            task,
            spec,
            piece,
            split,
            f"{dataset} split {hub_split!r}",
            source.text_columns,
            source.label_column,
            source.id_column,
            source.label_scale,
            keep_unlabelled=split in unlabelled_rows,
        )
    return out
