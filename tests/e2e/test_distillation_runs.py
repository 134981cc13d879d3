"""Distillation through whole runs: ``examples/train.py`` under two DDP ranks (each labelling half the rows) and
resumed from a checkpoint, the student-vs-teacher benchmark, and the Python example of docs/distillation.md."""

from __future__ import annotations

import os

import pytest
import torch

from conftest import save_tiny_model


def save_teacher(path, tasks, tokenizer, seed):
    return save_tiny_model(path, tasks, tokenizer, seed=seed, max_seq_length=16)


# -- through examples/train.py: two DDP ranks share the labelling, a resumed run reads the cache -------------------


@pytest.mark.distributed
def test_two_ranks_label_half_each_and_a_resumed_run_reads_the_cache(tiny_backbone, small_minbert, tmp_path):
    """torchrun with 2 ranks (each labelling every other row) caches the same teacher targets as one process, and
    trains to the same weights; a run resumed from a checkpoint reads the targets back and ends where the
    uninterrupted run did."""
    import json
    import subprocess

    from transformers import AutoTokenizer

    from train_runs import assert_same_weights, base_args, run_train

    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    teacher = save_teacher(
        tmp_path / "teacher", {"sst": {}, "qqp": {"pair_encoding": "concat_sep"}, "sts": {}}, tokenizer, seed=5
    )
    caps = json.dumps({"sst": 16, "qqp": 16, "sts": 16})

    def args(out, cache, batch, **extra):
        distill = json.dumps({"teacher": teacher, "alpha": 0.5, "temperature": 2.0, "cache_dir": str(cache)})
        return base_args(tiny_backbone, small_minbert, out, "round_robin", batch=batch, distill=distill,
                         max_train_samples=caps, **extra)  # fmt: skip

    two, one = tmp_path / "two", tmp_path / "one"
    run_train(args(two, tmp_path / "cache_two", batch=4), nproc=2)
    extra = {"save_strategy": "steps", "save_steps": 3}
    result = run_train(args(one, tmp_path / "cache_one", batch=8, **extra))
    assert "teacher targets for sst (60 rows) cached" in result.stdout  # every training row, not only the capped
    files_two, files_one = sorted(os.listdir(tmp_path / "cache_two")), sorted(os.listdir(tmp_path / "cache_one"))
    assert files_two == files_one and len(files_one) == 3  # the same key: same teacher, same rows
    from safetensors.torch import load_file

    for name in files_one:
        a, b = load_file(str(tmp_path / "cache_two" / name)), load_file(str(tmp_path / "cache_one" / name))
        torch.testing.assert_close(a["values"], b["values"], rtol=1e-5, atol=1e-6)
    assert_same_weights(two, one)

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    subprocess.run(["cp", "-r", str(one / "checkpoint-3"), str(resumed / "checkpoint-3")], check=True)
    result = run_train(args(resumed, tmp_path / "cache_one", batch=8, **extra,
                            resume_from_checkpoint=str(resumed / "checkpoint-3")))  # fmt: skip
    assert "read from the cache" in result.stdout and "cached in" not in result.stdout
    assert_same_weights(one, resumed, atol=1e-6)


def test_the_student_vs_teacher_benchmark_runs(tokenizer, small_minbert, tmp_path):
    """benchmarks/student_vs_teacher.py on two tiny saved models ends with the line its docstring promises."""
    import re
    import subprocess
    import sys

    from conftest import script_env

    tasks = {"sst": {}, "qqp": {"pair_encoding": "concat_sep"}, "sts": {"pair_encoding": "dual"}}
    student = save_teacher(tmp_path / "student", tasks, tokenizer, seed=1)
    teacher = save_teacher(tmp_path / "teacher", tasks, tokenizer, seed=2)
    script = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "student_vs_teacher.py")
    done = subprocess.run(
        [sys.executable, script, "--student", student, "--teacher", teacher, "--data_dir", str(small_minbert),
         "--rows", "8", "--batch_size", "4", "--repeats", "2"],
        env=script_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "24 rows over qqp, sst, sts" in done.stdout
    last = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"student/teacher prediction speed ratio: [0-9]+\.[0-9]+", last)


@pytest.mark.integration
def test_the_docs_python_example_runs(data_dir, tmp_path, monkeypatch, tokenizer):
    """docs/distillation.md's Python example, with a tiny saved teacher for outputs/mpnet_best."""
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "distillation.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1
    teacher = save_teacher(tmp_path / "teacher", {"sst": {}, "qqp": {}, "sts": {}}, tokenizer, seed=4)
    code = blocks[0].replace("outputs/mpnet_best", teacher).replace("outputs/distilled_py", str(tmp_path / "out"))
    monkeypatch.chdir(page.parents[1])  # the example's paths are relative to the repository root
    monkeypatch.setenv("MTBERT_CACHE", str(tmp_path / "cache"))
    namespace: dict = {}
    exec(compile(code, "docs/distillation.md", "exec"), namespace)
    trainer = namespace["trainer"]
    assert trainer.teacher_labeller.labelled_calls == 3
    assert len(os.listdir(tmp_path / "cache" / "teacher_targets")) == 3
    assert trainer.state.global_step > 0
