"""Load each task's train/dev/test splits as ``datasets.Dataset`` objects and tokenize them for the task's head.

Each task names its own data (``task_data`` in a config, :class:`TaskData` here); tasks without an entry use the
run's ``data_source``. Three sources:
- ``minbert``: the tab-separated files of the CS224N minBERT default project (``ids-sst-*.csv``, ``quora-*.csv``,
  ``sts-*.csv``). Real files are messy (a QQP row whose quote swallows a tab, stray quotes in STS), so rows are
  read with ``csv.QUOTE_NONE``, checked one by one, and bad ones are skipped and counted, never trained on.
- ``files``: local CSV / TSV / JSON Lines / parquet files (one per split, or a folder of ``train.*``,
  ``validation.*`` (or ``dev.*``) and an optional ``test.*``), read with ``datasets.load_dataset``, columns mapped.
- ``hub``: a Hugging Face dataset id (``SetFit/sst5``, ``nyu-mll/glue``/qqp, ``sentence-transformers/stsb`` are
  the defaults of the three tasks) or any local folder laid out like one, with its columns and splits mapped.

Every split becomes a ``Dataset`` with columns ``id``, ``text`` (``text_pair`` for pair tasks) and ``label``
(absent on unlabelled test splits). ``train`` and ``dev`` are required; ``test`` is optional for ``files`` and
``hub`` (a task without one simply gets no leaderboard files).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import datasets

from ..models.mtbert.heads_mtbert import encode_texts, input_layout
from ..models.mtbert.kinds_mtbert import get_kind
from ..models.mtbert.kinds_mtbert import num_classes as num_classes  # re-exported: older code imports it from here
from ..tasks.token_data import TOKEN_KEYS, complete_label_names, read_conll, token_rows, tokenize_token_batch

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


# ---------------------------------------------------------------------------------------------------------------
# Row checks shared by both sources
# ---------------------------------------------------------------------------------------------------------------


def clean_text(value: Any) -> str:
    """Strip whitespace and undo CSV quoting that ``QUOTE_NONE`` leaves in a field, e.g. QQP's tripled quotes.

    A field wrapped in quotes, with its inner quotes doubled, is unwrapped (repeatedly: some QQP fields were
    quoted twice); a field with a lone quote inside is left as it is.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):  # pandas reads an empty cell as NaN
        return ""
    text = str(value).strip()
    while len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if '"' in inner.replace('""', ""):
            break  # a lone quote inside: not CSV quoting, leave it
        text = inner.replace('""', '"').strip()
    return text


# The reasons ``parse_label`` gives for a well-formed label whose value the task does not know: in a user's own files
# (``files``/``hub`` sources) these stop the run, since they mean a wrong ``num_labels``/``label_names``/
# ``score_range`` rather than a messy row; the minBERT reader skips and counts them like any other bad row.
LABEL_VALUE_REASONS = ("label outside", "label not 0 or 1", "score outside", "label name not in label_names")


def is_regression(spec: dict[str, Any]) -> bool:
    """Whether a task's labels are scores (``sentence_regression``, ``pair_regression``) rather than classes."""
    return get_kind(spec).is_regression


def parse_label(
    raw: Any, spec: dict[str, Any], label_names: list[str] | None = None
) -> tuple[float | int | None, str | None]:
    """Return ``(label, None)`` for a valid label of the task's kind, else ``(None, reason)`` (the kind decides:
    :meth:`mtbert.models.mtbert.kinds_mtbert.TaskKind.parse_label`).

    Classification labels are class indices ``0..num_labels-1`` (``pair_classification``: ``num_labels`` of the
    spec, 2 if absent); with ``label_names`` given, a string label such as ``"entailment"`` maps to its index.
    """
    return get_kind(spec).parse_label(raw, spec, label_names)


