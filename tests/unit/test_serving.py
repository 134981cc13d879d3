"""Serving a saved model through an export: the pipeline's and predict.py's ``backend="onnx"|"openvino"`` give
torch's outputs (``mtbert.inference.serving``), and static int8 exports (``export_model(int8="static")``) are
calibrated, really int8 and close to float32."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtbert import MultitaskBertConfig, MultitaskBertModel, MultitaskConfigError
from mtbert.hub import load_pipeline
from mtbert.inference.export import export_model
from mtbert.inference.serving import RuntimeMultitaskModel, load_runtime_model

from conftest import tiny_bert_config

ROOT = Path(__file__).resolve().parents[2]
# The quickstart's kinds of head: one sentence (sst), a joined pair (qqp) and a dual head (sts) that shares it.
TASKS = {
    "sst": {"kind": "sentence_classification", "num_labels": 5, "pooling": "mean"},
    "qqp": {"kind": "pair_classification", "pair_encoding": "concat_sep"},
    "sts": {"kind": "pair_regression", "pair_encoding": "dual", "pooling": "mean"},
}
TEXTS = ["A fine film.", "The plot never holds together, sadly, " * 6, "meh", "Un film naïf, résumé!", "It rains."]
PAIRS = ["Was it good?", "no", "It was fine, I guess, " * 8, "résumé", "The rain falls."]
BACKENDS = ("onnx", "openvino")


@pytest.fixture(scope="module")
def saved(tokenizer, tmp_path_factory) -> Path:
    """A tiny random mtbert model with the three heads, saved with its tokenizer."""
    config = MultitaskBertConfig(encoder=tiny_bert_config(tokenizer.vocab_size).to_dict(), tasks=TASKS)
    torch.manual_seed(0)
    model = MultitaskBertModel(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("heads.") and name.endswith("bias"):
                parameter.normal_(0, 0.5)
    path = tmp_path_factory.mktemp("serving_model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=BACKENDS)
def runtime(request, saved, tmp_path_factory):
    """``(backend, export_dir)``: an export made on first use by ``load_runtime_model``."""
    export_dir = tmp_path_factory.mktemp(f"export_{request.param}") / "export"
    load_runtime_model(saved, request.param, export_dir=export_dir)  # exports once
    return request.param, export_dir


def _close(a, b, atol=1e-4):
    """Two pipeline answers equal: the same labels, scores within ``atol``."""
    if isinstance(a, dict):
        assert set(a) == set(b)
        if "score" in a:
            assert a["label"] == b["label"]
            assert abs(a["score"] - b["score"]) <= atol, (a, b)
            return
        for key in a:
            _close(a[key], b[key], atol)
        return
    assert isinstance(a, list) and len(a) == len(b)
    for x, y in zip(a, b):
        _close(x, y, atol)


def test_runtime_model_gives_torch_logits_for_every_task(runtime, saved, tokenizer):
    from mtbert.inference.loading import load_model
    from mtbert.models.mtbert.heads_mtbert import encode_texts
    from mtbert.models.mtbert.pipeline_mtbert import collate_rows

    backend, export_dir = runtime
    model, _ = load_runtime_model(saved, backend, export_dir=export_dir)
    assert isinstance(model, RuntimeMultitaskModel)
    torch_model = load_model(saved)
    batches = {}
    for task, spec in torch_model.config.tasks.items():
        pairs = PAIRS if torch_model.task_head(task).pair else None
        encoded = encode_texts(tokenizer, spec, TEXTS, pairs, 64)
        batches[task] = collate_rows([{k: v[i] for k, v in encoded.items()} for i in range(len(TEXTS))], 0)
    with torch.no_grad():
        expected = torch_model.forward_tasks(batches)
        together = model.forward_tasks(batches)
        for task, batch in batches.items():
            alone = model(task=task, **batch)
            for got in (alone, together[task]):
                assert got.logits.shape == expected[task].logits.shape
                torch.testing.assert_close(got.logits, expected[task].logits, atol=1e-4, rtol=0)
                torch.testing.assert_close(got.embeddings, expected[task].embeddings, atol=1e-4, rtol=0)


def test_joined_and_dual_tasks_asked_together_run_one_graph(runtime, saved, tokenizer, monkeypatch):
    """QQP (``concat_sep``) rides along in the ``dual`` graph of STS: asked together on the same pairs, one graph
    runs (the joined pair is encoded once, as in torch); asked alone, QQP runs its own ``joined`` graph."""
    from mtbert.inference.loading import load_model
    from mtbert.models.mtbert.heads_mtbert import encode_texts
    from mtbert.models.mtbert.pipeline_mtbert import collate_rows

    backend, export_dir = runtime
    model, _ = load_runtime_model(saved, backend, export_dir=export_dir)
    assert model.exported.graphs["dual"]["riders"] == ["qqp"]
    runs = []
    real = model.exported.run_graph
    monkeypatch.setattr(model.exported, "run_graph", lambda graph, *a, **k: runs.append(graph) or real(graph, *a, **k))
    torch_model = load_model(saved)
    batches = {}
    for task in ("qqp", "sts"):
        encoded = encode_texts(tokenizer, torch_model.config.tasks[task], TEXTS, PAIRS, 64)
        batches[task] = collate_rows([{k: v[i] for k, v in encoded.items()} for i in range(len(TEXTS))], 0)
    with torch.no_grad():
        got, expected = model.forward_tasks(batches), torch_model.forward_tasks(batches)
        assert runs == ["dual"]
        for task in batches:
            torch.testing.assert_close(got[task].logits, expected[task].logits, atol=1e-4, rtol=0)
            torch.testing.assert_close(got[task].embeddings, expected[task].embeddings, atol=1e-4, rtol=0)
        runs.clear()
        model.forward_tasks({"qqp": batches["qqp"]})
        assert runs == ["joined"]
        runs.clear()  # other rows for QQP than the dual batch holds: each task its own graph
        other = encode_texts(tokenizer, torch_model.config.tasks["qqp"], PAIRS, TEXTS, 64)
        shifted = collate_rows([{k: v[i] for k, v in other.items()} for i in range(len(TEXTS))], 0)
        model.forward_tasks({"qqp": shifted, "sts": batches["sts"]})
        assert sorted(runs) == ["dual", "joined"]


def test_pipeline_backend_answers_as_torch(runtime, saved):
    backend, export_dir = runtime
    pipe = load_pipeline(str(saved), backend=backend, export_dir=export_dir)
    reference = load_pipeline(str(saved))
    pairs = [{"text": t, "text_pair": p} for t, p in zip(TEXTS, PAIRS)]
    _close(pipe(pairs, task=["qqp", "sts"], batch_size=2), reference(pairs, task=["qqp", "sts"], batch_size=2))
    _close(pipe(TEXTS, task="sst", top_k=None), reference(TEXTS, task="sst", top_k=None))
    _close(pipe(pairs[0], task="all"), reference(pairs[0], task="all"))


def test_pipeline_backend_exports_on_first_use_into_the_cache(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("MTBERT_CACHE", str(tmp_path))
    pipe = load_pipeline(str(saved), backend="onnx")
    (folder,) = os.listdir(tmp_path)
    assert folder.endswith("-onnx") and os.path.isfile(tmp_path / folder / "mtbert_export.json")
    _close(pipe("A fine film.", task="sst"), load_pipeline(str(saved))("A fine film.", task="sst"))
    load_pipeline(str(saved), backend="onnx")  # the second time: the same export, not a new one
    assert os.listdir(tmp_path) == [folder]


def test_predict_script_backend_writes_torch_predictions(runtime, saved, tmp_path):
    backend, export_dir = runtime
    inputs = tmp_path / "pairs.csv"
    with open(inputs, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "text_pair"])
        writer.writerows(zip(TEXTS, PAIRS))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    files = {}
    for name, extra in (("torch", []), (backend, ["--backend", backend, "--export_dir", str(export_dir)])):
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "predict.py"), "--model_name_or_path", str(saved),
             "--input_file", str(inputs), "--output_dir", str(tmp_path / name), *extra],
            capture_output=True, text=True, env=env, check=False, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        with open(tmp_path / name / "predictions.csv", encoding="utf-8") as handle:
            files[name] = list(csv.DictReader(handle))
    for ours, theirs in zip(files[backend], files["torch"]):
        assert ours["qqp"] == theirs["qqp"]
        assert abs(float(ours["sts"]) - float(theirs["sts"])) <= 1e-4


def test_backend_mistakes_are_one_line_errors(saved, runtime, tmp_path):
    backend, export_dir = runtime
    with pytest.raises(MultitaskConfigError, match="backend: 'tensorrt' is not one of torch, onnx, openvino"):
        load_pipeline(str(saved), backend="tensorrt")
    with pytest.raises(MultitaskConfigError, match="is an export: pass the saved model folder"):
        load_runtime_model(export_dir, backend)
    other = "openvino" if backend == "onnx" else "onnx"
    with pytest.raises(MultitaskConfigError, match=f"backend {other!r} runs"):
        load_runtime_model(saved, other, export_dir=export_dir)
    with pytest.raises(ValueError, match="quantize= is torch's int8"):
        load_pipeline(str(saved), backend=backend, export_dir=export_dir, quantize="int8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "predict.py"), "--model_name_or_path", str(saved),
         "--output_dir", str(tmp_path / "out"), "--export_dir", str(export_dir)],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "mtbert: error: --export_dir goes with --backend onnx or openvino"


@pytest.mark.parametrize("flag", ["", "--"])
def test_prediction_route_refusals_are_shared_by_the_api_and_the_script(flag):
    """One set of refusals (``check_prediction_route``) for ``load_for_prediction`` and ``predict.py``, naming the
    settings the way the caller spells them."""
    from mtbert.cli.run import check_prediction_route

    check_prediction_route(None, "int8", "float32", None, flag=flag)  # torch's own routes: nothing to refuse
    check_prediction_route("onnx", None, "float32", "some/export", "cpu", flag=flag)
    cases = [
        ((None, None, "float32", "some/export"), f"{flag}export_dir goes with {flag}backend onnx or openvino"),
        (("onnx", "int8", "float32", None), f"{flag}quantize int8 is torch's dynamic int8; {flag}backend onnx"),
        (("openvino", None, "bf16", None), f"{flag}weights bf16 casts torch weights; {flag}backend openvino"),
        (("onnx", None, "float32", None, "cuda"), f"{flag}backend onnx runs on the CPU, not on device 'cuda'"),
    ]
    for args, message in cases:
        with pytest.raises(MultitaskConfigError) as caught:
            check_prediction_route(*args, flag=flag)
        assert str(caught.value).startswith(message)


def test_a_missing_runtime_is_one_line(monkeypatch, saved):
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino":
            raise ImportError("no openvino here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(MultitaskConfigError, match=r"backend 'openvino' needs the 'openvino' package: pip install"):
        load_pipeline(str(saved), backend="openvino")


# ---------------------------------------------------------------------------------------------------------------
# Static int8
# ---------------------------------------------------------------------------------------------------------------


def _int8_ops(export_dir: Path, fmt: str) -> int:
    """How many int8 operations the export's graphs hold: OpenVINO FakeQuantize / ONNX QuantizeLinear nodes whose
    zero point is int8."""
    count = 0
    if fmt == "openvino":
        import openvino as ov

        for name in os.listdir(export_dir):
            if name.endswith(".xml"):
                ops = ov.Core().read_model(str(export_dir / name)).get_ordered_ops()
                count += sum(op.get_type_name() == "FakeQuantize" for op in ops)
        return count
    import onnx

    for name in os.listdir(export_dir):
        if name.endswith(".onnx"):
            graph = onnx.load(str(export_dir / name)).graph
            int8 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
            count += sum(n.op_type == "DequantizeLinear" and n.input[0] in int8 for n in graph.node)
    return count


@pytest.mark.parametrize("fmt", BACKENDS)
def test_static_int8_export_is_calibrated_int8_and_close_to_float(fmt, saved, tmp_path, tokenizer):
    rows = {
        "sst": {"text": TEXTS * 4},
        "qqp": {"text": TEXTS * 4, "text_pair": PAIRS * 4},
        "sts": {"text": PAIRS * 4, "text_pair": TEXTS * 4},
    }
    manifest = export_model(saved, tmp_path / "int8", format=fmt, int8="static", calibration=rows, calibration_rows=12)
    assert manifest["int8"]["mode"] == "static"
    assert manifest["int8"]["calibration_rows"] == {"single": 12, "joined": 12, "dual": 12}
    assert _int8_ops(tmp_path / "int8", fmt) >= 8  # every linear layer of the two encoder layers, at least
    model, _ = load_runtime_model(saved, fmt, export_dir=tmp_path / "int8", int8="static")
    from mtbert.inference.loading import load_model

    torch_model = load_model(saved)
    from mtbert.models.mtbert.heads_mtbert import encode_texts
    from mtbert.models.mtbert.pipeline_mtbert import collate_rows

    for task, spec in TASKS.items():
        pairs = PAIRS if task != "sst" else None
        encoded = encode_texts(tokenizer, spec, TEXTS, pairs, 64)
        batch = collate_rows([{k: v[i] for k, v in encoded.items()} for i in range(len(TEXTS))], 0)
        with torch.no_grad():
            got, want = model(task=task, **batch).logits, torch_model(task=task, **batch).logits
        difference = (got - want).abs().max().item()
        assert 0 < difference < 0.1, (task, difference)  # moved (int8), but a little
    verified = manifest["verified"]["max_abs_diff"]
    assert set(verified) >= {"sst_logits", "qqp_logits", "sts_logits"}
    with pytest.raises(MultitaskConfigError, match="is int8 static, int8=None was asked"):
        load_runtime_model(saved, fmt, export_dir=tmp_path / "int8")


def _ffn_output_matmuls_int8(export_dir: Path) -> tuple[int, int]:
    """``(int8, all)``: the ONNX export's FFN down-projection matmuls (``FFN_OUTPUT_SCOPES``) fed by a
    ``DequantizeLinear`` (quantized), and all of them."""
    import onnx

    from mtbert.inference.export import FFN_OUTPUT_SCOPES, _scopes

    quantized = total = 0
    for name in os.listdir(export_dir):
        if name.endswith(".onnx"):
            graph = onnx.load(str(export_dir / name)).graph
            made_by = {output: node.op_type for node in graph.node for output in node.output}
            for node in graph.node:
                if node.op_type == "MatMul" and any(FFN_OUTPUT_SCOPES.search(s) for s in _scopes(node)):
                    total += 1
                    quantized += any(made_by.get(i) == "DequantizeLinear" for i in node.input)
    return quantized, total


def test_static_int8_keeps_the_ffn_down_projections_float_by_default(saved, tmp_path):
    """``int8_float="heads+ffn_output"`` (the default, which kept every dev metric within 0.005) leaves every
    layer's FFN down projection in float; ``"heads"`` quantizes them too."""
    rows = {"sst": {"text": TEXTS * 2}, "qqp": {"text": TEXTS * 2, "text_pair": PAIRS * 2}}
    rows["sts"] = rows["qqp"]
    default = export_model(saved, tmp_path / "default", format="onnx", int8="static", calibration=rows,
                           calibration_rows=4)  # fmt: skip
    assert default["int8"]["kept_float"] == "heads+ffn_output"
    quantized, total = _ffn_output_matmuls_int8(tmp_path / "default")
    assert total >= 2 and quantized == 0  # one per encoder layer in each graph, none quantized
    heads = export_model(saved, tmp_path / "heads", format="onnx", int8="static", calibration=rows,
                         calibration_rows=4, int8_float="heads")  # fmt: skip
    assert heads["int8"]["kept_float"] == "heads"
    assert _ffn_output_matmuls_int8(tmp_path / "heads") == (total, total)
    with pytest.raises(MultitaskConfigError, match="int8_float: 'all' is not one of heads, heads\\+ffn_output"):
        export_model(saved, tmp_path / "bad", format="onnx", int8="static", calibration=rows, int8_float="all")


def test_static_int8_needs_calibration_rows(saved, tmp_path):
    with pytest.raises(MultitaskConfigError, match="calibrates on training rows: pass data_dir"):
        export_model(saved, tmp_path / "x", format="openvino", int8="static")
    with pytest.raises(MultitaskConfigError, match="int8: 'dynamic' is not one of static"):
        export_model(saved, tmp_path / "x", format="openvino", int8="dynamic", data_dir="d")
