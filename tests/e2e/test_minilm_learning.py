"""The pretrained MiniLM backbone learns all three tasks in a short real run (slow: marked ``integration``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import script_env

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT.parent / "shared" / "data"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not DATA_DIR.is_dir(), reason="../shared/data is not beside the checkout"),
]


def test_short_minilm_run_learns_every_task(tmp_path):
    """A few hundred rows per task: the loss falls and every dev metric ends well above chance."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "train.py"),
        str(ROOT / "examples" / "configs" / "quickstart.yaml"),
        "--data_dir",
        str(DATA_DIR),
        "--output_dir",
        str(out),
        "--max_train_samples",
        '{"sst": 1280, "qqp": 640, "sts": 320}',
        "--max_eval_samples",
        "300",
        "--logging_steps",
        "20",
        "--disable_tqdm",
        "true",
        "--write_predictions",
        "false",
    ]
    env = script_env(one_thread=False)
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    # chance: SST 5 classes (majority class 0.26 of dev), QQP majority 0.63, STS Pearson 0
    assert metrics["eval_sst_accuracy"] > 0.33, metrics
    assert metrics["eval_qqp_accuracy"] > 0.68, metrics
    assert metrics["eval_sts_pearson"] > 0.75, metrics
    log = json.loads((out / "trainer_state.json").read_text())["log_history"]
    sst = [entry["loss_sst"] for entry in log if "loss_sst" in entry]
    assert len(sst) >= 3 and sst[-1] < sst[0], sst
