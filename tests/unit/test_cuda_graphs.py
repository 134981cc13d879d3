"""The ``cuda_graphs`` setting (mtbert.training.cuda_graphs, issue 26): what ``auto``/``true``/``false`` decide on
each kind
of run, the per-shape graph keys and the capture policy (rare shapes stay eager), and the trainer's wiring, all on
the CPU with a stand-in for the capture. The capture itself runs only on a CUDA GPU (tests marked to skip without)."""

from __future__ import annotations

import pytest
import torch

from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError
from mtbert.training.cuda_graphs import GraphPolicy, TrainingGraphs, check_cuda_graphs_setting, decide, graph_key
from mtbert.training.training_args import MultitaskTrainingArguments

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")


def test_setting_values_and_true_off_cuda_is_refused_in_one_line():
    assert check_cuda_graphs_setting("AUTO") == "auto"
    assert check_cuda_graphs_setting(False) == "false"
    with pytest.raises(MultitaskConfigError, match="must be one of"):
        check_cuda_graphs_setting("sometimes")
    with pytest.raises(MultitaskConfigError, match="needs a CUDA GPU") as error:
        check_cuda_graphs_setting("true", use_cpu=True)
    assert "\n" not in str(error.value)
    with pytest.raises(MultitaskConfigError, match="needs a CUDA GPU"):
        MultitaskTrainingArguments(output_dir="/tmp/unused", use_cpu=True, cuda_graphs="true")


def test_decisions():
    assert decide("false", "cuda", True)[0] == "off"
    mode, why = decide("auto", "cpu", True)
    assert mode == "off" and "cpu" in why
    assert decide("auto", "cuda", False)[0] == "off"  # no static shapes: every batch a new shape
    assert decide("auto", "cuda", True)[0] == "measure"
    assert decide("auto", "cuda", True, world_size=2)[0] == "off"
    assert decide("auto", "cuda", True, packed_batches=True)[0] == "off"
    assert decide("auto", "cuda", True, accumulation_steps=2)[0] == "off"
    if torch.cuda.is_available():
        assert decide("true", "cuda", True)[0] == "on"
        blockers = ({"world_size": 2}, {"gradient_checkpointing": True}, {"packed_batches": True},
                    {"accumulation_steps": 2})  # fmt: skip
        for blocker in blockers:
            with pytest.raises(MultitaskConfigError, match="cuda_graphs: true cannot run"):
                decide("true", "cuda", True, **blocker)


def test_graph_keys_are_per_task_and_shape():
    batch = {"input_ids": torch.zeros(4, 32, dtype=torch.long), "attention_mask": torch.ones(4, 32, dtype=torch.long)}
    key = graph_key("sst", batch)
    assert key == graph_key("sst", {k: v.clone() for k, v in batch.items()})  # values do not matter
    assert key != graph_key("qqp", batch)
    assert key != graph_key("sst", {k: v[:, :16] for k, v in batch.items()})
    assert key != graph_key("sst", {k: v[:3] for k, v in batch.items()})  # an epoch's last, smaller batch
    assert graph_key("sst", {**batch, "teacher_targets": torch.zeros(4)}) is None  # distillation runs eagerly


def test_policy_captures_after_warmup_and_caps_the_graphs():
    policy = GraphPolicy(warmup=2, max_graphs=1)
    assert [policy.action(("a",)) for _ in range(4)] == ["eager", "eager", "capture", "replay"]
    assert [policy.action(("b",)) for _ in range(4)] == ["eager"] * 4  # over max_graphs: stays eager
    assert policy.action(None) == "eager"
    assert policy.summary() == "1 graphs captured, 1 replays, 7 eager calls"


