"""A ``transformers`` pipeline that runs any task of a multitask BERT: ``pipe("a fine film", task="sst")``.

This file is remote code: it is copied next to every saved checkpoint (``config.json`` names it under
``custom_pipelines``), so ``pipeline(model=<repo or folder>, trust_remote_code=True)`` works without mtbert
installed. It imports only torch, transformers and its sibling ``configuration_mtbert``.

Inputs: one string, a ``{"text": ..., "text_pair": ...}`` dict (pair tasks), or a list of either. Outputs:
``{"label", "score"}`` for classification (a list of the ``top_k`` best with ``top_k=``), ``{"label", "score"}``
for paraphrase, ``{"score"}`` for similarity.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Pipeline

from .heads_mtbert import encode_texts, head_class

PIPELINE_TASK = "multitask-text-bert"

_NOT_GIVEN = object()


# ---------------------------------------------------------------------------------------------------------------
# Tokenization: the same token ids as mtbert.data.tokenize_batch (which remote code cannot import)
# ---------------------------------------------------------------------------------------------------------------


def collate_rows(rows: list[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad rows into model inputs exactly as mtbert's ``TaskCollator`` does (pairs → ``(batch, 2, length)``)."""

    def pad(seqs, value, length):
        out = torch.full((len(seqs), length), value, dtype=torch.long)
        for i, seq in enumerate(seqs):
            out[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        return out

    def pad_pair(keys):  # two sentences per row, one length: (batch, 2, length) ids and mask
        length = max(len(r[k]) for r in rows for k in keys)
        ids = [pad([r[k] for r in rows], pad_token_id, length) for k in keys]
        masks = [pad([[1] * len(r[k]) for r in rows], 0, length) for k in keys]
        return torch.stack(ids, dim=1), torch.stack(masks, dim=1)

    if "input_ids_b" in rows[0]:
        ids, mask = pad_pair(("input_ids", "input_ids_b"))
        return {"input_ids": ids, "attention_mask": mask}
    length = max(len(r["input_ids"]) for r in rows)
    batch = {
        "input_ids": pad([r["input_ids"] for r in rows], pad_token_id, length),
        "attention_mask": pad([[1] * len(r["input_ids"]) for r in rows], 0, length),
    }
    if "token_type_ids" in rows[0]:
        batch["token_type_ids"] = pad([r["token_type_ids"] for r in rows], 0, length)
    if "pair_input_ids_a" in rows[0]:  # a dual head's sentences on their own
        batch["pair_input_ids"], batch["pair_attention_mask"] = pad_pair(("pair_input_ids_a", "pair_input_ids_b"))
    return batch


# ---------------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def normalize_input(item: Any, task: str, spec: dict[str, Any], position: int | None = None) -> tuple[str, str | None]:
    """``(text, text_pair)`` for one input of ``task``, or a ``ValueError``/``TypeError`` that says what to pass."""
    where = "input" if position is None else f"input {position}"
    pair = head_class(spec).pair
    usage = (
        f"task {task!r} ({spec['kind']}) compares two sentences: pass {{'text': ..., 'text_pair': ...}}"
        if pair
        else f"task {task!r} ({spec['kind']}) reads one sentence: pass a string"
    )
    if item is None:
        raise ValueError(f"{where} is None; {usage}")
    if isinstance(item, str):
        text, text_pair = item, None
    elif isinstance(item, dict):
        unknown = sorted(set(item) - {"text", "text_pair"})
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; {usage}")
        if "text" not in item:
            raise ValueError(f"{where} has no 'text'; {usage}")
        text, text_pair = item["text"], item.get("text_pair")
    else:
        raise TypeError(f"{where} is a {type(item).__name__} ({_describe(item)}); {usage}")
    for name, value in (("text", text), ("text_pair", text_pair)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"{where}: {name} must be a string, got {type(value).__name__} ({_describe(value)})")
        if not value.strip():
            raise ValueError(f"{where}: {name} is empty; {usage}")
    if text is None:
        raise ValueError(f"{where}: text is None; {usage}")
    if pair and text_pair is None:
        raise ValueError(f"{where} is a single sentence ({_describe(text)}), but {usage}")
    if not pair and text_pair is not None:
        raise ValueError(f"{where} has a text_pair, but {usage}")
    return text, text_pair


# ---------------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------------


class MultitaskTextPipeline(Pipeline):
    """Run one task of a multitask BERT on strings or sentence pairs.

    Call it with ``task=`` (any of ``model.config.tasks``; optional when the model has one task), ``top_k=`` (the
    ``k`` most likely labels of a classification task, ``None`` for all), ``max_length=`` (truncation; default
    ``config.max_seq_length`` when the checkpoint records it, else the encoder's position limit) and
    ``batch_size=``. Inputs are tokenized exactly as in training and padded like mtbert's collator.
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.tokenizer is None:
            raise ValueError(f"{type(self).__name__} needs a tokenizer (pass tokenizer=...)")
        if not hasattr(self.model.config, "tasks") or not hasattr(self.model, "postprocess"):
            raise ValueError(f"{type(self).__name__} runs multitask BERT models (model_type 'mtbert')")

    # -- parameters ------------------------------------------------------------------------------------------

    def _resolve_task(self, task: str | None) -> str:
        tasks = self.model.config.tasks
        if task is None:
            if len(tasks) == 1:
                return next(iter(tasks))
            raise ValueError(f"pass task=..., one of {', '.join(tasks)} (this model has {len(tasks)} tasks)")
        if not isinstance(task, str) or task not in tasks:
            raise ValueError(f"unknown task {task!r}; this model has {', '.join(tasks)}")
        return task

    def _sanitize_parameters(self, task=None, top_k=_NOT_GIVEN, max_length=None, **unknown):
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown argument(s) {', '.join(sorted(unknown))}; "
                "it takes task, top_k, max_length, batch_size"
            )
        preprocess, forward, postprocess = {}, {}, {}
        if task is not None:
            task = self._resolve_task(task)
            preprocess["task"] = forward["task"] = postprocess["task"] = task
        if top_k is not _NOT_GIVEN:
            if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
                raise ValueError(f"top_k must be a positive integer or None (all labels), got {top_k!r}")
            postprocess["top_k"] = top_k
        if max_length is not None:
            if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 4:
                raise ValueError(f"max_length must be an integer >= 4, got {max_length!r}")
            preprocess["max_length"] = max_length
        return preprocess, forward, postprocess

    def default_max_length(self) -> int:
        """``config.max_seq_length`` when recorded, else the smaller of the tokenizer's and the encoder's limits."""
        recorded = getattr(self.model.config, "max_seq_length", None)
        if recorded:
            return int(recorded)
        limits = [self.model.config.max_positions]
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 100_000:
            limits.append(tokenizer_limit)
        return min(limits)

    # -- calling ---------------------------------------------------------------------------------------------

    def __call__(self, inputs, *args, **kwargs):
        """``inputs``: a string, a ``{"text", "text_pair"}`` dict, or a list (or tuple) of them."""
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []
        task = kwargs.get("task", self._preprocess_params.get("task"))
        task = self._resolve_task(task)
        spec = self.model.config.tasks[task]
        if isinstance(inputs, list):
            for position, item in enumerate(inputs):
                normalize_input(item, task, spec, position)
        elif isinstance(inputs, (str, dict)) or inputs is None:
            normalize_input(inputs, task, spec)
        if "top_k" in kwargs or "top_k" in self._postprocess_params:
            self._check_top_k(task, spec)
        kwargs["task"] = task
        return super().__call__(inputs, *args, **kwargs)

    def _check_top_k(self, task: str, spec: dict[str, Any]) -> None:
        head = self.model.task_head(task)
        if spec["label_names"] is None:
            raise ValueError(f"top_k applies to classification tasks; {task!r} predicts a score")
        if not head.objective.has_probabilities:
            raise ValueError(
                f"top_k needs class probabilities; task {task!r} compares a cosine similarity with "
                f"cosine_threshold={spec['cosine_threshold']}"
            )

    def preprocess(self, inputs, task: str | None = None, max_length: int | None = None) -> dict[str, Any]:
        task = self._resolve_task(task)
        spec = self.model.config.tasks[task]
        text, text_pair = normalize_input(inputs, task, spec)
        pairs = None if text_pair is None else [text_pair]
        encoded = encode_texts(self.tokenizer, spec, [text], pairs, max_length or self.default_max_length())
        # One row of plain token-id lists: the default collate hands a batch of them to ``_forward`` as a list,
        # which pads them the way mtbert's collator does.
        return {"row": {key: values[0] for key, values in encoded.items()}}

    def _forward(self, model_inputs: dict[str, Any], task: str | None = None) -> dict[str, torch.Tensor]:
        task = self._resolve_task(task)
        rows = model_inputs["row"]
        rows = [rows] if isinstance(rows, dict) else list(rows)
        pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = collate_rows(rows, pad_token_id)
        batch = {key: value.to(self.device) for key, value in batch.items()}
        logits = self.model(task=task, **batch).logits
        predictions, scores = self.model.postprocess(task, logits)
        return {"logits": logits.float(), "predictions": predictions, "scores": scores.float()}

    def postprocess(self, model_outputs: dict[str, torch.Tensor], task: str | None = None, top_k=_NOT_GIVEN):
        task = self._resolve_task(task)
        spec = self.model.config.tasks[task]
        labels = spec["label_names"]
        score = float(model_outputs["scores"][0].item())
        if top_k is not _NOT_GIVEN:
            self._check_top_k(task, spec)
        if labels is None:  # a score
            return {"score": score}
        prediction = int(model_outputs["predictions"][0].item())
        objective = self.model.task_head(task).objective
        if not objective.has_probabilities:  # a cosine head: the score is the cosine similarity itself
            return {"label": labels[prediction], "score": score}
        probs = objective.probabilities(model_outputs["logits"][:1])[0]
        if top_k is _NOT_GIVEN:
            return {"label": labels[prediction], "score": float(probs[prediction])}
        k = len(labels) if top_k is None else min(top_k, len(labels))
        values, indices = probs.topk(k)
        return [{"label": labels[i], "score": float(v)} for v, i in zip(values.tolist(), indices.tolist())]


__all__ = ["MultitaskTextPipeline", "PIPELINE_TASK", "encode_texts", "collate_rows", "normalize_input"]
