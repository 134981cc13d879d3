"""Tests for MultitaskBertModel and MultitaskBertConfig on tiny random BERT encoders."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtbert import MultitaskBertConfig, MultitaskBertModel, MultitaskConfigError
from mtbert.models.mtbert.configuration_mtbert import normalize_task_spec
from mtbert.models.mtbert.modeling_mtbert import pool

BATCH, LENGTH = 3, 7


def random_ids(*shape, vocab=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, shape, generator=g)
    ids[..., 0] = 1  # a fixed "[CLS]"
    return ids


def ragged_mask(*shape, lengths):
    """A right-padded attention mask whose rows have the given lengths (cycled)."""
    mask = torch.zeros(shape, dtype=torch.long)
    flat = mask.view(-1, shape[-1])
    for row in range(flat.shape[0]):
        flat[row, : lengths[row % len(lengths)]] = 1
    return mask


def inputs_for(spec, batch=BATCH, length=LENGTH, seed=0):
    """Model inputs (with labels) in the layout the task's head reads."""
    g = torch.Generator().manual_seed(seed + 1)
    if spec["kind"] == "sentence_classification":
        labels = torch.randint(0, spec["num_labels"], (batch,), generator=g)
    elif spec["kind"] == "pair_classification":
        labels = torch.tensor([0.0, 1.0, 1.0][:batch])
    else:
        labels = torch.rand(batch, generator=g) * 5
    if spec["kind"] != "sentence_classification" and spec["pair_encoding"] in ("separate", "cosine"):
        shape = (batch, 2, length)
        return {
            "input_ids": random_ids(*shape, seed=seed),
            "attention_mask": ragged_mask(*shape, lengths=[length, length - 2, length - 3]),
            "labels": labels,
        }
    shape = (batch, length)
    token_type_ids = torch.zeros(shape, dtype=torch.long)
    token_type_ids[:, length // 2 :] = 1
    inputs = {
        "input_ids": random_ids(*shape, seed=seed),
        "attention_mask": ragged_mask(*shape, lengths=[length, length - 1, length - 2]),
        "token_type_ids": token_type_ids,
        "labels": labels,
    }
    if spec.get("pair_encoding") == "dual":  # the joined pair, and the two sentences on their own
        pair_shape = (batch, 2, length - 2)
        inputs["pair_input_ids"] = random_ids(*pair_shape, seed=seed + 7)
        inputs["pair_attention_mask"] = ragged_mask(*pair_shape, lengths=[length - 2, length - 3, length - 4])
    return inputs


def grad_norm(module: nn.Module) -> float:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return float(sum(g.abs().sum() for g in grads)) if grads else 0.0


# ----------------------------------------------------------------------------------------------------------------
# Every head setting trains
# ----------------------------------------------------------------------------------------------------------------

PAIR_COMBOS = list(
    itertools.product(
        ("pair_classification", "pair_regression"),
        ("cls", "mean"),
        ("separate", "cosine", "concat_sep", "concat_nosep", "dual"),
        ("linear", "mlp"),
    )
)
SENTENCE_COMBOS = [("sentence_classification", p, None, c) for p in ("cls", "mean") for c in ("linear", "mlp")]


@pytest.mark.parametrize(
    "kind,pooling,pair_encoding,classifier",
    PAIR_COMBOS + SENTENCE_COMBOS,
    ids=lambda v: str(v),
)
def test_every_head_setting_runs_forward_and_backward(make_model, kind, pooling, pair_encoding, classifier):
    spec = {"kind": kind, "pooling": pooling, "classifier": classifier, "pair_encoding": pair_encoding}
    if kind == "sentence_classification":
        spec["num_labels"] = 4
    model = make_model({"task": spec})
    model.train()
    inputs = inputs_for(model.config.tasks["task"])
    out = model(task="task", **inputs)

    expected_logits = (BATCH, 4) if kind == "sentence_classification" else (BATCH,)
    assert out.logits.shape == expected_logits
    separate = kind != "sentence_classification" and pair_encoding in ("separate", "cosine")
    assert out.embeddings.shape == ((BATCH, 2, 32) if separate else (BATCH, 32))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)

    out.loss.backward()
    assert grad_norm(model.encoder) > 0
    assert model.encoder.embeddings.word_embeddings.weight.grad is not None
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if pair_encoding == "cosine":
        assert not list(model.heads["task"].parameters())  # the cosine head has no parameters
    else:
        head = model.heads["task"]
        if pair_encoding == "dual":
            if kind == "pair_classification":
                assert head.cosine.scale.grad is not None and head.cosine.threshold.grad is not None
            head = head.cross
        assert grad_norm(head) > 0
        assert head.out_proj.weight.grad is not None
        assert (head.dense is not None) == (classifier == "mlp")
        if classifier == "mlp":
            assert head.dense.weight.grad is not None and head.dense.weight.grad.abs().sum() > 0
        in_features = 64 if pair_encoding == "separate" else 32
        first = head.dense if classifier == "mlp" else head.out_proj
        assert first.in_features == in_features


