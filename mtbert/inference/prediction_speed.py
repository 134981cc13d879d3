"""Prediction on a GPU with less host work per batch: weights cast to bf16 once, and batches collated ahead.

Why: on an H200 MiniLM predicted 4,450 rows/s, bound by the host (docs/performance.md): bf16 autocast casts every
weight on every call, and each batch was collated, copied and its logits copied back (a sync) one after another.
Here the weights are cast once (:func:`cast_weights`; the logits are still returned as float32), the next batches
are collated in a background thread while the GPU runs the current one (:func:`prefetched`), and the logits stay
on the device until every batch has run (one copy back at the end, see ``mtbert.inference.predict.task_logits``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import torch

from ..models.mtbert.configuration_mtbert import MultitaskConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: ``weights`` settings of prediction: ``float32`` (as trained) or ``bf16`` (cast once, no autocast)
WEIGHT_DTYPES = {"float32": torch.float32, "bf16": torch.bfloat16}


def cast_weights(model: Any, weights: str = "float32") -> Any:
    """``model`` with its floating-point weights in ``weights`` (``bf16``: cast once, in place; predict without
    autocast then). ``float32`` leaves it as it is. Other values raise one line."""
    if weights not in WEIGHT_DTYPES:
        raise MultitaskConfigError(f"weights: {weights!r} is not one of {', '.join(WEIGHT_DTYPES)}")
    dtype = WEIGHT_DTYPES[weights]
    if dtype == torch.float32:
        return model
    device = next(model.parameters()).device
    if device.type == "cpu":
        logger.info("bf16 weights on the CPU: matrix products run in bf16 (fast only with AMX)")
    return model.to(dtype)


def prefetched(items: Iterable[T], enabled: bool = True, depth: int = 2) -> Iterator[T]:
    """``items`` as they are, produced ``depth`` ahead in a background thread when ``enabled`` (a GPU run: the host
    collates while the device computes); errors in the thread are raised here. Off, it is ``iter(items)``."""
    if not enabled:
        yield from items
        return
    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def fill():
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put(item)
            slots.put(done)
        except BaseException as error:  # handed to the consumer
            slots.put(error)

    worker = threading.Thread(target=fill, name="mtbert-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # let a producer blocked on a full queue finish
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.01)


__all__ = ["WEIGHT_DTYPES", "cast_weights", "prefetched"]
