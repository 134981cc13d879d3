"""Hyperparameter search (model_init + Optuna, two trials on a tiny model) and TensorBoard tracking (the event file
read back: per-task losses, per-task dev metrics, learning rates per parameter group, task weights, telemetry)."""

from __future__ import annotations

import csv
import glob
import os
import pathlib

import pytest
import torch

from mtbert.training.trainer import MultitaskTrainer
from mtbert.training.training_args import MultitaskTrainingArguments

from random_tasks import make_data, make_model


def arguments(tmp_path, **kwargs):
    settings = dict(
        output_dir=str(tmp_path / "out"),
        strategy="sum",
        per_device_train_batch_size=8,
        use_cpu=True,
        seed=3,
        max_steps=2,
        disable_tqdm=True,
        save_strategy="no",
        logging_steps=1,
        report_to="none",
    )
    settings.update(kwargs)
    return MultitaskTrainingArguments(**settings)


def test_model_init_is_accepted_and_called_again_for_each_train(tokenizer, tmp_path):
    built = []

    def model_init():
        built.append(make_model(tokenizer))
        return built[-1]

    data = make_data(tokenizer, make_model(tokenizer))
    trainer = MultitaskTrainer(model_init=model_init, args=arguments(tmp_path), train_dataset=data)
    trainer.train()
    assert len(built) >= 2 and trainer.model is built[-1]  # the stock Trainer builds it again in train()
    with pytest.raises(ValueError, match="not both"):
        MultitaskTrainer(model=make_model(tokenizer), model_init=model_init, args=arguments(tmp_path))
    with pytest.raises(ValueError, match="model= or model_init="):
        MultitaskTrainer(args=arguments(tmp_path))


def test_hyperparameter_search_runs_two_optuna_trials(tokenizer, tmp_path):
    pytest.importorskip("optuna")
    from mtbert.cli.search import SearchRecorder, multitask_search_space

    data = make_data(tokenizer, make_model(tokenizer))
    trainer = MultitaskTrainer(
        model_init=lambda trial: make_model(tokenizer), args=arguments(tmp_path), train_dataset=data,
        eval_dataset=data,
    )  # fmt: skip
    recorder = SearchRecorder(trainer)
    best = trainer.hyperparameter_search(
        hp_space=multitask_search_space(task_weighting=["uncertainty", "famo"]), n_trials=2, backend="optuna",
        compute_objective=recorder.objective, direction="maximize",
    )  # fmt: skip
    assert len(recorder.rows) == 2
    assert best.objective == max(row["eval_average"] for row in recorder.rows)
    assert set(best.hyperparameters) == {
        "learning_rate",
        "head_learning_rate",
        "sampling_temperature",
        "task_weighting",
    }
    csv_path, md_path = recorder.write(str(tmp_path / "out"))
    rows = list(csv.DictReader(pathlib.Path(csv_path).read_text().splitlines()))
    assert len(rows) == 2 and {"trial", "learning_rate", "task_weighting", "eval_average"} <= set(rows[0])
    assert "| trial |" in pathlib.Path(md_path).read_text()


def test_hyperparameter_search_defaults_to_eval_average(tokenizer, tmp_path):
    pytest.importorskip("optuna")
    data = make_data(tokenizer, make_model(tokenizer))
    trainer = MultitaskTrainer(
        model_init=lambda: make_model(tokenizer),
        args=arguments(tmp_path, max_steps=1),
        train_dataset=data,
        eval_dataset=data,
    )
    best = trainer.hyperparameter_search(n_trials=1, backend="optuna")
    assert {"learning_rate", "task_weighting"} <= set(best.hyperparameters)
    assert 0.0 <= best.objective <= 1.0 or best.objective == pytest.approx(best.objective)


def test_tensorboard_gets_every_curve_by_name(tokenizer, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = make_model(tokenizer)
    data = make_data(tokenizer, model)
    args = arguments(
        tmp_path,
        strategy="pcgrad",
        report_to="tensorboard",
        head_learning_rate=1e-3,
        learning_rate=1e-4,
        gradient_telemetry=True,
        task_weighting="uncertainty",
        eval_strategy="steps",
        eval_steps=2,
        max_steps=2,
    )
    trainer = MultitaskTrainer(model=model, args=args, train_dataset=data, eval_dataset=data)
    trainer.train()
    trainer.callback_handler.on_train_end(args, trainer.state, trainer.control)  # flushes the writer
    files = glob.glob(os.path.join(args.output_dir, "**", "events.out.tfevents*"), recursive=True)
    assert files, "no TensorBoard event file"
    tags = set()
    for path in files:
        events = EventAccumulator(path)
        events.Reload()
        tags |= set(events.Tags()["scalars"])
    expected = {
        "train/loss",
        "train/loss_sst",
        "train/loss_qqp",
        "train/loss_sts",  # per-task training losses
        "eval/sst_accuracy",
        "eval/qqp_accuracy",
        "eval/sts_pearson",
        "eval/average",  # per-task dev metrics
        "train/learning_rate_encoder",
        "train/learning_rate_heads",  # learning rate per parameter group
        "train/task_weight_sst",
        "train/task_weight_sts",  # the learned weighting
        "train/grad_conflict_fraction",
        "train/grad_cos_sst_qqp",
        "train/grad_norm_sts",  # gradient telemetry
        "train/pcgrad_projections",
    }
    assert expected <= tags, f"missing: {sorted(expected - tags)}"
    events = EventAccumulator(files[0])
    events.Reload()
    heads = [e.value for e in events.Scalars("train/learning_rate_heads")]
    encoder = [e.value for e in events.Scalars("train/learning_rate_encoder")]
    assert heads[0] == pytest.approx(1e-3 * heads[0] / 1e-3) and heads[0] > encoder[0] > 0
    assert torch.isfinite(torch.tensor([e.value for e in events.Scalars("train/loss_sts")])).all()


def test_search_example_runs_two_trials_and_writes_the_table(tiny_backbone, small_minbert, tmp_path):
    """examples/search.py over train.py's settings: 2 Optuna trials on the tiny backbone, the results table saved."""
    pytest.importorskip("optuna")
    from conftest import run_example_script
    from train_runs import base_args

    out = tmp_path / "search"
    args = base_args(tiny_backbone, small_minbert, out, "sum", batch=8, max_steps=3)
    result = run_example_script("search", [*args, "--n_trials", "2", "--weightings", "uncertainty,famo"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = list(csv.DictReader((out / "search_results.csv").read_text().splitlines()))
    assert len(rows) == 2 and {r["task_weighting"] for r in rows} <= {"uncertainty", "famo"}
    assert all(0.0 <= float(r["eval_average"]) <= 1.0 for r in rows)
    assert "best trial" in result.stdout + result.stderr
    assert "eval_average" in (out / "search_results.md").read_text()


def test_search_example_refuses_bad_search_flags_in_one_line(tiny_backbone, small_minbert, tmp_path):
    pytest.importorskip("optuna")
    from conftest import run_example_script
    from train_runs import base_args

    args = base_args(tiny_backbone, small_minbert, tmp_path / "s", "round_robin", batch=8)
    result = run_example_script("search", [*args, "--weightings", "famo"])
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "mtbert: error: --weightings: famo needs strategy sum or pcgrad, not round_robin"
    ]
