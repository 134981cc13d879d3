"""Prediction speed settings (mtbert.inference.prediction_speed, issue 26): batches collated ahead in a thread (same
items, same
order, errors raised), bf16 weights cast once, and length-bucketed prediction giving the same logits as dynamic
padding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mtbert.inference.predict
from mtbert.inference.prediction_speed import cast_weights, prefetched
from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError

from random_tasks import make_data, make_model


def test_prefetched_yields_the_same_items_in_order():
    assert list(prefetched(range(50), enabled=True)) == list(range(50))
    assert list(prefetched(iter([]), enabled=True)) == []
    assert list(prefetched(range(3), enabled=False)) == [0, 1, 2]


def test_prefetched_raises_the_producers_error_and_stops_early_cleanly():
    def failing():
        yield 1
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        list(prefetched(failing()))
    taken = []
    for item in prefetched(range(1000), depth=2):  # the consumer stops: the thread must not hang
        taken.append(item)
        if item == 3:
            break
    assert taken == [0, 1, 2, 3]


def test_cast_weights(tokenizer):
    model = make_model(tokenizer)
    assert cast_weights(model, "float32") is model and next(model.parameters()).dtype == torch.float32
    assert {p.dtype for p in cast_weights(model, "bf16").parameters()} == {torch.bfloat16}
    with pytest.raises(MultitaskConfigError, match="weights"):
        cast_weights(model, "fp8")


@pytest.mark.parametrize("task", ["sst", "qqp", "sts"])
def test_length_buckets_in_prediction_change_no_logit(tokenizer, task):
    model = make_model(tokenizer)
    data = make_data(tokenizer, model, n=10)
    dynamic = mtbert.inference.predict.task_logits(model, task, data[task], batch_size=4, progress=False)
    static = mtbert.inference.predict.task_logits(
        model, task, data[task], batch_size=4, progress=False, length_buckets=[32, 64]
    )
    torch.testing.assert_close(static, dynamic, atol=1e-5, rtol=1e-5)


def test_predict_inputs_with_bf16_weights(tokenizer, tmp_path):
    from mtbert.cli.run import check_weights, predict_inputs

    model = make_model(tokenizer)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    inputs = tmp_path / "inputs.csv"
    inputs.write_text("text\ngood film\ndull plot\n")
    written = predict_inputs(str(tmp_path / "model"), str(inputs), str(tmp_path / "out"), ["sst"], weights="bf16")
    assert (tmp_path / "out").is_dir() and written.endswith("predictions.csv")
    assert len(Path(written).read_text().splitlines()) == 3
    with pytest.raises(MultitaskConfigError, match="exclude each other"):
        check_weights("bf16", "int8")
    with pytest.raises(MultitaskConfigError, match="weights"):
        check_weights("fp8")
