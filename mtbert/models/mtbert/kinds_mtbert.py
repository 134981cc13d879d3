"""Task kinds: one class per kind of task, owning everything that differs between kinds.

A kind says *what is read* (:attr:`TaskKind.input`: one ``text``, a ``pair`` of texts, or ``tokens``, a sentence
already split into words) and *what is predicted* (:attr:`TaskKind.target`: ``classes``, a ``score``, or ``tags``, one
class per word). The kind, not the code that uses it, decides:

- how a task's settings are completed and checked (:meth:`TaskKind.complete_spec`: labels, scales);
- how a raw label is read and checked (:meth:`TaskKind.parse_label`) and the label's dataset type
  (:attr:`TaskKind.label_dtype`, :attr:`TaskKind.label_is_sequence`);
- how labels are padded in a batch (:meth:`TaskKind.collate_labels`);
- its metrics and the primary one that enters ``eval_average`` (:attr:`TaskKind.metrics`,
  :attr:`TaskKind.primary_metric`);
- how a prediction is written into a leaderboard/prediction file (:meth:`TaskKind.format_prediction`);
- its Hub pipeline task type and the card's ``model-index`` task type (:attr:`TaskKind.hub_task_type`).

Adding a kind is one class here (or in a module of your own) plus :func:`register_kind`. Heads (``heads_mtbert``)
say *how* a kind is computed.

This file is remote code: it imports nothing but the standard library, torch and its siblings.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch

#: The labels of a two-class pair task (QQP) when none are given.
QQP_LABELS = ["not duplicate", "duplicate"]

#: The label value that losses and metrics ignore (a padded position, or a sub-token that carries no label).
IGNORE_INDEX = -100


class TaskKind:
    """What a task reads and predicts. Subclasses set the class attributes and override what differs."""

    #: the kind's name in a task's settings (``kind: ...``)
    name: ClassVar[str] = ""
    #: ``text`` (one sentence), ``pair`` (two sentences) or ``tokens`` (a sentence split into words)
    input: ClassVar[str] = "text"
    #: ``classes``, ``score`` or ``tags`` (one class per word)
    target: ClassVar[str] = "classes"
    #: the metrics reported for the task, as ``eval_<task>_<metric>``
    metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    #: the metric that enters ``eval_average`` (the paper's mean of SST accuracy, QQP accuracy, STS Pearson)
    primary_metric: ClassVar[str] = "accuracy"
    #: the type of the task on the Hub (``model-index`` and the pipeline)
    hub_task_type: ClassVar[str] = "text-classification"
    #: the ``datasets`` value type of a label, and whether a row's label is one value per word
    label_dtype: ClassVar[str] = "int64"
    label_is_sequence: ClassVar[bool] = False

    # -- settings -------------------------------------------------------------------------------------------

    @property
    def is_pair(self) -> bool:
        return self.input == "pair"

    @property
    def is_regression(self) -> bool:
        return self.target == "score"

    @property
    def has_labels(self) -> bool:
        """Whether the task predicts named classes (``label_names``)."""
        return self.target in ("classes", "tags")

    def text_columns(self) -> tuple[str, ...]:
        """The text columns of the task's rows (``tokens`` tasks keep their words in ``tokens``)."""
        return ("text", "text_pair") if self.is_pair else ("text",)

    def complete_spec(self, spec: dict[str, Any], where: str, error: type[Exception]) -> None:
        """Fill ``num_labels``/``label_names``/``score_range`` in place and check them."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name.replace("_", " ")

    # -- labels ---------------------------------------------------------------------------------------------

    def parse_label(self, raw: Any, spec: dict[str, Any], label_names=None) -> tuple[Any, str | None]:
        """``(label, None)`` for a valid label of this kind, else ``(None, reason)``."""
        raise NotImplementedError

    def collate_labels(self, labels: list) -> torch.Tensor:
        """One batch's labels as a tensor."""
        dtype = torch.float32 if self.label_dtype.startswith("float") else torch.long
        return torch.tensor(labels, dtype=dtype)

    # -- predictions ----------------------------------------------------------------------------------------

    def format_prediction(self, value: Any, spec: dict[str, Any]) -> str:
        """A row's prediction as written into a leaderboard file."""
        return str(int(value))


def _label_index(raw: str, label_names) -> int | None:
    """The index of a string label in ``label_names`` (exact, then case-insensitive), else ``None``."""
    if not label_names:
        return None
    names = [str(n) for n in label_names]
    text = raw.strip()
    if text in names:
        return names.index(text)
    folded = [n.casefold() for n in names]
    return folded.index(text.casefold()) if text.casefold() in folded else None


def num_classes(spec: dict[str, Any]) -> int:
    """How many classes a task's labels may take: ``num_labels`` (at least 2; pair specs written before
    multi-class pairs carry ``num_labels: 1``, one logit: binary)."""
    return max(int(spec.get("num_labels") or 2), 2)


