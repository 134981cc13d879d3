"""Attention without cuDNN's kernel on CUDA (``modeling_mtbert.sdpa_kernels``): the flags inside and after the
context, and that training, evaluation, prediction and the pipeline enter it with their device and the
``cudnn_attention`` setting."""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers import HfArgumentParser

import mtbert.inference.predict
import mtbert.models.mtbert.modeling_mtbert
import mtbert.training.steps
from mtbert.models.mtbert.modeling_mtbert import sdpa_kernels
from mtbert.models.mtbert.pipeline_mtbert import MultitaskTextPipeline
from mtbert.training.training_args import MultitaskTrainingArguments

from conftest import leaderboard_predictions_kwargs
from random_tasks import first_batch, make_data, make_model, trainer_for


def flags() -> dict[str, bool]:
    cuda = torch.backends.cuda
    return {
        "cudnn": cuda.cudnn_sdp_enabled(),
        "flash": cuda.flash_sdp_enabled(),
        "efficient": cuda.mem_efficient_sdp_enabled(),
        "math": cuda.math_sdp_enabled(),
    }


ALL_ON = {"cudnn": True, "flash": True, "efficient": True, "math": True}


def test_the_default_flags_allow_every_kernel():
    assert flags() == ALL_ON  # what the checks below start from


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda", 1), 0])  # 0: a pipeline's cuda:0
def test_on_cuda_only_cudnn_is_left_out_and_restored_after(device):
    with sdpa_kernels(device):
        assert flags() == {**ALL_ON, "cudnn": False}
    assert flags() == ALL_ON


def test_an_error_inside_still_restores_the_flags():
    with pytest.raises(RuntimeError, match="inside"), sdpa_kernels("cuda"):
        raise RuntimeError("inside")
    assert flags() == ALL_ON


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "meta", None, -1])  # -1: a pipeline's CPU
def test_off_cuda_nothing_changes(device):
    context = sdpa_kernels(device)
    assert isinstance(context, contextlib.nullcontext)
    with context:
        assert flags() == ALL_ON


def test_cudnn_true_leaves_the_choice_to_pytorch():
    with sdpa_kernels("cuda", cudnn=True):
        assert flags() == ALL_ON


def forcing_cuda(monkeypatch, module):
    """Replace ``module.sdpa_kernels`` by a spy that records ``(device type, cudnn)`` and enters the context as if
    the device were CUDA, so the flags really change on this CPU machine and what a forward saw can be checked."""
    calls = []

    def spy(device, cudnn=False):
        calls.append((mtbert.models.mtbert.modeling_mtbert._as_device(device).type, cudnn))
        return sdpa_kernels("cuda", cudnn)

    monkeypatch.setattr(module, "sdpa_kernels", spy)
    return calls


def attention_sees(model) -> list[bool]:
    """Whether cuDNN attention was allowed, at each run of the first encoder layer's attention (forward hooks fire
    again when gradient checkpointing recomputes the layer during backward)."""
    seen = []
    attention = model.encoder.encoder.layer[0].attention.self
    attention.register_forward_hook(lambda module, args, output: seen.append(flags()["cudnn"]))
    return seen


def one_step(trainer, model):
    trainer.accelerator.gradient_state._set_sync_gradients(True)
    trainer.current_gradient_accumulation_steps = 1
    batch = first_batch(trainer)
    trainer.training_step(model, batch)
    return batch


@pytest.mark.parametrize("cudnn_attention", [False, True])
@pytest.mark.parametrize("strategy", ["round_robin", "pcgrad"])
def test_a_training_step_runs_its_attention_in_the_context(
    tokenizer, tmp_path, monkeypatch, strategy, cudnn_attention
):
    calls = forcing_cuda(monkeypatch, mtbert.training.steps)
    model = make_model(tokenizer)
    seen = attention_sees(model)
    trainer = trainer_for(
        model, make_data(tokenizer, model), tmp_path, strategy=strategy, cudnn_attention=cudnn_attention
    )
    one_step(trainer, model)
    assert calls and set(calls) == {("cpu", cudnn_attention)}
    assert seen and all(allowed is cudnn_attention for allowed in seen), seen
    assert flags() == ALL_ON  # restored after the step


@pytest.mark.parametrize("strategy", ["round_robin", "pcgrad"])
def test_gradient_checkpointing_recomputes_in_the_context_too(tokenizer, tmp_path, monkeypatch, strategy):
    """The recompute runs during backward, after every forward context has closed: the whole step is inside."""
    forcing_cuda(monkeypatch, mtbert.training.steps)
    model = make_model(tokenizer)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    seen = attention_sees(model)
    trainer = trainer_for(model, make_data(tokenizer, model), tmp_path, strategy=strategy, gradient_checkpointing=True,
                          gradient_checkpointing_kwargs={"use_reentrant": False})  # fmt: skip
    batch = one_step(trainer, model)
    encoder_passes = len(seen) // 2
    assert len(seen) == 2 * encoder_passes >= 2 * len(batch)  # each pass ran twice: forward, then recompute
    assert not any(seen), seen


def test_evaluation_runs_its_attention_in_the_context(tokenizer, tmp_path, monkeypatch):
    calls = forcing_cuda(monkeypatch, mtbert.training.steps)
    model = make_model(tokenizer)
    data = make_data(tokenizer, model)
    trainer = trainer_for(model, data, tmp_path, strategy="round_robin")
    seen = attention_sees(model)
    metrics = trainer.evaluate(eval_dataset=data)
    assert "eval_average" in metrics
    assert calls and set(calls) == {("cpu", False)}
    assert seen and not any(seen)


@pytest.mark.parametrize("cudnn_attention", [False, True])
def test_prediction_runs_its_attention_in_the_context(tokenizer, monkeypatch, cudnn_attention):
    calls = forcing_cuda(monkeypatch, mtbert.inference.predict)
    model = make_model(tokenizer)
    seen = attention_sees(model)
    data = make_data(tokenizer, model, n=10)
    logits = mtbert.inference.predict.task_logits(model, "sst", data["sst"], batch_size=4, progress=False,
                                        cudnn_attention=cudnn_attention)  # fmt: skip
    assert logits.shape == (10, 5)
    assert calls == [("cpu", cudnn_attention)] * 3  # one per batch of 4, 4, 2 rows
    assert seen == [cudnn_attention] * 3


def test_the_runs_leaderboard_files_follow_its_cudnn_attention(monkeypatch):
    seen = leaderboard_predictions_kwargs(monkeypatch, cudnn_attention=True)
    assert seen["cudnn_attention"] is True


def test_the_pipeline_runs_its_attention_in_the_context(tokenizer, monkeypatch):
    # the pipeline imports it from there at call time
    calls = forcing_cuda(monkeypatch, mtbert.models.mtbert.modeling_mtbert)
    model = make_model(tokenizer).eval()
    seen = attention_sees(model)
    pipe = MultitaskTextPipeline(model=model, tokenizer=tokenizer, device=-1)
    out = pipe(["good film", "dull plot", "great music"], task="sst", batch_size=2)
    assert len(out) == 3
    assert calls == [("cpu", False)] * 2  # one per batch of 2, 1 rows
    assert seen == [False, False]


def test_cudnn_attention_is_off_by_default_and_parses_from_the_command_line(tmp_path):
    assert MultitaskTrainingArguments(output_dir=str(tmp_path)).cudnn_attention is False
    (args,) = HfArgumentParser(MultitaskTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--cudnn_attention", "true"]
    )
    assert args.cudnn_attention is True
