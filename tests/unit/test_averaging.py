"""Checkpoint weight averaging (mtbert.inference.averaging) and examples/average_checkpoints.py, on tiny random
models."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mtbert import MultitaskBertModel, MultitaskConfigError
from mtbert.data import tokenize_task
from mtbert.inference.averaging import (
    average_checkpoints,
    find_checkpoints,
    load_averaged_model,
    load_state_dict_strictly,
)
from mtbert.inference.predict import predict_task
from mtbert.models.mtbert.configuration_mtbert import normalize_task_spec

from conftest import load_example_script, toy_dataset

ROOT = Path(__file__).resolve().parents[2]

TASKS = {
    "sst": {"classifier_dropout": 0.0},
    "qqp": {"classifier_dropout": 0.0},
    "sts": {"pair_encoding": "cosine", "pooling": "mean"},
}

RAW = {
    "sst": {
        "text": ["a great film", "awful", "fine i guess", "not bad at all", "boring and long", "meh"],
        "label": [4, 0, 2, 3, 1, 2],
    },
    "qqp": {
        "text": ["how do i cook rice", "why is the sky blue", "what is love", "who am i"],
        "text_pair": ["how to cook rice", "what color is the sea", "what is love exactly", "why"],
        "label": [1, 0, 1, 0],
    },
    "sts": {
        "text": ["a man sings", "a dog runs", "two cats", "a red car"],
        "text_pair": ["a man is singing", "a cat sleeps", "two cats sit", "a blue car"],
        "label": [4.8, 0.5, 3.9, 2.5],
    },
}


@pytest.fixture(scope="module")
def data(tokenizer):
    datasets.disable_progress_bars()
    try:
        out = {}
        for task, raw in RAW.items():
            out[task] = tokenize_task(
                toy_dataset(task, raw), tokenizer, normalize_task_spec(task, TASKS[task]), max_length=16
            )
        yield out
    finally:
        datasets.enable_progress_bars()


def save(model, folder: Path, tokenizer=None) -> Path:
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------------------------------------------
# find_checkpoints
# ----------------------------------------------------------------------------------------------------------------


def test_find_checkpoints_sorts_by_step_not_by_name(tmp_path):
    for name in ("checkpoint-10", "checkpoint-9", "checkpoint-100", "checkpoint-2", "checkpoint-x", "runs"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-5").write_text("a file, not a folder")
    found = find_checkpoints(str(tmp_path))
    assert [Path(f).name for f in found] == ["checkpoint-2", "checkpoint-9", "checkpoint-10", "checkpoint-100"]
    assert find_checkpoints(str(tmp_path / "missing")) == []
    (tmp_path / "checkpoint-9" / "mtbert_checkpoint.json").write_text("{}")
    assert [Path(f).name for f in find_checkpoints(str(tmp_path), complete_only=True)] == ["checkpoint-9"]


# ----------------------------------------------------------------------------------------------------------------
# average_checkpoints / load_averaged_model
# ----------------------------------------------------------------------------------------------------------------


def test_two_checkpoints_average_to_the_elementwise_mean(make_model, tmp_path):
    a = save(make_model(TASKS, seed=0), tmp_path / "checkpoint-1")
    b = save(make_model(TASKS, seed=1), tmp_path / "checkpoint-2")
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    averaged = average_checkpoints([str(a), str(b)])
    assert averaged.keys() == wa.keys()
    key = "encoder.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(wa[key], wb[key])
    torch.testing.assert_close(averaged[key], (wa[key] + wb[key]) / 2, rtol=0, atol=1e-7)
    for name in averaged:
        assert averaged[name].dtype == wa[name].dtype
        torch.testing.assert_close(averaged[name], (wa[name] + wb[name]) / 2, rtol=0, atol=1e-6)

    model = load_averaged_model([a, b])
    state = model.state_dict()
    assert set(state) == set(averaged)
    torch.testing.assert_close(
        state["heads.sst.out_proj.weight"], averaged["heads.sst.out_proj.weight"], rtol=0, atol=0
    )
    assert not model.training


def test_non_floating_tensors_come_from_the_last_and_dtype_is_the_first(tmp_path):
    for step, (value, count) in enumerate([(1.0, 3), (3.0, 7)], start=1):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        save_file(
            {"w": torch.full((2,), value, dtype=torch.bfloat16), "n": torch.tensor([count])},
            str(folder / "model.safetensors"),
        )
    averaged = average_checkpoints(find_checkpoints(str(tmp_path)))
    assert averaged["w"].dtype == torch.bfloat16 and averaged["w"].tolist() == [2.0, 2.0]
    assert averaged["n"].tolist() == [7]
    assert average_checkpoints(find_checkpoints(str(tmp_path)), dtype=torch.float32)["w"].dtype == torch.float32


def test_one_checkpoint_averaged_predicts_exactly_like_itself(make_model, tokenizer, data, tmp_path):
    model = make_model(TASKS, vocab_size=tokenizer.vocab_size, seed=3)
    folder = save(model, tmp_path / "checkpoint-7")
    original = MultitaskBertModel.from_pretrained(folder, dtype="float32", use_safetensors=True)
    averaged = load_averaged_model([str(folder)])
    for name, tensor in original.state_dict().items():
        assert torch.equal(tensor, averaged.state_dict()[name]), name
    for task, dataset in data.items():
        expected = predict_task(original, task, dataset, pad_token_id=tokenizer.pad_token_id, progress=False)
        got = predict_task(averaged, task, dataset, pad_token_id=tokenizer.pad_token_id, progress=False)
        np.testing.assert_array_equal(got["predictions"], expected["predictions"])
        np.testing.assert_array_equal(got["scores"], expected["scores"])


def test_checkpoints_of_different_models_name_the_key(make_model, tmp_path):
    a = save(make_model(TASKS), tmp_path / "a")
    b = save(make_model({"sst": {}, "qqp": {}, "sts": {}}), tmp_path / "b")  # sts gets a linear head
    with pytest.raises(MultitaskConfigError, match=r"has a tensor 'heads\.sts\.out_proj\.(weight|bias)'"):
        average_checkpoints([a, b])
    with pytest.raises(MultitaskConfigError, match=r"has no tensor 'heads\.sts\.out_proj\.(weight|bias)'"):
        average_checkpoints([b, a])
    c = save(
        make_model(
            {
                "sst": {"num_labels": 3, "label_names": ["a", "b", "c"]},
                "qqp": {"classifier_dropout": 0.0},
                "sts": TASKS["sts"],
            }
        ),
        tmp_path / "c",
    )
    with pytest.raises(MultitaskConfigError, match=r"'heads\.sst\.out_proj\.(weight|bias)' has shape \(5.*but \(3"):
        average_checkpoints([c, a])


def test_clear_errors_for_empty_lists_and_folders_without_weights(tmp_path):
    with pytest.raises(MultitaskConfigError, match="at least one checkpoint"):
        average_checkpoints([])
    (tmp_path / "checkpoint-3").mkdir()
    with pytest.raises(MultitaskConfigError, match=r"checkpoint-3' has no model\.safetensors"):
        average_checkpoints([tmp_path / "checkpoint-3"])
    with pytest.raises(MultitaskConfigError, match="does not exist"):
        average_checkpoints([tmp_path / "nope"])
    (tmp_path / "checkpoint-3" / "model.safetensors").write_bytes(b"\x00truncated")
    with pytest.raises(MultitaskConfigError, match="unreadable"):
        average_checkpoints([tmp_path / "checkpoint-3"])


def test_strict_loading_allows_only_tied_keys_to_be_absent():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(3, 3, bias=False)
            self.head = nn.Linear(3, 3, bias=False)
            self.head.weight = self.embed.weight
            self.other = nn.Linear(3, 1)

    module = Tied()
    state = {"embed.weight": torch.ones(3, 3), "other.weight": torch.zeros(1, 3), "other.bias": torch.zeros(1)}
    load_state_dict_strictly(module, state)  # head.weight is the tied copy save_pretrained leaves out
    assert torch.equal(module.head.weight, torch.ones(3, 3))
    with pytest.raises(MultitaskConfigError, match=r"lack 'other\.bias'"):
        load_state_dict_strictly(module, {k: v for k, v in state.items() if k != "other.bias"})
    with pytest.raises(MultitaskConfigError, match=r"hold 'stray'"):
        load_state_dict_strictly(module, {**state, "stray": torch.zeros(1)})
    with pytest.raises(MultitaskConfigError, match=r"'other\.bias' the shape \(2,\)"):
        load_state_dict_strictly(module, {**state, "other.bias": torch.zeros(2)})


def test_a_checkpoint_missing_a_weight_cannot_be_loaded(make_model, tmp_path):
    folder = save(make_model(TASKS), tmp_path / "checkpoint-1")
    weights = load_file(str(folder / "model.safetensors"))
    del weights["heads.qqp.out_proj.bias"]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(MultitaskConfigError, match=r"lack 'heads\.qqp\.out_proj\.bias'"):
        load_averaged_model([folder])


# ----------------------------------------------------------------------------------------------------------------
# Real Trainer checkpoints and the command line
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tokenizer, data, tmp_path_factory):
    """Three checkpoints (steps 1, 2, 3) of a tiny MultitaskTrainer run, one encoder per task."""
    from mtbert.training.trainer import MultitaskTrainer
    from mtbert.training.training_args import MultitaskTrainingArguments

    from conftest import tiny_model

    output_dir = tmp_path_factory.mktemp("run")
    model = tiny_model(TASKS, shared_encoder=False, vocab_size=tokenizer.vocab_size, seed=0)
    args = MultitaskTrainingArguments(
        output_dir=str(output_dir),
        report_to="none",
        use_cpu=True,
        per_device_train_batch_size=2,
        disable_tqdm=True,
        save_strategy="steps",
        save_steps=1,
        max_steps=3,
        learning_rate=1e-2,
        seed=0,
    )
    trainer = MultitaskTrainer(
        model=model, args=args, train_dataset=data, eval_dataset=data, processing_class=tokenizer
    )
    trainer.train()
    return output_dir, set(model.state_dict())


def test_trainer_checkpoints_hold_the_state_dict_keys_and_average(trained_run):
    output_dir, model_keys = trained_run
    checkpoints = find_checkpoints(str(output_dir), complete_only=True)
    assert [Path(c).name for c in checkpoints] == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    files = [load_file(str(Path(c) / "model.safetensors")) for c in checkpoints]
    assert set(files[0]) == model_keys  # nothing tied is left out, nothing extra is saved
    model = load_averaged_model(checkpoints)
    key = "encoders.sts.encoder.layer.1.output.dense.weight"  # round robin: sts trains at step 3
    assert not torch.equal(files[0][key], files[2][key])  # training moved it
    torch.testing.assert_close(model.state_dict()[key], sum(f[key] for f in files) / 3, rtol=0, atol=1e-6)


def test_average_checkpoints_script_saves_a_loadable_model(trained_run, tmp_path, capsys):
    output_dir, _ = trained_run
    out = tmp_path / "averaged"
    load_example_script("average_checkpoints").main(
        ["--from_output_dir", str(output_dir), "--last", "2", "--output_dir", str(out)]
    )
    assert "averaged 2 checkpoint(s)" in capsys.readouterr().out
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).vocab_size > 1000
    saved = MultitaskBertModel.from_pretrained(out, dtype="float32", use_safetensors=True).state_dict()
    expected = average_checkpoints([output_dir / "checkpoint-2", output_dir / "checkpoint-3"])
    for name, tensor in expected.items():
        torch.testing.assert_close(saved[name], tensor, rtol=0, atol=0)
    recorded = json.loads((out / "averaged_from.json").read_text())["checkpoints"]
    assert [Path(c).name for c in recorded] == ["checkpoint-2", "checkpoint-3"]

    explicit = tmp_path / "explicit"
    load_example_script("average_checkpoints").main(
        ["--checkpoints", str(output_dir / "checkpoint-3"), "--output_dir", str(explicit)]
    )
    single = MultitaskBertModel.from_pretrained(explicit, dtype="float32", use_safetensors=True).state_dict()
    assert all(
        torch.equal(single[k], v) for k, v in load_file(str(output_dir / "checkpoint-3" / "model.safetensors")).items()
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--last", "5"], r"--last 5: .* has only 3 checkpoint\(s\) \(checkpoint-1, checkpoint-2, checkpoint-3\)"),
        (["--last", "0"], r"--last must be at least 1"),
    ],
)
def test_average_checkpoints_script_user_errors(trained_run, tmp_path, capsys, argv, message):
    output_dir, _ = trained_run
    with pytest.raises(SystemExit) as exit_info:
        load_example_script("average_checkpoints").main(
            ["--from_output_dir", str(output_dir), *argv, "--output_dir", str(tmp_path / "o")]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mtbert: error: ")
    import re

    assert re.search(message, err[0]), err[0]


def test_average_checkpoints_script_missing_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_example_script("average_checkpoints").main(
            ["--checkpoints", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "o")]
        )
    assert exit_info.value.code == 2
    assert "nope' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
