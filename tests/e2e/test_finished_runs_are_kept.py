"""Issue 16, "Nothing lost": a run never writes over a finished run unless asked, and a run's results (model, card,
``metrics.json``, ``predictions/``) appear together or not at all; leaderboard files likewise, all or none.

A finished run is made once per module by ``examples/train.py`` (the tiny random backbone with the MiniLM tokenizer,
the first 60 rows of every minBERT file, 2 steps); each test works on its own copy and compares every file's hash.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conftest import SHARED_DATA_DIR, load_example_script, run_example_script

pytestmark = pytest.mark.skipif(not SHARED_DATA_DIR.is_dir(), reason="../shared/data is not beside the checkout")

CONFIG = str(Path(__file__).resolve().parents[2] / "examples" / "configs" / "tiny.yaml")
LEADERBOARD = sorted(f"{prefix}-{split}-output.csv" for prefix in ("sst", "para", "sts") for split in ("dev", "test"))


def train_args(backbone, data, output_dir, *extra) -> list[str]:
    return [
        CONFIG, "--model_name_or_path", str(backbone), "--data_dir", str(data), "--output_dir", str(output_dir),
        "--max_steps", "2", "--max_train_samples", "16", "--max_eval_samples", "12", "--max_predict_samples", "12",
        "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--use_cpu", "true",
        "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def hashes(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(folder: Path) -> list[str]:
    """Staging folders (``.<name>.incomplete``, ``.replaced``) left beside ``folder``."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


