"""Knowledge distillation: a trained mtbert model (or several, averaged as an ensemble) teaches another one.

The teacher labels every task's training rows once, before training: in batches, with a progress bar, each DDP rank
labelling its share. The labels are cached on disk under a key made of the teachers' weights and configuration and
the rows' text, so a second seed, a resumed run or another student reads them back instead of running the teacher
again. Teacher and student may have different backbones and tokenizers: the teacher reads the rows' text with its
own tokenizer, and its outputs are per row (per word for a token task, which needs the same words).

What the teacher leaves on a row (``teacher_targets``) follows the task's kind: log-probabilities over the classes
(an ensemble's are the log of its members' averaged probabilities), a score, or a token task's log-probabilities
per sub-token of the student (NaN where no word starts). The student's loss per task is then
``(1 − alpha) · gold loss + alpha · soft loss`` (``modeling_mtbert.distillation_mix``), the soft loss as the head's
objective defines it (``heads_mtbert.Objective.soft_loss``): ``T² · KL`` at temperature ``T`` for classes and tags,
MSE to the teacher's score for a regression, and MSE to the teacher's paraphrase probability for a cosine head.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..data.collators import TEACHER_COLUMN
from ..models.mtbert.configuration_mtbert import MultitaskConfigError
from ..models.mtbert.kinds_mtbert import IGNORE_INDEX, get_kind

logger = logging.getLogger("mtbert")

#: bump when the stored form of teacher targets changes, so that old cache files are not read as new ones
CACHE_FORMAT = 1
TEXT_COLUMNS = ("text", "text_pair", "tokens")
SETTINGS = ("teacher", "alpha", "temperature", "batch_size", "cache_dir")


def default_cache_dir() -> str:
    """``$MTBERT_CACHE/teacher_targets`` (default ``~/.cache/mtbert``)."""
    root = os.environ.get("MTBERT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mtbert")
    return os.path.join(root, "teacher_targets")


@dataclass
class DistillationSettings:
    """What ``distill:`` holds: the teacher(s) and how much the student listens to them.

    Args:
        teacher: a saved mtbert model (folder or Hub id), or several, whose predictions are averaged (an ensemble).
        alpha: the weight of the teacher's soft targets; the gold labels get ``1 − alpha``. One number for every
            task, or ``{task: alpha}`` (tasks not named get 0.5): a teacher much better than the student on one task
            and level on another can lead on the first only.
        temperature: softens both distributions of a classification or token task (``T² · KL``).
        batch_size: rows per teacher forward while labelling.
        cache_dir: where teacher targets are kept (default ``~/.cache/mtbert/teacher_targets``).
    """

    teacher: tuple[str, ...] = field(default_factory=tuple)
    alpha: float | dict[str, float] = 0.5
    temperature: float = 2.0
    batch_size: int = 64
    cache_dir: str | None = None

    @classmethod
    def parse(cls, value: Any, where: str = "distill", require_teacher: bool = True) -> DistillationSettings | None:
        """From a mapping (or its JSON text); ``None``/empty stays ``None``. Every mistake is one named line.
        ``require_teacher=False`` lets the teacher come later (``MultitaskTrainer(teacher=...)``)."""
        if value is None or value == {} or value == "":
            return None
        if isinstance(value, DistillationSettings):
            return value
        if isinstance(value, str):
            text = value.strip()
            if not text.startswith(("{", "[")):
                # a bare path is the teacher, the rest default
                return cls.parse({"teacher": text}, where, require_teacher)
            try:
                value = json.loads(text)
            except ValueError:
                raise MultitaskConfigError(f"{where}: {value!r} is not a JSON mapping or list") from None
        if isinstance(value, (list, tuple)):  # a list of teachers: an ensemble
            value = {"teacher": list(value)}
        if not isinstance(value, dict):
            raise MultitaskConfigError(
                f"{where} must be a mapping {{teacher: PATH or [PATHS], alpha, temperature}}, got {value!r}"
            )
        unknown = sorted(set(value) - set(SETTINGS))
        if unknown:
            raise MultitaskConfigError(
                f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}"
            )
        teacher = value.get("teacher")
        if isinstance(teacher, str):
            teacher = [teacher]
        if not teacher and not require_teacher:
            teacher = []
        elif (
            not teacher
            or not isinstance(teacher, (list, tuple))
            or not all(isinstance(t, str) and t.strip() for t in teacher)
        ):
            raise MultitaskConfigError(f"{where}.teacher must be a model folder (or a list of them), got {teacher!r}")
        settings = cls(teacher=tuple(t.strip() for t in teacher))
        alpha = value.get("alpha")
        if isinstance(alpha, dict):
            settings.alpha = {str(task): cls._alpha(share, f"{where}.alpha.{task}") for task, share in alpha.items()}
        elif alpha is not None:
            settings.alpha = cls._alpha(alpha, f"{where}.alpha")
        for name, kind in (("temperature", float), ("batch_size", int)):
            if name in value and value[name] is not None:
                raw = value[name]
                if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (kind is int and raw != int(raw)):
                    raise MultitaskConfigError(f"{where}.{name} must be a {kind.__name__}, got {raw!r}")
                setattr(settings, name, kind(raw))
        if not (math.isfinite(settings.temperature) and settings.temperature > 0):
            raise MultitaskConfigError(f"{where}.temperature must be > 0, got {settings.temperature}")
        if settings.batch_size < 1:
            raise MultitaskConfigError(f"{where}.batch_size must be >= 1, got {settings.batch_size}")
        cache_dir = value.get("cache_dir")
        if cache_dir is not None and (not isinstance(cache_dir, str) or not cache_dir.strip()):
            raise MultitaskConfigError(f"{where}.cache_dir must be a folder path, got {cache_dir!r}")
        settings.cache_dir = cache_dir
        from ..inference.loading import check_model_folder, is_local_path

        for path in settings.teacher:  # a local folder that is not a saved model fails now, not after the data loads
            if is_local_path(os.path.expanduser(path)):
                try:
                    check_model_folder(os.path.expanduser(path))
                except MultitaskConfigError as error:
                    raise MultitaskConfigError(f"{where}.teacher: {error}") from None
        return settings

    @staticmethod
    def _alpha(value: Any, where: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (math.isfinite(value) and 0.0 <= value <= 1.0)
        ):
            raise MultitaskConfigError(f"{where} must be in [0, 1] (the teacher's share), got {value!r}")
        return float(value)

    def alpha_for(self, task: str) -> float:
        """The teacher's share of ``task``'s loss."""
        return self.alpha.get(task, 0.5) if isinstance(self.alpha, dict) else self.alpha

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["teacher"] = list(self.teacher)
        return out


# ---------------------------------------------------------------------------------------------------------------
# Fingerprints
# ---------------------------------------------------------------------------------------------------------------


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def teacher_fingerprint(path: str) -> str:
    """The teacher's identity: the digest of its ``config.json`` and weight files (a retrained teacher in the same
    folder is a different teacher); for a Hub id not on disk, the id itself."""
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        return f"hub:{path}"
    digest = hashlib.sha256()
    names = sorted(n for n in os.listdir(path) if n == "config.json" or n.endswith(".safetensors"))
    for name in names:
        digest.update(name.encode())
        digest.update(_file_digest(os.path.join(path, name)).encode())
    return digest.hexdigest()


def data_fingerprint(dataset) -> str:
    """The digest of the rows' text (the teacher's input), in order."""
    digest = hashlib.sha256()
    columns = [c for c in TEXT_COLUMNS if c in dataset.column_names]
    if not columns:
        raise MultitaskConfigError(
            "distillation needs the rows' text (a 'text' column, 'text_pair' for pairs, 'tokens' for a token task) "
            f"so that the teacher can read them; the training data has only {', '.join(dataset.column_names)}"
        )
    for batch in dataset.select_columns(columns).iter(batch_size=4096):
        digest.update(json.dumps([batch[c] for c in columns], ensure_ascii=False).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# The teacher's predictions
# ---------------------------------------------------------------------------------------------------------------


def _target_kind(spec: dict[str, Any]) -> str:
    kind = get_kind(spec)
    if kind.target == "tags":
        return "tags"
    return "score" if kind.is_regression else "classes"


def check_teacher_task(
    task: str, student_spec: dict[str, Any], teacher_spec: dict[str, Any] | None, path: str
) -> None:
    """A teacher's task must predict what the student's does: the same target, the same classes."""
    if teacher_spec is None:
        return
    student_kind, teacher_kind = _target_kind(student_spec), _target_kind(teacher_spec)
    if student_kind != teacher_kind:
        raise MultitaskConfigError(
            f"distill: task {task!r} is {student_spec['kind']} in the student but {teacher_spec['kind']} in the "
            f"teacher {path}: a teacher must predict what the student learns"
        )
    if student_kind != "score" and int(student_spec["num_labels"]) != int(teacher_spec["num_labels"]):
        raise MultitaskConfigError(
            f"distill: task {task!r} has {student_spec['num_labels']} labels in the student but "
            f"{teacher_spec['num_labels']} in the teacher {path}"
        )
    names = student_spec.get("label_names") or [], teacher_spec.get("label_names") or []
    if all(names) and list(names[0]) != list(names[1]):
        raise MultitaskConfigError(
            f"distill: task {task!r} has labels {list(names[0])} in the student but {list(names[1])} in the teacher "
            f"{path}: the same labels, in the same order, are needed"
        )


def _member_outputs(model, tokenizer, task: str, dataset, indices: np.ndarray, batch_size: int, device,
                    autocast, progress: bool) -> list:  # fmt: skip
    """One teacher's probabilities (classes), scores, or per-word probabilities (tags) for the rows ``indices``."""
    from ..data.tokenization import tokenize_task
    from ..inference.predict import task_logits
    from ..models.mtbert.heads_mtbert import first_token_positions

    spec = model.config.tasks[task]
    columns = [c for c in TEXT_COLUMNS if c in dataset.column_names]
    rows = dataset.select_columns(columns).select(indices.tolist())
    max_length = getattr(model.config, "max_seq_length", None) or 128
    tokenized = tokenize_task(rows, tokenizer, spec, max_length)
    logits = task_logits(
        model, task, tokenized, batch_size=batch_size, pad_token_id=tokenizer.pad_token_id or 0, device=device,
        autocast=autocast, progress=progress, desc=f"Teacher labelling {task}",
    )  # fmt: skip
    head = model.task_head(task)
    target = _target_kind(spec)
    if target == "score":
        return logits.float().numpy().tolist()
    if target == "classes":
        probabilities = head.objective.probabilities(logits)
        if probabilities is None:
            raise MultitaskConfigError(
                f"distill: the teacher's {task!r} head ({spec['pair_encoding']}) gives a cosine, not class "
                "probabilities; distil from a classifier head"
            )
        return probabilities.numpy()
    out = []  # tags: the distribution at each word's first sub-token
    probabilities = logits.float().softmax(dim=-1)
    for row, word_ids in enumerate(tokenized["word_ids"]):
        out.append(probabilities[row, first_token_positions(word_ids)].numpy())
    return out


