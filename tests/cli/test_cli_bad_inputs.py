"""A table of bad inputs a user may give the scripts: configs, flags, data folders, checkpoints and saved models.

Each row runs ``examples/train.py`` (or ``examples/predict.py``) in-process on a tiny backbone and tiny data, and
asserts: exit code 2, exactly one line on stderr that starts with ``mtbert: error:`` and names the culprit, no
``Traceback``, and (for training) no model weights loaded: every mistake is caught before any work is done.
docs/reliability.md ("Validated before work", "No silent wrong results") lists every row.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import load_example_script


@dataclass
class Case:
    id: str
    build: Callable  # build(ctx) -> argv
    error: str  # regex the error line must match (after "mtbert: error: ")
    script: str = "train"
    env: dict | None = None


class Ctx:
    """Where a case builds its inputs: a fresh tmp folder, the tiny backbone and a copy-on-demand data folder."""

    def __init__(self, tmp_path: Path, backbone: Path, data: Path):
        self.tmp, self.backbone, self.data = tmp_path, backbone, data
        self.out = tmp_path / "out"

    def config(self, text: str = "", name: str = "run.yaml", base: bool = True) -> str:
        settings = (
            f"model_name_or_path: {self.backbone}\ndata_dir: {self.data}\noutput_dir: {self.out}\n"
            "max_seq_length: 32\nmax_steps: 1\nreport_to: none\nuse_cpu: true\n"
            if base
            else ""
        )
        path = self.tmp / name
        path.write_text(settings + text + "\n", encoding="utf-8")
        return str(path)

    def data_copy(self, edit: Callable[[Path], None]) -> Path:
        folder = self.tmp / "data"
        shutil.copytree(self.data, folder)
        edit(folder)
        return folder

    def checkpoint(self, tasks: dict | None, name: str = "checkpoint-4") -> Path:
        """A checkpoint folder whose config.json names ``tasks`` (``None``: an empty ``{}``, as a broken save)."""
        folder = self.out / name
        folder.mkdir(parents=True)
        config = {} if tasks is None else {"model_type": "mtbert", "tasks": tasks}
        (folder / "config.json").write_text(json.dumps(config))
        return folder


def rewrite_labels(path: Path, column: str, new_label: Callable[[str], str]) -> None:
    """Rewrite one column of a minBERT file (tab-separated, header first) through ``new_label``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    index = [h.strip() for h in header].index(column)
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) == len(header):
            fields[index] = new_label(fields[index])
        out.append("\t".join(fields))
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def with_data(ctx: Ctx, edit: Callable[[Path], None]) -> list[str]:
    return [ctx.config(), "--data_dir", str(ctx.data_copy(edit))]


def saved_model_with_config(ctx: Ctx, text: str) -> str:
    folder = ctx.tmp / "saved"
    folder.mkdir()
    (folder / "config.json").write_text(text)
    return str(folder)


def scored_0_10_folder(ctx: Ctx) -> Path:
    """A ``files`` source folder whose similarity scores run 0-10 (the task expects 0-5)."""
    folder = ctx.tmp / "sim"
    folder.mkdir()
    for split in ("train", "validation"):
        rows = [f"s{i} a,s{i} b,{i % 11}" for i in range(20)]
        (folder / f"{split}.csv").write_text("a,b,score\n" + "\n".join(rows) + "\n")
    return folder


def predict_argv(ctx: Ctx, model: str, *extra: str) -> list[str]:
    return ["--model_name_or_path", model, "--data_dir", str(ctx.data), "--output_dir", str(ctx.tmp / "preds"), *extra]


