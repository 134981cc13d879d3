"""Issue 14's acceptance run: ``python examples/train.py examples/configs/own_task.yaml`` trains SST, QQP and STS
from the minBERT files plus a 3-class NLI task from a local CSV folder with only train and validation, and writes
metrics for all four tasks and leaderboard files for the three minBERT tasks only.

The backbone is a tiny random BERT saved to disk (with the real MiniLM tokenizer), the minBERT files are the first
60 rows of each real file in ../shared/data, and training stops after 2 steps: the run's plumbing is under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_example_script

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT.parent / "shared" / "data"
CONFIG = ROOT / "examples" / "configs" / "own_task.yaml"

pytestmark = pytest.mark.skipif(not DATA_DIR.is_dir(), reason="../shared/data is not beside the checkout")


def test_own_task_config_trains_four_tasks_and_writes_leaderboard_files_for_three(
    tiny_backbone, small_minbert, tmp_path
):
    out = tmp_path / "own_task"
    args = [
        str(CONFIG),
        "--model_name_or_path",
        str(tiny_backbone),
        "--data_dir",
        str(small_minbert),
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--max_eval_samples",
        "12",
        "--max_seq_length",
        "32",
        "--max_train_samples",
        json.dumps({"sst": 16, "qqp": 16, "sts": 16}),
        "--per_device_train_batch_size",
        "4",
        "--use_cpu",
        "true",
        "--disable_tqdm",
        "true",
        "--report_to",
        "none",
    ]
    result = run_example_script("train", args)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("eval_sst_accuracy", "eval_qqp_accuracy", "eval_sts_pearson", "eval_nli_accuracy"):
        assert key in metrics, sorted(metrics)
    assert 0.0 <= metrics["eval_nli_accuracy"] <= 1.0

    written = sorted(p.name for p in (out / "predictions").iterdir())
    minbert_files = [f"{prefix}-{split}-output.csv" for prefix in ("sst", "para", "sts") for split in ("dev", "test")]
    # and nothing for nli, which has no test split; PARTIAL says the dev files hold only max_eval_samples rows
    assert written == sorted([*minbert_files, "PARTIAL"])
    partial = (out / "predictions" / "PARTIAL").read_text()
    assert "sst-dev-output.csv: the first 12 of" in partial and "test-output" not in partial
    test_rows = (out / "predictions" / "sst-test-output.csv").read_text().splitlines()
    assert len(test_rows) == 1 + 60  # header + every test row of the (cut) minBERT file

    config = json.loads((out / "config.json").read_text())
    assert config["tasks"]["nli"]["num_labels"] == 3  # a real 3-way head, not a binary one
    assert config["max_seq_length"] == 32  # the training length, recorded for inference

    # predict.py without --max_seq_length truncates as training did
    from conftest import load_example_script

    assert load_example_script("predict").trained_length(str(out)) == 32
    assert "task nli has no test split" in result.stdout + result.stderr
