"""A multitask backward that needs no Trainer: per-task gradients on the shared parameters, combined by an aggregator.

The shape is TorchJD's ``mtl_backward(losses, features, aggregator)``: give it one loss per task and the parameters
the tasks share; every task-specific parameter (a head) gets its own task's gradient as with ``loss.backward()``,
and the shared parameters get ``Σ_j w_j g_j`` with ``w`` computed by an aggregator from the T × T Gram matrix of
the task gradients (:mod:`mtbert.training.aggregators`: ``sum``, ``mean``, ``pcgrad``, ``imtlg``, ``cagrad``, ...).

    result = mtl_backward({"sst": loss_a, "sts": loss_b}, model.shared_parameters(), "pcgrad")
    optimizer.step()

:class:`TaskGradients` is the same in two halves, for training loops that accumulate several micro-batches (or
all-reduce across ranks) before combining: :meth:`TaskGradients.backward` per micro-batch, then
:meth:`TaskGradients.aggregate` once. :func:`task_gradient_matrix` measures the per-task gradients without touching
``.grad`` (gradient telemetry).

Sharded parameters (FSDP2 ``DTensor`` parameters, e.g. from ``accelerate`` with ``fsdp_version: 2`` or
``from_pretrained(distributed_config=...)``) are supported by :class:`TaskGradients`: each task's gradient is
reduce-scattered by FSDP as usual, the buffer holds only this rank's shard of every task gradient, and the Gram
matrix is the sum over the shard group of the per-shard dot products (an all-reduce of T × T numbers), so every
rank computes the same weights as one process holding whole gradients would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .aggregators import AggregatorResult, get_aggregator, stack_gram

__all__ = ["MTLBackwardResult", "TaskGradients", "is_sharded", "mtl_backward", "task_gradient_matrix"]


def _dtensor_type():
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without distributed
        return None
    return DTensor


def is_sharded(param: Tensor) -> bool:
    """Whether ``param`` is a ``DTensor`` (an FSDP2/tensor-parallel parameter: each rank holds a shard)."""
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(param, dtensor)


def _local(tensor: Tensor) -> Tensor:
    return tensor.to_local() if is_sharded(tensor) else tensor  # type: ignore[attr-defined]


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

    With sharded (``DTensor``) shared parameters the buffer is ``T × P_local``: after each task's backward (which
    FSDP ends with a reduce-scatter, a mean over ranks) the local shard of each gradient is added into the task's
    row; :meth:`aggregate` then all-reduces the T × T partial Gram matrices (a sum over the shard group) instead of
    the buffer, and sets each ``p.grad`` to a ``DTensor`` with the parameter's own placements.
    """

    def __init__(self, shared_params: Sequence[torch.nn.Parameter], tasks: Sequence[str]):
        self.shared = list(shared_params)
        if not self.shared:
            raise ValueError("TaskGradients needs at least one shared parameter")
        self.tasks = list(tasks)
        sharded = [is_sharded(p) for p in self.shared]
        if any(sharded) and not all(sharded):
            raise ValueError(
                "TaskGradients: some shared parameters are sharded (DTensor) and some are not; shard the whole "
                "shared encoder (one fully_shard over it) or none of it"
            )
        self.sharded = all(sharded)
        total = sum(_local(p).numel() for p in self.shared)
        first = _local(self.shared[0])
        self.buffer = torch.zeros(len(self.tasks), total, device=first.device, dtype=first.dtype)
        self.pending = 0  # micro-batches backpropagated into the buffer since the last aggregate()
        self.other_grads: dict[int, Tensor] = {}  # capture(): task-specific gradients, by id of the parameter

    def matches(self, shared_params: Sequence[torch.nn.Parameter], tasks: Sequence[str]) -> bool:
        """Whether this buffer can take these tasks' gradients (so a training loop reuses it across steps)."""
        return (
            list(tasks) == self.tasks
            and len(shared_params) == len(self.shared)
            and all(a is b for a, b in zip(shared_params, self.shared))
        )

    def _point_grads(self, flat: Tensor) -> None:
        offset = 0
        for p in self.shared:
            if self.sharded:
                from torch.distributed.tensor import DTensor

                local = _local(p)
                view = flat[offset : offset + local.numel()].view_as(local)
                d: Any = p  # a DTensor parameter
                p.grad = DTensor.from_local(
                    view, d.device_mesh, d.placements, run_check=False, shape=p.shape, stride=p.stride()
                )
                offset += local.numel()
            else:
                p.grad = flat[offset : offset + p.numel()].view_as(p)
                offset += p.numel()

    def _add_local_grads(self, row: Tensor) -> None:
        """Sharded parameters: add each ``p.grad``'s local shard (reduced by FSDP) into ``row``, then drop it."""
        offset = 0
        for p in self.shared:
            n = _local(p).numel()
            if p.grad is not None:
                row[offset : offset + n] += _local(p.grad).reshape(-1).to(row.dtype)
            p.grad = None
            offset += n

    def _sharded_gram(self) -> Tensor:
        """Σ over the shard group of each rank's ``local @ local.T``: the Gram matrix of the whole task gradients.

        Parameters with different meshes or placements contribute their own partial sums, each all-reduced over the
        mesh dimensions it is sharded along (replicated dimensions hold identical copies and are not summed)."""
        import torch.distributed as dist
        from torch.distributed.tensor import Shard

        groups: dict[tuple, list[tuple[int, int]]] = {}
        offset = 0
        shards: list[Any] = list(self.shared)  # DTensor parameters
        for p in shards:
            n = _local(p).numel()
            dims = tuple(d for d, placement in enumerate(p.placements) if isinstance(placement, Shard))
            groups.setdefault((id(p.device_mesh), dims), []).append((offset, n))
            offset += n
        meshes = {id(p.device_mesh): p.device_mesh for p in shards}
        gram = None
        for (mesh_id, dims), spans in groups.items():
            columns = torch.cat([self.buffer[:, start : start + n] for start, n in spans], dim=1)
            partial = stack_gram(columns)
            for dim in dims:
                dist.all_reduce(partial, group=meshes[mesh_id].get_group(dim))
            gram = partial if gram is None else gram + partial
        assert gram is not None, "no shard group"
        return gram

    def backward(
        self,
        losses: Mapping[str, Tensor] | Sequence[Tensor],
        backward: Callable[..., None] | None = None,
        no_sync: Callable[[], AbstractContextManager] | None = None,
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
                if self.sharded:  # FSDP owns the gradient of a DTensor: let it reduce-scatter, then copy its shard
                    for p in self.shared:
                        p.grad = None
                else:
                    self._point_grads(self.buffer[row])
                keep = row < last if retain_graph is None else retain_graph
                with no_sync():
                    run_backward(loss * scale if scale != 1.0 else loss, **({"retain_graph": True} if keep else {}))
                if self.sharded:
                    self._add_local_grads(self.buffer[row])
        finally:
            for p in self.shared:
                p.grad = None
        self.pending += 1

    def capture(
        self,
        losses: Mapping[str, Tensor] | Sequence[Tensor],
        others: Sequence[torch.nn.Parameter] = (),
        scale: float = 1.0,
        retain_graph: bool | None = None,
    ) -> None:
        """:meth:`backward` by ``torch.autograd.grad``: no ``.grad`` is touched, so no gradient hook of a wrapper
        fires (DeepSpeed's ZeRO reduces and partitions gradients from such hooks). Each task's gradient on the
        shared parameters is added into its row; those on ``others`` (task-specific parameters) are summed over the
        tasks into :attr:`other_grads`, for :meth:`linear_surrogate` to hand on. ``retain_graph`` as in
        :meth:`backward`."""
        named = _named_losses(losses)
        if list(named) != self.tasks or self.sharded:
            raise ValueError(f"capture: losses for tasks {list(named)} into a whole-gradient buffer of {self.tasks}")
        others = list(others)
        last = len(named) - 1
        for row, loss in enumerate(named.values()):
            keep = row < last if retain_graph is None else retain_graph
            grads = torch.autograd.grad(
                loss * scale if scale != 1.0 else loss, self.shared + others, allow_unused=True, retain_graph=keep
            )
            offset = 0
            for p, g in zip(self.shared, grads):
                if g is not None:
                    self.buffer[row, offset : offset + p.numel()] += g.reshape(-1).to(self.buffer.dtype)
                offset += p.numel()
            for p, g in zip(others, grads[len(self.shared) :]):
                if g is not None:
                    self.other_grads[id(p)] = g if id(p) not in self.other_grads else self.other_grads[id(p)] + g
        self.pending += 1

    def linear_surrogate(self, params: Sequence[torch.nn.Parameter]) -> Tensor:
        """``Σ_p <p, G_p>`` over ``params`` with ``G_p`` their current ``.grad`` (the shared parameters, after
        :meth:`aggregate`) or the task-specific sums of :meth:`capture`: a scalar whose backward gives each
        parameter exactly ``G_p``. ``.grad`` is cleared and :attr:`other_grads` emptied, so a wrapper that owns the
        backward (DeepSpeed's ``engine.backward``) reduces and steps the aggregated update as if it were a loss's."""
        terms = []
        for p in params:
            g = p.grad if p.grad is not None else self.other_grads.get(id(p))
            p.grad = None
            if g is not None:
                terms.append((p * g.detach().to(p.dtype)).sum().float())
        self.other_grads = {}
        return torch.stack(terms).sum()

    def aggregate(
        self,
        aggregator: str | Callable[..., AggregatorResult] = "pcgrad",
        generator: torch.Generator | None = None,
        all_reduce: Callable[[Tensor], Tensor] | None = None,
    ) -> MTLBackwardResult:
        """Set every shared ``p.grad`` to ``Σ_j w_j g_j`` (replacing it) and empty the buffer.

        ``all_reduce`` (e.g. a mean over data-parallel ranks) is applied to the buffer first, so every rank combines
        the global task gradients; with the same ``generator`` seed every rank computes the same weights. Sharded
        parameters ignore it: FSDP has already reduced each task's gradient, and the Gram matrix is all-reduced over
        the shard group instead (:meth:`_sharded_gram`).
        """
        if self.sharded:
            gram = self._sharded_gram()
        else:
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
    set to the aggregated update. ``aggregator`` is a name from :data:`mtbert.training.aggregators.AGGREGATORS` or any
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
        raw = torch.autograd.grad(loss, shared, allow_unused=True, retain_graph=i < len(named) - 1)
        grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(raw, shared)]
        rows.append(torch.cat([g.reshape(-1).float() for g in grads]))
    return torch.stack(rows)
