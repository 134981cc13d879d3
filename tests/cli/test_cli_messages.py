"""What the command line tells a user: one line per loaded backbone, banner counts of what is really sampled,
prediction caps and partial leaderboard files (issue 17)."""

from __future__ import annotations

import logging

import pytest
import transformers

from mtbert import MultitaskBertModel

from conftest import leaderboard_predictions_kwargs


@pytest.fixture
def transformers_info():
    """transformers at INFO, as examples/train.py sets it on the main process."""
    before = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_info()
    yield
    transformers.utils.logging.set_verbosity(before)


def test_a_backbone_load_is_one_clean_line(tiny_backbone, transformers_info, caplog, capfd):
    caplog.set_level(logging.INFO, logger="mtbert")
    bars_before = transformers.utils.logging.is_progress_bar_enabled()  # other tests may have turned them off
    transformers.utils.logging.enable_progress_bar()
    MultitaskBertModel.from_encoder_pretrained(
        str(tiny_backbone), tasks={"sst": {}}, encoder_kwargs={"hidden_dropout_prob": 0.2}
    )
    printed = capfd.readouterr()
    shown = printed.out + printed.err
    assert "LOAD REPORT" not in shown and "UNEXPECTED" not in shown  # the pooler left out is not an error
    assert "Model config" not in shown  # the backbone config is not dumped (AutoConfig + AutoModel: twice before)
    lines = [r.getMessage() for r in caplog.records if "backbone" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"loaded backbone {tiny_backbone} (bert, ")
    assert "M parameters; pooler weights not used)" in lines[0]
    assert transformers.utils.logging.get_verbosity() == logging.INFO  # restored after the load
    restored = transformers.utils.logging.is_progress_bar_enabled()  # silenced for the load only
    if not bars_before:
        transformers.utils.logging.disable_progress_bar()
    assert restored


def test_missing_backbone_weights_are_still_reported(tmp_path, caplog):
    from safetensors.torch import load_file, save_file
    from transformers import BertModel

    from conftest import tiny_bert_config

    path = tmp_path / "backbone"
    BertModel(tiny_bert_config()).save_pretrained(path)
    state = load_file(path / "model.safetensors")
    save_file(
        {k: v for k, v in state.items() if "layer.0.output.dense" not in k},
        path / "model.safetensors",
        metadata={"format": "pt"},
    )
    caplog.set_level(logging.INFO, logger="mtbert")
    MultitaskBertModel.from_encoder_pretrained(str(path), tasks={"sst": {}})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("initialised at random" in w and "layer.0.output.dense" in w for w in warnings), warnings


# ----------------------------------------------------------------------------------------------------------------
# The training banner counts what the plan samples
# ----------------------------------------------------------------------------------------------------------------