def _average(members: list, target: str):
    if target == "score":
        return np.mean(np.asarray(members, dtype=np.float64), axis=0).astype(np.float32)
    if target == "classes":
        mean = np.mean(np.stack(members), axis=0)
        return np.log(np.clip(mean, 1e-12, None)).astype(np.float32)
    rows = []
    for per_member in zip(*members):
        words = min(len(m) for m in per_member)  # members that truncated a sentence sooner label fewer words
        mean = np.mean(np.stack([m[:words] for m in per_member]), axis=0)
        rows.append(np.log(np.clip(mean, 1e-12, None)).astype(np.float32))
    return rows


def _save(path: str, target: str, values) -> None:
    if target == "tags":
        lengths = np.array([len(v) for v in values], dtype=np.int64)
        width = values[0].shape[-1] if len(values) and values[0].ndim == 2 else 0
        flat = np.concatenate([v.reshape(-1, width) for v in values]) if len(values) else np.zeros((0, width))
        tensors = {"values": torch.from_numpy(flat.astype(np.float32)), "lengths": torch.from_numpy(lengths)}
    else:
        tensors = {"values": torch.from_numpy(np.asarray(values, dtype=np.float32))}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    save_file(tensors, temporary, metadata={"format": str(CACHE_FORMAT), "target": target})
    os.replace(temporary, path)  # atomic: a reader never sees half a file


