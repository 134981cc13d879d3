"""Speed settings (issue 18): ``bf16: auto`` decided by the hardware or a start-up measurement, and the word-embedding
matrix trained densely, sparsely (touched rows only, :class:`~mtbert.training.optimization.RowSparseAdamW`) or
frozen."""

from __future__ import annotations

import pytest
import torch
import yaml

from mtbert import MultitaskConfigError
from mtbert import precision as precision_module
from mtbert.cli.arguments import parse_args
from mtbert.training.optimization import RowSparseAdamW, word_embedding_weights
from mtbert.training.trainer import MultitaskTrainer
from mtbert.training.training_args import MultitaskTrainingArguments

from conftest import tiny_model as make_tiny_model
from random_tasks import make_data

TASKS = {
    "sst": {"classifier_dropout": 0.0},
    "qqp": {"pair_encoding": "concat_sep", "classifier_dropout": 0.0},
    "sts": {"pair_encoding": "cosine", "pooling": "mean"},
}


# -- RowSparseAdamW ---------------------------------------------------------------------------------------------


def test_row_sparse_adamw_is_adamw_when_every_row_has_gradient():
    torch.manual_seed(0)
    dense = torch.nn.Parameter(torch.randn(12, 5))
    lazy = torch.nn.Parameter(dense.detach().clone())
    reference = torch.optim.AdamW([dense], lr=1e-2, weight_decay=0.1, foreach=False)
    optimizer = RowSparseAdamW([{"params": [lazy], "rows_only": True}], lr=1e-2, weight_decay=0.1)
    for _ in range(6):
        grad = torch.randn(12, 5)
        dense.grad, lazy.grad = grad.clone(), grad.clone()
        reference.step()
        optimizer.step()
    torch.testing.assert_close(lazy.detach(), dense.detach(), rtol=0, atol=1e-6)


def test_row_sparse_adamw_leaves_untouched_rows_and_their_moments_alone():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(8, 3))
    other = torch.nn.Parameter(torch.randn(4))  # a plain group beside it still gets ordinary AdamW
    optimizer = RowSparseAdamW(
        [{"params": [weight], "rows_only": True}, {"params": [other]}], lr=1e-1, weight_decay=0.5
    )
    start, other_start = weight.detach().clone(), other.detach().clone()
    grad = torch.zeros(8, 3)
    grad[[1, 5]] = torch.randn(2, 3)
    weight.grad, other.grad = grad, torch.ones(4)
    optimizer.step()
    moved = (weight.detach() != start).any(dim=1)
    assert moved.tolist() == [False, True, False, False, False, True, False, False]
    assert not torch.equal(other.detach(), other_start)
    assert weight.grad is grad  # the gradient is handed back after the dense step
    state = optimizer.state[weight]
    assert state["exp_avg"][[0, 2, 3, 4, 6, 7]].abs().sum() == 0
    # a second step touching other rows: rows 1 and 5 (momentum but no gradient now) stay where they are
    after_first = weight.detach().clone()
    weight.grad = torch.zeros(8, 3)
    weight.grad[0] = 1.0
    optimizer.step()
    assert torch.equal(weight.detach()[1:], after_first[1:])
    assert not torch.equal(weight.detach()[0], after_first[0])


def test_row_sparse_adamw_state_round_trips_for_resume():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(6, 2))
    b = torch.nn.Parameter(a.detach().clone())
    grads = [torch.randn(6, 2) * (torch.rand(6, 1) > 0.5) for _ in range(4)]
    first = RowSparseAdamW([{"params": [a], "rows_only": True}], lr=1e-2)
    second = RowSparseAdamW([{"params": [b], "rows_only": True}], lr=1e-2)
    for grad in grads[:2]:
        a.grad, b.grad = grad.clone(), grad.clone()
        first.step()
        second.step()
    resumed = RowSparseAdamW([{"params": [b], "rows_only": True}], lr=1e-2)
    resumed.load_state_dict(second.state_dict())
    for grad in grads[2:]:
        a.grad, b.grad = grad.clone(), grad.clone()
        first.step()
        resumed.step()
    torch.testing.assert_close(b.detach(), a.detach(), rtol=0, atol=0)