def test_epoch_summary_counts_what_the_plan_draws():
    from mtbert.data.sampling import MultitaskBatchSampler

    sampler = MultitaskBatchSampler(
        {"sst": 40, "qqp": 1000, "sts": 30},
        batch_size=4,
        task_sampling="proportional",
        max_samples={"qqp": 16, "sts": 12},
    )
    summary = sampler.epoch_summary()
    assert summary == {
        "sst": {"available": 40, "sampled": 40, "batches": 10},
        "qqp": {"available": 1000, "sampled": 16, "batches": 4},
        "sts": {"available": 30, "sampled": 12, "batches": 3},
    }
    text = sampler.describe()
    assert text.startswith("68 rows and 17 steps per epoch (proportional task order, global batch 4): ")
    assert "qqp 16 of 1,000 rows in 4 batches, max_train_samples 16" in text
    # sum/pcgrad: one batch of every task per step, as many steps as the largest task has batches: small ones cycle
    summed = MultitaskBatchSampler({"sst": 40, "sts": 10}, batch_size=4, all_tasks_per_step=True)
    assert summed.epoch_summary() == {
        "sst": {"available": 40, "sampled": 40, "batches": 10},
        "sts": {"available": 10, "sampled": 34, "batches": 10},
    }  # 4+4+2 thrice, 4
    assert sum(s["sampled"] for s in summed.epoch_summary(steps=3).values()) == 12 + 10  # sst 4+4+4, sts 4+4+2


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_the_banner_counts_sampled_rows_and_mtbert_says_what_max_steps_draws(
    make_model, tokenizer, tmp_path, caplog, transformers_info
):
    import datasets

    from mtbert.data import tokenize_task
    from mtbert.models.mtbert.configuration_mtbert import normalize_task_spec
    from mtbert.training.trainer import MultitaskTrainer
    from mtbert.training.training_args import MultitaskTrainingArguments

    tasks = {"sst": {}, "sts": {}}
    rows = {
        "sst": {"text": [f"film number {i}" for i in range(24)], "label": [i % 5 for i in range(24)]},
        "sts": {
            "text": [f"a man {i}" for i in range(40)],
            "text_pair": [f"a dog {i}" for i in range(40)],
            "label": [float(i % 5) for i in range(40)],
        },
    }
    data = {}
    for task, columns in rows.items():
        ds = datasets.Dataset.from_dict({"id": [str(i) for i in range(len(columns["text"]))], **columns})
        data[task] = tokenize_task(ds, tokenizer, normalize_task_spec(task, tasks[task]), max_length=16)
    args = MultitaskTrainingArguments(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        use_cpu=True,
        per_device_train_batch_size=4,
        max_steps=3,
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=100,
    )
    trainer = MultitaskTrainer(
        model=make_model(tasks, vocab_size=tokenizer.vocab_size),
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
        max_train_samples={"sts": 8},
    )
    stock = _Lines()
    logging.getLogger("transformers.trainer").addHandler(stock)
    caplog.set_level(logging.INFO, logger="mtbert")
    try:
        trainer.train()
    finally:
        logging.getLogger("transformers.trainer").removeHandler(stock)
    assert "  Num examples = 32" in stock.lines  # 24 SST rows + 8 of the 40 STS rows, not 64
    ours = [r.getMessage() for r in caplog.records if r.name == "mtbert.training.trainer"]
    plan = next(line for line in ours if line.startswith("training data: "))
    assert "32 rows and 8 steps per epoch" in plan
    assert "sst 24 of 24 rows in 6 batches" in plan and "sts 8 of 40 rows in 2 batches, max_train_samples 8" in plan
    assert "max_steps 3: training stops after 3 batches, 12 rows (an epoch has 8 batches)" in ours


# ----------------------------------------------------------------------------------------------------------------
# Prediction caps and partial leaderboard files
# ----------------------------------------------------------------------------------------------------------------


