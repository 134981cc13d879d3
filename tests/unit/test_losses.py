"""The similarity and regularisation losses of issue 7: CoSENT, AnglE, label smoothing, R-Drop, richer pair
features."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError, normalize_task_spec
from mtbert.models.mtbert.modeling_mtbert import angle_similarity, cosent_loss


def cosent_by_hand(scores, labels, scale):
    terms = [1.0]
    for i, j in itertools.product(range(len(scores)), repeat=2):
        if labels[i] > labels[j]:
            terms.append(math.exp(scale * (scores[j] - scores[i])))
    return math.log(sum(terms))


def test_cosent_matches_its_formula():
    torch.manual_seed(0)
    for _ in range(20):
        scores, labels = torch.rand(7) * 2 - 1, torch.randint(0, 4, (7,)).float()  # ties included
        expected = cosent_by_hand(scores.tolist(), labels.tolist(), 20.0)
        assert cosent_loss(scores, labels, 20.0).item() == pytest.approx(expected, rel=1e-5)


def test_cosent_rewards_the_gold_order_and_ignores_ties():
    labels = torch.tensor([0.0, 2.0, 5.0])
    right = cosent_loss(torch.tensor([0.1, 0.5, 0.9]), labels)
    wrong = cosent_loss(torch.tensor([0.9, 0.5, 0.1]), labels)
    assert right.item() < 0.01 < 10.0 < wrong.item()
    assert cosent_loss(torch.tensor([0.9, 0.1, 0.4]), torch.full((3,), 3.0)).item() == 0.0  # nothing ordered
    # only the order of the scores matters, not their scale around it: a shift changes nothing
    assert cosent_loss(torch.tensor([0.1, 0.5, 0.9]) + 0.3, labels).item() == pytest.approx(right.item())


def test_angle_similarity_follows_the_angle_reference():
    """AnglE's reference code (angle_emb.angle_loss) on u, v interleaved as rows 0, 2, ... and 1, 3, ..."""
    torch.manual_seed(1)
    u, v = torch.randn(5, 8), torch.randn(5, 8)
    y = torch.stack([u, v], dim=1).reshape(10, 8)
    re, im = torch.chunk(y, 2, dim=1)
    a, b, c, d = re[::2], im[::2], re[1::2], im[1::2]
    z = torch.sum(c**2 + d**2, dim=1, keepdim=True)
    real, imag = (a * c + b * d) / z, (b * c - a * d) / z
    dz = torch.sum(a**2 + b**2, dim=1, keepdim=True) ** 0.5
    dw = torch.sum(c**2 + d**2, dim=1, keepdim=True) ** 0.5
    real, imag = real / (dz / dw), imag / (dz / dw)
    expected = torch.abs(torch.sum(torch.concat((real, imag), dim=1), dim=1))
    torch.testing.assert_close(angle_similarity(u, v), expected)


def test_new_task_keys_are_checked():
    with pytest.raises(MultitaskConfigError, match="needs pair_encoding 'separate'"):
        normalize_task_spec("qqp", {"pair_encoding": "concat_sep", "pair_features": "full"})
    with pytest.raises(MultitaskConfigError, match="Did you mean 'cosent'"):
        normalize_task_spec("sts", {"regression_loss": "cosnet"})
    with pytest.raises(MultitaskConfigError, match="pair_regression"):
        normalize_task_spec("sst", {"regression_loss": "cosent"})
    with pytest.raises(MultitaskConfigError, match="'angle' compares two sentence embeddings"):
        normalize_task_spec("sts", {"pair_encoding": "concat_sep", "regression_loss": "angle"})
    with pytest.raises(MultitaskConfigError, match="label_smoothing applies"):
        normalize_task_spec("qqp", {"label_smoothing": 0.1})
    with pytest.raises(MultitaskConfigError, match="label_smoothing must be in"):
        normalize_task_spec("sst", {"label_smoothing": 1.5})
    with pytest.raises(MultitaskConfigError, match="rdrop_alpha"):
        normalize_task_spec("sst", {"rdrop_alpha": -1})
    spec = normalize_task_spec("sts", {"pair_encoding": "concat_sep", "regression_loss": "cosent"})
    assert spec["regression_loss"] == "cosent" and spec["pair_features"] == "concat"


