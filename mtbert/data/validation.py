"""Row checks shared by every source: clean text, labels of the task's kind, a report of what was skipped, and
the refusal of a split whose labels are on another scale; the checked columns become a ``datasets.Dataset``."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import datasets

from ..models.mtbert.kinds_mtbert import get_kind, num_classes

logger = logging.getLogger("mtbert.data")  # one name for every source, as before the split (run.py sets its level)


SPLITS = ("train", "dev", "test")


class DataFileError(ValueError):
    """A data file that cannot be used: missing, empty, mis-columned, or with no usable row."""


# Row checks shared by both sources


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
