"""Static shapes: every batch padded to one of a few lengths (length buckets), so that a captured CUDA graph (or a
compiled kernel, or a cuDNN plan) built for a shape serves many batches.

Dynamic padding pads each batch to its longest row, which with length-grouped batches brings a new shape almost
every batch. Here a batch is padded up to the smallest bucket that holds it. The buckets come from the training
data (``length_buckets: auto``: the ``count`` lengths that minimise the padded tokens when each row is padded to the
smallest bucket holding it, the longest row's length last) or are given (``[32, 64, 128]``); rows longer than the
largest bucket pad to their own length (a shape of their own).

The price is padding: :func:`padding_report` counts the padded tokens of an epoch's plan under dynamic and static
padding and the trainer logs it once. The padding itself is added to an already collated batch
(:class:`StaticShapeCollator` wraps any collator), so the dynamic path is untouched when the setting is off.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..models.mtbert.configuration_mtbert import MultitaskConfigError
from ..models.mtbert.kinds_mtbert import IGNORE_INDEX

#: how many buckets ``length_buckets: auto`` chooses
AUTO_BUCKETS = 4
#: buckets are multiples of this (tensor-core friendly)
BUCKET_MULTIPLE = 8


def _round_up(length: int, multiple: int) -> int:
    return ((int(length) + multiple - 1) // multiple) * multiple


def choose_buckets(lengths: Sequence[int], count: int = AUTO_BUCKETS, multiple: int = BUCKET_MULTIPLE) -> list[int]:
    """The ``count`` bucket lengths (multiples of ``multiple``, the last holding the longest row) that minimise the
    total padded tokens when every row is padded to the smallest bucket holding it (exact, by dynamic programming
    over the distinct rounded lengths)."""
    if len(lengths) == 0:
        raise MultitaskConfigError("length_buckets: auto needs training rows to choose buckets from")
    rounded = np.array([_round_up(n, multiple) for n in lengths])
    values, counts = np.unique(rounded, return_counts=True)
    k = min(count, len(values))
    # cost[i][j]: rows of values[i..j] padded to values[j]
    prefix = np.concatenate([[0], np.cumsum(counts)])
    prefix_len = np.concatenate([[0], np.cumsum(counts * values)])

    def cost(i: int, j: int) -> int:
        return int(values[j] * (prefix[j + 1] - prefix[i]) - (prefix_len[j + 1] - prefix_len[i]))

    n = len(values)
    best = [[float("inf")] * n for _ in range(k + 1)]
    choice = [[-1] * n for _ in range(k + 1)]
    for j in range(n):
        best[1][j] = cost(0, j)
    for b in range(2, k + 1):
        for j in range(n):
            for i in range(b - 2, j):
                total = best[b - 1][i] + cost(i + 1, j)
                if total < best[b][j]:
                    best[b][j], choice[b][j] = total, i
    buckets, j, b = [], n - 1, k
    while b >= 1 and j >= 0:
        buckets.append(int(values[j]))
        j, b = choice[b][j], b - 1
    return sorted(buckets)


def parse_buckets(value: Any) -> list[int] | str:
    """``length_buckets`` as given: ``"auto"``, or lengths (a list, or ``"32,64,128"`` on the command line), checked
    (one-line errors) and sorted."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return "auto"
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    try:
        lengths = sorted({int(v) for v in items})
    except (TypeError, ValueError):
        raise MultitaskConfigError(
            f"length_buckets must be 'auto' or lengths such as [32, 64, 128], got {value!r}"
        ) from None
    if not lengths or lengths[0] < 1 or any(isinstance(v, bool) for v in items):
        raise MultitaskConfigError(
            f"length_buckets must be 'auto' or positive lengths such as [32, 64, 128], got {value!r}"
        )
    return lengths


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding ``length`` (``length`` itself above the largest)."""
    at = bisect.bisect_left(buckets, length)
    return buckets[at] if at < len(buckets) else int(length)


# keys of a padded task batch whose last dimension is the sequence, with their padding value (None: the pad id)
_SEQUENCE_KEYS = {
    "input_ids": None,
    "attention_mask": 0,
    "token_type_ids": 0,
    "pair_input_ids": None,
    "pair_attention_mask": 0,
}


def _pad_last(tensor: torch.Tensor, length: int, value) -> torch.Tensor:
    extra = length - tensor.shape[-1]
    if extra <= 0:
        return tensor
    return torch.nn.functional.pad(tensor, (0, extra), value=value)


def pad_batch(
    batch: dict[str, torch.Tensor], buckets: Sequence[int], pad_token_id: int = 0
) -> dict[str, torch.Tensor]:
    """One task's padded batch padded further to its buckets: ``input_ids`` and its masks/segments to the bucket of
    their length, a dual head's ``pair_input_ids`` to the bucket of theirs; a token task's labels with -100 and a
    token task's teacher targets with NaN, as the collator pads them."""
    out = dict(batch)
    lengths: dict[str, int] = {}
    for group in ("input_ids", "pair_input_ids"):
        if group in batch:
            lengths[group] = bucket_for(batch[group].shape[-1], buckets)
    for key, value in _SEQUENCE_KEYS.items():
        if key not in batch:
            continue
        group = "pair_input_ids" if key.startswith("pair_") else "input_ids"
        out[key] = _pad_last(batch[key], lengths[group], pad_token_id if value is None else value)
    ids = batch["input_ids"]
    labels = batch.get("labels")
    if labels is not None and labels.dim() >= 2 and labels.shape == ids.shape:  # a token task
        out["labels"] = _pad_last(labels, lengths["input_ids"], IGNORE_INDEX)
    targets = batch.get("teacher_targets")
    if targets is not None and targets.dim() == 3 and targets.shape[1] == ids.shape[-1]:
        extra = lengths["input_ids"] - targets.shape[1]
        if extra > 0:
            out["teacher_targets"] = torch.nn.functional.pad(targets, (0, 0, 0, extra), value=float("nan"))
    return out


