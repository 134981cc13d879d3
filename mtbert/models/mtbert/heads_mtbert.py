"""Task heads: one class per head kind, each owning everything that differs between heads.

A head knows the input layout it needs (how a task's text is tokenized, see :meth:`TaskHead.encode_texts`), how its
logits come from the encoder, its loss, how two of its predictions disagree (R-Drop, SMART), how logits become
``(prediction, score)``, how ensemble members combine, and the sentence that describes it on the model card.
What a task *predicts* (classes, a paraphrase bit, a score) is a small :class:`Objective` that the heads share.

Heads are chosen by name from :data:`HEADS` (``sentence``, ``separate``, ``cosine``, ``concat_sep``,
``concat_nosep``, ``dual``): ``head_name(spec)`` reads a task's settings. Nothing outside this module and the
configuration branches on a head's or a task kind's name.

This file is remote code: it imports only torch, transformers and its sibling ``configuration_mtbert``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_mtbert import MultitaskConfigError
from .kinds_mtbert import IGNORE_INDEX, get_kind

# ---------------------------------------------------------------------------------------------------------------
# Losses that rank
# ---------------------------------------------------------------------------------------------------------------


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


def symmetric_kl(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """R-Drop's disagreement of two class distributions given as logits: ``(KL(p‖q) + KL(q‖p)) / 2``."""
    p, q = first.float().log_softmax(-1), second.float().log_softmax(-1)
    return 0.5 * (
        F.kl_div(p, q, log_target=True, reduction="batchmean") + F.kl_div(q, p, log_target=True, reduction="batchmean")
    )


