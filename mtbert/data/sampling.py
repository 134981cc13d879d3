"""Which task each training batch comes from, as a deterministic, resumable plan per epoch.

An **epoch** is defined per strategy:
- one task per step (``round_robin`` strategy): every task's training rows are seen once (a task capped by
  ``max_train_samples`` contributes a fresh random subset of that size each epoch), so an epoch has
  Σ_t ceil(n_t / global_batch) steps. ``task_sampling`` orders those batches: ``round_robin`` interleaves the tasks
  one batch each (tasks that run out drop out), ``proportional`` shuffles all batches together (a task is drawn in
  proportion to its size), ``temperature`` draws each step's task with probability ∝ n_t^(1/T) (T=1: proportional,
  T→∞: uniform) for the same number of steps, cycling through a task's rows as often as needed.
- all tasks per step (``sum`` and ``pcgrad`` strategies): each step holds one batch of every task; an epoch lasts
  as many steps as the largest task has batches, smaller tasks cycling through fresh shuffles.

The plan depends only on ``(seed, epoch)``, so the Trainer's "skip the first k batches" resume continues exactly.
Under data parallelism, every rank takes the same step's task and its own contiguous slice of the global batch,
so a global batch equals the single-process batch of the same size.

Tasks whose training rows are the same rows (``joint``: an utterance with an intent label and slot tags, read by an
intent task and a slot task) are one unit of the plan: the group's first task draws the batches as a task on its own
would, and every member takes the same rows, so the step holds one batch per member over the same inputs, encoded
once (:meth:`MultitaskDataset.joint_groups` finds such groups). Under ``round_robin`` the group is one slot of the
rotation; the other tasks' batches are the ones they would get without the group.

With ``group_by_length`` (length bucketing), each task's rows are regrouped by token length within windows of 50
batches and the batches shuffled, which cuts padding (and time) substantially on sentence tasks; batch contents
then depend on the batch size, so gradient accumulation no longer reproduces a larger batch exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Dataset, Sampler

from ..models.mtbert.kinds_mtbert import IGNORE_INDEX
from .collators import MODEL_COLUMNS, TEACHER_COLUMN

TASK_SAMPLINGS = ("round_robin", "proportional", "temperature")


class MultitaskDataset(Dataset):
    """All tasks' tokenized training rows behind one index space: global index → ``(task, row)``."""

    def __init__(self, task_rows: dict[str, list[dict]]):
        self.tasks = list(task_rows)
        self.task_rows = task_rows
        self.offsets = {}
        offset = 0
        for task in self.tasks:
            self.offsets[task] = offset
            offset += len(task_rows[task])
        self.total = offset

    @classmethod
    def from_datasets(cls, task_datasets: dict, columns=(*MODEL_COLUMNS, "label", TEACHER_COLUMN)):
        """Materialise the model-facing columns of tokenized ``datasets.Dataset`` objects as Python rows (fast
        access). A missing label (``None``) becomes ``-100`` (``NaN`` for scores): the row trains the other tasks
        that share it, not this one."""
        task_rows = {}
        for task, ds in task_datasets.items():
            keep = [c for c in columns if c in ds.column_names]
            data = ds.select_columns(keep).to_dict()
            if "label" in data and None in data["label"]:  # a shared row labelled for other tasks only
                dtype = getattr(ds.features["label"], "dtype", "int64")
                missing = float("nan") if dtype.startswith("float") else IGNORE_INDEX
                data["label"] = [missing if v is None else v for v in data["label"]]
            task_rows[task] = [dict(zip(keep, values)) for values in zip(*(data[c] for c in keep))]
        return cls(task_rows)

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index: int) -> tuple[str, dict]:
        for task in reversed(self.tasks):
            if index >= self.offsets[task]:
                return task, self.task_rows[task][index - self.offsets[task]]
        raise IndexError(index)

    def joint_groups(self, caps: dict[str, int] | None = None) -> list[tuple[str, ...]]:
        """Groups of tasks (two or more, in task order) whose training rows are the same rows in the same order: equal
        encoder inputs row by row (a shared ``task_data`` file read through the same text) and the same
        ``max_train_samples`` cap in ``caps``. Such tasks can share each batch and its encoder pass."""
        caps = caps or {}
        groups: list[list[str]] = []
        for task in self.tasks:
            for group in groups:
                if caps.get(task) == caps.get(group[0]) and self._same_inputs(group[0], task):
                    group.append(task)
                    break
            else:
                groups.append([task])
        return [tuple(g) for g in groups if len(g) > 1]

    def _same_inputs(self, first: str, second: str) -> bool:
        rows_a, rows_b = self.task_rows[first], self.task_rows[second]
        if len(rows_a) != len(rows_b) or not rows_a:
            return False
        keys = [k for k in MODEL_COLUMNS if k != "token_labels"]
        return all(a.get(k) == b.get(k) for a, b in zip(rows_a, rows_b) for k in keys)

    def lengths(self) -> dict[str, list[int]]:
        """Token length of each row (the longer sentence of a separately encoded pair), for length bucketing."""
        return {
            task: [max(len(r["input_ids"]), len(r.get("input_ids_b", ()))) for r in rows]
            for task, rows in self.task_rows.items()
        }

    def sizes(self) -> dict[str, int]:
        return {task: len(rows) for task, rows in self.task_rows.items()}


