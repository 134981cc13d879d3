"""A multitask backward that needs no Trainer: per-task gradients on the shared parameters, combined by an aggregator.

The shape is TorchJD's ``mtl_backward(losses, features, aggregator)``: give it one loss per task and the parameters
the tasks share; every task-specific parameter (a head) gets its own task's gradient as with ``loss.backward()``,
and the shared parameters get ``Σ_j w_j g_j`` with ``w`` computed by an aggregator from the T × T Gram matrix of
the task gradients (:mod:`mtbert.aggregators`: ``sum``, ``mean``, ``pcgrad``, ``imtlg``, ``cagrad``, ...).

    result = mtl_backward({"sst": loss_a, "sts": loss_b}, model.shared_parameters(), "pcgrad")
    optimizer.step()

:class:`TaskGradients` is the same in two halves, for training loops that accumulate several micro-batches (or
all-reduce across ranks) before combining: :meth:`TaskGradients.backward` per micro-batch, then
:meth:`TaskGradients.aggregate` once. :func:`task_gradient_matrix` measures the per-task gradients without touching
``.grad`` (gradient telemetry).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import NamedTuple

import torch
from torch import Tensor

from .aggregators import AggregatorResult, get_aggregator, stack_gram

__all__ = ["MTLBackwardResult", "TaskGradients", "mtl_backward", "task_gradient_matrix"]


class MTLBackwardResult(NamedTuple):
    """What one aggregation did: the task order, the Gram matrix, the task weights and PCGrad's projection count."""

    tasks: list[str]
    gram: Tensor
    weights: Tensor
    num_projections: Tensor


def _named_losses(losses: Mapping[str, Tensor] | Sequence[Tensor]) -> dict[str, Tensor]:
    if isinstance(losses, Mapping):
        return dict(losses)
    return {str(i): loss for i, loss in enumerate(losses)}


def _resolve_aggregator(aggregator) -> Callable[..., AggregatorResult]:
    return get_aggregator(aggregator) if isinstance(aggregator, str) else aggregator


class TaskGradients:
    """A ``T × P`` buffer of per-task gradients of the shared parameters, accumulated over micro-batches.

    While a task's loss is backpropagated, every shared ``p.grad`` is a view into that task's row, so autograd adds
    straight into the buffer (no copies). Task-specific parameters accumulate into their own ``.grad`` as usual.
    """

    def __init__(self, shared_params: Sequence[torch.nn.Parameter], tasks: Sequence[str]):
        self.shared = list(shared_params)
        if not self.shared:
            raise ValueError("TaskGradients needs at least one shared parameter")
        self.tasks = list(tasks)
        total = sum(p.numel() for p in self.shared)
        first = self.shared[0]
        self.buffer = torch.zeros(len(self.tasks), total, device=first.device, dtype=first.dtype)
        self.pending = 0  # micro-batches backpropagated into the buffer since the last aggregate()

    def matches(self, shared_params: Sequence[torch.nn.Parameter], tasks: Sequence[str]) -> bool:
        """Whether this buffer can take these tasks' gradients (so a training loop reuses it across steps)."""
        return list(tasks) == self.tasks and len(shared_params) == len(self.shared) and all(
            a is b for a, b in zip(shared_params, self.shared)
        )

    def _point_grads(self, flat: Tensor) -> None:
        offset = 0
        for p in self.shared:
            p.grad = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()

    def backward(
        self,
        losses: Mapping[str, Tensor] | Sequence[Tensor],
        backward: Callable[..., None] | None = None,
        no_sync: Callable[[], object] | None = None,
        scale: float = 1.0,
        retain_graph: bool | None = None,
    ) -> None:
        """Backpropagate each task's loss (times ``scale``) into its row; shared ``.grad`` is None afterwards.

        ``backward`` replaces ``loss.backward(**kwargs)`` (e.g. ``accelerator.backward`` for mixed precision);
        ``no_sync`` is a context that suppresses DDP's gradient all-reduce (``model.no_sync``): task gradients are
        reduced once in :meth:`aggregate`, since the combination is not linear. ``retain_graph`` (default: for every
        loss but the last) lets losses share one forward graph; pass False when each has its own (less memory).
        """
        named = _named_losses(losses)
        if list(named) != self.tasks:
            raise ValueError(f"losses for tasks {list(named)}, but this buffer holds {self.tasks}")
        run_backward = backward or (lambda loss, **kwargs: loss.backward(**kwargs))
        no_sync = no_sync or nullcontext
        last = len(named) - 1
        try:
            for row, loss in enumerate(named.values()):
                self._point_grads(self.buffer[row])
                keep = row < last if retain_graph is None else retain_graph
                with no_sync():
                    run_backward(loss * scale if scale != 1.0 else loss, **({"retain_graph": True} if keep else {}))
        finally:
            for p in self.shared:
                p.grad = None
        self.pending += 1

    def aggregate(
        self,
        aggregator: str | Callable[..., AggregatorResult] = "pcgrad",
        generator: torch.Generator | None = None,
        all_reduce: Callable[[Tensor], Tensor] | None = None,
    ) -> MTLBackwardResult:
        """Set every shared ``p.grad`` to ``Σ_j w_j g_j`` (replacing it) and empty the buffer.

        ``all_reduce`` (e.g. a mean over data-parallel ranks) is applied to the buffer first, so every rank combines
        the global task gradients; with the same ``generator`` seed every rank computes the same weights.
        """
        if all_reduce is not None:
            self.buffer = all_reduce(self.buffer)
        gram = stack_gram(self.buffer)
        result = _resolve_aggregator(aggregator)(gram, generator=generator)
        self._point_grads(result.weights.to(self.buffer.device, self.buffer.dtype) @ self.buffer)
        self.buffer.zero_()
        self.pending = 0
        return MTLBackwardResult(list(self.tasks), gram, result.weights, result.num_projections)


def mtl_backward(
    losses: Mapping[str, Tensor] | Sequence[Tensor],
    shared_params: Sequence[torch.nn.Parameter],
    aggregator: str | Callable[..., AggregatorResult] = "pcgrad",
    generator: torch.Generator | None = None,
    backward: Callable[..., None] | None = None,
) -> MTLBackwardResult:
    """Backpropagate several task losses at once, combining their gradients on ``shared_params`` by ``aggregator``.

    Task-specific parameters receive (accumulate) their own loss's gradient; each shared parameter's ``.grad`` is
    set to the aggregated update. ``aggregator`` is a name from :data:`mtbert.aggregators.AGGREGATORS` or any
    ``fn(gram, generator=None) -> AggregatorResult``; ``generator`` makes PCGrad's random task orders reproducible.
    """
    named = _named_losses(losses)
    gradients = TaskGradients(shared_params, list(named))
    gradients.backward(named, backward=backward)
    return gradients.aggregate(aggregator, generator=generator)


def task_gradient_matrix(
    losses: Mapping[str, Tensor] | Sequence[Tensor], shared_params: Sequence[torch.nn.Parameter]
) -> Tensor:
    """The ``T × P`` float32 matrix of each loss's gradient on ``shared_params`` (zeros where a loss does not reach
    a parameter), by ``torch.autograd.grad``: no ``.grad`` is touched, so training state is left as it was."""
    shared = list(shared_params)
    named = list(_named_losses(losses).values())
    rows = []
    for i, loss in enumerate(named):  # losses may share a graph (one forward pass): keep it until the last one
        grads = torch.autograd.grad(loss, shared, allow_unused=True, retain_graph=i < len(named) - 1)
        grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, shared)]
        rows.append(torch.cat([g.reshape(-1).float() for g in grads]))
    return torch.stack(rows)
