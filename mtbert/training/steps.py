"""The training step of :class:`~mtbert.training.trainer.MultitaskTrainer`, apart from the stock API around it.

One forward loop over the step's task batches (:meth:`MultitaskSteps._task_losses`) feeds three ways of taking a
step: ``round_robin`` and ``sum`` backward the (weighted) sum of the losses; ``pcgrad`` (any aggregator) keeps each
task's gradient on the shared encoder apart and combines them (:mod:`mtbert.training.backward`), under DDP, FSDP2 or
DeepSpeed ZeRO-1/2. Around them: loss-based task weighting, non-finite losses skipped and counted, per-task losses
kept for the log, and gradient-conflict telemetry.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, cast

import torch
from transformers import Trainer

from ..models.mtbert.modeling_mtbert import EncoderPasses, sdpa_kernels
from .aggregators import check_aggregator_options, conflict_statistics, get_aggregator, stack_gram
from .backward import TaskGradients, is_sharded, task_gradient_matrix
from .distillation import DistillationSettings
from .training_args import MultitaskTrainingArguments
from .weighting import LossWeighting, build_weighting

logger = logging.getLogger("mtbert.training.trainer")  # the trainer's log, as before the split


class NonFiniteLossError(RuntimeError):
    """Too many consecutive NaN/inf losses: training stops instead of silently ruining the weights."""


def _to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class MultitaskSteps(Trainer):
    """The step implementations; :class:`~mtbert.training.trainer.MultitaskTrainer` sets the state below up."""

    args: MultitaskTrainingArguments
    # set by MultitaskTrainer.__init__ (and _build_task_weighting)
    distillation: DistillationSettings | None
    task_weighting: LossWeighting | None
    nonfinite_skipped: int
    _model_tasks: list[str]
    _cuda_graphs: Any
    _joint_task_groups: dict[str, tuple[str, ...]]
    _task_gradients: TaskGradients | None
    _task_loss_sums: dict[str, torch.Tensor]
    _task_loss_counts: dict[str, int]
    _telemetry_logs: dict[str, torch.Tensor]
    _last_task_batches: dict[str, dict[str, torch.Tensor]]
    _nonfinite_in_a_row: int

    # -- loss-based task weighting (mtbert.training.weighting) ---------------------------------------------------

    def _build_task_weighting(self) -> None:
        """``args.task_weighting`` with its options, fresh (a new run or trial); None for ``static``, which leaves the
        step exactly as it is without a weighting. Aggregator options are checked here too (Python API)."""
        args = self.args
        name = args.aggregator or ("pcgrad_mean" if args.pcgrad_reduction == "mean" else "pcgrad")
        if args.aggregator_options:
            check_aggregator_options(str(name).strip().lower().replace("-", "_"), args.aggregator_options)
        method = getattr(args, "task_weighting", "static") or "static"
        self.task_weighting = None
        if method != "static":
            options = args.weighting_options  # a mapping once the arguments' __post_init__ parsed it
            self.task_weighting = build_weighting(method, self._model_tasks, options)  # type: ignore[arg-type]
        self._weighting_sums: dict[str, torch.Tensor] = {}
        self._weighting_counts: dict[str, int] = {}
        self._last_task_weights: dict[str, torch.Tensor] = {}

    def _global_losses(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each task's detached loss averaged over the data-parallel ranks (one all-reduce of T numbers), so every
        rank computes the same task weights, equal to one process's on the whole batch."""
        stacked = self._all_reduce_mean(torch.stack([loss.detach().float() for loss in losses.values()]))
        return dict(zip(losses, stacked))

    def _weighted(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The task losses times the weighting's weights (``losses`` itself without a weighting); the global losses
        are kept to advance the weighting once per optimizer step (:meth:`_advance_weighting`)."""
        if self.task_weighting is None:
            return losses
        current = self._global_losses(losses)
        for task, value in current.items():
            self._weighting_sums[task] = self._weighting_sums.get(task, 0.0) + value
            self._weighting_counts[task] = self._weighting_counts.get(task, 0) + 1
        weights = self.task_weighting.weights(current)
        out = {}
        for task, loss in losses.items():
            w = weights[task].to(device=loss.device, dtype=loss.dtype)
            self._last_task_weights[task] = w.detach()
            out[task] = loss * w
        return out

    def _advance_weighting(self) -> None:
        """At the end of an optimizer step: the weighting's state update from the step's mean task losses."""
        if self.task_weighting is None or not self._weighting_sums:
            return
        if not self.accelerator.gradient_state.sync_gradients:
            return
        means = {t: (self._weighting_sums[t] / self._weighting_counts[t]).cpu() for t in self._weighting_sums}
        self._weighting_sums, self._weighting_counts = {}, {}
        self.task_weighting.update(means)

    def _discard_weighting_losses(self, losses) -> None:
        for task in losses:  # a skipped (non-finite) micro-batch teaches the weighting nothing
            self._weighting_sums.pop(task, None)
            self._weighting_counts.pop(task, None)

    def _attention_kernels(self):
        """On CUDA, attention without cuDNN's kernel (``modeling_mtbert.sdpa_kernels``; ``cudnn_attention: true``
        turns that off). Entered once around each training step and each prediction step: every forward runs in one
        of the two."""
        return sdpa_kernels(self.args.device, self.args.cudnn_attention)

    def _task_loss(self, model, task: str, batch: dict[str, torch.Tensor], passes=None) -> torch.Tensor:
        """One task's training loss; a batch with a teacher's targets mixes them in at ``distill``'s alpha and
        temperature. ``passes``: the step's encoder passes of the task's joint group (shared rows)."""
        if "teacher_targets" in batch and self.distillation is not None:
            settings = self.distillation
            batch = {**batch, "distill_alpha": settings.alpha_for(task), "distill_temperature": settings.temperature}  # type: ignore[dict-item]
        if passes is not None:
            batch = {**batch, "encoder_passes": passes}
        if self._cuda_graphs is not None:  # a captured graph per batch shape (mtbert.training.cuda_graphs), else eager
            return self._cuda_graphs.loss(model, task, batch, lambda: model(task=task, **batch).loss)
        return model(task=task, **batch).loss

    def _encoder_passes(self, tasks) -> dict[str, EncoderPasses]:
        """One :class:`EncoderPasses` per joint group present in the step, for its members: tasks that share rows
        run the encoder once over them; every other task keeps its own pass."""
        groups = self._joint_task_groups
        shared: dict[tuple[str, ...], EncoderPasses] = {}
        return {t: shared.setdefault(groups[t], EncoderPasses()) for t in tasks if t in groups}

    def _task_losses(
        self,
        model,
        inputs: dict[str, dict[str, torch.Tensor]],
        passes: dict[str, EncoderPasses] | None = None,
        each_task: Callable[[], AbstractContextManager] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Each task batch's loss, in the step's order: the one per-task forward loop of every strategy.

        ``passes``: the encoder passes of the tasks that share rows (None: the step's own, ``{}``: one pass per
        task). ``each_task``: a context entered around each task's forward with its own loss context (pcgrad: no
        DDP reduction per task); without one, a single loss context holds every forward."""
        if passes is None:
            passes = self._encoder_passes(inputs)
        if each_task is None:
            with self.compute_loss_context_manager():
                return {task: self._task_loss(model, task, batch, passes.get(task)) for task, batch in inputs.items()}
        losses = {}
        for task, batch in inputs.items():
            with each_task(), self.compute_loss_context_manager():
                losses[task] = self._task_loss(model, task, batch, passes.get(task))
        return losses

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        # the whole step, backward included: with gradient checkpointing the forward runs again during backward,
        # outside any forward context, and must pick the same attention kernels
        with self._attention_kernels():
            return self._training_step(model, inputs)

    def _training_step(self, model, inputs) -> torch.Tensor:
        model.train()
        optimizer: Any = self.optimizer  # schedule-free optimizers have a train and an eval mode
        if hasattr(optimizer, "train") and callable(optimizer.train):
            optimizer.train()
        inputs = {task: _to_device(batch, self.args.device) for task, batch in inputs.items()}
        shared = self._shared_parameters()
        if self.args.strategy == "pcgrad" and shared:
            return self._aggregated_step(model, inputs, shared)
        # round_robin, sum, and pcgrad with nothing shared (one encoder per task): no gradient to combine.
        # DDP's reducer expects one forward per backward: several task batches (sum) run their forwards and the
        # backward of their sum under no_sync, and the gradients are all-reduced here at the step's last micro-batch
        manual_sync = len(inputs) > 1 and isinstance(model, torch.nn.parallel.DistributedDataParallel)
        with model.no_sync() if manual_sync else nullcontext():
            loss = self._summed_backward(model, inputs)
        if manual_sync and self.accelerator.gradient_state.sync_gradients:
            self._all_reduce_gradients([p for p in model.parameters() if p.grad is not None])
        return loss

    def _all_reduce_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """These gradients averaged over the ranks in one flat all-reduce (what DDP's hooks would have done); the
        same set of parameters must hold gradients on every rank."""
        if not params:
            return
        flat = self._all_reduce_mean(torch.cat([cast(torch.Tensor, p.grad).reshape(-1) for p in params]))
        offset = 0
        for p in params:
            p.grad = flat[offset : offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()

    def _summed_backward(self, model, inputs) -> torch.Tensor:
        """Forward every task batch, skip a non-finite micro-batch, backward the (weighted) sum of the losses."""
        losses = self._task_losses(model, inputs)
        loss = torch.stack(list(losses.values())).sum()
        if not self._loss_is_finite(loss, losses):
            return torch.zeros((), device=loss.device)
        self._record_task_losses(losses)
        if self.task_weighting is not None:  # backward through the weighted sum; the plain sum is what is logged
            objective = torch.stack(list(self._weighted(losses).values())).sum()
            self.accelerator.backward(objective / self.current_gradient_accumulation_steps)
            self._advance_weighting()
            loss = loss / self.current_gradient_accumulation_steps
        else:
            loss = loss / self.current_gradient_accumulation_steps
            self.accelerator.backward(loss)
        if self.args.gradient_telemetry:
            self._last_task_batches.update(inputs)
            if self._telemetry_due():
                self._measure_gradients(model)
        return loss.detach()

    # -- gradient aggregation (PCGrad and friends) ------------------------------------------------------------

    def _shared_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters more than one task trains (empty with one encoder per task)."""
        return self.accelerator.unwrap_model(self.model).shared_parameters()

    def _check_aggregation_supported(self) -> None:
        """Aggregators need each task's gradient apart: DDP (whole gradients, all-reduced once per step), FSDP2
        (``DTensor`` shards, reduced per task by FSDP; the Gram matrix all-reduced over the shards) and DeepSpeed
        ZeRO-1/2 (whole parameters: :meth:`_zero_aggregated_step`) provide it. FSDP1's flat parameters and ZeRO-3's
        partitioned ones do not: refused, in one line naming what to use."""
        from accelerate.utils import DistributedType

        if self.is_deepspeed_enabled or self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
            stage = int(getattr(plugin, "zero_stage", 0) or 0)
            if stage > 2:
                raise RuntimeError(
                    f"strategy 'pcgrad' (any aggregator) runs under DeepSpeed ZeRO-1/2, not ZeRO-{stage} (which "
                    "partitions the parameters themselves): use zero_stage 2, or FSDP2 "
                    "(accelerate launch --config_file examples/accelerate/fsdp.yaml) to shard parameters."
                )
        fsdp_plugin = getattr(self.accelerator.state, "fsdp_plugin", None)
        if fsdp_plugin is not None and int(getattr(fsdp_plugin, "fsdp_version", 1) or 1) != 2:
            raise RuntimeError(
                "strategy 'pcgrad' (any aggregator) under FSDP needs fsdp_version: 2 (FSDP1's flat parameters "
                "cannot hold per-task gradients): set fsdp_version: 2 as examples/accelerate/fsdp.yaml does."
            )

    @staticmethod
    def _sync_each_task(model) -> None:
        """FSDP2: reduce-scatter after every task's backward, even on a micro-batch the Trainer runs under
        ``no_sync`` (the per-task shards are what the buffer keeps; a mean is linear, so this changes no result).
        The Trainer's own context turns synchronisation back on after the step."""
        from torch.distributed.fsdp import FSDPModule

        for module in model.modules():
            if isinstance(module, FSDPModule):
                module.set_requires_gradient_sync(True, recurse=False)

    def _aggregator(self):
        name = self.args.aggregator or ("pcgrad_mean" if self.args.pcgrad_reduction == "mean" else "pcgrad")
        return get_aggregator(name, **(self.args.aggregator_options or {}))

    def _all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.args.world_size > 1:
            torch.distributed.all_reduce(tensor)
            tensor /= self.args.world_size
        return tensor

    def _aggregated_step(self, model, inputs, shared) -> torch.Tensor:
        """PCGrad-style step through :class:`mtbert.training.backward.TaskGradients`: per-task gradients on the shared
        encoder, accumulated over micro-batches (each task's backward without DDP's reduction), all-reduced once
        across ranks (projection is not linear, so it must see the global gradients), then combined as Σ_j w_j g_j
        with the same weights on every rank (a task-order generator seeded by ``(seed, global_step)``).
        Task-specific parameters (heads) keep their own task's gradient. The Trainer then clips, steps and logs."""
        self._check_aggregation_supported()
        if self.is_deepspeed_enabled:
            return self._zero_aggregated_step(model, inputs, shared)
        sharded = is_sharded(shared[0])
        if sharded:
            self._sync_each_task(model)
        no_sync = model.no_sync if hasattr(model, "no_sync") and not sharded else nullcontext
        passes = self._encoder_passes(inputs)
        losses = self._task_losses(model, inputs, passes, each_task=no_sync)
        if self._loss_is_finite(torch.stack(list(losses.values())).sum(), losses):
            if self._task_gradients is None or not self._task_gradients.matches(shared, list(inputs)):
                self._task_gradients = TaskGradients(shared, list(inputs))
            self._task_gradients.backward(
                self._weighted(losses),
                backward=self.accelerator.backward,
                no_sync=no_sync,
                scale=1.0 / self.current_gradient_accumulation_steps,
                # one forward per task, or one shared by a joint group: keep the graph for all but the last loss
                retain_graph=None if passes else False,
            )
            losses = {task: loss.detach() for task, loss in losses.items()}
        else:  # a non-finite loss: this micro-batch adds nothing
            losses = {t: torch.zeros((), device=self.args.device) for t in inputs}
            if self._task_gradients is None or not self._task_gradients.matches(shared, list(inputs)):
                return torch.zeros((), device=self.args.device)
        self._record_task_losses(losses)
        # when every micro-batch of this optimizer step was skipped, no .grad is set (not even zeros), so AdamW
        # leaves every parameter and its state alone, as under round_robin/sum (no momentum, no weight decay)
        if self.accelerator.gradient_state.sync_gradients and self._task_gradients.pending:
            shared_ids = {id(p) for p in shared}
            # the same set on every rank: same tasks each step. FSDP2 reduces its DTensor parameters itself, and a
            # model sharded at load time averages its replicated ones (the stock Trainer's hooks)
            others = [
                p for p in model.parameters() if id(p) not in shared_ids and p.grad is not None and not is_sharded(p)
            ]
            if self.args.world_size > 1 and not self.is_distributed_loading_by_transformers:
                self._all_reduce_gradients(others)
            seed = int(self.args.seed) * 1_000_003 + self.state.global_step
            result = self._task_gradients.aggregate(  # sharded: FSDP reduced each task; the Gram is all-reduced
                self._aggregator(),
                generator=torch.Generator(device="cpu").manual_seed(seed),
                all_reduce=None if sharded else self._all_reduce_mean,
            )
            self._store_telemetry(result.gram, result.tasks, result.num_projections)
        self._advance_weighting()
        return torch.stack(list(losses.values())).sum() / self.current_gradient_accumulation_steps

    def _zero_aggregated_step(self, model, inputs, shared) -> torch.Tensor:
        """DeepSpeed ZeRO-1/2 (parameters whole on every rank; DeepSpeed reduces and partitions gradients from hooks
        inside its own backward, and steps there): per-task gradients by ``torch.autograd.grad`` through the
        unwrapped module, so DeepSpeed sees none of them, all-reduced and combined once per optimizer step as under
        DDP; then one ``engine.backward`` of a linear surrogate whose gradient is exactly the combined update on the
        encoder and each head's own gradient, which DeepSpeed reduces (a mean of equal tensors), partitions, clips
        and steps as it would a loss's."""
        module = self.accelerator.unwrap_model(model)
        shared_ids = {id(p) for p in shared}
        params = [p for p in module.parameters() if p.requires_grad]
        passes = self._encoder_passes(inputs)
        losses = self._task_losses(module, inputs, passes)
        if self._task_gradients is None or not self._task_gradients.matches(shared, list(inputs)):
            self._task_gradients = TaskGradients(shared, list(inputs))
        if self._loss_is_finite(torch.stack(list(losses.values())).sum(), losses):
            others = [p for p in params if id(p) not in shared_ids]
            self._task_gradients.capture(
                self._weighted(losses),
                others,
                scale=1.0 / self.current_gradient_accumulation_steps,
                retain_graph=None if passes else False,  # a joint group's tasks share one forward
            )
            losses = {task: loss.detach() for task, loss in losses.items()}
        else:
            losses = {t: torch.zeros((), device=self.args.device) for t in inputs}
        self._record_task_losses(losses)
        if self.accelerator.gradient_state.sync_gradients and self._task_gradients.pending:
            seed = int(self.args.seed) * 1_000_003 + self.state.global_step
            result = self._task_gradients.aggregate(
                self._aggregator(),
                generator=torch.Generator(device="cpu").manual_seed(seed),
                all_reduce=self._all_reduce_mean,
            )
            self._store_telemetry(result.gram, result.tasks, result.num_projections)
            surrogate = self._task_gradients.linear_surrogate(params)
            prologue = getattr(model, "_backward_prologue", None)
            if prologue is not None and not inspect.signature(prologue).parameters:
                # DeepSpeed >= 0.17 starts its backward from hooks on the outputs of engine.forward, which this
                # scalar never passed through: start it the same way
                surrogate.register_hook(lambda grad: (prologue(), grad)[1])
            self.accelerator.backward(surrogate, scale_wrt_gas=False)  # the 1/accumulation is in the task grads
        self._advance_weighting()
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
        """Telemetry for strategies that never form per-task gradients: the task gradients of the last batch seen of
        each task (:func:`mtbert.training.backward.task_gradient_matrix`), on logging steps only; all-reduced across
        ranks like the training gradients."""
        shared = self._shared_parameters()
        if not shared or len(self._last_task_batches) < 2:
            return
        if is_sharded(shared[0]):  # autograd.grad on FSDP2 shards would bypass FSDP's reduction
            if not getattr(self, "_telemetry_skip_logged", False):
                logger.warning("gradient_telemetry under FSDP is measured by strategy 'pcgrad' only: skipped")
                self._telemetry_skip_logged = True
            return
        unwrapped = self.accelerator.unwrap_model(model)
        losses = self._task_losses(unwrapped, self._last_task_batches, passes={})
        buffer = self._all_reduce_mean(task_gradient_matrix(losses, shared))
        self._store_telemetry(stack_gram(buffer), list(losses))

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
            self.state.global_step,
            bad,
            self._nonfinite_in_a_row,
            self.nonfinite_skipped,
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
