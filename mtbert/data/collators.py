"""Dynamic padding for one task's rows: one sequence, a joined pair, or a pair encoded separately.

Rows carry only token ids (``input_ids``, ``input_ids_b`` for a separately encoded pair, ``token_type_ids`` for a
pair joined with [SEP], ``pair_input_ids_a/_b`` for the sentences of a ``dual`` head); attention masks are built
here, so nothing padded is ever stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..models.mtbert.kinds_mtbert import IGNORE_INDEX

# The columns of a tokenized row that batches are built from: token ids, and a token task's labels aligned to its
# sub-tokens (everything else, such as the text or a token task's word-level labels, stays out of batches).
MODEL_COLUMNS = ("input_ids", "input_ids_b", "token_type_ids", "pair_input_ids_a", "pair_input_ids_b", "token_labels")
# A training row's distillation targets, added by ``mtbert.training.distillation`` (kept in training batches only).
TEACHER_COLUMN = "teacher_targets"
# The keys of a padded batch that hold token ids for an encoder pass (a dual head makes two passes).
ENCODER_INPUT_KEYS = ("input_ids", "pair_input_ids")


def pad_sequences(sequences: Sequence[Sequence[int]], pad_value: int, length: int) -> torch.Tensor:
    """A ``(len(sequences), length)`` LongTensor, right-padded with ``pad_value``."""
    out = torch.full((len(sequences), length), pad_value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def _round_up(length: int, multiple: int | None) -> int:
    if not multiple:
        return length
    return ((length + multiple - 1) // multiple) * multiple


class TaskCollator:
    """Pad a list of one task's rows into model inputs (+ ``labels`` when the rows have them)."""

    def __init__(self, pad_token_id: int = 0, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def _pad_pair(self, rows: Sequence[dict[str, Any]], keys: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Two sentences per row, padded to one length: ``(batch, 2, length)`` ids and attention mask."""
        length = _round_up(max(len(r[k]) for r in rows for k in keys), self.pad_to_multiple_of)
        ids = [pad_sequences([r[k] for r in rows], self.pad_token_id, length) for k in keys]
        masks = [pad_sequences([[1] * len(r[k]) for r in rows], 0, length) for k in keys]
        return torch.stack(ids, dim=1), torch.stack(masks, dim=1)

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("cannot collate an empty batch")
        first = rows[0]
        batch: dict[str, torch.Tensor] = {}
        if "input_ids_b" in first:
            batch["input_ids"], batch["attention_mask"] = self._pad_pair(rows, ("input_ids", "input_ids_b"))
        else:
            length = _round_up(max(len(r["input_ids"]) for r in rows), self.pad_to_multiple_of)
            batch["input_ids"] = pad_sequences([r["input_ids"] for r in rows], self.pad_token_id, length)
            batch["attention_mask"] = pad_sequences([[1] * len(r["input_ids"]) for r in rows], 0, length)
            if "token_type_ids" in first:
                batch["token_type_ids"] = pad_sequences([r["token_type_ids"] for r in rows], 0, length)
            if "pair_input_ids_a" in first:  # a dual head also reads the two sentences on their own
                batch["pair_input_ids"], batch["pair_attention_mask"] = self._pad_pair(
                    rows, ("pair_input_ids_a", "pair_input_ids_b")
                )
        if "token_labels" in first:  # a token task: one label per sub-token, -100 where none
            length = batch["input_ids"].shape[-1]
            batch["labels"] = pad_sequences([r["token_labels"] for r in rows], IGNORE_INDEX, length)
        elif "label" in first and first["label"] is not None:
            labels = [r["label"] for r in rows]
            dtype = torch.float32 if isinstance(labels[0], float) else torch.long
            batch["labels"] = torch.tensor(labels, dtype=dtype)
        if first.get("teacher_targets") is not None:  # knowledge distillation (mtbert.training.distillation)
            batch["teacher_targets"] = self._teacher_targets(rows, batch["input_ids"].shape[-1])
        return batch

    @staticmethod
    def _teacher_targets(rows: Sequence[dict[str, Any]], length: int) -> torch.Tensor:
        """A teacher's per-row targets: ``(batch,)`` scores, ``(batch, classes)`` log-probabilities, or for a token
        task ``(batch, length, tags)``, NaN on the sub-tokens without a word's target (padding included)."""
        targets = [r["teacher_targets"] for r in rows]
        if not isinstance(targets[0], list) or not targets[0] or not isinstance(targets[0][0], list):
            return torch.tensor(targets, dtype=torch.float32)
        width = len(targets[0][0])
        out = torch.full((len(rows), length, width), float("nan"), dtype=torch.float32)
        for row, values in enumerate(targets):
            out[row, : len(values)] = torch.tensor(values, dtype=torch.float32).reshape(-1, width)
        return out


class MultitaskCollator:
    """Collate ``(task, row)`` pairs into ``{task: padded batch}``: one entry per task present in the batch."""

    def __init__(self, pad_token_id: int = 0, pad_to_multiple_of: int | None = None):
        self.task_collator = TaskCollator(pad_token_id, pad_to_multiple_of)

    def __call__(self, items: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, torch.Tensor]]:
        by_task: dict[str, list] = {}
        for task, row in items:
            by_task.setdefault(task, []).append(row)
        return {task: self.task_collator(rows) for task, rows in by_task.items()}