# -- embedding_updates in the trainer ---------------------------------------------------------------------------


def tiny_model(tokenizer):
    # 16 wide, one layer, 512 positions: smaller than the conftest default
    overrides = {"hidden_size": 16, "num_hidden_layers": 1, "intermediate_size": 24, "max_position_embeddings": 512}
    return make_tiny_model(TASKS, vocab_size=tokenizer.vocab_size, encoder_overrides=overrides)


def train(tokenizer, tmp_path, **settings):
    model = tiny_model(tokenizer)
    data = make_data(tokenizer, model)  # random_tasks' random sentences and labels for sst/qqp/sts
    args = MultitaskTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        report_to="none",
        use_cpu=True,
        max_steps=4,
        learning_rate=1e-2,
        weight_decay=0.1,
        disable_tqdm=True,
        save_strategy="no",
        seed=1,
        **settings,
    )
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = MultitaskTrainer(model=model, args=args, train_dataset=data)
    trainer.train()
    used = torch.unique(
        torch.cat(
            [
                torch.as_tensor(ids)
                for d in data.values()
                for c in ("input_ids", "input_ids_b")
                if c in d.column_names
                for ids in d[c]
            ]
        )
    )
    return model, trainer, before, used


def test_sparse_embedding_updates_move_only_the_rows_of_seen_tokens(tokenizer, tmp_path):
    model, trainer, before, used = train(tokenizer, tmp_path / "sparse", embedding_updates="sparse")
    name = "encoder.embeddings.word_embeddings.weight"
    weight = dict(model.named_parameters())[name].detach()
    moved = (weight != before[name]).any(dim=1)
    assert isinstance(
        trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer, RowSparseAdamW
    )
    assert moved[used].all()
    unseen = torch.ones(len(moved), dtype=torch.bool)
    unseen[used] = False
    assert not moved[unseen].any()
    layer = "encoder.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(dict(model.named_parameters())[layer].detach(), before[layer])


def test_dense_updates_move_unseen_rows_through_weight_decay(tokenizer, tmp_path):
    """The contrast that makes the sparse test meaningful: stock AdamW decays every row."""
    model, _, before, _used = train(tokenizer, tmp_path / "dense")
    name = "encoder.embeddings.word_embeddings.weight"
    moved = (dict(model.named_parameters())[name].detach() != before[name]).any(dim=1)
    assert moved.float().mean() > 0.99


def test_frozen_embeddings_do_not_train_and_hold_no_optimizer_state(tokenizer, tmp_path):
    model, trainer, before, _ = train(tokenizer, tmp_path / "frozen", embedding_updates="frozen", strategy="pcgrad")
    (weight,) = word_embedding_weights(model)
    assert not weight.requires_grad
    assert torch.equal(weight.detach(), before["encoder.embeddings.word_embeddings.weight"])
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    assert all(p is not weight for group in optimizer.param_groups for p in group["params"])
    layer = "encoder.encoder.layer.0.output.dense.weight"
    assert not torch.equal(dict(model.named_parameters())[layer].detach(), before[layer])


def test_sparse_updates_under_pcgrad_train(tokenizer, tmp_path):
    model, _, before, used = train(tokenizer, tmp_path / "pcgrad", embedding_updates="sparse", strategy="pcgrad")
    name = "encoder.embeddings.word_embeddings.weight"
    moved = (dict(model.named_parameters())[name].detach() != before[name]).any(dim=1)
    assert moved[used].any() and moved.sum() <= len(used)


def test_embedding_update_mistakes_are_one_line_errors(tmp_path):
    common = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(MultitaskConfigError, match="embedding_updates: 'lazy' is not one of dense, sparse, frozen"):
        MultitaskTrainingArguments(embedding_updates="lazy", **common)
    with pytest.raises(MultitaskConfigError, match="optim is sgd"):
        MultitaskTrainingArguments(embedding_updates="sparse", optim="sgd", **common)


# -- bf16: auto -------------------------------------------------------------------------------------------------