def pair_batch(batch=6, length=5, vocab=100, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(5, vocab, (batch, 2, length), generator=generator)


def test_full_pair_features_feed_u_v_their_difference_and_product(make_model):
    model = make_model({"qqp": {"pair_encoding": "separate", "pair_features": "full", "classifier_dropout": 0.0}})
    model.eval()
    head = model.heads["qqp"]
    assert head.out_proj.in_features == 4 * model.config.hidden_size
    ids = pair_batch()
    out = model(input_ids=ids, task="qqp")
    u, v = out.embeddings[:, 0], out.embeddings[:, 1]
    expected = head.out_proj(torch.cat([u, v, (u - v).abs(), u * v], dim=-1)).squeeze(-1)
    torch.testing.assert_close(out.logits, expected)


def test_label_smoothing_is_the_smoothed_cross_entropy(make_model):
    model = make_model({"sst": {"label_smoothing": 0.2}})
    model.eval()
    ids, labels = torch.randint(5, 100, (4, 6)), torch.tensor([0, 1, 4, 2])
    out = model(input_ids=ids, labels=labels, task="sst")
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels, label_smoothing=0.2))
    assert not torch.allclose(out.loss, F.cross_entropy(out.logits, labels))


@pytest.mark.parametrize("loss", ["cosent", "angle"])
def test_ranking_losses_on_the_cosine_head(make_model, loss):
    model = make_model({"sts": {"pair_encoding": "cosine", "pooling": "mean", "regression_loss": loss}})
    ids, labels = pair_batch(), torch.tensor([0.0, 1.0, 2.5, 3.0, 4.0, 5.0])
    out = model(input_ids=ids, labels=labels, task="sts")
    u, v = out.embeddings[:, 0], out.embeddings[:, 1]
    expected = cosent_loss(F.cosine_similarity(u, v, dim=-1), labels, 20.0)
    if loss == "angle":
        expected = expected + cosent_loss(angle_similarity(u, v), labels, 1.0)
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    # predictions stay ReLU(cos)·5, whatever the training loss
    torch.testing.assert_close(out.logits, F.relu(F.cosine_similarity(u, v, dim=-1)) * 5.0)


def test_cosent_on_a_cross_encoder_ranks_its_scores_on_the_cosine_scale(make_model):
    model = make_model({"sts": {"pair_encoding": "concat_sep", "regression_loss": "cosent", "cosent_scale": 10.0}})
    ids, labels = torch.randint(5, 100, (5, 9)), torch.tensor([0.5, 1.0, 2.0, 4.0, 5.0])
    out = model(input_ids=ids, labels=labels, task="sts")
    torch.testing.assert_close(out.loss, cosent_loss(out.logits / 5.0, labels, 10.0))


