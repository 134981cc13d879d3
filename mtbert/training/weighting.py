"""Loss-based task weighting: how much each task's loss counts in a step, learned or computed from the losses.

The gradient aggregators (:mod:`mtbert.training.aggregators`) act on the task *gradients*; these balancers act on the
task
*losses* and need no per-task gradient, so they cost nothing beyond a few scalars per step. Each turns the
(globally averaged, detached) task losses into one weight per task; the trainer then backpropagates
``sum_i w_i L_i`` (strategies ``round_robin`` and ``sum``) or scales each task's loss by ``w_i`` before its own
backward (strategy ``pcgrad``, so an aggregator combines the weighted task gradients).

=============== ======================================================================================================
``static``      w_i = 1 (each task's ``loss_weight`` still applies inside its head): today's behaviour.
``uncertainty`` Kendall, Gal & Cipolla (CVPR 2018): learned log-variances s_i, objective sum_i exp(-s_i) L_i + s_i,
                so w_i = exp(-s_i); s is trained by its own Adam (``lr``) from the losses alone.
``dwa``         Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019): w_i = T softmax_i(r_i / ``temperature``)
                with r_i the ratio of task i's mean loss over the last two periods of ``period`` steps.
``famo``        FAMO (Liu et al., NeurIPS 2023): logits xi, z = softmax(xi), w_i = (z_i / L_i) / sum_j (z_j / L_j)
                (the gradient of sum_i z_i log L_i, normalised); xi follows the per-task log-loss decrease.
``dbmtl``       DB-MTL's loss-scale balancing (Lin et al., 2023): every loss enters as log(L_i + eps), i.e.
                w_i = 1 / (L_i + eps) (the gradient-magnitude half of DB-MTL is left to the aggregators).
=============== ======================================================================================================

Every class keeps its state (learned parameters, optimizer moments, loss history) as float64 CPU tensors, updated
once per optimizer step by :meth:`LossWeighting.update` from losses that every rank holds identically (the trainer
all-reduces them), so all DDP ranks keep the same weights; :meth:`LossWeighting.state_dict` is JSON (exact float
round-trip) and is written into every checkpoint as ``task_weighting.json``, so a resumed run continues with the
learned weights. Under ``round_robin`` a step holds one task: the methods that compare tasks within a step
(``famo``) are refused there (:attr:`LossWeighting.needs_all_tasks`).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = [
    "WEIGHTINGS",
    "DBMTLWeighting",
    "DWAWeighting",
    "FAMOWeighting",
    "LossWeighting",
    "StaticWeighting",
    "UncertaintyWeighting",
    "build_weighting",
    "check_weighting_options",
]

_DTYPE = torch.float64


class LossWeighting:
    """Base class: ``weights(losses) -> {task: weight}`` per micro-batch, ``update(losses)`` per optimizer step.

    ``losses`` are ``{task: detached scalar tensor}`` of the tasks in the step (one task under ``round_robin``),
    identical on every rank. :attr:`OPTIONS` maps each option (``weighting_options`` in a config) to its default.
    """

    name = "static"
    OPTIONS: ClassVar[dict[str, Any]] = {}
    needs_all_tasks = False  # compares the tasks within a step: not under round_robin
    uses_current_losses = False  # the weights depend on this micro-batch's losses (not only on the state)

    def __init__(self, tasks: Sequence[str], **options):
        self.tasks = list(tasks)
        check_weighting_options(self.name, options)
        self.options = {**self.OPTIONS, **options}

    def _index(self, losses: Mapping[str, Tensor]) -> list[int]:
        return [self.tasks.index(t) for t in losses]

    def weights(self, losses: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {t: torch.ones((), dtype=_DTYPE) for t in losses}

    def update(self, losses: Mapping[str, Tensor]) -> None:
        """Advance the state with one optimizer step's mean task losses (a no-op for stateless methods)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("tasks", self.tasks) != self.tasks:
            raise ValueError(f"task_weighting state is for tasks {state.get('tasks')}, this run has {self.tasks}")

    def _state(self, **tensors: Tensor) -> dict[str, Any]:
        return {
            "method": self.name,
            "tasks": list(self.tasks),
            **{k: v.tolist() if isinstance(v, Tensor) else v for k, v in tensors.items()},
        }

    def current_weights(self) -> dict[str, float] | None:
        """The weights the state gives now (for logging), or None where they depend on the step's losses."""
        return None