def _rows(path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("id \t Predicted_")  # the leaderboard header stays the first line
    return lines[1:]


def test_prediction_caps_write_partial_files_that_say_so(saved_tiny, small_minbert, tmp_path, caplog):
    from conftest import load_example_script

    predict = load_example_script("predict")
    out = tmp_path / "preds"
    caplog.set_level(logging.WARNING, logger="mtbert")
    # the Trainer's argument names, and the old --model/--batch_size spellings still accepted
    predict.main(
        [
            "--model_name_or_path",
            str(saved_tiny),
            "--data_dir",
            str(small_minbert),
            "--output_dir",
            str(out),
            "--per_device_eval_batch_size",
            "16",
            "--max_eval_samples",
            "5",
            "--max_predict_samples",
            "7",
        ]
    )
    for prefix in ("sst", "para", "sts"):
        assert len(_rows(out / f"{prefix}-dev-output.csv")) == 5
        assert len(_rows(out / f"{prefix}-test-output.csv")) == 7
    note = (out / "PARTIAL").read_text(encoding="utf-8")
    assert "sst-dev-output.csv: the first 5 of 60 rows (max_eval_samples 5)" in note
    assert "para-test-output.csv: the first 7 of 60 rows (max_predict_samples 7)" in note
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("not a full leaderboard file" in w for w in warned) == 6
    # the same folder predicted in full: complete files, and the note no longer stands
    predict.main(
        ["--model", str(saved_tiny), "--data_dir", str(small_minbert), "--output_dir", str(out), "--batch_size", "32"]
    )
    assert len(_rows(out / "sst-test-output.csv")) == 60
    assert not (out / "PARTIAL").exists()


def test_max_predict_samples_is_a_data_setting(tmp_path):
    from mtbert import MultitaskConfigError
    from mtbert.cli.arguments import DataArguments

    (tmp_path / "data").mkdir()
    assert DataArguments(data_dir=str(tmp_path / "data"), max_predict_samples=10).max_predict_samples == 10
    with pytest.raises(MultitaskConfigError, match="max_predict_samples must be >= 1"):
        DataArguments(data_dir=str(tmp_path / "data"), max_predict_samples=0)


def test_predict_script_help_uses_the_trainer_names(capsys):
    from conftest import load_example_script

    with pytest.raises(SystemExit):
        load_example_script("predict").main(["--help"])
    options = capsys.readouterr().out.split("options:")[1]
    assert "--model_name_or_path" in options and "--per_device_eval_batch_size" in options
    assert "--model " not in options and "--batch_size" not in options  # old spellings work, not advertised


def test_analyze_script_takes_the_trainer_names(saved_tiny):
    from conftest import load_example_script

    analyze = load_example_script("analyze")
    new = analyze.build_parser().parse_args(["--model_name_or_path", "m", "--per_device_eval_batch_size", "8"])
    old = analyze.build_parser().parse_args(["m", "--batch_size", "8"])
    assert (new.model_name_or_path, new.per_device_eval_batch_size) == ("m", 8)
    assert (old.model, old.per_device_eval_batch_size) == ("m", 8)
    assert analyze.trained_length(str(saved_tiny)) == 32  # the length recorded in config.json, not 128


def test_a_capped_train_run_says_what_it_samples_loads_quietly_and_marks_partial_files(
    tiny_backbone, small_minbert, tmp_path
):
    from train_runs import base_args, run_train

    out = tmp_path / "run"
    result = run_train(
        base_args(
            tiny_backbone,
            small_minbert,
            out,
            "round_robin",
            batch=8,
            max_steps=2,
            write_predictions=True,
            max_predict_samples=7,
        )
    )
    log = result.stdout + result.stderr
    assert "Num examples = 96" in log  # 32 rows of each of the three capped tasks, not every training row
    assert "training data: 96 rows and 12 steps per epoch" in log
    assert "max_steps 2: training stops after 2 batches, 16 rows (an epoch has 12 batches)" in log
    assert log.count("loaded backbone") == 1 and "pooler weights not used" in log
    assert "LOAD REPORT" not in log and "UNEXPECTED" not in log
    assert "Model config" not in log  # the backbone's config is not dumped (the tokenizer and the model loads)
    predictions = out / "predictions"
    assert len(_rows(predictions / "sst-dev-output.csv")) == 16  # max_eval_samples
    assert len(_rows(predictions / "para-test-output.csv")) == 7  # max_predict_samples
    note = (predictions / "PARTIAL").read_text(encoding="utf-8")
    assert "sts-dev-output.csv: the first 16 of" in note and "sts-test-output.csv: the first 7 of" in note
    assert "not a full leaderboard file" in log


@pytest.mark.parametrize("progress", [True, False])
def test_prediction_bars_show_only_when_asked(tokenizer, tmp_path, capfd, monkeypatch, progress):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # tqdm's own switch would hide the bars either way
    from mtbert.inference.predict import write_predictions

    from random_tasks import make_data, make_model

    model = make_model(tokenizer)
    data = make_data(tokenizer, model, n=6)
    written = write_predictions(
        model, {"sst": {"dev": data["sst"]}}, str(tmp_path / "p"), batch_size=2, progress=progress
    )
    assert len(written) == 1
    assert ("Predicting sst" in capfd.readouterr().err) is progress


@pytest.mark.parametrize("disable_tqdm", [True, False])
def test_disable_tqdm_reaches_the_leaderboard_predictions(monkeypatch, disable_tqdm):
    """``--disable_tqdm true`` silences the bars of the leaderboard predictions at the end of a run too."""
    seen = leaderboard_predictions_kwargs(monkeypatch, disable_tqdm=disable_tqdm)
    assert seen["progress"] is (not disable_tqdm)
