"""``MultitaskTrainer``: the Hugging Face Trainer, taught to draw batches task by task and to evaluate every task.

What changes compared with the stock Trainer:
- the training data is a :class:`~mtbert.sampling.MultitaskDataset`; batches follow a per-epoch plan
  (:class:`~mtbert.sampling.MultitaskBatchSampler`) that depends only on ``(seed, epoch)``, so a resumed run skips
  to exactly where it stopped;
- ``training_step`` runs one task (``round_robin``), sums every task's loss (``sum``), or combines per-task
  gradients with an aggregator such as PCGrad (``pcgrad``);
- per-task training losses are logged next to ``loss`` (``loss_sst``, ...), read from the device only at logging
  steps;
- ``evaluate`` scores each task's dev set (``eval_sst_accuracy``, ``eval_qqp_f1``, ``eval_sts_pearson``, ...) and
  the paper's ``eval_average``, which works as ``metric_for_best_model``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import EarlyStoppingCallback, Trainer
from transformers.trainer_utils import rotate_checkpoints

from .aggregators import conflict_statistics, get_aggregator, stack_gram
from .averaging import average_checkpoints, find_checkpoints, load_state_dict_strictly
from .checkpoints import write_marker
from .collators import ENCODER_INPUT_KEYS, MultitaskCollator
from .metrics import score_tasks
from .optimization import parameter_learning_rates
from .predict import predict_task
from .sampling import MultitaskBatchSampler, MultitaskDataset
from .training_args import MultitaskTrainingArguments

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive NaN/inf losses: training stops instead of silently ruining the weights."""


class MultitaskDataLoader(DataLoader):
    """A DataLoader whose ``set_epoch`` reaches the multitask batch sampler (the Trainer calls it every epoch)."""

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)