def _load(path: str, target: str):
    tensors = load_file(path)
    values = tensors["values"].numpy()
    if target != "tags":
        return values
    offsets = np.concatenate([[0], np.cumsum(tensors["lengths"].numpy())])
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def _gather(shard: list, indices: np.ndarray, total: int) -> list:
    """Every rank's share, back in row order (each rank labelled ``rows[rank::world]``)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return shard
    world = torch.distributed.get_world_size()
    gathered: list = [None] * world
    torch.distributed.all_gather_object(gathered, (indices.tolist(), list(shard)))
    out: list = [None] * total
    for rank_indices, rank_values in gathered:
        for index, value in zip(rank_indices, rank_values):
            out[index] = value
    return out


class TeacherLabeller:
    """Labels training rows with one or more saved teachers, through an on-disk cache.

    Teachers are loaded only when some task's targets are not cached yet, and let go once every task is labelled
    (they would hold their memory through training). ``labelled_calls`` counts the tasks that ran the teachers,
    ``teachers_loaded`` the teacher models loaded (both 0 when everything came from the cache).
    """

    def __init__(self, settings: DistillationSettings, device: torch.device | str = "cpu",
                 autocast: Callable[[], contextlib.AbstractContextManager] | None = None, rank: int = 0,
                 world_size: int = 1, progress: bool = True):  # fmt: skip
        self.settings = settings
        self.device = device
        self.autocast = autocast
        self.rank, self.world_size = rank, world_size
        self.progress = progress
        self.cache_dir = os.path.expanduser(settings.cache_dir or default_cache_dir())
        self._teachers: list | None = None
        self._fingerprints: list[str] | None = None
        self.labelled_calls = 0
        self.teachers_loaded = 0

    def teachers(self) -> list:
        if self._teachers is None:
            from ..inference.loading import load_model_and_tokenizer

            self._teachers = []
            for path in self.settings.teacher:
                model, tokenizer = load_model_and_tokenizer(os.path.expanduser(path), device=self.device)
                self._teachers.append((path, model, tokenizer))
                self.teachers_loaded += 1
        return self._teachers

    def teacher_configs(self) -> list[tuple[str, Any]]:
        from ..inference.loading import load_config

        if self._teachers is not None:
            return [(path, model.config) for path, model, _ in self._teachers]
        configs = []
        for path in self.settings.teacher:
            try:
                configs.append((path, load_config(os.path.expanduser(path))))
            except (MultitaskConfigError, OSError, ValueError) as error:
                raise MultitaskConfigError(f"distill.teacher {path!r}: {error}") from None
        return configs

    def fingerprints(self) -> list[str]:
        if self._fingerprints is None:
            self._fingerprints = [teacher_fingerprint(p) for p in self.settings.teacher]
        return self._fingerprints

    def cache_path(self, task: str, spec: dict[str, Any], dataset) -> str:
        key = {
            "format": CACHE_FORMAT,
            "teachers": self.fingerprints(),
            "task": task,
            "target": _target_kind(spec),
            "data": data_fingerprint(dataset),
            "bf16": self.autocast is not None,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        return os.path.join(self.cache_dir, f"{task}-{digest}.safetensors")

    def task_targets(self, task: str, spec: dict[str, Any], dataset):
        """The teacher's targets for every row of ``dataset`` (log-probabilities, scores, or per-word
        log-probabilities), read from the cache or computed (and cached) now."""
        target = _target_kind(spec)
        path = self.cache_path(task, spec, dataset)
        if os.path.isfile(path):
            logger.info("distill: teacher targets for %s read from the cache (%s)", task, path)
            values = _load(path, target)
            if len(values) == len(dataset):
                return values
            logger.warning("distill: %s holds %d rows, not %d: labelling again", path, len(values), len(dataset))
        indices = np.arange(self.rank, len(dataset), self.world_size)
        members = [
            _member_outputs(
                model,
                tokenizer,
                task,
                dataset,
                indices,
                self.settings.batch_size,
                self.device,
                self.autocast,
                self.progress,
            )
            for _, model, tokenizer in self.teachers()
        ]
        self.labelled_calls += 1
        shard = _average(members, target)
        values = _gather(list(shard), indices, len(dataset))
        values = np.asarray(values, dtype=np.float32) if target != "tags" else values
        if self.rank == 0:
            _save(path, target, values)
            logger.info("distill: teacher targets for %s (%d rows) cached in %s", task, len(dataset), path)
        return values

    def label(self, datasets: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """``datasets`` with a ``teacher_targets`` column on every task that a teacher knows (the others train on
        their gold labels alone, said in the log)."""
        configs = self.teacher_configs()
        out = {}
        for task, dataset in datasets.items():
            known = [path for path, config in configs if task in config.tasks]
            for path, config in configs:
                check_teacher_task(task, tasks[task], config.tasks.get(task), path)
            if len(known) != len(configs):
                if known:
                    missing = ", ".join(p for p, c in configs if task not in c.tasks)
                    raise MultitaskConfigError(
                        f"distill: task {task!r} is missing from teacher(s) {missing}; every teacher of an ensemble "
                        "must have it (or none)"
                    )
                logger.info("distill: no teacher has task %s; it learns from its gold labels only", task)
                out[task] = dataset
                continue
            values = self.task_targets(task, tasks[task], dataset)
            out[task] = dataset.add_column(TEACHER_COLUMN, self._column(values, tasks[task], dataset))
        self._teachers = None  # done: the teachers' memory goes back before training starts
        return out

    @staticmethod
    def _column(values, spec: dict[str, Any], dataset) -> list:
        if _target_kind(spec) != "tags":
            return np.asarray(values).tolist()
        every = spec.get("label_all_tokens", False)
        return [align_to_sub_tokens(v, word_ids, every) for v, word_ids in zip(values, dataset["word_ids"])]


def align_to_sub_tokens(word_values: np.ndarray, word_ids: Sequence[int], label_all_tokens: bool = False
                        ) -> list[list[float]]:  # fmt: skip
    """A token task's per-word teacher distribution placed on the student's sub-tokens exactly where the gold tags go
    (``heads_mtbert.align_word_labels``: each word's first sub-token, or all of them with ``label_all_tokens``),
    every other position NaN (masked out of the loss)."""
    from ..models.mtbert.heads_mtbert import align_word_labels

    word_values = np.asarray(word_values, dtype=np.float32)
    width = word_values.shape[-1] if word_values.ndim == 2 else 1
    nan = [float("nan")] * width
    words = align_word_labels(list(word_ids), list(range(len(word_values))), label_all_tokens)
    return [nan if word == IGNORE_INDEX else word_values[word].tolist() for word in words]


def label_training_data(settings: DistillationSettings, datasets: dict[str, Any], tasks: dict[str, dict[str, Any]],
                        args) -> tuple[dict[str, Any], TeacherLabeller]:  # fmt: skip
    """The trainer's entry point: the training datasets with teacher targets, labelled under ``args``' device, bf16
    setting and DDP rank."""
    autocast = None
    if getattr(args, "bf16", False) is True:
        device_type = torch.device(args.device).type
        autocast = lambda: torch.autocast(device_type, dtype=torch.bfloat16)  # noqa: E731
    labeller = TeacherLabeller(
        settings, device=args.device, autocast=autocast, rank=args.process_index, world_size=args.world_size,
        progress=args.should_log and not args.disable_tqdm,
    )  # fmt: skip
    return labeller.label(datasets, tasks), labeller


__all__ = [
    "DistillationSettings",
    "TeacherLabeller",
    "align_to_sub_tokens",
    "check_teacher_task",
    "data_fingerprint",
    "default_cache_dir",
    "label_training_data",
    "teacher_fingerprint",
]