def test_return_dict_false_gives_a_tuple(make_model):
    model = make_model(["sst"]).eval()
    inputs = inputs_for(model.config.tasks["sst"])
    loss, logits, embeddings = model(task="sst", return_dict=False, **inputs)
    ref = model(task="sst", **inputs)
    torch.testing.assert_close(loss, ref.loss)
    torch.testing.assert_close(logits, ref.logits)
    torch.testing.assert_close(embeddings, ref.embeddings)


# ----------------------------------------------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------------------------------------------


def test_mean_pooling_ignores_padding(make_model):
    model = make_model({"sst": {"pooling": "mean"}}).eval()
    sentence = torch.tensor([[1, 11, 12, 13, 2]])
    longer = torch.tensor([[1, 21, 22, 23, 24, 25, 26, 2]])
    batch = torch.zeros(2, 8, dtype=torch.long)
    batch[0, :5] = sentence[0]
    batch[0, 5:] = 0  # padding
    batch[1] = longer[0]
    mask = torch.tensor([[1] * 5 + [0] * 3, [1] * 8])
    with torch.no_grad():
        alone = model(task="sst", input_ids=sentence, attention_mask=torch.ones_like(sentence)).embeddings
        padded = model(task="sst", input_ids=batch, attention_mask=mask).embeddings
        # changing what sits under the padding must not matter either
        batch[0, 5:] = 77
        other_padding = model(task="sst", input_ids=batch, attention_mask=mask).embeddings
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(other_padding[0], alone[0], atol=1e-5, rtol=1e-5)


def test_mean_pooling_is_masked_average_of_hidden_states(make_model):
    model = make_model({"sst": {"pooling": "mean"}}).eval()
    ids = random_ids(2, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        hidden = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        got = model(task="sst", input_ids=ids, attention_mask=mask).embeddings
    expected = torch.stack([hidden[0, :3].mean(0), hidden[1].mean(0)])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_cls_pooling_is_position_zero(make_model):
    model = make_model({"sst": {"pooling": "cls"}}).eval()
    ids = random_ids(2, 6)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        hidden = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        got = model(task="sst", input_ids=ids, attention_mask=mask).embeddings
    torch.testing.assert_close(got, hidden[:, 0])
    assert not torch.allclose(got, hidden[:, 1])


def test_pool_function_directly():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    torch.testing.assert_close(pool(hidden, mask, "cls"), hidden[:, 0])
    expected = torch.stack([hidden[0, :2].mean(0), hidden[1, 0]])
    torch.testing.assert_close(pool(hidden, mask, "mean"), expected)
    # an all-padding row does not divide by zero
    assert torch.isfinite(pool(hidden, torch.zeros_like(mask), "mean")).all()


# ----------------------------------------------------------------------------------------------------------------
# Cosine heads and losses
# ----------------------------------------------------------------------------------------------------------------


class FixedEncoder(nn.Module):
    """A stand-in encoder whose hidden state at every position is the embedding of the row's first token."""

    def __init__(self, vectors: torch.Tensor):
        super().__init__()
        self.table = nn.Embedding.from_pretrained(vectors, freeze=False)
        self.calls = 0

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        self.calls += 1
        first = self.table(input_ids[:, :1])
        return SimpleNamespace(last_hidden_state=first.expand(-1, input_ids.shape[1], -1))


def test_sts_cosine_logits_are_relu_cosine_times_five(make_model):
    model = make_model({"sts": {"pair_encoding": "cosine"}}).eval()
    inputs = inputs_for(model.config.tasks["sts"])
    with torch.no_grad():
        out = model(task="sts", **inputs)
    u, v = out.embeddings[:, 0], out.embeddings[:, 1]
    expected = torch.clamp((u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1)), min=0) * 5
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-5)
    # u and v are what the encoder gives each sentence on its own
    for side in (0, 1):
        with torch.no_grad():
            hidden = model.encoder(
                input_ids=inputs["input_ids"][:, side], attention_mask=inputs["attention_mask"][:, side]
            ).last_hidden_state
        torch.testing.assert_close(out.embeddings[:, side], hidden[:, 0], atol=1e-5, rtol=1e-5)


def test_cosine_relu_clips_negative_similarity(make_model):
    model = make_model({"sts": {"pair_encoding": "cosine"}, "qqp": {"pair_encoding": "cosine"}})
    vectors = torch.zeros(10, 32)
    vectors[1, 0] = 1.0  # token 1
    vectors[2, 0] = -1.0  # token 2: opposite of 1
    vectors[3, :2] = torch.tensor([1.0, 1.0])  # token 3: 45 degrees from 1
    model.encoder = FixedEncoder(vectors)
    ids = torch.tensor([[[1, 0], [2, 0]], [[1, 0], [1, 0]], [[1, 0], [3, 0]]])
    sts = model(task="sts", input_ids=ids).logits
    torch.testing.assert_close(sts, torch.tensor([0.0, 5.0, 5.0 / 2**0.5]))
    qqp = model(task="qqp", input_ids=ids).logits  # paraphrase cosine head: the raw cosine, no ReLU, no scaling
    torch.testing.assert_close(qqp, torch.tensor([-1.0, 1.0, 1.0 / 2**0.5]))


def test_sts_cosine_scales_by_top_of_score_range(make_model):
    model = make_model({"sts": {"pair_encoding": "cosine", "score_range": [0, 3]}})
    vectors = torch.zeros(10, 32)
    vectors[1, 0] = 1.0
    model.encoder = FixedEncoder(vectors)
    ids = torch.tensor([[[1, 0], [1, 0]]])
    torch.testing.assert_close(model(task="sts", input_ids=ids).logits, torch.tensor([3.0]))


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_qqp_cosine_postprocess_uses_threshold(make_model, threshold):
    model = make_model({"qqp": {"pair_encoding": "cosine", "cosine_threshold": threshold}})
    logits = torch.tensor([0.1, 0.29, 0.31, 0.49, 0.51, 0.9, -0.7])
    predictions, scores = model.postprocess("qqp", logits)
    assert predictions.tolist() == [int(x > threshold) for x in logits.tolist()]
    torch.testing.assert_close(scores, logits)


def test_postprocess_other_heads(make_model):
    model = make_model({"sst": {}, "qqp": {}, "sts": {}})
    logits = torch.tensor([[0.0, 2.0, 1.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0, 0.0]])
    predictions, scores = model.postprocess("sst", logits)
    assert predictions.tolist() == [1, 0]
    torch.testing.assert_close(scores, logits.softmax(-1).max(-1).values)
    qqp_logits = torch.tensor([-2.0, -0.01, 0.01, 3.0])
    predictions, scores = model.postprocess("qqp", qqp_logits)
    assert predictions.tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(scores, torch.sigmoid(qqp_logits))
    predictions, scores = model.postprocess("sts", torch.tensor([1.5, 4.0]))
    assert predictions.tolist() == [1.5, 4.0]


