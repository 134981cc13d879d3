"""``TrainingArguments`` plus the multitask settings: how steps are taken and which task each batch comes from."""

from __future__ import annotations

import difflib
import json
import math
import numbers
import os
import re
from dataclasses import dataclass, field, fields

from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy

from ..data.sampling import TASK_SAMPLINGS
from ..hub.publish import output_folder_problem
from ..models.mtbert.configuration_mtbert import MultitaskConfigError, _choice
from .aggregators import AGGREGATORS, check_aggregator_options
from .distillation import DistillationSettings
from .optimization import EMBEDDING_UPDATES
from .precision import has_accelerator, resolve_bf16
from .weighting import WEIGHTINGS, check_weighting_options

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
    aggregator_options: dict | str | None = field(
        default=None,
        metadata={
            "help": "Options of the aggregator, as a mapping (JSON on the command line): cagrad {c, rescale, "
            "norm_eps}, imtlg {rtol}, upgrad {norm_eps, reg_eps}, nash_mtl {max_norm, iterations}."
        },
    )
    task_weighting: str = field(
        default="static",
        metadata={
            "help": "Loss-based task weighting: static (the losses as they are, times each task's loss_weight), "
            "uncertainty (Kendall et al.), dwa (dynamic weight average), famo (FAMO; not under round_robin) or "
            "dbmtl (log losses, DB-MTL). Works under every strategy; with pcgrad it scales each task's gradient "
            "before the aggregator.",
            "choices": list(WEIGHTINGS),
        },
    )
    weighting_options: dict | str | None = field(
        default=None,
        metadata={
            "help": "Options of task_weighting, as a mapping (JSON on the command line): uncertainty {lr, init}, "
            "dwa {temperature, period}, famo {lr, gamma, eps}, dbmtl {eps}."
        },
    )
    group_by_length: bool = field(
        default=False,
        metadata={
            "help": "Length-bucketed batches: rows of similar length share a batch (less padding, faster); the "
            "batches are still shuffled. Gradient accumulation then no longer reproduces a larger batch exactly. "
            "The same as transformers' train_sampling_strategy=group_by_length (kept as an alias)."
        },
    )
    share_rows: bool = field(
        default=True,
        metadata={
            "help": "Tasks whose training rows are the same rows, encoded alike (one data set with labels for several "
            "heads, e.g. an intent and slot tags per utterance) share each batch: one encoder pass per step feeds "
            "every such task's loss (pcgrad still takes each task's gradient apart). false: each task draws its own "
            "batches, as before this option existed."
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
    static_shapes: bool = field(
        default=False,
        metadata={
            "help": "Pad every training batch to one of a few lengths (length_buckets) instead of its longest row, "
            "so that a CUDA graph or compiled kernel captured per shape serves many batches. Costs padding: the "
            "padded share under static and dynamic padding is logged once at the start of training."
        },
    )
    length_buckets: str = field(
        default="auto",
        metadata={
            "help": "The lengths static_shapes pads to: auto (4 lengths chosen from the training rows' length "
            'distribution to pad least) or a list such as [32, 64, 128] ("32,64,128" on the command line); rows '
            "longer than the largest pad to their own length."
        },
    )
    packed_batches: bool = field(
        default=False,
        metadata={
            "help": "Run the encoder on packed rows: a batch's real tokens in one row with per-sequence position ids "
            "and attention kept inside each sequence (torch's variable-length FlashAttention kernel on a CUDA GPU in "
            "bf16; an exact block-diagonal reference elsewhere). BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT and "
            "ModernBERT backbones; refused for others."
        },
    )
    cuda_graphs: str = field(
        default="auto",
        metadata={
            "help": "Capture each task's forward and backward in CUDA graphs, one per batch shape (use with "
            "static_shapes): true, false, or auto (on only on a CUDA GPU with static_shapes, where a start-up "
            "measurement finds it faster). true off CUDA is refused.",
            "choices": ["auto", "true", "false"],
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
    distill: dict | str | None = field(
        default=None,
        metadata={
            "help": "Knowledge distillation from a trained mtbert model: {teacher: PATH or [PATHS] (several: an "
            "averaged ensemble), alpha: 0.5 (the teacher's share of each task's loss), temperature: 2.0, batch_size: "
            "64 (teacher labelling), cache_dir: ~/.cache/mtbert/teacher_targets}; a bare PATH is the teacher."
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
    def from_training_args(cls, args: TrainingArguments, **multitask) -> MultitaskTrainingArguments:
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

    def _check_shape_settings(self) -> None:
        """static_shapes / length_buckets / packed_batches / cuda_graphs (issue 26), one-line errors."""
        from ..data.static_shapes import parse_buckets
        from .cuda_graphs import check_cuda_graphs_setting

        self.length_buckets = parse_buckets(self.length_buckets)  # type: ignore[assignment]  # lengths or "auto"
        self.cuda_graphs = check_cuda_graphs_setting(self.cuda_graphs, use_cpu=self.use_cpu)

    def _check_ranges_and_combinations(self) -> None:
        """Ranges and combinations the stock ``__post_init__`` lets through (or reports as a bare ``ValueError``),
        checked before anything is loaded: each one would otherwise fail minutes later or be silently ignored."""
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:  # True is an int to Python
                raise MultitaskConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("learning_rate", "head_learning_rate", "weight_decay"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise MultitaskConfigError(f"{name} must be >= 0, got {value!r}")
        if self.aggregator is not None:
            key = str(self.aggregator).strip().lower().replace("-", "_")
            if key not in AGGREGATORS:
                raise MultitaskConfigError(
                    f"aggregator: {self.aggregator!r} is not one of {', '.join(AGGREGATORS)}" + _hint(key, AGGREGATORS)
                )
            if self.strategy != "pcgrad":
                raise MultitaskConfigError(
                    f"aggregator: {self.aggregator!r} has no effect under strategy: {self.strategy} (only strategy: "
                    "pcgrad combines task gradients): set strategy: pcgrad, or remove aggregator"
                )
        self._check_weighting_and_aggregator_options()
        problem = output_folder_problem(self.output_dir) if self.output_dir is not None else None
        if problem:  # empty, a file, or below a file
            raise MultitaskConfigError(problem)
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

    @staticmethod
    def _mapping(name: str, value):
        """A mapping setting given as JSON text (the command line) parsed, by name when it is not a mapping."""
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError as error:
                raise MultitaskConfigError(f"{name}: {value!r} is not a JSON mapping ({error})") from None
            if not isinstance(parsed, dict):
                raise MultitaskConfigError(f"{name} must be a mapping of options, got {value!r}")
            value = parsed
        if value is not None and not isinstance(value, dict):
            raise MultitaskConfigError(f"{name} must be a mapping of options, got {value!r}")
        return value

    def _check_weighting_and_aggregator_options(self) -> None:
        """task_weighting, weighting_options and aggregator_options: names, keys and values, and the combinations no
        step can honour, each refused in one line naming the setting."""
        self.task_weighting = _choice(self.task_weighting, tuple(WEIGHTINGS), "task_weighting")
        self.weighting_options = self._mapping("weighting_options", self.weighting_options)
        self.aggregator_options = self._mapping("aggregator_options", self.aggregator_options)
        try:
            check_weighting_options(self.task_weighting, self.weighting_options)
        except ValueError as error:
            raise MultitaskConfigError(str(error)) from None
        if self.strategy == "round_robin" and WEIGHTINGS[self.task_weighting].needs_all_tasks:
            raise MultitaskConfigError(
                f"task_weighting: {self.task_weighting} compares every task's loss within a step, but strategy "
                "round_robin takes one task per step: use strategy sum or pcgrad, or another task_weighting"
            )
        if self.aggregator_options:
            if self.strategy != "pcgrad":
                raise MultitaskConfigError(
                    f"aggregator_options has no effect under strategy: {self.strategy} (only strategy: pcgrad "
                    "combines task gradients): set strategy: pcgrad, or remove aggregator_options"
                )
            name = self.aggregator or ("pcgrad_mean" if self.pcgrad_reduction == "mean" else "pcgrad")
            try:
                check_aggregator_options(str(name).strip().lower().replace("-", "_"), self.aggregator_options)
            except ValueError as error:
                raise MultitaskConfigError(str(error)) from None
        if self.aggregator is not None and str(self.aggregator).strip().lower() == "upgrad":
            try:
                import qpsolvers  # noqa: F401
                import quadprog  # noqa: F401
                import torchjd  # noqa: F401
            except ImportError:
                raise MultitaskConfigError(
                    "aggregator: upgrad runs TorchJD's UPGrad, which is not installed here: pip install "
                    "'mtbert[torchjd]' (torchjd with its quadprog solver)"
                ) from None

    def _resolve_bf16(self) -> None:
        """``bf16: auto`` (or ``measure``) becomes on or off here, by the hardware or a start-up measurement
        (:mod:`mtbert.training.precision`), with the reason kept in ``bf16_reason`` for the log. bf16 on a machine
        with no accelerator means CPU autocast, so ``use_cpu`` is set rather than refused as the stock check would."""
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
        self._check_numbers()
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
        self._check_shape_settings()
        settings = DistillationSettings.parse(self.distill, require_teacher=False)  # or MultitaskTrainer(teacher=)
        self.distill = settings.as_dict() if settings else None
        self._resolve_bf16()
        self._parse_dict_fields()
        self._check_distributed()
        given = self._stock_settings_given()
        try:
            super().__post_init__()
        except (ValueError, TypeError, ImportError, RuntimeError, OSError) as error:  # the stock checks, one line
            raise self._stock_error(error, given) from None
        self._refuse_ignored_stock_flags()
        self._check_tools()
        self._check_optimizer_and_schedule()
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

    # -- checks added for the property tests of issue 28 (tests/cli/test_settings_properties.py) --------------------

    def _check_distributed(self) -> None:
        """ddp_backend sets up the process group of a distributed run; in a single process the stock code fails on
        it with a message that does not name it."""
        launched = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 or self.local_rank != -1
        if self.ddp_backend is not None and not launched:
            raise MultitaskConfigError(
                f"ddp_backend {self.ddp_backend!r} is for distributed runs, but this is a single process (no "
                "WORLD_SIZE): launch it with torchrun or accelerate launch, or remove ddp_backend"
            )

    def _check_numbers(self) -> None:
        """Numbers the run cannot honour, refused by name before they reach torch or are silently ignored: a wrong
        type (the Python API), NaN or inf, and values outside what their setting means."""

        def number(name: str, whole: bool = False, optional: bool = False):
            value = getattr(self, name)
            if value is None and optional:
                return None
            kind = numbers.Integral if whole else numbers.Real
            if isinstance(value, bool) or not isinstance(value, kind):
                what = "a whole number" if whole else "a number"
                raise MultitaskConfigError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
            if not whole and not math.isfinite(value):
                raise MultitaskConfigError(f"{name} must be a finite number, got {value!r}")
            if not whole and not isinstance(value, float):  # 0 for 0.0: torch's optimizers take floats only
                value = float(value)
                setattr(self, name, value)
            return value

        def refuse(name: str, rule: str) -> None:
            raise MultitaskConfigError(f"{name} must be {rule}, got {getattr(self, name)!r}")

        for name in (
            "group_by_length",
            "share_rows",
            "cudnn_attention",
            "eval_only",
            "gradient_telemetry",
            "overwrite_output_dir",
            "static_shapes",
            "packed_batches",
        ):
            if not isinstance(getattr(self, name), bool):  # "false" would read as true
                raise MultitaskConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in (
            "learning_rate",
            "weight_decay",
            "num_train_epochs",
            "warmup_steps",
            "eval_delay",
            "label_smoothing_factor",
        ):
            if number(name) < 0:
                refuse(name, ">= 0")
        for name in ("head_learning_rate", "max_grad_norm", "neftune_noise_alpha"):
            if number(name, optional=True) is not None and getattr(self, name) < 0:
                refuse(name, ">= 0" + (" (0: no clipping)" if name == "max_grad_norm" else ""))
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= number(name) < 1:
                refuse(name, "in [0, 1)")
        if number("adam_epsilon") < 0:
            refuse("adam_epsilon", ">= 0")
        for name in ("logging_steps", "save_steps", "eval_steps"):  # a step count, or a fraction (< 1) of the run
            if number(name, optional=name == "eval_steps") is not None and getattr(self, name) <= 0:
                refuse(name, "> 0 (a number of steps, or a fraction below 1 of the training steps)")
        for name in ("sampling_temperature", "layerwise_lr_decay"):
            number(name)
        if number("max_steps", whole=True) == 0 or self.max_steps < -1:
            refuse("max_steps", "-1 (unset: num_train_epochs decides) or >= 1 (0 steps would train nothing)")
        if self.max_steps == -1 and self.num_train_epochs == 0 and not self.eval_only:
            raise MultitaskConfigError(
                "num_train_epochs 0 with max_steps unset trains nothing: set num_train_epochs or max_steps, or score "
                "a trained model with eval_only"
            )
        for name in ("seed", "data_seed"):  # numpy's and torch's generators take 0 .. 2**32 - 1
            value = number(name, whole=True, optional=name == "data_seed")
            if value is not None and not 0 <= value < 2**32:
                refuse(name, "in 0 .. 4294967295")
        for name, least in (
            ("dataloader_num_workers", 0),
            ("local_rank", -1),
            ("max_nonfinite_steps", 1),
            ("average_checkpoints", 0),
            ("ddp_timeout", 1),
        ):
            if number(name, whole=True) < least:
                refuse(name, f">= {least}")
        for name in (
            "save_total_limit",
            "eval_accumulation_steps",
            "ddp_bucket_cap_mb",
            "early_stopping_patience",
            "dataloader_prefetch_factor",
            "torch_empty_cache_steps",
        ):
            if number(name, whole=True, optional=True) is not None and getattr(self, name) < 1:
                refuse(name, ">= 1 (or unset)")

    def _parse_dict_fields(self) -> None:
        """The stock JSON settings (lr_scheduler_kwargs, accelerator_config, ...) parsed here, so that a mistake in
        one names it rather than showing only the JSON parser's message."""
        for name in getattr(self, "_VALID_DICT_FIELDS", ()):
            value = getattr(self, name, None)
            if isinstance(value, str) and value.strip().startswith("{"):
                try:
                    parsed = json.loads(value)
                except ValueError as error:
                    raise MultitaskConfigError(f"{name}: {value!r} is not valid JSON ({error})") from None
                setattr(self, name, parsed)

    def _stock_settings_given(self) -> list[str]:
        """The stock settings that differ from their defaults, named in a stock check's message that names none."""
        unset: tuple[object, ...] = (None, False, "", "no", [], ())
        given = []
        for f in fields(TrainingArguments):
            if f.init and f.name != "output_dir" and hasattr(self, f.name):
                default = f.default_factory() if callable(f.default_factory) else f.default
                value = getattr(self, f.name)
                if value != default and not (value in unset and default in unset):
                    given.append(f.name)
        return given

    @staticmethod
    def _stock_error(error: BaseException, given: list[str]) -> MultitaskConfigError:
        message = " ".join(str(error).split()) or type(error).__name__
        named = any(re.search(rf"(?<![A-Za-z_]){re.escape(name)}(?![A-Za-z_])", message) for name in given)
        if given and not named:
            message += f" (a stock TrainingArguments check, with the settings given: {', '.join(given)})"
        return MultitaskConfigError(message)

    def _check_tools(self) -> None:
        """Settings that need a package or name a tool: refused here when the package is missing or the name is not
        one the library knows, rather than when the trainer starts (after the model is loaded)."""
        from transformers.integrations.integration_utils import (
            INTEGRATION_TO_CALLBACK,
            get_available_reporting_integrations,
        )
        from transformers.utils import is_liger_kernel_available, is_torch_xla_available

        available = set(get_available_reporting_integrations())
        for name in self.report_to or []:
            if name not in INTEGRATION_TO_CALLBACK:
                raise MultitaskConfigError(
                    f"report_to: {name!r} is not one of none, all, {', '.join(INTEGRATION_TO_CALLBACK)}"
                    + _hint(str(name), INTEGRATION_TO_CALLBACK)
                )
            if name not in available:
                raise MultitaskConfigError(f"report_to: {name!r} needs its package installed (pip install {name})")
        debug = [str(getattr(option, "value", option)) for option in (self.debug or [])]
        if "underflow_overflow" in debug:  # its forward hooks call abs() on every tensor, mtbert's bool masks too
            raise MultitaskConfigError("debug underflow_overflow is not supported by the multitask model: remove it")
        if "tpu_metrics_debug" in debug and not is_torch_xla_available():
            raise MultitaskConfigError("debug tpu_metrics_debug needs a TPU (torch_xla): remove it")
        if self.use_liger_kernel and not is_liger_kernel_available():
            raise MultitaskConfigError("use_liger_kernel needs the liger-kernel package (pip install liger-kernel)")
        modes = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
        if self.torch_compile_mode is not None and self.torch_compile_mode not in modes:
            raise MultitaskConfigError(
                f"torch_compile_mode: {self.torch_compile_mode!r} is not one of {', '.join(modes)}"
                + _hint(str(self.torch_compile_mode), modes)
            )
        if self.torch_compile_backend is not None:
            import torch._dynamo

            backends = torch._dynamo.list_backends(exclude_tags=())
            if self.torch_compile_backend not in backends:
                raise MultitaskConfigError(
                    f"torch_compile_backend: {self.torch_compile_backend!r} is not one of {', '.join(backends)}"
                    + _hint(str(self.torch_compile_backend), backends)
                )
        checkpointing = self.activation_checkpointing_kwargs or self.gradient_checkpointing_kwargs
        if isinstance(checkpointing, dict):
            import inspect

            import torch.utils.checkpoint

            takes = [
                p
                for p in inspect.signature(torch.utils.checkpoint.checkpoint).parameters
                if p not in ("function", "args", "kwargs")
            ]
            unknown = sorted(set(checkpointing) - set(takes))
            if unknown:
                raise MultitaskConfigError(
                    f"activation_checkpointing_kwargs (gradient_checkpointing_kwargs): torch's checkpoint takes no "
                    f"{', '.join(map(repr, unknown))}; it takes {', '.join(takes)}"
                )

    def _check_optimizer_and_schedule(self) -> None:
        """Build the optimizer and the learning-rate schedule once, on a one-number parameter: what they refuse (an
        optimizer whose package is missing, an optim_args key the optimizer does not read, a value it rejects, a
        schedule argument it does not take) fails here by name, not when training starts."""
        import torch
        from transformers import Trainer, get_scheduler
        from transformers.optimization import Adafactor

        optim = str(getattr(self.optim, "value", self.optim))
        pairs = [p for p in (self.optim_args or "").replace(" ", "").split(",") if p]
        if self.optim_args and (not pairs or any(p.count("=") != 1 or p.startswith("=") for p in pairs)):
            raise MultitaskConfigError(
                f"optim_args {self.optim_args!r} must be key=value pairs separated by commas (e.g. momentum=0.9)"
            )
        try:
            optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self)
        except ImportError as error:
            raise MultitaskConfigError(f"optim {optim}: {' '.join(str(error).split())}") from None
        except ValueError as error:
            message = " ".join(str(error).split())
            if re.search(r"install|import", message, re.IGNORECASE):
                raise MultitaskConfigError(f"optim {optim}: {message}") from None
            if self.optim_args:
                raise MultitaskConfigError(f"optim_args {self.optim_args!r} for optim {optim}: {message}") from None
            return  # an optimizer that needs the model to be built (GaLore, APOLLO, LOMO): checked when training
        if optimizer_cls not in (
            torch.optim.AdamW,
            torch.optim.SGD,
            torch.optim.Adagrad,
            torch.optim.RMSprop,
            Adafactor,
        ):
            return
        unused = [p.split("=")[0] for p in pairs if p.split("=")[0] not in kwargs]
        if unused:
            raise MultitaskConfigError(
                f"optim_args: optim {optim} does not read {', '.join(map(repr, unused))} (it would be ignored); "
                "remove it, or choose an optim that takes it (sgd, adagrad, rmsprop read their own keys)"
            )
        parameter = torch.nn.Parameter(torch.zeros(1))
        probe = {k: v for k, v in kwargs.items() if k not in ("fused", "foreach")}  # kernels for the device, later
        try:
            optimizer = optimizer_cls([parameter], **probe)
        except (ValueError, TypeError, RuntimeError) as error:
            raise MultitaskConfigError(
                f"optim {optim} refuses these settings (learning_rate, weight_decay, adam_*, optim_args): "
                f"{' '.join(str(error).split())}"
            ) from None
        schedule = str(getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type))
        try:
            get_scheduler(
                schedule,
                optimizer,
                num_warmup_steps=0,
                num_training_steps=10,
                scheduler_specific_kwargs=dict(self.lr_scheduler_kwargs or {}),  # type: ignore[arg-type]
            )
        except (ValueError, TypeError, KeyError, ZeroDivisionError) as error:
            raise MultitaskConfigError(
                f"lr_scheduler_type {schedule} with lr_scheduler_kwargs {self.lr_scheduler_kwargs or {}}: "
                f"{' '.join(str(error).split())}"
            ) from None
