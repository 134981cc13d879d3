"""One PCGrad step of MultitaskTrainer against a manual reference: per-task gradients by autograd, projected in a
plain loop, summed; each head keeps its own task's gradient; bf16 autocast and gradient checkpointing agree."""

from __future__ import annotations

import pytest
import torch

from mtbert.training.aggregators import sample_pcgrad_permutations

from random_tasks import TASKS, first_batch, make_data, make_model, trainer_for


def loop_pcgrad(grads: list[torch.Tensor], permutations: torch.Tensor) -> torch.Tensor:
    """The published algorithm, written out on explicit vectors."""
    projected = []
    for i, g_i in enumerate(grads):
        g = g_i.clone()
        for j in permutations[i].tolist():
            dot = torch.dot(g, grads[j])
            if dot < 0:
                g = g - dot / grads[j].norm() ** 2 * grads[j]
        projected.append(g)
    return torch.stack(projected).sum(0)


CONFLICT_SEED = 2  # model and data seed whose first batch has conflicting task gradients (cosines -0.20, -0.20)


def pcgrad_step_and_reference(tokenizer, tmp_path):
    """One trainer step on conflicting task gradients, and what it should be: ``(trainer's encoder gradient,
    by-hand PCGrad, the plain sum, the task gradients, {task: head gradients}, {task: trainer's head gradients})``."""
    model = make_model(tokenizer, seed=CONFLICT_SEED)
    reference = make_model(tokenizer, seed=CONFLICT_SEED)
    data = make_data(tokenizer, model, seed=CONFLICT_SEED)
    trainer = trainer_for(model, data, tmp_path)
    batch = first_batch(trainer)
    trainer.accelerator.gradient_state._set_sync_gradients(True)
    trainer.current_gradient_accumulation_steps = 1
    trainer.training_step(model, batch)

    shared = [p for p in reference.encoder.parameters()]
    grads, head_grads = [], {}
    for task, inputs in batch.items():
        loss = reference(task=task, **inputs).loss
        params = shared + list(reference.heads[task].parameters())
        g = torch.autograd.grad(loss, params, allow_unused=True)
        grads.append(
            torch.cat(
                [(x if x is not None else torch.zeros_like(p)).reshape(-1) for x, p in zip(g[: len(shared)], shared)]
            ).double()
        )
        head_grads[task] = g[len(shared) :]
    generator = torch.Generator().manual_seed(3 * 1_000_003 + 0)
    permutations = sample_pcgrad_permutations(len(grads), generator)
    expected = loop_pcgrad(grads, permutations)
    got = torch.cat([p.grad.reshape(-1) for p in model.encoder.parameters()]).double()
    trainer_heads = {task: [p.grad for p in model.heads[task].parameters()] for task in batch}
    return got, expected, torch.stack(grads).sum(0), grads, head_grads, trainer_heads


def test_pcgrad_step_equals_manual_reference(tokenizer, tmp_path):
    got, expected, plain_sum, grads, head_grads, trainer_heads = pcgrad_step_and_reference(tokenizer, tmp_path)
    g = torch.stack(grads)
    cosines = (g @ g.T) / (g.norm(dim=1)[:, None] * g.norm(dim=1)[None, :])
    assert cosines.min() < -0.15, f"the fixture must have conflicting task gradients: cosines {cosines.tolist()}"
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    # the projections matter: PCGrad's step is far from the plain sum (a sum would fail the line above)
    assert (expected - plain_sum).norm() > 0.05 * plain_sum.norm()
    for task, head in head_grads.items():
        for got_head, g in zip(trainer_heads[task], head):
            torch.testing.assert_close(got_head, g, rtol=1e-4, atol=1e-7)


def test_the_reference_test_fails_when_pcgrad_is_replaced_by_a_plain_sum(tokenizer, tmp_path, monkeypatch):
    """The check above bites: with the aggregation swapped for a plain sum, the trainer's step is the sum, and it is
    not the PCGrad reference."""
    import mtbert.training.steps
    from mtbert.training.aggregators import get_aggregator

    monkeypatch.setattr(mtbert.training.steps, "get_aggregator", lambda name, **options: get_aggregator("sum"))
    got, expected, plain_sum, *_ = pcgrad_step_and_reference(tokenizer, tmp_path)
    torch.testing.assert_close(got, plain_sum, rtol=1e-4, atol=1e-6)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_pcgrad_mean_reduction_is_a_third_of_sum_on_the_encoder(tokenizer, tmp_path):
    grads = {}
    for reduction in ("sum", "mean"):
        model = make_model(tokenizer)
        trainer = trainer_for(model, make_data(tokenizer, model), tmp_path / reduction, pcgrad_reduction=reduction)
        trainer.accelerator.gradient_state._set_sync_gradients(True)
        trainer.current_gradient_accumulation_steps = 1
        trainer.training_step(model, first_batch(trainer))
        grads[reduction] = (
            torch.cat([p.grad.reshape(-1) for p in model.encoder.parameters()]),
            torch.cat([p.grad.reshape(-1) for p in model.heads.parameters()]),
        )
    torch.testing.assert_close(grads["mean"][0] * 3, grads["sum"][0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grads["mean"][1], grads["sum"][1])  # heads are not averaged


def test_gradient_checkpointing_gives_the_same_pcgrad_step(tokenizer, tmp_path):
    results = []
    for checkpointing in (False, True):
        model = make_model(tokenizer, seed=CONFLICT_SEED)  # conflicting task gradients: projections are exercised
        trainer = trainer_for(
            model,
            make_data(tokenizer, model, seed=CONFLICT_SEED),
            tmp_path / str(checkpointing),
            gradient_checkpointing=checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        trainer.accelerator.gradient_state._set_sync_gradients(True)
        trainer.current_gradient_accumulation_steps = 1
        trainer.training_step(model, first_batch(trainer))
        results.append(torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-7)


def test_bf16_autocast_pcgrad_trains(tokenizer, tmp_path):
    model = make_model(tokenizer)
    trainer = trainer_for(model, make_data(tokenizer, model), tmp_path, bf16=True, max_steps=3, learning_rate=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train()
    after = model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_round_robin_leaves_absent_heads_untouched(tokenizer, tmp_path):
    """A head whose task is not in the step gets no gradient and AdamW does not move it (no weight decay either)."""
    model = make_model(tokenizer)
    trainer = trainer_for(
        model,
        make_data(tokenizer, model),
        tmp_path,
        strategy="round_robin",
        max_steps=1,
        weight_decay=0.1,
        learning_rate=1e-2,
    )
    before = {k: v.clone() for k, v in model.heads.state_dict().items()}
    trainer.train()
    first_task = model.config.task_names[0]  # round robin starts with the first task
    for key, value in model.heads.state_dict().items():
        changed = not torch.equal(before[key], value)
        assert changed == key.startswith(f"{first_task}."), key


def test_ensembling_trains_under_pcgrad(tokenizer, tmp_path):
    model = make_model(tokenizer, shared=False)
    assert model.shared_parameters() == []
    trainer = trainer_for(model, make_data(tokenizer, model), tmp_path, max_steps=2, learning_rate=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train()
    for task in TASKS:
        key = f"encoders.{task}.encoder.layer.0.output.dense.weight"
        assert not torch.equal(before[key], model.state_dict()[key])
