"""Load each task's train/dev/test splits as ``datasets.Dataset`` objects and tokenize them for the task's head.

Two sources:
- ``minbert``: the tab-separated files of the CS224N minBERT default project (``ids-sst-*.csv``, ``quora-*.csv``,
  ``sts-*.csv``). Real files are messy (a QQP row whose quote swallows a tab, stray quotes in STS), so rows are
  read with ``csv.QUOTE_NONE``, checked one by one, and bad ones are skipped and counted, never trained on.
- ``hub``: Hugging Face datasets (``SetFit/sst5``, ``nyu-mll/glue``/qqp, ``sentence-transformers/stsb``) or any local
  folder laid out like them, with their columns mapped onto the task's.

Every split becomes a ``Dataset`` with columns ``id``, ``text`` (``text_pair`` for pair tasks) and ``label``
(absent on unlabelled test splits).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import datasets

from .configuration_mtbert import task_input_format
from .pipeline_mtbert import encode_texts

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


class DataFileError(ValueError):
    """A data file that cannot be used: missing, empty, mis-columned, or with no usable row."""


@dataclass(frozen=True)
class MinbertFiles:
    """Where one task lives in a minBERT data folder and which columns it uses."""

    train: str
    dev: str
    test: str
    text_columns: tuple[str, ...]
    label_column: str


MINBERT_FILES: dict[str, MinbertFiles] = {
    "sst": MinbertFiles("ids-sst-train.csv", "ids-sst-dev.csv", "ids-sst-test-student.csv", ("sentence",), "sentiment"),
    "qqp": MinbertFiles(
        "quora-train.csv", "quora-dev.csv", "quora-test-student.csv", ("sentence1", "sentence2"), "is_duplicate"
    ),
    "sts": MinbertFiles("sts-train.csv", "sts-dev.csv", "sts-test-student.csv", ("sentence1", "sentence2"), "similarity"),
}


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


HUB_SOURCES: dict[str, HubSource] = {
    "sst": HubSource("SetFit/sst5", None, ("text",), "label"),
    "qqp": HubSource("nyu-mll/glue", "qqp", ("question1", "question2"), "label", id_column="idx"),
    # STS-B scores are stored in [0, 1] there; the task predicts 0-5.
    "sts": HubSource("sentence-transformers/stsb", None, ("sentence1", "sentence2"), "score", label_scale=5.0),
}


# ---------------------------------------------------------------------------------------------------------------
# Row checks shared by both sources
# ---------------------------------------------------------------------------------------------------------------


def clean_text(value: Any) -> str:
    """Strip whitespace and undo CSV quoting that ``QUOTE_NONE`` leaves in a field, e.g. QQP's tripled quotes.

    A field wrapped in quotes, with its inner quotes doubled, is unwrapped (repeatedly: some QQP fields were
    quoted twice); a field with a lone quote inside is left as it is.
    """
    if value is None:
        return ""
    text = str(value).strip()
    while len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if '"' in inner.replace('""', ""):
            break  # a lone quote inside: not CSV quoting, leave it
        text = inner.replace('""', '"').strip()
    return text


def parse_label(raw: Any, spec: dict[str, Any]) -> tuple[float | int | None, str | None]:
    """Return ``(label, None)`` for a valid label of the task's kind, else ``(None, reason)``."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, "empty label"
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None, "non-numeric label"
    if not math.isfinite(value):
        return None, "NaN or infinite label"
    kind = spec["kind"]
    if kind == "sentence_classification":
        if value != int(value) or not 0 <= value < spec["num_labels"]:
            return None, f"label outside 0..{spec['num_labels'] - 1}"
        return int(value), None
    if kind == "pair_classification":
        if value not in (0.0, 1.0):
            return None, "label not 0 or 1"
        return int(value), None
    low, high = spec["score_range"]
    if not low <= value <= high:
        return None, f"score outside [{low:g}, {high:g}]"
    return value, None