class StaticShapeCollator:
    """Wraps a collator (``{task: batch}`` like ``MultitaskCollator``, or one task's batch like ``TaskCollator``)
    and pads what it returns to the length buckets (:func:`pad_batch`). ``shapes`` counts the distinct batch shapes
    produced (in this process: not across dataloader workers)."""

    def __init__(self, collator: Callable, buckets: Sequence[int], pad_token_id: int = 0):
        self.collator = collator
        self.buckets = sorted(int(b) for b in buckets)
        self.pad_token_id = pad_token_id
        self.shapes: set[tuple] = set()

    def __call__(self, rows):
        batch = self.collator(rows)
        if "input_ids" in batch:
            out = pad_batch(batch, self.buckets, self.pad_token_id)
            self.shapes.add(tuple(out["input_ids"].shape))
            return out
        out = {task: pad_batch(b, self.buckets, self.pad_token_id) for task, b in batch.items()}
        for task, b in out.items():
            self.shapes.add((task, *b["input_ids"].shape))
        return out


def padding_report(
    plan: Sequence[Sequence[tuple[str, np.ndarray]]],
    lengths: dict[str, Sequence[int]],
    buckets: Sequence[int],
    pad_to_multiple_of: int | None = None,
) -> dict[str, float | int]:
    """Padded-token shares of an epoch's plan (``MultitaskBatchSampler.plan()``): each batch padded to its longest
    row (``dynamic``, rounded up to ``pad_to_multiple_of``) and to its bucket (``static``); ``shapes``: distinct
    ``(task, rows, length)`` under static shapes, ``dynamic_shapes`` the same without."""
    real = dynamic = static = 0
    shapes, dynamic_shapes = set(), set()
    for step in plan:
        for task, rows in step:
            row_lengths = np.asarray(lengths[task])[np.asarray(rows, dtype=int)]
            longest = int(row_lengths.max())
            if pad_to_multiple_of:
                longest = _round_up(longest, pad_to_multiple_of)
            bucket = bucket_for(longest, buckets)
            real += int(row_lengths.sum())
            dynamic += longest * len(rows)
            static += bucket * len(rows)
            shapes.add((task, len(rows), bucket))
            dynamic_shapes.add((task, len(rows), longest))
    return {
        "real_tokens": real,
        "dynamic_padding": 1 - real / dynamic if dynamic else 0.0,
        "static_padding": 1 - real / static if static else 0.0,
        "shapes": len(shapes),
        "dynamic_shapes": len(dynamic_shapes),
    }


def describe_padding(report: dict, buckets: Sequence[int]) -> str:
    """The one line the trainer logs."""
    return (
        f"static shapes: length buckets {list(buckets)}; padding {100 * report['static_padding']:.1f}% of tokens "
        f"(dynamic padding: {100 * report['dynamic_padding']:.1f}%), {report['shapes']} batch shapes per epoch "
        f"(dynamic: {report['dynamic_shapes']})"
    )


def training_collator(collator: Callable, args, dataset, sampler, pad_token_id: int = 0, log=None) -> Callable:
    """The training loader's collator: ``collator`` itself unless ``args.static_shapes``; then wrapped to pad to
    the length buckets (``args.length_buckets``, chosen from ``dataset``'s row lengths when ``auto``), with the
    epoch's padding logged once through ``log`` (a logger)."""
    if not getattr(args, "static_shapes", False):
        return collator
    lengths = dataset.lengths()
    given = parse_buckets(getattr(args, "length_buckets", "auto"))
    if given == "auto":
        buckets = choose_buckets([n for values in lengths.values() for n in values])
    else:
        buckets = list(given)  # type: ignore[arg-type]  # lengths: parse_buckets returns a list or "auto"
    if log is not None:
        log.info(describe_padding(padding_report(sampler.plan(0), lengths, buckets), buckets))
    return StaticShapeCollator(collator, buckets, pad_token_id)


__all__ = [
    "StaticShapeCollator",
    "bucket_for",
    "choose_buckets",
    "describe_padding",
    "pad_batch",
    "padding_report",
    "parse_buckets",
    "training_collator",
]
