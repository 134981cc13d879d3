"""One input row, several heads: tasks whose training rows are the same rows (an utterance with an intent label and
slot tags) share each batch and one encoder pass; each task's loss is what it would be on its own, rows without a
task's label add nothing to it, and under pcgrad each task's gradient is still taken apart."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from mtbert import MultitaskTrainer, MultitaskTrainingArguments, prepare_dataset
from mtbert.data.collators import MultitaskCollator
from mtbert.data.sampling import MultitaskBatchSampler, MultitaskDataset
from mtbert.models.mtbert.kinds_mtbert import IGNORE_INDEX
from mtbert.training.backward import TaskGradients

INTENTS = ["book_flight", "get_weather"]
TAGS = ["O", "B-city", "I-city"]
CITIES = [["boston"], ["new", "york"], ["denver"], ["san", "francisco"], ["paris"]]


def utterances(n: int = 24, seed: int = 0) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    rows = {"id": [], "text": [], "tokens": [], "intent": [], "slots": []}
    for i in range(n):
        city = CITIES[rng.integers(len(CITIES))]
        intent = INTENTS[i % 2]
        head = ["book", "a", "flight", "to"] if intent == "book_flight" else ["weather", "in"]
        words = head + city + ["please"] * int(rng.integers(0, 3))
        tags = (
            ["O"] * len(head)
            + ["B-city"]
            + ["I-city"] * (len(city) - 1)
            + ["O"] * (len(words) - len(head) - len(city))
        )
        rows["id"].append(str(i))
        rows["text"].append(" ".join(words))
        rows["tokens"].append(words)
        rows["intent"].append(intent)
        rows["slots"].append(tags)
    return datasets.Dataset.from_dict(rows)


JOINT_TASKS = {
    "intent": {"kind": "sentence_classification", "label_names": INTENTS},
    "slots": {"kind": "token_classification", "label_names": TAGS},
}


@pytest.fixture
def joint(make_model, tokenizer):
    """A tiny model with sst, intent and slots; intent and slots read the same utterances (text and words)."""
    model = make_model({"sst": {}, **JOINT_TASKS}, vocab_size=len(tokenizer))
    rows = utterances()
    train = {
        "sst": prepare_dataset(
            datasets.Dataset.from_dict(
                {"text": [f"movie {i} was fine" for i in range(10)], "label": [i % 5 for i in range(10)]}
            ),
            tokenizer,
            model.config,
            "sst",
        ),
        "intent": prepare_dataset(rows, tokenizer, model.config, "intent", label_column="intent"),
        "slots": prepare_dataset(rows, tokenizer, model.config, "slots", text_column="tokens", label_column="slots"),
    }
    return model, train


def make_trainer(model, train, tmp_path, tokenizer, **kwargs):
    args = MultitaskTrainingArguments(
        str(tmp_path / "out"),
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        max_steps=1,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        disable_tqdm=True,
        **kwargs,
    )
    trainer = MultitaskTrainer(model, args, train_dataset=train, processing_class=tokenizer)
    trainer.current_gradient_accumulation_steps = 1  # set by train(); these tests also call training_step directly
    return trainer


def count_encoder_calls(model):
    calls = []
    handle = model.encoder.register_forward_hook(lambda module, args, kwargs_or_out: calls.append(1))
    return calls, handle


# -- finding and planning shared rows --------------------------------------------------------------------------------


def test_tasks_reading_the_same_rows_alike_are_one_joint_group(joint):
    _, train = joint
    dataset = MultitaskDataset.from_datasets(train)
    assert dataset.joint_groups() == [("intent", "slots")]
    assert dataset.joint_groups({"intent": 8}) == []  # capped differently: each task draws its own rows
    assert dataset.joint_groups({"intent": 8, "slots": 8}) == [("intent", "slots")]
    other = MultitaskDataset.from_datasets({**train, "intent": train["intent"].select(range(1, 24))})
    assert other.joint_groups() == []  # not the same rows


@pytest.mark.parametrize("sampling", ["round_robin", "proportional", "temperature", "all"])
def test_joint_plan_shares_rows_and_leaves_other_tasks_batches_alone(sampling):
    sizes = {"sst": 37, "intent": 24, "slots": 24, "sts": 11}
    options = {"all_tasks_per_step": True} if sampling == "all" else {"task_sampling": sampling}
    apart = MultitaskBatchSampler(sizes, batch_size=4, seed=3, **options)
    together = MultitaskBatchSampler(sizes, batch_size=4, seed=3, joint=[("intent", "slots")], **options)
    assert together.units == ["sst", "intent", "sts"]
    steps = together.plan(1)
    for t in ("sst", "intent", "sts"):  # every task's batches (contents and order) as without the group
        assert [r.tolist() for s in together.plan(1) for u, r in s if u == t] == [
            r.tolist() for s in apart.plan(1) for u, r in s if u == t
        ][: len([1 for s in steps for u, _ in s if u == t])]
    together.set_epoch(1)
    dataset = MultitaskDataset({t: [{"input_ids": [t, i]} for i in range(n)] for t, n in sizes.items()})
    for indices in together:
        items = [dataset[i] for i in indices]
        intent = [row["input_ids"][1] for task, row in items if task == "intent"]
        slots = [row["input_ids"][1] for task, row in items if task == "slots"]
        assert intent == slots  # a joint step holds both tasks over the same rows
    summary = together.epoch_summary()
    assert summary["slots"] == summary["intent"] and summary["intent"]["batches"] >= 6
    assert "rows shared by intent + slots" in together.describe()
    if sampling != "temperature":  # (temperature sampling draws a different number of each unit's batches)
        assert together.rows_drawn() == apart.rows_drawn() - summary["slots"]["sampled"]  # shared rows count once
    with pytest.raises(ValueError, match="same number of rows"):
        MultitaskBatchSampler(sizes, batch_size=4, joint=[("sst", "intent")])


# -- training: one encoder pass, the losses of the tasks apart -------------------------------------------------------


def first_joint_batch(trainer):
    for batch in trainer.get_train_dataloader():
        if "intent" in batch:
            return batch
    raise AssertionError("no joint step in the epoch")


def test_one_encoder_pass_per_shared_batch_and_losses_equal_the_tasks_apart(joint, tmp_path, tokenizer):
    model, train = joint
    trainer = make_trainer(model, train, tmp_path, tokenizer)
    batch = first_joint_batch(trainer)
    assert set(batch) == {"intent", "slots"}  # round_robin: the joint group is one slot of the rotation
    assert torch.equal(batch["intent"]["input_ids"], batch["slots"]["input_ids"])
    model.train()
    calls, handle = count_encoder_calls(model)
    try:  # the same seed for both: the heads' dropout draws the same masks (the tiny encoder has none)
        torch.manual_seed(0)
        shared = trainer._task_losses(model, batch)
        assert len(calls) == 1  # one encoder forward feeds both heads
        calls.clear()
        torch.manual_seed(0)
        apart = {task: model(task=task, **b).loss for task, b in batch.items()}
        assert len(calls) == 2
    finally:
        handle.remove()
    for task in ("intent", "slots"):
        torch.testing.assert_close(shared[task], apart[task], rtol=1e-6, atol=1e-7)
    # the step's loss is the sum of both; both are logged as loss_<task>
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    trainer._pop_task_losses()
    calls, handle = count_encoder_calls(model)
    try:
        torch.manual_seed(0)
        loss = trainer.training_step(model, batch)
    finally:
        handle.remove()
    assert len(calls) == 1
    torch.testing.assert_close(loss, (apart["intent"] + apart["slots"]).detach(), rtol=1e-6, atol=1e-7)
    assert set(trainer._pop_task_losses()) >= {"loss_intent", "loss_slots"}
    tokens = batch["intent"]["input_ids"].numel()  # the floating-point count sees one pass, not two
    assert trainer.floating_point_ops(batch) == 6 * tokens * model.num_parameters(exclude_embeddings=True)


def test_share_rows_false_keeps_each_task_apart(joint, tmp_path, tokenizer):
    model, train = joint
    trainer = make_trainer(model, train, tmp_path, tokenizer, share_rows=False)
    sampler = trainer.get_train_dataloader().batch_sampler
    assert sampler.units == ["sst", "intent", "slots"]
    plain = MultitaskBatchSampler({"sst": 10, "intent": 24, "slots": 24}, batch_size=4, seed=42)
    assert [[(t, r.tolist()) for t, r in s] for s in sampler.plan(0)] == [
        [(t, r.tolist()) for t, r in s] for s in plain.plan(0)
    ]


@pytest.mark.parametrize("aggregator", ["pcgrad", "upgrad"])
def test_pcgrad_takes_each_tasks_gradient_apart_from_the_shared_pass(
    joint, tmp_path, tokenizer, monkeypatch, aggregator
):
    model, train = joint
    trainer = make_trainer(model, train, tmp_path, tokenizer, strategy="pcgrad", aggregator=aggregator)
    steps = trainer.get_train_dataloader()
    batch = next(iter(steps))
    assert list(batch) == ["sst", "intent", "slots"]
    shared = model.shared_parameters()
    expected = []
    torch.manual_seed(0)
    for task, b in batch.items():  # each task's gradient from its own forward
        model.zero_grad()
        model(task=task, **b).loss.backward()
        expected.append(torch.cat([p.grad.reshape(-1) for p in shared]))
    model.zero_grad()
    seen = {}
    original = TaskGradients.aggregate

    def capture(self, *args, **kwargs):
        seen["rows"] = self.buffer.clone()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TaskGradients, "aggregate", capture)
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    calls, handle = count_encoder_calls(model)
    try:
        torch.manual_seed(0)
        trainer.training_step(model, batch)
    finally:
        handle.remove()
    assert len(calls) == 2  # sst alone, intent + slots together
    for row, want in zip(seen["rows"], expected):
        torch.testing.assert_close(row, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strategy", ["round_robin", "sum", "pcgrad"])
def test_joint_tasks_train_under_every_strategy(joint, tmp_path, tokenizer, strategy):
    model, train = joint
    trainer = make_trainer(model, train, tmp_path, tokenizer, strategy=strategy)
    trainer.args.max_steps = 4
    calls, handle = count_encoder_calls(model)
    try:
        trainer.train()
    finally:
        handle.remove()
    steps = trainer.get_train_dataloader().batch_sampler.plan(0)[:4]
    assert len(calls) == sum(len(step) for step in steps)  # one pass per unit of each step, none per joint member
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"loss_intent", "loss_slots"} <= logged


# -- rows labelled for some tasks only ------------------------------------------------------------------------------


def test_rows_without_a_label_add_nothing_to_that_tasks_loss(make_model, tokenizer):
    model = make_model(
        {"intent": JOINT_TASKS["intent"], "slots": JOINT_TASKS["slots"], "sts": {}}, vocab_size=len(tokenizer)
    )
    model.eval()  # no dropout: the two ways see the same logits
    rows = utterances(6)
    collate = MultitaskCollator(tokenizer.pad_token_id)
    intent = prepare_dataset(rows, tokenizer, model.config, "intent", label_column="intent")
    slots = prepare_dataset(rows, tokenizer, model.config, "slots", text_column="tokens", label_column="slots")
    batch = collate([("intent", r) for r in intent] + [("slots", r) for r in slots])
    keep = torch.tensor([True, False, True, True, False, True])
    for task, missing in (("intent", IGNORE_INDEX), ("slots", IGNORE_INDEX)):
        b = batch[task]
        partial = b["labels"].clone()
        partial[~keep] = missing
        whole = model(task=task, **{**b, "labels": partial}).loss
        subset = model(task=task, **{k: v[keep] for k, v in b.items()}).loss
        torch.testing.assert_close(whole, subset, rtol=1e-6, atol=1e-7)
        none = model(task=task, **{**b, "labels": torch.full_like(b["labels"], missing)}).loss
        assert none.item() == 0.0 and none.requires_grad  # a batch nobody labelled: zero, and backward still runs
        none.backward()
    # a score task: NaN is "no label"
    pairs = {"input_ids": batch["intent"]["input_ids"][:, None].expand(-1, 2, -1).clone()}
    pairs["attention_mask"] = batch["intent"]["attention_mask"][:, None].expand(-1, 2, -1).clone()
    scores = torch.tensor([1.0, float("nan"), 4.0, 2.5, float("nan"), 0.5])
    whole = model(task="sts", **pairs, labels=scores).loss
    subset = model(task="sts", **{k: v[keep] for k, v in pairs.items()}, labels=scores[keep]).loss
    torch.testing.assert_close(whole, subset, rtol=1e-6, atol=1e-7)


def test_a_missing_label_in_a_shared_dataset_is_ignored_not_dropped(joint, tokenizer):
    _, train = joint
    labels = train["intent"]["label"]
    partly = train["intent"].map(lambda row, i: {"label": None if i % 3 == 0 else labels[i]}, with_indices=True)
    dataset = MultitaskDataset.from_datasets({"intent": partly, "slots": train["slots"]})
    assert dataset.joint_groups() == [("intent", "slots")]  # still the same rows
    assert [r["label"] for r in dataset.task_rows["intent"]][:4] == [IGNORE_INDEX, labels[1], labels[2], IGNORE_INDEX]


def test_tasks_reading_one_file_keep_rows_labelled_for_the_other_task_only(tmp_path, tokenizer):
    """The YAML route: two task_data entries on the same JSON Lines files; a training row without the intent (or
    without slot tags) is kept for the task it has a label for, so the rows stay aligned and are shared."""
    import json

    from mtbert.data import load_task_data, shared_sources, task_source, tokenize_task

    rows = utterances(12).to_list()
    for i, row in enumerate(rows):
        if i % 4 == 1:
            row["intent"] = None
        if i % 4 == 2:
            row["slots"] = []
    for split in ("train", "dev"):
        with open(tmp_path / f"{split}.jsonl", "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in rows)
    specs = {
        "intent": {**JOINT_TASKS["intent"], "num_labels": 2, "pooling": "cls"},
        "slots": {**JOINT_TASKS["slots"], "num_labels": 3, "pooling": "cls", "label_all_tokens": False},
    }
    from mtbert import MultitaskBertConfig

    config = MultitaskBertConfig(encoder={"model_type": "bert"}, tasks=specs)
    entries = {
        "intent": {"source": "files", "data_dir": str(tmp_path), "text_columns": ["text"], "label_column": "intent"},
        "slots": {"source": "files", "data_dir": str(tmp_path), "tokens_column": "tokens", "tags_column": "slots"},
    }
    sources = {t: task_source(t, config.tasks[t], entries[t]) for t in entries}
    assert shared_sources(sources) == {"intent", "slots"}
    loaded = {
        t: load_task_data(t, config.tasks[t], sources[t], splits=("train", "dev"), unlabelled_rows=("train",))
        for t in entries
    }
    assert len(loaded["intent"]["train"]) == len(loaded["slots"]["train"]) == 12  # nothing dropped in training
    assert len(loaded["intent"]["dev"]) == 9 and len(loaded["slots"]["dev"]) == 9  # dev: labelled rows only
    train = {t: tokenize_task(loaded[t]["train"], tokenizer, config.tasks[t], 64) for t in entries}
    dataset = MultitaskDataset.from_datasets(train)
    assert dataset.joint_groups() == [("intent", "slots")]
    assert dataset.task_rows["intent"][1]["label"] == IGNORE_INDEX
    assert set(dataset.task_rows["slots"][2]["token_labels"]) == {IGNORE_INDEX}
    assert set(dataset.task_rows["slots"][1]["token_labels"]) != {IGNORE_INDEX}


def test_data_parallel_ranks_split_a_joint_batch_alike_for_every_member():
    sizes = {"sst": 37, "intent": 24, "slots": 24}
    dataset = MultitaskDataset({t: [{"input_ids": [t, i]} for i in range(n)] for t, n in sizes.items()})
    one = MultitaskBatchSampler(sizes, batch_size=8, seed=5, joint=[("intent", "slots")])
    ranks = [
        MultitaskBatchSampler(sizes, batch_size=4, seed=5, joint=[("intent", "slots")], num_replicas=2, rank=r)
        for r in (0, 1)
    ]
    for whole, *parts in zip(one, *ranks):
        rows = [[dataset[i] for i in part] for part in parts]
        for items in rows:  # each rank's slice holds both members over the same rows
            assert [r["input_ids"][1] for t, r in items if t == "intent"] == [
                r["input_ids"][1] for t, r in items if t == "slots"
            ]
        # the ranks together take the single process's global batch (a short last one topped up with other rows)
        together = [i for part in parts for i in part]
        assert sorted(together) == sorted(whole) if len(together) == len(whole) else set(whole) < set(together)
