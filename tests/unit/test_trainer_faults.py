"""Faults during training: NaN/inf losses are skipped and counted, then stop the run; broken checkpoints are named."""

from __future__ import annotations

import json
import os

import datasets
import pytest
import torch
from transformers import TrainerCallback

from mtbert.data import tokenize_task
from mtbert.training.checkpoints import MARKER, CheckpointError, check_checkpoint, last_good_checkpoint, resolve_resume
from mtbert.training.trainer import MultitaskTrainer, NonFiniteLossError
from mtbert.training.training_args import MultitaskTrainingArguments

from conftest import tiny_model


def tiny(tokenizer):
    # one layer, 32 wide, 512 positions, BERT's default dropout
    overrides = {"num_hidden_layers": 1, "intermediate_size": 32, "max_position_embeddings": 512}
    overrides.update(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    tasks = {"sst": {}, "sts": {"pair_encoding": "cosine"}}
    return tiny_model(tasks, vocab_size=tokenizer.vocab_size, encoder_overrides=overrides)


def data(tokenizer, model, n=32):
    out = {}
    for task, spec in model.config.tasks.items():
        rows = {"id": [str(i) for i in range(n)], "text": [f"sentence number {i}" for i in range(n)]}
        if task == "sts":
            rows["text_pair"] = [f"another sentence {i}" for i in range(n)]
            rows["label"] = [float(i % 6) for i in range(n)]
        else:
            rows["label"] = [i % 5 for i in range(n)]
        out[task] = tokenize_task(datasets.Dataset.from_dict(rows), tokenizer, spec, 16)
    return out


def make_trainer(tokenizer, tmp_path, model=None, **args):
    model = model or tiny(tokenizer)
    settings = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        report_to="none",
        use_cpu=True,
        max_steps=6,
        logging_steps=1,
        disable_tqdm=True,
        save_strategy="no",
        learning_rate=1e-3,
    )
    settings.update(args)
    return MultitaskTrainer(
        model=model, args=MultitaskTrainingArguments(**settings), train_dataset=data(tokenizer, model)
    )


def poison(model, bad_calls: set[int]):
    """Make the model's loss NaN on the given forward calls (counted from 0)."""
    original = model.forward
    calls = {"n": 0}

    def forward(*args, **kwargs):
        out = original(*args, **kwargs)
        if calls["n"] in bad_calls and out.loss is not None:
            out.loss = out.loss * float("nan")
        calls["n"] += 1
        return out

    model.forward = forward


@pytest.mark.parametrize("strategy", ["round_robin", "pcgrad"])
def test_nonfinite_batches_are_skipped_and_counted(tokenizer, tmp_path, strategy):
    trainer = make_trainer(tokenizer, tmp_path, strategy=strategy, max_nonfinite_steps=3)
    per_step = 1 if strategy == "round_robin" else 2
    poison(trainer.model, {per_step * 2})  # a task loss of the third step
    trainer.train()
    assert trainer.nonfinite_skipped == 1
    history = trainer.state.log_history
    assert any(h.get("nonfinite_batches_skipped") == 1 for h in history)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


class _StepSnapshots(TrainerCallback):
    """Every parameter and every optimizer state tensor (AdamW's exp_avg, exp_avg_sq, step) after each step."""

    def __init__(self):
        self.after: dict[int, tuple[dict, dict]] = {}

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        names = {id(p): n for n, p in model.named_parameters()}
        opt_state = {
            (names[id(p)], key): value.detach().clone() if torch.is_tensor(value) else value
            for p, values in optimizer.state.items()
            for key, value in values.items()
        }
        self.after[state.global_step] = (params, opt_state)


@pytest.mark.parametrize("strategy", ["pcgrad", "sum", "round_robin"])
def test_a_skipped_step_leaves_parameters_and_optimizer_state_byte_identical(tokenizer, tmp_path, strategy):
    """A NaN loss at step 3 (after AdamW has momentum): the parameters and the optimizer state after step 3 are
    those after step 2, bit for bit (no momentum or weight decay acting on a zero gradient); steps 2 and 4 move."""
    trainer = make_trainer(tokenizer, tmp_path, strategy=strategy, max_nonfinite_steps=3, weight_decay=0.1)
    snapshots = _StepSnapshots()
    trainer.add_callback(snapshots)
    per_step = 1 if strategy == "round_robin" else 2
    poison(trainer.model, {per_step * 2})  # the first task loss of the third step
    trainer.train()
    assert trainer.nonfinite_skipped == 1
    (params2, state2), (params3, state3), (params4, _) = (snapshots.after[k] for k in (2, 3, 4))
    assert state2 and state2.keys() == state3.keys()
    for name in params2:
        assert torch.equal(params2[name], params3[name]), name
    for key in state2:
        assert torch.equal(torch.as_tensor(state2[key]), torch.as_tensor(state3[key])), key
    assert any(not torch.equal(snapshots.after[1][0][n], params2[n]) for n in params2)  # a real step moves
    assert any(not torch.equal(params3[n], params4[n]) for n in params3)