@dataclass
class LoadReport:
    """What happened to the rows of one file or split; logged once."""

    source: str
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    bad_label_examples: list = field(default_factory=list)  # (row number, raw label) of unknown label values
    bad_label_values: list = field(default_factory=list)  # the numeric values of every label the task does not know

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
    label_names: list[str] | None = None,
    strict_labels: bool = False,
    keep_unlabelled: bool = False,
) -> dict[str, list]:
    """Check each record; keep good rows as ``id``/``text``/``text_pair``/``label`` columns, count bad ones.

    ``keep_unlabelled``: a row without a label (an empty cell) is kept with label ``None`` instead of skipped: in a
    data set shared by several tasks it still trains the tasks it has labels for.

    ``strict_labels``: a label the task does not know (outside ``0..num_labels-1``, not in ``label_names``, a score
    outside ``score_range``) raises a :class:`DataFileError` after the whole split is read, instead of being skipped.
    """
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
            label, reason = parse_label(raw, spec, label_names)
            if keep_unlabelled and reason == "empty label":
                reason = None
            if reason is not None and reason.startswith(LABEL_VALUE_REASONS):
                if len(report.bad_label_examples) < 3:
                    report.bad_label_examples.append((row_number, raw))
                report.bad_label_values.append(_as_number(raw))
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
    _refuse_labels_on_another_scale(report, spec, label_column)
    if strict_labels and report.bad_label_examples:
        bad = sum(n for reason, n in report.skipped.items() if reason.startswith(LABEL_VALUE_REASONS))
        examples = ", ".join(f"{raw!r} (row {row})" for row, raw in report.bad_label_examples)
        if is_regression(spec):
            known, fix = f"scores in {spec['score_range']}", "set score_range (or label_scale) to match the data"
        else:
            n_classes = num_classes(spec)
            listed = f" or names {', '.join(map(str, label_names))}" if label_names else ""
            known = f"class indices 0..{n_classes - 1}{listed}"
            fix = "set the task's num_labels and label_names to cover every class, or fix those rows"
        raise DataFileError(
            f"{report.source}: {bad} row(s) with labels the task does not know in column {label_column!r}, e.g. "
            f"{examples}; expected {known}. To fix: {fix}"
        )
    return columns


# A split stops (rather than training on the rest) when more than this share of its labelled rows, and at least
# ``SCALE_MIN_ROWS`` rows, have labels outside the task's range: the file is then on another scale, not messy.
SCALE_SHARE = 0.2
SCALE_MIN_ROWS = 5