CASES = [
    # --- keys and values in the config file
    Case(
        "unknown-key", lambda c: [c.config("learning_rat: 1.0e-4")], r"unknown setting 'learning_rat'.*'learning_rate'"
    ),
    Case(
        "unknown-flag", lambda c: [c.config(), "--learning_rat", "1"], r"unknown setting 'learning_rat' in the command"
    ),
    Case("task-key-typo", lambda c: [c.config("tasks:\n  sst: {classifer: mlp}")], r"unknown key\(s\) 'classifer'"),
    Case("misspelled-strategy", lambda c: [c.config("strategy: pcgard")], r"strategy: 'pcgard' is not one of"),
    Case("misspelled-pooling", lambda c: [c.config("tasks:\n  sts: {pooling: avg}")], r"pooling: 'avg' is not one of"),
    Case(
        "misspelled-pair-encoding",
        lambda c: [c.config("tasks:\n  qqp: {pair_encoding: concat}")],
        r"pair_encoding: 'concat' is not one of",
    ),
    Case(
        "pair-head-on-sentence",
        lambda c: [c.config("tasks:\n  sst: {pair_encoding: cosine}")],
        r"needs a sentence pair",
    ),
    Case("misspelled-data-source", lambda c: [c.config("data_source: minbrt")], r"data_source: 'minbrt' is not one"),
    Case("missing-backbone", lambda c: [c.config(), "--model_name_or_path", "./no/such/backbone"], r"no such folder"),
    Case(
        "label-smoothing-factor", lambda c: [c.config("label_smoothing_factor: 0.1")], r"tasks.<task>.label_smoothing"
    ),
    Case("sampling-strategy", lambda c: [c.config("train_sampling_strategy: sequential")], r"'sequential' is not sup"),
    Case(
        "tasks-scalar", lambda c: [c.config("tasks: sst")], r"tasks: 'sst' is a single value; write a list \(tasks: \["
    ),
    Case("task-spec-scalar", lambda c: [c.config("tasks:\n  sst: cls")], r"tasks.sst: 'cls' is not a mapping"),
    Case(
        "no-such-task-override", lambda c: [c.config(), "--tasks.nli.pooling", "cls"], r"--tasks.nli.\*: no task 'nli'"
    ),
    Case(
        "default-task-unknown",
        lambda c: [c.config("default_task: nli")],
        r"default_task 'nli' is not one of the tasks",
    ),
    Case("dropout-out-of-range", lambda c: [c.config("hidden_dropout_prob: 1.5")], r"hidden_dropout_prob must be in"),
    Case(
        "task-data-unknown-task", lambda c: [c.config("task_data: {nli: {source: minbert}}")], r"task_data names unkn"
    ),
    # --- ranges
    Case(
        "negative-batch-size",
        lambda c: [c.config("per_device_train_batch_size: -4")],
        r"per_device_train_batch_size must",
    ),
    Case(
        "zero-batch-size-flag",
        lambda c: [c.config(), "--per_device_eval_batch_size", "0"],
        r"per_device_eval_batch_s.*--per",
    ),
    Case(
        "zero-accumulation",
        lambda c: [c.config("gradient_accumulation_steps: 0")],
        r"gradient_accumulation_steps must",
    ),
    Case(
        "negative-learning-rate",
        lambda c: [c.config("learning_rate: -1.0e-5")],
        r"learning_rate must be >= 0.*run.yaml",
    ),
    Case(
        "negative-head-lr", lambda c: [c.config(), "--head_learning_rate", "-0.1"], r"head_learning_rate must be >= 0"
    ),
    Case("zero-temperature", lambda c: [c.config("sampling_temperature: 0")], r"sampling_temperature must be > 0"),
    Case("max-eval-samples-negative", lambda c: [c.config("max_eval_samples: -1")], r"max_eval_samples must be >= 1"),
    Case(
        "max-eval-samples-flag", lambda c: [c.config(), "--max_eval_samples", "-1"], r"max_eval_samples must be >= 1"
    ),
    Case("max-train-samples-zero", lambda c: [c.config("max_train_samples: 0")], r"max_train_samples for sst: 0 must"),
    Case(
        "max-train-samples-task-zero", lambda c: [c.config("max_train_samples: {sts: 0}")], r"for sts: 0 must be.*drop"
    ),
    Case(
        "max-train-samples-negative", lambda c: [c.config("max_train_samples: -5")], r"max_train_samples for sst: -5"
    ),
    Case(
        "max-train-samples-unknown",
        lambda c: [c.config("max_train_samples: {nli: 5}")],
        r"names unknown task\(s\): nli",
    ),
    Case(
        "max-seq-length-over-positions",
        lambda c: [c.config(), "--max_seq_length", "512"],
        r"max_seq_length 512 is more",
    ),
    Case("max-seq-length-too-small", lambda c: [c.config("max_seq_length: 4")], r"max_seq_length must be >= 8"),
    # --- combinations: a setting without effect, or that cannot work
    Case(
        "unknown-aggregator",
        lambda c: [c.config("strategy: pcgrad\naggregator: cagard")],
        r"aggregator: 'cagard' is not",
    ),
    Case(
        "aggregator-under-sum",
        lambda c: [c.config("strategy: sum\naggregator: cagrad")],
        r"no effect under strategy: sum",
    ),
    Case(
        "best-model-strategies-differ",
        lambda c: [c.config("load_best_model_at_end: true\neval_strategy: steps\nsave_strategy: epoch")],
        r"eval_strategy and save_strategy to match",
    ),
    Case("best-model-without-eval", lambda c: [c.config("load_best_model_at_end: true")], r"needs evaluations"),
    Case("early-stopping-alone", lambda c: [c.config("early_stopping_patience: 2")], r"needs load_best_model_at_end"),
    Case("average-one-checkpoint", lambda c: [c.config("average_checkpoints: 1")], r"average_checkpoints must be 0"),
    Case(
        "eval-only-plain-backbone", lambda c: [c.config(), "--eval_only", "true"], r"plain backbone.*allow_untrained"
    ),
    Case("do-eval-plain-backbone", lambda c: [c.config(), "--do_eval"], r"plain backbone whose task heads are random"),
    Case(
        "push-offline",
        lambda c: [c.config(), "--push_to_hub"],
        r"push_to_hub is set but the Hub is offline",
        env={"HF_HUB_OFFLINE": "1"},
    ),
    # --- files and folders
    Case(
        "output-dir-is-a-file", lambda c: [c.config(), "--output_dir", str(c.config("", "f.yaml"))], r"is a file, not"
    ),
    Case("config-not-found", lambda c: [str(c.tmp / "nope.yaml")], r"config file .*nope.yaml' not found"),
    Case("config-not-a-mapping", lambda c: [c.config("- a\n- b", base=False)], r"must hold a mapping of settings"),
    Case("config-invalid-yaml", lambda c: [c.config("a: [b", base=False)], r"is not valid YAML"),
    Case("config-extends-itself", lambda c: [c.config("extends: run.yaml", base=False)], r"extends itself"),
    Case("drop-unknown-task", lambda c: [c.config("drop_tasks: [nli]")], r"drop_tasks names nli, which is not among"),
    Case("drop-every-task", lambda c: [c.config("drop_tasks: [sst, qqp, sts]")], r"drop_tasks removes every task"),
    Case(
        "data-dir-missing", lambda c: [c.config(), "--data_dir", str(c.tmp / "nope")], r"data_dir .*nope' is not a fol"
    ),
    Case(
        "data-file-missing",
        lambda c: with_data(c, lambda d: (d / "sts-dev.csv").unlink()),
        r"sts-dev.csv: file not found",
    ),
    Case(
        "data-file-empty",
        lambda c: with_data(c, lambda d: (d / "ids-sst-dev.csv").write_text("")),
        r"ids-sst-dev.csv: the file is empty",
    ),
    Case(
        "data-file-mis-columned",
        lambda c: with_data(
            c, lambda d: (d / "ids-sst-train.csv").write_text("\tid\ttext\tlabel\n0\tabc\tA film .\t3\n")
        ),
        r"ids-sst-train.csv: missing column\(s\) sentence, sentiment",
    ),
    Case(
        "sts-scored-0-10",
        lambda c: with_data(
            c, lambda d: rewrite_labels(d / "sts-train.csv", "similarity", lambda v: f"{2 * float(v):g}")
        ),
        r"sts-train.csv's \d+ labelled rows have scores above 5 .*looks scored 0-10.*label_scale: 0.5.*score_range",
    ),
    Case(
        "sst-labelled-1-5",
        lambda c: with_data(
            c, lambda d: rewrite_labels(d / "ids-sst-dev.csv", "sentiment", lambda v: str(int(v) + 1))
        ),
        r"ids-sst-dev.csv's \d+ labelled rows have labels outside 0..4 .*looks labelled 1-5",
    ),
    Case(
        "files-sts-scored-0-10",
        lambda c: [
            c.config(
                "tasks: [sts]\ntask_data:\n  sts: {source: files, data_dir: "
                f"{scored_0_10_folder(c)}, text_columns: [a, b], label_column: score}}"
            )
        ],
        r"train.csv.* have scores above 5 .*looks scored 0-10",
    ),
    Case(
        "resume-other-tasks",
        lambda c: [c.config(), "--resume_from_checkpoint", str(c.checkpoint({"sst": {}, "qqp": {}}))],
        r"resume_from_checkpoint .*checkpoint-4' was trained on tasks sst, qqp, but this run has sst, qqp, sts",
    ),
    Case(
        "resume-broken-checkpoint",
        lambda c: [c.config(), "--resume_from_checkpoint", str(c.checkpoint(None, "checkpoint-40"))],
        r"checkpoint-40.*cannot be resumed from",
    ),
    # --- examples/predict.py
    Case("predict-missing-model", lambda c: predict_argv(c, str(c.tmp / "nope")), r"nope", script="predict"),
    Case(
        "predict-config-not-json",
        lambda c: predict_argv(c, saved_model_with_config(c, "{not json")),
        r"config.json",
        script="predict",
    ),
    Case(
        "predict-negative-max-eval",
        lambda c: predict_argv(c, str(c.backbone), "--max_seq_length", "32", "--max_eval_samples", "-1"),
        r"max_eval_samples must be >= 1",
        script="predict",
    ),
    Case(
        "predict-max-seq-length-over-positions",
        lambda c: predict_argv(c, str(c.backbone), "--max_seq_length", "512"),
        r"max_seq_length 512 is more than the backbone .*\(128 positions\)",
        script="predict",
    ),
    Case(
        "predict-missing-data-dir",
        lambda c: [
            "--model_name_or_path",
            str(c.backbone),
            "--max_seq_length",
            "32",
            "--data_dir",
            str(c.tmp / "no"),
            "--output_dir",
            str(c.tmp / "p"),
        ],
        r"data_dir .*no' is not a folder",
        script="predict",
    ),
]


