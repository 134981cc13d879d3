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
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import Trainer

from .collators import MultitaskCollator
from .metrics import average_score, compute_task_metrics
from .predict import predict_task
from .sampling import MultitaskBatchSampler, MultitaskDataset
from .training_args import MultitaskTrainingArguments

logger = logging.getLogger(__name__)


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
        )
        return MultitaskDataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory and torch.cuda.is_available(),
            persistent_workers=args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
        )

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """6 × tokens × non-embedding parameters, summed over the tasks in the step (the stock formula)."""
        if not hasattr(self, "_flops_parameters"):
            self._flops_parameters = self.accelerator.unwrap_model(self.model).num_parameters(exclude_embeddings=True)
        tokens = sum(batch["input_ids"].numel() for batch in inputs.values() if isinstance(batch, dict))
        return 6 * tokens * self._flops_parameters

    def _track_num_input_tokens(self, inputs) -> None:  # the stock version expects a flat batch
        if self.args.include_num_input_tokens_seen not in (False, "no", None):
            flat = {"input_ids": torch.cat([b["input_ids"].flatten() for b in inputs.values()])}
            super()._track_num_input_tokens(flat)

    # -- training --------------------------------------------------------------------------------------------

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
        if self.args.strategy == "pcgrad":
            return self._aggregated_step(model, inputs)
        losses = self._task_losses(model, inputs)
        loss = torch.stack(list(losses.values())).sum()
        self._record_task_losses(losses)
        loss = loss / self.current_gradient_accumulation_steps
        self.accelerator.backward(loss)
        return loss.detach()

    def _aggregated_step(self, model, inputs) -> torch.Tensor:
        raise NotImplementedError("strategy 'pcgrad' is not available yet; use round_robin or sum")

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
        super().log(logs, start_time)

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
        per_task, kinds = {}, {}
        metrics: dict[str, float] = {}
        for task, dataset in datasets_by_task.items():
            kind = model.config.tasks[task]["kind"]
            result = self._predict_sharded(task, dataset)
            per_task[task] = compute_task_metrics(kind, result["predictions"], np.asarray(dataset["label"]))
            kinds[task] = kind
            for name, value in per_task[task].items():
                metrics[f"{metric_key_prefix}_{task}_{name}"] = value
        metrics[f"{metric_key_prefix}_average"] = average_score(per_task, kinds)
        metrics[f"{metric_key_prefix}_runtime"] = round(time.time() - start, 4)
        metrics = {k: (float(v) if not (isinstance(v, float) and math.isnan(v)) else v) for k, v in metrics.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
