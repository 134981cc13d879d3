"""Opt-in int8 dynamic quantization for CPU prediction (``modeling_mtbert.quantize_int8``): every head kind still
predicts (close to float32, with int8 linear layers really in place), ``examples/predict.py --quantize int8`` (one
model and an ensemble), ``pipeline(..., quantize="int8")`` (local and as remote code), and the refusals: another
device than the CPU, an unknown setting, ``quantize`` per call."""

from __future__ import annotations

import json
import logging
import textwrap

import datasets
import pytest
import torch
from test_pipeline import PAIRS, SENTENCES, TASKS, tiny_model
from torch import nn
from transformers import pipeline

from mtbert import MultitaskConfigError, MultitaskTextPipeline
from mtbert.hub import load_pipeline
from mtbert.inference.loading import load_model
from mtbert.inference.predict import task_logits
from mtbert.models.mtbert.modeling_mtbert import quantize_int8, quantized_linear_count, resolve_quantize
from mtbert.models.mtbert.pipeline_mtbert import collate_rows, encode_texts

from backbone_fixtures import FAMILIES
from conftest import load_example_script
from without_mtbert import run_without_mtbert

# Every head of test_pipeline, plus a three-class dual head (its cosine view is an nn.Linear(1, 3), kept float32).
HEADS = {**TASKS, "nli_dual": {"kind": "pair_classification", "num_labels": 3, "pair_encoding": "dual"}}

# Largest |quantized - float32| logit of the tiny random model (int8 weights and activations of a 32-wide encoder):
# measured at most 0.085 over every head and seeds 0-4, for logits up to 2.8 in size; a broken quantization (wrong
# weights, a layer skipped in the wrong place) moves them by their own size.
TOLERANCE = 0.15

QUANTIZATION_LINE = "int8 dynamic quantization of"


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(tokenizer, HEADS)


def float_linears(model) -> list[str]:
    """The linear layers quantize_int8 is to quantize: every nn.Linear with more than one input feature."""
    return [name for name, m in model.named_modules() if type(m) is nn.Linear and m.in_features > 1]


def batch_of(tokenizer, spec) -> dict[str, torch.Tensor]:
    pair = spec["kind"].startswith("pair")
    texts = [a for a, _ in PAIRS] if pair else SENTENCES
    encoded = encode_texts(tokenizer, spec, texts, [b for _, b in PAIRS] if pair else None, 48)
    rows = [{key: values[i] for key, values in encoded.items()} for i in range(len(texts))]
    return collate_rows(rows, tokenizer.pad_token_id or 0)


def quantization_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(QUANTIZATION_LINE)]


# ---------------------------------------------------------------------------------------------------------------
# quantize_int8 on every head
# ---------------------------------------------------------------------------------------------------------------


def test_every_head_predicts_close_to_float32_with_int8_linear_layers(model, tokenizer, caplog):
    caplog.set_level(logging.INFO, logger="mtbert")
    expected = len(float_linears(model))
    quantized = quantize_int8(model)
    assert quantized is not model and quantized_linear_count(model) == 0  # a copy: the float model is untouched
    assert quantized_linear_count(quantized) == expected > 0
    assert float_linears(quantized) == []  # nothing left in float32 but the one-input layers
    assert type(quantized.heads["nli_dual"].cosine) is nn.Linear  # the dual head's cosine → 3 class logits
    assert type(quantized.encoder.encoder.layer[0].attention.self.query).__name__ == "Linear"
    assert "quantized" in type(quantized.encoder.encoder.layer[0].attention.self.query).__module__
    assert quantization_lines(caplog) == [f"int8 dynamic quantization of {expected} linear layers (CPU prediction)"]
    for task, spec in model.config.tasks.items():
        batch = batch_of(tokenizer, spec)
        with torch.no_grad():
            reference = model(task=task, **batch).logits
            logits = quantized(task=task, **batch).logits
        assert logits.dtype == torch.float32 and logits.shape == reference.shape, task
        difference = (logits - reference).abs().max().item()
        assert difference <= TOLERANCE, (task, difference)
        if task != "qqp_cos":  # a cosine of two int8-encoded embeddings can round to the float32 one
            assert difference > 0, task  # the int8 kernels really ran
        if spec["kind"] != "pair_regression":
            predictions = quantized.postprocess(task, logits)[0]
            assert torch.equal(predictions, model.postprocess(task, reference)[0]), task


