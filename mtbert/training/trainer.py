"""``MultitaskTrainer``: the Hugging Face Trainer, taught to draw batches task by task and to evaluate every task.

    trainer = MultitaskTrainer(model, args, train_dataset={"sst": ds, "sts": ds2}, eval_dataset={...},
                               processing_class=tokenizer, compute_metrics=...)
    trainer.train(); trainer.evaluate(); trainer.predict(test_ds, task="sst")

What changes compared with the stock Trainer:
- the datasets are ``{task: tokenized dataset}`` (see :func:`mtbert.prepare_dataset`); training batches follow a
  per-epoch plan (:class:`~mtbert.data.sampling.MultitaskBatchSampler`) that depends only on ``(seed, epoch)``, so a
  resumed run skips to exactly where it stopped;
- ``training_step`` runs one task (``round_robin``), sums every task's loss (``sum``), or combines per-task
  gradients with an aggregator such as PCGrad (``pcgrad``, through :mod:`mtbert.training.backward`): the step
  implementations are in :mod:`mtbert.training.steps`, this module holds the stock API around them;
- per-task training losses are logged next to ``loss`` (``loss_sst``, ...), read from the device only at logging
  steps; NaN/inf losses are skipped and counted, and stop the run when they persist;
- ``evaluate`` runs the stock evaluation loop once per task and scores it (``eval_sst_accuracy``, ``eval_qqp_f1``,
  ``eval_sts_pearson``, ...) plus the paper's ``eval_average``, which works as ``metric_for_best_model``;
- checkpoint marking, checkpoint averaging and the model card are callbacks (:mod:`mtbert.training.callbacks`).
"""

from __future__ import annotations

import inspect
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import EarlyStoppingCallback, EvalPrediction, TrainingArguments
from transformers.trainer_utils import PredictionOutput

from ..data.collators import ENCODER_INPUT_KEYS, MODEL_COLUMNS, MultitaskCollator, TaskCollator
from ..data.packing import enable_packing
from ..data.sampling import MultitaskBatchSampler, MultitaskDataset
from ..data.static_shapes import training_collator
from ..metrics import PRIMARY_METRIC, compute_task_metrics
from ..models.mtbert.kinds_mtbert import get_kind
from ..tasks.token_data import token_results
from .backward import TaskGradients
from .callbacks import CheckpointAveragingCallback, CheckpointMarkerCallback, ModelCardCallback
from .cuda_graphs import training_graphs
from .distillation import DistillationSettings, label_training_data
from .optimization import RowSparseAdamW, parameter_learning_rates, word_embedding_weights
from .steps import MultitaskSteps, _to_device
from .steps import NonFiniteLossError as NonFiniteLossError  # re-exported: it was defined here
from .training_args import MultitaskTrainingArguments
from .weighting import LossWeighting

logger = logging.getLogger(__name__)

WEIGHTING_STATE_NAME = "task_weighting.json"  # a learned task weighting's state, in every checkpoint folder


class MultitaskDataLoader(DataLoader):
    """A DataLoader whose ``set_epoch`` reaches the multitask batch sampler (the Trainer calls it every epoch)."""

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)  # type: ignore[union-attr]


class _TaskBatches:
    """Collate one task's rows for the stock evaluation loop: the padded batch plus the task's name."""

    def __init__(self, task: str, pad_token_id: int):
        self.task = task
        self.collate = TaskCollator(pad_token_id)

    def __call__(self, rows):
        return {**self.collate(rows), "task": self.task}


