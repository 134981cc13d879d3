"""What the benchmarks share: the quickstart heads, stock label counts, data folder, CPU line, ratio report.

The bf16 rule is mtbert's own (``mtbert.training.precision.choose_bf16``, what ``--bf16 auto`` runs), re-exported
here."""

from __future__ import annotations

import os
import statistics

import torch

from mtbert.training.precision import choose_bf16, cpu_flags, measure_bf16_speedup  # the rule mtbert uses

# The quickstart heads (SST mean pooling, QQP joined with [SEP], STS cosine of separately encoded sentences).
TASKS = {
    "sst": {"pooling": "mean"},
    "qqp": {"pair_encoding": "concat_sep"},
    "sts": {"pair_encoding": "cosine", "pooling": "mean"},
}
# The stock recipe's AutoModelForSequenceClassification heads for the same tasks.
NUM_LABELS = {"sst": 5, "qqp": 2, "sts": 1}
DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


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


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME=key:value,key:value`` (``--mtbert_variant``): an extra mtbert side run beside the others with these
    settings (values read as YAML: ``true``, ``32``, ``[32, 64]`` without commas inside: use ``32 64``)."""
    import yaml

    name, _, body = text.partition("=")
    if not name or not body:
        raise SystemExit(f"--mtbert_variant {text!r}: write NAME=key:value,key:value")
    settings = {}
    for item in body.split(","):
        key, _, value = item.partition(":")
        settings[key.strip()] = yaml.safe_load(value.strip())
    return name.strip(), settings


def report_variants(results: dict[str, list[float]], unit: str, names: list[str]) -> None:
    """For each extra mtbert side: its median and its ratio of medians to mtbert as shipped and to stock-at-best."""
    median = {name: statistics.median(values) for name, values in results.items()}
    for name in names:
        print(
            f"{name} {unit}: median {median[name]:.1f}; ratio to mtbert {median[name] / median['mtbert']:.2f}, "
            f"to stock-at-best {median[name] / median['stock-at-best']:.2f}"
        )


__all__ = [
    "choose_bf16",
    "cpu_flags",
    "machine_line",
    "measure_bf16_speedup",
    "parse_variant",
    "report_ratios",
    "report_variants",
]
