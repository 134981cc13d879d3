"""``examples/train.py`` as a subprocess (one process or ``torchrun`` ranks) with the settings of the end-to-end runs,
and the comparison of the weights two runs saved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from conftest import script_env

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "examples" / "train.py"


def run_train(args: list[str], nproc: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
    env = script_env()
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_port",
            str(29500 + os.getpid() % 1000),
            str(TRAIN),
            *args,
        ]
    else:
        cmd = [sys.executable, str(TRAIN), *args]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def base_args(backbone: Path, data: Path, output_dir: Path, strategy: str, batch: int, **extra) -> list[str]:
    tasks = {
        "sst": {"pooling": "cls", "classifier_dropout": 0.0},
        "qqp": {"pair_encoding": "concat_sep", "classifier_dropout": 0.0},
        "sts": {"pair_encoding": "cosine", "pooling": "mean"},
    }
    settings = {
        "model_name_or_path": str(backbone),
        "data_dir": str(data),
        "output_dir": str(output_dir),
        "tasks": json.dumps(tasks),
        "strategy": strategy,
        "per_device_train_batch_size": batch,
        "max_train_samples": json.dumps({"sst": 32, "qqp": 32, "sts": 32}),
        "max_eval_samples": 16,
        "max_seq_length": 32,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "learning_rate": 1e-3,
        "num_train_epochs": 1,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 7,
        "use_cpu": True,
        "write_predictions": False,
        "disable_tqdm": True,
        **extra,
    }
    out = []
    for key, value in settings.items():
        out += [f"--{key}", str(value)]
    return out


def weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(output_dir / "model.safetensors"))


def assert_same_weights(a: Path, b: Path, atol: float = 2e-5) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    initial_gap = 0.0
    for key in wa:
        diff = (wa[key].float() - wb[key].float()).abs().max().item()
        initial_gap = max(initial_gap, diff)
    assert initial_gap < atol, f"largest weight difference {initial_gap:.3g}"
