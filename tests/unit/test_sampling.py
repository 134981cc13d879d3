"""Tests for mtbert.data.sampling (the per-epoch multitask batch plan) and the multitask dataset/collator."""

from __future__ import annotations

from collections import Counter

import datasets
import pytest
import torch

from mtbert.data.collators import MultitaskCollator
from mtbert.data.sampling import MultitaskBatchSampler, MultitaskDataset

SIZES = {"a": 10, "b": 4, "c": 6}
OFFSETS = {"a": 0, "b": 10, "c": 14}


def task_of(index: int, sizes=SIZES) -> str:
    offset = 0
    for task, n in sizes.items():
        if index < offset + n:
            return task
        offset += n
    raise AssertionError(index)


def epoch_batches(sampler, epoch=0):
    sampler.set_epoch(epoch)
    return list(iter(sampler))


def step_tasks(batches, sizes=SIZES):
    tasks = []
    for batch in batches:
        owners = {task_of(i, sizes) for i in batch}
        assert len(owners) == 1, f"a one-task step mixes tasks: {batch}"
        tasks.append(owners.pop())
    return tasks


# ----------------------------------------------------------------------------------------------------------------
# One task per step
# ----------------------------------------------------------------------------------------------------------------


def test_round_robin_interleaves_tasks():
    sampler = MultitaskBatchSampler(SIZES, batch_size=2)
    batches = epoch_batches(sampler)
    # a: 5 batches, b: 2, c: 3; tasks that run out drop out of the rotation
    assert step_tasks(batches) == ["a", "b", "c", "a", "b", "c", "a", "c", "a", "a"]
    assert len(sampler) == len(batches) == 10
    assert [t for step in sampler.plan(0) for t, _ in step] == step_tasks(batches)


