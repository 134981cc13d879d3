"""A BERT-family encoder shared by several sentence tasks, each with its own configurable head.

Every method compared in "Finetuning a multitask BERT for downstream tasks" is a head setting here:
CLS or MEAN pooling; pair tasks encoded separately ([u; v] into a classifier, the paper's baseline), by cosine
similarity (STS: ReLU(cos)·5 with MSE; QQP: cos against a threshold, MSE to the 0/1 label), or as one joined
sequence (with [SEP], optionally with segment embeddings, or with no separator); a 1-layer or 2-layer classifier;
one encoder for all tasks or one per task (the paper's "ensembling"). Beyond the paper, a ``dual`` pair head reads
the pair both ways at once (cross-encoder and cosine of separate embeddings) and averages the two.

This file is remote code: it imports only torch, transformers and its sibling ``configuration_mtbert``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

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


def cosent_loss(scores: torch.Tensor, labels: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """CoSENT (Su, 2022): for every pair of rows whose gold scores are ordered ``y_i > y_j``, penalise ``s_j >= s_i``:
    ``log(1 + Σ exp(scale · (s_j − s_i)))``. It trains the ranking that Pearson/Spearman measure, not the scale."""
    scores = scores.float() * scale
    labels = labels.float()
    difference = scores[None, :] - scores[:, None]  # [i, j] = s_j − s_i
    ordered = labels[:, None] > labels[None, :]  # [i, j] = y_i > y_j
    difference = difference.masked_fill(~ordered, float("-inf"))
    zero = torch.zeros(1, dtype=difference.dtype, device=difference.device)
    return torch.logsumexp(torch.cat([zero, difference.flatten()]), dim=0)


def angle_similarity(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """AnglE's (Li & Li, 2023) angle term: each embedding is read as a complex vector (first half real, second half
    imaginary); the normalised complex quotient u / v summarises how far apart their angles are, and unlike the
    cosine its gradient does not vanish where the cosine saturates. Returned as a similarity to rank with CoSENT."""
    a, b = u.float().chunk(2, dim=-1)
    c, d = v.float().chunk(2, dim=-1)
    norm_v = (c**2 + d**2).sum(-1, keepdim=True)
    real = (a * c + b * d) / norm_v
    imag = (b * c - a * d) / norm_v
    ratio = (a**2 + b**2).sum(-1, keepdim=True).sqrt() / norm_v.sqrt()
    return (torch.cat([real, imag], dim=-1) / ratio).sum(-1).abs()


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


class CosineLogit(nn.Module):
    """A paraphrase logit from a cosine: ``scale · (cos − threshold)`` with a learned scale and threshold, so that the
    cosine view of a ``dual`` head is trained with the same BCE as its cross-encoder view and the two logits add."""

    def __init__(self, threshold: float = 0.5, scale: float = 10.0):
        super().__init__()
        self.initial = (float(threshold), float(scale))
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.threshold.fill_(self.initial[0])
            self.scale.fill_(self.initial[1])

    def forward(self, cosine: torch.Tensor) -> torch.Tensor:
        return self.scale * (cosine - self.threshold)


class DualPairHead(nn.Module):
    """The heads of a ``dual`` pair task: a classifier on the [SEP]-joined pair (the cross-encoder view) and, for
    paraphrase tasks, the cosine view's :class:`CosineLogit` (a similarity task's cosine view needs no parameters)."""

    def __init__(self, hidden_size: int, spec: dict[str, Any]):
        super().__init__()
        self.cross = ClassifierHead(hidden_size, hidden_size, 1, spec["classifier"], spec["classifier_dropout"])
        self.cosine = CosineLogit(spec["cosine_threshold"]) if spec["kind"] == "pair_classification" else None


class EmbeddingNoise:
    """A forward hook on an encoder's word embeddings that adds a small perturbation to their output (SMART).

    The k-th encoder call of a pass gets the k-th noise tensor (a ``dual`` head makes two calls), so after
    ``ascend`` has moved every perturbation uphill, the next pass replays them in the same order."""

    def __init__(self, std: float):
        self.std = std
        self.noises: list[torch.Tensor] = []
        self._call = 0

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self._call == len(self.noises):
            self.noises.append((torch.randn_like(output) * self.std).requires_grad_())
        noise = self.noises[self._call]
        self._call += 1
        return output + noise

    def ascend(self, grads: Sequence[torch.Tensor | None], step_size: float) -> None:
        """One step of gradient ascent per token, in the max norm: ``noise + step · g / max|g|`` (then detached);
        the next pass starts again from the first perturbation."""
        moved = []
        for noise, grad in zip(self.noises, grads):
            if grad is not None:
                noise = noise + step_size * grad / (grad.abs().amax(dim=-1, keepdim=True) + 1e-6)
            moved.append(noise.detach())
        self.noises = moved
        self._call = 0


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
            if spec.get("pair_encoding") == "dual":
                heads[task] = DualPairHead(hidden, spec)
                continue
            in_features = hidden
            if spec.get("pair_encoding") == "separate":
                in_features = (4 if spec["pair_features"] == "full" else 2) * hidden
            heads[task] = ClassifierHead(
                in_features, hidden, spec["num_labels"], spec["classifier"], spec["classifier_dropout"]
            )
        self.heads = nn.ModuleDict(heads)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, CosineLogit):
            module.reset_parameters()

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

    def _encode(self, task: str, input_ids, attention_mask, token_type_ids, pooling: str | None = None) -> torch.Tensor:
        spec = self.config.tasks[task]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if not spec["use_token_type_ids"]:
            token_type_ids = None  # the paper joins pairs without segment embeddings
        outputs = self.task_encoders()[task](
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return pool(outputs.last_hidden_state, attention_mask, pooling or spec["pooling"])

    def _encode_separately(self, task: str, input_ids, attention_mask, token_type_ids=None, pooling=None):
        """``(batch, 2, hidden)``: the two sentences of ``(batch, 2, length)`` inputs, pooled, in one encoder call of
        2 × batch rows (``[:, 0]`` is u, ``[:, 1]`` is v)."""
        batch, _, length = input_ids.shape
        flat = lambda t: None if t is None else t.reshape(batch * 2, length)  # noqa: E731
        pooled = self._encode(task, flat(input_ids), flat(attention_mask), flat(token_type_ids), pooling)
        return pooled.view(batch, 2, -1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        task: str | None = None,
        return_dict: bool | None = None,
        pair_input_ids: torch.Tensor | None = None,
        pair_attention_mask: torch.Tensor | None = None,
    ) -> MultitaskOutput | tuple:
        r"""Run one task's batch.

        ``input_ids`` is ``(batch, length)`` for one sentence or a joined pair, and ``(batch, 2, length)`` for a pair
        encoded separately: both sentences then go through the encoder in one call of ``2 × batch`` rows. A ``dual``
        head takes the joined pair as ``input_ids`` and the two sentences on their own as ``pair_input_ids``
        (``(batch, 2, length)``, with ``pair_attention_mask``).
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
        dual = spec["pair_encoding"] == "dual"
        if dual and (pair_input_ids is None or pair_input_ids.dim() != 3 or pair_input_ids.shape[0] != input_ids.shape[0]):
            got = "none" if pair_input_ids is None else f"shape {tuple(pair_input_ids.shape)}"
            raise MultitaskConfigError(
                f"task {task!r} (pair_encoding='dual') also reads the two sentences on their own: pass pair_input_ids "
                f"of shape (batch={input_ids.shape[0]}, 2, length), got {got}"
            )
        if not dual and pair_input_ids is not None:
            raise MultitaskConfigError(
                f"task {task!r} (pair_encoding={spec['pair_encoding']!r}) takes no pair_input_ids; only 'dual' heads do"
            )
        rdrop = self.training and labels is not None and spec["rdrop_alpha"] > 0
        if rdrop:  # R-Drop: the batch twice in one call, so the two halves see different dropout masks
            twice = lambda t: None if t is None else torch.cat([t, t])  # noqa: E731
            input_ids, attention_mask, token_type_ids = map(twice, (input_ids, attention_mask, token_type_ids))
        inputs = (input_ids, attention_mask, token_type_ids, pair_input_ids, pair_attention_mask)
        logits, embeddings, pair, views = self._task_logits(task, spec, *inputs)

        loss = None
        if labels is not None:
            if rdrop:
                half = labels.shape[0]
                first, second = logits[:half], logits[half:]
                pair_first = pair_second = ()
                if pair is not None:
                    pair_first, pair_second = (pair[0][:half], pair[1][:half]), (pair[0][half:], pair[1][half:])
                loss = 0.5 * (
                    self.task_loss(task, first, labels, *pair_first) + self.task_loss(task, second, labels, *pair_second)
                ) + spec["rdrop_alpha"] * self.consistency_loss(task, first, second)
                logits, embeddings = first, embeddings[:half]
            else:
                loss = self.task_loss(task, logits, labels, *(pair or (None, None)), views=views)
                if self.training and spec["smart_alpha"] > 0 and torch.is_grad_enabled():
                    loss = loss + spec["smart_alpha"] * self.smoothness_loss(task, logits, inputs)
            loss = loss * spec["loss_weight"]
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return tuple(x for x in (loss, logits, embeddings) if x is not None)
        return MultitaskOutput(loss=loss, logits=logits, embeddings=embeddings)

    def _task_logits(
        self, task, spec, input_ids, attention_mask, token_type_ids, pair_input_ids=None, pair_attention_mask=None
    ):
        """``(logits, embeddings, (u, v) or None, (cross, cosine view) or None)`` of one task's batch."""
        if spec.get("pair_encoding") == "dual":
            return self._dual_logits(task, spec, input_ids, attention_mask, token_type_ids, pair_input_ids, pair_attention_mask)
        if task_input_format(spec) != "pair_separate":
            embeddings = self._encode(task, input_ids, attention_mask, token_type_ids)
            logits = self.heads[task](embeddings)
            if spec["kind"] != "sentence_classification":
                logits = logits.squeeze(-1)
            return logits, embeddings, None, None
        embeddings = self._encode_separately(task, input_ids, attention_mask, token_type_ids)
        u, v = embeddings[:, 0], embeddings[:, 1]
        if spec["pair_encoding"] == "cosine":
            cosine = F.cosine_similarity(u.float(), v.float(), dim=-1)
            logits = F.relu(cosine) * spec["score_range"][1] if spec["kind"] == "pair_regression" else cosine
        else:
            features = [u, v] + ([(u - v).abs(), u * v] if spec["pair_features"] == "full" else [])
            logits = self.heads[task](torch.cat(features, dim=-1)).squeeze(-1)
        return logits, embeddings, (u, v), None

    def _dual_logits(self, task, spec, input_ids, attention_mask, token_type_ids, pair_input_ids, pair_attention_mask):
        """A ``dual`` head: the cross-encoder's prediction (the joined pair, the task's pooling, a classifier) and the
        cosine view's (MEAN embeddings of each sentence: ReLU(cos)·high for a score, a learned cosine logit for a
        paraphrase), averaged. A cross-encoder and a bi-encoder err differently, so the average beats either."""
        head = self.heads[task]
        joined = self._encode(task, input_ids, attention_mask, token_type_ids)
        cross = head.cross(joined).squeeze(-1)
        separate = self._encode_separately(task, pair_input_ids, pair_attention_mask, pooling="mean")
        u, v = separate[:, 0], separate[:, 1]
        cosine = F.cosine_similarity(u.float(), v.float(), dim=-1)
        if spec["kind"] == "pair_regression":
            view = F.relu(cosine) * spec["score_range"][1]
        else:
            view = head.cosine(cosine)
        logits = 0.5 * (cross.float() + view)
        return logits, joined, (u, v), (cross, view)

    def task_loss(
        self,
        task: str,
        logits: torch.Tensor,
        labels: torch.Tensor,
        u: torch.Tensor | None = None,
        v: torch.Tensor | None = None,
        views: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Cross-entropy (sentence classification, optionally label-smoothed), BCE-with-logits (paraphrase), and for
        similarity MSE or a ranking loss (``regression_loss``: CoSENT, or AnglE = CoSENT on cosine and on angle).

        A ``dual`` head is two heads in one: the sum of its cross-encoder view's loss (as a ``concat_sep`` head) and
        its cosine view's (as a ``cosine`` head for a score; BCE on the learned cosine logit for a paraphrase)."""
        spec = self.config.tasks[task]
        if spec.get("pair_encoding") == "dual":
            if views is None:
                raise MultitaskConfigError(f"task {task!r}: a dual head's loss needs its two views (cross, cosine)")
            cross, cosine_view = views
            cosine_encoding = "cosine" if spec["kind"] == "pair_regression" else "concat_sep"
            return self._loss({**spec, "pair_encoding": "concat_sep"}, cross, labels) + self._loss(
                {**spec, "pair_encoding": cosine_encoding}, cosine_view, labels, u, v
            )
        return self._loss(spec, logits, labels, u, v)

    @staticmethod
    def _loss(spec: dict[str, Any], logits, labels, u=None, v=None) -> torch.Tensor:
        logits = logits.float()
        if spec["kind"] == "sentence_classification":
            return F.cross_entropy(logits, labels.long(), label_smoothing=spec["label_smoothing"])
        if spec["kind"] == "pair_classification" and spec["pair_encoding"] != "cosine":
            return F.binary_cross_entropy_with_logits(logits, labels.float())
        if spec["kind"] == "pair_regression" and spec["regression_loss"] != "mse":
            if spec["pair_encoding"] == "cosine":
                scores = F.cosine_similarity(u.float(), v.float(), dim=-1)  # rank the cosine itself, before ReLU
            else:
                scores = logits / spec["score_range"][1]  # a head's score, on the cosine's scale
            loss = cosent_loss(scores, labels, spec["cosent_scale"])
            if spec["regression_loss"] == "angle":
                loss = loss + cosent_loss(angle_similarity(u, v), labels, 1.0)
            return loss
        return F.mse_loss(logits, labels.float())

    def consistency_loss(self, task: str, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """R-Drop's term: how much two dropout passes disagree (symmetric KL for classes, squared error for scores)."""
        spec = self.config.tasks[task]
        first, second = first.float(), second.float()
        if spec["kind"] == "sentence_classification":
            p, q = first.log_softmax(-1), second.log_softmax(-1)
            return 0.5 * (F.kl_div(p, q, log_target=True, reduction="batchmean") + F.kl_div(q, p, log_target=True, reduction="batchmean"))
        if spec["kind"] == "pair_classification" and spec["pair_encoding"] != "cosine":
            p, q = torch.sigmoid(first), torch.sigmoid(second)
            return 0.5 * ((p - q) * (first - second)).mean()  # KL(p‖q) + KL(q‖p) = (p − q)·(logit p − logit q)
        return F.mse_loss(first, second)

    def smoothness_loss(self, task: str, clean_logits: torch.Tensor, inputs: tuple) -> torch.Tensor:
        """SMART's smoothness term: how far the predictions move when the word embeddings are nudged (noise of std
        ``smart_noise``, then one ascent step of ``smart_step_size`` in the direction that moves them most), measured
        as R-Drop's disagreement. Keeps a small training set from carving sharp decision boundaries.

        ``inputs``: the task's ``(input_ids, attention_mask, token_type_ids, pair_input_ids, pair_attention_mask)``."""
        spec = self.config.tasks[task]
        noise = EmbeddingNoise(spec["smart_noise"])
        handle = self.task_encoders()[task].get_input_embeddings().register_forward_hook(noise)
        try:
            perturbed = self._task_logits(task, spec, *inputs)[0]
            divergence = self.consistency_loss(task, perturbed, clean_logits.detach())
            grads = torch.autograd.grad(divergence, noise.noises, allow_unused=True)
            noise.ascend(grads, spec["smart_step_size"])
            perturbed = self._task_logits(task, spec, *inputs)[0]
        finally:
            handle.remove()
        return self.consistency_loss(task, perturbed, clean_logits)

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

__all__ = ["MultitaskBertModel", "MultitaskOutput", "ClassifierHead", "CosineLogit", "DualPairHead", "EmbeddingNoise", "pool", "cosent_loss", "angle_similarity"]