@dataclass
class LoadReport:
    """What happened to the rows of one file or split; logged once."""

    source: str
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def message(self) -> str:
        skipped = sum(self.skipped.values())
        if not skipped:
            return f"{self.source}: {self.kept} rows"
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
        return f"{self.source}: {self.kept} rows kept, {skipped} skipped ({reasons})"


def _validated_rows(
    records: Iterable[dict[str, Any]],
    spec: dict[str, Any],
    text_columns: tuple[str, ...],
    label_column: str | None,
    id_column: str | None,
    report: LoadReport,
    label_scale: float = 1.0,
    max_text_chars: int = 100_000,
) -> dict[str, list]:
    names = ("text", "text_pair")[: len(text_columns)]
    columns: dict[str, list] = {"id": [], **{n: [] for n in names}}
    if label_column is not None:
        columns["label"] = []
    for row_number, record in enumerate(records):
        if record is None:
            continue
        reason = record.pop("__error__", None)
        texts = [clean_text(record.get(c)) for c in text_columns]
        if reason is None and any(not t for t in texts):
            reason = "empty text"
        if reason is None and any(len(t) > max_text_chars for t in texts):
            reason = f"text longer than {max_text_chars} characters"
        label = None
        if reason is None and label_column is not None:
            raw = record.get(label_column)
            if label_scale != 1.0 and raw is not None and not isinstance(raw, str):
                raw = float(raw) * label_scale
            label, reason = parse_label(raw, spec)
        if reason is not None:
            report.skipped[reason] += 1
            continue
        row_id = record.get(id_column) if id_column else None
        columns["id"].append(str(row_id).strip() if row_id not in (None, "") else str(row_number))
        for n, t in zip(names, texts):
            columns[n].append(t)
        if label_column is not None:
            columns["label"].append(label)
        report.kept += 1
    return columns


def _features(spec: dict[str, Any], pair: bool, labelled: bool) -> datasets.Features:
    feats = {"id": datasets.Value("string"), "text": datasets.Value("string")}
    if pair:
        feats["text_pair"] = datasets.Value("string")
    if labelled:
        regression = spec["kind"] == "pair_regression"
        feats["label"] = datasets.Value("float32" if regression else "int64")
    return datasets.Features(feats)


def _to_dataset(columns: dict[str, list], spec: dict[str, Any], report: LoadReport) -> datasets.Dataset:
    if report.skipped:
        logger.warning(report.message())
    else:
        logger.info(report.message())
    if report.kept == 0:
        raise DataFileError(f"{report.message()}: no usable row, so this split cannot be used")
    pair = "text_pair" in columns
    return datasets.Dataset.from_dict(columns, features=_features(spec, pair, "label" in columns))


# ---------------------------------------------------------------------------------------------------------------
# minBERT tab-separated files
# ---------------------------------------------------------------------------------------------------------------


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
            "Use data_source: hub with hub_datasets for other tasks."
        )
    if not os.path.isdir(data_dir):
        raise DataFileError(f"data_dir {data_dir!r} is not a folder")
    files = MINBERT_FILES[task]
    out = {}
    for split in splits:
        label = None if split == "test" else files.label_column
        out[split] = read_minbert_file(
            os.path.join(data_dir, getattr(files, split)), spec, files.text_columns, label
        )
    return out


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face Hub datasets (or local folders laid out like them)
# ---------------------------------------------------------------------------------------------------------------


def hub_source(task: str, override: dict[str, Any] | str | None = None) -> HubSource:
    """The default Hub source of a task, updated by a user's ``hub_datasets`` entry (a path or a mapping)."""
    base = HUB_SOURCES.get(task)
    if isinstance(override, str):
        override = {"path": override}
    override = dict(override or {})
    if base is None and "path" not in override:
        raise DataFileError(f"task {task!r} has no default Hub dataset; set hub_datasets.{task}.path")
    fields = dict(base.__dict__) if base else {"name": None, "id_column": None}
    unknown = set(override) - set(HubSource.__dataclass_fields__)
    if unknown:
        raise DataFileError(f"hub_datasets.{task}: unknown key(s) {', '.join(sorted(unknown))}")
    fields.update(override)
    fields["text_columns"] = tuple(fields["text_columns"])
    return HubSource(**fields)