def test_training_graphs_replay_what_was_captured_and_fall_back_to_eager(make_model, monkeypatch):
    model = make_model({"sst": {"classifier_dropout": 0.0}}).train()  # no dropout: passes comparable
    batch = {
        "input_ids": torch.randint(5, 50, (4, 8)),
        "attention_mask": torch.ones(4, 8, dtype=torch.long),
        "labels": torch.tensor([0, 1, 2, 3]),
    }
    captured = []

    def fake_capture(self, model, task, keys, tensors):  # what make_graphed_callables returns, run eagerly
        from mtbert.training.cuda_graphs import TaskLoss

        module = TaskLoss(model, task, keys, None)
        captured.append((task, keys, tuple(t.shape for t in tensors)))
        return lambda *args: module.model(task=task, **dict(zip(keys, args))).loss

    monkeypatch.setattr(TrainingGraphs, "_capture", fake_capture)
    graphs = TrainingGraphs("on", policy=GraphPolicy(warmup=1))
    eager_calls = []

    def eager():
        eager_calls.append(1)
        return model(task="sst", **batch).loss

    losses = [graphs.loss(model, "sst", batch, eager) for _ in range(3)]
    assert len(eager_calls) == 1 and captured == [("sst", ("input_ids", "attention_mask", "labels"), ((4, 8),) * 2 + (
        (4,),))]  # fmt: skip
    for loss in losses[1:]:
        torch.testing.assert_close(loss, losses[0])
    model.eval()  # evaluation never goes through graphs
    graphs.loss(model, "sst", batch, eager)
    assert len(eager_calls) == 2


def test_the_trainer_has_no_graphs_on_the_cpu(make_model, tmp_path):
    from mtbert.training.trainer import MultitaskTrainer

    args = MultitaskTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", static_shapes=True)
    assert args.cuda_graphs == "auto"
    assert MultitaskTrainer(model=make_model(["sst"]), args=args)._cuda_graphs is None


@needs_cuda
def test_captured_step_equals_the_eager_step_on_cuda(make_model):  # pragma: no cover - CUDA only
    model = make_model({"sst": {"classifier_dropout": 0.0}}).cuda().train()
    batch = {
        "input_ids": torch.randint(5, 50, (4, 16), device="cuda"),
        "attention_mask": torch.ones(4, 16, dtype=torch.long, device="cuda"),
        "labels": torch.tensor([0, 1, 2, 3], device="cuda"),
    }
    model.zero_grad()
    eager = model(task="sst", **batch).loss
    eager.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    graphs = TrainingGraphs("on", policy=GraphPolicy(warmup=0))
    model.zero_grad()
    loss = graphs.loss(model, "sst", batch, lambda: model(task="sst", **batch).loss)
    model.zero_grad()
    loss = graphs.loss(model, "sst", batch, lambda: model(task="sst", **batch).loss)  # a replay
    loss.backward()
    torch.testing.assert_close(loss, eager.detach().float(), atol=1e-5, rtol=1e-5)
    for name, grad in reference.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=1e-5, rtol=1e-4)


def test_a_failed_capture_leaves_that_shape_eager(make_model, monkeypatch, caplog):
    model = make_model({"sst": {"classifier_dropout": 0.0}}).train()
    batch = {"input_ids": torch.randint(5, 50, (2, 6)), "labels": torch.tensor([0, 1])}

    def failing_capture(self, *args):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(TrainingGraphs, "_capture", failing_capture)
    graphs = TrainingGraphs("on", policy=GraphPolicy(warmup=0))
    with caplog.at_level("WARNING", logger="mtbert.training.cuda_graphs"):
        losses = [graphs.loss(model, "sst", batch, lambda: model(task="sst", **batch).loss) for _ in range(3)]
    assert all(torch.isfinite(loss) for loss in losses)
    assert sum("failed" in r.getMessage() for r in caplog.records) == 1
    assert graphs.policy.summary() == "0 graphs captured, 0 replays, 2 eager calls, 1 captures failed"


def test_the_captured_forward_bypasses_accelerates_autocast_wrapper(make_model):
    """Accelerate replaces a prepared model's forward by one inside a cached autocast; the graph must capture the
    forward as defined (kept as ``_original_forward``), under an autocast without a cache."""
    from mtbert.training.cuda_graphs import TaskLoss

    model = make_model({"sst": {"classifier_dropout": 0.0}}).eval()
    original = model.forward

    def wrapped(*args, **kwargs):
        raise AssertionError("the cached-autocast wrapper ran inside the graph")

    model._original_forward, model.forward = original, wrapped
    batch = {"input_ids": torch.randint(5, 50, (2, 6)), "labels": torch.tensor([0, 1])}
    loss = TaskLoss(model, "sst", tuple(batch), None)(*batch.values())
    torch.testing.assert_close(loss, original(task="sst", **batch).loss)