@pytest.fixture(scope="module")
def finished_run(tiny_backbone, small_minbert, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    result = run_example_script("train", train_args(tiny_backbone, small_minbert, out))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert {"metrics.json", "model.safetensors", "config.json", "README.md", "trainer_state.json"} <= {
        p.name for p in out.iterdir()
    }
    assert sorted(p.name for p in (out / "predictions").iterdir()) == sorted([*LEADERBOARD, "PARTIAL"])
    assert leftovers(out) == []
    return out


@pytest.fixture
def earlier(finished_run, tmp_path) -> Path:
    """A copy of the finished run, for a test to write into."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def main_in_process(script: str, argv, monkeypatch, **patches):
    """``examples/<script>.py``'s ``main(argv)`` in this process, with module attributes replaced by ``patches``."""
    module = load_example_script(script)
    for name, value in patches.items():
        monkeypatch.setattr(module, name, value)
    return module.main(argv)


def test_rerun_into_a_finished_run_is_refused_and_leaves_every_file_byte_identical(
    earlier, tiny_backbone, small_minbert
):
    before = hashes(earlier)
    result = run_example_script("train", train_args(tiny_backbone, small_minbert, earlier, "--seed", "3"))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    line = errors[0]
    assert line.startswith("mtbert: error: output_dir ") and str(earlier) in line
    assert "--overwrite_output_dir true" in line and "--resume_from_checkpoint" in line
    assert hashes(earlier) == before
    assert leftovers(earlier) == []


@pytest.mark.parametrize("mark", ["metrics.json", "model.safetensors", "predictions"])
def test_any_sign_of_a_finished_run_is_refused_before_anything_loads(
    mark, tiny_backbone, small_minbert, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    out.mkdir()
    if mark == "predictions":
        (out / mark).mkdir()
        (out / mark / "sst-dev-output.csv").write_text("id \t Predicted_Sentiment \n")
    else:
        (out / mark).write_bytes(b"earlier")
    before = hashes(out)

    def no_loading(*args, **kwargs):
        raise AssertionError("data or a model was loaded before the output folder was checked")

    with pytest.raises(SystemExit) as exit_info:
        main_in_process(
            "train",
            train_args(tiny_backbone, small_minbert, out),
            monkeypatch,
            load_tokenizer_and_tasks=no_loading,
            load_tokenized=no_loading,
            build_model=no_loading,
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and mark in err[0] and "already holds a finished run" in err[0]
    assert hashes(out) == before


def test_overwrite_output_dir_replaces_the_finished_run(earlier, tiny_backbone, small_minbert):
    before = hashes(earlier)
    old_checkpoint = earlier / "checkpoint-999"  # an earlier run's checkpoint: must not mix with the new run's
    old_checkpoint.mkdir()
    (old_checkpoint / "config.json").write_text("{}")
    (earlier / "pytorch_model.bin").write_bytes(b"an earlier run's weights in another format")
    (earlier / "notes.txt").write_text("mine")  # not a result: kept
    args = train_args(
        tiny_backbone,
        small_minbert,
        earlier,
        "--seed",
        "3",
        "--max_eval_samples",
        "60",
        "--max_predict_samples",
        "60",
        "--overwrite_output_dir",
        "true",
    )
    result = run_example_script("train", args)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    after = hashes(earlier)
    for name in ("model.safetensors", "metrics.json", "predictions/sst-test-output.csv", "trainer_state.json"):
        assert after[name] != before[name], name  # another seed, all test rows: every result is new
    assert not old_checkpoint.exists() and not (earlier / "pytorch_model.bin").exists()
    assert not (earlier / "predictions" / "PARTIAL").exists()  # the earlier run's note went with its files
    assert (earlier / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (earlier / "predictions").iterdir()) == LEADERBOARD
    assert leftovers(earlier) == []


def failing_leaderboard_files(*args, **kwargs):
    """Writes the leaderboard files as the recipe does, then fails (a full disk, a killed worker ...)."""
    from mtbert.cli.run import write_leaderboard_files

    write_leaderboard_files(*args, **kwargs)
    raise OSError("no space left on device")


def test_a_run_failing_after_training_leaves_the_earlier_results_complete(
    earlier, tiny_backbone, small_minbert, monkeypatch
):
    before = hashes(earlier)
    args = train_args(
        tiny_backbone, small_minbert, earlier, "--seed", "3", "--overwrite_output_dir", "true", "--report_to", "none"
    )
    with pytest.raises(OSError, match="no space left"):
        main_in_process("train", args, monkeypatch, write_leaderboard_files=failing_leaderboard_files)
    assert hashes(earlier) == before  # the new model, card and metrics were written, but never reached the folder
    assert leftovers(earlier) == []


def test_a_first_run_failing_midway_leaves_no_results(tiny_backbone, small_minbert, tmp_path, monkeypatch):
    from mtbert.cli.run import finished_run_files

    out = tmp_path / "fresh"
    args = train_args(tiny_backbone, small_minbert, out, "--report_to", "none")
    with pytest.raises(OSError, match="no space left"):
        main_in_process("train", args, monkeypatch, write_leaderboard_files=failing_leaderboard_files)
    assert finished_run_files(str(out)) == [] and not (out / "README.md").exists()
    assert leftovers(out) == []


def test_scoring_a_saved_model_in_its_own_folder_replaces_only_its_metrics_and_predictions(earlier, small_minbert):
    before = hashes(earlier)
    args = [
        "--model_name_or_path",
        str(earlier),
        "--data_dir",
        str(small_minbert),
        "--output_dir",
        str(earlier),
        "--do_eval",
        "true",
        "--do_predict",
        "true",
        "--max_eval_samples",
        "20",
        "--max_seq_length",
        "32",
        "--use_cpu",
        "true",
        "--disable_tqdm",
        "true",
        "--report_to",
        "none",
    ]
    result = run_example_script("train", args)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    after = hashes(earlier)
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    assert "metrics.json" in changed and "predictions/sst-dev-output.csv" in changed  # 20 dev rows instead of 12
    assert all(name == "metrics.json" or name.startswith("predictions/") for name in changed), changed
    assert leftovers(earlier) == []


def test_scoring_a_model_into_another_finished_run_is_refused(earlier, finished_run, small_minbert, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(finished_run, other)
    before = hashes(other)
    args = [
        "--model_name_or_path",
        str(earlier),
        "--data_dir",
        str(small_minbert),
        "--output_dir",
        str(other),
        "--do_eval",
        "true",
        "--use_cpu",
        "true",
        "--report_to",
        "none",
    ]
    result = run_example_script("train", args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "already holds a finished run" in result.stderr and "--overwrite_output_dir true" in result.stderr
    assert hashes(other) == before


def test_predict_script_writes_every_file_or_none(finished_run, small_minbert, tmp_path, monkeypatch):
    import mtbert.predict

    out = tmp_path / "preds"
    argv = ["--model_name_or_path", str(finished_run), "--data_dir", str(small_minbert), "--output_dir", str(out)]
    main_in_process("predict", argv, monkeypatch)
    assert sorted(p.name for p in out.iterdir()) == LEADERBOARD
    before = hashes(out)

    # the last task's prediction fails after the others' files are written: none of the new files is kept
    real_predict_task = mtbert.predict.predict_task

    def failing_on_sts(model, task, *args, **kwargs):
        if task == "sts":
            raise RuntimeError("index out of range in self")
        return real_predict_task(model, task, *args, **kwargs)

    monkeypatch.setattr(mtbert.predict, "predict_task", failing_on_sts)
    with pytest.raises(RuntimeError, match="index out of range"):
        main_in_process("predict", [*argv, "--max_eval_samples", "5"], monkeypatch)
    assert hashes(out) == before
    assert leftovers(out) == []

    # one task's data fails: a clear error, and the earlier files stay as they were
    monkeypatch.undo()
    bad = tmp_path / "bad_data"
    shutil.copytree(small_minbert, bad)
    (bad / "sts-test-student.csv").write_text("nothing here\n")
    with pytest.raises(SystemExit) as exit_info:
        main_in_process("predict", [*argv[:2], "--data_dir", str(bad), "--output_dir", str(out)], monkeypatch)
    assert exit_info.value.code == 2
    assert hashes(out) == before
    assert leftovers(out) == []


def test_predict_script_ensemble_writes_every_file_or_none(finished_run, small_minbert, tmp_path, monkeypatch):
    import mtbert.ensemble

    out = tmp_path / "ensemble"
    out.mkdir()
    (out / "sst-dev-output.csv").write_text("earlier\n")
    before = hashes(out)
    real_write = mtbert.ensemble.write_leaderboard_file
    calls = []

    def failing_third_file(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise OSError("no space left on device")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(mtbert.ensemble, "write_leaderboard_file", failing_third_file)
    argv = [
        "--model_name_or_path",
        str(finished_run),
        str(finished_run),
        "--data_dir",
        str(small_minbert),
        "--output_dir",
        str(out),
    ]
    with pytest.raises(OSError, match="no space left"):
        main_in_process("predict", argv, monkeypatch)
    assert hashes(out) == before
    assert leftovers(out) == []

    monkeypatch.setattr(mtbert.ensemble, "write_leaderboard_file", real_write)
    main_in_process("predict", argv, monkeypatch)
    assert sorted(p.name for p in out.iterdir()) == sorted([*LEADERBOARD, "ensemble_metrics.json"])
    assert leftovers(out) == []
