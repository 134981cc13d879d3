"""Unit tests of MultitaskTrainer on a tiny random model and a handful of in-memory tokenized rows."""

from __future__ import annotations

import math

import datasets
import numpy as np
import pytest
import torch
from scipy import stats

from mtbert.data import tokenize_task
from mtbert.data.collators import MODEL_COLUMNS, TaskCollator
from mtbert.models.mtbert.configuration_mtbert import normalize_task_spec
from mtbert.training.optimization import parameter_learning_rates
from mtbert.training.trainer import MultitaskTrainer
from mtbert.training.training_args import MultitaskTrainingArguments

from conftest import TOY_ROWS, toy_dataset

TASKS = {
    "sst": {"classifier_dropout": 0.0},
    "qqp": {"classifier_dropout": 0.0},
    "sts": {"classifier_dropout": 0.0},
}

RAW = TOY_ROWS


def tokenized(tokenizer, specs, tasks=None):
    out = {}
    for task in tasks or RAW:
        out[task] = tokenize_task(toy_dataset(task, RAW[task]), tokenizer, specs[task], max_length=16)
    return out


@pytest.fixture(scope="module")
def tokenized_data(tokenizer):
    """Every task's rows tokenized once for the module (``datasets.map`` hashes the tokenizer: slow to repeat)."""
    datasets.disable_progress_bars()
    try:
        specs = {task: normalize_task_spec(task, spec) for task, spec in TASKS.items()}
        yield tokenized(tokenizer, specs)
    finally:
        datasets.enable_progress_bars()


@pytest.fixture
def setup(make_model, tokenizer, tokenized_data, tmp_path):
    """``setup(strategy="round_robin", shared_encoder=True, tasks=TASKS, **args)`` → ``(trainer, model, data)``."""

    def factory(strategy="round_robin", shared_encoder=True, tasks=TASKS, batch_size=2, **kwargs):
        model = make_model(tasks, shared_encoder=shared_encoder, vocab_size=tokenizer.vocab_size)
        data = {task: tokenized_data[task] for task in tasks}
        args = MultitaskTrainingArguments(
            output_dir=str(tmp_path / "out"),
            report_to="none",
            use_cpu=True,
            strategy=strategy,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=4,
            disable_tqdm=True,
            seed=0,
            **{"save_strategy": "no", **kwargs},
        )
        trainer = MultitaskTrainer(
            model=model, args=args, train_dataset=data, eval_dataset=data, processing_class=tokenizer
        )
        trainer.current_gradient_accumulation_steps = 1  # set by the training loop before each step
        return trainer, model, data

    return factory


def first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def has_grad(module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


# ----------------------------------------------------------------------------------------------------------------
# Which parameters a step trains
# ----------------------------------------------------------------------------------------------------------------


def test_round_robin_step_trains_one_head_and_the_encoder(setup):
    trainer, model, _ = setup("round_robin")
    batch = first_batch(trainer)
    assert list(batch) == ["sst"]  # round robin starts with the first task
    assert batch["sst"]["input_ids"].shape[0] == 2
    model.zero_grad(set_to_none=True)
    loss = trainer.training_step(model, batch)
    assert torch.isfinite(loss) and loss > 0
    assert has_grad(model.encoder)
    assert has_grad(model.heads["sst"])
    for other in ("qqp", "sts"):
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.heads[other].parameters())


def test_round_robin_batches_cycle_through_tasks(setup):
    trainer, _, _ = setup("round_robin")
    tasks = [list(batch) for batch in trainer.get_train_dataloader()]
    assert tasks[:3] == [["sst"], ["qqp"], ["sts"]]
    assert len(tasks) == 4 + 3 + 3


def test_sum_step_trains_every_head(setup):
    trainer, model, _ = setup("sum")
    batch = first_batch(trainer)
    assert list(batch) == ["sst", "qqp", "sts"]
    model.zero_grad(set_to_none=True)
    trainer.training_step(model, batch)
    assert has_grad(model.encoder)
    for task in ("sst", "qqp", "sts"):
        assert has_grad(model.heads[task]), task
    assert len(trainer.get_train_dataloader()) == 4  # the largest task's batches


def test_unshared_round_robin_trains_only_that_tasks_encoder(setup):
    trainer, model, _ = setup("round_robin", shared_encoder=False)
    loader = iter(trainer.get_train_dataloader())
    next(loader)
    batch = next(loader)
    assert list(batch) == ["qqp"]
    model.zero_grad(set_to_none=True)
    trainer.training_step(model, batch)
    assert has_grad(model.encoders["qqp"]) and has_grad(model.heads["qqp"])
    for other in ("sst", "sts"):
        assert all(p.grad is None for p in model.encoders[other].parameters()), other
        assert all(p.grad is None for p in model.heads[other].parameters()), other


