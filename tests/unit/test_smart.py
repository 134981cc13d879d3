"""SMART-style smoothness (``smart_alpha``): predictions should not move when the word embeddings are nudged.

The perturbation hook (``EmbeddingNoise``) is checked on its own; the model's term is checked against the same
computation written out by hand, and through every head on tiny random BERTs.
"""

from __future__ import annotations

import pytest
import torch
from test_modeling import inputs_for
from torch import nn

from mtbert import MultitaskConfigError
from mtbert.models.mtbert.configuration_mtbert import normalize_task_spec
from mtbert.models.mtbert.modeling_mtbert import EmbeddingNoise

HEADS = [
    ("sst", {}),
    ("qqp", {"pair_encoding": "concat_sep"}),
    ("qqp", {"pair_encoding": "separate"}),
    ("qqp", {"pair_encoding": "dual"}),
    ("sts", {"pair_encoding": "cosine"}),
    ("sts", {"pair_encoding": "dual", "pooling": "mean"}),
]


def model_inputs(spec):
    inputs = inputs_for(spec)
    labels = inputs.pop("labels")
    return inputs, labels


def positional(inputs):
    """``(input_ids, attention_mask, token_type_ids, pair_input_ids, pair_attention_mask)``, as the model's
    ``_head_output`` and ``smoothness_loss`` take them."""
    keys = ("input_ids", "attention_mask", "token_type_ids", "pair_input_ids", "pair_attention_mask")
    return tuple(inputs.get(key) for key in keys)


# ---------------------------------------------------------------------------------------------------------------
# The perturbation hook
# ---------------------------------------------------------------------------------------------------------------


def test_each_call_gets_its_own_noise_and_a_replay_reuses_it():
    torch.manual_seed(0)
    embedding = nn.Embedding(10, 4)
    noise = EmbeddingNoise(std=0.1)
    handle = embedding.register_forward_hook(noise)
    first_ids, second_ids = torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5], [6, 7]])
    first = embedding(first_ids)
    embedding(second_ids)  # a second encoder call in the same pass, as a dual head makes
    handle.remove()
    assert [n.shape for n in noise.noises] == [(1, 3, 4), (2, 2, 4)]
    torch.testing.assert_close(first - embedding(first_ids), noise.noises[0])
    assert 0.0 < noise.noises[0].std().item() < 0.5

    grads = [torch.randn_like(n) for n in noise.noises]
    before = [n.detach().clone() for n in noise.noises]
    noise.ascend(grads, step_size=0.01)
    for moved, start, grad in zip(noise.noises, before, grads):
        step = moved - start
        # the max-norm step: the largest move of each token is the step size, in the gradient's direction
        torch.testing.assert_close(step.abs().amax(dim=-1), torch.full(step.shape[:-1], 0.01), rtol=1e-4, atol=1e-7)
        assert torch.all(step * grad >= 0)
        assert not moved.requires_grad
    handle = embedding.register_forward_hook(noise)
    replay_first, replay_second = embedding(first_ids), embedding(second_ids)
    handle.remove()
    torch.testing.assert_close(replay_first - embedding(first_ids), noise.noises[0])
    torch.testing.assert_close(replay_second - embedding(second_ids), noise.noises[1])


def test_an_unused_perturbation_stays_where_it_was():
    noise = EmbeddingNoise(std=0.1)
    noise.noises = [torch.ones(1, 2, 3)]
    noise.ascend([None], step_size=0.5)
    torch.testing.assert_close(noise.noises[0], torch.ones(1, 2, 3))


# ---------------------------------------------------------------------------------------------------------------
# The model's smoothness term
# ---------------------------------------------------------------------------------------------------------------


def smoothness_by_hand(model, task, inputs, clean_logits):
    """SMART written out: noise on the word embeddings, one max-norm ascent step on R-Drop's disagreement, then the
    disagreement at the moved perturbation (each encoder call of the pass has its own perturbation)."""
    spec = model.config.tasks[task]
    embeddings = model.encoder.get_input_embeddings()
    noises, calls = [], [0]

    def add_noise(module, args, output):
        if calls[0] == len(noises):
            noises.append((torch.randn_like(output) * spec["smart_noise"]).requires_grad_())
        calls[0] += 1
        return output + noises[calls[0] - 1]

    handle = embeddings.register_forward_hook(add_noise)
    try:
        perturbed = model._head_output(task, *positional(inputs)).logits
        grads = torch.autograd.grad(model.consistency_loss(task, perturbed, clean_logits.detach()), noises)
        for i, grad in enumerate(grads):
            noises[i] = (
                noises[i] + spec["smart_step_size"] * grad / (grad.abs().amax(-1, keepdim=True) + 1e-6)
            ).detach()
        calls[0] = 0
        perturbed = model._head_output(task, *positional(inputs)).logits
    finally:
        handle.remove()
    return model.consistency_loss(task, perturbed, clean_logits)