@pytest.mark.parametrize("name", [family.name for family in FAMILIES])
def test_every_backbone_family_quantizes(name):
    from test_backbones import make_model

    from backbone_fixtures import ALL_HEADS, tokenizer_of

    model, family_tokenizer = make_model(name).eval(), tokenizer_of(name)
    quantized = quantize_int8(model)
    assert quantized_linear_count(quantized) == len(float_linears(model)) > 0 and float_linears(quantized) == []
    for task, spec in ALL_HEADS.items():
        batch = batch_of(family_tokenizer, spec)
        with torch.no_grad():
            reference = model(task=task, **batch).logits
            difference = (quantized(task=task, **batch).logits - reference).abs().max().item()
        assert difference <= TOLERANCE, (task, difference)


def test_in_place_and_twice(tokenizer):
    model = tiny_model(tokenizer, {"sst": {}})
    assert quantize_int8(model, device="cpu", inplace=True) is model
    count = quantized_linear_count(model)
    assert count == 2 * 6 + 1  # two encoder layers of six linear layers (q, k, v, out, up, down), the classifier
    assert quantize_int8(model) is model and quantized_linear_count(model) == count  # already quantized: as it is


def test_bf16_weights_are_converted_and_a_bf16_autocast_is_ignored(tokenizer, caplog):
    caplog.set_level(logging.INFO, logger="mtbert")
    model = tiny_model(tokenizer, {"sst": {}})
    reference = quantize_int8(model)
    quantized = quantize_int8(model.to(torch.bfloat16))
    assert all(p.dtype == torch.float32 for p in quantized.parameters())
    assert any("weights are bfloat16: converted to float32" in r.getMessage() for r in caplog.records)
    rows = tokenizer(SENTENCES, truncation=True, max_length=32)["input_ids"]
    dataset = datasets.Dataset.from_dict({"input_ids": rows})
    plain = task_logits(quantized, "sst", dataset, pad_token_id=tokenizer.pad_token_id, progress=False)
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    with_autocast = task_logits(quantized, "sst", dataset, pad_token_id=tokenizer.pad_token_id, autocast=autocast,
                                progress=False)  # fmt: skip
    assert torch.equal(plain, with_autocast)
    assert any("without the bf16 autocast" in r.getMessage() for r in caplog.records)
    # bf16 weights hold less than float32 ones: the converted model predicts near the float32-quantized one
    near = task_logits(reference, "sst", dataset, pad_token_id=tokenizer.pad_token_id, progress=False)
    assert (near - plain).abs().max().item() <= TOLERANCE


# ---------------------------------------------------------------------------------------------------------------
# Refusals: not on a GPU, unknown settings
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda", 0), 0])
def test_another_device_than_the_cpu_is_refused_in_one_line(tokenizer, device):
    model = tiny_model(tokenizer, {"sst": {}})
    with pytest.raises(MultitaskConfigError, match=r"^int8 quantization runs on the CPU only \(no cuda kernels") as e:
        quantize_int8(model, device=device, inplace=True)
    assert "\n" not in str(e.value) and "device 'cpu'" in str(e.value)
    assert quantized_linear_count(model) == 0  # refused before anything changed
    with pytest.raises(MultitaskConfigError, match="CPU only"):
        resolve_quantize("int8", device)
    assert resolve_quantize("none", device) is None and resolve_quantize(None, device) is None


def test_quantize_settings():
    assert resolve_quantize("int8") == resolve_quantize("INT8", "cpu") == resolve_quantize("int8", -1) == "int8"
    with pytest.raises(MultitaskConfigError, match=r"quantize: 'int4' is not one of none, int8"):
        resolve_quantize("int4")
    with pytest.raises(MultitaskConfigError, match="is not a device name"):
        resolve_quantize("int8", "gpu-please")


