"""``TrainingArguments`` plus the multitask settings: how steps are taken and which task each batch comes from."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .configuration_mtbert import MultitaskConfigError, _choice
from .sampling import TASK_SAMPLINGS

STRATEGIES = ("round_robin", "sum", "pcgrad")


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
            "batches are still shuffled. Gradient accumulation then no longer reproduces a larger batch exactly."
        },
    )
    eval_only: bool = field(
        default=False,
        metadata={"help": "Score the dev sets (and write predictions) of model_name_or_path without training."},
    )
    head_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the task heads (default: learning_rate). Fresh heads on a pretrained encoder "
            "often want a larger one than the encoder."
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

    def __post_init__(self):
        self.strategy = _choice(self.strategy, STRATEGIES, "strategy")
        self.task_sampling = _choice(self.task_sampling, TASK_SAMPLINGS, "task_sampling")
        self.pcgrad_reduction = _choice(self.pcgrad_reduction, ("sum", "mean"), "pcgrad_reduction")
        if self.sampling_temperature <= 0:
            raise MultitaskConfigError(f"sampling_temperature must be > 0, got {self.sampling_temperature}")
        if self.max_nonfinite_steps < 1:
            raise MultitaskConfigError(f"max_nonfinite_steps must be >= 1, got {self.max_nonfinite_steps}")
        super().__post_init__()
