"""mtbert.training.backward without any Trainer: per-task gradients on shared parameters, combined by an aggregator."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtbert import mtl_backward
from mtbert.training.backward import TaskGradients, task_gradient_matrix


class TwoHeads(nn.Module):
    """A shared trunk and one linear head per task."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = nn.Linear(3, 4)
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 1), "b": nn.Linear(4, 1)})
        with torch.no_grad():  # the same read-out, pulled towards opposite targets: the trunk gradients conflict
            self.heads["b"].weight.copy_(self.heads["a"].weight * 0.5)

    def losses(self, x: torch.Tensor, target_b: float = -3.0) -> dict[str, torch.Tensor]:
        h = torch.tanh(self.trunk(x))
        return {
            "a": ((self.heads["a"](h) - 3.0) ** 2).mean(),
            "b": ((self.heads["b"](h) - target_b) ** 2).mean(),
        }


def flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads]).double()


def per_task_grads(model, losses):
    trunk = list(model.trunk.parameters())
    out = {}
    for task, loss in losses.items():
        out[task] = torch.autograd.grad(loss, trunk + list(model.heads[task].parameters()), retain_graph=True)
    return out


def pcgrad_two(g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """The published PCGrad for two tasks (each order is forced), written out on vectors."""

    def project(g, other):
        dot = torch.dot(g, other)
        return g - dot / other.norm() ** 2 * other if dot < 0 else g

    return project(g1, g2) + project(g2, g1)


X = torch.tensor([[1.0, -0.5, 2.0], [0.3, 0.8, -1.0], [-1.2, 0.4, 0.5], [0.7, 0.7, 0.7]])


def test_pcgrad_on_conflicting_tasks_differs_from_the_sum_and_matches_the_reference():
    model = TwoHeads()
    reference = per_task_grads(model, model.losses(X))
    g_a, g_b = flat(reference["a"][:2]), flat(reference["b"][:2])
    assert torch.dot(g_a, g_b) < 0, "the fixture must make the two tasks' trunk gradients conflict"

    result = mtl_backward(model.losses(X), list(model.trunk.parameters()), "pcgrad")
    got = flat(p.grad for p in model.trunk.parameters())
    torch.testing.assert_close(got, pcgrad_two(g_a, g_b), rtol=1e-5, atol=1e-7)
    assert (got - (g_a + g_b)).abs().max() > 1e-3  # PCGrad really changed the update
    assert int(result.num_projections) == 2 and result.tasks == ["a", "b"]
    torch.testing.assert_close(result.gram[0, 1], torch.dot(g_a, g_b), rtol=1e-5, atol=1e-7)
    for task in ("a", "b"):  # each head keeps its own task's gradient
        for p, g in zip(model.heads[task].parameters(), reference[task][2:]):
            torch.testing.assert_close(p.grad, g)


def test_sum_aggregator_equals_a_plain_backward_of_the_summed_loss():
    model, plain = TwoHeads(), TwoHeads()
    mtl_backward(model.losses(X), list(model.trunk.parameters()), "sum")
    sum(plain.losses(X).values()).backward()
    for p, q in zip(model.parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)


def test_a_list_of_losses_and_an_aggregator_function_work_too():
    model = TwoHeads()
    calls = []

    def first_task_only(gram, generator=None):
        calls.append(gram.shape)
        from mtbert.training.aggregators import AggregatorResult

        return AggregatorResult(torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor(0))

    reference = per_task_grads(model, model.losses(X))
    mtl_backward(list(model.losses(X).values()), list(model.trunk.parameters()), first_task_only)
    assert calls == [(2, 2)]
    torch.testing.assert_close(flat(p.grad for p in model.trunk.parameters()), flat(reference["a"][:2]))


def test_accumulated_micro_batches_are_combined_once():
    """Two micro-batches into one TaskGradients, then one aggregation: PCGrad of the summed task gradients."""
    model = TwoHeads()
    trunk = list(model.trunk.parameters())
    halves = (X[:2], X[2:])
    sums = {"a": 0, "b": 0}
    for half in halves:
        for task, grads in per_task_grads(model, model.losses(half)).items():
            sums[task] = sums[task] + flat(grads[:2])
    gradients = TaskGradients(trunk, ["a", "b"])
    for half in halves:
        gradients.backward(model.losses(half))
        assert all(p.grad is None for p in trunk)  # shared gradients live in the buffer until aggregation
    gradients.aggregate("pcgrad")
    torch.testing.assert_close(flat(p.grad for p in trunk), pcgrad_two(sums["a"], sums["b"]), rtol=1e-4, atol=1e-6)
    assert gradients.buffer.abs().sum() == 0  # emptied for the next step
    assert gradients.matches(trunk, ["a", "b"]) and not gradients.matches(trunk, ["b", "a"])
    with pytest.raises(ValueError, match="losses for tasks"):
        gradients.backward({"b": model.losses(X)["b"]})


def test_task_gradient_matrix_leaves_grad_untouched():
    model = TwoHeads()
    reference = per_task_grads(model, model.losses(X))
    matrix = task_gradient_matrix(model.losses(X), list(model.trunk.parameters()))
    assert matrix.shape == (2, 4 * 3 + 4)
    torch.testing.assert_close(matrix[1].double(), flat(reference["b"][:2]), rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in model.parameters())