@pytest.fixture(scope="module")
def scripts():
    """The two scripts, loaded once. datasets' progress bars (``Generating ... split``: progress, not an error, and
    written to stderr) are off here, so that stderr holds only what the script says about the mistake."""
    import datasets

    datasets.disable_progress_bars()
    yield {name: load_example_script(name) for name in ("train", "predict")}
    datasets.enable_progress_bars()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line(case, scripts, tiny_backbone, small_minbert, tmp_path, capsys, monkeypatch):
    import transformers

    for key, value in (case.env or {}).items():
        monkeypatch.setenv(key, value)
    argv = case.build(Ctx(tmp_path, tiny_backbone, small_minbert))
    loads = []
    if case.script == "train":
        monkeypatch.setattr(transformers.AutoModel, "from_pretrained", lambda *a, **k: loads.append(a) or 1 / 0)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        scripts[case.script].main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mtbert: error: "), err
    assert re.search(case.error, lines[0]), lines[0]
    assert not loads, "a model was loaded before the mistake was caught"


def test_the_table_is_large_enough():
    assert len(CASES) >= 40


def test_a_real_process_exits_2_with_one_line(tiny_backbone, small_minbert, tmp_path):
    from conftest import run_example_script

    config = Ctx(tmp_path, tiny_backbone, small_minbert).config("strategy: sum\naggregator: cagrad")
    result = run_example_script("train", [config], timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("mtbert: error: aggregator: 'cagrad' has no effect under strategy: sum")


def test_a_few_bad_labels_are_skipped_not_refused(tiny_backbone, small_minbert, tmp_path):
    """Below the share that means another scale, bad labels stay skipped and counted (as in the real QQP file)."""
    from mtbert.data import read_minbert_file
    from mtbert.models.mtbert.configuration_mtbert import normalize_task_spec

    path = tmp_path / "sts-train.csv"
    shutil.copy(small_minbert / "sts-train.csv", path)
    count = [0]

    def first_five_doubled(value):
        count[0] += 1
        return "9" if count[0] <= 5 else value

    rewrite_labels(path, "similarity", first_five_doubled)
    dataset = read_minbert_file(str(path), normalize_task_spec("sts", {}), ("sentence1", "sentence2"), "similarity")
    assert 50 <= len(dataset) <= 55


def test_yaml_of_the_table_ids_is_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), yaml.safe_dump(ids)
