"""Prediction-time ensembles (mtbert.inference.ensemble) and examples/predict.py with several models, on tiny random
models."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from mtbert import MultitaskConfigError
from mtbert.data import tokenize_task
from mtbert.inference.ensemble import (
    check_compatible,
    combine_logits,
    ensemble_predict_task,
    predict_ensemble,
    task_logits,
)
from mtbert.inference.predict import predict_task
from mtbert.models.mtbert.configuration_mtbert import normalize_task_spec

from conftest import TOY_ROWS, load_example_script, toy_dataset

ROOT = Path(__file__).resolve().parents[2]

# classifier heads on pairs encoded separately (the baseline)
LINEAR = {
    "sst": {"classifier_dropout": 0.0},
    "qqp": {"classifier_dropout": 0.0},
    "sts": {"classifier_dropout": 0.0},
}
# cosine heads for both pair tasks
COSINE = {
    "sst": {"classifier_dropout": 0.0, "pooling": "mean"},
    "qqp": {"pair_encoding": "cosine", "pooling": "mean", "cosine_threshold": 0.95},
    "sts": {"pair_encoding": "cosine", "pooling": "mean"},
}
# pairs joined with [SEP]: another input layout for the same tasks
JOINED = {
    "sst": {"classifier_dropout": 0.0},
    "qqp": {"pair_encoding": "concat_sep", "classifier_dropout": 0.0},
    "sts": {"pair_encoding": "concat_sep", "classifier_dropout": 0.0},
}

# the rows of conftest.TOY_ROWS, with one longer SST sentence (batches of unequal lengths)
RAW = {
    **TOY_ROWS,
    "sst": {
        "text": [*TOY_ROWS["sst"]["text"][:-1], "ok then, if you insist on a longer sentence here"],
        "label": TOY_ROWS["sst"]["label"],
    },
}


@pytest.fixture(scope="module")
def tokenize(tokenizer):
    """``tokenize(task, task_settings)`` → the task's in-memory rows tokenized for that head (cached)."""
    cache = {}
    datasets.disable_progress_bars()

    def factory(task, settings):
        spec = normalize_task_spec(task, settings)
        key = (task, spec["pair_encoding"])
        if key not in cache:
            cache[key] = tokenize_task(toy_dataset(task, RAW[task]), tokenizer, spec, max_length=24)
        return cache[key]

    yield factory
    datasets.enable_progress_bars()


@pytest.fixture
def model(make_model, tokenizer):
    def factory(tasks, seed=0):
        return make_model(tasks, vocab_size=tokenizer.vocab_size, seed=seed).eval()

    return factory


# ----------------------------------------------------------------------------------------------------------------
# ensemble_predict_task
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tasks", [LINEAR, COSINE, JOINED], ids=["linear", "cosine", "joined"])
def test_the_same_model_twice_predicts_like_the_model(model, tokenize, tokenizer, tasks):
    member = model(tasks, seed=1)
    for task in ("sst", "qqp", "sts"):
        dataset = tokenize(task, tasks[task])
        alone = predict_task(member, task, dataset, batch_size=4, pad_token_id=tokenizer.pad_token_id, progress=False)
        for members in ([member], [member, member]):
            both = ensemble_predict_task(
                members, task, dataset, batch_size=4, pad_token_id=tokenizer.pad_token_id, progress=False
            )
            np.testing.assert_array_equal(both["index"], alone["index"])
            np.testing.assert_array_equal(both["predictions"], alone["predictions"])
            np.testing.assert_allclose(both["scores"], alone["scores"], rtol=0, atol=1e-7)
    if tasks is COSINE:  # the threshold is the model's, and it does split the rows
        result = ensemble_predict_task([member, member], "qqp", tokenize("qqp", COSINE["qqp"]), progress=False)
        np.testing.assert_array_equal(result["predictions"], (result["scores"] > 0.95).astype(float))
        assert set(result["predictions"]) == {0.0, 1.0}


