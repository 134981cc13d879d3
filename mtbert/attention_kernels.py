"""Which attention kernels run on a CUDA GPU: PyTorch's flash and memory-efficient ones, not cuDNN's.

For bf16 on Hopper GPUs PyTorch picks cuDNN's scaled-dot-product attention first. cuDNN builds an execution plan for
every new input shape. Length-grouped training batches, and prediction batches sorted by length, bring a new shape
almost every batch until each length has been seen. On an H200 with MiniLM at batch 32, the first pass over 30
such batches took 155 ms per step with cuDNN and 29 ms without it. The second pass took 21 and 22 ms: once warm,
the kernels are about as fast (``benchmarks/gpu_step.py``; figures in docs/performance.md). So mtbert leaves cuDNN's
kernel out on CUDA, for training, evaluation and prediction. ``cudnn_attention: true`` lets PyTorch choose again.
Other devices are left alone: the choice only exists on CUDA.
"""

from __future__ import annotations

import contextlib

import torch


def sdpa_kernels(device: torch.device | str | None, cudnn: bool = False) -> contextlib.AbstractContextManager:
    """A context in which scaled-dot-product attention on ``device`` runs without cuDNN's kernel (flash, memory-
    efficient or math instead); a no-op off CUDA or with ``cudnn=True``."""
    if cudnn or device is None or torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


__all__ = ["sdpa_kernels"]
