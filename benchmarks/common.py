"""What the benchmarks share: the quickstart heads, stock label counts, data folder, CPU line, bf16 choice."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository, for mtbert

# The quickstart heads (SST mean pooling, QQP joined with [SEP], STS cosine of separately encoded sentences).
TASKS = {
    "sst": {"pooling": "mean"},
    "qqp": {"pair_encoding": "concat_sep"},
    "sts": {"pair_encoding": "cosine", "pooling": "mean"},
}
# The stock recipe's AutoModelForSequenceClassification heads for the same tasks.
NUM_LABELS = {"sst": 5, "qqp": 2, "sts": 1}
DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


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


def machine_line(device: str = "cpu") -> str:
    """One line naming the CPU, its bf16 flags and the thread count (and the GPU when there is one)."""
    info = cpu_flags()
    line = (
        f"CPU {info['model']}: AMX {'yes' if info['amx_bf16'] else 'no'}, "
        f"AVX512-BF16 {'yes' if info['avx512_bf16'] else 'no'}, torch threads {torch.get_num_threads()}"
    )
    if device.startswith("cuda") and torch.cuda.is_available():
        line += f"; GPU {torch.cuda.get_device_name(device)}"
    return line


def fast_cpu_bf16() -> bool:
    """True on CPUs with AMX (``amx_bf16``): there bf16 matmuls run on AMX tiles and beat fp32 without measuring.

    AVX512-BF16 alone only promises bf16 dot products, and whether bf16 autocast then beats fp32 depends on the CPU:
    on an Intel Xeon without AMX it trained and predicted slower (issue 18), on an AMD EPYC (Zen, AVX512-BF16, no
    AMX) faster. So that flag does not turn bf16 on by itself; ``choose_bf16("auto")`` measures there instead.
    """
    return cpu_flags()["amx_bf16"]


def measure_bf16_speedup(device: str = "cpu", steps: int = 3) -> float:
    """fp32 seconds / bf16-autocast seconds for a few forward+backward passes of two MiniLM-sized layers.

    A short start-up measurement (about a second on 2 cores) for ``--*_bf16 measure``; > 1 means bf16 is faster.
    """
    torch.manual_seed(0)
    layers = torch.nn.Sequential(
        *[torch.nn.TransformerEncoderLayer(384, 12, 1536, batch_first=True) for _ in range(2)]
    ).to(device)
    x = torch.randn(32, 64, 384, device=device)

    def timed(bf16: bool) -> float:
        best = float("inf")
        for _ in range(steps + 1):  # the first pass warms up oneDNN's kernels and is dropped by min()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
                loss = layers(x).float().pow(2).mean()
            loss.backward()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best

    timed(False)
    return timed(False) / timed(True)


def choose_bf16(mode: str, device: str = "cpu") -> tuple[bool, str]:
    """bf16 autocast on or off, and why.

    ``true``/``false``: as given. ``measure``: on if the short start-up measurement (``measure_bf16_speedup``) shows
    bf16 autocast at least 10% faster than fp32 on this device. ``auto``: CUDA: on where the GPU supports bf16; CPU
    with AMX: on; CPU with AVX512-BF16 but no AMX: the start-up measurement decides; CPU with neither: off.
    """
    if mode in ("true", "false"):
        return mode == "true", "set on the command line"
    if mode == "auto" and device.startswith("cuda"):
        supported = torch.cuda.is_bf16_supported()
        return supported, f"CUDA device {'with' if supported else 'without'} bf16 support"
    if mode == "auto" and fast_cpu_bf16():
        return True, "CPU has AMX (amx_bf16)"
    if mode == "auto" and not cpu_flags()["avx512_bf16"]:
        return False, "CPU has neither AMX nor AVX512-BF16"
    speedup = measure_bf16_speedup(device)
    where = "no AMX, so " if mode == "auto" else ""
    return speedup >= 1.1, f"{where}start-up measurement: bf16 autocast at {speedup:.2f}x fp32 speed (on if >= 1.10)"


def report_ratios(results: dict[str, list[float]], unit: str, what: str) -> None:
    """min/median/max of each side, mtbert's per-repeat ratios to both stock sides, then the median ratios; the last
    line is the ratio against the stock recipe at its best."""
    for name, values in results.items():
        middle = statistics.median(values)
        print(f"{name:13s} {unit}: min {min(values):.1f}  median {middle:.1f}  max {max(values):.1f}")
    median = {name: statistics.median(values) for name, values in results.items()}
    for anchor in ("stock-default", "stock-at-best"):
        ratios = [m / s for m, s in zip(results["mtbert"], results[anchor])]
        print(f"per-repeat ratios mtbert/{anchor}: {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"{what} throughput ratio mtbert/stock-default: {median['mtbert'] / median['stock-default']:.2f}")
    print(f"{what} throughput ratio mtbert/stock-at-best: {median['mtbert'] / median['stock-at-best']:.2f}")
