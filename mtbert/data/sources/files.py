"""Local CSV / TSV / JSON Lines / parquet / CoNLL files as a task's source: one per split, or a folder of
``train.*``, ``dev.*`` (or ``validation.*``) and an optional ``test.*``."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import datasets

from ...models.mtbert.kinds_mtbert import get_kind
from ...tasks.token_data import TOKEN_KEYS, complete_label_names, read_conll, token_rows
from ..validation import SPLITS, DataFileError
from .splits import (
    REQUIRED_SPLITS,
    _check_text_columns,
    _dataset_split,
    _default_text_columns,
    _missing_split,
    _need_label_names,
    _split_mapping,
    _token_split,
    split_name,
)

# format -> (datasets builder, its options). CSV: empty cells stay empty strings (not NaN, not "nan"); TSV: quotes
# are text (csv.QUOTE_NONE, as minBERT/GLUE TSVs need), CSV quoting left in a field is undone by clean_text.
FILE_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    "csv": ("csv", {"keep_default_na": False}),
    "tsv": ("csv", {"sep": "\t", "quoting": csv.QUOTE_NONE, "keep_default_na": False}),
    "json": ("json", {}),
    "parquet": ("parquet", {}),
    "conll": ("conll", {}),  # token tasks: mtbert's own reader (token_data.read_conll)
}
FILE_EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".conll": "conll",
    ".txt": "conll",
}  # fmt: skip
# File stems a folder's split files may have, per split (``splits:`` in a task_data entry names others).
SPLIT_FILE_STEMS = {"train": ("train",), "dev": ("dev", "validation", "valid", "val"), "test": ("test",)}
FILES_KEYS = (
    "data_dir", "data_files", "format", "text_columns", "label_column", "id_column", "splits", "label_scale",
    *TOKEN_KEYS,
)  # fmt: skip


@dataclass(frozen=True)
class FileSource:
    """Local files for one task: ``{split: paths}``, their format and the columns to map."""

    data_files: dict[str, tuple[str, ...]]
    text_columns: tuple[str, ...]
    label_column: str = "label"
    id_column: str | None = None  # None: an ``id`` column if the files have one, else row numbers
    format: str | None = None  # None: from each file's extension
    label_scale: float = 1.0
    tokens_column: str = "tokens"  # token tasks: the words and their tags
    tags_column: str = "tags"


def _file_format(path: str, fmt: str | None, where: str) -> str:
    if fmt is not None:
        return fmt
    ext = os.path.splitext(path)[1].lower()
    if ext not in FILE_EXTENSIONS:
        raise DataFileError(
            f"{where}: cannot tell the format of {path!r} from its extension; use "
            f"{', '.join(FILE_EXTENSIONS)} files or set format: {' | '.join(FILE_FORMATS)}"
        )
    return FILE_EXTENSIONS[ext]


def _discover_split_files(data_dir: str, stems: dict[str, str], where: str) -> dict[str, tuple[str, ...]]:
    """``{split: (path,)}`` for the ``train.*``, ``validation.*``/``dev.*`` and ``test.*`` files of a folder."""
    if not os.path.isdir(data_dir):
        raise DataFileError(f"{where}.data_dir {data_dir!r} is not a folder")
    names = sorted(n for n in os.listdir(data_dir) if os.path.isfile(os.path.join(data_dir, n)))
    out: dict[str, tuple[str, ...]] = {}
    for split in SPLITS:
        wanted = (stems[split],) if split in stems else SPLIT_FILE_STEMS[split]
        matches = [
            n for n in names if os.path.splitext(n)[0] in wanted and os.path.splitext(n)[1].lower() in FILE_EXTENSIONS
        ]
        if len(matches) > 1:
            raise DataFileError(
                f"{where}: several {split} files in {data_dir} ({', '.join(matches)}); "
                "keep one, or list them in data_files"
            )
        if matches:
            out[split] = (os.path.join(data_dir, matches[0]),)
        elif split in REQUIRED_SPLITS or split in stems:
            expected = " or ".join(f"{s}.csv" for s in wanted)
            raise DataFileError(
                f"{where}: no {split} file in {data_dir} (found {', '.join(names) or 'nothing'}); name it {expected} "
                f"(or .tsv/.jsonl/.parquet), or map it with splits: {{{split}: <file stem>}} or data_files"
            )
    return out


def file_source(task: str, spec: dict[str, Any], entry: dict[str, Any], where: str) -> FileSource:
    """A ``source: files`` entry, checked: keys, split names, that every file exists, the columns' count."""
    unknown = set(entry) - set(FILES_KEYS)
    if unknown:
        raise DataFileError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid keys are source, {', '.join(FILES_KEYS)}"
        )
    fmt = entry.get("format")
    if fmt is not None and fmt not in FILE_FORMATS:
        raise DataFileError(f"{where}.format: {fmt!r} is not one of {', '.join(FILE_FORMATS)}")
    stems = _split_mapping(entry.get("splits"), f"{where}.splits")
    if ("data_dir" in entry) == ("data_files" in entry):
        raise DataFileError(
            f"{where}: set either data_dir (a folder of train.csv, validation.csv, optional test.csv) or "
            "data_files ({train: path, dev: path, test: path})"
        )
    if "data_files" in entry:
        if stems:
            raise DataFileError(f"{where}: splits renames a data_dir's files; with data_files, key the files by split")
        given = entry["data_files"]
        if not isinstance(given, dict):
            raise DataFileError(f"{where}.data_files: write a mapping such as {{train: train.csv, dev: dev.csv}}")
        data_files = {}
        for key, paths in given.items():
            split = split_name(key, f"{where}.data_files")
            paths = (paths,) if isinstance(paths, str) else tuple(str(p) for p in paths)
            data_files[split] = tuple(os.path.expanduser(p) for p in paths)
        for split in REQUIRED_SPLITS:
            if split not in data_files:
                raise DataFileError(f"{where}.data_files: no {split} file; list one as {split}: <path>")
    else:
        data_files = _discover_split_files(os.path.expanduser(str(entry["data_dir"])), stems, where)
    for split, paths in data_files.items():
        if not paths:
            raise DataFileError(f"{where}.data_files.{split}: no file listed")
        for path in paths:
            if not os.path.isfile(path):
                raise DataFileError(
                    f"{path}: file not found ({where}, {split} split); check the path (relative to the current folder)"
                )
        if len({_file_format(p, fmt, where) for p in paths}) > 1:
            raise DataFileError(f"{where}.data_files.{split}: files of different formats ({', '.join(paths)})")
    tokens = get_kind(spec).input == "tokens"
    misplaced = [
        k for k in (TOKEN_KEYS if not tokens else ("text_columns", "label_column", "label_scale")) if k in entry
    ]
    if misplaced:
        wanted = "tokens_column and tags_column" if tokens else "text_columns and label_column"
        raise DataFileError(
            f"{where}: {', '.join(misplaced)} do(es) not apply to task {task!r} ({spec['kind']}); it reads {wanted}"
        )
    formats = {_file_format(p, fmt, where) for paths in data_files.values() for p in paths}
    if "conll" in formats and not tokens:
        raise DataFileError(
            f"{where}: CoNLL files (format conll, .txt/.conll) hold tagged words, so they need kind "
            f"'token_classification' (task {task!r} is {spec['kind']}); use csv/tsv/json/parquet"
        )
    text_columns = (
        ()
        if tokens
        else _check_text_columns(task, spec, entry.get("text_columns", _default_text_columns(spec)), where)
    )
    return FileSource(
        data_files=data_files,
        text_columns=text_columns,
        label_column=str(entry.get("label_column", "label")),
        id_column=entry.get("id_column"),
        format=fmt,
        label_scale=float(entry.get("label_scale", 1.0)),
        tokens_column=str(entry.get("tokens_column", "tokens")),
        tags_column=str(entry.get("tags_column", "tags")),
    )