class StaticWeighting(LossWeighting):
    """w_i = 1: the plain (``loss_weight``-scaled) sum, as without a weighting."""


class _Adam:
    """Adam on a float64 vector, entry by entry (a masked entry neither moves nor advances its step count), so that
    under round_robin each task's parameter moves only on its own steps. L2 ``weight_decay`` as torch's Adam."""

    def __init__(self, size: int, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.m = torch.zeros(size, dtype=_DTYPE)
        self.v = torch.zeros(size, dtype=_DTYPE)
        self.t = torch.zeros(size, dtype=_DTYPE)

    def step(self, param: Tensor, grad: Tensor, mask: Tensor) -> Tensor:
        b1, b2 = self.betas
        grad = grad + self.weight_decay * param
        self.t = torch.where(mask, self.t + 1, self.t)
        self.m = torch.where(mask, b1 * self.m + (1 - b1) * grad, self.m)
        self.v = torch.where(mask, b2 * self.v + (1 - b2) * grad * grad, self.v)
        t = self.t.clamp_min(1)
        m_hat = self.m / (1 - b1**t)
        v_hat = self.v / (1 - b2**t)
        return torch.where(mask, param - self.lr * m_hat / (v_hat.sqrt() + self.eps), param)

    def state(self) -> dict[str, list]:
        return {"m": self.m.tolist(), "v": self.v.tolist(), "t": self.t.tolist()}

    def load(self, state: Mapping[str, Any]) -> None:
        self.m, self.v, self.t = (torch.tensor(state[k], dtype=_DTYPE) for k in ("m", "v", "t"))


def _mask(tasks: list[str], present: Sequence[str]) -> Tensor:
    return torch.tensor([t in present for t in tasks])


def _values(tasks: list[str], losses: Mapping[str, Tensor]) -> Tensor:
    """The losses as a float64 CPU vector over all tasks (NaN for tasks not in the step)."""
    out = torch.full((len(tasks),), float("nan"), dtype=_DTYPE)
    for task, loss in losses.items():
        out[tasks.index(task)] = float(loss)
    return out


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic uncertainty weighting (Kendall et al. 2018): the objective sum_i exp(-s_i) L_i + s_i.

    w_i = exp(-s_i) (1 at the start, ``init`` = 0). The regulariser s_i does not touch the model, so s is trained
    apart by Adam (``lr``) on d/ds_i = 1 - exp(-s_i) L_i, which settles at exp(-s_i) = 1 / L_i (losses on one scale).
    """

    name = "uncertainty"
    OPTIONS: ClassVar[dict[str, Any]] = {"lr": 0.01, "init": 0.0}

    def __init__(self, tasks, **options):
        super().__init__(tasks, **options)
        self.log_vars = torch.full((len(self.tasks),), float(self.options["init"]), dtype=_DTYPE)
        self.adam = _Adam(len(self.tasks), float(self.options["lr"]))

    def weights(self, losses):
        return {t: torch.exp(-self.log_vars[self.tasks.index(t)]) for t in losses}

    def update(self, losses):
        values = _values(self.tasks, losses)
        mask = _mask(self.tasks, list(losses))
        grad = torch.where(mask, 1.0 - torch.exp(-self.log_vars) * values.nan_to_num(0.0), 0.0)
        self.log_vars = self.adam.step(self.log_vars, grad, mask)

    def current_weights(self):
        return dict(zip(self.tasks, torch.exp(-self.log_vars).tolist()))

    def state_dict(self):
        return self._state(log_vars=self.log_vars, adam=self.adam.state())

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.log_vars = torch.tensor(state["log_vars"], dtype=_DTYPE)
        self.adam.load(state["adam"])


class DWAWeighting(LossWeighting):
    """Dynamic Weight Average (Liu et al. 2019): w_i = T exp(r_i / tau) / sum_j exp(r_j / tau).

    r_i = (task i's mean loss over the last period) / (its mean over the period before), a period being ``period``
    optimizer steps (the paper uses an epoch); w = 1 until two periods are complete. A task with no loss in either
    period (round_robin) gets r_i = 1.
    """

    name = "dwa"
    OPTIONS: ClassVar[dict[str, Any]] = {"temperature": 2.0, "period": 100}

    def __init__(self, tasks, **options):
        super().__init__(tasks, **options)
        t = len(self.tasks)
        self.sums = torch.zeros(t, dtype=_DTYPE)
        self.counts = torch.zeros(t, dtype=_DTYPE)
        self.steps = 0
        self.history: list[list[float]] = []  # the means of the last two complete periods (NaN: no loss)
        self.w = torch.ones(t, dtype=_DTYPE)

    def weights(self, losses):
        return {t: self.w[self.tasks.index(t)] for t in losses}

    def update(self, losses):
        values = _values(self.tasks, losses)
        seen = ~values.isnan()
        self.sums += values.nan_to_num(0.0)
        self.counts += seen.to(_DTYPE)
        self.steps += 1
        if self.steps % int(self.options["period"]):
            return
        means = torch.where(self.counts > 0, self.sums / self.counts.clamp_min(1), float("nan"))
        self.history = ([*self.history, means.tolist()])[-2:]
        self.sums.zero_()
        self.counts.zero_()
        if len(self.history) == 2:
            before, last = (torch.tensor(h, dtype=_DTYPE) for h in self.history)
            ratio = (last / before).nan_to_num(1.0, posinf=1.0, neginf=1.0)
            self.w = len(self.tasks) * torch.softmax(ratio / float(self.options["temperature"]), dim=0)

    def current_weights(self):
        return dict(zip(self.tasks, self.w.tolist()))

    def state_dict(self):
        return self._state(sums=self.sums, counts=self.counts, steps=self.steps, history=self.history, w=self.w)

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.sums, self.counts, self.w = (torch.tensor(state[k], dtype=_DTYPE) for k in ("sums", "counts", "w"))
        self.steps, self.history = int(state["steps"]), [list(h) for h in state["history"]]


class FAMOWeighting(LossWeighting):
    """FAMO, Fast Adaptive Multitask Optimization (Liu et al. 2023).

    Logits xi (0 at the start), z = softmax(xi); the model follows the gradient of sum_i z_i log(L_i + eps) scaled by
    c = 1 / sum_j (z_j / (L_j + eps)), i.e. w_i = c z_i / (L_i + eps) (the weights sum to 1). After each optimizer
    step xi moves by Adam (``lr``, L2 ``gamma``) against the gradient of z . delta, delta_i = log L_i(before) -
    log L_i(after): tasks whose loss fell least gain weight. The official code measures "after" with a second forward
    of the same batch; here it is the next step's loss (no extra forward, a noisier estimate).
    """

    name = "famo"
    OPTIONS: ClassVar[dict[str, Any]] = {"lr": 0.025, "gamma": 0.01, "eps": 1e-8}
    needs_all_tasks = True
    uses_current_losses = True

    def __init__(self, tasks, **options):
        super().__init__(tasks, **options)
        self.logits = torch.zeros(len(self.tasks), dtype=_DTYPE)
        self.adam = _Adam(len(self.tasks), float(self.options["lr"]), weight_decay=float(self.options["gamma"]))
        self.previous: list[float] | None = None

    def weights(self, losses):
        z = torch.softmax(self.logits, dim=0)
        idx = self._index(losses)
        stacked = torch.stack([loss.detach().to(_DTYPE) for loss in losses.values()])
        ratio = z.to(stacked.device)[idx] / (stacked + float(self.options["eps"]))
        w = ratio / ratio.sum()
        return dict(zip(losses, w))

    def update(self, losses):
        values = _values(self.tasks, losses)
        if values.isnan().any():
            raise ValueError("famo needs every task's loss in each step (strategy sum or pcgrad)")
        eps = float(self.options["eps"])
        if self.previous is not None:
            delta = torch.log(torch.tensor(self.previous, dtype=_DTYPE) + eps) - torch.log(values + eps)
            z = torch.softmax(self.logits, dim=0)
            grad = z * (delta - (z * delta).sum())  # J_softmax^T delta
            self.logits = self.adam.step(self.logits, grad, torch.ones(len(self.tasks), dtype=torch.bool))
        self.previous = values.tolist()

    def current_weights(self):  # z: the share each task has before the division by its loss
        return dict(zip(self.tasks, torch.softmax(self.logits, dim=0).tolist()))

    def state_dict(self):
        return self._state(logits=self.logits, adam=self.adam.state(), previous=self.previous)

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.logits = torch.tensor(state["logits"], dtype=_DTYPE)
        self.adam.load(state["adam"])
        self.previous = state["previous"]


class DBMTLWeighting(LossWeighting):
    """DB-MTL's loss-scale balancing (Lin et al. 2023): train on log(L_i + eps), i.e. w_i = 1 / (L_i + eps) with the
    loss detached, so every task's loss counts on a log scale (a 10x larger loss is not a 10x larger gradient)."""

    name = "dbmtl"
    OPTIONS: ClassVar[dict[str, Any]] = {"eps": 1e-8}
    uses_current_losses = True

    def weights(self, losses):
        eps = float(self.options["eps"])
        return {t: 1.0 / (loss.detach().to(_DTYPE) + eps) for t, loss in losses.items()}


WEIGHTINGS: dict[str, type[LossWeighting]] = {
    cls.name: cls for cls in (StaticWeighting, UncertaintyWeighting, DWAWeighting, FAMOWeighting, DBMTLWeighting)
}

# option name -> (check, rule) for every option of every method
_RULES = {
    "lr": (lambda v: v > 0, "a number > 0"),
    "init": (lambda v: True, "a number"),
    "temperature": (lambda v: v > 0, "a number > 0"),
    "period": (lambda v: isinstance(v, int) and v >= 1, "a whole number >= 1"),
    "gamma": (lambda v: v >= 0, "a number >= 0"),
    "eps": (lambda v: v > 0, "a number > 0"),
}


def check_weighting_options(method: str, options: Any) -> dict[str, Any]:
    """``weighting_options`` for ``task_weighting: method``: a mapping of that method's options to finite numbers in
    range; anything else raises ``ValueError`` in one line that names the key."""
    if method not in WEIGHTINGS:
        close = difflib.get_close_matches(str(method), list(WEIGHTINGS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"task_weighting: {method!r} is not one of {', '.join(WEIGHTINGS)}{hint}")
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"weighting_options must be a mapping of {method}'s options, got {options!r}")
    valid = WEIGHTINGS[method].OPTIONS
    for key, value in options.items():
        if key not in valid:
            close = difflib.get_close_matches(str(key), list(valid), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            takes = ", ".join(valid) if valid else "none"
            raise ValueError(
                f"weighting_options.{key}: task_weighting {method} takes no {key!r} (it takes {takes}){hint}"
            )
        check, rule = _RULES[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and check(value)
        if not ok:
            raise ValueError(f"weighting_options.{key} must be {rule}, got {value!r}")
    return dict(options)


def build_weighting(method: str, tasks: Sequence[str], options: Mapping[str, Any] | None = None) -> LossWeighting:
    """The weighting ``method`` over ``tasks`` with ``options`` (validated by :func:`check_weighting_options`)."""
    options = check_weighting_options(method, options)
    return WEIGHTINGS[method](tasks, **options)
