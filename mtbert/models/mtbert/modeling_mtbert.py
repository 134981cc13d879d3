"""A BERT-family encoder shared by several sentence tasks, each with its own configurable head.

Every method compared in "Finetuning a multitask BERT for downstream tasks" is a head setting here:
CLS or MEAN pooling; pair tasks encoded separately ([u; v] into a classifier, the paper's baseline), by cosine
similarity (STS: ReLU(cos)·5 with MSE; QQP: cos against a threshold, MSE to the 0/1 label), or as one joined
sequence (with [SEP], optionally with segment embeddings, or with no separator); a 1-layer or 2-layer classifier;
one encoder for all tasks or one per task (the paper's "ensembling"). Beyond the paper, a ``dual`` pair head reads
the pair both ways at once (cross-encoder and cosine of separate embeddings) and averages the two.

The heads themselves (one class each: input layout, logits, losses, predictions, card text) are in
``heads_mtbert.py``; this file holds the encoder(s) of any ``AutoModel`` family, the pooling, and the consistency
regularisers (R-Drop, SMART) that apply to every head.

Several tasks over the same rows (``forward_tasks({task: batch})``, what ``pipe(x, task="all")`` and
``predict.py --tasks all`` run) make one encoder pass per distinct input encoding (:class:`EncoderPasses`): tasks
whose heads tokenize alike (two ``concat_sep`` pair tasks; ``separate``, ``cosine`` and a ``dual`` head's
per-sentence view) share the encoder's last hidden state and only pool it their own way.

This file is remote code: it imports only torch, transformers and its siblings (``configuration_mtbert``,
``heads_mtbert``, ``pipeline_mtbert``).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_mtbert import MultitaskBertConfig, MultitaskConfigError
from .heads_mtbert import (
    ClassifierHead,
    CosineLogit,
    DualPairHead,
    HeadOutput,
    TaskHead,
    angle_similarity,
    build_head,
    cosent_loss,
    labelled_rows,
)


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
    """``cls``: the first token's final state. ``mean``: the average over real (unmasked) tokens only. ``none``:
    every token's state (a token-level head)."""
    if pooling == "none":
        return hidden_states
    if pooling == "cls":
        return hidden_states[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


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


def _same_tensors(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(
        a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
        for a, b in ((first[k], second[k]) for k in first)
    )


def _labelled_loss(loss: Callable[[HeadOutput], torch.Tensor], keep: torch.Tensor, output: HeadOutput) -> torch.Tensor:
    """``loss`` over the rows ``keep`` marks as labelled; zero (still part of the graph) when none is."""
    return loss(output.rows(keep)) if bool(keep.any()) else output.logits.float().sum() * 0.0


class EncoderPasses:
    """The encoder passes of several heads over the same rows, each distinct one run once.

    Heads hand their encoder the token ids of their layout; two heads that tokenize alike (two ``concat_sep`` pair
    tasks, a ``cosine`` head and a ``dual`` head's sentences) hand it equal tensors, so the last hidden state of the
    first pass serves both (keyed by the encoder module and the tensors' values: with one encoder per task nothing
    is shared). Pooling stays each head's own. ``passes`` counts the encoder calls made."""

    def __init__(self):
        self.entries: list[tuple[nn.Module, dict[str, torch.Tensor], torch.Tensor]] = []
        self.passes = 0

    def hidden_states(self, encoder: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        for known, known_inputs, states in self.entries:
            if known is encoder and _same_tensors(known_inputs, inputs):
                return states
        states = encoder(**inputs).last_hidden_state
        self.passes += 1
        self.entries.append((encoder, inputs, states))
        return states


#: the keys of a task's batch that :meth:`MultitaskBertModel.forward_tasks` reads (``forward``'s inputs)
TASK_BATCH_KEYS = ("input_ids", "attention_mask", "token_type_ids", "pair_input_ids", "pair_attention_mask")


def encoder_class(encoder_config) -> type[PreTrainedModel]:
    """The ``AutoModel`` class of a backbone configuration (``BertModel``, ``MPNetModel``, ``ModernBertModel``...)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    try:
        return MODEL_MAPPING[type(encoder_config)]  # type: ignore[return-value]
    except KeyError:
        raise MultitaskConfigError(
            f"backbone model_type {encoder_config.model_type!r} has no AutoModel encoder class"
        ) from None


def choose_attn_implementation(cls: type[PreTrainedModel], requested: str | None) -> str:
    """SDPA where the backbone family supports it, else eager; an explicit request wins (and is checked)."""
    if requested is None:
        return "sdpa" if getattr(cls, "_supports_sdpa", False) else "eager"
    supported = {
        "sdpa": "_supports_sdpa",
        "flash_attention_2": "_supports_flash_attn",
        "flash_attention_3": "_supports_flash_attn",
    }
    flag = supported.get(requested)
    if flag is not None and not getattr(cls, flag, False):
        raise MultitaskConfigError(
            f"attn_implementation={requested!r}: {cls.__name__} does not support it; use 'eager' (or leave it unset "
            "to pick the fastest the backbone supports)"
        )
    return requested


def sdpa_kernels(device: torch.device | str | int | None, cudnn: bool = False) -> contextlib.AbstractContextManager:
    """A context in which scaled-dot-product attention on a CUDA ``device`` runs without cuDNN's kernel (flash,
    memory-efficient or math instead); a no-op elsewhere or with ``cudnn=True`` (``cudnn_attention: true``).

    Why: for bf16 on Hopper GPUs PyTorch picks cuDNN's kernel first, and cuDNN builds a plan for every new input
    shape. Length-grouped training batches, and prediction batches sorted by length, bring a new shape almost every
    batch until each length has been seen. On an H200, MiniLM at batch 32, a first pass over 30 such batches took
    155 ms per step with cuDNN and 29 without; once warm, 21 and 22 ms (docs/performance.md, "GPU"). Training steps
    (backward included, for gradient checkpointing's recompute), evaluation, prediction and the pipeline all run
    inside it. The flags it sets are process-wide: threads that predict at once share them."""
    if cudnn or device is None or _as_device(device).type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def has_segment_embeddings(encoder: PreTrainedModel) -> bool:
    """Whether ``token_type_ids`` mean anything to this backbone (BERT, ELECTRA, ALBERT: yes; RoBERTa, MPNet,
    DistilBERT, ModernBERT, DeBERTa-v3: no)."""
    takes = "token_type_ids" in inspect.signature(encoder.forward).parameters
    return takes and int(getattr(encoder.config, "type_vocab_size", 0) or 0) > 1


# The dropout settings under their BERT names, as each family's config spells them (families not listed use BERT's).
DROPOUT_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "distilbert": {"hidden_dropout_prob": ("dropout",), "attention_probs_dropout_prob": ("attention_dropout",)},
    "modernbert": {
        "hidden_dropout_prob": ("embedding_dropout", "mlp_dropout"),
        "attention_probs_dropout_prob": ("attention_dropout",),
    },
}


def family_config_kwargs(model_type: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Backbone settings given under BERT's names (``hidden_dropout_prob``...) renamed for ``model_type``."""
    names = DROPOUT_KEYS.get(model_type, {})
    out = {}
    for key, value in settings.items():
        for name in names.get(key, (key,)):
            out[name] = value
    return out


def _build_encoder(config: MultitaskBertConfig) -> PreTrainedModel:
    encoder_config = config.encoder_config
    cls = encoder_class(encoder_config)
    encoder_config._attn_implementation = choose_attn_implementation(cls, config.encoder_attn_implementation)
    try:
        return cls(encoder_config, add_pooling_layer=False)
    except TypeError:  # encoders without a pooler (e.g. DistilBERT, ModernBERT) take no such argument
        return cls(encoder_config)


def _no_safetensors_message(path: str) -> str:
    """One line for a backbone without ``model.safetensors``: what the folder holds instead, and what to do."""
    import os

    folder = os.path.expanduser(path)
    found = [
        n
        for n in (
            "pytorch_model.bin",
            "pytorch_model.bin.index.json",
            "model.pt",
            "model.pth",
            "tf_model.h5",
            "flax_model.msgpack",
        )
        if os.path.isfile(os.path.join(folder, n))
    ]
    if found:
        return (
            f"backbone {path!r} holds only {found[0]}, no model.safetensors: mtbert loads safetensors only "
            "(unpickling a file can run code); convert it where you trust it with "
            "AutoModel.from_pretrained(path).save_pretrained(path, safe_serialization=True)"
        )
    return f"backbone {path!r} has no model.safetensors weights (mtbert loads safetensors only)"


def distillation_mix(head, output: HeadOutput, labels: torch.Tensor, target: torch.Tensor, alpha: float,
                     temperature: float) -> torch.Tensor:  # fmt: skip
    """Knowledge distillation's loss for one task: ``(1 − alpha) · gold loss + alpha · soft loss``."""
    if alpha == 1.0:
        return head.soft_loss(output, target, temperature)
    if alpha == 0.0:
        return head.loss(output, labels)
    return (1.0 - alpha) * head.loss(output, labels) + alpha * head.soft_loss(output, target, temperature)


class MultitaskBertModel(PreTrainedModel):
    """One encoder (or one per task) plus one head per task; ``forward(task=...)`` runs a single task's batch."""

    config_class = MultitaskBertConfig
    base_model_prefix = "mtbert"
    config: MultitaskBertConfig
    # an nn.ModuleDict of TaskHead: typed as Any because a ModuleDict's items are plain Modules to a type checker
    heads: Any
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
        self.heads = nn.ModuleDict({task: build_head(spec, hidden) for task, spec in config.tasks.items()})
        first_encoder = next(iter(self.task_encoders().values()))
        self.segment_embeddings = has_segment_embeddings(first_encoder)
        for task, spec in config.tasks.items():
            if spec["use_token_type_ids"] and not self.segment_embeddings:
                raise MultitaskConfigError(
                    f"task {task!r}: use_token_type_ids needs a backbone with segment embeddings, and "
                    f"{type(first_encoder).__name__} has none; remove use_token_type_ids (the pair is still joined "
                    "with the tokenizer's own separator)"
                )
        self.post_init()

    def _check_checkpointing(self) -> None:
        for encoder in {id(e): e for e in self.task_encoders().values()}.values():
            if not encoder.supports_gradient_checkpointing:
                raise MultitaskConfigError(
                    f"gradient_checkpointing: {type(encoder).__name__} does not support it; turn it off (use a "
                    "smaller batch with gradient_accumulation_steps to save memory instead)"
                )

    # Refused clearly for families without it (MPNet, ALBERT). transformers 5 renamed it activation checkpointing
    # (the Trainer calls ``activation_checkpointing_enable(..., every_n_layers=, offload=)``; the old name is a
    # deprecated alias that calls the new one), so the check sits on whichever entry point this version has.
    if hasattr(PreTrainedModel, "activation_checkpointing_enable"):

        def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, **kwargs):
            """Activation (gradient) checkpointing of the encoder(s)."""
            self._check_checkpointing()
            super().activation_checkpointing_enable(activation_checkpointing_kwargs, **kwargs)

    else:

        def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None, **kwargs):
            """Gradient checkpointing of the encoder(s)."""
            self._check_checkpointing()
            super().gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=gradient_checkpointing_kwargs, **kwargs
            )

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
    ) -> MultitaskBertModel:
        """Build a multitask model whose encoder(s) start from a pretrained backbone (``bert-base-uncased``, a path…).

        ``encoder_kwargs`` override backbone settings, e.g. ``{"hidden_dropout_prob": 0.3}`` as in the paper.
        Heads are freshly initialised. Weights are loaded in float32 whatever dtype the checkpoint was saved in.
        """
        import logging

        from transformers.utils import logging as hf_logging

        kwargs = dict(encoder_kwargs or {})
        config_kwargs.setdefault("encoder_attn_implementation", kwargs.pop("attn_implementation", None))
        # transformers would print the backbone config (once per load) and a load report shouting UNEXPECTED for the
        # pooler left out here: quiet during the load, then one line (and a warning for weights really missing)
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            if kwargs:
                model_type = AutoConfig.from_pretrained(encoder_name_or_path).model_type
                kwargs = family_config_kwargs(model_type, kwargs)
            kwargs["dtype"] = torch.float32
            kwargs["output_loading_info"] = True
            kwargs.setdefault("use_safetensors", True)  # never unpickle a backbone's pytorch_model.bin
            try:
                try:
                    backbone, info = AutoModel.from_pretrained(encoder_name_or_path, add_pooling_layer=False, **kwargs)
                except TypeError:
                    backbone, info = AutoModel.from_pretrained(encoder_name_or_path, **kwargs)
            except OSError as error:
                if kwargs["use_safetensors"] and "safetensors" in str(error).lower():
                    raise MultitaskConfigError(_no_safetensors_message(str(encoder_name_or_path))) from None
                raise
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        log = logging.getLogger(__name__)
        unused = sorted(info.get("unexpected_keys") or ())
        note = (
            "pooler weights not used"
            if unused and all(k.startswith("pooler.") for k in unused)
            else (
                f"{len(unused)} checkpoint weights not used: "
                f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}"
            )
        )
        log.info(
            "loaded backbone %s (%s, %.1fM parameters%s)",
            encoder_name_or_path,
            backbone.config.model_type,
            sum(p.numel() for p in backbone.parameters()) / 1e6,
            f"; {note}" if unused else "",
        )
        missing = sorted(info.get("missing_keys") or ())
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            log.warning(
                "backbone %s: %d weights not in the checkpoint, initialised at random: %s",
                encoder_name_or_path,
                len(missing),
                shown,
            )
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

    def task_encoders(self) -> dict[str, Any]:
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
        if task is None:  # the config's default_task, else the only task
            default = self.config.resolved_default_task()
            if default is not None:
                return default
            raise MultitaskConfigError(
                f"pass task=..., one of {', '.join(self.config.tasks)} (or set the config's default_task)"
            )
        if task not in self.config.tasks:
            raise MultitaskConfigError(f"unknown task {task!r}; this model has {', '.join(self.config.tasks)}")
        return task

    # -- forward ---------------------------------------------------------------------------------------------

    def _encode(self, task: str, input_ids, attention_mask, token_type_ids=None, pooling: str | None = None, *,
                passes: EncoderPasses | None = None):  # fmt: skip
        """The task's encoder over ``(batch, length)`` ids, pooled (the task's pooling unless ``pooling`` is given);
        with ``passes``, a pass over the same ids made for another head is reused."""
        spec = self.config.tasks[task]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if spec["use_token_type_ids"] and token_type_ids is not None:  # the paper joins pairs without segments
            inputs["token_type_ids"] = token_type_ids
        encoder = self.task_encoders()[task]
        states = encoder(**inputs).last_hidden_state if passes is None else passes.hidden_states(encoder, inputs)
        return pool(states, attention_mask, pooling or spec["pooling"])

    def task_head(self, task: str | None) -> TaskHead:
        """The head of ``task`` (its layout, loss, predictions and card text)."""
        return self.heads[self._resolve_task(task)]

    def _head_output(self, task: str, *inputs, passes: EncoderPasses | None = None) -> HeadOutput:
        return self.heads[task](partial(self._encode, task, passes=passes), *inputs)

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
        teacher_targets: torch.Tensor | None = None,
        distill_alpha: float = 0.5,
        distill_temperature: float = 1.0,
        encoder_passes: EncoderPasses | None = None,
    ) -> MultitaskOutput | tuple:
        r"""Run one task's batch.

        ``input_ids`` is ``(batch, length)`` for one sentence or a joined pair, and ``(batch, 2, length)`` for a pair
        encoded separately: both sentences then go through the encoder in one call of ``2 × batch`` rows. A ``dual``
        head takes the joined pair as ``input_ids`` and the two sentences on their own as ``pair_input_ids``
        (``(batch, 2, length)``, with ``pair_attention_mask``). ``mtbert.prepare_dataset`` and ``TaskCollator`` build
        these from text.

        With ``teacher_targets`` (a teacher's log-probabilities or scores for the batch, see
        :mod:`mtbert.training.distillation`) the loss is ``(1 − distill_alpha) · gold loss + distill_alpha · soft
        loss``, the soft loss at ``distill_temperature`` as the head's objective defines it.

        Rows without a label (``-100`` for classes, NaN for a score, every tag ``-100`` for a token task: a shared
        row labelled for another task only) add nothing to the loss. ``encoder_passes``: an :class:`EncoderPasses`
        shared with other tasks' batches of the same rows (training several heads from one encoder pass).
        """
        task = self._resolve_task(task)
        spec = self.config.tasks[task]
        head = self.heads[task]
        head.check_inputs(task, input_ids, pair_input_ids)
        rdrop = self.training and labels is not None and spec["rdrop_alpha"] > 0
        if rdrop:  # R-Drop: the batch twice in one call, so the two halves see different dropout masks
            twice = lambda t: None if t is None else torch.cat([t, t])  # noqa: E731
            input_ids, attention_mask, token_type_ids = map(twice, (input_ids, attention_mask, token_type_ids))  # type: ignore[assignment]
        inputs = (input_ids, attention_mask, token_type_ids, pair_input_ids, pair_attention_mask)
        output = self._head_output(task, *inputs, passes=encoder_passes)
        logits, embeddings = output.logits, output.embeddings

        loss = None
        if labels is not None:
            keep = labelled_rows(labels)  # None: every row has a label (the usual case, left as it is)
            if keep is not None:
                labels = labels[keep]
                teacher_targets = None if teacher_targets is None else teacher_targets[keep]
            if teacher_targets is None:
                task_loss = partial(head.loss, labels=labels)
            else:
                task_loss = partial(
                    distillation_mix,
                    head,
                    labels=labels,
                    target=teacher_targets,
                    alpha=distill_alpha,
                    temperature=distill_temperature,
                )
            if keep is not None:  # the loss over the labelled rows only (zero, graph kept, when there is none)
                task_loss = partial(_labelled_loss, task_loss, keep)
            if rdrop:
                first, second = output.halves(input_ids.shape[0] // 2)
                loss = 0.5 * (task_loss(first) + task_loss(second))
                loss = loss + spec["rdrop_alpha"] * head.divergence(first.logits, second.logits)
                logits, embeddings = first.logits, first.embeddings
            else:
                loss = task_loss(output)
                if self.training and spec["smart_alpha"] > 0 and torch.is_grad_enabled():
                    loss = loss + spec["smart_alpha"] * self.smoothness_loss(task, logits, inputs)
            loss = loss * spec["loss_weight"]
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return tuple(x for x in (loss, logits, embeddings) if x is not None)
        return MultitaskOutput(loss=loss, logits=logits, embeddings=embeddings)

    def forward_tasks(self, batches: dict[str, dict[str, torch.Tensor]]) -> dict[str, MultitaskOutput]:
        """Several tasks' batches of the same rows, for prediction: ``{task: batch}`` → ``{task: output}``, each
        output as ``forward(task=task, **batch)`` gives it (logits and embeddings, no loss), with one encoder pass
        per distinct input encoding (:class:`EncoderPasses`) instead of one per task.

        A batch holds ``forward``'s inputs (:data:`TASK_BATCH_KEYS`), in its head's layout; labels are refused."""
        if not isinstance(batches, dict) or not batches:
            raise MultitaskConfigError("forward_tasks takes {task: batch}, one entry per task to predict")
        passes = EncoderPasses()
        outputs = {}
        for task, batch in batches.items():
            task = self._resolve_task(task)
            unknown = sorted(set(batch) - set(TASK_BATCH_KEYS))
            if unknown:
                raise MultitaskConfigError(
                    f"forward_tasks: the batch of task {task!r} has {', '.join(unknown)}; it predicts from "
                    f"{', '.join(TASK_BATCH_KEYS)} (use forward(task=...) for a loss)"
                )
            self.heads[task].check_inputs(task, batch["input_ids"], batch.get("pair_input_ids"))
            inputs = tuple(batch.get(key) for key in TASK_BATCH_KEYS)
            output = self._head_output(task, *inputs, passes=passes)
            outputs[task] = MultitaskOutput(logits=output.logits, embeddings=output.embeddings)
        return outputs

    def task_loss(self, task: str, output: HeadOutput, labels: torch.Tensor) -> torch.Tensor:
        """The head's loss for a :class:`HeadOutput` (before ``loss_weight``)."""
        return self.heads[task].loss(output, labels)

    def consistency_loss(self, task: str, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """R-Drop's term: how much two dropout passes disagree (the head's divergence)."""
        return self.heads[task].divergence(first, second)

    def smoothness_loss(self, task: str, clean_logits: torch.Tensor, inputs: tuple) -> torch.Tensor:
        """SMART's smoothness term: how far the predictions move when the word embeddings are nudged (noise of std
        ``smart_noise``, then one ascent step of ``smart_step_size`` in the direction that moves them most), measured
        as R-Drop's disagreement. Keeps a small training set from carving sharp decision boundaries.

        ``inputs``: the task's ``(input_ids, attention_mask, token_type_ids, pair_input_ids, pair_attention_mask)``."""
        spec = self.config.tasks[task]
        head = self.heads[task]
        noise = EmbeddingNoise(spec["smart_noise"])
        handle = self.task_encoders()[task].get_input_embeddings().register_forward_hook(noise)
        try:
            perturbed = self._head_output(task, *inputs).logits
            divergence = head.divergence(perturbed, clean_logits.detach())
            grads = torch.autograd.grad(divergence, noise.noises, allow_unused=True)
            noise.ascend(grads, spec["smart_step_size"])
            perturbed = self._head_output(task, *inputs).logits
        finally:
            handle.remove()
        return head.divergence(perturbed, clean_logits)

    # -- predictions -----------------------------------------------------------------------------------------

    def postprocess(self, task: str, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn a task's logits into ``(predictions, scores)`` (the head decides how)."""
        return self.task_head(task).postprocess(logits)


# ---------------------------------------------------------------------------------------------------------------
# int8 dynamic quantization for CPU prediction (opt-in: examples/predict.py --quantize int8, pipeline(quantize="int8"))
# ---------------------------------------------------------------------------------------------------------------

#: ``quantize`` settings of prediction: ``none`` (float32, as trained) or ``int8`` (dynamic int8 linear layers, CPU)
QUANTIZE_CHOICES = ("none", "int8")

_logger = logging.getLogger(__name__)


def _as_device(device) -> torch.device:
    """A device as ``torch.device``; an int as the pipelines read it (``-1``: the CPU, ``n``: ``cuda:n``)."""
    if isinstance(device, torch.device):
        return device
    if isinstance(device, int) and not isinstance(device, bool):
        return torch.device("cpu") if device < 0 else torch.device("cuda", device)
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise MultitaskConfigError(f"device {device!r} is not a device name (cpu, cuda, cuda:1 ...)") from None


def _refuse_off_cpu(where: torch.device, what: str) -> None:
    if where.type != "cpu":
        raise MultitaskConfigError(
            f"int8 quantization runs on the CPU only (no {where.type} kernels for dynamic int8 linear layers), but "
            f"{what} is {str(where)!r}: predict on the CPU (device 'cpu') or without quantization (quantize 'none')"
        )


def resolve_quantize(quantize: str | None, device: torch.device | str | int | None = None) -> str | None:
    """A ``quantize`` setting checked before any work: ``None``/``"none"`` → ``None`` (float32, as trained),
    ``"int8"`` → ``"int8"``. Any other value, or ``"int8"`` with a ``device`` other than the CPU, raises
    :class:`MultitaskConfigError` (one line)."""
    if quantize is None or quantize is False or (isinstance(quantize, str) and quantize.lower() == "none"):
        return None
    if not isinstance(quantize, str) or quantize.lower() not in QUANTIZE_CHOICES:
        raise MultitaskConfigError(f"quantize: {quantize!r} is not one of {', '.join(QUANTIZE_CHOICES)}")
    if device is not None:
        _refuse_off_cpu(_as_device(device), "the device")
    return "int8"


@contextlib.contextmanager
def _no_deprecation_warning():
    """torch marks ``torch.ao.quantization`` and its quantized tensors deprecated (torchao replaces them) on every
    call; warnings at each quantization say nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor.* are deprecated", category=UserWarning)
        yield


def quantized_linear_count(model: nn.Module) -> int:
    """How many of ``model``'s linear layers are dynamic int8 ones (0: not quantized)."""
    return sum(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in model.modules())


def quantize_int8(
    model: nn.Module, device: torch.device | str | int | None = None, inplace: bool = False
) -> nn.Module:
    """A multitask model with int8 dynamic quantization of its linear layers, for prediction on the CPU
    (``torch.ao.quantization.quantize_dynamic(model, ..., dtype=torch.qint8)``): each linear layer's weights are
    stored as int8 and every batch's activations are quantized on the fly, so the encoder's matrix products run in
    int8 (faster on most CPUs, a quarter of the linear weights' memory); predictions move a little.

    Returns a quantized **copy** and leaves ``model`` as it is; ``inplace=True`` quantizes ``model`` itself and
    returns it (what a caller that loaded the model for prediction alone wants: no second copy in memory). A model
    already quantized is returned as it is. Logs "int8 dynamic quantization of N linear layers" once.

    - CPU only: ``device`` (default: where the model's parameters are) other than the CPU raises
      :class:`MultitaskConfigError` before anything changes.
    - Every ``nn.Linear`` of the encoder(s) and the heads is quantized except those with a single input feature (a
      ``dual`` head's cosine-to-class-logits map: a few weights, nothing to gain, and its head reads them as
      float). Embeddings, layer norms and a ``dual`` head's cosine logit stay float32.
    - bf16: int8 kernels take float32 inputs, so bfloat16/float16 weights are converted to float32 first (a
      logged line), and :func:`mtbert.inference.predict.task_logits` ignores a bf16 autocast for a quantized model (a
      logged line too).
    - Prediction only: the quantized model does not train, and is not what to save or push (save the float model
      and quantize it after loading).
    """
    where = _as_device(device) if device is not None else None
    if where is not None:
        _refuse_off_cpu(where, "the device")
    for parameter in model.parameters():
        _refuse_off_cpu(parameter.device, "the model's device")
        break
    if quantized_linear_count(model):
        return model
    engine = torch.backends.quantized.engine
    if engine in (None, "none"):
        raise MultitaskConfigError(
            "this torch build has no quantized CPU engine (torch.backends.quantized.engine is 'none'): predict "
            "without int8 quantization"
        )
    try:
        with _no_deprecation_warning():
            from torch.ao.quantization import quantize_dynamic
    except ImportError:
        raise MultitaskConfigError(
            f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic: predict without int8 "
            "quantization"
        ) from None
    if not inplace:
        model = copy.deepcopy(model)
    dtypes = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters() if p.dtype != torch.float32})
    if dtypes:
        _logger.info(
            "the model's weights are %s: converted to float32 for int8 quantization (its kernels take float32 inputs)",
            "/".join(dtypes),
        )
        model.float()
    targets = {name for name, m in model.named_modules() if type(m) is nn.Linear and m.in_features > 1}
    with _no_deprecation_warning():
        quantize_dynamic(model, targets, dtype=torch.qint8, inplace=True)
    _logger.info("int8 dynamic quantization of %d linear layers (CPU prediction)", quantized_linear_count(model))
    return model


# Saving a model copies this file and its relative imports next to the weights and records ``auto_map``
# (AutoModel → this class), so ``AutoModel.from_pretrained(folder_or_repo, trust_remote_code=True)`` works without
# mtbert. The pipeline is imported here so that it is copied too (``custom_pipelines`` in config.json names it).
from .pipeline_mtbert import MultitaskTextPipeline  # noqa: E402,F401

MultitaskBertModel.register_for_auto_class("AutoModel")

__all__ = [
    "QUANTIZE_CHOICES",
    "TASK_BATCH_KEYS",
    "ClassifierHead",
    "CosineLogit",
    "DualPairHead",
    "EmbeddingNoise",
    "EncoderPasses",
    "MultitaskBertModel",
    "MultitaskOutput",
    "angle_similarity",
    "choose_attn_implementation",
    "cosent_loss",
    "encoder_class",
    "has_segment_embeddings",
    "pool",
    "quantize_int8",
    "quantized_linear_count",
    "resolve_quantize",
    "sdpa_kernels",
]  # fmt: skip
