"""A BERT-family encoder shared by several sentence tasks, each with its own configurable head.

Every method compared in "Finetuning a multitask BERT for downstream tasks" is a head setting here:
CLS or MEAN pooling; pair tasks encoded separately ([u; v] into a classifier, the paper's baseline), by cosine
similarity (STS: ReLU(cos)·5 with MSE; QQP: cos against a threshold, MSE to the 0/1 label), or as one joined
sequence (with [SEP], optionally with segment embeddings, or with no separator); a 1-layer or 2-layer classifier;
one encoder for all tasks or one per task (the paper's "ensembling").

This file is remote code: it imports only torch, transformers and its sibling ``configuration_mtbert``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_mtbert import MultitaskBertConfig, MultitaskConfigError, task_input_format


@dataclass
class MultitaskOutput(ModelOutput):
    """Output of [`MultitaskBertModel.forward`].

    Args:
        loss: the task's loss, when ``labels`` were given (already multiplied by the task's ``loss_weight``).
        logits: ``(batch, num_labels)`` class logits for sentence classification; ``(batch,)`` for pair tasks:
            the paraphrase logit (or cosine similarity for a cosine head) and the similarity score.
        embeddings: the pooled sentence embeddings: ``(batch, hidden)``, or ``(batch, 2, hidden)`` for a pair
            encoded separately.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """``cls``: the first token's final state. ``mean``: the average over real (unmasked) tokens only."""
    if pooling == "cls":
        return hidden_states[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class ClassifierHead(nn.Module):
    """``linear``: dropout → linear (the paper's 1-layer). ``mlp``: dropout → d×d → GELU → linear (2-layer)."""

    def __init__(self, in_features: int, hidden_size: int, out_features: int, kind: str, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        if kind == "mlp":
            self.dense = nn.Linear(in_features, hidden_size)
            self.activation = nn.GELU()
            in_features = hidden_size
        else:
            self.dense = None
        self.out_proj = nn.Linear(in_features, out_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.dropout(features)
        if self.dense is not None:
            x = self.activation(self.dense(x))
        return self.out_proj(x)


def _build_encoder(config: MultitaskBertConfig) -> PreTrainedModel:
    encoder_config = config.encoder_config
    attn = getattr(config, "_attn_implementation", None)
    if attn is not None:
        encoder_config._attn_implementation = attn
    try:
        return AutoModel.from_config(encoder_config, add_pooling_layer=False)
    except TypeError:  # encoders without a pooler (e.g. DistilBERT) take no such argument
        return AutoModel.from_config(encoder_config)


class MultitaskBertModel(PreTrainedModel):
    """One encoder (or one per task) plus one head per task; ``forward(task=...)`` runs a single task's batch."""

    config_class = MultitaskBertConfig
    base_model_prefix = "mtbert"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def __init__(self, config: MultitaskBertConfig):
        super().__init__(config)
        hidden = config.hidden_size
        if config.shared_encoder:
            self.encoder = _build_encoder(config)
        else:
            self.encoders = nn.ModuleDict({task: _build_encoder(config) for task in config.tasks})
        heads = {}
        for task, spec in config.tasks.items():
            if spec["kind"] != "sentence_classification" and spec["pair_encoding"] == "cosine":
                continue  # the cosine head has no parameters
            in_features = 2 * hidden if spec.get("pair_encoding") == "separate" else hidden
            heads[task] = ClassifierHead(
                in_features, hidden, spec["num_labels"], spec["classifier"], spec["classifier_dropout"]
            )
        self.heads = nn.ModuleDict(heads)
        self.post_init()

    # -- construction from a pretrained backbone ------------------------------------------------------------

    @classmethod
    def from_encoder_pretrained(
        cls,
        encoder_name_or_path: str,
        tasks: dict[str, dict[str, Any]] | None = None,
        shared_encoder: bool = True,
        encoder_kwargs: dict[str, Any] | None = None,
        **config_kwargs,
    ) -> "MultitaskBertModel":
        """Build a multitask model whose encoder(s) start from a pretrained backbone (``bert-base-uncased``, a path…).

        ``encoder_kwargs`` override backbone settings, e.g. ``{"hidden_dropout_prob": 0.3}`` as in the paper.
        Heads are freshly initialised. Weights are loaded in float32 whatever dtype the checkpoint was saved in.
        """
        kwargs = {"dtype": torch.float32, **(encoder_kwargs or {})}
        try:
            backbone = AutoModel.from_pretrained(encoder_name_or_path, add_pooling_layer=False, **kwargs)
        except TypeError:
            backbone = AutoModel.from_pretrained(encoder_name_or_path, **kwargs)
        config = cls.config_class(
            encoder=backbone.config.to_dict(),
            tasks=tasks,
            shared_encoder=shared_encoder,
            encoder_name_or_path=str(encoder_name_or_path),
            **config_kwargs,
        )
        model = cls(config)
        state = backbone.state_dict()
        for encoder in model.task_encoders().values() if not shared_encoder else [model.encoder]:
            encoder.load_state_dict(state)
        return model

    # -- helpers ---------------------------------------------------------------------------------------------

    def task_encoders(self) -> dict[str, nn.Module]:
        """The encoder each task uses (the same module for every task when the encoder is shared)."""
        if self.config.shared_encoder:
            return {task: self.encoder for task in self.config.tasks}
        return dict(self.encoders.items())

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that more than one task trains (empty with one encoder per task)."""
        if not self.config.shared_encoder or len(self.config.tasks) < 2:
            return []
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def get_input_embeddings(self) -> nn.Module:
        return next(iter(self.task_encoders().values())).get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        for encoder in {id(e): e for e in self.task_encoders().values()}.values():
            encoder.set_input_embeddings(value)

    def _resolve_task(self, task: str | None) -> str:
        if task is None:
            if len(self.config.tasks) == 1:
                return next(iter(self.config.tasks))
            raise MultitaskConfigError(f"pass task=..., one of {', '.join(self.config.tasks)}")
        if task not in self.config.tasks:
            raise MultitaskConfigError(f"unknown task {task!r}; this model has {', '.join(self.config.tasks)}")
        return task

    # -- forward ---------------------------------------------------------------------------------------------

    def _encode(self, task: str, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        spec = self.config.tasks[task]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if not spec["use_token_type_ids"]:
            token_type_ids = None  # the paper joins pairs without segment embeddings
        outputs = self.task_encoders()[task](
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return pool(outputs.last_hidden_state, attention_mask, spec["pooling"])

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        task: str | None = None,
        return_dict: bool | None = None,
    ) -> MultitaskOutput | tuple:
        r"""Run one task's batch.

        ``input_ids`` is ``(batch, length)`` for one sentence or a joined pair, and ``(batch, 2, length)`` for a pair
        encoded separately: both sentences then go through the encoder in one call of ``2 × batch`` rows.
        """
        task = self._resolve_task(task)
        spec = self.config.tasks[task]
        separate = task_input_format(spec) == "pair_separate"
        expected = 3 if separate else 2
        if input_ids.dim() != expected:
            layout = "(batch, 2, length): the two sentences encoded separately" if separate else "(batch, length)"
            raise MultitaskConfigError(
                f"task {task!r} ({spec['kind']}, pair_encoding={spec['pair_encoding']}) takes input_ids of shape "
                f"{layout}, got {tuple(input_ids.shape)}"
            )
        if separate:
            batch, _, length = input_ids.shape
            flat = lambda t: None if t is None else t.reshape(batch * 2, length)  # noqa: E731
            pooled = self._encode(task, flat(input_ids), flat(attention_mask), flat(token_type_ids))
            embeddings = pooled.view(batch, 2, -1)
            u, v = embeddings[:, 0], embeddings[:, 1]
            if spec["pair_encoding"] == "cosine":
                cosine = F.cosine_similarity(u.float(), v.float(), dim=-1)
                logits = F.relu(cosine) * spec["score_range"][1] if spec["kind"] == "pair_regression" else cosine
            else:
                logits = self.heads[task](torch.cat([u, v], dim=-1)).squeeze(-1)
        else:
            embeddings = self._encode(task, input_ids, attention_mask, token_type_ids)
            logits = self.heads[task](embeddings)
            if spec["kind"] != "sentence_classification":
                logits = logits.squeeze(-1)

        loss = None
        if labels is not None:
            loss = self.task_loss(task, logits, labels) * spec["loss_weight"]
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return tuple(x for x in (loss, logits, embeddings) if x is not None)
        return MultitaskOutput(loss=loss, logits=logits, embeddings=embeddings)

    def task_loss(self, task: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (sentence classification), BCE-with-logits (paraphrase), MSE (cosine heads, similarity)."""
        spec = self.config.tasks[task]
        logits = logits.float()
        if spec["kind"] == "sentence_classification":
            return F.cross_entropy(logits, labels.long())
        if spec["kind"] == "pair_classification" and spec["pair_encoding"] != "cosine":
            return F.binary_cross_entropy_with_logits(logits, labels.float())
        return F.mse_loss(logits, labels.float())

    # -- predictions -----------------------------------------------------------------------------------------

    def postprocess(self, task: str, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn a task's logits into ``(predictions, scores)``.

        Sentence classification: the argmax class and its probability. Paraphrase: 0/1 and the probability (or the
        cosine, compared with ``cosine_threshold``). Similarity: the predicted score, twice.
        """
        task = self._resolve_task(task)
        spec = self.config.tasks[task]
        logits = logits.float()
        if spec["kind"] == "sentence_classification":
            probs = logits.softmax(dim=-1)
            scores, predictions = probs.max(dim=-1)
            return predictions, scores
        if spec["kind"] == "pair_classification":
            if spec["pair_encoding"] == "cosine":
                return (logits > spec["cosine_threshold"]).long(), logits
            probs = torch.sigmoid(logits)
            return (probs > 0.5).long(), probs
        return logits, logits


# Saving a model copies this file and its relative imports next to the weights and records ``auto_map``
# (AutoModel → this class), so ``AutoModel.from_pretrained(folder_or_repo, trust_remote_code=True)`` works without
# mtbert. The pipeline is imported here so that it is copied too (``custom_pipelines`` in config.json names it).
from .pipeline_mtbert import MultitaskTextPipeline  # noqa: E402,F401

MultitaskBertModel.register_for_auto_class("AutoModel")

__all__ = ["MultitaskBertModel", "MultitaskOutput", "ClassifierHead", "pool"]