class MultitaskBatchSampler(Sampler[list[int]]):
    """Yields this rank's list of global indices for each step of the epoch plan (see module docstring)."""

    def __init__(
        self,
        task_sizes: dict[str, int],
        batch_size: int,
        all_tasks_per_step: bool = False,
        task_sampling: str = "round_robin",
        temperature: float = 1.0,
        max_samples: dict[str, int] | None = None,
        seed: int = 42,
        num_replicas: int = 1,
        rank: int = 0,
        lengths: dict[str, Sequence[int]] | None = None,
        bucket_batches: int = 50,
        joint: Sequence[Sequence[str]] = (),
    ):
        if task_sampling not in TASK_SAMPLINGS:
            raise ValueError(f"task_sampling must be one of {', '.join(TASK_SAMPLINGS)}, got {task_sampling!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if temperature <= 0:
            raise ValueError(f"sampling temperature must be > 0, got {temperature}")
        empty = [t for t, n in task_sizes.items() if n == 0]
        if empty:
            raise ValueError(f"task(s) {', '.join(empty)} have no training rows")
        self.tasks = list(task_sizes)
        self.sizes = dict(task_sizes)
        # the plan's units: each task on its own, or a joint group under its first task (members share the rows)
        self.members: dict[str, tuple[str, ...]] = {t: (t,) for t in self.tasks}
        for group in joint:
            group = tuple(group)
            unknown = [t for t in group if t not in self.members]
            if len(group) < 2 or unknown or len({self.sizes[t] for t in group}) > 1:
                raise ValueError(f"joint group {group}: two or more distinct tasks with the same number of rows")
            for task in group[1:]:
                del self.members[task]
            self.members[group[0]] = group
        self.units = list(self.members)
        self.offsets = {}
        offset = 0
        for task in self.tasks:
            self.offsets[task] = offset
            offset += self.sizes[task]
        self.batch_size = batch_size
        self.all_tasks_per_step = all_tasks_per_step
        self.task_sampling = task_sampling
        self.temperature = temperature
        self.max_samples = {t: n for t, n in (max_samples or {}).items() if n}
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        # length bucketing: rows of similar length share a batch (less padding), batches still in random order
        self.lengths = {t: np.asarray(v) for t, v in lengths.items()} if lengths else None
        self.bucket_batches = bucket_batches

    # -- the plan --------------------------------------------------------------------------------------------

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.num_replicas

    def rows_per_epoch(self, task: str) -> int:
        return min(self.sizes[task], self.max_samples.get(task, self.sizes[task]))

    def batches_per_epoch(self, task: str) -> int:
        return math.ceil(self.rows_per_epoch(task) / self.global_batch_size)

    def __len__(self) -> int:
        counts = [self.batches_per_epoch(t) for t in self.units]
        return max(counts) if self.all_tasks_per_step else sum(counts)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_summary(self, epoch: int | None = None, steps: int | None = None) -> dict[str, dict[str, int]]:
        """Per task, what the epoch's plan really draws (all ranks together): ``{"available": rows of the task,
        "sampled": rows drawn, "batches": global batches}``; ``steps`` counts only the plan's first steps.

        ``sampled`` is below ``available`` for a task capped by ``max_train_samples`` and above it for a small
        task cycled under ``sum``/``pcgrad`` or drawn often under ``temperature`` sampling."""
        summary = {t: {"available": self.sizes[t], "sampled": 0, "batches": 0} for t in self.tasks}
        for step in self.plan(epoch)[:steps]:
            for unit, rows in step:
                for task in self.members[unit]:
                    summary[task]["sampled"] += len(rows)
                    summary[task]["batches"] += 1
        return summary

    def rows_drawn(self, epoch: int | None = None, steps: int | None = None) -> int:
        """Rows the plan draws (all ranks together), a joint group's shared rows counted once."""
        summary = self.epoch_summary(epoch, steps)
        return sum(summary[t]["sampled"] for t in self.units)

    def describe(self, epoch: int | None = None) -> str:
        """One line on the epoch's plan: per task, rows sampled of rows available and batches."""
        summary = self.epoch_summary(epoch)
        parts = []
        for task, s in summary.items():
            cap = self.max_samples.get(task)
            note = f", max_train_samples {cap:,}" if cap and cap < s["available"] else ""
            parts.append(f"{task} {s['sampled']:,} of {s['available']:,} rows in {s['batches']:,} batches{note}")
        how = "one batch of every task per step" if self.all_tasks_per_step else f"{self.task_sampling} task order"
        total = sum(summary[t]["sampled"] for t in self.units)  # a joint group's rows count once (rows_drawn)
        joint = [" + ".join(g) for g in self.members.values() if len(g) > 1]
        if joint:
            how += "; rows shared by " + ", ".join(joint)
        return (
            f"{total:,} rows and {len(self):,} steps per epoch ({how}, global batch {self.global_batch_size}): "
            + "; ".join(parts)
        )

    def _task_stream(self, task: str, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """Endless global batches of one task: a fresh shuffle (capped at max_samples) per pass."""
        size, rows, g = self.sizes[task], self.rows_per_epoch(task), self.global_batch_size
        while True:
            order = rng.permutation(size)[:rows]
            chunks = []
            for start in range(0, rows, g):
                chunk = order[start : start + g]
                if len(chunk) < g and self.num_replicas > 1:  # every rank gets a full local batch
                    chunk = np.concatenate([chunk, np.resize(order, g - len(chunk))])  # np.resize repeats a tiny task
                chunks.append(chunk)
            if self.lengths is not None and len(chunks) > 1:
                chunks = self._bucket(chunks, self.lengths[task], rng)
            yield from chunks

    def _bucket(self, chunks: list[np.ndarray], lengths: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """Within windows of ``bucket_batches`` batches, regroup rows by length; then shuffle the batches."""
        out = []
        for start in range(0, len(chunks), self.bucket_batches):
            window = chunks[start : start + self.bucket_batches]
            sizes = [len(c) for c in window]
            rows = np.concatenate(window)
            rows = rows[np.argsort(lengths[rows], kind="stable")]
            out += np.split(rows, np.cumsum(sizes)[:-1])
        rng.shuffle(out)
        return out

    def plan(self, epoch: int | None = None) -> list[list[tuple[str, np.ndarray]]]:
        """The epoch's steps; each step is a list of ``(task, global batch row numbers)`` (a joint group's first
        task stands for the group: its members take the same row numbers)."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        units = self.units  # every task, unless joint groups made some the rows of another
        streams = {  # a task's stream is seeded by its place among all tasks, joint groups or not
            t: self._task_stream(t, np.random.default_rng([self.seed, epoch, i]))
            for i, t in enumerate(self.tasks)
            if t in self.members
        }
        counts = {t: self.batches_per_epoch(t) for t in units}
        if self.all_tasks_per_step:
            return [[(t, next(streams[t])) for t in units] for _ in range(len(self))]
        if self.task_sampling == "round_robin":
            order = [t for k in range(max(counts.values())) for t in units if k < counts[t]]
        elif self.task_sampling == "proportional":
            order = [t for t in units for _ in range(counts[t])]
            rng.shuffle(order)
        else:
            weights = np.array([self.rows_per_epoch(t) ** (1.0 / self.temperature) for t in units], dtype=float)
            picks = rng.choice(len(units), size=len(self), p=weights / weights.sum())
            order = [units[i] for i in picks]
        return [[(t, next(streams[t]))] for t in order]

    def __iter__(self) -> Iterator[list[int]]:
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        for step in self.plan():
            yield [self.offsets[t] + int(i) for unit, rows in step for t in self.members[unit] for i in rows[lo:hi]]