class _Classes(TaskKind):
    """Shared by the kinds that predict one class per row."""

    target = "classes"

    def complete_spec(self, spec, where, error):
        if spec["num_labels"] in (None, 1) and self.is_pair and not spec["label_names"]:
            spec["num_labels"] = 2  # a paraphrase task (checkpoints before 0.2 stored 1 for its single logit)
        elif spec["num_labels"] in (None, 1) and spec["label_names"]:
            spec["num_labels"] = len(spec["label_names"])
        elif spec["num_labels"] is None:
            spec["num_labels"] = 2
        try:
            spec["num_labels"] = int(spec["num_labels"])
        except (TypeError, ValueError):
            raise error(f"{where}: num_labels must be a whole number, got {spec['num_labels']!r}") from None
        if spec["num_labels"] < 2:
            raise error(f"{where}: num_labels must be >= 2, got {spec['num_labels']}")
        if spec["label_names"] is None:
            default = QQP_LABELS if self.is_pair and spec["num_labels"] == 2 else None
            spec["label_names"] = list(default or [f"LABEL_{i}" for i in range(spec["num_labels"])])
        spec["label_names"] = [str(name) for name in spec["label_names"]]
        if len(spec["label_names"]) != spec["num_labels"]:
            raise error(f"{where}: {len(spec['label_names'])} label_names for num_labels={spec['num_labels']}")
        spec["score_range"] = None

    def parse_label(self, raw, spec, label_names=None):
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None, "empty label"
        if label_names and isinstance(raw, str):
            index = _label_index(raw, label_names)
            if index is not None:
                raw = index
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return None, "label name not in label_names" if label_names else "non-numeric label"
        if not math.isfinite(value):
            return None, "NaN or infinite label"
        n = num_classes(spec)
        if value != int(value) or not 0 <= value < n:
            return None, "label not 0 or 1" if n == 2 and self.is_pair else f"label outside 0..{n - 1}"
        return int(value), None


class SentenceClassification(_Classes):
    """One sentence, one of ``num_labels`` classes (SST-5 sentiment)."""

    name = "sentence_classification"
    input = "text"


class PairClassification(_Classes):
    """Two sentences, one of ``num_labels`` classes (QQP paraphrase: two; NLI: three). Accuracy and F1 (binary F1
    of label 1 with two labels, macro F1 with more)."""

    name = "pair_classification"
    input = "pair"
    metrics = ("accuracy", "f1")


class _Score(TaskKind):
    """Shared by the kinds that predict one score per row in ``score_range``."""

    target = "score"
    metrics = ("pearson", "spearman")
    primary_metric = "pearson"
    label_dtype = "float32"

    def complete_spec(self, spec, where, error):
        spec["num_labels"] = 1
        spec["label_names"] = None
        spec["score_range"] = [float(x) for x in (spec["score_range"] or [0.0, 5.0])]
        low, high = spec["score_range"]
        if not high > low:
            raise error(f"{where}: score_range must be [low, high] with high > low, got {spec['score_range']}")

    def parse_label(self, raw, spec, label_names=None):
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None, "empty label"
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return None, "non-numeric label"
        if not math.isfinite(value):
            return None, "NaN or infinite label"
        low, high = spec["score_range"]
        if not low <= value <= high:
            return None, f"score outside [{low:g}, {high:g}]"
        return value, None

    def format_prediction(self, value, spec):
        return f"{float(value):.6g}"


class SentenceRegression(_Score):
    """One sentence, one score."""

    name = "sentence_regression"
    input = "text"


class PairRegression(_Score):
    """Two sentences, one similarity score (STS-B: 0-5, Pearson)."""

    name = "pair_regression"
    input = "pair"
    hub_task_type = "sentence-similarity"