@pytest.mark.parametrize(
    "task,spec", HEADS, ids=lambda x: x if isinstance(x, str) else x.get("pair_encoding", "single")
)
def test_the_training_loss_adds_alpha_times_the_smoothness_term(make_model, task, spec):
    model = make_model({task: {**spec, "classifier_dropout": 0.0, "smart_alpha": 2.0}})  # dropout off: deterministic
    model.train()
    inputs, labels = model_inputs(model.config.tasks[task])
    torch.manual_seed(123)
    with_smart = model(task=task, labels=labels, **inputs)
    model.config.tasks[task]["smart_alpha"] = 0.0
    plain = model(task=task, labels=labels, **inputs)
    torch.testing.assert_close(with_smart.logits, plain.logits)
    torch.manual_seed(123)
    term = smoothness_by_hand(model, task, inputs, plain.logits)
    assert term.item() > 0
    torch.testing.assert_close(with_smart.loss, plain.loss + 2.0 * term, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    "task,spec", HEADS, ids=lambda x: x if isinstance(x, str) else x.get("pair_encoding", "single")
)
def test_the_ascent_step_finds_a_worse_perturbation_than_random_noise(make_model, task, spec):
    """The point of the ascent: after one step the predictions disagree far more than under the random start."""
    model = make_model({task: {**spec, "smart_alpha": 1.0}}).eval()
    task_spec = model.config.tasks[task]
    inputs, _ = model_inputs(task_spec)
    args = positional(inputs)
    clean = model._head_output(task, *args).logits
    noise = EmbeddingNoise(task_spec["smart_noise"])
    handle = model.encoder.get_input_embeddings().register_forward_hook(noise)
    try:
        start = model.consistency_loss(task, model._head_output(task, *args).logits, clean.detach())
        noise.ascend(torch.autograd.grad(start, noise.noises), task_spec["smart_step_size"])
        moved = model.consistency_loss(task, model._head_output(task, *args).logits, clean.detach())
    finally:
        handle.remove()
    assert len(noise.noises) == (2 if task_spec.get("pair_encoding") == "dual" else 1)
    assert moved.item() > 10 * start.item()


@pytest.mark.parametrize("task,spec", HEADS[:2])
def test_smart_is_off_at_evaluation_and_without_labels(make_model, task, spec):
    smart = make_model({task: {**spec, "smart_alpha": 5.0}})
    plain = make_model({task: spec})
    plain.load_state_dict(smart.state_dict())
    inputs, labels = model_inputs(smart.config.tasks[task])
    smart.eval(), plain.eval()
    torch.testing.assert_close(
        smart(task=task, labels=labels, **inputs).loss, plain(task=task, labels=labels, **inputs).loss
    )
    smart.train()
    assert smart(task=task, **inputs).loss is None


def test_the_smoothness_term_reaches_the_encoder(make_model):
    """The regulariser alone (no task loss gradient) trains the shared encoder."""
    model = make_model({"sst": {"smart_alpha": 1.0, "classifier_dropout": 0.0}}).train()
    inputs, _ = model_inputs(model.config.tasks["sst"])
    clean = model(task="sst", **inputs).logits
    model.smoothness_loss("sst", clean, positional(inputs)).backward()
    grad = model.encoder.encoder.layer[0].attention.self.query.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------


def test_smart_defaults_are_the_papers():
    spec = normalize_task_spec("sst", {})
    assert (spec["smart_alpha"], spec["smart_noise"], spec["smart_step_size"]) == (0.0, 1e-5, 1e-3)


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"smart_alpha": -1}, "smart_alpha must be >= 0"),
        ({"smart_alpha": 1, "smart_noise": 0}, "smart_noise must be > 0"),
        ({"smart_alpha": 1, "smart_step_size": -1e-3}, "smart_step_size must be > 0"),
        ({"smart_alpha": 1, "rdrop_alpha": 1}, "choose one per task"),
    ],
)
def test_bad_smart_settings_are_refused(settings, message):
    with pytest.raises(MultitaskConfigError, match=message):
        normalize_task_spec("sst", settings)