def row_logits(member, task, dataset, tokenizer):
    """Each row's logits from its own unpadded forward pass: independent of the batching under test."""
    from mtbert.data.collators import TaskCollator

    columns = [c for c in ("input_ids", "input_ids_b", "token_type_ids") if c in dataset.column_names]
    out = []
    with torch.no_grad():
        for i in range(len(dataset)):
            batch = TaskCollator(tokenizer.pad_token_id)([{c: dataset[i][c] for c in columns}])
            out.append(member(task=task, **batch).logits[0].float())
    return torch.stack(out)


def test_two_models_sentence_classification_is_the_argmax_of_the_mean_softmax(model, tokenize, tokenizer):
    a, b = model(LINEAR, seed=1), model(LINEAR, seed=2)
    dataset = tokenize("sst", LINEAR["sst"])
    mean = (
        row_logits(a, "sst", dataset, tokenizer).softmax(-1) + row_logits(b, "sst", dataset, tokenizer).softmax(-1)
    ) / 2
    result = ensemble_predict_task(
        [a, b], "sst", dataset, batch_size=3, pad_token_id=tokenizer.pad_token_id, progress=False
    )
    np.testing.assert_array_equal(result["predictions"], mean.argmax(-1).numpy())
    np.testing.assert_allclose(result["scores"], mean.max(-1).values.numpy(), atol=1e-5)
    alone = [predict_task(m, "sst", dataset, progress=False)["predictions"] for m in (a, b)]
    assert not np.array_equal(alone[0], alone[1])  # the members disagree somewhere: the test is not vacuous


@pytest.mark.parametrize("tasks", [LINEAR, COSINE], ids=["linear", "cosine"])
def test_two_models_pair_tasks_average_probabilities_cosines_and_scores(model, tokenize, tokenizer, tasks):
    a, b = model(tasks, seed=1), model(tasks, seed=2)
    for task in ("qqp", "sts"):
        dataset = tokenize(task, tasks[task])
        mean = np.mean([predict_task(m, task, dataset, progress=False)["scores"] for m in (a, b)], axis=0)
        result = ensemble_predict_task([a, b], task, dataset, pad_token_id=tokenizer.pad_token_id, progress=False)
        np.testing.assert_allclose(result["scores"], mean, atol=1e-6)
        if task == "sts":
            np.testing.assert_allclose(result["predictions"], mean, atol=1e-6)
        else:
            threshold = 0.95 if tasks is COSINE else 0.5
            np.testing.assert_array_equal(result["predictions"], (mean > threshold).astype(float))


def test_members_reading_different_layouts_take_one_dataset_each(model, tokenize, tokenizer):
    separate, joined = model(LINEAR, seed=1), model(JOINED, seed=2)
    data = [tokenize("qqp", LINEAR["qqp"]), tokenize("qqp", JOINED["qqp"])]
    with pytest.raises(MultitaskConfigError, match=r"different layouts.*one dataset per model"):
        ensemble_predict_task([separate, joined], "qqp", data[0], progress=False)
    result = ensemble_predict_task([separate, joined], "qqp", data, progress=False)
    mean = (
        predict_task(separate, "qqp", data[0], progress=False)["scores"]
        + predict_task(joined, "qqp", data[1], progress=False)["scores"]
    ) / 2
    np.testing.assert_allclose(result["scores"], mean, atol=1e-6)


def test_task_logits_follow_the_dataset_order(model, tokenize, tokenizer):
    member = model(LINEAR, seed=1)
    dataset = tokenize("sst", LINEAR["sst"])
    logits = task_logits(member, "sst", dataset, batch_size=3, pad_token_id=tokenizer.pad_token_id, progress=False)
    torch.testing.assert_close(logits, row_logits(member, "sst", dataset, tokenizer), atol=1e-5, rtol=0)
    predictions, _ = combine_logits(member.config.tasks["sst"], [logits])
    np.testing.assert_array_equal(predictions, predict_task(member, "sst", dataset, progress=False)["predictions"])


