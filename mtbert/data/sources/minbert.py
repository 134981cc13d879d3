"""The tab-separated files of the CS224N minBERT default project: read line by line with ``csv.QUOTE_NONE``,
bad rows skipped and counted, never trained on."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import datasets

from ..validation import SPLITS, DataFileError, LoadReport, _to_dataset, _validated_rows


@dataclass(frozen=True)
class MinbertFiles:
    """Where one task lives in a minBERT data folder and which columns it uses."""

    train: str
    dev: str
    test: str
    text_columns: tuple[str, ...]
    label_column: str


MINBERT_FILES: dict[str, MinbertFiles] = {
    "sst": MinbertFiles(
        "ids-sst-train.csv", "ids-sst-dev.csv", "ids-sst-test-student.csv", ("sentence",), "sentiment"
    ),
    "qqp": MinbertFiles(
        "quora-train.csv", "quora-dev.csv", "quora-test-student.csv", ("sentence1", "sentence2"), "is_duplicate"
    ),
    "sts": MinbertFiles(
        "sts-train.csv", "sts-dev.csv", "sts-test-student.csv", ("sentence1", "sentence2"), "similarity"
    ),
}


# minBERT tab-separated files


def _read_lines(path: str, report: LoadReport) -> Iterable[str]:
    with open(path, "rb") as handle:
        for raw in handle:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                report.skipped["bytes that are not UTF-8"] += 1
                continue
            body = line.rstrip("\r\n")
            if "\r" in body:  # a stray carriage return inside a field: csv refuses the line; it is whitespace
                line = body.replace("\r", " ") + "\n"
            yield line


def read_minbert_file(
    path: str, spec: dict[str, Any], text_columns: tuple[str, ...], label_column: str | None
) -> datasets.Dataset:
    """Read one minBERT TSV (first column a row number, then ``id`` and the task's columns) into a Dataset.

    ``label_column=None`` reads an unlabelled (test) file.
    """
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise DataFileError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise DataFileError(f"{path}: the file is empty; expected a tab-separated header and rows")
    report = LoadReport(name)
    lines = _read_lines(path, report)
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    required = ("id", *text_columns, *((label_column,) if label_column else ()))
    if not header:
        raise DataFileError(f"{path}: no header line; expected tab-separated columns {', '.join(required)}")
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataFileError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(h or '<empty>' for h in header)}. "
            f"A minBERT file is tab-separated with columns {', '.join(required)}."
        )
    positions = {c: header.index(c) for c in required}

    def records():
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:  # e.g. a field over csv's size limit: skip the line, keep reading
                report.skipped[f"unreadable line ({error})"] += 1
                continue
            if not fields or all(not f.strip() for f in fields):
                continue
            record = {c: fields[i] if i < len(fields) else None for c, i in positions.items()}
            if len(fields) < len(header):
                record["__error__"] = "too few fields (broken quoting?)"
            elif len(fields) > len(header):
                record["__error__"] = "too many fields (tab inside a field?)"
            yield record

    columns = _validated_rows(records(), spec, tuple(text_columns), label_column, "id", report)
    return _to_dataset(columns, spec, report)


def load_minbert_task(
    task: str, spec: dict[str, Any], data_dir: str, splits: Iterable[str] = SPLITS
) -> dict[str, datasets.Dataset]:
    """The splits of a default task (``sst``, ``qqp``, ``sts``) from a minBERT data folder."""
    if task not in MINBERT_FILES:
        raise DataFileError(
            f"task {task!r} has no minBERT files; minBERT folders hold {', '.join(MINBERT_FILES)}. "
            f"Name its data in task_data.{task} (source: files or hub)."
        )
    if not os.path.isdir(data_dir):
        raise DataFileError(f"data_dir {data_dir!r} is not a folder")
    files = MINBERT_FILES[task]
    out = {}
    for split in splits:
        label = None if split == "test" else files.label_column
        out[split] = read_minbert_file(os.path.join(data_dir, getattr(files, split)), spec, files.text_columns, label)
    return out


@dataclass(frozen=True)
class MinbertSource:
    """A task (``sst``, ``qqp`` or ``sts``) read from a minBERT data folder."""

    data_dir: str