class MultitaskTrainer(Trainer):
    """Train one :class:`~mtbert.MultitaskBertModel` on several tasks at once.

    Args:
        train_datasets: ``{task: tokenized datasets.Dataset}`` of training rows.
        eval_datasets: ``{task: tokenized datasets.Dataset}`` with labels, scored by :meth:`evaluate`.
        max_train_samples: ``{task: n}``: at most ``n`` random rows of that task per epoch, redrawn every epoch.
    """

    def __init__(
        self,
        model=None,
        args: MultitaskTrainingArguments | None = None,
        train_datasets: dict[str, Any] | None = None,
        eval_datasets: dict[str, Any] | None = None,
        max_train_samples: dict[str, int] | None = None,
        processing_class=None,
        **kwargs,
    ):
        if args is None:
            args = MultitaskTrainingArguments(output_dir="mtbert_output")
        if not isinstance(args, MultitaskTrainingArguments):
            raise TypeError("MultitaskTrainer needs MultitaskTrainingArguments (TrainingArguments + multitask options)")
        if train_datasets is not None:
            unknown = set(train_datasets) - set(model.config.tasks)
            if unknown:
                raise ValueError(f"training data for task(s) the model lacks: {', '.join(sorted(unknown))}")
        pad_id = getattr(processing_class, "pad_token_id", None) or 0
        train_dataset = MultitaskDataset.from_datasets(train_datasets) if train_datasets else None
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_datasets,
            data_collator=kwargs.pop("data_collator", None) or MultitaskCollator(pad_id),
            processing_class=processing_class,
            **kwargs,
        )
        self.pad_token_id = pad_id
        self.max_train_samples = dict(max_train_samples or {})
        self._task_loss_sums: dict[str, torch.Tensor] = {}
        self._task_loss_counts: dict[str, int] = {}
        self._telemetry_logs: dict[str, torch.Tensor] = {}
        self._last_task_batches: dict[str, dict[str, torch.Tensor]] = {}
        self._pcgrad_tasks = None
        self._pcgrad_buffer: torch.Tensor | None = None
        self._nonfinite_in_a_row = 0
        self.nonfinite_skipped = 0
        self.last_eval_predictions: dict[str, dict[str, np.ndarray]] = {}  # dev predictions of the last evaluate()
        if args.early_stopping_patience is not None and not any(
            isinstance(cb, EarlyStoppingCallback) for cb in self.callback_handler.callbacks
        ):
            self.add_callback(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))

    # -- data ------------------------------------------------------------------------------------------------

    def get_train_dataloader(self) -> DataLoader:
        """A rank-aware multitask batch plan; not re-sharded by Accelerate (every rank must take the same task)."""
        if self.train_dataset is None:
            raise ValueError("MultitaskTrainer: training requires train_datasets")
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
        )
        return MultitaskDataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory and torch.cuda.is_available(),
            persistent_workers=args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
        )

    @staticmethod
    def _encoder_token_ids(inputs: dict[str, Any]) -> list[torch.Tensor]:
        """Every token-id tensor the encoder reads in a step: each task's ``input_ids`` and, for a dual head, its
        second pass over the two sentences (``pair_input_ids``)."""
        return [
            batch[key]
            for batch in inputs.values()
            if isinstance(batch, dict)
            for key in ENCODER_INPUT_KEYS
            if key in batch
        ]

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
        (``layerwise_lr_decay``) train at their own learning rates."""
        if self.optimizer is not None or (self.args.head_learning_rate is None and self.args.layerwise_lr_decay == 1.0):
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        rates = parameter_learning_rates(
            opt_model, self.args.learning_rate, self.args.head_learning_rate, self.args.layerwise_lr_decay
        )
        grouped: dict[tuple[float, bool], list] = {}
        for name, param in opt_model.named_parameters():
            if param.requires_grad:
                grouped.setdefault((rates[name], name in decay), []).append(param)
        groups = [
            {"params": params, "lr": lr, "weight_decay": self.args.weight_decay if decayed else 0.0}
            for (lr, decayed), params in sorted(grouped.items(), key=lambda item: (-item[0][0], not item[0][1]))
        ]
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        optimizer_kwargs = {k: v for k, v in optimizer_kwargs.items() if k != "lr"}
        self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
        return self.optimizer

    def _task_losses(self, model, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        losses = {}
        with self.compute_loss_context_manager():
            for task, batch in inputs.items():
                losses[task] = model(task=task, **batch).loss
        return losses

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The summed loss of every task in ``inputs`` (``{task: batch}``)."""
        losses = self._task_losses(model, inputs)
        loss = torch.stack(list(losses.values())).sum()
        return (loss, losses) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        if self.args.strategy == "pcgrad" and self._shared_and_task_parameters()[0]:
            return self._aggregated_step(model, inputs)
        # round_robin, sum, and pcgrad with nothing shared (one encoder per task): no gradient to combine
        losses = self._task_losses(model, inputs)
        loss = torch.stack(list(losses.values())).sum()
        if not self._loss_is_finite(loss, losses):
            return torch.zeros((), device=loss.device)
        self._record_task_losses(losses)
        loss = loss / self.current_gradient_accumulation_steps
        self.accelerator.backward(loss)
        if self.args.gradient_telemetry:
            self._last_task_batches.update(inputs)
            if self._telemetry_due():
                self._measure_gradients(model)
        return loss.detach()

    # -- gradient aggregation (PCGrad and friends) ------------------------------------------------------------

    def _shared_and_task_parameters(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """Parameters more than one task trains, and all the others (heads; encoders of an ensemble)."""
        model = self.accelerator.unwrap_model(self.model)
        shared = model.shared_parameters()
        shared_ids = {id(p) for p in shared}
        others = [p for p in model.parameters() if p.requires_grad and id(p) not in shared_ids]
        return shared, others

    def _check_aggregation_supported(self) -> None:
        from accelerate.utils import DistributedType

        kind = self.accelerator.distributed_type
        if kind in (DistributedType.FSDP, DistributedType.DEEPSPEED) or self.is_fsdp_enabled or self.is_deepspeed_enabled:
            raise RuntimeError(
                "strategy 'pcgrad' needs each rank to hold whole gradients, but FSDP/DeepSpeed shard them. "
                "Use plain data parallelism (DDP via accelerate launch / torchrun), or strategy 'sum'/'round_robin'."
            )

    def _aggregator(self):
        name = self.args.aggregator or ("pcgrad_mean" if self.args.pcgrad_reduction == "mean" else "pcgrad")
        return get_aggregator(name)

    def _task_gradient_buffer(self, shared, tasks) -> torch.Tensor:
        """The T × P buffer of per-task shared gradients, kept across steps (zeroed after each combination)."""
        key = tuple(tasks)
        if self._pcgrad_tasks != key or self._pcgrad_buffer is None:
            total = sum(p.numel() for p in shared)
            self._pcgrad_buffer = torch.zeros(len(key), total, device=shared[0].device, dtype=shared[0].dtype)
            self._pcgrad_tasks = key
        return self._pcgrad_buffer

    @staticmethod
    def _point_grads(shared, flat: torch.Tensor) -> None:
        """Make every shared ``p.grad`` a view into ``flat``: autograd then accumulates straight into it."""
        offset = 0
        for p in shared:
            p.grad = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()

    def _per_task_backward(self, model, inputs, shared) -> dict[str, torch.Tensor] | None:
        """Backward each task separately (no DDP reduction), straight into its row of the task-gradient buffer
        (no copies; micro-batches of an accumulation add up in place). Returns the losses, or None if skipped."""
        from contextlib import nullcontext

        no_sync = model.no_sync if hasattr(model, "no_sync") else nullcontext
        losses = {}
        for task, batch in inputs.items():
            with no_sync(), self.compute_loss_context_manager():
                losses[task] = model(task=task, **batch).loss
        if not self._loss_is_finite(torch.stack(list(losses.values())).sum(), losses):
            return None
        buffer = self._task_gradient_buffer(shared, inputs)
        for row, (task, loss) in enumerate(losses.items()):
            self._point_grads(shared, buffer[row])
            with no_sync():
                self.accelerator.backward(loss / self.current_gradient_accumulation_steps)
            losses[task] = loss.detach()
        for p in shared:
            p.grad = None
        return losses

    def _all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.args.world_size > 1:
            torch.distributed.all_reduce(tensor)
            tensor /= self.args.world_size
        return tensor

    def _aggregated_step(self, model, inputs) -> torch.Tensor:
        """PCGrad-style step: per-task gradients on the shared encoder, combined as Σ_j w_j g_j.

        Per-task gradients are accumulated over micro-batches, all-reduced once across ranks (projection is not
        linear, so it must see the global gradients), then every rank computes the same weights from the T × T Gram
        matrix (same task permutation: a generator seeded by ``(seed, global_step)``). Task-specific parameters
        (heads) keep their own task's gradient. The Trainer then clips, steps and logs as usual.
        """
        self._check_aggregation_supported()
        shared, others = self._shared_and_task_parameters()
        losses = self._per_task_backward(model, inputs, shared)
        if losses is None:  # a non-finite loss: this micro-batch adds nothing
            losses = {t: torch.zeros((), device=self.args.device) for t in inputs}
            if self._pcgrad_buffer is None or self._pcgrad_tasks != tuple(inputs):
                return torch.zeros((), device=self.args.device)
        self._record_task_losses(losses)
        if self.accelerator.gradient_state.sync_gradients:
            buffer = self._all_reduce_mean(self._pcgrad_buffer)
            others = [p for p in others if p.grad is not None]  # the same set on every rank: same tasks each step
            if self.args.world_size > 1 and others:
                flat = self._all_reduce_mean(torch.cat([p.grad.reshape(-1) for p in others]))
                offset = 0
                for p in others:
                    p.grad = flat[offset : offset + p.numel()].view_as(p).to(p.dtype)
                    offset += p.numel()
            gram = stack_gram(buffer)
            generator = torch.Generator(device="cpu").manual_seed(int(self.args.seed) * 1_000_003 + self.state.global_step)
            result = self._aggregator()(gram, generator=generator)
            self._point_grads(shared, result.weights.to(buffer.device, buffer.dtype) @ buffer)
            self._store_telemetry(gram, list(self._pcgrad_tasks), result.num_projections)
            buffer.zero_()
        return torch.stack(list(losses.values())).sum() / self.current_gradient_accumulation_steps

    # -- gradient-conflict telemetry --------------------------------------------------------------------------

    def _telemetry_due(self) -> bool:
        """True on the optimizer step that will be logged (telemetry is read only then)."""
        if not self.args.gradient_telemetry or not self.accelerator.gradient_state.sync_gradients:
            return False
        steps = self.args.logging_steps
        steps = max(1, int(steps * self.state.max_steps)) if isinstance(steps, float) and steps < 1 else int(steps)
        return (self.state.global_step + 1) % steps == 0

    def _store_telemetry(self, gram: torch.Tensor, tasks: list[str], num_projections=None) -> None:
        if not self._telemetry_due():
            return
        stats = conflict_statistics(gram)
        logs = {
            "grad_conflict_fraction": stats["conflict_fraction"],
            "grad_norm_ratio": stats["norm_ratio"],
            "grad_mean_cosine": stats["mean_cosine"],
        }
        for i, a in enumerate(tasks):
            logs[f"grad_norm_{a}"] = stats["grad_norms"][i]
            for j in range(i + 1, len(tasks)):
                logs[f"grad_cos_{a}_{tasks[j]}"] = stats["cosine"][i, j]
        if num_projections is not None:
            logs["pcgrad_projections"] = num_projections
        self._telemetry_logs = logs

    def _measure_gradients(self, model) -> None:
        """Telemetry for strategies that never form per-task gradients: one extra backward per task on the last
        batch seen of each task, on logging steps only; all-reduced across ranks like the training gradients."""
        shared, _ = self._shared_and_task_parameters()
        if not shared or len(self._last_task_batches) < 2:
            return
        unwrapped = self.accelerator.unwrap_model(model)
        saved = [None if p.grad is None else p.grad.clone() for p in shared]
        rows = []
        for task, batch in self._last_task_batches.items():
            with self.compute_loss_context_manager():
                loss = unwrapped(task=task, **batch).loss
            grads = torch.autograd.grad(loss, shared, allow_unused=True)
            rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(grads, shared)]))
        for p, g in zip(shared, saved):
            p.grad = g
        buffer = self._all_reduce_mean(torch.stack(rows))
        self._store_telemetry(stack_gram(buffer), list(self._last_task_batches))

    def _loss_is_finite(self, loss: torch.Tensor, losses: dict[str, torch.Tensor]) -> bool:
        """Skip a micro-batch whose loss is NaN/inf (no backward), with a warning and a counter; stop with a clear
        error after ``max_nonfinite_steps`` in a row, since by then the run is diverging, not unlucky.
        Under DDP the decision is global (one rank's NaN skips the batch on every rank), so no rank waits alone."""
        finite = torch.isfinite(loss.detach()).float()
        if self.args.world_size > 1:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if bool(finite):
            self._nonfinite_in_a_row = 0
            return True
        self._nonfinite_in_a_row += 1
        self.nonfinite_skipped += 1
        bad = ", ".join(f"{t}={float(v.detach()):.4g}" for t, v in losses.items())
        logger.warning(
            "non-finite loss at step %d (%s): batch skipped (%d in a row, %d in total)",
            self.state.global_step, bad, self._nonfinite_in_a_row, self.nonfinite_skipped,
        )
        if self._nonfinite_in_a_row >= self.args.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"{self._nonfinite_in_a_row} training batches in a row had a NaN or infinite loss (last: {bad}) at "
                f"step {self.state.global_step}. Lower the learning rate, check the labels, or use bf16 instead of "
                "fp16; the last checkpoint before this point is still usable."
            )
        return False

    def _record_task_losses(self, losses: dict[str, torch.Tensor]) -> None:
        for task, loss in losses.items():
            value = loss.detach().float()
            self._task_loss_sums[task] = self._task_loss_sums.get(task, 0.0) + value
            self._task_loss_counts[task] = self._task_loss_counts.get(task, 0) + 1

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
        super().log(logs, start_time)

    # -- checkpoints -----------------------------------------------------------------------------------------

    def _save_checkpoint(self, model, trial) -> None:
        """The stock checkpoint, then a completeness marker; older checkpoints are rotated away only after it."""
        limit = self.args.save_total_limit
        self.args.save_total_limit = None  # rotate below, once the new checkpoint is known to be whole
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        if self.args.should_save:
            run_dir = self._get_output_dir(trial=trial)
            write_marker(os.path.join(run_dir, f"checkpoint-{self.state.global_step}"), self.state.global_step)
            if limit:
                rotate_checkpoints(
                    output_dir=run_dir, save_total_limit=limit,
                    best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True,
                )

    def train(self, *args, **kwargs):
        """The stock training loop; then, with ``average_checkpoints`` N, the model becomes the mean of the weights
        of the last N complete checkpoints (checkpoint averaging), reported as ``averaged_checkpoints``."""
        output = super().train(*args, **kwargs)
        if self.args.average_checkpoints:
            output.metrics["averaged_checkpoints"] = self.average_last_checkpoints(self.args.average_checkpoints)
        return output

    def average_last_checkpoints(self, count: int) -> int:
        """Load the mean of the weights of the last ``count`` complete checkpoints of ``output_dir`` into the model
        (on every rank); returns how many were averaged (fewer than 2: the model is left as it is)."""
        checkpoints = find_checkpoints(self.args.output_dir, complete_only=True)[-count:]
        if len(checkpoints) < 2:
            logger.warning(
                "average_checkpoints: %d checkpoint(s) in %s, nothing to average", len(checkpoints), self.args.output_dir
            )
            return len(checkpoints)
        model = self.accelerator.unwrap_model(self.model)
        load_state_dict_strictly(model, average_checkpoints(checkpoints, dtype=next(model.parameters()).dtype))
        logger.info(
            "averaged the weights of %d checkpoints: %s",
            len(checkpoints), ", ".join(os.path.basename(c) for c in checkpoints),
        )
        return len(checkpoints)

    # -- evaluation ------------------------------------------------------------------------------------------

    def _predict_sharded(self, task: str, dataset) -> dict[str, np.ndarray]:
        """Each rank predicts every ``world_size``-th row; the pieces are gathered back into dataset order."""
        world, rank = self.args.world_size, self.args.process_index
        indices = np.arange(rank, len(dataset), world)
        model = self.accelerator.unwrap_model(self.model)
        result = predict_task(
            model,
            task,
            dataset,
            batch_size=self.args.per_device_eval_batch_size,
            pad_token_id=self.pad_token_id,
            device=self.args.device,
            indices=indices,
            autocast=self.autocast_smart_context_manager,
            progress=self.is_local_process_zero() and not self.args.disable_tqdm,
        )
        if world > 1:
            pieces = [None] * world
            torch.distributed.all_gather_object(pieces, result)
            merged = {k: np.concatenate([p[k] for p in pieces]) for k in result}
            order = np.argsort(merged["index"], kind="stable")
            result = {k: v[order] for k, v in merged.items()}
        return result

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Score every task's dev set; returns ``{prefix}_{task}_{metric}`` and ``{prefix}_average``."""
        datasets_by_task = eval_dataset if eval_dataset is not None else self.eval_dataset
        if not datasets_by_task:
            raise ValueError("MultitaskTrainer.evaluate needs eval_datasets ({task: tokenized dataset with labels})")
        start = time.time()
        model = self.accelerator.unwrap_model(self.model)
        for task, dataset in datasets_by_task.items():
            self.last_eval_predictions[task] = self._predict_sharded(task, dataset)
        metrics = score_tasks(
            {task: model.config.tasks[task]["kind"] for task in datasets_by_task},
            {task: self.last_eval_predictions[task]["predictions"] for task in datasets_by_task},
            {task: dataset["label"] for task, dataset in datasets_by_task.items()},
            prefix=metric_key_prefix,
        )
        metrics[f"{metric_key_prefix}_runtime"] = round(time.time() - start, 4)
        metrics = {k: (float(v) if not (isinstance(v, float) and math.isnan(v)) else v) for k, v in metrics.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

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
        """Write ``<output_dir>/README.md`` from mtbert's ``model_card.md`` template instead of the stock card.

        ``Trainer.push_to_hub`` calls this before uploading, so a push carries the multitask card (heads, training
        settings, per-task ``model-index`` from the latest ``evaluate``). Pass ``data_args=`` (through
        ``push_to_hub(**kwargs)``) to name each task's dataset and split. ``tasks``/``dataset_tags``/``dataset_args``
        are the stock card's and are not used: the card lists the model's own tasks.
        """
        if not self.is_world_process_zero():
            return
        from .hub import write_trainer_model_card

        write_trainer_model_card(
            self, language=language, license=license, tags=tags, model_name=model_name,
            finetuned_from=finetuned_from, dataset=dataset, **kwargs,
        )
