"""What the benchmarks share: the quickstart heads, the stock label counts, the data folder, the bf16 check."""

from __future__ import annotations

import os
import sys

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


def fast_cpu_bf16() -> bool:
    """True on CPUs whose flags promise fast bf16 matmuls (AMX or AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags
