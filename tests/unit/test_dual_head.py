"""The ``dual`` pair head: one model reads a pair as a cross-encoder and as two separate embeddings, and averages.

Each test checks the head against a computation written out from its definition, on tiny random BERTs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_modeling import inputs_for

from mtbert import MultitaskBertModel, MultitaskConfigError
from mtbert.models.mtbert.configuration_mtbert import normalize_task_spec
from mtbert.models.mtbert.heads_mtbert import input_layout
from mtbert.models.mtbert.modeling_mtbert import cosent_loss, pool


def encode(model, input_ids, attention_mask, pooling):
    return pool(
        model.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask, pooling
    )


def views_by_hand(model, task, inputs):
    """(cross-encoder prediction, cosine-view prediction, u, v) computed from the definition."""
    spec = model.config.tasks[task]
    head = model.heads[task]
    joined = encode(model, inputs["input_ids"], inputs["attention_mask"], spec["pooling"])
    cross = head.cross(joined).squeeze(-1)
    ids, mask = inputs["pair_input_ids"], inputs["pair_attention_mask"]
    u = encode(model, ids[:, 0], mask[:, 0], "mean")
    v = encode(model, ids[:, 1], mask[:, 1], "mean")
    cosine = F.cosine_similarity(u, v, dim=-1)
    if spec["kind"] == "pair_regression":
        view = F.relu(cosine) * spec["score_range"][1]
    else:
        view = head.cosine.scale * (cosine - head.cosine.threshold)
    return cross, view, u, v


@pytest.mark.parametrize("kind", ["pair_classification", "pair_regression"])
def test_dual_logits_are_the_average_of_both_views(make_model, kind):
    model = make_model({"pair": {"kind": kind, "pair_encoding": "dual", "pooling": "cls"}}).eval()
    inputs = inputs_for(model.config.tasks["pair"])
    labels = inputs.pop("labels")
    with torch.no_grad():
        out = model(task="pair", **inputs)
        cross, view, _, _ = views_by_hand(model, "pair", inputs)
    torch.testing.assert_close(out.logits, 0.5 * (cross + view))
    assert out.embeddings.shape == (len(labels), model.config.hidden_size)  # the joined pair's embedding
    assert not torch.allclose(cross, view)  # two different readings of the pair


def test_dual_similarity_loss_is_the_sum_of_both_views_losses(make_model):
    model = make_model({"sts": {"pair_encoding": "dual", "pooling": "mean"}}).eval()
    inputs = inputs_for(model.config.tasks["sts"])
    with torch.no_grad():
        loss = model(task="sts", **inputs).loss
        cross, view, _, _ = views_by_hand(model, "sts", inputs)
    torch.testing.assert_close(loss, F.mse_loss(cross, inputs["labels"]) + F.mse_loss(view, inputs["labels"]))


def test_dual_similarity_cosent_ranks_each_view(make_model):
    model = make_model({"sts": {"pair_encoding": "dual", "regression_loss": "cosent"}}).eval()
    inputs = inputs_for(model.config.tasks["sts"])
    labels = inputs["labels"]
    with torch.no_grad():
        loss = model(task="sts", **inputs).loss
        cross, _, u, v = views_by_hand(model, "sts", inputs)
    expected = cosent_loss(cross / 5.0, labels) + cosent_loss(F.cosine_similarity(u, v, dim=-1), labels)
    torch.testing.assert_close(loss, expected)


def test_dual_paraphrase_trains_both_logits_with_bce(make_model):
    model = make_model({"qqp": {"pair_encoding": "dual", "cosine_threshold": 0.6}})
    head = model.heads["qqp"].cosine
    assert (head.scale.item(), head.threshold.item()) == pytest.approx((10.0, 0.6))  # post_init kept them
    model.eval()
    inputs = inputs_for(model.config.tasks["qqp"])
    labels = inputs["labels"]
    out = model(task="qqp", **inputs)
    with torch.no_grad():
        cross, view, _, _ = views_by_hand(model, "qqp", inputs)
    expected = F.binary_cross_entropy_with_logits(cross, labels) + F.binary_cross_entropy_with_logits(view, labels)
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert head.scale.grad is not None and head.scale.grad != 0
    predictions, scores = model.postprocess("qqp", out.logits.detach())
    torch.testing.assert_close(scores, torch.sigmoid(out.logits.detach()))
    assert predictions.tolist() == (scores > 0.5).long().tolist()


def test_dual_head_round_trips_through_save_and_load(make_model, tmp_path):
    model = make_model({"qqp": {"pair_encoding": "dual"}, "sts": {"pair_encoding": "dual"}})
    with torch.no_grad():
        model.heads["qqp"].cosine.scale.fill_(7.5)  # a trained value, not the initial one
    model.save_pretrained(tmp_path)
    loaded = MultitaskBertModel.from_pretrained(tmp_path).eval()
    model.eval()
    assert loaded.heads["qqp"].cosine.scale.item() == pytest.approx(7.5)
    for task in ("qqp", "sts"):
        inputs = inputs_for(model.config.tasks[task])
        inputs.pop("labels")
        with torch.no_grad():
            torch.testing.assert_close(loaded(task=task, **inputs).logits, model(task=task, **inputs).logits)


def test_dual_head_without_the_separate_sentences_is_a_clear_error(make_model):
    model = make_model({"sts": {"pair_encoding": "dual"}})
    inputs = inputs_for(model.config.tasks["sts"])
    del inputs["pair_input_ids"], inputs["pair_attention_mask"]
    with pytest.raises(MultitaskConfigError, match="pass pair_input_ids of shape"):
        model(task="sts", **inputs)


def test_pair_input_ids_for_a_head_that_takes_none_is_a_clear_error(make_model):
    model = make_model({"sts": {"pair_encoding": "concat_sep"}})
    inputs = inputs_for(model.config.tasks["sts"])
    with pytest.raises(MultitaskConfigError, match="takes no pair_input_ids"):
        model(task="sts", **inputs, pair_input_ids=torch.ones(3, 2, 4, dtype=torch.long))


def test_dual_spec_checks():
    assert input_layout(normalize_task_spec("qqp", {"pair_encoding": "dual"})) == "dual"
    with pytest.raises(MultitaskConfigError, match="rdrop_alpha is not supported"):
        normalize_task_spec("qqp", {"pair_encoding": "dual", "rdrop_alpha": 1.0})
    with pytest.raises(MultitaskConfigError, match="score_range must start at 0"):
        normalize_task_spec("sts", {"pair_encoding": "dual", "score_range": [1, 5]})
    with pytest.raises(MultitaskConfigError, match="regression_loss 'angle'"):
        normalize_task_spec("sts", {"pair_encoding": "dual", "regression_loss": "angle"})
    with pytest.raises(MultitaskConfigError, match="pair_features"):
        normalize_task_spec("sts", {"pair_encoding": "dual", "pair_features": "full"})


def test_model_card_describes_both_views(make_model):
    from mtbert.hub import render_model_card

    model = make_model({"qqp": {"pair_encoding": "dual"}, "sts": {"pair_encoding": "dual", "pooling": "mean"}})
    card = render_model_card(model).content
    assert card.count("pair, joined with [SEP] and encoded separately") == 2
    assert "ReLU(cos(u, v)) x 5" in card and "a learned logit s x (cos(u, v) - t)" in card