def load_hub_task(
    task: str, spec: dict[str, Any], source: HubSource, splits: Iterable[str] = SPLITS, cache_dir: str | None = None
) -> dict[str, datasets.Dataset]:
    """The splits of a task from a Hub dataset, columns mapped to ``id``/``text``/``text_pair``/``label``."""
    out = {}
    for split in splits:
        hub_split = source.splits.get(split, split)
        where = f"{source.path}" + (f" ({source.name})" if source.name else "") + f" split {hub_split!r}"
        try:
            raw = datasets.load_dataset(source.path, source.name, split=hub_split, cache_dir=cache_dir)
        except Exception as error:  # noqa: BLE001 - every loader failure becomes one clear message
            raise DataFileError(f"could not load {where} for task {task!r}: {error}") from None
        missing = [c for c in (*source.text_columns, source.label_column) if c not in raw.column_names]
        missing = [c for c in missing if not (split == "test" and c == source.label_column)]
        if missing:
            raise DataFileError(f"{where}: missing column(s) {', '.join(missing)}; found {', '.join(raw.column_names)}")
        labelled = source.label_column in raw.column_names and split != "test"
        if split == "test" and source.label_column in raw.column_names:
            labels = raw[source.label_column]
            labelled = bool(labels) and all(l is not None and float(l) >= 0 for l in labels)  # GLUE test uses -1
        report = LoadReport(f"{task} {where}")
        columns = _validated_rows(
            iter(raw),
            spec,
            source.text_columns,
            source.label_column if labelled else None,
            source.id_column if source.id_column in raw.column_names else None,
            report,
            label_scale=source.label_scale,
        )
        out[split] = _to_dataset(columns, spec, report)
    return out


def load_task_splits(
    task: str,
    spec: dict[str, Any],
    data_source: str,
    data_dir: str | None = None,
    hub_override: dict[str, Any] | str | None = None,
    splits: Iterable[str] = SPLITS,
    cache_dir: str | None = None,
) -> dict[str, datasets.Dataset]:
    """Dispatch on ``data_source`` (``minbert`` or ``hub``)."""
    if data_source == "minbert":
        if not data_dir:
            raise DataFileError("data_source: minbert needs data_dir (a folder with the minBERT .csv files)")
        return load_minbert_task(task, spec, data_dir, splits)
    if data_source == "hub":
        return load_hub_task(task, spec, hub_source(task, hub_override), splits, cache_dir)
    raise DataFileError(f"data_source must be 'minbert' or 'hub', got {data_source!r}")


# ---------------------------------------------------------------------------------------------------------------
# Tokenization for the task's head
# ---------------------------------------------------------------------------------------------------------------


def tokenize_batch(batch: dict[str, list], tokenizer, spec: dict[str, Any], max_length: int) -> dict[str, list]:
    """Token ids in the layout the task's head reads, plus each row's ``length``; masks are made by the collator.

    The encoding itself is the pipeline's (``pipeline_mtbert.encode_texts``), so training and inference on the Hub
    tokenize alike by construction.
    """
    out = encode_texts(tokenizer, spec, batch["text"], batch.get("text_pair"), max_length)
    out["length"] = [max(len(a), len(b)) for a, b in zip(out["input_ids"], out.get("input_ids_b", out["input_ids"]))]
    return out


def tokenize_task(dataset: datasets.Dataset, tokenizer, spec: dict[str, Any], max_length: int) -> datasets.Dataset:
    """Tokenize a split once with ``datasets.map``; the text columns are kept for predictions and analysis."""
    return dataset.map(
        tokenize_batch,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "spec": spec, "max_length": max_length},
        desc=f"Tokenizing ({task_input_format(spec)})",
    )