def test_too_many_nonfinite_batches_in_a_row_stop_with_a_clear_error(tokenizer, tmp_path):
    trainer = make_trainer(tokenizer, tmp_path, max_nonfinite_steps=2)
    poison(trainer.model, {1, 2, 3, 4, 5})
    with pytest.raises(NonFiniteLossError, match="2 training batches in a row had a NaN or infinite loss"):
        trainer.train()


def test_checkpoints_are_marked_complete_and_broken_ones_are_named(tokenizer, tmp_path):
    trainer = make_trainer(tokenizer, tmp_path, save_strategy="steps", save_steps=2, max_steps=6)
    trainer.train()
    folders = [tmp_path / f"checkpoint-{s}" for s in (2, 4, 6)]
    for folder in folders:
        check_checkpoint(str(folder))
        assert json.loads((folder / MARKER).read_text())["global_step"] == int(folder.name.split("-")[1])
    # a run killed while saving: the newest folder has no marker -> named, and the previous one is used instead
    os.remove(folders[2] / MARKER)
    with pytest.raises(CheckpointError, match=r"checkpoint-6.*no mtbert_checkpoint.json"):
        check_checkpoint(str(folders[2]))
    warnings = []
    assert last_good_checkpoint(str(tmp_path), warnings.append) == str(folders[1])
    assert "checkpoint-6" in warnings[0]
    assert resolve_resume("last", str(tmp_path)) == str(folders[1])
    # truncated weights
    weights = folders[1] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"checkpoint-4.*model.safetensors is unreadable"):
        check_checkpoint(str(folders[1]))
    assert resolve_resume(True, str(tmp_path)) == str(folders[0])
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_resume(str(tmp_path / "checkpoint-99"), str(tmp_path))


def test_save_total_limit_still_rotates_after_the_marker(tokenizer, tmp_path):
    trainer = make_trainer(tokenizer, tmp_path, save_strategy="steps", save_steps=2, max_steps=6, save_total_limit=1)
    trainer.train()
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-6"]


def test_same_seed_and_config_give_identical_metrics(tokenizer, tmp_path):
    """Determinism on CPU: two runs with the same seed and config end with identical dev metrics and weights."""
    results = []
    for run in ("a", "b"):
        model = tiny(tokenizer)
        trainer = make_trainer(tokenizer, tmp_path / run, model=model, seed=11, task_sampling="temperature")
        trainer.eval_dataset = data(tokenizer, model, n=24)
        trainer.train()
        metrics = {k: v for k, v in trainer.evaluate().items() if not k.endswith("runtime")}
        results.append((metrics, {k: v.clone() for k, v in model.state_dict().items()}))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(results[0][1][k], results[1][1][k]) for k in results[0][1])


def test_no_unsafe_deserialisation_in_the_package():
    """Weights only through safetensors; no pickle, no eval, no yaml.load, no torch.load without weights_only."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "mtbert"
    offenders = []
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for pattern in (r"\bpickle\.loads?\(", r"(?<![\w.])eval\(", r"yaml\.load\(", r"yaml\.unsafe_load"):
            if re.search(pattern, text):
                offenders.append(f"{path.name}: {pattern}")
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call:
                offenders.append(f"{path.name}: {call}")
    assert not offenders, offenders


def test_every_model_load_reads_safetensors_only():
    """Every ``*Model*.from_pretrained(...)`` in the package, the research tools and the example scripts passes
    ``use_safetensors=True`` (or ``**kwargs`` that set it), so no entry point can unpickle a ``pytorch_model.bin``;
    and the unsafe calls of the test above appear in none of them."""
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders, seen = [], 0
    for folder in ("mtbert", "mtbert_research", "examples"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for pattern in (r"\bpickle\.loads?\(", r"yaml\.unsafe_load"):
                if re.search(pattern, text):
                    offenders.append(f"{path.name}: {pattern}")
            for node in ast.walk(ast.parse(text)):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                owner = ast.unparse(node.func.value)
                loads = node.func.attr == "torch_load" or (node.func.attr == "load" and owner == "torch")
                if loads and not any(k.arg == "weights_only" for k in node.keywords):
                    offenders.append(f"{path.name}:{node.lineno}: torch.load without weights_only")
                if node.func.attr != "from_pretrained" or "Model" not in owner:
                    continue
                seen += 1
                safe = any(k.arg == "use_safetensors" and ast.unparse(k.value) == "True" for k in node.keywords)
                through_kwargs = any(k.arg is None for k in node.keywords) and '"use_safetensors", True' in text
                if not (safe or through_kwargs):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}: {owner}.from_pretrained")
    assert seen >= 5  # the loaders are found at all
    assert not offenders, offenders