def test_sum_gradient_equals_sum_of_task_gradients(setup):
    trainer, model, _ = setup("sum")
    batch = first_batch(trainer)
    model.zero_grad(set_to_none=True)
    loss = trainer.training_step(model, batch)
    summed = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.train()
    by_hand = {}
    losses = []
    for task, task_batch in batch.items():
        model.zero_grad(set_to_none=True)
        task_loss = model(task=task, **task_batch).loss
        task_loss.backward()
        losses.append(task_loss.detach())
        for n, p in model.named_parameters():
            if p.grad is not None:
                by_hand[n] = by_hand.get(n, 0) + p.grad
    torch.testing.assert_close(loss, torch.stack(losses).sum())
    assert set(summed) == set(by_hand)
    assert any(n.startswith("heads.sts") for n in summed)
    for name in summed:
        torch.testing.assert_close(summed[name], by_hand[name], atol=1e-6, rtol=1e-5, msg=name)


def test_gradient_accumulation_divides_the_loss(setup):
    trainer, model, _ = setup("round_robin")
    batch = first_batch(trainer)
    model.zero_grad(set_to_none=True)
    full = trainer.training_step(model, batch)
    grad = model.heads["sst"].out_proj.weight.grad.clone()
    trainer.current_gradient_accumulation_steps = 4
    model.zero_grad(set_to_none=True)
    quarter = trainer.training_step(model, batch)
    torch.testing.assert_close(quarter, full / 4)
    torch.testing.assert_close(model.heads["sst"].out_proj.weight.grad, grad / 4)


def test_training_data_for_an_unknown_task_is_refused(make_model, tokenizer, tokenized_data, tmp_path):
    model = make_model(["sst"], vocab_size=tokenizer.vocab_size)
    args = MultitaskTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="sts"):
        MultitaskTrainer(
            model=model, args=args, train_dataset={"sst": tokenized_data["sst"], "sts": tokenized_data["sts"]}
        )


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------


def predictions_by_hand(model, task, dataset, pad_token_id):
    model.eval()
    columns = [c for c in MODEL_COLUMNS if c in dataset.column_names]
    rows = [{c: dataset[i][c] for c in columns} for i in range(len(dataset))]
    with torch.no_grad():
        logits = model(task=task, **TaskCollator(pad_token_id)(rows)).logits
    return model.postprocess(task, logits)[0].double().numpy()


def test_evaluate_reports_every_task_and_the_average(setup, tokenizer):
    trainer, model, data = setup("round_robin")
    metrics = trainer.evaluate()
    expected_keys = {
        "eval_sst_accuracy",
        "eval_qqp_accuracy",
        "eval_qqp_f1",
        "eval_sts_pearson",
        "eval_sts_spearman",
        "eval_average",
        "eval_runtime",
    }
    assert expected_keys <= set(metrics)
    sst = predictions_by_hand(model, "sst", data["sst"], tokenizer.pad_token_id)
    qqp = predictions_by_hand(model, "qqp", data["qqp"], tokenizer.pad_token_id)
    sts = predictions_by_hand(model, "sts", data["sts"], tokenizer.pad_token_id)
    sst_acc = float(np.mean(sst == np.array(RAW["sst"]["label"])))
    qqp_acc = float(np.mean(qqp == np.array(RAW["qqp"]["label"])))
    pearson = float(stats.pearsonr(sts, np.array(data["sts"]["label"], dtype=np.float64))[0])
    assert metrics["eval_sst_accuracy"] == pytest.approx(sst_acc)
    assert metrics["eval_qqp_accuracy"] == pytest.approx(qqp_acc)
    assert metrics["eval_sts_pearson"] == pytest.approx(pearson, abs=1e-4)
    assert metrics["eval_average"] == pytest.approx((sst_acc + qqp_acc + pearson) / 3, abs=1e-4)
    assert trainer.state.log_history[-1]["eval_average"] == pytest.approx(metrics["eval_average"])


def test_evaluate_with_explicit_datasets_and_prefix(setup):
    trainer, _, data = setup("round_robin")
    metrics = trainer.evaluate({"sst": data["sst"]}, metric_key_prefix="test")
    assert metrics["test_average"] == pytest.approx(metrics["test_sst_accuracy"])
    assert not any(k.startswith("test_qqp") for k in metrics)