def _as_number(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _refuse_labels_on_another_scale(report: LoadReport, spec: dict[str, Any], label_column: str | None) -> None:
    """Raise a :class:`DataFileError` naming the likely scale when a large share of a split's labels are outside the
    task's range (STS scored 0-10, SST labelled 1-5); a few bad rows stay skipped and counted."""
    bad = len(report.bad_label_values)
    total = report.kept + bad
    if bad < SCALE_MIN_ROWS or bad <= SCALE_SHARE * total:
        return
    share = f"{100 * bad / total:.0f}% of {report.source}'s {total} labelled rows"
    numbers = [v for v in report.bad_label_values if v is not None]
    where = f"column {label_column!r}"
    if is_regression(spec):
        low, high = spec["score_range"]
        top, bottom = (max(numbers), min(numbers)) if numbers else (None, None)
        if top is not None and top > high:
            guess_high = next((h for h in (10, 100, 1) if h >= top), math.ceil(top))
            scale = high / guess_high if guess_high > 0 else 1.0
            raise DataFileError(
                f"{share} have scores above {high:g} in {where} (up to {top:g}): the file looks scored "
                f"{min(low, bottom):g}-{guess_high:g}, not {low:g}-{high:g}; set label_scale: {scale:g} "
                f"in the task's task_data entry (source: files or hub) or tasks.<task>.score_range: "
                f"[{min(low, bottom):g}, {guess_high:g}]"
            )
        raise DataFileError(
            f"{share} have scores outside [{low:g}, {high:g}] in {where}"
            + (f" (from {bottom:g} to {top:g})" if numbers else "")
            + ": the file looks on another scale; set tasks.<task>.score_range (or label_scale) to match the data"
        )
    n = num_classes(spec)
    integers = sorted({int(v) for v in numbers if v == int(v)})
    if integers and min(integers) >= 1 and max(integers) == n:
        hint = f"the file looks labelled 1-{n}, not 0-{n - 1}: renumber the labels from 0 (subtract 1)"
    elif integers:
        hint = (
            f"labels go up to {max(integers)}: set tasks.<task>.num_labels to the number of classes "
            "(and label_names), or renumber them 0..num_labels-1"
        )
    else:
        hint = "set tasks.<task>.num_labels and label_names to cover every class"
    raise DataFileError(f"{share} have labels outside 0..{n - 1} in {where}: {hint}")


def _features(spec: dict[str, Any], pair: bool, labelled: bool) -> datasets.Features:
    feats = {"id": datasets.Value("string"), "text": datasets.Value("string")}
    if pair:
        feats["text_pair"] = datasets.Value("string")
    if labelled:
        feats["label"] = datasets.Value(get_kind(spec).label_dtype)
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


# ---------------------------------------------------------------------------------------------------------------
# Split names, and the rows of a loaded ``datasets.Dataset`` (local files or the Hub)
# ---------------------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face Hub datasets (or local folders laid out like them)
# ---------------------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------------------
# Local CSV / TSV / JSON Lines / parquet files
# ---------------------------------------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class MinbertSource:
    """A task (``sst``, ``qqp`` or ``sts``) read from a minBERT data folder."""

    data_dir: str


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


# ---------------------------------------------------------------------------------------------------------------
# Each task's source: its own task_data entry, else the run's data_source
# ---------------------------------------------------------------------------------------------------------------

TASK_DATA_SOURCES = ("minbert", "files", "hub")


def task_source(
    task: str,
    spec: dict[str, Any],
    entry: dict[str, Any] | None = None,
    data_source: str = "minbert",
    data_dir: str | None = None,
    hub_override: dict[str, Any] | str | None = None,
) -> MinbertSource | FileSource | HubSource:
    """Where one task's data comes from, checked before anything is loaded.

    ``entry`` is the task's ``task_data`` mapping (``source: minbert | files | hub`` plus that source's keys); without
    one the task uses the run's ``data_source``/``data_dir`` (and its ``hub_datasets`` entry, ``hub_override``).
    """
    where = f"task_data.{task}"
    if entry is None:
        if data_source == "minbert":
            if not data_dir:
                raise DataFileError("data_source: minbert needs data_dir (a folder with the minBERT .csv files)")
            if task not in MINBERT_FILES:
                raise DataFileError(
                    f"task {task!r} has no minBERT files (a minBERT folder holds {', '.join(MINBERT_FILES)}); "
                    f"name its data in task_data.{task} (source: files or hub)"
                )
            return MinbertSource(data_dir)
        if data_source == "hub":
            return hub_source(task, hub_override, spec)
        raise DataFileError(f"data_source must be 'minbert' or 'hub', got {data_source!r}")
    if isinstance(entry, str):
        raise DataFileError(f"{where}: write a mapping such as {{source: files, data_dir: {entry}}}")
    entry = dict(entry)
    source = entry.pop("source", None)
    if source is None:
        source = "files" if "data_files" in entry else "hub" if "path" in entry else None
    if source not in TASK_DATA_SOURCES:
        raise DataFileError(f"{where}.source: {source!r} is not one of {', '.join(TASK_DATA_SOURCES)}")
    if source == "minbert":
        unknown = set(entry) - {"data_dir"}
        if unknown:
            raise DataFileError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))} for source: minbert (only data_dir)"
            )
        folder = entry.get("data_dir") or data_dir
        if not folder:
            raise DataFileError(f"{where}: source: minbert needs data_dir (here or at the top level)")
        if task not in MINBERT_FILES:
            raise DataFileError(
                f"{where}: a minBERT folder holds only {', '.join(MINBERT_FILES)}; use source: files or hub"
            )
        if not os.path.isdir(folder):
            raise DataFileError(f"{where}: data_dir {folder!r} is not a folder")
        return MinbertSource(folder)
    if source == "hub":
        return hub_source(task, entry, spec, where)
    return file_source(task, spec, entry, where)


