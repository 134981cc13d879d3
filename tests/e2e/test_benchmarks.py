"""The benchmarks run end to end (a tiny random backbone, 60 rows per minBERT file, a few steps) and end with the
line their docstring promises. Their figures mean nothing at this size; that they run means a GPU call or a long
CPU measurement is not lost to a broken script. ``gpu_step.py`` runs here with ``--device cpu`` (its dry run)."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"[0-9]+(\.[0-9]+)?"

RUNS = {
    "train_throughput.py": (
        [
            "--rows",
            "8",
            "--batch_size",
            "4",
            "--repeats",
            "1",
            "--mtbert_bf16",
            "false",
            "--best_bf16",
            "false",
            "--mtbert_variant",
            "static_packed=static_shapes:true,packed_batches:true,cuda_graphs:false",
        ],
        rf"train throughput ratio mtbert/stock-at-best: {NUMBER}",
    ),
    "predict_throughput.py": (
        [
            "--rows",
            "8",
            "--batch_size",
            "4",
            "--repeats",
            "1",
            "--mtbert_bf16",
            "false",
            "--best_bf16",
            "false",
            "--mtbert_variant",
            "bf16w=weights:bf16,length_buckets:auto",
            "--mtbert_variant",
            "packed=packed:true",
        ],
        rf"predict throughput ratio mtbert/stock-at-best: {NUMBER}",
    ),
    "serve_all_tasks.py": (
        [
            "--rows",
            "8",
            "--batch_size",
            "4",
            "--repeats",
            "1",
            "--best_bf16",
            "false",
            "--calibration_rows",
            "8",
            "--routes",
            "torch,openvino-int8,stock-torch",
        ],
        rf"serve-all-tasks ratio mtbert/stock-best: {NUMBER}",
    ),
    "pcgrad_overhead.py": (
        ["--batch_size", "4", "--rounds", "2", "--warmup", "1", "--bf16"],
        rf"pcgrad/sum step-time ratio: {NUMBER}",
    ),
    "gpu_step.py": (
        ["--device", "cpu", "--batch_sizes", "4,8", "--steps", "2", "--warmup", "1"],
        rf"share of the measured bf16 matmul rate at batch 4: {NUMBER}%",
    ),
    "gpu_graphs.py": (  # its dry run: a tiny encoder for the base-size part, graphs off (no CUDA)
        [
            "--device",
            "cpu",
            "--tiny",
            "--batch_size",
            "4",
            "--length",
            "16",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--rows",
            "16",
            "--dev_rows",
            "8",
            "--dev_steps",
            "2",
        ],
        rf"base-size step share of the measured bf16 matmul rate, graphs on: {NUMBER}%",
    ),
    "profile_step.py": (["--steps", "2", "--batch_size", "4", "--bf16"], r"2 steps: [0-9]+ ms/step .*"),
}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_benchmark_runs_and_ends_with_its_promised_line(script, tiny_backbone, small_minbert):
    args, last_line = RUNS[script]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--model", str(tiny_backbone),
         "--data_dir", str(small_minbert), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "profile failed" not in done.stdout  # gpu_step.py goes on without its profile; here it must not need to
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert re.fullmatch(last_line, lines[-1]), lines[-5:]
    variants = [b.split("=")[0] for a, b in itertools.pairwise(args) if a == "--mtbert_variant"]
    for name in variants:  # each extra side reports its ratios
        assert any(line.startswith(f"mtbert+{name} ") and "ratio to mtbert" in line for line in lines), name


def test_gpu_step_runs_the_step_the_trainer_runs_in_bf16(tiny_backbone, small_minbert):
    """Its steps call training_step directly, so the model must be prepared as the Trainer's loop prepares it:
    without that, Accelerate's bf16 autocast is missing and "bf16" steps run in fp32 (a bug seen on the H200)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_step
    from transformers import AutoTokenizer

    from mtbert import MultitaskBertModel
    from mtbert.data import load_task_splits, tokenize_task

    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    data = {
        task: tokenize_task(load_task_splits(task, spec, "minbert", str(small_minbert), splits=("train",))["train"],
                            tokenizer, spec, 32)
        for task, spec in MultitaskBertModel.config_class(tasks=gpu_step.TASKS).tasks.items()
    }  # fmt: skip
    trainer, model = gpu_step.build_trainer(str(tiny_backbone), tokenizer, data, 4, "cpu")
    seen = []
    model.encoder.encoder.layer[0].attention.self.query.register_forward_hook(
        lambda module, args, output: seen.append(output.dtype)
    )
    gpu_step.run_steps(trainer, model, gpu_step.take_batches(trainer, 2), "cpu")
    assert seen and set(seen) == {torch.bfloat16}


@pytest.mark.parametrize("script", ["compile_cpu.py", "speed_settings_dev.py"])
def test_the_longer_benchmarks_parse_their_arguments(script):
    """compile_cpu.py compiles for minutes and speed_settings_dev.py needs a trained model: their --help only."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:") and "--model" in done.stdout