class MultitaskTrainer(MultitaskSteps):
    """Train one :class:`~mtbert.MultitaskBertModel` on several tasks at once, with the stock Trainer's API.

    Args:
        model: the multitask model.
        args: :class:`~mtbert.MultitaskTrainingArguments`; a plain ``TrainingArguments`` is converted (multitask
            defaults: ``strategy="round_robin"`` ...).
        train_dataset: ``{task: tokenized datasets.Dataset}`` of training rows (a single dataset if the model has
            one task).
        eval_dataset: ``{task: tokenized dataset with labels}``, scored by :meth:`evaluate`.
        processing_class: the tokenizer (its pad id pads the batches).
        compute_metrics: called once per task with an ``EvalPrediction`` of that task's logits and labels (in dataset
            order); its keys are reported as ``eval_<task>_<key>`` beside mtbert's own task metrics. If it takes a
            ``task`` argument, the task's name is passed.
        model_init: instead of ``model``, a function returning a fresh model (taking no argument, or the Optuna
            trial), called again at every ``train()``: what :meth:`hyperparameter_search` needs. Every model it
            returns must have the same tasks.
        max_train_samples: ``{task: n}``: at most ``n`` random rows of that task per epoch, redrawn every epoch.
        teacher: knowledge distillation: a saved mtbert model folder (or a list, averaged as an ensemble) that
            labels the training rows once (cached on disk) and teaches the model beside the gold labels; ``alpha``
            and ``temperature`` come from ``args.distill`` (default 0.5 and 2.0). See
            :mod:`mtbert.training.distillation`.
        train_datasets, eval_datasets: deprecated names of ``train_dataset`` and ``eval_dataset``.
    """

    # what __init__ makes of the stock attributes: multitask arguments, and datasets that may be {task: Dataset}
    args: MultitaskTrainingArguments
    model: Any
    train_dataset: Any
    eval_dataset: Any

    def __init__(
        self,
        model=None,
        args: TrainingArguments | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        model_init=None,
        compute_loss_func=None,
        compute_metrics=None,
        callbacks=None,
        optimizers=(None, None),
        *,
        train_datasets: dict[str, Any] | None = None,
        eval_datasets: dict[str, Any] | None = None,
        max_train_samples: dict[str, int] | None = None,
        teacher: str | Sequence[str] | None = None,
        **kwargs,
    ):
        if (model is None) == (model_init is None):
            raise ValueError("MultitaskTrainer needs model= or model_init= (a function returning the model), not both")
        if model_init is not None:
            if not callable(model_init):
                raise TypeError(f"model_init must be a function returning the model, got {model_init!r}")
            if optimizers != (None, None):
                raise ValueError("model_init builds a new model at every train(): pass no optimizers= with it")
            model = self._probe_model(model_init)  # the tasks come from the model: build one to read them
        for name, value in (
            ("compute_loss_func", compute_loss_func),
            ("preprocess_logits_for_metrics", kwargs.get("preprocess_logits_for_metrics")),
        ):
            if value is not None:
                raise ValueError(
                    f"MultitaskTrainer does not support {name}: each task's head computes its own loss "
                    "and predictions (use compute_metrics, which receives each task's logits)"
                )
        train_dataset = self._deprecated_alias(train_dataset, train_datasets, "train_dataset", "train_datasets")
        eval_dataset = self._deprecated_alias(eval_dataset, eval_datasets, "eval_dataset", "eval_datasets")
        self._check_arguments(args, train_dataset, eval_dataset, processing_class, compute_metrics, callbacks)
        max_train_samples = self._check_caps(max_train_samples, model.config.tasks)
        if args is None:
            args = MultitaskTrainingArguments(output_dir="trainer_output")
        elif not isinstance(args, MultitaskTrainingArguments):
            args = MultitaskTrainingArguments.from_training_args(args)
        tasks = model.config.tasks
        self.distillation = self._distillation_settings(args, teacher)
        self.teacher_labeller = None
        if train_dataset is not None and not isinstance(train_dataset, MultitaskDataset):
            train_dataset = self._by_task(train_dataset, tasks, "train_dataset")
            unknown = set(train_dataset) - set(tasks)
            if unknown:
                raise ValueError(f"training data for task(s) the model lacks: {', '.join(sorted(unknown))}")
            if self.distillation and train_dataset:  # the teacher labels every training row once, before training
                train_dataset, self.teacher_labeller = label_training_data(
                    self.distillation, train_dataset, tasks, args
                )
            train_dataset = MultitaskDataset.from_datasets(train_dataset) if train_dataset else None
        elif self.distillation and train_dataset is not None:
            raise ValueError(
                "distillation needs train_dataset as {task: tokenized dataset} (with the rows' text for the teacher), "
                "not a MultitaskDataset"
            )
        eval_dataset = self._by_task(eval_dataset, tasks, "eval_dataset") if eval_dataset is not None else None
        pad_id = getattr(processing_class, "pad_token_id", None) or 0
        super().__init__(
            model=None if model_init is not None else model,
            model_init=model_init,
            args=args,
            data_collator=data_collator or MultitaskCollator(pad_id),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=None,  # called per task by evaluate(), not by the stock loop
            callbacks=callbacks,
            optimizers=optimizers,
            **kwargs,
        )
        self._model_tasks = list(tasks)
        if args.packed_batches and model_init is not None:
            raise ValueError("packed_batches needs model= (its hooks go on the model), not model_init=")
        self._packing = enable_packing(model) if args.packed_batches else []  # mtbert.data.packing
        self._cuda_graphs = training_graphs(self.args, model)
        self.task_weighting: LossWeighting | None = None
        self._build_task_weighting()
        self.task_compute_metrics = compute_metrics
        self.pad_token_id = pad_id
        self.max_train_samples = dict(max_train_samples or {})
        self._task_loss_sums: dict[str, torch.Tensor] = {}
        self._task_loss_counts: dict[str, int] = {}
        self._telemetry_logs: dict[str, torch.Tensor] = {}
        self._last_task_batches: dict[str, dict[str, torch.Tensor]] = {}
        self._task_gradients: TaskGradients | None = None
        self._joint_task_groups: dict[str, tuple[str, ...]] = {}  # task → its joint group (rows shared)
        self._eval_loaders: dict[tuple, tuple[DataLoader, np.ndarray]] = {}
        self._nonfinite_in_a_row = 0
        self.nonfinite_skipped = 0
        self.last_eval_predictions: dict[str, dict[str, np.ndarray]] = {}  # dev predictions of the last evaluate()
        self.add_callback(CheckpointMarkerCallback())
        if args.average_checkpoints:
            self.add_callback(CheckpointAveragingCallback(args.average_checkpoints))
        if not self._callback(ModelCardCallback):
            self.add_callback(ModelCardCallback())
        if args.early_stopping_patience is not None and not self._callback(EarlyStoppingCallback):
            self.add_callback(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
        self._freeze_embeddings(self.model)

    def _freeze_embeddings(self, model) -> None:
        if self.args.embedding_updates == "frozen":  # before DDP wraps the model: no gradient, no optimizer state
            for weight in word_embedding_weights(model):
                weight.requires_grad_(False)

    @staticmethod
    def _probe_model(model_init):
        params = inspect.signature(model_init).parameters
        model = model_init() if not params else model_init(None)
        if model is None or not hasattr(getattr(model, "config", None), "tasks"):
            raise TypeError(f"model_init must return a MultitaskBertModel, got {model!r}")
        return model

    def call_model_init(self, trial=None):
        """The stock re-initialisation (a fresh model for each ``train()`` and each search trial), checked to have the
        same tasks, with ``embedding_updates: frozen`` applied again."""
        model = super().call_model_init(trial)
        tasks = list(getattr(getattr(model, "config", None), "tasks", None) or [])
        if hasattr(self, "_model_tasks") and tasks != self._model_tasks:
            raise ValueError(f"model_init returned a model with tasks {tasks}, not {self._model_tasks}")
        self._freeze_embeddings(model)
        self._task_gradients = None
        return model

    def _hp_search_setup(self, trial) -> None:
        """A search trial sets training arguments (learning_rate, task_weighting, ...): the new values are checked as
        the arguments' own checks would, and the task weighting is built afresh for the trial."""
        super()._hp_search_setup(trial)
        if trial is not None and self.hp_search_backend is not None:
            self.args._check_weighting_and_aggregator_options()
            self._build_task_weighting()

    def hyperparameter_search(
        self,
        hp_space=None,
        compute_objective=None,
        n_trials: int = 20,
        direction=None,
        backend=None,
        hp_name=None,
        **kwargs,
    ):
        """The stock search (Optuna or Ray Tune; needs ``model_init``), with the multitask defaults: the space of
        :func:`mtbert.cli.search.multitask_search_space` (learning rates, sampling temperature, task weighting) and the
        objective ``eval_average``, maximised. Pass ``hp_space``/``compute_objective``/``direction`` to change them.
        Optuna is an optional extra: ``pip install 'mtbert[search]'``."""
        if self.model_init is None:
            raise RuntimeError(
                "hyperparameter_search needs MultitaskTrainer(model_init=...), a function returning "
                "a fresh model for each trial"
            )
        if hp_space is None:
            from ..cli.search import multitask_search_space

            weightings = ["static", "uncertainty", "dwa", "dbmtl"] + (
                ["famo"] if self.args.strategy != "round_robin" else []
            )
            hp_space = multitask_search_space(task_weighting=weightings)
        if compute_objective is None:

            def compute_objective(metrics):
                return float(metrics["eval_average"])

            direction = direction or "maximize"
        return super().hyperparameter_search(
            hp_space=hp_space,
            compute_objective=compute_objective,
            n_trials=n_trials,
            direction=direction or "minimize",
            backend=backend,
            hp_name=hp_name,
            **kwargs,
        )

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        """The stock optimizer/scheduler files, plus a learned task weighting's state (``task_weighting.json``)."""
        super()._save_optimizer_and_scheduler(output_dir)
        if self.task_weighting is not None and self.args.should_save:
            import json
            import os

            os.makedirs(output_dir, exist_ok=True)
            with open(os.path.join(output_dir, WEIGHTING_STATE_NAME), "w") as handle:
                json.dump(self.task_weighting.state_dict(), handle)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """On resume: the stock states, and the task weighting's learned state from the checkpoint (every rank)."""
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None or self.task_weighting is None:
            return
        import json
        import os

        path = os.path.join(checkpoint, WEIGHTING_STATE_NAME)
        if not os.path.isfile(path):
            logger.warning(
                "%s has no %s: task_weighting %s starts afresh",
                checkpoint,
                WEIGHTING_STATE_NAME,
                self.task_weighting.name,
            )
            return
        with open(path) as handle:
            state = json.load(handle)
        if state.get("method") != self.task_weighting.name:
            raise ValueError(
                f"{path} holds task_weighting {state.get('method')}, this run uses {self.task_weighting.name}"
            )
        self.task_weighting.load_state_dict(state)
        logger.info("task_weighting %s resumed from %s", self.task_weighting.name, path)

    @staticmethod
    def _check_arguments(args, train_dataset, eval_dataset, processing_class, compute_metrics, callbacks) -> None:
        """Arguments of the wrong kind, refused by name here rather than failing later inside the stock Trainer."""
        from transformers import TrainerCallback

        if args is not None and not isinstance(args, TrainingArguments):
            raise TypeError(f"args must be MultitaskTrainingArguments (or TrainingArguments), got {args!r}")
        for name, value in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if value is not None and (isinstance(value, (str, bytes, int, float)) or not hasattr(value, "__len__")):
                raise TypeError(f"{name} must be {{task: tokenized dataset}} or one dataset, got {value!r}")
        if processing_class is not None and not hasattr(processing_class, "save_pretrained"):
            raise TypeError(f"processing_class must be the tokenizer, got {processing_class!r}")
        if compute_metrics is not None and not callable(compute_metrics):
            raise TypeError(f"compute_metrics must be a function of an EvalPrediction, got {compute_metrics!r}")
        if callbacks is not None:
            if not isinstance(callbacks, (list, tuple)):
                raise TypeError(f"callbacks must be a list of TrainerCallback, got {callbacks!r}")
            for callback in callbacks:
                kind = callback if isinstance(callback, type) else type(callback)
                if not issubclass(kind, TrainerCallback):
                    raise TypeError(f"callbacks: {callback!r} is not a TrainerCallback (or its class)")

    @staticmethod
    def _distillation_settings(args, teacher) -> DistillationSettings | None:
        """``args.distill``, with ``teacher=`` (the Python API's spelling) naming or replacing its teacher."""
        settings = DistillationSettings.parse(args.distill, require_teacher=teacher is None)
        if teacher is None:
            return settings
        base = settings.as_dict() if settings else {}
        return DistillationSettings.parse({**base, "teacher": teacher}, where="teacher")

    @staticmethod
    def _check_caps(max_train_samples, tasks) -> dict[str, int]:
        """``max_train_samples``: ``{task: rows >= 1}`` for tasks of the model (as ``DataArguments.train_caps``)."""
        if max_train_samples is None:
            return {}
        if not isinstance(max_train_samples, Mapping):
            raise TypeError(f"max_train_samples must be a mapping {{task: rows}}, got {max_train_samples!r}")
        unknown = sorted(map(str, set(max_train_samples) - set(tasks)))
        if unknown:
            raise ValueError(f"max_train_samples names task(s) the model lacks: {', '.join(unknown)}")
        for task, cap in max_train_samples.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise ValueError(f"max_train_samples for {task}: {cap!r} must be a whole number >= 1")
        return dict(max_train_samples)

    @staticmethod
    def _deprecated_alias(value, old_value, name: str, old_name: str):
        if old_value is None:
            return value
        if value is not None:
            raise ValueError(f"pass {name}= only ({old_name}= is its deprecated name)")
        warnings.warn(f"MultitaskTrainer({old_name}=...) is deprecated: use {name}=", FutureWarning, stacklevel=3)
        return old_value

    @staticmethod
    def _by_task(datasets, tasks: Mapping[str, Any], what: str, task: str | None = None) -> dict[str, Any]:
        """``{task: dataset}`` from a dict, or from one dataset with its task named (or the model's only task)."""
        if isinstance(datasets, dict) and task is None:
            return datasets
        if isinstance(datasets, dict):
            raise ValueError(f"{what}: pass either a {{task: dataset}} dict or one dataset with task=, not both")
        if task is None:
            if len(tasks) != 1:
                raise ValueError(
                    f"{what}: one dataset for a model with tasks {', '.join(tasks)}: name its task "
                    "(task=...) or pass a {task: dataset} dict"
                )
            task = next(iter(tasks))
        if task not in tasks:
            raise ValueError(f"{what}: unknown task {task!r}; the model's tasks are {', '.join(tasks)}")
        return {task: datasets}

    def _callback(self, kind):
        return next((cb for cb in self.callback_handler.callbacks if isinstance(cb, kind)), None)

    @property
    def averaged_checkpoints(self) -> int | None:
        """How many checkpoints the last ``train()`` averaged into the model (``average_checkpoints``), or None."""
        callback = self._callback(CheckpointAveragingCallback)
        return None if callback is None else callback.averaged

    # -- data ------------------------------------------------------------------------------------------------

    def get_train_dataloader(self) -> DataLoader:
        """A rank-aware multitask batch plan; not re-sharded by Accelerate (every rank must take the same task)."""
        if self.train_dataset is None:
            raise ValueError("MultitaskTrainer: training needs train_dataset ({task: tokenized dataset})")
        args = self.args
        sampler = MultitaskBatchSampler(
            self.train_dataset.sizes(),
            batch_size=self._train_batch_size,
            all_tasks_per_step=args.strategy in ("sum", "pcgrad"),
            task_sampling=args.task_sampling,
            temperature=args.sampling_temperature,
            max_samples=self.max_train_samples,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            num_replicas=args.world_size,
            rank=args.process_index,
            lengths=self.train_dataset.lengths() if args.group_by_length else None,
            joint=self._find_joint_groups(),
        )
        if args.should_log:
            logger.info("training data: %s", sampler.describe())
            if args.max_steps > 0:
                batches = args.max_steps * args.gradient_accumulation_steps
                drawn = sampler.rows_drawn(steps=batches)
                if batches > len(sampler):  # several epochs: the first one's rate
                    total = sampler.rows_drawn()
                    drawn = round(total * batches / len(sampler))
                logger.info(
                    "max_steps %d: training stops after %d batches, %s%s rows (an epoch has %d batches)",
                    args.max_steps,
                    batches,
                    "about " if batches > len(sampler) else "",
                    f"{drawn:,}",
                    len(sampler),
                )
        log = logger if args.should_log else None
        collate = training_collator(self.data_collator, args, self.train_dataset, sampler, self.pad_token_id, log)
        return MultitaskDataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory and torch.cuda.is_available(),
            persistent_workers=args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
        )

    def _find_joint_groups(self) -> list[tuple[str, ...]]:
        """The training tasks that share rows (``share_rows``): the same rows, encoded alike, under the same cap
        (:meth:`MultitaskDataset.joint_groups`). Each of their steps then feeds all of them from one encoder pass."""
        dataset = self.train_dataset
        groups = dataset.joint_groups(self.max_train_samples) if self.args.share_rows else []
        self._joint_task_groups = {task: group for group in groups for task in group}
        if groups and self.args.should_log:
            logger.info("tasks sharing their rows and each batch's encoder pass: %s", "; ".join(map(str, groups)))
        return groups

    def num_examples(self, dataloader: DataLoader) -> int:
        """The stock banner's ``Num examples``: for the training loader, the rows the multitask plan samples per
        epoch (capped tasks count their ``max_train_samples``), not the rows of every task pooled."""
        sampler = getattr(dataloader, "batch_sampler", None)
        if isinstance(sampler, MultitaskBatchSampler):
            return sampler.rows_drawn()  # rows shared by a joint group's tasks count once
        return super().num_examples(dataloader)

    def _encoder_token_ids(self, inputs: dict[str, Any]) -> list[torch.Tensor]:
        """Every token-id tensor the encoder reads in a step: each task's ``input_ids`` and, for a dual head, its
        second pass over the two sentences (``pair_input_ids``); a joint group's rows once (one shared pass)."""
        shared = getattr(self.accelerator.unwrap_model(self.model).config, "shared_encoder", True)
        seen_groups = set()
        out = []
        for task, batch in inputs.items():
            if not isinstance(batch, dict):
                continue
            group = self._joint_task_groups.get(task) if shared else None
            if group is not None:
                if group in seen_groups:
                    continue
                seen_groups.add(group)
            out += [batch[key] for key in ENCODER_INPUT_KEYS if key in batch]
        return out

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """6 × tokens × non-embedding parameters, summed over every encoder pass in the step (the stock formula)."""
        if not hasattr(self, "_flops_parameters"):
            self._flops_parameters = self.accelerator.unwrap_model(self.model).num_parameters(exclude_embeddings=True)
        tokens = sum(ids.numel() for ids in self._encoder_token_ids(inputs))
        return 6 * tokens * self._flops_parameters

    def _track_num_input_tokens(self, inputs) -> None:  # the stock version expects a flat batch
        if self.args.include_num_input_tokens_seen not in (False, "no", None):
            flat = {"input_ids": torch.cat([ids.flatten() for ids in self._encoder_token_ids(inputs)])}
            super()._track_num_input_tokens(flat)

    # -- training --------------------------------------------------------------------------------------------

    def create_optimizer(self, model=None):
        """The stock optimizer, with parameter groups when the heads (``head_learning_rate``) or the encoder layers
        (``layerwise_lr_decay``) train at their own learning rates; with ``embedding_updates: sparse``, AdamW that
        updates only the word-embedding rows each batch touched
        (:class:`~mtbert.training.optimization.RowSparseAdamW`)."""
        sparse = self.args.embedding_updates == "sparse"
        one_rate = self.args.head_learning_rate is None and self.args.layerwise_lr_decay == 1.0
        if self.optimizer is not None or (one_rate and not sparse):
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        rates = parameter_learning_rates(
            opt_model, self.args.learning_rate, self.args.head_learning_rate, self.args.layerwise_lr_decay
        )
        row_sparse = {id(p) for p in word_embedding_weights(opt_model)} if sparse else set()
        grouped: dict[tuple[float, bool, bool], list] = {}
        for name, param in opt_model.named_parameters():
            if param.requires_grad:
                grouped.setdefault((rates[name], name in decay, id(param) in row_sparse), []).append(param)
        names = {id(p): n for n, p in opt_model.named_parameters()}
        groups = [
            {
                "params": params,
                "lr": lr,
                "weight_decay": self.args.weight_decay if decayed else 0.0,
                "mtbert_name": self._group_name([names[id(p)] for p in params], lr),
            }
            | ({"rows_only": True} if rows_only else {})
            for (lr, decayed, rows_only), params in sorted(
                grouped.items(), key=lambda item: (-item[0][0], not item[0][1], item[0][2])
            )
        ]
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        optimizer_kwargs = {k: v for k, v in optimizer_kwargs.items() if k != "lr"}
        if sparse:
            if optimizer_cls is not torch.optim.AdamW or optimizer_kwargs.get("amsgrad"):
                raise ValueError(
                    f"embedding_updates: sparse needs optim adamw_torch or adamw_torch_fused (got {self.args.optim})"
                )
            optimizer_cls = RowSparseAdamW
        self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
        return self.optimizer

    def _group_name(self, names: list[str], lr: float) -> str:
        """A parameter group's name for the logs: ``heads``, ``embeddings``, ``layer_<k>`` or ``encoder``."""
        import re

        if all(n.startswith("heads.") for n in names):
            return "heads"
        layers = {m.group(1) for n in names if (m := re.search(r"\.layers?\.(\d+)\.", n))}
        if self.args.layerwise_lr_decay != 1.0:
            if len(layers) == 1 and all(re.search(r"\.layers?\.\d+\.", n) for n in names):
                return f"layer_{layers.pop()}"
            if not layers and any("embeddings" in n for n in names):
                return "embeddings"
            return f"lr_{lr:.3g}"
        return "encoder" if not any(n.startswith("heads.") for n in names) else f"lr_{lr:.3g}"

    def _pop_task_losses(self) -> dict[str, float]:
        """Mean loss per task since the last log, averaged over ranks (a collective: every rank calls it)."""
        tasks = [t for t in self.model.config.tasks if t in self._task_loss_sums]
        if not tasks:
            return {}
        sums = torch.stack([torch.as_tensor(self._task_loss_sums[t], device=self.args.device).float() for t in tasks])
        counts = torch.tensor([self._task_loss_counts[t] for t in tasks], device=self.args.device, dtype=torch.float32)
        if self.args.world_size > 1:
            sums = self.accelerator.reduce(sums, reduction="sum")
            counts = self.accelerator.reduce(counts, reduction="sum")
        self._task_loss_sums, self._task_loss_counts = {}, {}
        means = (sums / counts.clamp(min=1)).tolist()
        return {f"loss_{t}": round(m, 6) for t, m in zip(tasks, means)}

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self.model is not None:
            logs = {**logs, **self._pop_task_losses()}
            if self.nonfinite_skipped:
                logs["nonfinite_batches_skipped"] = self.nonfinite_skipped
            if self._telemetry_logs:
                logs.update({k: round(float(v), 6) for k, v in self._telemetry_logs.items()})
                self._telemetry_logs = {}
            logs.update(self._task_weight_logs())
            logs.update(self._group_learning_rates())
        super().log(logs, start_time)

    def _task_weight_logs(self) -> dict[str, float]:
        """``task_weight_<task>``: the weight of each task's loss in the latest step (a learned weighting's own
        weights where they do not depend on the step's losses)."""
        if self.task_weighting is None:
            return {}
        weights = self.task_weighting.current_weights()
        if weights is None:
            weights = {t: float(w) for t, w in self._last_task_weights.items()}
        return {f"task_weight_{t}": round(float(w), 6) for t, w in weights.items()}

    def _group_learning_rates(self) -> dict[str, float]:
        """``learning_rate_<group>`` per optimizer parameter group, named by what it trains (``heads``, ``encoder``,
        ``layer_<k>``, ``embeddings``), when the groups train at more than one rate."""
        optimizer = getattr(self, "optimizer", None)
        groups = getattr(optimizer, "param_groups", None)
        if not groups or len({g["lr"] for g in groups}) < 2:
            return {}
        out = {}
        for i, group in enumerate(groups):
            name = group.get("mtbert_name", f"group{i}")
            lr = group["lr"]
            out[f"learning_rate_{name}"] = float(lr.item() if torch.is_tensor(lr) else lr)
        return out

    # -- evaluation and prediction -----------------------------------------------------------------------------

    def get_task_eval_dataloader(self, task: str, dataset) -> tuple[DataLoader, np.ndarray]:
        """One task's rows for the stock evaluation loop, longest first (each batch pads little), sharded across
        ranks by Accelerate; returns the loader and the row order, so results can be put back in dataset order.
        Kept per (task, dataset), so evaluating every few steps neither re-sorts nor re-prepares."""
        key = (task, getattr(dataset, "_fingerprint", id(dataset)), len(dataset), self.args.eval_batch_size)
        if key in self._eval_loaders:
            return self._eval_loaders[key]
        columns = [c for c in (*MODEL_COLUMNS, "label") if c in dataset.column_names]
        if "label" in columns and len(dataset) and dataset[0]["label"] is None:
            columns.remove("label")
        if "length" in dataset.column_names:
            lengths = np.asarray(dataset["length"], dtype=np.int64)
        else:
            lengths = np.asarray([len(ids) for ids in dataset["input_ids"]], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        loader = DataLoader(
            dataset.select_columns(columns).select(order.tolist()),
            batch_size=self.args.eval_batch_size,
            collate_fn=_TaskBatches(task, self.pad_token_id),
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory and torch.cuda.is_available(),
        )
        self._eval_loaders[key] = self.accelerator.prepare(loader), order
        return self._eval_loaders[key]

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """One task's batch (``inputs["task"]`` names it): ``(loss or None, logits, labels or None)``."""
        batch = _to_device({k: v for k, v in inputs.items() if k != "task"}, self.args.device)
        with torch.no_grad(), self.compute_loss_context_manager(), self._attention_kernels():
            outputs = model(task=inputs["task"], **batch)
        loss = outputs.loss.detach().mean() if outputs.loss is not None else None
        return loss, outputs.logits.detach().float(), batch.get("labels")

    def _run_task(self, task: str, dataset, description: str, prefix: str) -> tuple[PredictionOutput, dict]:
        """The stock evaluation loop over one task: logits and labels back in dataset order, mtbert's predictions
        and scores, and the task's metrics (``{prefix}_{task}_{metric}``, the loss included)."""
        loader, order = self.get_task_eval_dataloader(task, dataset)
        output = self.evaluation_loop(
            loader, description=f"{description} {task}", metric_key_prefix=f"{prefix}_{task}"
        )
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        logits = np.asarray(output.predictions)[inverse]
        labels = None if output.label_ids is None else np.asarray(output.label_ids)[inverse]
        model = self.accelerator.unwrap_model(self.model)
        spec = model.config.tasks[task]
        words = get_kind(spec).target == "tags"
        if words:  # a token task: one tag per word, from each word's first sub-token
            result = token_results(dataset, logits, partial(model.postprocess, task), spec)
        else:
            predictions, scores = model.postprocess(task, torch.as_tensor(logits).float())
            result = {
                "index": np.arange(len(order)),
                "predictions": predictions.double().numpy(),
                "scores": scores.float().double().numpy(),
            }
        metrics = {k: v for k, v in (output.metrics or {}).items() if not k.endswith("model_preparation_time")}
        if labels is not None and len(labels):
            references = dataset["label"] if words else labels
            scored = compute_task_metrics(
                spec["kind"],
                result["predictions"],
                references,
                num_labels=spec.get("num_labels"),
                label_names=spec.get("label_names"),
            )
            for name, value in scored.items():
                metrics[f"{prefix}_{task}_{name}"] = float(value)
            if self.task_compute_metrics is not None:
                metrics.update(self._user_metrics(task, logits, labels, prefix))
        return PredictionOutput(predictions=logits, label_ids=labels, metrics=metrics), result

    def _user_metrics(self, task: str, logits, labels, prefix: str) -> dict[str, float]:
        fn = self.task_compute_metrics
        kwargs = {"task": task} if "task" in inspect.signature(fn).parameters else {}
        values = fn(EvalPrediction(predictions=logits, label_ids=labels), **kwargs) or {}
        return {f"{prefix}_{task}_{k}": v for k, v in values.items()}

    @staticmethod
    def _average(metrics: dict[str, float], kinds: dict[str, str], prefix: str) -> float | None:
        found = [metrics.get(f"{prefix}_{task}_{PRIMARY_METRIC[kind]}") for task, kind in kinds.items()]
        primary = [float(v) for v in found if v is not None]
        return float(np.mean(primary)) if primary else None

    def _datasets_for(self, dataset, task: str | None, what: str) -> dict[str, Any]:
        tasks = self.accelerator.unwrap_model(self.model).config.tasks
        if isinstance(dataset, str):  # the stock Trainer's way to name one of the trainer's eval datasets
            task, dataset = dataset, (self.eval_dataset or {}).get(dataset)
            if dataset is None:
                raise ValueError(f"{what}: no eval dataset for task {task!r}")
        datasets_by_task = self._by_task(dataset, tasks, what, task)
        unknown = set(datasets_by_task) - set(tasks)
        if unknown:
            raise ValueError(f"{what}: task(s) the model lacks: {', '.join(sorted(unknown))}")
        return datasets_by_task

    def evaluate(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval", task: str | None = None
    ) -> dict[str, float]:
        """Score each task's dev set with the stock evaluation loop.

        ``eval_dataset``: ``{task: dataset}``, one dataset with ``task=`` named, or None for the trainer's. Returns
        ``{prefix}_{task}_{metric}`` (``loss``, mtbert's task metrics, and ``compute_metrics``'s keys),
        ``{prefix}_average`` (the paper's mean of each task's primary metric) and ``{prefix}_runtime``.
        """
        if eval_dataset is None and task is not None and isinstance(self.eval_dataset, dict):
            eval_dataset, task = task, None  # that task's dataset among the trainer's
        datasets_by_task = self._datasets_for(
            eval_dataset if eval_dataset is not None else self.eval_dataset, task, "eval_dataset"
        )
        if not datasets_by_task:
            raise ValueError("MultitaskTrainer.evaluate needs eval_dataset ({task: tokenized dataset with labels})")
        start = time.time()
        kinds = {t: self.accelerator.unwrap_model(self.model).config.tasks[t]["kind"] for t in datasets_by_task}
        metrics: dict[str, float] = {}
        for name, dataset in datasets_by_task.items():
            output, self.last_eval_predictions[name] = self._run_task(name, dataset, "Evaluation", metric_key_prefix)
            metrics.update(output.metrics or {})
        average = self._average(metrics, kinds, metric_key_prefix)
        if average is not None:
            metrics[f"{metric_key_prefix}_average"] = average
        metrics[f"{metric_key_prefix}_runtime"] = round(time.time() - start, 4)
        metrics = {
            k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in metrics.items()
        }
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test", task: str | None = None):
        """Predict one task's dataset (``task=``, or the model's only task) or a ``{task: dataset}`` dict.

        Returns the stock ``PredictionOutput(predictions, label_ids, metrics)`` for one dataset, or ``{task:
        PredictionOutput}`` for a dict. ``predictions`` are the head's raw outputs (logits, or a cosine for a cosine
        head), as with the stock Trainer; ``model.postprocess(task, torch.as_tensor(predictions))`` turns them into
        ``(labels or scores, confidences)``. Metrics (``{prefix}_{task}_{metric}``) are computed when rows have labels.
        """
        single = not isinstance(test_dataset, dict)
        datasets_by_task = self._datasets_for(test_dataset, task, "test_dataset")
        start = time.time()
        outputs: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        for name, dataset in datasets_by_task.items():
            outputs[name], _ = self._run_task(name, dataset, "Prediction", metric_key_prefix)
            metrics.update(outputs[name].metrics)
        metrics[f"{metric_key_prefix}_runtime"] = round(time.time() - start, 4)
        self.control = self.callback_handler.on_predict(self.args, self.state, self.control, metrics)
        if single:
            (output,) = outputs.values()
            return PredictionOutput(
                output.predictions,
                output.label_ids,
                {**output.metrics, **{k: v for k, v in metrics.items() if k.endswith("_runtime")}},
            )
        return outputs

    # -- Hub -------------------------------------------------------------------------------------------------

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
        **kwargs,
    ) -> None:
        """Write ``<output_dir>/README.md`` through the :class:`~mtbert.training.callbacks.ModelCardCallback`
        (mtbert's card:
        heads, training settings, per-task ``model-index`` from the latest ``evaluate``) instead of the stock card.

        ``Trainer.push_to_hub`` calls this before uploading. Pass ``data_args=`` (through ``push_to_hub(**kwargs)``)
        to name each task's dataset and split. ``tasks``/``dataset_tags``/``dataset_args`` are the stock card's and
        are not used: the card lists the model's own tasks.
        """
        if not self.is_world_process_zero():
            return
        callback = self._callback(ModelCardCallback)
        repo_id = getattr(self, "hub_model_id", None) or self.args.hub_model_id or model_name
        callback.write(
            self.accelerator.unwrap_model(self.model),
            self.args,
            self.state,
            repo_id=repo_id,
            language=language,
            license=license,
            tags=tags,
            model_name=model_name,
            finetuned_from=finetuned_from,
            dataset=dataset,
            **kwargs,
        )