def tempered_kl(logits: torch.Tensor, target_log_probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hinton et al.'s distillation term: ``T² · KL(softmax(t / T) ‖ softmax(s / T))`` per row, averaged over rows;
    ``t`` are the teacher's log-probabilities (log-probabilities are logits up to a constant)."""
    student = F.log_softmax(logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(target_log_probs.float() / temperature, dim=-1)
    return temperature**2 * F.kl_div(student, teacher, log_target=True, reduction="batchmean")


# ---------------------------------------------------------------------------------------------------------------
# Objectives: what a task predicts
# ---------------------------------------------------------------------------------------------------------------


class Objective:
    """What a task predicts: its output width, loss, disagreement, ``(prediction, score)``, ensemble rule."""

    num_outputs = 1
    #: whether :meth:`probabilities` gives a distribution over the task's labels (``top_k`` needs one)
    has_probabilities = False
    #: what its head is called in messages
    noun = "a classifier head"

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, ranked: torch.Tensor | None = None, u=None, v=None):
        raise NotImplementedError

    def divergence(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(first.float(), second.float())

    def soft_loss(self, logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """The distillation loss against a teacher's ``target`` (``mtbert.training.distillation``): log-probabilities
        over the classes (per token for tags), or a score."""
        raise NotImplementedError

    def postprocess(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor | None:
        """``(batch, num_labels)`` class probabilities, or ``None`` when the output is not a distribution."""
        return None

    def combine(self, member_logits: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(predictions, scores)`` of an ensemble: the members' probabilities (or scores) averaged."""
        raise NotImplementedError

    def describe(self) -> tuple[str, str]:
        """``(what the head outputs, its loss)`` in words, for the model card."""
        raise NotImplementedError


class Classes(Objective):
    """``num_labels`` classes from as many logits: cross-entropy (optionally label-smoothed), argmax."""

    has_probabilities = True

    def __init__(self, spec):
        super().__init__(spec)
        self.num_outputs = int(spec["num_labels"])

    def loss(self, logits, labels, ranked=None, u=None, v=None):
        return F.cross_entropy(logits.float(), labels.long(), label_smoothing=self.spec["label_smoothing"])

    def divergence(self, first, second):
        return symmetric_kl(first, second)

    def soft_loss(self, logits, target, temperature=1.0):
        return tempered_kl(logits, target, temperature)

    def probabilities(self, logits):
        return logits.float().softmax(dim=-1)

    def postprocess(self, logits):
        scores, predictions = self.probabilities(logits).max(dim=-1)
        return predictions, scores

    def combine(self, member_logits):
        scores, predictions = torch.stack([self.probabilities(x) for x in member_logits]).mean(dim=0).max(dim=-1)
        return predictions, scores

    def describe(self):
        return f"{self.num_outputs} class logits", "cross-entropy"


class Binary(Objective):
    """Two classes from one logit: binary cross-entropy, a sigmoid above 0.5 (a pair task with two labels)."""

    has_probabilities = True

    def loss(self, logits, labels, ranked=None, u=None, v=None):
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())

    def divergence(self, first, second):
        first, second = first.float(), second.float()
        p, q = torch.sigmoid(first), torch.sigmoid(second)
        return 0.5 * ((p - q) * (first - second)).mean()  # KL(p‖q) + KL(q‖p) = (p − q)·(logit p − logit q)

    def soft_loss(self, logits, target, temperature=1.0):
        # one logit is the two-class logits (0, logit): softmax((0, x)) = (1 − σ(x), σ(x))
        logits = logits.float()
        return tempered_kl(torch.stack([torch.zeros_like(logits), logits], dim=-1), target, temperature)

    def probabilities(self, logits):
        positive = torch.sigmoid(logits.float())
        return torch.stack([1 - positive, positive], dim=-1)

    def postprocess(self, logits):
        probs = torch.sigmoid(logits.float())
        return (probs > 0.5).long(), probs

    def combine(self, member_logits):
        scores = torch.stack([torch.sigmoid(x.float()) for x in member_logits]).mean(dim=0)
        return (scores > 0.5).long(), scores

    def describe(self):
        return "the logit of the second label", "binary cross-entropy"


class CosineThreshold(Objective):
    """Two classes from a cosine similarity: the paper's cosine paraphrase head, MSE between the cosine and the 0/1
    label, a paraphrase when the cosine exceeds ``cosine_threshold``. The score is the cosine, not a probability."""

    noun = "a cosine head"

    def loss(self, logits, labels, ranked=None, u=None, v=None):
        return F.mse_loss(logits.float(), labels.float())

    def soft_loss(self, logits, target, temperature=1.0):
        # the cosine regresses to the teacher's paraphrase probability, as it regresses to the 0/1 label
        return F.mse_loss(logits.float(), target.float()[..., 1].exp())

    def postprocess(self, logits):
        logits = logits.float()
        return (logits > self.spec["cosine_threshold"]).long(), logits

    def combine(self, member_logits):
        scores = torch.stack([x.float() for x in member_logits]).mean(dim=0)
        return (scores > self.spec["cosine_threshold"]).long(), scores

    def describe(self):
        return (
            f"a paraphrase when cos(u, v) > {self.spec['cosine_threshold']:g}",
            "MSE between the cosine and the 0/1 label",
        )


class Score(Objective):
    """A score in ``score_range``: MSE, or a ranking loss (``regression_loss``: CoSENT, or AnglE = CoSENT on the
    cosine and on the angle). ``ranked`` is what CoSENT ranks (a head's score on the cosine's scale)."""

    noun = "a score head"

    def loss(self, logits, labels, ranked=None, u=None, v=None):
        choice = self.spec["regression_loss"]
        if choice == "mse":
            return F.mse_loss(logits.float(), labels.float())
        if ranked is None:
            ranked = logits.float() / self.spec["score_range"][1]
        loss = cosent_loss(ranked, labels, self.spec["cosent_scale"])
        if choice == "angle":
            loss = loss + cosent_loss(angle_similarity(u, v), labels, 1.0)
        return loss

    def soft_loss(self, logits, target, temperature=1.0):
        return F.mse_loss(logits.float(), target.float())  # the teacher's score; a temperature has no meaning here

    def postprocess(self, logits):
        logits = logits.float()
        return logits, logits

    def combine(self, member_logits):
        scores = torch.stack([x.float() for x in member_logits]).mean(dim=0)
        return scores, scores

    def describe(self):
        loss = {
            "mse": "MSE to the gold score",
            "cosent": "CoSENT ranking loss",
            "angle": "AnglE (CoSENT on cosine and angle)",
        }
        return "the score", loss[self.spec["regression_loss"]]


class Tags(Classes):
    """A class per token: cross-entropy over the labelled tokens (``-100`` elsewhere: padding, special tokens, the
    sub-tokens after a word's first), argmax per token."""

    noun = "a token classifier head"

    def loss(self, logits, labels, ranked=None, u=None, v=None):
        return F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            labels.long().reshape(-1),
            ignore_index=IGNORE_INDEX,
            label_smoothing=self.spec["label_smoothing"],
        )

    def divergence(self, first, second):
        return symmetric_kl(first.reshape(-1, first.shape[-1]), second.reshape(-1, second.shape[-1]))

    def soft_loss(self, logits, target, temperature=1.0):
        # per token, over the sub-tokens that carry a word's teacher distribution (NaN rows elsewhere)
        logits, target = logits.reshape(-1, logits.shape[-1]), target.reshape(-1, target.shape[-1])
        keep = ~torch.isnan(target).any(dim=-1)
        if not keep.any():
            return logits.float().sum() * 0.0
        return tempered_kl(logits[keep], target[keep], temperature)

    def describe(self):
        return f"{self.num_outputs} tag logits per token", "cross-entropy over each word's first sub-token"


def make_objective(spec: dict[str, Any]) -> Objective:
    """Classes for classification (one logit, :class:`Binary`, for a two-label pair task), a score for regression,
    a class per token for tags."""
    kind = get_kind(spec)
    if kind.target == "tags":
        return Tags(spec)
    if kind.is_regression:
        return Score(spec)
    if kind.is_pair and spec["num_labels"] == 2:
        return Binary(spec)
    return Classes(spec)


# ---------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class HeadOutput:
    """What a head computes for a batch: ``logits`` (``(batch, num_labels)`` or ``(batch,)``), the pooled
    ``embeddings``, and for pairs read separately the two sentence embeddings ``u``, ``v``; a dual head also gives its
    two ``views`` (cross-encoder, cosine) that its loss trains one by one."""

    logits: torch.Tensor
    embeddings: torch.Tensor
    u: torch.Tensor | None = None
    v: torch.Tensor | None = None
    views: tuple[torch.Tensor, torch.Tensor] | None = None

    def halves(self, size: int) -> tuple[HeadOutput, HeadOutput]:
        """The first and second ``size`` rows (R-Drop runs the batch twice in one call)."""

        def cut(value, part):
            if value is None:
                return None
            if isinstance(value, tuple):
                return tuple(cut(x, part) for x in value)
            return value[:size] if part == 0 else value[size:]

        first, second = (
            HeadOutput(**{f.name: cut(getattr(self, f.name), part) for f in fields(self)}) for part in (0, 1)
        )
        return first, second

    def rows(self, keep: torch.Tensor) -> HeadOutput:
        """The rows where the boolean ``keep`` is true (the labelled rows of a batch)."""

        def take(value):
            if value is None:
                return None
            return tuple(take(x) for x in value) if isinstance(value, tuple) else value[keep]

        return HeadOutput(**{f.name: take(getattr(self, f.name)) for f in fields(self)})


def labelled_rows(labels: torch.Tensor) -> torch.Tensor | None:
    """Which rows of a batch carry a label: not ``-100`` (classes), not NaN (scores), at least one tag that is not
    ``-100`` (token tasks); ``None`` when every row does. A row shared by several tasks may be labelled for some only.
    """
    has = ~torch.isnan(labels) if labels.is_floating_point() else labels != IGNORE_INDEX
    if has.dim() > 1:
        has = has.reshape(has.shape[0], -1).any(dim=-1)
    return None if bool(has.all()) else has


class ClassifierHead(nn.Module):
    """``linear``: dropout → linear (the paper's 1-layer). ``mlp``: dropout → d×d → GELU → linear (2-layer)."""

    def __init__(self, in_features: int, hidden_size: int, out_features: int, kind: str, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense: nn.Linear | None
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


def cosine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(u.float(), v.float(), dim=-1)


#: ``encode(input_ids, attention_mask, token_type_ids=None, pooling=None) -> (batch, hidden)`` pooled states; the
#: model hands each head its task's encoder this way.
Encode = Callable[..., torch.Tensor]


def tokenize_alone(tokenizer, sentences: list[str], max_length: int) -> list[list[int]]:
    return tokenizer(sentences, truncation=True, max_length=max_length)["input_ids"]


def join_without_separator(tokenizer, first: list[int], second: list[int], max_length: int) -> list[int]:
    """The pair as one sequence with no separator between the sentences (``[CLS] a b [SEP]`` for BERT,
    ``<s> a b </s>`` for RoBERTa/MPNet): the tokenizer's single-sequence special tokens around ``a + b``,
    truncated longest-first."""
    before, after = single_sequence_special_tokens(tokenizer)
    budget = max_length - len(before) - len(after)
    first, second = list(first), list(second)
    while len(first) + len(second) > budget:
        (first if len(first) >= len(second) else second).pop()
    return [*before, *first, *second, *after]


def single_sequence_special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after one sequence (``[CLS]``/``[SEP]``, ``<s>``/``</s>``),
    read from its own encoding of one word: transformers 5 tokenizers have no ``build_inputs_with_special_tokens``."""
    encoded = tokenizer("a", add_special_tokens=True, return_special_tokens_mask=True)
    ids, special = encoded["input_ids"], encoded["special_tokens_mask"]
    if 0 not in special:
        raise ValueError(f"{type(tokenizer).__name__} encodes 'a' as special tokens only; cannot join a pair")
    start, end = special.index(0), len(special) - special[::-1].index(0)
    return ids[:start], ids[end:]


def tokenize_joined(tokenizer, texts, text_pairs, max_length: int) -> dict[str, list[list[int]]]:
    """The pair joined the tokenizer's own way (``[CLS] a [SEP] b [SEP]``, ``<s> a </s></s> b </s>``), with segment
    ids (used only where the task asks and the backbone has segment embeddings)."""
    enc = tokenizer(texts, text_pairs, truncation="longest_first", max_length=max_length, return_token_type_ids=True)
    return {"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"]}


# ---------------------------------------------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------------------------------------------


class TaskHead(nn.Module):
    """One task's head. Subclasses set :attr:`layout` and implement :meth:`encode_texts`, :meth:`forward` and
    :meth:`describe_input`; :meth:`loss` and the rest follow the task's :class:`Objective`."""

    #: the input layout, which also names its tokenization: ``single`` (one sequence), ``pair`` (two sequences as
    #: ``(batch, 2, length)``), ``joined`` / ``joined_nosep`` (the pair as one sequence), ``dual`` (both)``
    layout = "single"
    #: whether the head reads a sentence pair
    pair = True
    #: what the tasks this head serves read (a kind's ``input``: ``text``, ``pair`` or ``tokens``), so any kind of
    #: that input, registered or not yet written, finds its head
    inputs = ("pair",)
    #: whether the head has trainable parameters of its own (the cosine head has none)
    has_parameters = True

    def __init__(self, spec: dict[str, Any], hidden_size: int):
        super().__init__()
        self.spec = spec
        self.objective = make_objective(spec)

    # -- settings -------------------------------------------------------------------------------------------

    @classmethod
    def check_spec(cls, where: str, spec: dict[str, Any]) -> None:
        """Raise :class:`MultitaskConfigError` when the task's settings do not fit this head."""
        if get_kind(spec).input not in cls.inputs:
            what = "a sentence pair" if cls.pair else "one sentence"
            raise MultitaskConfigError(
                f"{where}: the {head_name(spec)!r} head reads {what}, so it cannot serve kind {spec['kind']!r}"
            )
        if spec["pair_features"] != "concat":
            raise MultitaskConfigError(
                f"{where}: pair_features={spec['pair_features']!r} combines two separate embeddings, so it needs "
                f"pair_encoding 'separate' (got {spec['pair_encoding']!r})"
            )
        if spec["regression_loss"] == "angle":
            raise MultitaskConfigError(
                f"{where}: regression_loss 'angle' compares two sentence embeddings, so it needs pair_encoding "
                f"'cosine' or 'separate' (got {spec['pair_encoding']!r}); 'cosent' works with every head"
            )

    # -- inputs ---------------------------------------------------------------------------------------------

    @classmethod
    def encode_texts(cls, tokenizer, texts, text_pairs, max_length: int) -> dict[str, list[list[int]]]:
        """Token ids in this head's layout (``input_ids``; ``input_ids_b`` for a pair read separately;
        ``token_type_ids`` for a joined pair; ``pair_input_ids_a/_b`` for a dual head's sentences)."""
        raise NotImplementedError

    def check_inputs(self, task: str, input_ids: torch.Tensor, pair_input_ids: torch.Tensor | None) -> None:
        expected = 3 if self.layout == "pair" else 2
        if input_ids.dim() != expected:
            layout = "(batch, 2, length): the two sentences encoded separately" if expected == 3 else "(batch, length)"
            raise MultitaskConfigError(
                f"task {task!r} ({self.spec['kind']}, {head_name(self.spec)} head) takes input_ids of shape "
                f"{layout}, got {tuple(input_ids.shape)}"
            )
        if pair_input_ids is not None:
            raise MultitaskConfigError(
                f"task {task!r} ({head_name(self.spec)} head) takes no pair_input_ids; only 'dual' heads do"
            )

    # -- computation ----------------------------------------------------------------------------------------

    def forward(self, encode: Encode, input_ids, attention_mask, token_type_ids=None, pair_input_ids=None,
                pair_attention_mask=None) -> HeadOutput:  # fmt: skip
        raise NotImplementedError

    def loss(self, output: HeadOutput, labels: torch.Tensor) -> torch.Tensor:
        return self.objective.loss(output.logits, labels, None, output.u, output.v)

    def soft_loss(self, output: HeadOutput, target: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """The distillation loss against a teacher's target for this batch (see :meth:`Objective.soft_loss`)."""
        return self.objective.soft_loss(output.logits, target, temperature)

    def divergence(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """How much two predictions of the same batch disagree (R-Drop's and SMART's term)."""
        return self.objective.divergence(first, second)

    def postprocess(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(predictions, scores)``: the class and its probability; 0/1 and the paraphrase probability (or the
        cosine); the similarity score twice."""
        return self.objective.postprocess(logits)

    def combine(self, member_logits: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.objective.combine(member_logits)

    def empty_logits(self) -> torch.Tensor:
        width = self.objective.num_outputs
        return torch.empty((0, width) if width > 1 else (0,), dtype=torch.float32)

    # -- words ----------------------------------------------------------------------------------------------

    @classmethod
    def describe_input(cls, spec: dict[str, Any]) -> str:
        raise NotImplementedError

    @classmethod
    def describe(cls, spec: dict[str, Any]) -> str:
        """One sentence for the model card: the input, the head, its output and its loss."""
        raise NotImplementedError


def _classifier_text(spec: dict[str, Any]) -> str:
    return f"a {'1-layer linear' if spec['classifier'] == 'linear' else '2-layer MLP'} classifier"


def _pooled(spec: dict[str, Any]) -> str:
    return f"{spec['pooling'].upper()}-pooled"


def _classifier(spec: dict[str, Any], in_features: int, hidden_size: int, out_features: int) -> ClassifierHead:
    return ClassifierHead(in_features, hidden_size, out_features, spec["classifier"], spec["classifier_dropout"])


class _ClassifierLayers:
    """Heads whose module *is* a classifier keep its parameter names (``heads.<task>.out_proj.weight``...), so
    checkpoints of earlier versions load unchanged."""

    def _add_classifier(self, spec, in_features: int, hidden_size: int, out_features: int) -> None:
        layers = _classifier(spec, in_features, hidden_size, out_features)
        self.dropout, self.dense, self.out_proj = layers.dropout, layers.dense, layers.out_proj
        if layers.dense is not None:
            self.activation = layers.activation

    objective: Any

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return ClassifierHead.forward(self, features)  # type: ignore[arg-type]

    def squeeze(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.squeeze(-1) if self.objective.num_outputs == 1 else logits


class SentenceHead(_ClassifierLayers, TaskHead):
    """One sentence, pooled, into a classifier: class logits (``sentence_classification``) or a score
    (``sentence_regression``)."""

    layout = "single"
    pair = False
    inputs = ("text",)

    def __init__(self, spec, hidden_size):
        super().__init__(spec, hidden_size)
        self._add_classifier(spec, hidden_size, hidden_size, self.objective.num_outputs)

    @classmethod
    def encode_texts(cls, tokenizer, texts, text_pairs, max_length):
        return {"input_ids": tokenize_alone(tokenizer, texts, max_length)}

    def forward(self, encode, input_ids, attention_mask, token_type_ids=None, pair_input_ids=None,
                pair_attention_mask=None):  # fmt: skip
        embeddings = encode(input_ids, attention_mask)
        return HeadOutput(self.squeeze(self.classify(embeddings)), embeddings)

    @classmethod
    def describe_input(cls, spec):
        return "one sentence"

    @classmethod
    def describe(cls, spec):
        output, loss = objective(spec).describe()
        return f"the sentence, {_pooled(spec)}, into {_classifier_text(spec)} giving {output}; {loss}."


class _SeparatePair(TaskHead):
    """Both sentences through the encoder on their own, in one call of ``2 × batch`` rows."""

    layout = "pair"

    @classmethod
    def encode_texts(cls, tokenizer, texts, text_pairs, max_length):
        return {
            "input_ids": tokenize_alone(tokenizer, texts, max_length),
            "input_ids_b": tokenize_alone(tokenizer, text_pairs, max_length),
        }

    @staticmethod
    def encode_pair(encode: Encode, input_ids, attention_mask, token_type_ids=None, pooling=None) -> torch.Tensor:
        """``(batch, 2, hidden)``: the two sentences of ``(batch, 2, length)`` inputs, pooled (``[:, 0]`` is u)."""
        batch, _, length = input_ids.shape
        flat = lambda t: None if t is None else t.reshape(batch * 2, length)  # noqa: E731
        return encode(flat(input_ids), flat(attention_mask), flat(token_type_ids), pooling).view(batch, 2, -1)

    @classmethod
    def describe_input(cls, spec):
        return "pair, encoded separately"


class SeparatePairHead(_ClassifierLayers, _SeparatePair):
    """The paper's baseline: ``[u; v]`` (or ``[u; v; |u−v|; u∗v]`` with ``pair_features: full``) into a classifier."""

    def __init__(self, spec, hidden_size):
        super().__init__(spec, hidden_size)
        width = (4 if spec["pair_features"] == "full" else 2) * hidden_size
        self._add_classifier(spec, width, hidden_size, self.objective.num_outputs)

    @classmethod
    def check_spec(cls, where, spec):
        super().check_spec(where, {**spec, "pair_features": "concat", "regression_loss": "mse"})

    def forward(self, encode, input_ids, attention_mask, token_type_ids=None, pair_input_ids=None,
                pair_attention_mask=None):  # fmt: skip
        embeddings = self.encode_pair(encode, input_ids, attention_mask, token_type_ids)
        u, v = embeddings[:, 0], embeddings[:, 1]
        features = [u, v] + ([(u - v).abs(), u * v] if self.spec["pair_features"] == "full" else [])
        return HeadOutput(self.squeeze(self.classify(torch.cat(features, dim=-1))), embeddings, u, v)

    @classmethod
    def describe(cls, spec):
        output, loss = objective(spec).describe()
        features = "[u; v; |u-v|; u*v]" if spec["pair_features"] == "full" else "[u; v]"
        return (
            f"both sentences encoded separately and {_pooled(spec)} to u and v; {features} into "
            f"{_classifier_text(spec)} giving {output}; {loss}."
        )


class CosinePairHead(_SeparatePair):
    """No parameters: the cosine of the two embeddings. A score: ``ReLU(cos) · high`` (STS in the paper, MSE); a
    paraphrase: the cosine against ``cosine_threshold`` (two labels only)."""

    has_parameters = False

    @classmethod
    def check_spec(cls, where, spec):
        super().check_spec(where, {**spec, "regression_loss": "mse"})
        if not get_kind(spec).is_regression and spec["num_labels"] != 2:
            raise MultitaskConfigError(
                f"{where}: the cosine head decides paraphrase or not from one cosine, so it has two labels; "
                f"num_labels={spec['num_labels']} needs pair_encoding 'concat_sep', 'separate' or 'dual'"
            )
        if get_kind(spec).is_regression and spec["score_range"][0] != 0.0:
            raise MultitaskConfigError(
                f"{where}: the cosine head predicts ReLU(cos)*high, so score_range must start at 0"
            )

    def __init__(self, spec, hidden_size):
        super().__init__(spec, hidden_size)
        if not get_kind(spec).is_regression:
            self.objective = CosineThreshold(spec)

    def forward(self, encode, input_ids, attention_mask, token_type_ids=None, pair_input_ids=None,
                pair_attention_mask=None):  # fmt: skip
        embeddings = self.encode_pair(encode, input_ids, attention_mask, token_type_ids)
        u, v = embeddings[:, 0], embeddings[:, 1]
        similarity = cosine(u, v)
        if isinstance(self.objective, Score):
            return HeadOutput(F.relu(similarity) * self.spec["score_range"][1], embeddings, u, v)
        return HeadOutput(similarity, embeddings, u, v)

    def loss(self, output, labels):
        ranked = cosine(output.u, output.v)  # CoSENT ranks the cosine itself, before the ReLU
        return self.objective.loss(output.logits, labels, ranked, output.u, output.v)

    @classmethod
    def describe(cls, spec):
        if isinstance(objective(spec), Score):
            _, loss = objective(spec).describe()
            return (
                f"both sentences encoded separately and {_pooled(spec)}; the score is ReLU(cos(u, v)) x "
                f"{spec['score_range'][1]:g}; {loss}."
            )
        return (
            f"both sentences encoded separately and {_pooled(spec)}; a paraphrase when cos(u, v) > "
            f"{spec['cosine_threshold']:g}; MSE between the cosine and the 0/1 label."
        )


class CrossEncoderHead(_ClassifierLayers, TaskHead):
    """The pair as one sequence (a cross-encoder), pooled, into a classifier. ``concat_sep`` joins it the tokenizer's
    own way (``[CLS] a [SEP] b [SEP]``, or ``<s> a </s></s> b </s>``); ``concat_nosep`` with no separator."""

    layout = "joined"
    separator = True

    def __init__(self, spec, hidden_size):
        super().__init__(spec, hidden_size)
        self._add_classifier(spec, hidden_size, hidden_size, self.objective.num_outputs)

    @classmethod
    def encode_texts(cls, tokenizer, texts, text_pairs, max_length):
        if cls.separator:
            return tokenize_joined(tokenizer, texts, text_pairs, max_length)
        first = tokenizer(texts, add_special_tokens=False)["input_ids"]
        second = tokenizer(text_pairs, add_special_tokens=False)["input_ids"]
        return {"input_ids": [join_without_separator(tokenizer, a, b, max_length) for a, b in zip(first, second)]}

    def forward(self, encode, input_ids, attention_mask, token_type_ids=None, pair_input_ids=None,
                pair_attention_mask=None):  # fmt: skip
        embeddings = encode(input_ids, attention_mask, token_type_ids)
        return HeadOutput(self.squeeze(self.classify(embeddings)), embeddings)

    @classmethod
    def describe_input(cls, spec):
        return "pair, joined with [SEP]" if cls.separator else "pair, joined without separator"

    @classmethod
    def describe(cls, spec):
        output, loss = objective(spec).describe()
        if cls.separator:
            segments = " with segment embeddings" if spec["use_token_type_ids"] else ""
            joined = f"the pair joined as `[CLS] a [SEP] b [SEP]` (the tokenizer's own separator){segments}"
        else:
            joined = "the pair joined with no separator, `[CLS] a b [SEP]`"
        return f"{joined}, {_pooled(spec)}, into {_classifier_text(spec)} giving {output}; {loss}."


class NoSeparatorCrossEncoderHead(CrossEncoderHead):
    layout = "joined_nosep"
    separator = False


class DualPairHead(TaskHead):
    """Two views averaged: the cross-encoder's prediction (the joined pair, the task's pooling, a classifier) and the
    cosine of the two MEAN-pooled sentences (``ReLU(cos) · high`` for a score; learned logits from the cosine for
    classes). A cross-encoder and a bi-encoder err differently, so the average beats either; each view keeps its
    own loss."""

    layout = "dual"

    @classmethod
    def check_spec(cls, where, spec):
        super().check_spec(where, spec)  # AnglE is refused there; CoSENT ranks both views
        if get_kind(spec).is_regression and spec["score_range"][0] != 0.0:
            raise MultitaskConfigError(
                f"{where}: a dual head's cosine view predicts ReLU(cos)*high, so score_range must start at 0"
            )
        if spec["rdrop_alpha"]:
            raise MultitaskConfigError(
                f"{where}: rdrop_alpha is not supported with pair_encoding 'dual' (its two views already regularise "
                "each other); use concat_sep or cosine for R-Drop"
            )

    def __init__(self, spec, hidden_size):
        super().__init__(spec, hidden_size)
        self.cross = _classifier(spec, hidden_size, hidden_size, self.objective.num_outputs)
        if isinstance(self.objective, Binary):
            self.cosine = CosineLogit(spec["cosine_threshold"])
        elif isinstance(self.objective, Classes):
            self.cosine = nn.Linear(1, self.objective.num_outputs)  # class logits from the cosine
        else:
            self.cosine = None  # a score's cosine view needs no parameters

    @classmethod
    def encode_texts(cls, tokenizer, texts, text_pairs, max_length):
        out = tokenize_joined(tokenizer, texts, text_pairs, max_length)
        out["pair_input_ids_a"] = tokenize_alone(tokenizer, texts, max_length)
        out["pair_input_ids_b"] = tokenize_alone(tokenizer, text_pairs, max_length)
        return out

    def check_inputs(self, task, input_ids, pair_input_ids):
        if input_ids.dim() != 2:
            raise MultitaskConfigError(
                f"task {task!r} (dual head) takes the joined pair as input_ids of shape (batch, length), got "
                f"{tuple(input_ids.shape)}"
            )
        if pair_input_ids is None or pair_input_ids.dim() != 3 or pair_input_ids.shape[0] != input_ids.shape[0]:
            got = "none" if pair_input_ids is None else f"shape {tuple(pair_input_ids.shape)}"
            raise MultitaskConfigError(
                f"task {task!r} (pair_encoding='dual') also reads the two sentences on their own: pass pair_input_ids "
                f"of shape (batch={input_ids.shape[0]}, 2, length), got {got}"
            )

    def forward(self, encode, input_ids, attention_mask, token_type_ids=None, pair_input_ids=None,
                pair_attention_mask=None):  # fmt: skip
        joined = encode(input_ids, attention_mask, token_type_ids)
        cross = self.cross(joined)
        if self.objective.num_outputs == 1:
            cross = cross.squeeze(-1)
        separate = _SeparatePair.encode_pair(encode, pair_input_ids, pair_attention_mask, pooling="mean")
        u, v = separate[:, 0], separate[:, 1]
        similarity = cosine(u, v)
        if self.cosine is None:
            view = F.relu(similarity) * self.spec["score_range"][1]
        elif isinstance(self.cosine, CosineLogit):
            view = self.cosine(similarity)
        else:
            view = self.cosine(similarity.unsqueeze(-1).to(self.cosine.weight.dtype)).float()
        return HeadOutput(0.5 * (cross.float() + view), joined, u, v, (cross, view))

    def loss(self, output, labels):
        if output.views is None:
            raise MultitaskConfigError("a dual head's loss needs its two views (cross, cosine)")
        cross, view = output.views
        ranked = cosine(output.u, output.v) if isinstance(self.objective, Score) else None
        return self.objective.loss(cross, labels) + self.objective.loss(view, labels, ranked, output.u, output.v)

    def soft_loss(self, output, target, temperature=1.0):
        if output.views is None:
            raise MultitaskConfigError("a dual head's distillation loss needs its two views (cross, cosine)")
        cross, view = output.views  # each view learns from the teacher, as each learns from the gold label
        soft = self.objective.soft_loss
        return soft(cross, target, temperature) + soft(view, target, temperature)

    @classmethod
    def describe_input(cls, spec):
        return "pair, joined with [SEP] and encoded separately"

    @classmethod
    def describe(cls, spec):
        output, loss = objective(spec).describe()
        if isinstance(objective(spec), Score):
            view = f"ReLU(cos(u, v)) x {spec['score_range'][1]:g}"
        elif isinstance(objective(spec), Binary):
            view = "a learned logit s x (cos(u, v) - t)"
        else:
            view = "learned class logits from cos(u, v)"
        return (
            f"two views averaged: the pair joined as `[CLS] a [SEP] b [SEP]`, {_pooled(spec)}, into "
            f"{_classifier_text(spec)} giving {output}, and both sentences encoded separately and mean-pooled to u "
            f"and v giving {view}; the sum of both views' {loss}."
        )


def tokenize_words(tokenizer, words: list[list[str]], max_length: int) -> dict[str, list[list[int]]]:
    """Sentences already split into words, tokenized into sub-words (a fast tokenizer's ``is_split_into_words``):
    ``input_ids`` and each token's ``word_ids`` (``-1`` for special tokens), the map from sub-tokens back to words
    that label alignment and word-level predictions need."""
    if not getattr(tokenizer, "is_fast", False):
        raise MultitaskConfigError(
            f"token_classification needs a fast tokenizer (it maps sub-tokens back to words); "
            f"{type(tokenizer).__name__} is not one"
        )
    enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
    word_ids = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(words))]
    return {"input_ids": enc["input_ids"], "word_ids": word_ids}


def align_word_labels(word_ids: list[int], labels: list[int], label_all_tokens: bool = False) -> list[int]:
    """Word labels on sub-tokens, the usual way: a word's first sub-token carries its label, the others
    ``-100`` (or the label too with ``label_all_tokens``); special tokens ``-100``."""
    out, previous = [], None
    for word in word_ids:
        if word < 0 or word >= len(labels):
            out.append(IGNORE_INDEX)
        elif word != previous or label_all_tokens:
            out.append(int(labels[word]))
        else:
            out.append(IGNORE_INDEX)
        previous = word
    return out


def first_token_positions(word_ids: list[int]) -> list[int]:
    """The position of each word's first sub-token, word by word (words cut off by truncation are missing)."""
    positions, previous = [], None
    for position, word in enumerate(word_ids):
        if word >= 0 and word != previous:
            positions.append(position)
        previous = word
    return positions


class TokenClassificationHead(_ClassifierLayers, TaskHead):
    """Every token's final state into a classifier (linear or MLP): one tag per sub-token; words take their first
    sub-token's tag. The transformers ``BertForTokenClassification`` head, on a shared encoder."""

    layout = "tokens"
    pair = False
    inputs = ("tokens",)

    def __init__(self, spec, hidden_size):
        if not spec.get("label_names"):
            raise MultitaskConfigError(
                "a token_classification task needs its tags before its head is built: set label_names (e.g. "
                "[O, B-LOC, I-LOC]), or train it with examples/train.py, which reads them from the training split"
            )
        super().__init__(spec, hidden_size)
        self._add_classifier(spec, hidden_size, hidden_size, self.objective.num_outputs)

    @classmethod
    def check_spec(cls, where, spec):
        super().check_spec(where, spec)
        if spec["rdrop_alpha"] or spec["smart_alpha"]:
            raise MultitaskConfigError(
                f"{where}: rdrop_alpha and smart_alpha are sentence-level regularisers; a token_classification task "
                "does not take them"
            )

    @classmethod
    def encode_texts(cls, tokenizer, texts, text_pairs, max_length):
        return tokenize_words(tokenizer, texts, max_length)

    def forward(self, encode, input_ids, attention_mask, token_type_ids=None, pair_input_ids=None,
                pair_attention_mask=None):  # fmt: skip
        states = encode(input_ids, attention_mask, pooling="none")
        return HeadOutput(self.classify(states), states)

    def empty_logits(self):
        return torch.empty((0, 0, self.objective.num_outputs), dtype=torch.float32)

    @classmethod
    def describe_input(cls, spec):
        return "a sentence split into words"

    @classmethod
    def describe(cls, spec):
        output, loss = objective(spec).describe()
        return f"every token's final state into {_classifier_text(spec)} giving {output}; {loss}."


#: Head classes by name: ``sentence`` for one-sentence tasks, else the task's ``pair_encoding``.
HEADS: dict[str, type[TaskHead]] = {
    "sentence": SentenceHead,
    "tokens": TokenClassificationHead,
    "separate": SeparatePairHead,
    "cosine": CosinePairHead,
    "concat_sep": CrossEncoderHead,
    "concat_nosep": NoSeparatorCrossEncoderHead,
    "dual": DualPairHead,
}


def head_name(spec: dict[str, Any]) -> str:
    if get_kind(spec).input == "tokens":
        return "tokens"
    return spec.get("pair_encoding") or "sentence"


def head_class(spec: dict[str, Any]) -> type[TaskHead]:
    return HEADS[head_name(spec)]


def build_head(spec: dict[str, Any], hidden_size: int) -> TaskHead:
    return head_class(spec)(spec, hidden_size)


def encode_texts(tokenizer, spec: dict[str, Any], texts, text_pairs, max_length: int) -> dict[str, list[list[int]]]:
    """Token ids of a task's texts in the layout its head reads (the same in training, prediction and the pipeline)."""
    return head_class(spec).encode_texts(tokenizer, texts, text_pairs, max_length)


def input_layout(spec: dict[str, Any]) -> str:
    """How a task's text is tokenized and batched (tasks with the same layout share tokenized data, and in
    ``MultitaskBertModel.forward_tasks`` their encoder passes; a ``dual`` head's sentences are ``pair``'s ids)."""
    return head_class(spec).layout


def objective(spec: dict[str, Any]) -> Objective:
    """The task's objective as its head uses it (a cosine paraphrase head compares a cosine with a threshold)."""
    cls = head_class(spec)
    if cls is CosinePairHead and not get_kind(spec).is_regression:
        return CosineThreshold(spec)
    return make_objective(spec)


__all__ = [
    "HEADS",
    "Binary",
    "Classes",
    "ClassifierHead",
    "CosineLogit",
    "CosinePairHead",
    "CosineThreshold",
    "CrossEncoderHead",
    "DualPairHead",
    "HeadOutput",
    "NoSeparatorCrossEncoderHead",
    "Objective",
    "Score",
    "SentenceHead",
    "SeparatePairHead",
    "Tags",
    "TaskHead",
    "TokenClassificationHead",
    "align_word_labels",
    "angle_similarity",
    "build_head",
    "cosent_loss",
    "encode_texts",
    "first_token_positions",
    "head_class",
    "head_name",
    "input_layout",
    "join_without_separator",
    "objective",
    "tokenize_words",
]  # fmt: skip
