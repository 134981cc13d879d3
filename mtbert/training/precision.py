"""``bf16: auto``: bf16 autocast where this machine runs it faster than fp32, and a logged reason either way.

Whether bf16 pays depends on the silicon, not on a flag that promises it: CPUs with AMX run bf16 matmuls on AMX
tiles (about 2x fp32); AVX512-BF16 alone only adds bf16 dot products, and bf16 autocast was slower than fp32 on an
Intel Xeon without AMX but 1.5x faster on an AMD EPYC without AMX (docs/performance.md). So on such a CPU a short
start-up measurement decides.
"""

from __future__ import annotations

import logging
import platform
import time

import torch

logger = logging.getLogger(__name__)

# bf16 autocast must beat fp32 by this factor in the start-up measurement to be switched on.
MIN_BF16_SPEEDUP = 1.1
BF16_MODES = ("auto", "measure", "true", "false")


def cpu_flags() -> dict:
    """The CPU model and the flags that matter for bf16, from /proc/cpuinfo (empty values where it is unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        text = ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return {
        "model": model or platform.processor() or "unknown",
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
    }


def measure_bf16_speedup(device: str = "cpu", steps: int = 3) -> float:
    """fp32 seconds / bf16-autocast seconds for a few forward+backward passes of two MiniLM-sized encoder layers
    (about 5 s on 2 CPU cores); > 1 means bf16 is faster on this device. The run's random stream is left as it was."""
    with torch.random.fork_rng(devices=[]):
        return _measure(device, steps)


def _measure(device: str, steps: int) -> float:
    torch.manual_seed(0)
    layers = torch.nn.Sequential(
        *[torch.nn.TransformerEncoderLayer(384, 12, 1536, batch_first=True) for _ in range(2)]
    ).to(device)
    x = torch.randn(32, 64, 384, device=device)

    def once(bf16: bool) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = layers(x).float().pow(2).mean()
        loss.backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    once(False), once(True)  # warm-up: oneDNN builds its kernels on the first pass of each
    # interleaved, the fastest pass of each: a load that comes and goes on a shared machine hits both sides alike
    fp32 = bf16 = float("inf")
    for _ in range(steps):
        fp32 = min(fp32, once(False))
        bf16 = min(bf16, once(True))
    return fp32 / bf16


def choose_bf16(mode: str = "auto", device: str = "cpu", allow_measurement: bool = True) -> tuple[bool, str]:
    """bf16 autocast on or off, and why.

    ``true``/``false``: as given. ``measure``: on if the start-up measurement shows bf16 autocast at least 10% faster
    than fp32 on this device. ``auto``: CUDA: on where the GPU supports bf16; CPU with AMX: on; CPU with AVX512-BF16
    but no AMX: the start-up measurement decides; CPU with neither: off. Where a measurement is needed but not
    allowed (several processes, whose separate measurements could disagree), off.
    """
    mode = str(mode).strip().lower()
    if mode not in BF16_MODES:
        raise ValueError(f"bf16: {mode!r} is not one of {', '.join(BF16_MODES)}")
    if mode in ("true", "false"):
        return mode == "true", "set explicitly"
    if mode == "auto" and device.startswith("cuda"):
        supported = torch.cuda.is_bf16_supported()
        return supported, f"CUDA device {'with' if supported else 'without'} bf16 support"
    flags = cpu_flags()
    if mode == "auto" and flags["amx_bf16"]:
        return True, "CPU has AMX (amx_bf16)"
    if mode == "auto" and not flags["avx512_bf16"]:
        return False, "CPU has neither AMX nor AVX512-BF16"
    if not allow_measurement:
        return False, "a start-up measurement would decide, but several processes could disagree: set bf16 true/false"
    speedup = measure_bf16_speedup(device)
    where = "no AMX, so " if mode == "auto" else ""
    return (
        speedup >= MIN_BF16_SPEEDUP,
        f"{where}start-up measurement: bf16 autocast at {speedup:.2f}x fp32 speed (on if >= {MIN_BF16_SPEEDUP:.2f})",
    )


def has_accelerator() -> bool:
    """True where the Trainer would place the model on an accelerator (CUDA, XPU, MPS) rather than the CPU."""
    if torch.cuda.is_available():
        return True
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return True
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_bf16(value, use_cpu: bool = False, processes: int = 1) -> tuple[bool, str | None]:
    """A ``bf16`` setting as given (``True``/``False``) or decided (``"auto"``/``"measure"``), with the reason of a
    decision (``None`` when nothing was decided). The device is the one the Trainer will use; with several
    ``processes`` no measurement is made (each rank would measure alone and could decide otherwise)."""
    if isinstance(value, bool) or value is None:
        return bool(value), None
    mode = str(value).strip().lower()
    if mode in ("1", "yes", "y", "on"):
        mode = "true"
    if mode in ("0", "no", "n", "off"):
        mode = "false"
    device = "cuda" if torch.cuda.is_available() and not use_cpu else "cpu"
    on, why = choose_bf16(mode, device, allow_measurement=processes <= 1)
    return on, (None if mode in ("true", "false") else why)


__all__ = ["BF16_MODES", "choose_bf16", "cpu_flags", "has_accelerator", "measure_bf16_speedup", "resolve_bf16"]
