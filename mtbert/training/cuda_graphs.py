"""CUDA graphs for training steps: each task's forward and backward captured once per batch shape and replayed.

Why: on an H200 a MiniLM step at batch 32 launches about 640 kernels and the GPU is busy for about 12% of it
(docs/performance.md): the step is bound by the host launching kernels one by one. A CUDA graph replays the whole
forward (and, through ``torch.cuda.make_graphed_callables``, the whole backward) in one launch. A graph is tied to
its input shapes, so this pairs with ``static_shapes`` (a few length buckets): one graph per ``(task, shape)``.

What stays outside the graphs: the non-finite-loss check (the trainer reads the loss the graph returns), the
padding-mask check, the optimizer step, and everything that varies per call (distillation's teacher targets and
mixing weights: such batches run eagerly). A shape is captured only after it has been seen ``warmup`` times (rare
shapes, such as an epoch's last partial batch, stay eager) and at most ``max_graphs`` are kept.

``cuda_graphs``: ``false``; ``true`` (CUDA only: one line refuses it elsewhere, with DDP, gradient checkpointing,
gradient accumulation, or packed rows, whose packing is not capturable); ``auto``: off except on one CUDA GPU with
``static_shapes``, where the first captured shape is timed against the eager step and graphs stay on only if they
are at least :data:`MIN_SPEEDUP` times faster (the result is logged).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..models.mtbert.configuration_mtbert import MultitaskConfigError

logger = logging.getLogger(__name__)

CUDA_GRAPHS_CHOICES = ("auto", "true", "false")
#: ``auto`` keeps graphs only if a replayed step beats the eager one by this factor
MIN_SPEEDUP = 1.1
#: the batch keys a graph takes as inputs (anything else in a batch makes it run eagerly)
GRAPH_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "pair_input_ids", "pair_attention_mask", "labels")


def _cuda_usable(use_cpu: bool = False) -> bool:
    return not use_cpu and torch.cuda.is_available()


def check_cuda_graphs_setting(value, use_cpu: bool = False) -> str:
    """``cuda_graphs`` normalised to ``auto``/``true``/``false``; ``true`` without a CUDA GPU raises one line."""
    text = str(value).strip().lower() if value is not None else "auto"
    if text not in CUDA_GRAPHS_CHOICES:
        raise MultitaskConfigError(f"cuda_graphs must be one of {', '.join(CUDA_GRAPHS_CHOICES)}, got {value!r}")
    if text == "true" and not _cuda_usable(use_cpu):
        raise MultitaskConfigError(
            "cuda_graphs: true needs a CUDA GPU, and this run has none (use_cpu, or no CUDA device): set "
            "cuda_graphs auto or false"
        )
    return text


def decide(
    setting: str,
    device: torch.device | str,
    static_shapes: bool,
    world_size: int = 1,
    gradient_checkpointing: bool = False,
    packed_batches: bool = False,
    accumulation_steps: int = 1,
) -> tuple[str, str]:
    """``("off" | "on" | "measure", why)``: what a run does with ``cuda_graphs``, before any step. ``true`` with a
    setting graphs cannot serve raises one line; ``auto`` falls back to off with the reason."""
    setting = check_cuda_graphs_setting(setting)
    if setting == "false":
        return "off", "cuda_graphs: false"
    device = torch.device(device)
    blockers = []
    if device.type != "cuda":
        blockers.append(f"the device is {device.type}, not CUDA")
    if world_size > 1:
        blockers.append("several processes (DDP's gradient hooks are not captured)")
    if gradient_checkpointing:
        blockers.append("gradient checkpointing (its recompute runs outside the captured backward)")
    if accumulation_steps > 1:
        blockers.append(
            "gradient_accumulation_steps > 1 (a replay rewrites the gradient buffers the previous micro-batch's "
            "gradients still live in)"
        )
    if packed_batches:
        blockers.append("packed_batches (packing indexes by data-dependent counts, which a graph cannot capture)")
    if blockers:
        if setting == "true":
            raise MultitaskConfigError(
                f"cuda_graphs: true cannot run with {'; '.join(blockers)}: set it auto or false"
            )
        return "off", f"cuda_graphs auto: off ({'; '.join(blockers)})"
    if setting == "true":
        return "on", "cuda_graphs: true"
    if not static_shapes:
        return "off", "cuda_graphs auto: off (without static_shapes nearly every batch has a new shape)"
    return "measure", "cuda_graphs auto: the first captured shape is timed against the eager step"


def graph_key(task: str, batch: dict) -> tuple | None:
    """What a graph is captured for: the task and every input's name, shape and dtype (``None``: the batch holds
    something a graph does not take, so it runs eagerly)."""
    if any(key not in GRAPH_INPUT_KEYS for key in batch):
        return None
    return (task, *((key, tuple(batch[key].shape), str(batch[key].dtype)) for key in GRAPH_INPUT_KEYS if key in batch))


@dataclass
class GraphPolicy:
    """Which shapes get a graph: a key is captured on its ``warmup + 1``-th call (before that it runs eagerly, so
    allocator and kernel choices settle), while fewer than ``max_graphs`` exist; later keys stay eager."""

    warmup: int = 2
    max_graphs: int = 32
    seen: dict = field(default_factory=dict)
    captured: set = field(default_factory=set)
    failed: set = field(default_factory=set)
    eager_calls: int = 0
    replays: int = 0

    def action(self, key: tuple | None) -> str:
        """``"eager"``, ``"capture"`` or ``"replay"`` for a call with this key."""
        if key is None or key in self.failed:
            self.eager_calls += 1
            return "eager"
        if key in self.captured:
            self.replays += 1
            return "replay"
        self.seen[key] = self.seen.get(key, 0) + 1
        if self.seen[key] > self.warmup and len(self.captured) < self.max_graphs:
            self.captured.add(key)
            return "capture"
        self.eager_calls += 1
        return "eager"

    def fail(self, key: tuple) -> None:
        """A capture of ``key`` failed: it runs eagerly from now on (and counts no more towards ``max_graphs``)."""
        self.captured.discard(key)
        self.failed.add(key)

    def summary(self) -> str:
        failed = f", {len(self.failed)} captures failed" if self.failed else ""
        return f"{len(self.captured)} graphs captured, {self.replays} replays, {self.eager_calls} eager calls{failed}"


class TaskLoss(nn.Module):
    """One task's training loss as a module of tensors only (what ``make_graphed_callables`` captures); the
    autocast inside has its cast cache off, as graph capture needs."""

    def __init__(self, model: nn.Module, task: str, keys: tuple[str, ...], autocast_dtype: torch.dtype | None):
        super().__init__()
        self.model = model
        self.task = task
        self.keys = keys
        self.autocast_dtype = autocast_dtype

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        batch = dict(zip(self.keys, tensors))
        dtype = self.autocast_dtype
        # Accelerate wraps a prepared model's forward in an autocast with a cast cache: a graph captured through it
        # would replay weight casts cached before the capture (stale after the optimizer's step), so the forward
        # as defined runs here, under this autocast without a cache
        forward = getattr(self.model, "_original_forward", None) or self.model
        with torch.autocast("cuda", dtype=dtype or torch.bfloat16, enabled=dtype is not None, cache_enabled=False):
            return forward(task=self.task, **batch).loss.float()


class TrainingGraphs:
    """The graphs of a training run: ``loss(model, task, batch, eager)`` returns the task's loss, from a replayed
    graph where one is captured for the batch's shape, else from ``eager()``."""

    def __init__(self, mode: str, autocast_dtype: torch.dtype | None = None, policy: GraphPolicy | None = None):
        self.mode = mode  # "on" or "measure"
        self.autocast_dtype = autocast_dtype
        self.policy = policy or GraphPolicy()
        self.graphs: dict[tuple, Callable] = {}
        self.first_capture_s: float | None = None

    @property
    def active(self) -> bool:
        return self.mode in ("on", "measure")

    def loss(self, model: nn.Module, task: str, batch: dict, eager: Callable[[], torch.Tensor]) -> torch.Tensor:
        if not self.active or not model.training:
            return eager()
        key = graph_key(task, batch)
        action = self.policy.action(key)
        if action == "eager" or key is None:
            return eager()
        keys = tuple(k for k in GRAPH_INPUT_KEYS if k in batch)
        tensors = tuple(batch[k] for k in keys)
        if action == "capture":
            start = time.perf_counter()
            try:
                self.graphs[key] = self._capture(model, task, keys, tensors)
            except Exception as error:  # an op that cannot be captured: this shape runs eagerly from now on
                self.policy.fail(key)
                logger.warning(
                    "cuda graphs: capturing %s at %s failed (%s: %s); that shape runs eagerly",
                    task,
                    tuple(batch["input_ids"].shape),
                    type(error).__name__,
                    str(error).splitlines()[0] if str(error) else "",
                )
                return eager()
            if self.first_capture_s is None:
                self.first_capture_s = time.perf_counter() - start
                logger.info("cuda graphs: first capture (%s) took %.2f s", key[0], self.first_capture_s)
            if self.mode == "measure":
                self._measure(model, task, batch, eager, self.graphs[key], tensors)
                if not self.active:
                    return eager()
        # a copy: the graph's output buffer is rewritten by the next replay of this shape
        return self.graphs[key](*tensors).clone()

    def _capture(self, model, task, keys, tensors) -> Callable:  # pragma: no cover - CUDA only
        module = TaskLoss(model, task, keys, self.autocast_dtype)
        dtype = self.autocast_dtype
        # the trainer's own autocast (Accelerate's) keeps a cast cache, which capture refuses: turned off here
        with torch.autocast("cuda", dtype=dtype or torch.bfloat16, enabled=dtype is not None, cache_enabled=False):
            return torch.cuda.make_graphed_callables(module, tensors, allow_unused_input=True)

    def _measure(self, model, task, batch, eager, graphed, tensors, steps: int = 5) -> None:  # pragma: no cover
        """Time ``steps`` eager forward+backward passes against ``steps`` replays of the graph; gradients are put
        back as they were. Graphs stay on only at >= MIN_SPEEDUP."""
        saved = {p: None if p.grad is None else p.grad.clone() for p in model.parameters()}

        def timed(fn) -> float:
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                fn().backward()
            torch.cuda.synchronize()
            return (time.perf_counter() - start) / steps

        eager_s = timed(eager)
        graph_s = timed(lambda: graphed(*tensors))
        for p, grad in saved.items():
            p.grad = grad
        speedup = eager_s / graph_s if graph_s > 0 else 0.0
        on = speedup >= MIN_SPEEDUP
        logger.info(
            "cuda_graphs auto: a %s step at %s took %.2f ms eager and %.2f ms replayed (%.2fx): graphs %s",
            task,
            tuple(batch["input_ids"].shape),
            1e3 * eager_s,
            1e3 * graph_s,
            speedup,
            "on" if on else "off",
        )
        self.mode = "on" if on else "off"


def training_graphs(args, model: nn.Module) -> TrainingGraphs | None:
    """The trainer's graphs for ``args`` (``None`` when off, with the reason logged)."""
    mode, why = decide(
        getattr(args, "cuda_graphs", "false"),
        args.device,
        getattr(args, "static_shapes", False),
        world_size=args.world_size,
        gradient_checkpointing=args.gradient_checkpointing,
        packed_batches=getattr(args, "packed_batches", False),
        accumulation_steps=args.gradient_accumulation_steps,
    )
    if mode == "off":
        if str(getattr(args, "cuda_graphs", "false")) != "false" and torch.device(args.device).type == "cuda":
            logger.info(why)
        return None
    logger.info(why)
    dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    return TrainingGraphs(mode, dtype)


__all__ = [
    "CUDA_GRAPHS_CHOICES",
    "GRAPH_INPUT_KEYS",
    "MIN_SPEEDUP",
    "GraphPolicy",
    "TaskLoss",
    "TrainingGraphs",
    "check_cuda_graphs_setting",
    "decide",
    "graph_key",
    "training_graphs",
]
