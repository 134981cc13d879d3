"""examples/single_task_baseline.py: the stock single-task recipe (plain Trainer) trains, scores dev, writes
metrics.json.

Runs in-process on a tiny random BERT (saved with the offline MiniLM tokenizer) and tiny minBERT files.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertModel

from conftest import tiny_bert_config, write_minbert_file

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["good", "bad", "fine", "awful", "great", "dull", "lovely", "boring"]
ROWS = 40  # train rows per file (more than --max_train_samples 32); dev gets 16


def load_script():
    spec = importlib.util.spec_from_file_location(
        "single_task_baseline", ROOT / "examples" / "single_task_baseline.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def baseline():
    return load_script()


@pytest.fixture(scope="module")
def backbone(tmp_path_factory, tokenizer):
    """A tiny random BERT (2 layers, hidden 32) saved with the MiniLM tokenizer, as a stand-in backbone."""
    folder = tmp_path_factory.mktemp("backbone")
    torch.manual_seed(0)
    BertModel(tiny_bert_config(len(tokenizer), intermediate_size=64)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def split_rows(task: str, split: str, n: int) -> list[tuple]:
    """The well-formed rows of one task's file: ``(id, sentence[, sentence2], label)``."""
    if task == "sst":
        return [(f"s{split}{i}", f"a {WORDS[i % 8]} film number {i}", i % 5) for i in range(n)]
    if task == "qqp":
        return [
            (f"q{split}{i}", f"is it {WORDS[i % 8]} ?", f"is it {WORDS[(i + i % 2) % 8]} ?", f"{i % 2}.0")
            for i in range(n)
        ]
    return [
        (f"t{split}{i}", f"two {WORDS[i % 8]} dogs", f"a {WORDS[(i + 1) % 8]} dog", f"{(i % 11) / 2:.1f}")
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def minbert_dir(tmp_path_factory):
    """Tiny train/dev files of the three tasks, one malformed row in each (the reader skips it)."""
    folder = tmp_path_factory.mktemp("data")
    for split, n in (("train", ROWS), ("dev", 16)):
        sst, qqp, sts = (split_rows(task, split, n) for task in ("sst", "qqp", "sts"))
        write_minbert_file(folder / f"ids-sst-{split}.csv", ("sentence", "sentiment"), [*sst, "9\tbad\tno label\t7"])
        write_minbert_file(
            folder / f"quora-{split}.csv", ("sentence1", "sentence2", "is_duplicate"), [*qqp, "9\tbad\tonly one field"]
        )
        write_minbert_file(
            folder / f"sts-{split}.csv", ("sentence1", "sentence2", "similarity"), [*sts, "9\tbad\tx\ty\t6.5"]
        )
    return folder


@pytest.mark.parametrize(
    "task, key",
    [("sst", "eval_sst_accuracy"), ("qqp", "eval_qqp_accuracy"), ("sts", "eval_sts_pearson")],
)
def test_trains_and_writes_metrics(baseline, backbone, minbert_dir, tmp_path, capsys, task, key):
    out = tmp_path / "out"
    returned = baseline.main(
        [
            "--task",
            task,
            "--model_name_or_path",
            str(backbone),
            "--data_dir",
            str(minbert_dir),
            "--output_dir",
            str(out),
            "--max_train_samples",
            "32",
            "--num_train_epochs",
            "1",
            "--per_device_train_batch_size",
            "8",
            "--per_device_eval_batch_size",
            "16",
            "--max_seq_length",
            "32",
            "--disable_tqdm",
        ]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(returned))
    assert math.isfinite(metrics[key])  # its value is checked against the saved model below
    assert metrics["primary_metric"] == key and metrics["task"] == task
    assert metrics["eval_loss"] > 0  # a real loss: e.g. not a one-class softmax, whose cross-entropy is always 0
    assert metrics["train_rows"] == 32 and metrics["dev_rows"] == 16  # the malformed dev row was skipped
    assert metrics["train_runtime"] > 0 and metrics["train_samples_per_second"] > 0
    assert metrics["arguments"]["task"] == task and metrics["arguments"]["learning_rate"] == 1e-4
    assert metrics["arguments"]["warmup_steps"] == 0.1
    assert {"transformers", "torch", "datasets"} <= set(metrics["versions"])
    assert not any(p.name.endswith(".safetensors") for p in out.iterdir())  # no weights without --save_model
    assert f"{key}=" in capsys.readouterr().out


def by_hand_dev_scores(model, tokenizer, task: str) -> tuple[float, float]:
    """(primary metric, mean loss) of a saved model on the dev rows, one row at a time, written out with numpy:
    accuracy of the argmax, or Pearson's r of the regression output; cross-entropy or squared error."""
    rows = split_rows(task, "dev", 16)
    outputs, labels = [], []
    with torch.no_grad():
        for row in rows:
            encoded = tokenizer(*row[1:-1], truncation=True, max_length=32, return_tensors="pt")
            outputs.append(model(**encoded).logits[0].double().numpy())
            labels.append(float(row[-1]))
    logits, labels = np.stack(outputs), np.asarray(labels)
    if task == "sts":
        return float(np.corrcoef(logits[:, 0], labels)[0, 1]), float(np.mean((logits[:, 0] - labels) ** 2))
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    gold = labels.astype(int)
    accuracy = float(np.mean(logits.argmax(axis=1) == gold))
    return accuracy, float(-np.mean(log_probs[np.arange(len(gold)), gold]))


@pytest.mark.parametrize(
    "task, key",
    [("sst", "eval_sst_accuracy"), ("qqp", "eval_qqp_accuracy"), ("sts", "eval_sts_pearson")],
)
def test_the_metrics_are_those_of_the_trained_model(baseline, backbone, minbert_dir, tmp_path, task, key):
    """metrics.json agrees exactly with the saved model's dev predictions recomputed by hand, and that model is the
    trained one (its encoder moved away from the backbone), so a wrong metric, a wrong split or no training fails."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "out"
    metrics = baseline.main(
        [
            "--task",
            task,
            "--model_name_or_path",
            str(backbone),
            "--data_dir",
            str(minbert_dir),
            "--output_dir",
            str(out),
            "--max_train_samples",
            "32",
            "--num_train_epochs",
            "2",
            "--per_device_train_batch_size",
            "8",
            "--per_device_eval_batch_size",
            "5",
            "--max_seq_length",
            "32",
            "--learning_rate",
            "1e-3",
            "--disable_tqdm",
            "--save_model",
        ]
    )
    model = AutoModelForSequenceClassification.from_pretrained(out, use_safetensors=True).eval()
    start = BertModel.from_pretrained(backbone, use_safetensors=True)
    name = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(model.bert.state_dict()[name], start.state_dict()[name])  # training moved the encoder
    primary, loss = by_hand_dev_scores(model, AutoTokenizer.from_pretrained(out), task)
    assert metrics[key] == pytest.approx(primary, abs=1e-4)  # float32 and padding: not bit for bit
    assert metrics["eval_loss"] == pytest.approx(loss, rel=1e-4)


def test_the_trainer_names_and_the_old_spellings(baseline):
    """Arguments named as TrainingArguments names them; the script's earlier names still work, out of --help."""
    new = baseline.build_parser().parse_args(
        [
            "--task",
            "sts",
            "--output_dir",
            "o",
            "--model_name_or_path",
            "m",
            "--num_train_epochs",
            "2",
            "--per_device_train_batch_size",
            "4",
            "--per_device_eval_batch_size",
            "8",
            "--warmup_steps",
            "0.2",
        ]
    )
    old = baseline.build_parser().parse_args(
        [
            "--task",
            "sts",
            "--output_dir",
            "o",
            "--model",
            "m",
            "--epochs",
            "2",
            "--batch_size",
            "4",
            "--eval_batch_size",
            "8",
            "--warmup",
            "0.2",
        ]
    )
    assert vars(new) == vars(old)
    assert (new.model_name_or_path, new.num_train_epochs, new.per_device_train_batch_size) == ("m", 2.0, 4)
    assert (new.per_device_eval_batch_size, new.warmup_steps) == (8, 0.2)
    options = baseline.build_parser().format_help().split("options:")[1]
    assert "--num_train_epochs" in options and "--epochs" not in options and "--warmup " not in options


def test_heads_follow_the_task(baseline):
    from mtbert.models.mtbert.configuration_mtbert import normalize_task_spec

    assert baseline.model_head_kwargs(normalize_task_spec("sst", {}))["num_labels"] == 5
    assert baseline.model_head_kwargs(normalize_task_spec("qqp", {}))["num_labels"] == 2
    assert baseline.model_head_kwargs(normalize_task_spec("sts", {})) == {
        "num_labels": 1,
        "problem_type": "regression",
    }


def test_pairs_are_joined_with_sep(baseline, tokenizer):
    import datasets

    pairs = datasets.Dataset.from_dict({"id": ["0"], "text": ["a cat"], "text_pair": ["a dog"], "label": [1]})
    row = baseline.tokenize_split(pairs, tokenizer, 32)[0]
    assert set(row) >= {"input_ids", "token_type_ids", "attention_mask", "label"}
    assert row["input_ids"].count(tokenizer.sep_token_id) == 2
    assert row["token_type_ids"][-1] == 1 and row["token_type_ids"][0] == 0


def test_metrics_use_mtbert_names(baseline):
    logits = [[2.0, 0.1], [0.1, 2.0], [3.0, 0.0]]
    assert baseline.task_metrics("qqp", "pair_classification", logits, [0, 1, 1])[
        "eval_qqp_accuracy"
    ] == pytest.approx(2 / 3)
    sts = baseline.task_metrics("sts", "pair_regression", [[0.5], [2.0], [4.0]], [1.0, 2.5, 4.5])
    assert sts["eval_sts_pearson"] == pytest.approx(1.0, abs=1e-2) and "eval_sts_spearman" in sts


@pytest.mark.parametrize(
    "argv",
    [["--task", "mnli"], [], ["--task", "sst", "--model_name_or_path", "./no/such/folder"]],
    ids=["unknown-task", "no-task", "missing-model-folder"],
)
def test_bad_arguments_exit_2(baseline, argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        baseline.main([*argv, "--output_dir", str(tmp_path)])
    assert error.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_a_backbone_with_only_pickle_weights_is_refused(baseline, tokenizer, minbert_dir, tmp_path, monkeypatch):
    """The baseline loads safetensors only, like mtbert: a folder with only pytorch_model.bin is one line."""
    import pickle

    folder = tmp_path / "backbone"
    torch.manual_seed(0)
    model = BertModel(tiny_bert_config(len(tokenizer), intermediate_size=64))
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")

    def no_pickle(*args, **kwargs):
        raise AssertionError("a pickle was opened")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    with pytest.raises(SystemExit) as error:
        baseline.main(
            [
                "--task",
                "sst",
                "--model_name_or_path",
                str(folder),
                "--data_dir",
                str(minbert_dir),
                "--output_dir",
                str(tmp_path / "out"),
                "--disable_tqdm",
            ]
        )
    message = str(error.value.code)
    assert message.startswith("error: ") and "has no model.safetensors" in message and "\n" not in message
    assert not (tmp_path / "out" / "metrics.json").exists()