class TokenClassification(TaskKind):
    """A sentence split into words, one tag per word (NER, slot filling, POS): BIO/IOB2 tags or plain ones.

    Labels are per word; the head sees sub-word tokens, and the first sub-token of each word carries the word's
    label (every sub-token with ``label_all_tokens``), the rest :data:`IGNORE_INDEX`. Metrics are seqeval's
    entity-level precision/recall/F1 over strict IOB2 spans (``f1`` is primary) and word accuracy."""

    name = "token_classification"
    input = "tokens"
    target = "tags"
    metrics = ("f1", "precision", "recall", "accuracy")
    primary_metric = "f1"
    hub_task_type = "token-classification"
    label_is_sequence = True

    def text_columns(self):
        return ("tokens",)

    def complete_spec(self, spec, where, error):
        names = spec["label_names"]
        spec["score_range"] = None
        if not names:  # read from the training split before the model is built (token_data.complete_label_names)
            if spec["num_labels"] is not None:
                raise error(f"{where}: num_labels without label_names; name the tags (e.g. [O, B-LOC, I-LOC])")
            spec["label_names"] = None
            return
        spec["label_names"] = [str(n) for n in names]
        if len(set(spec["label_names"])) != len(spec["label_names"]):
            raise error(f"{where}: label_names has duplicates: {spec['label_names']}")
        if spec["num_labels"] not in (None, len(spec["label_names"])):
            raise error(f"{where}: {len(spec['label_names'])} label_names for num_labels={spec['num_labels']}")
        spec["num_labels"] = len(spec["label_names"])
        spec["score_range"] = None

    def parse_label(self, raw, spec, label_names=None):
        """``raw`` is a row's tags: a list of tag names or ids (or one string of space-separated tags)."""
        if raw is None:
            return None, "empty label"
        if isinstance(raw, str):
            raw = raw.split()
        names = label_names or spec["label_names"]
        out = []
        for tag in raw:
            if isinstance(tag, str) and not tag.lstrip("-").isdigit():
                index = _label_index(tag, names)
                if index is None:
                    return None, "label name not in label_names"
                out.append(index)
                continue
            try:
                value = int(tag)
            except (TypeError, ValueError):
                return None, "non-numeric label"
            if not 0 <= value < len(names):
                return None, f"label outside 0..{len(names) - 1}"
            out.append(value)
        return out, None

    def collate_labels(self, labels):
        length = max((len(x) for x in labels), default=0)
        out = torch.full((len(labels), length), IGNORE_INDEX, dtype=torch.long)
        for row, values in enumerate(labels):
            out[row, : len(values)] = torch.as_tensor(values, dtype=torch.long)
        return out

    def format_prediction(self, value, spec):
        names = spec["label_names"]
        return " ".join(names[int(i)] for i in value)


#: Every kind by name; :func:`register_kind` adds one.
TASK_KIND_CLASSES: dict[str, type[TaskKind]] = {}


def register_kind(cls: type[TaskKind]) -> type[TaskKind]:
    """Make ``kind: <cls.name>`` known (usable as a decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    TASK_KIND_CLASSES[cls.name] = cls
    return cls


for _cls in (SentenceClassification, PairClassification, SentenceRegression, PairRegression, TokenClassification):
    register_kind(_cls)


def kind_names() -> tuple[str, ...]:
    return tuple(TASK_KIND_CLASSES)


def get_kind(name_or_spec: str | dict[str, Any], error: Callable[[str], Exception] = ValueError) -> TaskKind:
    """The kind of a task (its name, or its settings' ``kind``)."""
    name = name_or_spec.get("kind") if isinstance(name_or_spec, dict) else name_or_spec
    cls = TASK_KIND_CLASSES.get(str(name))
    if cls is None:
        hint = difflib.get_close_matches(str(name), TASK_KIND_CLASSES, n=1)
        suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
        raise error(f"kind: {name!r} is not one of {', '.join(TASK_KIND_CLASSES)}.{suggestion}")
    return cls()


class KindTable(Mapping):
    """kind name -> one class attribute of every registered kind (``primary_metric``, ``hub_task_type``, ...),
    read at lookup time, so a kind registered later is in it too."""

    def __init__(self, attribute: str):
        self.attribute = attribute

    def __getitem__(self, kind: str):
        if kind not in TASK_KIND_CLASSES:
            raise KeyError(kind)
        return getattr(TASK_KIND_CLASSES[kind], self.attribute)

    def __iter__(self):
        return iter(TASK_KIND_CLASSES)

    def __len__(self) -> int:
        return len(TASK_KIND_CLASSES)


@dataclass
class TaskSpec:
    """A task's settings, typed: every key a task may carry and its default (``None``: derived from the kind).
    ``config.json`` stores them as a plain mapping; :func:`configuration_mtbert.normalize_task_spec` completes one."""

    kind: str | None = None
    num_labels: int | None = None
    label_names: list[str] | None = None
    pooling: str = "cls"
    pair_encoding: str | None = None
    use_token_type_ids: bool = False
    classifier: str = "linear"
    classifier_dropout: float = 0.1
    cosine_threshold: float = 0.5
    score_range: list[float] | None = None
    loss_weight: float = 1.0
    pair_features: str = "concat"
    regression_loss: str = "mse"
    cosent_scale: float = 20.0
    label_smoothing: float = 0.0
    rdrop_alpha: float = 0.0
    smart_alpha: float = 0.0
    smart_noise: float = 1e-5
    smart_step_size: float = 1e-3
    label_all_tokens: bool = False

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every key a task may carry, with its default."""
        return {f.name: f.default for f in fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        """The plain mapping ``config.json`` stores (``TaskSpec(**spec.to_dict()) == spec``)."""
        return asdict(self)


__all__ = [
    "IGNORE_INDEX",
    "QQP_LABELS",
    "TASK_KIND_CLASSES",
    "KindTable",
    "PairClassification",
    "PairRegression",
    "SentenceClassification",
    "SentenceRegression",
    "TaskKind",
    "TaskSpec",
    "TokenClassification",
    "get_kind",
    "kind_names",
    "num_classes",
    "register_kind",
]  # fmt: skip