@pytest.mark.parametrize(
    "task,spec,loss_fn",
    [
        ("sst", {}, lambda logits, labels: F.cross_entropy(logits, labels)),
        ("qqp", {}, lambda logits, labels: F.binary_cross_entropy_with_logits(logits, labels.float())),
        ("qqp", {"pair_encoding": "concat_sep"}, lambda x, y: F.binary_cross_entropy_with_logits(x, y.float())),
        ("qqp", {"pair_encoding": "cosine"}, lambda logits, labels: F.mse_loss(logits, labels.float())),
        ("sts", {}, lambda logits, labels: F.mse_loss(logits, labels)),
        ("sts", {"pair_encoding": "cosine"}, lambda logits, labels: F.mse_loss(logits, labels)),
    ],
    ids=["sst-ce", "qqp-bce", "qqp-concat-bce", "qqp-cosine-mse", "sts-mse", "sts-cosine-mse"],
)
@pytest.mark.parametrize("loss_weight", [1.0, 2.5])
def test_loss_matches_direct_computation(make_model, task, spec, loss_fn, loss_weight):
    model = make_model({task: {**spec, "loss_weight": loss_weight}}).eval()
    inputs = inputs_for(model.config.tasks[task])
    with torch.no_grad():
        out = model(task=task, **inputs)
    expected = loss_fn(out.logits, inputs["labels"]) * loss_weight
    torch.testing.assert_close(out.loss, expected)
    assert out.loss > 0


def test_loss_weight_multiplies_the_gradient(make_model):
    grads = []
    for weight in (1.0, 3.0):
        model = make_model({"sts": {"loss_weight": weight}})
        model(task="sts", **inputs_for(model.config.tasks["sts"])).loss.backward()
        grads.append(model.heads["sts"].out_proj.weight.grad.clone())
    torch.testing.assert_close(grads[1], 3.0 * grads[0])