def test_incompatible_members_are_refused(model):
    base = model(LINEAR)
    with pytest.raises(MultitaskConfigError, match=r"same tasks.*has sst, qqp, sts but model 1 has sst, qqp"):
        check_compatible([base.config, model({"sst": {}, "qqp": {}}).config])
    with pytest.raises(MultitaskConfigError, match="'qqp' has a classifier head in model 0 but a cosine head"):
        check_compatible([base.config, model({**LINEAR, "qqp": COSINE["qqp"]}).config])
    with pytest.raises(MultitaskConfigError, match="'sst' has 5 labels in model 0 but 3"):
        check_compatible([base.config, model({**LINEAR, "sst": {"num_labels": 3, "label_names": list("abc")}}).config])
    custom = {"mine": {"kind": "sentence_classification"}}
    with pytest.raises(MultitaskConfigError, match="task 'mine' is sentence_classification in model 0 but pair_regr"):
        check_compatible([model(custom).config, model({"mine": {"kind": "pair_regression"}}).config])
    with pytest.raises(MultitaskConfigError, match="same tasks"):
        ensemble_predict_task([base, model({"sst": {}})], "sst", None, progress=False)
    # a cosine STS head and a linear one both predict scores: they may be averaged
    check_compatible([base.config, model(COSINE | {"qqp": LINEAR["qqp"]}).config])


# ----------------------------------------------------------------------------------------------------------------
# Saved models: predict_ensemble and examples/predict.py
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """The first 24 rows of the real minBERT dev and test files (train files are not read)."""
    from conftest import SHARED_DATA_DIR

    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"the shared minBERT data folder {SHARED_DATA_DIR} is not available")
    path = tmp_path_factory.mktemp("data")
    for source in SHARED_DATA_DIR.glob("*.csv"):
        if "train" in source.name:
            continue
        with open(source, encoding="utf-8") as handle:
            lines = [line for _, line in zip(range(25), handle)]
        (path / source.name).write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def saved(tokenizer, tmp_path_factory):
    """Saved tiny models with the MiniLM tokenizer: ``linear`` and ``cosine`` (different heads and layouts)."""
    from conftest import save_tiny_model

    root = tmp_path_factory.mktemp("models")
    out = {}
    for seed, (name, tasks) in enumerate([("linear", LINEAR), ("cosine", COSINE | {"qqp": JOINED["qqp"]})]):
        save_tiny_model(root / name, tasks, tokenizer, seed=seed)
        out[name] = root / name
    return out