@pytest.fixture
def cpu(monkeypatch):
    """``cpu(amx=..., avx512_bf16=..., speedup=...)``: pretend to be that CPU; records whether it measured."""

    def pretend(amx=False, avx512_bf16=False, speedup=1.0):
        measured = []
        monkeypatch.setattr(
            precision_module, "cpu_flags", lambda: {"model": "test CPU", "amx_bf16": amx, "avx512_bf16": avx512_bf16}
        )
        monkeypatch.setattr(
            precision_module, "measure_bf16_speedup", lambda device="cpu", steps=3: measured.append(device) or speedup
        )
        monkeypatch.setattr(precision_module.torch.cuda, "is_available", lambda: False)
        return measured

    return pretend


def test_bf16_auto_follows_the_hardware_and_measures_only_without_amx(cpu):
    measured = cpu(amx=True, avx512_bf16=True)
    assert precision_module.choose_bf16("auto") == (True, "CPU has AMX (amx_bf16)")
    assert measured == []
    cpu(amx=False, avx512_bf16=False)
    assert precision_module.choose_bf16("auto")[0] is False
    measured = cpu(avx512_bf16=True, speedup=1.5)
    on, why = precision_module.choose_bf16("auto")
    assert on and "1.50x" in why and measured == ["cpu"]
    cpu(avx512_bf16=True, speedup=0.7)
    on, why = precision_module.choose_bf16("auto")
    assert not on and "0.70x" in why
    measured = cpu(avx512_bf16=True, speedup=1.5)
    on, why = precision_module.choose_bf16("auto", allow_measurement=False)
    assert not on and measured == [] and "several processes" in why


def test_training_arguments_decide_bf16_auto_and_keep_the_reason(cpu, tmp_path, monkeypatch):
    monkeypatch.setattr("mtbert.training.training_args.has_accelerator", lambda: False)
    cpu(avx512_bf16=True, speedup=1.4)
    args = MultitaskTrainingArguments(output_dir=str(tmp_path), report_to="none", bf16="auto")
    assert args.bf16 is True and args.use_cpu is True and "1.40x" in args.bf16_reason
    cpu(avx512_bf16=True, speedup=0.8)
    args = MultitaskTrainingArguments(output_dir=str(tmp_path), report_to="none", bf16="auto")
    assert args.bf16 is False and "0.80x" in args.bf16_reason
    measured = cpu(avx512_bf16=True, speedup=1.4)  # under torchrun each rank would measure alone: off, said why
    on, why = precision_module.resolve_bf16("auto", use_cpu=True, processes=2)
    assert on is False and measured == [] and "several processes" in why
    with pytest.raises(MultitaskConfigError, match="bf16: 'sometimes' is not one of auto, measure, true, false"):
        MultitaskTrainingArguments(output_dir=str(tmp_path), report_to="none", bf16="sometimes")


def test_bf16_auto_from_yaml_and_command_line(cpu, tmp_path, capsys):
    cpu(amx=True, avx512_bf16=True)
    (tmp_path / "data").mkdir()
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "output_dir": str(tmp_path / "out"),
                "report_to": "none",
                "use_cpu": True,
                "bf16": "auto",
                "model_name_or_path": str(tmp_path),
            }
        )
    )
    _, _, training_args = parse_args([str(config)])
    assert training_args.bf16 is True and training_args.bf16_reason == "CPU has AMX (amx_bf16)"
    _, _, training_args = parse_args([str(config), "--bf16", "false"])
    assert training_args.bf16 is False and training_args.bf16_reason is None
    cpu(avx512_bf16=True, speedup=0.5)
    _, _, training_args = parse_args([str(config), "--bf16=auto"])
    assert training_args.bf16 is False and "0.50x" in training_args.bf16_reason
    # argparse's own mistakes are one MultitaskConfigError line too (tests/cli/test_settings_properties.py)
    with pytest.raises(MultitaskConfigError, match="bf16: 'maybe' is not one of true, false, auto, measure"):
        parse_args([str(config), "--bf16", "maybe"])


def test_the_start_up_measurement_is_a_real_timing_that_leaves_the_random_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    speedup = precision_module.measure_bf16_speedup(steps=1)
    assert speedup > 0 and speedup == speedup  # a finite positive ratio of two timings
    torch.testing.assert_close(torch.rand(3), expected)