# ----------------------------------------------------------------------------------------------------------------
# Training loop and per-task loss logging
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["round_robin", "sum"])
def test_short_training_logs_per_task_losses(setup, strategy):
    trainer, model, _ = setup(strategy, max_steps=6, logging_steps=2, learning_rate=1e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = trainer.train()
    assert trainer.state.global_step == 6
    assert math.isfinite(result.training_loss)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 3
    seen = set()
    for entry in logs:
        task_losses = {k[len("loss_") :]: v for k, v in entry.items() if k.startswith("loss_")}
        assert task_losses and all(math.isfinite(v) and v > 0 for v in task_losses.values())
        seen |= set(task_losses)
        if strategy == "round_robin":
            # two steps, one task each: the logged loss is the mean of the two steps' losses
            assert len(task_losses) == 2
            assert entry["loss"] == pytest.approx(sum(task_losses.values()) / 2, rel=2e-3, abs=2e-3)
        else:
            # every step sums every task's loss
            assert set(task_losses) == {"sst", "qqp", "sts"}
            assert entry["loss"] == pytest.approx(sum(task_losses.values()), rel=2e-3, abs=2e-3)
    assert seen == {"sst", "qqp", "sts"}
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert any(n.startswith("encoder.") for n in changed)
    assert {n.split(".")[1] for n in changed if n.startswith("heads.")} == {"sst", "qqp", "sts"}


def test_dual_heads_train_and_evaluate_through_the_trainer(make_model, tokenizer, tmp_path):
    """A dual head's rows carry the joined pair and the two sentences; the sampler, collator, training step and
    evaluation all pass both on, and every part of the head learns."""
    tasks = {
        "qqp": {"pair_encoding": "dual", "classifier_dropout": 0.0},
        "sts": {"pair_encoding": "dual", "pooling": "mean", "classifier_dropout": 0.0},
    }
    data = tokenized(tokenizer, {t: normalize_task_spec(t, s) for t, s in tasks.items()}, tasks=list(tasks))
    model = make_model(tasks, vocab_size=tokenizer.vocab_size)
    args = MultitaskTrainingArguments(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        use_cpu=True,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=4,
        disable_tqdm=True,
        seed=0,
        save_strategy="no",
        max_steps=6,
        learning_rate=1e-3,
    )
    trainer = MultitaskTrainer(
        model=model, args=args, train_dataset=data, eval_dataset=data, processing_class=tokenizer
    )
    batch = next(iter(trainer.get_train_dataloader()))
    for task_batch in batch.values():
        assert task_batch["pair_input_ids"].shape[:2] == (2, 2) and task_batch["input_ids"].dim() == 2
    # total_flos counts both encoder passes: the joined pair and the two sentences on their own
    tokens = sum(b["input_ids"].numel() + b["pair_input_ids"].numel() for b in batch.values())
    assert trainer.floating_point_ops(batch) == 6 * tokens * model.num_parameters(exclude_embeddings=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert {
        "heads.qqp.cross.out_proj.weight",
        "heads.qqp.cosine.scale",
        "heads.qqp.cosine.threshold",
        "heads.sts.cross.out_proj.weight",
    } <= changed
    metrics = trainer.evaluate()
    qqp = predictions_by_hand(model, "qqp", data["qqp"], tokenizer.pad_token_id)
    sts = predictions_by_hand(model, "sts", data["sts"], tokenizer.pad_token_id)
    assert metrics["eval_qqp_accuracy"] == pytest.approx(float(np.mean(qqp == np.array(RAW["qqp"]["label"]))))
    pearson = float(stats.pearsonr(sts, np.array(data["sts"]["label"], dtype=np.float64))[0])
    assert metrics["eval_sts_pearson"] == pytest.approx(pearson, abs=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# Learning rates per parameter group, early stopping
# ----------------------------------------------------------------------------------------------------------------


def test_the_optimizer_gets_one_group_per_rate(setup):
    trainer, model, _ = setup(layerwise_lr_decay=0.5, head_learning_rate=1e-3, learning_rate=1e-4)
    optimizer = trainer.create_optimizer()
    rates = parameter_learning_rates(model, 1e-4, 1e-3, 0.5)
    by_param = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    for name, param in model.named_parameters():
        assert by_param[id(param)] == pytest.approx(rates[name]), name
    assert {round(g["lr"], 12) for g in optimizer.param_groups} == {1e-3, 1e-4, 5e-5, 2.5e-5}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    no_decay = [g for g in optimizer.param_groups if g["weight_decay"] == 0.0]
    assert no_decay, "biases and LayerNorm weights keep weight decay 0"


def test_early_stopping_ends_training_when_the_dev_average_stalls(setup):
    """With a learning rate of 0 the dev average never improves: patience 1 stops after the second evaluation."""
    trainer, _, _ = setup(
        learning_rate=0.0,
        num_train_epochs=6,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="average",
        early_stopping_patience=1,
    )
    trainer.train()
    evaluations = [log for log in trainer.state.log_history if "eval_average" in log]
    assert len(evaluations) == 2
    assert trainer.state.epoch == pytest.approx(2.0)


def test_checkpoint_averaging_is_part_of_the_trainer(setup):
    """average_checkpoints 2 works for library users of MultitaskTrainer too: after train() the model holds the mean
    of the last two complete checkpoints' weights, and the metrics say how many were averaged."""
    from safetensors.torch import load_file

    from mtbert.inference.averaging import find_checkpoints

    trainer, model, _ = setup(
        learning_rate=1e-3, num_train_epochs=3, save_strategy="epoch", save_total_limit=3, average_checkpoints=2
    )
    trainer.train()
    assert trainer.averaged_checkpoints == 2
    assert trainer.state.log_history[-1]["averaged_checkpoints"] == 2
    last_two = [load_file(f"{c}/model.safetensors") for c in find_checkpoints(trainer.args.output_dir)[-2:]]
    for name in ("encoder.encoder.layer.0.attention.self.query.weight", "heads.sst.out_proj.weight"):
        assert not torch.equal(last_two[0][name], last_two[1][name])
        torch.testing.assert_close(model.state_dict()[name], (last_two[0][name] + last_two[1][name]) / 2)
