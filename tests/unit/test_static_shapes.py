"""Static shapes (mtbert.data.static_shapes, issue 26): length buckets chosen from the data, batches padded to them
without changing what the model computes, the padding overhead reported, and with the setting off the training loader's
batches are exactly what they were. Also packed batches through the trainer: the same losses and parameters as
padded batches for round_robin, sum and pcgrad."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
import torch

from mtbert.data.static_shapes import (
    StaticShapeCollator,
    bucket_for,
    choose_buckets,
    pad_batch,
    padding_report,
    parse_buckets,
)
from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError
from mtbert.models.mtbert.kinds_mtbert import IGNORE_INDEX

from random_tasks import make_data, trainer_for
from random_tasks import make_model as make_pcgrad_model


def _padded_tokens(lengths, buckets):
    return sum(bucket_for(n, buckets) - n for n in lengths)


def test_auto_buckets_pad_least_among_all_choices():
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(3, 60, size=300)]
    buckets = choose_buckets(lengths, count=3, multiple=8)
    assert len(buckets) == 3 and all(b % 8 == 0 for b in buckets) and buckets[-1] >= max(lengths)
    candidates = sorted({((n + 7) // 8) * 8 for n in lengths})
    best = min(
        _padded_tokens(lengths, [*combo, candidates[-1]]) for combo in itertools.combinations(candidates[:-1], 2)
    )
    assert _padded_tokens(lengths, buckets) == best


def test_bucket_parsing_and_lookup():
    assert parse_buckets("auto") == "auto"
    assert parse_buckets("64,32") == [32, 64]
    assert parse_buckets([128, 32]) == [32, 128]
    assert bucket_for(33, [32, 64]) == 64 and bucket_for(64, [32, 64]) == 64 and bucket_for(70, [32, 64]) == 70
    for bad in ("x", [0], [], [True]):
        with pytest.raises(MultitaskConfigError, match="length_buckets"):
            parse_buckets(bad)


def test_pad_batch_pads_like_the_collator():
    batch = {
        "input_ids": torch.tensor([[2, 5, 3], [2, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
        "token_type_ids": torch.zeros(2, 3, dtype=torch.long),
        "pair_input_ids": torch.ones(2, 2, 5, dtype=torch.long),
        "pair_attention_mask": torch.ones(2, 2, 5, dtype=torch.long),
        "labels": torch.tensor([[1, 2, -100], [0, -100, -100]]),
        "teacher_targets": torch.zeros(2, 3, 4),
    }
    out = pad_batch(batch, [4, 8], pad_token_id=9)
    assert out["input_ids"].tolist() == [[2, 5, 3, 9], [2, 3, 0, 9]]
    assert out["attention_mask"][:, 3].tolist() == [0, 0]
    assert out["pair_input_ids"].shape == (2, 2, 8) and (out["pair_input_ids"][..., 5:] == 9).all()
    assert (out["pair_attention_mask"][..., 5:] == 0).all()
    assert (out["labels"][:, 3] == IGNORE_INDEX).all()
    assert out["teacher_targets"].shape == (2, 4, 4) and out["teacher_targets"][:, 3].isnan().all()
    sentence = {"input_ids": torch.ones(2, 3, dtype=torch.long), "labels": torch.tensor([1, 0])}
    assert pad_batch(sentence, [8])["labels"].tolist() == [1, 0]  # sentence labels are not a sequence


def test_padding_to_a_bucket_changes_no_logit(make_model):
    model = make_model(
        {"sst": {"pooling": "cls"}, "mean": {"kind": "sentence_classification", "num_labels": 3, "pooling": "mean"}}
    ).eval()
    batch = {"input_ids": torch.tensor([[2, 7, 8, 3], [2, 9, 3, 0]]), "attention_mask": torch.tensor(
        [[1, 1, 1, 1], [1, 1, 1, 0]])}  # fmt: skip
    padded = pad_batch(batch, [16])
    for task in ("sst", "mean"):
        torch.testing.assert_close(model(task=task, **padded).logits, model(task=task, **batch).logits)


def test_padding_report_counts_tokens():
    lengths = {"a": [3, 5, 8, 2]}
    plan = [[("a", np.array([0, 1]))], [("a", np.array([2, 3]))]]
    report = padding_report(plan, lengths, buckets=[8, 16])
    assert report["real_tokens"] == 18
    assert report["dynamic_padding"] == pytest.approx(1 - 18 / (5 * 2 + 8 * 2))
    assert report["static_padding"] == pytest.approx(1 - 18 / (8 * 2 + 8 * 2))
    assert report["shapes"] == 1 and report["dynamic_shapes"] == 2


def _trainer(model, data, tmp_path, **settings):
    """``random_tasks.trainer_for`` with this file's defaults: the sum strategy, length-grouped batches of 4."""
    defaults = dict(
        strategy="sum", per_device_train_batch_size=4, max_steps=3, learning_rate=1e-3, group_by_length=True
    )
    return trainer_for(model, data, tmp_path, prepare_optimizer=False, **{**defaults, **settings})


def test_static_shapes_off_keeps_the_loader_as_it_was(tokenizer, tmp_path):
    model = make_pcgrad_model(tokenizer)
    data = make_data(tokenizer, model)
    trainer = _trainer(model, data, tmp_path)
    assert trainer.get_train_dataloader().collate_fn is trainer.data_collator


def test_static_shapes_batches_take_bucket_lengths_and_the_padding_is_logged(tokenizer, tmp_path, caplog):
    model = make_pcgrad_model(tokenizer)
    data = make_data(tokenizer, model, n=24)
    trainer = _trainer(model, data, tmp_path, static_shapes=True, length_buckets=[16, 32, 48])
    with caplog.at_level(logging.INFO, logger="mtbert.training.trainer"):
        loader = trainer.get_train_dataloader()
    assert isinstance(loader.collate_fn, StaticShapeCollator)
    lines = [r.getMessage() for r in caplog.records if "static shapes" in r.getMessage()]
    assert len(lines) == 1 and "dynamic padding" in lines[0], lines
    for batch in itertools.islice(loader, 4):
        for task_batch in batch.values():
            assert task_batch["input_ids"].shape[-1] in (16, 32, 48)
    auto = _trainer(model, data, tmp_path, static_shapes=True).get_train_dataloader().collate_fn
    assert len(auto.buckets) <= 4 and all(b % 8 == 0 for b in auto.buckets)


def _train(tokenizer, tmp_path, strategy, **settings):
    model = make_pcgrad_model(tokenizer, seed=1)
    data = make_data(tokenizer, model, n=12, seed=1)
    trainer = _trainer(model, data, tmp_path / strategy, strategy=strategy, **settings)
    assert len(trainer._packing) == (1 if settings.get("packed_batches") else 0)
    trainer.train()
    return {n: p.detach().clone() for n, p in model.named_parameters()}, trainer.state.log_history


@pytest.mark.parametrize("strategy", ["round_robin", "sum", "pcgrad"])
def test_packed_training_equals_padded_training(tokenizer, tmp_path, strategy):
    padded, _ = _train(tokenizer, tmp_path / "padded", strategy)
    packed, _ = _train(tokenizer, tmp_path / "packed", strategy, packed_batches=True, static_shapes=True)
    for name in padded:
        torch.testing.assert_close(packed[name], padded[name], atol=1e-5, rtol=1e-4, msg=name)