def load_file_task(
    task: str,
    spec: dict[str, Any],
    source: FileSource,
    splits: Iterable[str] = SPLITS,
    cache_dir: str | None = None,
    unlabelled_rows: Iterable[str] = (),
) -> dict[str, datasets.Dataset]:
    """The splits of a task from local files, read by ``datasets.load_dataset`` (csv / json / parquet builders).
    ``unlabelled_rows``: splits whose rows without the task's label are kept (see :func:`load_task_data`)."""
    out = {}
    for split in splits:
        paths = source.data_files.get(split)
        if not paths:
            _missing_split(task, split, f"task_data.{task} has no {split} file; list one in data_files")
            continue
        fmt = _file_format(paths[0], source.format, f"task_data.{task}")
        builder, options = FILE_FORMATS[fmt]
        where = ", ".join(os.path.basename(p) for p in paths)
        if fmt == "conll":
            records = [r for p in paths for r in read_conll(p)]
            labelled = split != "test" or any(t != "O" for r in records for t in r["tags"])
            if split == "train":
                complete_label_names(task, spec, (r["tags"] for r in records))
            _need_label_names(task, spec, split)
            out[split] = token_rows(task, spec, records, where, tags_column="tags" if labelled else None)
            continue
        try:
            raw = datasets.load_dataset(
                builder, data_files={"rows": list(paths)}, split="rows", cache_dir=cache_dir, **options
            )
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DataFileError(
                f"{paths[0]}: could not be read as {fmt} ({first}); check the file, or set task_data.{task}.format"
            ) from None
        id_column = source.id_column or "id"
        if get_kind(spec).input == "tokens":
            out[split] = _token_split(
                task,
                spec,
                raw,
                split,
                where,
                source.tokens_column,
                source.tags_column,
                id_column,
                keep_unlabelled=split in unlabelled_rows,
            )
            continue
        out[split] = _dataset_split(
            task,
            spec,
            raw,
            split,
            where,
            source.text_columns,
            source.label_column,
            id_column,
            source.label_scale,
            id_required=source.id_column is not None,
            keep_unlabelled=split in unlabelled_rows,
        )
    return out