def dropout_model(make_model, tasks, dropout):
    """A tiny model whose encoder has dropout ``dropout`` (the shared fixture's encoder has none)."""
    return make_model(
        tasks, encoder_overrides={"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    )


@pytest.mark.parametrize(
    "task,spec,labels",
    [
        ("sst", {}, torch.tensor([0, 3, 4, 1])),
        ("qqp", {"pair_encoding": "concat_sep"}, torch.tensor([0, 1, 1, 0])),
        ("sts", {"pair_encoding": "cosine"}, torch.tensor([0.5, 2.0, 4.0, 5.0])),
    ],
)
def test_rdrop_without_dropout_is_the_plain_loss(make_model, task, spec, labels):
    """Two passes with no dropout agree exactly: the consistency term is 0 and the loss is the plain one."""
    ids = pair_batch(batch=4) if spec.get("pair_encoding") == "cosine" else torch.randint(5, 100, (4, 7))
    plain = make_model({task: {**spec, "classifier_dropout": 0.0}})
    rdrop = make_model({task: {**spec, "classifier_dropout": 0.0, "rdrop_alpha": 2.0}})
    plain.train(), rdrop.train()
    out_plain = plain(input_ids=ids, labels=labels, task=task)
    out_rdrop = rdrop(input_ids=ids, labels=labels, task=task)
    torch.testing.assert_close(out_rdrop.loss, out_plain.loss)
    torch.testing.assert_close(out_rdrop.logits, out_plain.logits)  # the first pass, batch-sized


def test_rdrop_adds_a_disagreement_penalty_only_in_training(make_model):
    tasks = {"sst": {"rdrop_alpha": 5.0, "classifier_dropout": 0.3}}
    rdrop = dropout_model(make_model, tasks, 0.3)
    plain = dropout_model(make_model, {"sst": {"classifier_dropout": 0.3}}, 0.3)
    ids, labels = torch.randint(5, 100, (8, 7)), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    rdrop.train()
    out = rdrop(input_ids=ids, labels=labels, task="sst")
    assert out.logits.shape == (8, 5)
    rdrop.eval(), plain.eval()
    torch.testing.assert_close(
        rdrop(input_ids=ids, labels=labels, task="sst").loss, plain(input_ids=ids, labels=labels, task="sst").loss
    )
    # the consistency term: positive for two different predictions, 0 for the same one
    consistency = rdrop.consistency_loss("sst", torch.randn(8, 5), torch.randn(8, 5))
    assert consistency.item() > 0
    same = torch.randn(8, 5)
    assert rdrop.consistency_loss("sst", same, same).item() == pytest.approx(0.0, abs=1e-6)


def classes_by_hand(first, second, labels):
    """Cross-entropy of each pass and the halved symmetric KL of the two class distributions, written out."""
    logp, logq = first.log_softmax(-1), second.log_softmax(-1)
    ce = lambda logits: -logits.log_softmax(-1).gather(1, labels[:, None]).mean()  # noqa: E731
    kl = lambda a, b: (a.exp() * (a - b)).sum(-1).mean()  # noqa: E731
    return ce(first), ce(second), 0.5 * (kl(logp, logq) + kl(logq, logp))


def binary_by_hand(first, second, labels):
    """Binary cross-entropy of each pass and the halved symmetric Bernoulli KL, written out."""
    p, q, y = torch.sigmoid(first), torch.sigmoid(second), labels.float()
    bce = lambda r: -(y * r.log() + (1 - y) * (1 - r).log()).mean()  # noqa: E731
    kl = lambda a, b: a * (a / b).log() + (1 - a) * ((1 - a) / (1 - b)).log()  # noqa: E731
    return bce(p), bce(q), 0.5 * (kl(p, q) + kl(q, p)).mean()


@pytest.mark.parametrize(
    "task,spec,labels,by_hand",
    [
        ("sst", {}, torch.tensor([0, 1, 2, 3, 4, 0, 1, 2]), classes_by_hand),
        ("qqp", {"pair_encoding": "concat_sep"}, torch.tensor([0, 1, 1, 0, 1, 0, 0, 1]), binary_by_hand),
    ],
)
def test_rdrop_training_loss_is_the_mean_of_two_passes_plus_alpha_times_their_divergence(
    make_model, task, spec, labels, by_hand
):
    """The penalty enters the loss that is trained: with the same dropout masks (same seed, the batch twice in one
    pass of a plain model with the same weights), loss = 0.5·(loss₁ + loss₂) + α·divergence(pass₁, pass₂)."""
    alpha = 4.0
    rdrop = dropout_model(make_model, {task: {**spec, "rdrop_alpha": alpha, "classifier_dropout": 0.3}}, 0.3)
    plain = dropout_model(make_model, {task: {**spec, "classifier_dropout": 0.3}}, 0.3)
    plain.load_state_dict(rdrop.state_dict())
    rdrop.train(), plain.train()
    ids = torch.randint(5, 100, (8, 7), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(7)
    out = rdrop(input_ids=ids, labels=labels, task=task)
    torch.manual_seed(7)
    logits = plain(input_ids=torch.cat([ids, ids]), task=task).logits.float()
    first, second = logits[:8], logits[8:]
    assert not torch.allclose(first, second)  # two dropout masks
    loss1, loss2, divergence = by_hand(first, second, labels)
    assert alpha * divergence.item() > 1e-3  # a penalty that a loss without it would miss
    torch.testing.assert_close(out.loss, 0.5 * (loss1 + loss2) + alpha * divergence, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.logits, first)  # the first pass is what is reported
    out.loss.backward()  # and it is what is trained: the penalty has a gradient
    assert rdrop.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_rdrop_consistency_for_paraphrase_logits_is_the_bernoulli_symmetric_kl(make_model):
    model = make_model({"qqp": {"pair_encoding": "concat_sep", "rdrop_alpha": 1.0}})
    a, b = torch.randn(6), torch.randn(6)
    p, q = torch.sigmoid(a), torch.sigmoid(b)
    kl = lambda x, y: x * (x / y).log() + (1 - x) * ((1 - x) / (1 - y)).log()  # noqa: E731
    expected = 0.5 * (kl(p, q) + kl(q, p)).mean()  # the same halved symmetric KL as for sentence classes
    torch.testing.assert_close(model.consistency_loss("qqp", a, b), expected)