# ----------------------------------------------------------------------------------------------------------------
# How pairs reach the encoder
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pair_encoding", ["separate", "cosine"])
def test_separate_encoding_is_one_encoder_call(make_model, pair_encoding):
    model = make_model({"qqp": {"pair_encoding": pair_encoding}})
    shapes = []
    model.encoder.register_forward_hook(
        lambda module, args, kwargs, output: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    model(task="qqp", **inputs_for(model.config.tasks["qqp"]))
    assert shapes == [(2 * BATCH, LENGTH)]


@pytest.mark.parametrize("pair_encoding", ["concat_sep", "concat_nosep"])
def test_joined_pair_is_one_encoder_call_on_the_batch(make_model, pair_encoding):
    model = make_model({"qqp": {"pair_encoding": pair_encoding}})
    shapes = []
    model.encoder.register_forward_hook(
        lambda module, args, kwargs, output: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    model(task="qqp", **inputs_for(model.config.tasks["qqp"]))
    assert shapes == [(BATCH, LENGTH)]


@pytest.mark.parametrize("use_token_type_ids", [False, True])
def test_concat_sep_token_type_ids(make_model, use_token_type_ids):
    model = make_model({"qqp": {"pair_encoding": "concat_sep", "use_token_type_ids": use_token_type_ids}}).eval()
    inputs = inputs_for(model.config.tasks["qqp"])
    del inputs["labels"]
    with torch.no_grad():
        with_types = model(task="qqp", **inputs).logits
        zeros = model(task="qqp", **{**inputs, "token_type_ids": torch.zeros_like(inputs["token_type_ids"])}).logits
        none = model(task="qqp", **{**inputs, "token_type_ids": None}).logits
    torch.testing.assert_close(zeros, none)
    if use_token_type_ids:
        assert not torch.allclose(with_types, zeros, atol=1e-4)
    else:
        torch.testing.assert_close(with_types, zeros)


# ----------------------------------------------------------------------------------------------------------------
# One encoder per task
# ----------------------------------------------------------------------------------------------------------------


def test_unshared_encoders_are_separate_modules(make_model):
    model = make_model(["sst", "qqp", "sts"], shared_encoder=False)
    assert set(model.encoders) == {"sst", "qqp", "sts"}
    assert not hasattr(model, "encoder")
    ids = {id(e) for e in model.task_encoders().values()}
    assert len(ids) == 3
    params = [{id(p) for p in e.parameters()} for e in model.encoders.values()]
    assert not (params[0] & params[1]) and not (params[1] & params[2])
    assert model.shared_parameters() == []


def test_unshared_backward_leaves_other_task_untouched(make_model):
    model = make_model(["sst", "qqp"], shared_encoder=False)
    model(task="sst", **inputs_for(model.config.tasks["sst"])).loss.backward()
    assert grad_norm(model.encoders["sst"]) > 0
    assert grad_norm(model.heads["sst"]) > 0
    assert all(p.grad is None for p in model.encoders["qqp"].parameters())
    assert all(p.grad is None for p in model.heads["qqp"].parameters())


def test_shared_encoder_is_one_module(make_model):
    model = make_model(["sst", "qqp", "sts"])
    encoders = model.task_encoders()
    assert encoders["sst"] is encoders["qqp"] is encoders["sts"] is model.encoder
    assert len(model.shared_parameters()) == len(list(model.encoder.parameters()))


# ----------------------------------------------------------------------------------------------------------------
# Configuration round trips
# ----------------------------------------------------------------------------------------------------------------

ROUND_TRIP_TASKS = {
    "sst": {"pooling": "mean", "classifier": "mlp"},
    "qqp": {"pair_encoding": "cosine", "cosine_threshold": 0.4},
    "sts": {"pair_encoding": "concat_sep", "use_token_type_ids": True, "loss_weight": 2.0},
    "nli": {"kind": "sentence_classification", "num_labels": 3, "label_names": ["e", "n", "c"]},
}


@pytest.mark.parametrize("shared_encoder", [True, False])
def test_save_and_load_round_trip(make_model, tmp_path, shared_encoder):
    model = make_model(ROUND_TRIP_TASKS, shared_encoder=shared_encoder).eval()
    model.save_pretrained(tmp_path)
    loaded = MultitaskBertModel.from_pretrained(tmp_path).eval()
    assert loaded.config.tasks == model.config.tasks
    assert loaded.config.shared_encoder == shared_encoder
    assert loaded.config.encoder == model.config.encoder
    for task, spec in model.config.tasks.items():
        inputs = inputs_for(spec)
        with torch.no_grad():
            a = model(task=task, **inputs)
            b = loaded(task=task, **inputs)
        torch.testing.assert_close(a.logits, b.logits)
        torch.testing.assert_close(a.loss, b.loss)


def test_config_dict_round_trip(tiny_encoder_config):
    config = MultitaskBertConfig(encoder=tiny_encoder_config, tasks=ROUND_TRIP_TASKS, shared_encoder=False)
    restored = MultitaskBertConfig.from_dict(config.to_dict())
    assert restored.tasks == config.tasks
    assert restored.encoder == config.encoder
    assert restored.shared_encoder is False
    assert restored.hidden_size == 32
    assert restored.encoder_config.num_hidden_layers == 2
    assert restored.task_names == ["sst", "qqp", "sts", "nli"]
    assert restored.to_dict()["tasks"] == config.to_dict()["tasks"]


def test_config_defaults_to_the_paper_tasks(tiny_encoder_config):
    config = MultitaskBertConfig(encoder=tiny_encoder_config)
    assert config.task_names == ["sst", "qqp", "sts"]
    assert config.tasks["sst"]["num_labels"] == 5 and config.tasks["sst"]["kind"] == "sentence_classification"
    assert config.tasks["qqp"]["pair_encoding"] == "separate" and config.tasks["qqp"]["num_labels"] == 2
    assert config.tasks["sts"]["score_range"] == [0.0, 5.0]
    assert "id2label" not in config.encoder


# ----------------------------------------------------------------------------------------------------------------
# Configuration errors
# ----------------------------------------------------------------------------------------------------------------


def config_error(tasks) -> str:
    with pytest.raises(MultitaskConfigError) as excinfo:
        MultitaskBertConfig(encoder={"model_type": "bert"}, tasks=tasks)
    return str(excinfo.value)


def test_unknown_task_key_suggests_the_right_one():
    message = config_error({"sst": {"poolng": "mean"}})
    assert "'poolng'" in message and "did you mean 'pooling'" in message
    assert "'sst'" in message


def test_misspelled_pooling_lists_valid_values():
    message = config_error({"sst": {"pooling": "maen"}})
    assert "'maen'" in message and "cls, mean" in message and "Did you mean 'mean'" in message


def test_misspelled_pair_encoding_and_classifier():
    message = config_error({"qqp": {"pair_encoding": "cosin"}})
    assert "separate, cosine, concat_sep, concat_nosep" in message and "'cosine'" in message
    assert "linear, mlp" in config_error({"qqp": {"classifier": "mpl"}})


def test_pair_encoding_on_sentence_task():
    message = config_error({"sst": {"pair_encoding": "cosine"}})
    assert "pair_encoding" in message and "sentence_classification" in message and "'sst'" in message


def test_custom_task_needs_kind():
    message = config_error({"nli": {"num_labels": 3}})
    assert "'nli'" in message and "kind" in message and "sentence_classification" in message
    assert "Did you mean 'pair_regression'" in config_error({"sim": {"kind": "pair_regresion"}})


@pytest.mark.parametrize("dropout", [1.0, 1.5, -0.1])
def test_bad_classifier_dropout(dropout):
    message = config_error({"sst": {"classifier_dropout": dropout}})
    assert "classifier_dropout" in message and str(dropout) in message


def test_other_spec_errors():
    assert "num_labels" in config_error({"nli": {"kind": "sentence_classification", "num_labels": 1}})
    assert "label_names" in config_error({"sst": {"num_labels": 3}})  # 5 default label names for 3 labels
    assert "score_range" in config_error({"sts": {"score_range": [5, 0]}})
    assert "start at 0" in config_error({"sts": {"pair_encoding": "cosine", "score_range": [1, 5]}})
    assert "identifier" in config_error({"my task": {"kind": "pair_regression"}})
    assert "non-empty" in config_error({})


def test_normalize_task_spec_is_idempotent():
    spec = normalize_task_spec("qqp", {"pair_encoding": "concat_nosep", "classifier": "mlp"})
    assert normalize_task_spec("qqp", spec) == spec


def test_wrong_input_rank_names_the_expected_shape(make_model):
    model = make_model(["sst", "qqp"])
    with pytest.raises(MultitaskConfigError, match=r"\(batch, 2, length\)") as excinfo:
        model(task="qqp", input_ids=random_ids(BATCH, LENGTH))
    assert "(3, 7)" in str(excinfo.value) and "'qqp'" in str(excinfo.value)
    with pytest.raises(MultitaskConfigError, match=r"\(batch, length\)") as excinfo:
        model(task="sst", input_ids=random_ids(BATCH, 2, LENGTH))
    assert "(3, 2, 7)" in str(excinfo.value)


def test_unknown_task_name(make_model):
    model = make_model(["sst", "qqp"])
    with pytest.raises(MultitaskConfigError, match="unknown task 'nli'") as excinfo:
        model(task="nli", input_ids=random_ids(BATCH, LENGTH))
    assert "sst, qqp" in str(excinfo.value)
    with pytest.raises(MultitaskConfigError, match="task="):
        model(input_ids=random_ids(BATCH, LENGTH))  # several tasks: task must be named
    single = make_model(["sst"])
    assert single(input_ids=random_ids(BATCH, LENGTH)).logits.shape == (BATCH, 5)


def test_task_specs_are_typed_and_round_trip_through_config_json(tmp_path):
    """``config.task_spec(task)`` is a ``TaskSpec`` whose ``to_dict`` is exactly what ``config.json`` stores, for
    every kind; a saved and reloaded config gives equal specs; an unknown task is refused by name."""
    from mtbert.models.mtbert.kinds_mtbert import TaskSpec

    tasks = {
        "sst": {"pooling": "mean"},
        "qqp": {"pair_encoding": "concat_sep", "classifier": "mlp"},
        "sts": {"pair_encoding": "cosine", "pooling": "mean"},
        "ner": {"kind": "token_classification", "label_names": ["O", "B-PER", "I-PER"], "label_all_tokens": True},
    }
    config = MultitaskBertConfig(tasks=tasks)
    config.save_pretrained(tmp_path)
    reloaded = MultitaskBertConfig.from_pretrained(tmp_path)
    for task in tasks:
        spec = config.task_spec(task)
        assert isinstance(spec, TaskSpec) and spec.to_dict() == config.tasks[task]
        assert reloaded.task_spec(task) == spec
    assert config.task_spec("ner").label_all_tokens and config.task_spec("qqp").classifier == "mlp"
    assert config.task_spec("sts").kind == "pair_regression"
    with pytest.raises(MultitaskConfigError, match="no task 'nli'; this model's tasks are sst, qqp, sts, ner"):
        config.task_spec("nli")