def load_task_data(
    task: str,
    spec: dict[str, Any],
    source: MinbertSource | FileSource | HubSource,
    splits: Iterable[str] = SPLITS,
    cache_dir: str | None = None,
    unlabelled_rows: Iterable[str] = (),
) -> dict[str, datasets.Dataset]:
    """``{split: Dataset}`` of one task from its resolved source (see :func:`task_source`); test may be absent.

    ``unlabelled_rows`` (``files`` and ``hub`` sources): the splits whose rows without this task's label are kept,
    with label ``None``, instead of skipped; for a data set shared with other tasks (:func:`shared_sources`), whose
    rows then stay aligned and train the tasks they have labels for."""
    if isinstance(source, MinbertSource):
        return load_minbert_task(task, spec, source.data_dir, splits)
    if isinstance(source, HubSource):
        return load_hub_task(task, spec, source, splits, cache_dir, unlabelled_rows)
    return load_file_task(task, spec, source, splits, cache_dir, unlabelled_rows)


def shared_sources(sources: dict[str, MinbertSource | FileSource | HubSource]) -> set[str]:
    """The tasks whose ``task_data`` reads the same files (or Hub dataset and splits) as another task's: their
    rows can carry labels for several tasks (:meth:`mtbert.data.sampling.MultitaskDataset.joint_groups`)."""

    def where(source):
        if isinstance(source, FileSource):
            return ("files", tuple(sorted(source.data_files.items())), source.format)
        if isinstance(source, HubSource):
            return ("hub", source.path, source.name, tuple(sorted(source.splits.items())))
        return None

    keys = {task: where(source) for task, source in sources.items()}
    counts = Counter(k for k in keys.values() if k is not None)
    return {task for task, key in keys.items() if key is not None and counts[key] > 1}


def load_task_splits(
    task: str,
    spec: dict[str, Any],
    data_source: str,
    data_dir: str | None = None,
    hub_override: dict[str, Any] | str | None = None,
    splits: Iterable[str] = SPLITS,
    cache_dir: str | None = None,
    task_data: dict[str, Any] | None = None,
) -> dict[str, datasets.Dataset]:
    """One task's splits: from its ``task_data`` entry if given, else by ``data_source`` (``minbert`` or ``hub``)."""
    source = task_source(task, spec, task_data, data_source, data_dir, hub_override)
    return load_task_data(task, spec, source, splits, cache_dir)


# ---------------------------------------------------------------------------------------------------------------
# Tokenization for the task's head
# ---------------------------------------------------------------------------------------------------------------


def tokenize_batch(batch: dict[str, list], tokenizer, spec: dict[str, Any], max_length: int) -> dict[str, list]:
    """Token ids in the layout the task's head reads, plus each row's ``length``; masks are made by the collator.

    The encoding itself is the head's (``heads_mtbert.encode_texts``, which the pipeline uses too), so training and
    inference on the Hub
    tokenize alike by construction.
    """
    if "tokens" in batch and get_kind(spec).input == "tokens":
        return tokenize_token_batch(batch, tokenizer, spec, max_length)
    out: dict[str, list] = encode_texts(tokenizer, spec, batch["text"], batch.get("text_pair"), max_length)
    out["length"] = [max(len(a), len(b)) for a, b in zip(out["input_ids"], out.get("input_ids_b", out["input_ids"]))]
    return out


def tokenize_task(dataset: datasets.Dataset, tokenizer, spec: dict[str, Any], max_length: int) -> datasets.Dataset:
    """Tokenize a split once with ``datasets.map``; the text columns are kept for predictions and analysis."""
    return dataset.map(
        tokenize_batch,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "spec": spec, "max_length": max_length},
        desc=f"Tokenizing ({input_layout(spec)})",
    )