def test_pipeline_refuses_a_gpu_before_the_model_moves(model, tokenizer):
    with pytest.raises(MultitaskConfigError, match="CPU only"):
        MultitaskTextPipeline(model=model, tokenizer=tokenizer, device="cuda", quantize="int8")
    with pytest.raises(MultitaskConfigError, match="not one of none, int8"):
        MultitaskTextPipeline(model=model, tokenizer=tokenizer, quantize="fp8")
    assert model.device.type == "cpu" and quantized_linear_count(model) == 0


def test_predict_script_refuses_a_gpu_in_one_line(saved_tiny, small_minbert, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_example_script("predict").main([
            "--model_name_or_path", str(saved_tiny), "--data_dir", str(small_minbert),
            "--output_dir", str(tmp_path / "preds"), "--quantize", "int8", "--device", "cuda",
        ])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mtbert: error: int8 quantization runs on the CPU only"), err
    assert not (tmp_path / "preds").exists()


# ---------------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------------

INPUTS = {
    "sst": SENTENCES,
    "sst_mlp": SENTENCES,
    "qqp": [{"text": a, "text_pair": b} for a, b in PAIRS],
    "qqp_cos": [{"text": a, "text_pair": b} for a, b in PAIRS],
    "sts": [{"text": a, "text_pair": b} for a, b in PAIRS],
    "qqp_dual": [{"text": a, "text_pair": b} for a, b in PAIRS],
    "nli_dual": [{"text": a, "text_pair": b} for a, b in PAIRS],
}


def assert_same_labels_close_scores(got, want, task):
    assert len(got) == len(want), task
    for g, w in zip(got, want):
        assert g["label"] == w["label"], task
        assert g["score"] == pytest.approx(w["score"], abs=0.05 * max(1.0, abs(w["score"]))), task


def test_pipeline_quantizes_once_at_construction(model, tokenizer, caplog):
    caplog.set_level(logging.INFO, logger="mtbert")
    plain = MultitaskTextPipeline(model=model, tokenizer=tokenizer, device=-1)
    quantized = MultitaskTextPipeline(model=model, tokenizer=tokenizer, quantize="int8")  # no device: the CPU
    assert plain.quantize is None and quantized.quantize == "int8"
    assert quantized.device == torch.device("cpu")
    assert quantized_linear_count(quantized.model) == len(float_linears(model)) and quantized.model is not model
    assert quantized_linear_count(model) == 0  # the caller's model is not quantized under its feet
    for task, inputs in INPUTS.items():
        assert_same_labels_close_scores(quantized(inputs, task=task, batch_size=2), plain(inputs, task=task), task)
    assert len(quantization_lines(caplog)) == 1  # at construction, not per call
    with pytest.raises(TypeError, match=r"quantize is set once, when the pipeline is built"):
        plain("fine", task="sst", quantize="int8")


def test_transformers_pipeline_passes_quantize_to_the_constructor(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reference = MultitaskTextPipeline(model=model, tokenizer=tokenizer, device=-1)
    for pipe in (pipeline(model=str(tmp_path), quantize="int8"), load_pipeline(str(tmp_path), quantize="int8")):
        assert type(pipe) is MultitaskTextPipeline and pipe.quantize == "int8" and pipe.device.type == "cpu"
        assert quantized_linear_count(pipe.model) == len(float_linears(model))
        assert_same_labels_close_scores(pipe(INPUTS["sst"], task="sst"), reference(INPUTS["sst"], task="sst"), "sst")
    plain = pipeline(model=str(tmp_path), device=-1)  # opt-in: without quantize, float32 as trained
    assert plain.quantize is None and quantized_linear_count(plain.model) == 0


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    from transformers import pipeline

    folder, inputs = json.load(open(sys.argv[1]))
    pipe = pipeline(model=folder, trust_remote_code=True, quantize="int8")
    linears = sum(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in pipe.model.modules())
    out = {
        "model_class": type(pipe.model).__module__,
        "linears": linears,
        "outputs": {task: pipe(rows, task=task) for task, rows in inputs.items()},
        "mtbert_loaded": any(m == "mtbert" or m.startswith("mtbert.") for m in sys.modules),
    }
    json.dump(out, open(sys.argv[2], "w"))
    """
)


def test_remote_code_pipeline_quantizes_without_mtbert(model, tokenizer, tmp_path):
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    inputs = {task: INPUTS[task] for task in ("sst", "qqp", "nli_dual")}
    (tmp_path / "in.json").write_text(json.dumps([str(folder), inputs]))
    done = run_without_mtbert(REMOTE_SCRIPT, [tmp_path / "in.json", tmp_path / "out.json"], tmp_path,
                              OMP_NUM_THREADS="1")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["mtbert_loaded"] is False and out["model_class"].startswith("transformers_modules.")
    assert out["linears"] == len(float_linears(model))
    local = MultitaskTextPipeline(model=model, tokenizer=tokenizer, quantize="int8")
    for task, rows in inputs.items():  # the same quantized model, run by the Hub's copy of the code
        for got, want in zip(out["outputs"][task], local(rows, task=task)):
            assert got["label"] == want["label"] and got["score"] == pytest.approx(want["score"], abs=1e-5), task


# ---------------------------------------------------------------------------------------------------------------
# examples/predict.py --quantize int8
# ---------------------------------------------------------------------------------------------------------------


def _rows(path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("id \t Predicted_")
    return lines[1:]


def test_predict_script_writes_the_leaderboard_files_quantized(saved_tiny, small_minbert, tmp_path,
                                                               caplog):  # fmt: skip
    predict = load_example_script("predict")
    caplog.set_level(logging.INFO, logger="mtbert")
    common = ["--data_dir", str(small_minbert), "--max_eval_samples", "8", "--max_predict_samples", "8"]
    predict.main(["--model_name_or_path", str(saved_tiny), "--output_dir", str(tmp_path / "int8"),
                  "--quantize", "int8", *common])  # fmt: skip
    (line,) = quantization_lines(caplog)  # once for the run, not per task or split
    expected = len(float_linears(load_model(str(saved_tiny))))
    assert line == f"int8 dynamic quantization of {expected} linear layers (CPU prediction)"
    caplog.clear()
    predict.main(["--model_name_or_path", str(saved_tiny), "--output_dir", str(tmp_path / "fp32"), *common])
    assert quantization_lines(caplog) == []  # opt-in
    for prefix in ("sst", "para", "sts"):
        for split in ("dev", "test"):
            name = f"{prefix}-{split}-output.csv"
            got, want = _rows(tmp_path / "int8" / name), _rows(tmp_path / "fp32" / name)
            assert len(got) == len(want) == 8
            assert [r.split(" , ")[0] for r in got] == [r.split(" , ")[0] for r in want]  # the same ids, in order
            if prefix == "sts":
                values = [(float(g.split(" , ")[1]), float(w.split(" , ")[1])) for g, w in zip(got, want)]
                assert all(abs(g - w) <= 0.25 for g, w in values), values  # on the 0-5 scale


def test_predict_script_ensemble_quantizes_every_member(saved_tiny, small_minbert, tmp_path, caplog):
    predict = load_example_script("predict")
    caplog.set_level(logging.INFO, logger="mtbert")
    out = tmp_path / "ensemble"
    predict.main(["--model_name_or_path", str(saved_tiny), str(saved_tiny), "--data_dir", str(small_minbert),
                  "--output_dir", str(out), "--quantize", "int8"])  # fmt: skip
    assert len(quantization_lines(caplog)) == 2  # one line per member
    for prefix in ("sst", "para", "sts"):
        assert len(_rows(out / f"{prefix}-dev-output.csv")) == len(_rows(out / f"{prefix}-test-output.csv")) == 60
    assert "eval_average" in json.loads((out / "ensemble_metrics.json").read_text())