def read_predictions(path: Path) -> tuple[str, list[str], list[float]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [line.split(" , ") for line in lines[1:]]
    return lines[0], [r[0] for r in rows], [float(r[1]) for r in rows]


def test_predict_ensemble_writes_the_leaderboard_files_and_dev_metrics(saved, small_data, tmp_path, tokenizer):
    from mtbert import MultitaskBertModel
    from mtbert.cli.arguments import DataArguments
    from mtbert.cli.run import load_tokenized

    data_args = DataArguments(data_source="minbert", data_dir=str(small_data), max_seq_length=32)
    paths = [str(saved["linear"]), str(saved["cosine"])]
    written, metrics = predict_ensemble(paths, data_args, str(tmp_path / "preds"), batch_size=7)
    names = sorted(Path(p).name for p in written)
    assert names == sorted(
        f"{prefix}-{split}-output.csv" for prefix in ("sst", "para", "sts") for split in ("dev", "test")
    )
    assert {
        "eval_sst_accuracy",
        "eval_qqp_accuracy",
        "eval_qqp_f1",
        "eval_sts_pearson",
        "eval_sts_spearman",
        "eval_average",
    } == set(metrics)
    assert metrics["eval_average"] == pytest.approx(
        np.mean([metrics["eval_sst_accuracy"], metrics["eval_qqp_accuracy"], metrics["eval_sts_pearson"]])
    )
    assert json.loads((tmp_path / "preds" / "ensemble_metrics.json").read_text()) == metrics

    # the files hold what ensemble_predict_task predicts from the loaded members, each reading its own layout
    models = [MultitaskBertModel.from_pretrained(p, dtype="float32") for p in paths]
    for task, prefix in (("sst", "sst"), ("qqp", "para"), ("sts", "sts")):
        member_data = [
            load_tokenized({task: m.config.tasks[task]}, data_args, tokenizer, splits=("dev",))[task]["dev"]
            for m in models
        ]
        expected = ensemble_predict_task(
            models, task, member_data, pad_token_id=tokenizer.pad_token_id, progress=False
        )
        header, ids, values = read_predictions(tmp_path / "preds" / f"{prefix}-dev-output.csv")
        assert header.startswith("id \t Predicted_")
        assert ids == member_data[0]["id"]
        np.testing.assert_allclose(values, expected["predictions"], atol=1e-5)
        labels = np.asarray(member_data[0]["label"])
        if task == "sst":
            assert metrics["eval_sst_accuracy"] == pytest.approx(np.mean(expected["predictions"] == labels))
        _, test_ids, _ = read_predictions(tmp_path / "preds" / f"{prefix}-test-output.csv")
        assert len(test_ids) == 24


def test_predict_script_with_two_models(saved, small_data, tmp_path, capsys):
    out = tmp_path / "ensemble"
    load_example_script("predict").main(
        [
            "--model",
            str(saved["linear"]),
            str(saved["cosine"]),
            "--data_dir",
            str(small_data),
            "--output_dir",
            str(out),
            "--max_seq_length",
            "32",
        ]
    )
    printed = capsys.readouterr().out
    assert len(list(out.glob("*-output.csv"))) == 6
    metrics = json.loads(printed[printed.index("{") :])
    assert metrics == json.loads((out / "ensemble_metrics.json").read_text())
    assert "eval_average" in metrics
    # one model: the single-model path, unchanged (no ensemble metrics)
    single = tmp_path / "single"
    load_example_script("predict").main(
        [
            "--model",
            str(saved["linear"]),
            "--data_dir",
            str(small_data),
            "--output_dir",
            str(single),
            "--max_seq_length",
            "32",
        ]
    )
    assert len(list(single.glob("*-output.csv"))) == 6 and not (single / "ensemble_metrics.json").exists()


def test_predict_script_refuses_incompatible_models_before_loading_weights(
    saved, small_data, tmp_path, capsys, monkeypatch, tokenizer
):
    from mtbert import MultitaskBertConfig, MultitaskBertModel

    from conftest import tiny_bert_config

    other = tmp_path / "sst_only"
    config = MultitaskBertConfig(encoder=tiny_bert_config(tokenizer.vocab_size).to_dict(), tasks={"sst": {}})
    MultitaskBertModel(config).save_pretrained(other)
    tokenizer.save_pretrained(other)
    loads = []
    monkeypatch.setattr(MultitaskBertModel, "from_pretrained", lambda *a, **k: loads.append(a) or 1 / 0)

    def run(*models):
        with pytest.raises(SystemExit) as exit_info:
            load_example_script("predict").main(
                ["--model", *map(str, models), "--data_dir", str(small_data), "--output_dir", str(tmp_path / "o")]
            )
        assert exit_info.value.code == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    line = run(saved["linear"], other)
    assert line.startswith("mtbert: error: ensemble members must have the same tasks") and "sst_only" in line
    assert "nope" in run(saved["linear"], tmp_path / "nope")
    assert not loads and not (tmp_path / "o").exists()


def test_members_with_another_tokenizer_are_refused(saved, small_data, tmp_path, tokenizer):
    import shutil

    from transformers import BertTokenizerFast

    from mtbert.cli.arguments import DataArguments

    other = tmp_path / "other_vocab"
    shutil.copytree(saved["linear"], other)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (other / name).unlink(missing_ok=True)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(other)
    data_args = DataArguments(data_source="minbert", data_dir=str(small_data))
    with pytest.raises(MultitaskConfigError, match="uses another tokenizer"):
        predict_ensemble([str(saved["linear"]), str(other)], data_args, str(tmp_path / "o"))
