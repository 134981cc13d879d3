"""``TrainingArguments`` plus the multitask settings: how steps are taken and which task each batch comes from."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, fields

from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy

from .aggregators import AGGREGATORS
from .configuration_mtbert import MultitaskConfigError, _choice
from .optimization import EMBEDDING_UPDATES
from .precision import has_accelerator, resolve_bf16
from .sampling import TASK_SAMPLINGS

STRATEGIES = ("round_robin", "sum", "pcgrad")


def _strategy_name(value) -> str:
    """``'epoch'`` for ``IntervalStrategy.EPOCH``, ``SaveStrategy.EPOCH`` or ``'epoch'``."""
    return str(getattr(value, "value", value))


def _hint(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass
class MultitaskTrainingArguments(TrainingArguments):
    """Hugging Face ``TrainingArguments`` with mtbert's multitask options (all documented in README.md)."""

    strategy: str = field(
        default="round_robin",
        metadata={
            "help": "round_robin: each optimizer step is one batch of one task (the paper's method). sum: one batch "
            "of every task, losses summed, one step. pcgrad: one batch of every task, gradients combined by PCGrad.",
            "choices": list(STRATEGIES),
        },
    )
    task_sampling: str = field(
        default="round_robin",
        metadata={
            "help": "Order of tasks under strategy round_robin: round_robin (interleaved), proportional (to "
            "dataset size) or temperature (size^(1/T)).",
            "choices": list(TASK_SAMPLINGS),
        },
    )
    sampling_temperature: float = field(default=1.0, metadata={"help": "T for task_sampling: temperature."})
    pcgrad_reduction: str = field(
        default="sum",
        metadata={
            "help": "sum: the published PCGrad update. mean: divide by the number of tasks, as "
            "WeiChengTseng/Pytorch-PCGrad's default does (used to reproduce the paper's Table 3).",
            "choices": ["sum", "mean"],
        },
    )
    aggregator: str | None = field(
        default=None,
        metadata={"help": "Gradient aggregator for strategy pcgrad (default: pcgrad or pcgrad_mean by reduction)."},
    )
    group_by_length: bool = field(
        default=False,
        metadata={
            "help": "Length-bucketed batches: rows of similar length share a batch (less padding, faster); the "
            "batches are still shuffled. Gradient accumulation then no longer reproduces a larger batch exactly. "
            "The same as transformers' train_sampling_strategy=group_by_length (kept as an alias)."
        },
    )
    embedding_updates: str = field(
        default="dense",
        metadata={
            "help": "How the word-embedding matrix trains: dense (stock AdamW), sparse (AdamW on the rows a batch "
            "touched only; untouched rows keep their values and moments, a lighter optimizer step) or frozen (not "
            "trained: no embedding gradient or optimizer state).",
            "choices": list(EMBEDDING_UPDATES),
        },
    )
    cudnn_attention: bool = field(
        default=False,
        metadata={
            "help": "On a CUDA GPU, let PyTorch use cuDNN's attention kernel in this run (training, evaluation and "
            "the leaderboard files at its end). Off by default: it builds a plan for each new input shape, and "
            "length-grouped batches bring hundreds of shapes (on an H200 the first pass over MiniLM batches ran 5x "
            "slower with it). predict.py and the pipeline always leave it out. No effect off CUDA."
        },
    )
    eval_only: bool = field(
        default=False,
        metadata={
            "help": "Score the dev sets (and write predictions) of model_name_or_path without training (the same as "
            "do_eval + do_predict without do_train)."
        },
    )
    head_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the task heads (default: learning_rate). Fresh heads on a pretrained encoder "
            "often want a larger one than the encoder."
        },
    )
    layerwise_lr_decay: float = field(
        default=1.0,
        metadata={
            "help": "Layer-wise learning-rate decay: the top encoder layer trains at learning_rate, each layer below "
            "at this factor times the one above, the embeddings lowest (1.0: off). Keeps the general lower layers "
            "close to the pretrained ones."
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop when metric_for_best_model has not improved for this many evaluations (needs "
            "load_best_model_at_end, so the best checkpoint is the one kept)."
        },
    )
    average_checkpoints: int = field(
        default=0,
        metadata={
            "help": "After training, replace the model by the average of the weights of the last N saved "
            "checkpoints (checkpoint averaging; 0: off). Needs save_strategy and save_total_limit >= N."
        },
    )
    gradient_telemetry: bool = field(
        default=False,
        metadata={
            "help": "At logging steps, measure the task gradients on the shared encoder (cosines, conflicts, norm "
            "ratio). Costs one extra backward per task on those steps only."
        },
    )
    max_nonfinite_steps: int = field(
        default=10,
        metadata={"help": "Skip steps whose loss is NaN/inf; stop with an error after this many in a row."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Let a run replace the finished run (metrics.json, model weights or predictions/) already in "
            "output_dir; without it such a run is refused before anything loads (resume_from_checkpoint continues "
            "it instead). A training run also removes the earlier run's checkpoint-* folders when training starts."
        },
    )

    @classmethod
    def from_training_args(cls, args: TrainingArguments, **multitask) -> "MultitaskTrainingArguments":
        """A plain ``TrainingArguments`` with the multitask defaults (or the ``multitask`` settings) added."""
        if isinstance(args, cls) and not multitask:
            return args
        stock = {f.name: getattr(args, f.name) for f in fields(TrainingArguments) if f.init and hasattr(args, f.name)}
        if isinstance(args, cls):
            stock.update({f.name: getattr(args, f.name) for f in fields(cls) if f.init})
        return cls(**{**stock, **multitask})

    def run_phases(self) -> tuple[bool, bool, bool]:
        """``(train, evaluate, predict)`` as in run_glue: the phases named by ``do_train``/``do_eval``/``do_predict``;
        when none is named, all three (a config that only sets hyper-parameters trains, scores and predicts).
        ``do_eval`` switched on by ``eval_strategy`` alone does not name a phase; ``eval_only``: evaluate + predict."""
        if self.eval_only:
            return False, True, True
        named_eval = self.do_eval and self.eval_strategy == IntervalStrategy.NO
        if not (self.do_train or named_eval or self.do_predict):
            return True, True, True
        return self.do_train, self.do_eval, self.do_predict

    def _refuse_ignored_stock_flags(self) -> None:
        """Stock flags that MultitaskTrainer cannot honour fail here with what to do instead, rather than being
        accepted and silently ignored."""
        if self.label_smoothing_factor:
            raise MultitaskConfigError(
                f"label_smoothing_factor={self.label_smoothing_factor} is not used by the multitask trainer (each "
                "task has its own loss): set tasks.<task>.label_smoothing on the classification tasks instead"
            )
        if self.train_sampling_strategy == "group_by_length":
            self.group_by_length = True
        elif self.train_sampling_strategy != "random":
            raise MultitaskConfigError(
                f"train_sampling_strategy={self.train_sampling_strategy!r} is not supported: multitask batches always "
                "follow the shuffled per-task plan (task_sampling); use 'random' (default) or 'group_by_length'"
            )
        if self.group_by_length:
            self.train_sampling_strategy = "group_by_length"
        if self.length_column_name != "length":
            raise MultitaskConfigError(
                "length_column_name is not used: mtbert's tokenization writes each row's length into 'length'"
            )
        refused = {
            "dataloader_drop_last": (self.dataloader_drop_last, "the multitask batch plan keeps every row"),
            "neftune_noise_alpha": (self.neftune_noise_alpha is not None, "NEFTune is not supported here"),
            "batch_eval_metrics": (self.batch_eval_metrics, "metrics are computed per task over the whole dev set"),
            "include_for_metrics": (bool(self.include_for_metrics), "compute_metrics receives logits and labels only"),
            "prediction_loss_only": (self.prediction_loss_only, "evaluation needs the predictions for its metrics"),
            "eval_do_concat_batches": (not self.eval_do_concat_batches, "evaluation needs whole-split predictions"),
            "label_names": (self.label_names is not None, "every task's labels are its rows' 'label' column"),
        }
        for name, (is_set, why) in refused.items():
            if is_set:
                raise MultitaskConfigError(f"{name} is not supported by MultitaskTrainer ({why}): leave it unset")

    def _check_ranges_and_combinations(self) -> None:
        """Ranges and combinations the stock ``__post_init__`` lets through (or reports as a bare ``ValueError``),
        checked before anything is loaded: each one would otherwise fail minutes later or be silently ignored."""
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise MultitaskConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("learning_rate", "head_learning_rate", "weight_decay"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise MultitaskConfigError(f"{name} must be >= 0, got {value!r}")
        if self.aggregator is not None:
            key = str(self.aggregator).strip().lower().replace("-", "_")
            if key not in AGGREGATORS:
                raise MultitaskConfigError(
                    f"aggregator: {self.aggregator!r} is not one of {', '.join(AGGREGATORS)}"
                    + _hint(key, AGGREGATORS)
                )
            if self.strategy != "pcgrad":
                raise MultitaskConfigError(
                    f"aggregator: {self.aggregator!r} has no effect under strategy: {self.strategy} (only strategy: "
                    "pcgrad combines task gradients): set strategy: pcgrad, or remove aggregator"
                )
        output_dir = self.output_dir and os.path.expanduser(str(self.output_dir))
        if output_dir and os.path.exists(output_dir) and not os.path.isdir(output_dir):
            raise MultitaskConfigError(
                f"output_dir {self.output_dir!r} is a file, not a folder: choose another output_dir"
            )
        if self.load_best_model_at_end:
            if self.metric_for_best_model is None:  # the stock default 'loss' is never reported by the trainer
                self.metric_for_best_model = "average"
                if self.greater_is_better is None:
                    self.greater_is_better = True
            if _strategy_name(self.eval_strategy) == "no":
                raise MultitaskConfigError(
                    "load_best_model_at_end needs evaluations to pick the best checkpoint: set eval_strategy "
                    "(steps or epoch, the same as save_strategy)"
                )
            eval_strategy, save_strategy = _strategy_name(self.eval_strategy), _strategy_name(self.save_strategy)
            if save_strategy != "best" and eval_strategy != save_strategy:
                raise MultitaskConfigError(
                    f"load_best_model_at_end needs eval_strategy and save_strategy to match (got eval_strategy: "
                    f"{eval_strategy}, save_strategy: {save_strategy}): set both to steps or both to epoch"
                )

    def _resolve_bf16(self) -> None:
        """``bf16: auto`` (or ``measure``) becomes on or off here, by the hardware or a start-up measurement
        (:mod:`mtbert.precision`), with the reason kept in ``bf16_reason`` for the log. bf16 on a machine with no
        accelerator means CPU autocast, so ``use_cpu`` is set rather than refused as the stock check would."""
        self.bf16_reason = None
        if not isinstance(self.bf16, bool):
            if self.fp16 and str(self.bf16).strip().lower() in ("auto", "measure"):
                self.bf16, self.bf16_reason = False, "fp16 is set"
            else:
                processes = int(os.environ.get("WORLD_SIZE", "1"))
                try:
                    self.bf16, self.bf16_reason = resolve_bf16(self.bf16, use_cpu=self.use_cpu, processes=processes)
                except ValueError as error:
                    raise MultitaskConfigError(str(error)) from None
        if self.bf16 and not self.use_cpu and not has_accelerator():
            self.use_cpu = True

    def __post_init__(self):
        self.strategy = _choice(self.strategy, STRATEGIES, "strategy")
        self.task_sampling = _choice(self.task_sampling, TASK_SAMPLINGS, "task_sampling")
        self.pcgrad_reduction = _choice(self.pcgrad_reduction, ("sum", "mean"), "pcgrad_reduction")
        self.embedding_updates = _choice(self.embedding_updates, EMBEDDING_UPDATES, "embedding_updates")
        if self.sampling_temperature <= 0:
            raise MultitaskConfigError(f"sampling_temperature must be > 0, got {self.sampling_temperature}")
        if self.max_nonfinite_steps < 1:
            raise MultitaskConfigError(f"max_nonfinite_steps must be >= 1, got {self.max_nonfinite_steps}")
        if not 0.0 < self.layerwise_lr_decay <= 1.0:
            raise MultitaskConfigError(f"layerwise_lr_decay must be in (0, 1], got {self.layerwise_lr_decay}")
        if self.average_checkpoints < 0 or self.average_checkpoints == 1:
            raise MultitaskConfigError(f"average_checkpoints must be 0 (off) or >= 2, got {self.average_checkpoints}")
        self._check_ranges_and_combinations()
        self._resolve_bf16()
        try:
            super().__post_init__()
        except ValueError as error:  # the stock checks' messages, as one line rather than a traceback
            raise MultitaskConfigError(" ".join(str(error).split())) from None
        self._refuse_ignored_stock_flags()
        optim = str(getattr(self.optim, "value", self.optim))
        if self.embedding_updates == "sparse" and optim not in ("adamw_torch", "adamw_torch_fused"):
            raise MultitaskConfigError(
                f"embedding_updates: sparse updates rows inside torch's AdamW, but optim is {optim}: set optim "
                "adamw_torch_fused (the default) or adamw_torch, or embedding_updates dense"
            )
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise MultitaskConfigError(f"early_stopping_patience must be >= 1, got {self.early_stopping_patience}")
            if not self.load_best_model_at_end:
                raise MultitaskConfigError(
                    "early_stopping_patience needs load_best_model_at_end: true (and metric_for_best_model), so that "
                    "the run ends on its best checkpoint rather than on the last, worse one"
                )
        if self.average_checkpoints:
            if self.save_strategy == "no":
                raise MultitaskConfigError(
                    "average_checkpoints needs saved checkpoints: set save_strategy (e.g. epoch)"
                )
            if self.save_total_limit is not None and self.save_total_limit < self.average_checkpoints:
                raise MultitaskConfigError(
                    f"average_checkpoints={self.average_checkpoints} needs save_total_limit >= "
                    f"{self.average_checkpoints} (got {self.save_total_limit}): older checkpoints would be deleted"
                )
