"""Attention without cuDNN's kernel on CUDA (``modeling_mtbert.sdpa_kernels``): the flags inside and after the
context, and that training, evaluation, prediction and the pipeline enter it with their device and the
``cudnn_attention`` setting."""

from __future__ import annotations

import contextlib

import pytest
import torch
from test_pcgrad_step import first_batch, make_data, make_model, tok, trainer_for  # noqa: F401  (tok: a fixture)
from transformers import HfArgumentParser

import mtbert.modeling_mtbert
import mtbert.predict
import mtbert.trainer
from mtbert.modeling_mtbert import sdpa_kernels
from mtbert.pipeline_mtbert import MultitaskTextPipeline
from mtbert.training_args import MultitaskTrainingArguments


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


def test_cpu_attention_gives_the_same_result_inside():
    q, k, v = torch.randn(3, 2, 4, 5, 8).unbind(0)
    mask = torch.tensor([True, True, True, False, False]).expand(2, 4, 5, 5)
    outside = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with sdpa_kernels("cuda"):  # the CUDA flags do not touch CPU kernels
        inside = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(inside, outside, rtol=0, atol=0)


def recorder(monkeypatch, module):
    """Replace ``module.sdpa_kernels`` by a spy that records its arguments and still enters the real context."""
    calls = []

    def spy(device, cudnn=False):
        calls.append((mtbert.modeling_mtbert._as_device(device).type, cudnn))
        return sdpa_kernels(device, cudnn)

    monkeypatch.setattr(module, "sdpa_kernels", spy)
    return calls


@pytest.mark.parametrize("cudnn_attention", [False, True])
def test_training_step_enters_the_context_with_its_device_and_setting(tok, tmp_path, monkeypatch, cudnn_attention):  # noqa: F811
    calls = recorder(monkeypatch, mtbert.trainer)
    model = make_model(tok)
    trainer = trainer_for(model, make_data(tok, model), tmp_path, strategy="round_robin",
                          cudnn_attention=cudnn_attention)
    trainer.accelerator.gradient_state._set_sync_gradients(True)
    trainer.current_gradient_accumulation_steps = 1
    batch = first_batch(trainer)
    trainer.training_step(model, batch)
    assert calls == [("cpu", cudnn_attention)] * len(batch)  # one forward per task in the batch


def test_pcgrad_and_evaluation_enter_it_too(tok, tmp_path, monkeypatch):  # noqa: F811
    calls = recorder(monkeypatch, mtbert.trainer)
    model = make_model(tok)
    data = make_data(tok, model)
    trainer = trainer_for(model, data, tmp_path, strategy="pcgrad")
    trainer.accelerator.gradient_state._set_sync_gradients(True)
    trainer.current_gradient_accumulation_steps = 1
    trainer.training_step(model, first_batch(trainer))
    assert calls == [("cpu", False)] * 3
    calls.clear()
    metrics = trainer.evaluate(eval_dataset=data)
    assert "eval_average" in metrics
    assert calls and set(calls) == {("cpu", False)}


def test_prediction_enters_it_with_the_model_device(tok, monkeypatch):  # noqa: F811
    calls = recorder(monkeypatch, mtbert.predict)
    model = make_model(tok)
    data = make_data(tok, model, n=10)
    logits = mtbert.predict.task_logits(model, "sst", data["sst"], batch_size=4, progress=False)
    assert logits.shape == (10, 5)
    assert calls == [("cpu", False)] * 3  # one per batch of 4, 4, 2 rows


def test_cudnn_attention_is_off_by_default_and_parses_from_the_command_line(tmp_path):
    assert MultitaskTrainingArguments(output_dir=str(tmp_path)).cudnn_attention is False
    (args,) = HfArgumentParser(MultitaskTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--cudnn_attention", "true"]
    )
    assert args.cudnn_attention is True


def test_the_pipeline_enters_it_with_its_device(tok, monkeypatch):  # noqa: F811
    calls = recorder(monkeypatch, mtbert.modeling_mtbert)  # the pipeline imports it from there at call time
    pipe = MultitaskTextPipeline(model=make_model(tok).eval(), tokenizer=tok, device=-1)
    out = pipe(["good film", "dull plot", "great music"], task="sst", batch_size=2)
    assert len(out) == 3
    assert calls == [("cpu", False)] * 2  # one per batch of 2, 1 rows