@pytest.mark.parametrize("task_sampling", ["round_robin", "proportional"])
@pytest.mark.parametrize("batch_size", [1, 3, 4, 32])
def test_every_row_seen_exactly_once_per_epoch(task_sampling, batch_size):
    sampler = MultitaskBatchSampler(SIZES, batch_size=batch_size, task_sampling=task_sampling, seed=3)
    for epoch in (0, 1):
        batches = epoch_batches(sampler, epoch)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(20))
        assert all(1 <= len(b) <= batch_size for b in batches)
        counts = Counter(step_tasks(batches))
        assert counts == {t: -(-n // batch_size) for t, n in SIZES.items()}
        assert len(batches) == len(sampler)


def test_rows_are_shuffled_within_a_task():
    batches = epoch_batches(MultitaskBatchSampler({"a": 50}, batch_size=50, seed=0))
    assert batches[0] != list(range(50)) and sorted(batches[0]) == list(range(50))


def test_proportional_covers_each_batch_once_in_shuffled_order():
    sizes = {"a": 40, "b": 20, "c": 10}
    orders = []
    for epoch in range(4):
        sampler = MultitaskBatchSampler(sizes, batch_size=5, task_sampling="proportional", seed=1)
        tasks = step_tasks(epoch_batches(sampler, epoch), sizes)
        assert Counter(tasks) == {"a": 8, "b": 4, "c": 2}
        orders.append(tasks)
    round_robin = step_tasks(epoch_batches(MultitaskBatchSampler(sizes, batch_size=5)), sizes)
    assert any(order != round_robin for order in orders)
    assert len({tuple(o) for o in orders}) > 1  # reshuffled every epoch


@pytest.mark.parametrize("temperature", [1.0, 2.0, 50.0])
def test_temperature_frequencies_follow_size_power(temperature):
    sizes = {"big": 2000, "small": 200}
    sampler = MultitaskBatchSampler(sizes, batch_size=1, task_sampling="temperature", temperature=temperature, seed=0)
    counts = Counter()
    for epoch in range(2):
        counts.update(step_tasks(epoch_batches(sampler, epoch), sizes))
    total = sum(counts.values())
    assert total == 2 * len(sampler) == 2 * 2200
    weights = {t: n ** (1.0 / temperature) for t, n in sizes.items()}
    expected = weights["big"] / sum(weights.values())  # 0.909 (T=1), 0.760 (T=2), ~0.51 (T=50)
    assert counts["big"] / total == pytest.approx(expected, abs=0.025)


def test_temperature_cycles_through_a_task_it_draws_often():
    sizes = {"a": 3, "b": 3}
    sampler = MultitaskBatchSampler(sizes, batch_size=1, task_sampling="temperature", seed=5)
    for epoch in range(5):
        batches = epoch_batches(sampler, epoch)
        assert len(batches) == 6
        for task in sizes:
            rows = [b[0] for b, t in zip(batches, step_tasks(batches, sizes)) if t == task]
            for start in range(0, len(rows), 3):  # each pass over a task is a permutation of its rows
                chunk = rows[start : start + 3]
                assert len(set(chunk)) == len(chunk)


# ----------------------------------------------------------------------------------------------------------------
# Caps (max_train_samples)
# ----------------------------------------------------------------------------------------------------------------


def test_max_samples_caps_and_redraws_each_epoch():
    sizes = {"a": 100, "b": 7}
    sampler = MultitaskBatchSampler(sizes, batch_size=4, max_samples={"a": 10}, seed=0)
    assert sampler.rows_per_epoch("a") == 10 and sampler.rows_per_epoch("b") == 7
    assert len(sampler) == 3 + 2
    subsets = []
    for epoch in range(3):
        rows = [i for b in epoch_batches(sampler, epoch) for i in b]
        a_rows = [i for i in rows if i < 100]
        assert len(a_rows) == len(set(a_rows)) == 10
        assert sorted(i for i in rows if i >= 100) == list(range(100, 107))
        subsets.append(frozenset(a_rows))
    assert len(set(subsets)) == 3  # a fresh subset every epoch
    again = MultitaskBatchSampler(sizes, batch_size=4, max_samples={"a": 10}, seed=0)
    assert frozenset(i for b in epoch_batches(again, 1) for i in b if i < 100) == subsets[1]


def test_cap_larger_than_task_and_zero_cap_mean_no_cap():
    sampler = MultitaskBatchSampler({"a": 5, "b": 6}, batch_size=2, max_samples={"a": 50, "b": 0})
    assert sampler.rows_per_epoch("a") == 5 and sampler.rows_per_epoch("b") == 6
    assert sorted(i for b in epoch_batches(sampler) for i in b) == list(range(11))


# ----------------------------------------------------------------------------------------------------------------
# All tasks per step (sum / pcgrad)
# ----------------------------------------------------------------------------------------------------------------


def test_all_tasks_per_step():
    sampler = MultitaskBatchSampler(SIZES, batch_size=2, all_tasks_per_step=True, seed=0)
    assert len(sampler) == 5  # the largest task's batches
    plan = sampler.plan(0)
    assert len(plan) == 5
    seen = {t: [] for t in SIZES}
    for step in plan:
        assert [t for t, _ in step] == ["a", "b", "c"]
        for task, rows in step:
            assert len(rows) == 2
            seen[task].extend(int(r) for r in rows)
    assert sorted(seen["a"]) == list(range(10))  # the largest task: exactly one pass
    assert set(seen["b"]) == set(range(4)) and len(seen["b"]) == 10  # smaller ones cycle
    batches = epoch_batches(sampler)
    assert len(batches) == 5
    for batch, step in zip(batches, plan):
        assert batch == [OFFSETS[t] + int(r) for t, rows in step for r in rows]
        assert Counter(task_of(i) for i in batch) == {"a": 2, "b": 2, "c": 2}


# ----------------------------------------------------------------------------------------------------------------
# Determinism and data parallelism
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_sampling", ["round_robin", "proportional", "temperature"])
def test_set_epoch_determinism(task_sampling):
    def make(seed=42):
        return MultitaskBatchSampler(SIZES, batch_size=3, task_sampling=task_sampling, seed=seed)

    first = make()
    assert epoch_batches(first, 2) == epoch_batches(make(), 2)
    assert epoch_batches(first, 2) == epoch_batches(first, 2)  # iterating again replays the epoch
    assert epoch_batches(first, 0) != epoch_batches(first, 1)
    assert epoch_batches(make(seed=1), 0) != epoch_batches(make(seed=2), 0)
    sampler = make()
    sampler.set_epoch(3)
    assert sampler.epoch == 3 and list(sampler) == epoch_batches(make(), 3)


@pytest.mark.parametrize("all_tasks_per_step", [False, True])
@pytest.mark.parametrize("task_sampling", ["round_robin", "proportional", "temperature"])
def test_two_ranks_split_the_single_process_batch(all_tasks_per_step, task_sampling):
    sizes = {"a": 24, "b": 8, "c": 16}  # multiples of the global batch: no wrap-around padding
    common = dict(all_tasks_per_step=all_tasks_per_step, task_sampling=task_sampling, seed=7)
    ranks = [MultitaskBatchSampler(sizes, batch_size=4, num_replicas=2, rank=r, **common) for r in (0, 1)]
    single = MultitaskBatchSampler(sizes, batch_size=8, **common)
    for epoch in (0, 1):
        per_rank = [epoch_batches(s, epoch) for s in ranks]
        reference = epoch_batches(single, epoch)
        assert len(per_rank[0]) == len(per_rank[1]) == len(reference) == len(ranks[0])
        for b0, b1, ref in zip(per_rank[0], per_rank[1], reference):
            if all_tasks_per_step:
                for task, _offset in (("a", 0), ("b", 24), ("c", 32)):
                    r0 = [i for i in b0 if task_of(i, sizes) == task]
                    r1 = [i for i in b1 if task_of(i, sizes) == task]
                    full = [i for i in ref if task_of(i, sizes) == task]
                    assert r0 + r1 == full and len(r0) == len(r1) == 4
            else:
                assert {task_of(i, sizes) for i in b0} == {task_of(i, sizes) for i in b1}  # same task this step
                assert b0 + b1 == ref  # contiguous halves of the same global batch
            assert not set(b0) & set(b1)


def test_ranks_get_full_batches_when_the_last_global_batch_is_short():
    sizes = {"a": 10, "b": 3}
    ranks = [MultitaskBatchSampler(sizes, batch_size=4, num_replicas=2, rank=r, seed=0) for r in (0, 1)]
    single = MultitaskBatchSampler(sizes, batch_size=8, seed=0)
    per_rank = [epoch_batches(s) for s in ranks]
    reference = epoch_batches(single)
    assert len(per_rank[0]) == len(per_rank[1]) == len(reference) == 3
    for b0, b1, ref in zip(*per_rank, reference):
        assert len(b0) == len(b1) == 4
        assert (b0 + b1)[: len(ref)] == ref  # the single-process batch, topped up from the task's own rows
        assert {task_of(i, sizes) for i in b0 + b1} == {task_of(ref[0], sizes)}
    seen = {i for b in per_rank[0] + per_rank[1] for i in b}
    assert seen == set(range(13))


@pytest.mark.parametrize("size", [1, 3, 5])
def test_every_rank_gets_a_full_batch_even_for_a_tiny_task(size):
    # a task smaller than half the global batch must still fill every rank's batch (never an empty batch)
    ranks = [MultitaskBatchSampler({"a": size, "b": 40}, batch_size=4, num_replicas=4, rank=r) for r in range(4)]
    plans = [epoch_batches(s) for s in ranks]
    for steps in zip(*plans):
        assert [len(b) for b in steps] == [4, 4, 4, 4]
        tasks = {task_of(i, {"a": size, "b": 40}) for b in steps for i in b}
        assert len(tasks) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="task_sampling must be one of round_robin, proportional, temperature"):
        MultitaskBatchSampler(SIZES, batch_size=2, task_sampling="uniform")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        MultitaskBatchSampler(SIZES, batch_size=0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        MultitaskBatchSampler(SIZES, batch_size=2, task_sampling="temperature", temperature=0)
    with pytest.raises(ValueError, match="b have no training rows"):
        MultitaskBatchSampler({"a": 3, "b": 0}, batch_size=2)


# ----------------------------------------------------------------------------------------------------------------
# MultitaskDataset and MultitaskCollator
# ----------------------------------------------------------------------------------------------------------------


def test_multitask_dataset_indexing():
    rows = {"a": [{"input_ids": [1, 2], "label": 0}, {"input_ids": [3], "label": 1}], "b": [{"input_ids": [4]}] * 3}
    ds = MultitaskDataset(rows)
    assert len(ds) == 5 and ds.sizes() == {"a": 2, "b": 3} and ds.offsets == {"a": 0, "b": 2}
    assert ds[0] == ("a", rows["a"][0]) and ds[1] == ("a", rows["a"][1])
    assert [ds[i][0] for i in range(5)] == ["a", "a", "b", "b", "b"]
    with pytest.raises(IndexError):
        ds[5]


def test_multitask_dataset_matches_sampler_offsets():
    rows = {t: [{"input_ids": [t_i, r]} for r in range(n)] for t_i, (t, n) in enumerate(SIZES.items())}
    ds = MultitaskDataset(rows)
    sampler = MultitaskBatchSampler(ds.sizes(), batch_size=3)
    for batch, step in zip(epoch_batches(sampler), sampler.plan(0)):
        ((task, local),) = step
        assert [ds[i] for i in batch] == [(task, rows[task][int(r)]) for r in local]


def test_multitask_dataset_from_datasets_keeps_model_columns():
    a = datasets.Dataset.from_dict({"id": ["x", "y"], "text": ["p", "q"], "input_ids": [[1, 2], [3]], "label": [1, 0]})
    b = datasets.Dataset.from_dict(
        {"id": ["z"], "text": ["r"], "text_pair": ["s"], "input_ids": [[5]], "input_ids_b": [[6, 7]], "label": [0.5]}
    )
    ds = MultitaskDataset.from_datasets({"a": a, "b": b})
    assert ds[0] == ("a", {"input_ids": [1, 2], "label": 1})
    assert ds[2] == ("b", {"input_ids": [5], "input_ids_b": [6, 7], "label": 0.5})


def test_multitask_collator_groups_by_task():
    items = [
        ("a", {"input_ids": [1, 2, 3], "label": 1}),
        ("b", {"input_ids": [4], "input_ids_b": [5, 6], "label": 0.5}),
        ("a", {"input_ids": [7], "label": 0}),
    ]
    out = MultitaskCollator(pad_token_id=9)(items)
    assert list(out) == ["a", "b"]
    assert out["a"]["input_ids"].tolist() == [[1, 2, 3], [7, 9, 9]]
    assert out["a"]["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["a"]["labels"].tolist() == [1, 0] and out["a"]["labels"].dtype == torch.long
    assert out["b"]["input_ids"].tolist() == [[[4, 9], [5, 6]]]
    assert out["b"]["attention_mask"].tolist() == [[[1, 0], [1, 1]]]
    assert out["b"]["labels"].dtype == torch.float32
