"""MultitaskTrainer has the stock Trainer's API: datasets by task, evaluate/predict on one task or a dict,
compute_metrics per task, plain TrainingArguments, and stock flags honoured or refused."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from test_trainer import RAW, TASKS, tokenized
from transformers import EvalPrediction, TrainingArguments
from transformers.trainer_utils import PredictionOutput

import mtbert
from mtbert import MultitaskConfigError
from mtbert.models.mtbert.configuration_mtbert import normalize_task_spec
from mtbert.training.trainer import MultitaskTrainer
from mtbert.training.training_args import MultitaskTrainingArguments


@pytest.fixture(scope="module")
def data(tokenizer):
    datasets.disable_progress_bars()
    specs = {task: normalize_task_spec(task, spec) for task, spec in TASKS.items()}
    return tokenized(tokenizer, specs)


def stock_args(tmp_path, **kwargs):
    return TrainingArguments(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        use_cpu=True,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=4,
        disable_tqdm=True,
        seed=0,
        save_strategy="no",
        **kwargs,
    )


@pytest.fixture
def trainer(make_model, tokenizer, data, tmp_path):
    model = make_model(TASKS, vocab_size=tokenizer.vocab_size)
    return MultitaskTrainer(
        model, stock_args(tmp_path), train_dataset=data, eval_dataset=data, processing_class=tokenizer
    )


def test_a_plain_training_arguments_gets_the_multitask_defaults(trainer):
    assert isinstance(trainer.args, MultitaskTrainingArguments)
    assert trainer.args.strategy == "round_robin" and trainer.args.per_device_eval_batch_size == 4
    assert trainer.args.output_dir.endswith("out")


def test_evaluate_one_task_by_dataset_or_by_name(trainer, data):
    every = trainer.evaluate()
    one = trainer.evaluate(eval_dataset=data["sst"], task="sst")
    assert one["eval_sst_accuracy"] == pytest.approx(every["eval_sst_accuracy"])
    assert one["eval_average"] == pytest.approx(one["eval_sst_accuracy"])
    assert not any(k.startswith(("eval_qqp", "eval_sts")) for k in one)
    assert "eval_sst_loss" in one and np.isfinite(one["eval_sst_loss"])
    by_name = trainer.evaluate(task="sts")
    assert by_name["eval_sts_pearson"] == pytest.approx(every["eval_sts_pearson"])
    with pytest.raises(ValueError, match="name its task"):
        trainer.evaluate(eval_dataset=data["sst"])
    with pytest.raises(ValueError, match="unknown task 'nli'"):
        trainer.evaluate(eval_dataset=data["sst"], task="nli")


def test_compute_metrics_is_called_per_task_in_dataset_order(make_model, tokenizer, data, tmp_path):
    seen = {}

    def compute_metrics(prediction: EvalPrediction, task):
        seen[task] = prediction
        return {"rows": len(prediction.label_ids)}

    model = make_model(TASKS, vocab_size=tokenizer.vocab_size)
    trainer = MultitaskTrainer(
        model, stock_args(tmp_path), eval_dataset=data, processing_class=tokenizer, compute_metrics=compute_metrics
    )
    metrics = trainer.evaluate()
    assert metrics["eval_sst_rows"] == 8 and metrics["eval_qqp_rows"] == 6 and metrics["eval_sts_rows"] == 6
    assert {"eval_sst_accuracy", "eval_average"} <= set(metrics)  # mtbert's own metrics stay
    np.testing.assert_array_equal(seen["sst"].label_ids, RAW["sst"]["label"])  # dataset order, not length order
    np.testing.assert_allclose(seen["sts"].label_ids, RAW["sts"]["label"], rtol=1e-6)
    assert seen["sst"].predictions.shape == (8, 5)  # raw logits, as the stock Trainer passes them
    model.eval()
    batch = trainer.get_task_eval_dataloader("sst", data["sst"].select([3]))[0]
    with torch.no_grad():
        logits = model(**{k: v for k, v in next(iter(batch)).items() if k != "task"}, task="sst").logits
    np.testing.assert_allclose(seen["sst"].predictions[3], logits[0].numpy(), rtol=1e-4, atol=1e-5)


def test_predict_returns_the_stock_prediction_output(trainer, data):
    output = trainer.predict(data["sts"], task="sts")
    assert isinstance(output, PredictionOutput)
    assert output.predictions.shape == (6,)
    np.testing.assert_allclose(output.label_ids, RAW["sts"]["label"], rtol=1e-6)
    assert {"test_sts_pearson", "test_sts_loss", "test_runtime"} <= set(output.metrics)
    unlabelled = data["sst"].remove_columns("label")
    by_task = trainer.predict({"sst": unlabelled, "qqp": data["qqp"]})
    assert set(by_task) == {"sst", "qqp"}
    assert by_task["sst"].label_ids is None and by_task["sst"].predictions.shape == (8, 5)
    assert "test_qqp_accuracy" in by_task["qqp"].metrics
    labels, _ = trainer.model.postprocess("qqp", torch.as_tensor(by_task["qqp"].predictions))
    assert by_task["qqp"].metrics["test_qqp_accuracy"] == pytest.approx(
        float(np.mean(labels.numpy() == np.array(RAW["qqp"]["label"])))
    )


def test_the_deprecated_dataset_names_still_work(make_model, tokenizer, data, tmp_path):
    model = make_model(TASKS, vocab_size=tokenizer.vocab_size)
    with pytest.warns(FutureWarning, match="train_dataset="):
        trainer = MultitaskTrainer(model, stock_args(tmp_path), train_datasets=data, eval_datasets=data)
    assert set(trainer.eval_dataset) == {"sst", "qqp", "sts"} and len(trainer.train_dataset) == 8 + 6 + 6


def test_stock_flags_refused_with_what_to_do(tmp_path):
    cases = {
        "label_smoothing_factor": (0.1, "tasks.<task>.label_smoothing"),
        "train_sampling_strategy": ("sequential", "'random' \\(default\\) or 'group_by_length'"),
        "dataloader_drop_last": (True, "dataloader_drop_last is not supported"),
        "include_for_metrics": (["inputs"], "include_for_metrics is not supported"),
    }
    for flag, (value, message) in cases.items():
        with pytest.raises(MultitaskConfigError, match=message):
            MultitaskTrainingArguments(output_dir=str(tmp_path), **{flag: value})
    with pytest.raises(MultitaskConfigError, match="label_smoothing"):  # also through a plain TrainingArguments
        MultitaskTrainingArguments.from_training_args(stock_args(tmp_path, label_smoothing_factor=0.1))


def test_group_by_length_is_the_stock_train_sampling_strategy(tmp_path):
    stock = MultitaskTrainingArguments(output_dir=str(tmp_path), train_sampling_strategy="group_by_length")
    alias = MultitaskTrainingArguments(output_dir=str(tmp_path), group_by_length=True)
    assert stock.group_by_length and alias.train_sampling_strategy == "group_by_length"
    assert not MultitaskTrainingArguments(output_dir=str(tmp_path)).group_by_length


@pytest.mark.parametrize(
    "flags,phases",
    [
        ({}, (True, True, True)),
        ({"do_eval": True}, (False, True, False)),
        ({"do_train": True}, (True, False, False)),
        ({"do_train": True, "do_predict": True}, (True, False, True)),
        ({"eval_strategy": "epoch"}, (True, True, True)),  # do_eval switched on by eval_strategy names no phase
        ({"eval_only": True}, (False, True, True)),
    ],
)
def test_run_phases_follow_run_glue(tmp_path, flags, phases):
    assert MultitaskTrainingArguments(output_dir=str(tmp_path), **flags).run_phases() == phases


def test_prepare_dataset_from_plain_columns_trains_and_evaluates(make_model, tokenizer, tmp_path):
    model = make_model(
        {
            "nli": {
                "kind": "pair_classification",
                "num_labels": 3,
                "pair_encoding": "concat_sep",
                "label_names": ["entailment", "neutral", "contradiction"],
            },
            "sst": {},
        },
        vocab_size=tokenizer.vocab_size,
    )
    raw = datasets.Dataset.from_dict(
        {
            "premise": ["a man sings", "a dog runs", "two cats", "kids play"],
            "hypothesis": ["someone sings", "a cat sleeps", "animals", "nobody plays"],
            "gold": ["entailment", "neutral", "entailment", "contradiction"],
        }
    )
    nli = mtbert.prepare_dataset(
        raw,
        tokenizer,
        model.config,
        "nli",
        max_length=16,
        text_column="premise",
        text_pair_column="hypothesis",
        label_column="gold",
    )
    assert nli["label"] == [0, 1, 0, 2] and "input_ids" in nli.column_names
    sst = mtbert.prepare_dataset(
        datasets.Dataset.from_dict({"sentence": ["good", "bad"], "label": [4, 0]}),
        tokenizer,
        model.config,
        "sst",
        text_column="sentence",
    )
    with pytest.raises(ValueError, match="text_pair_column"):
        mtbert.prepare_dataset(raw, tokenizer, model.config, "nli", text_column="premise")
    with pytest.raises(ValueError, match="not among its label_names"):
        mtbert.prepare_dataset(
            raw.map(lambda r: {"gold": "maybe"}),
            tokenizer,
            model.config,
            "nli",
            text_column="premise",
            text_pair_column="hypothesis",
            label_column="gold",
        )
    trainer = MultitaskTrainer(
        model,
        stock_args(tmp_path, max_steps=2),
        train_dataset={"nli": nli, "sst": sst},
        eval_dataset={"nli": nli},
        processing_class=tokenizer,
    )
    trainer.train()
    metrics = trainer.evaluate()
    assert {"eval_nli_accuracy", "eval_nli_f1", "eval_average"} <= set(metrics)


@pytest.mark.parametrize("strategy", ["sum", "pcgrad"])
def test_gradient_telemetry_is_logged_and_leaves_training_unchanged(make_model, tokenizer, data, tmp_path, strategy):
    weights = []
    for telemetry in (False, True):
        model = make_model(TASKS, vocab_size=tokenizer.vocab_size)
        args = MultitaskTrainingArguments(
            output_dir=str(tmp_path / str(telemetry)),
            report_to="none",
            use_cpu=True,
            per_device_train_batch_size=2,
            disable_tqdm=True,
            seed=0,
            save_strategy="no",
            max_steps=2,
            logging_steps=1,
            learning_rate=1e-3,
            strategy=strategy,
            gradient_telemetry=telemetry,
        )
        trainer = MultitaskTrainer(model, args, train_dataset=data, processing_class=tokenizer)
        trainer.train()
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert len(logs) == 2
    for entry in logs:
        assert -1.0 <= entry["grad_cos_sst_qqp"] <= 1.0 and entry["grad_norm_sts"] > 0
        assert ("pcgrad_projections" in entry) == (strategy == "pcgrad")
