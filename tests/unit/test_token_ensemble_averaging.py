"""Token tasks under prediction-time ensembles (mtbert.inference.ensemble) and checkpoint averaging
(mtbert.inference.averaging), on tiny
random models: an ensemble tags each word with the argmax of its members' mean softmax, as ``predict_task`` tags a
word for one model, and scores the dev set with entity F1; an averaged model predicts as its weights say."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch

from mtbert import MultitaskBertConfig, MultitaskBertModel, prepare_dataset
from mtbert.inference.averaging import average_checkpoints, load_averaged_model
from mtbert.inference.ensemble import ensemble_predict_task, predict_ensemble
from mtbert.inference.predict import predict_task, task_logits

from conftest import tiny_bert_config

TAGS = ["O", "B-city", "I-city"]
TASKS = {
    "intent": {"kind": "sentence_classification", "label_names": ["book_flight", "get_weather"]},
    "slots": {"kind": "token_classification", "label_names": TAGS},
}
ROWS = [
    (["fly", "to", "new", "york"], ["O", "O", "B-city", "I-city"], "book_flight"),
    (["weather", "in", "paris", "please", "now"], ["O", "O", "B-city", "O", "O"], "get_weather"),
    (["hi"], ["O"], "get_weather"),
    (
        ["book", "a", "flight", "to", "san", "francisco", "tomorrow", "morning"],
        ["O"] * 4 + ["B-city", "I-city", "O", "O"],
        "book_flight",
    ),
    (["denver"], ["B-city"], "book_flight"),
]


def member(tokenizer, seed: int) -> MultitaskBertModel:
    torch.manual_seed(seed)
    config = MultitaskBertConfig(encoder=tiny_bert_config(len(tokenizer)).to_dict(), tasks=TASKS)
    return MultitaskBertModel(config).eval()


@pytest.fixture
def slots(tokenizer):
    rows = datasets.Dataset.from_dict({"tokens": [r[0] for r in ROWS], "slots": [r[1] for r in ROWS]})
    config = MultitaskBertConfig(encoder=tiny_bert_config(len(tokenizer)).to_dict(), tasks=TASKS)
    return prepare_dataset(rows, tokenizer, config, "slots", text_column="tokens", label_column="slots")


def word_argmax_of_mean_softmax(models, dataset, tokenizer):
    """Each row's words tagged from the members' mean sub-token softmax, computed row by row (no batching)."""
    out = []
    for i in range(len(dataset)):
        row = dataset.select([i])
        probs = torch.stack(
            [
                task_logits(m, "slots", row, pad_token_id=tokenizer.pad_token_id, progress=False)[0].softmax(-1)
                for m in models
            ]
        ).mean(0)
        firsts, previous = [], None
        for position, word in enumerate(row[0]["word_ids"]):
            if word >= 0 and word != previous:
                firsts.append(position)
            previous = word if word >= 0 else previous
        out.append(probs[firsts].argmax(-1).tolist())
    return out


def test_an_ensemble_tags_each_word_with_the_argmax_of_the_mean_softmax(slots, tokenizer):
    a, b = member(tokenizer, 1), member(tokenizer, 2)
    pad = tokenizer.pad_token_id
    alone = predict_task(a, "slots", slots, batch_size=2, pad_token_id=pad, progress=False)
    twice = ensemble_predict_task([a, a], "slots", slots, batch_size=2, pad_token_id=pad, progress=False)
    assert [list(p) for p in twice["predictions"]] == [list(p) for p in alone["predictions"]]
    for got, want in zip(twice["scores"], alone["scores"]):
        np.testing.assert_allclose(got, want, atol=1e-6)
    both = ensemble_predict_task([a, b], "slots", slots, batch_size=2, pad_token_id=pad, progress=False)
    assert [len(p) for p in both["predictions"]] == [len(r[0]) for r in ROWS]  # one tag per word
    assert [list(p) for p in both["predictions"]] == word_argmax_of_mean_softmax([a, b], slots, tokenizer)
    each = [predict_task(m, "slots", slots, progress=False)["predictions"] for m in (a, b)]
    assert [list(p) for p in each[0]] != [list(p) for p in each[1]]  # the members disagree: not vacuous


def test_predict_ensemble_writes_tag_files_and_entity_f1(tokenizer, tmp_path):
    from mtbert.cli.arguments import DataArguments

    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "dev", "test"):
        with open(data / f"{split}.jsonl", "w") as handle:
            for i, (words, tags, intent) in enumerate(ROWS):
                handle.write(
                    json.dumps(
                        {
                            "id": f"{split}{i}",
                            "text": " ".join(words),
                            "tokens": words,
                            "slots": tags,
                            "intent": intent,
                        }
                    )
                    + "\n"
                )
    paths = []
    for seed in (1, 2):
        path = tmp_path / f"member{seed}"
        member(tokenizer, seed).save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths.append(str(path))
    task_data = {
        "slots": {"source": "files", "data_dir": str(data), "tokens_column": "tokens", "tags_column": "slots"},
        "intent": {"source": "files", "data_dir": str(data), "text_columns": ["text"], "label_column": "intent"},
    }
    data_args = DataArguments(data_source="minbert", task_data=task_data, max_seq_length=32)
    written, metrics = predict_ensemble(paths, data_args, str(tmp_path / "preds"), batch_size=2)
    assert {"eval_slots_f1", "eval_slots_precision", "eval_slots_recall", "eval_slots_accuracy"} <= set(metrics)
    assert 0.0 <= metrics["eval_slots_f1"] <= 1.0
    slots_dev = [p for p in written if p.endswith("slots-dev-output.csv")]
    assert slots_dev
    with open(slots_dev[0], encoding="utf-8") as handle:
        lines = handle.read().splitlines()[1:]
    assert [len(line.split(" , ")[1].split()) for line in lines] == [len(r[0]) for r in ROWS]
    assert {tag for line in lines for tag in line.split(" , ")[1].split()} <= set(TAGS)


def test_averaged_token_checkpoints_hold_the_mean_and_predict_with_it(slots, tokenizer, tmp_path):
    first, second = member(tokenizer, 1), member(tokenizer, 2)
    first.save_pretrained(tmp_path / "checkpoint-1")
    second.save_pretrained(tmp_path / "checkpoint-2")
    folders = [str(tmp_path / "checkpoint-1"), str(tmp_path / "checkpoint-2")]
    averaged = average_checkpoints(folders)
    heads = [k for k in averaged if k.startswith("heads.slots.")]
    assert heads
    for key in heads:
        torch.testing.assert_close(
            averaged[key], (first.state_dict()[key] + second.state_dict()[key]) / 2, rtol=0, atol=1e-7
        )
    model = load_averaged_model(folders)
    expected = MultitaskBertModel(first.config).eval()
    expected.load_state_dict(averaged, strict=False)
    got = predict_task(model, "slots", slots, pad_token_id=tokenizer.pad_token_id, progress=False)
    want = predict_task(expected, "slots", slots, pad_token_id=tokenizer.pad_token_id, progress=False)
    assert [list(p) for p in got["predictions"]] == [list(p) for p in want["predictions"]]
    alone = load_averaged_model(folders[:1])  # one checkpoint averaged is that checkpoint
    same = predict_task(alone, "slots", slots, pad_token_id=tokenizer.pad_token_id, progress=False)
    orig = predict_task(first, "slots", slots, pad_token_id=tokenizer.pad_token_id, progress=False)
    assert [list(p) for p in same["predictions"]] == [list(p) for p in orig["predictions"]]
    for a, b in zip(same["scores"], orig["scores"]):
        np.testing.assert_allclose(a, b, atol=1e-6)
