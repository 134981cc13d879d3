"""Serving exports (``mtbert.inference.export``): ONNX and OpenVINO graphs with one output per task for every head
kind, the runner without mtbert (or torch), and one task's encoder as a SentenceTransformer folder."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import torch

from mtbert import MultitaskBertConfig, MultitaskBertModel, MultitaskConfigError
from mtbert.inference.export import ExportedModel, export_model, layout_groups, main, save_sentence_transformer
from mtbert.models.mtbert.heads_mtbert import encode_texts
from mtbert.models.mtbert.pipeline_mtbert import collate_rows

from conftest import tiny_bert_config
from without_mtbert import run_without_mtbert

# Every head kind, hence every input layout (single, pair, joined, joined_nosep, dual), and every objective.
TASKS = {
    "sst": {"kind": "sentence_classification", "num_labels": 5, "pooling": "cls", "classifier": "mlp"},
    "score": {"kind": "sentence_regression", "pooling": "mean"},
    "separate": {"kind": "pair_classification", "pair_encoding": "separate", "pair_features": "full"},
    "cosine": {"kind": "pair_classification", "pair_encoding": "cosine", "pooling": "mean"},
    "sts_cosine": {"kind": "pair_regression", "pair_encoding": "cosine", "pooling": "mean"},
    "concat_sep": {
        "kind": "pair_classification", "pair_encoding": "concat_sep", "use_token_type_ids": True, "num_labels": 3,
        "label_names": ["no", "maybe", "yes"],
    },
    "concat_nosep": {"kind": "pair_classification", "pair_encoding": "concat_nosep", "pooling": "mean"},
    "dual": {"kind": "pair_classification", "pair_encoding": "dual"},
    "sts": {"kind": "pair_regression", "pair_encoding": "dual"},
}  # fmt: skip
LAYOUTS = {"single", "pair", "joined", "joined_nosep", "dual"}
TEXTS = [
    "A fine film.", "Worst. Film. Ever. " * 30, "meh", "Un film naïf, résumé en 東京 words!", "It rains.",
    "Two dogs play on the grass while a third one watches them from the porch, wagging its tail.",
]  # fmt: skip
PAIRS = [
    "Was it a good film?",
    "no",
    "It was fine, I guess, " * 40,
    "résumé",
    "The rain falls.",
    "Dogs are playing.",
]
MAX_LENGTH = 48  # below the longest texts: truncation is exercised too


@pytest.fixture(scope="module")
def model_and_tokenizer(tokenizer):
    config = MultitaskBertConfig(encoder=tiny_bert_config(tokenizer.vocab_size).to_dict(), tasks=TASKS)
    torch.manual_seed(0)
    model = MultitaskBertModel(config).eval()
    with torch.no_grad():  # trained-looking values where the initialisation is special (cosine logit, biases)
        model.heads["dual"].cosine.scale.fill_(7.5)
        model.heads["dual"].cosine.threshold.fill_(0.3)
        for name, parameter in model.named_parameters():
            if name.startswith("heads.") and name.endswith("bias"):
                parameter.normal_(0, 0.5)
    return model, tokenizer


def torch_batch(model, tokenizer, task, texts, pairs):
    """Inputs as mtbert's pipeline builds them (the heads' tokenization, the collator's padding)."""
    pairs = pairs if model.task_head(task).pair else None
    encoded = encode_texts(tokenizer, model.config.tasks[task], texts, pairs, MAX_LENGTH)
    rows = [{key: values[i] for key, values in encoded.items()} for i in range(len(texts))]
    return collate_rows(rows, tokenizer.pad_token_id)


@pytest.fixture(scope="module", params=["onnx", "openvino"])
def exported(request, model_and_tokenizer, tmp_path_factory):
    """``(format, folder, expected)``: the model exported once per format, and torch's outputs per task."""
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime" if request.param == "onnx" else "openvino")
    model, tokenizer = model_and_tokenizer
    folder = tmp_path_factory.mktemp(f"export_{request.param}")
    manifest = export_model(model, folder, format=request.param, tokenizer=tokenizer, max_length=MAX_LENGTH,
                            overwrite=True)  # fmt: skip
    expected = {}
    with torch.no_grad():
        for task in TASKS:
            batch = torch_batch(model, tokenizer, task, TEXTS, PAIRS)
            out = model(task=task, **batch)
            expected[task] = {"inputs": {k: v.numpy() for k, v in batch.items()}, "logits": out.logits.numpy(),
                              "embeddings": out.embeddings.numpy()}  # fmt: skip
    return request.param, folder, manifest, expected


def test_one_graph_per_layout_with_one_output_per_task(exported, model_and_tokenizer):
    form, folder, manifest, _ = exported
    model, _ = model_and_tokenizer
    assert set(manifest["graphs"]) == LAYOUTS
    assert {task: entry["graph"] for task, entry in manifest["tasks"].items()} == {
        task: layout for layout, tasks in layout_groups(model).items() for task in tasks
    }
    graphs = manifest["graphs"]
    assert graphs["single"]["inputs"] == ["input_ids", "attention_mask"]
    assert graphs["pair"]["inputs"] == ["input_ids", "attention_mask"]
    assert graphs["joined"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]  # concat_sep uses them
    assert graphs["joined_nosep"]["inputs"] == ["input_ids", "attention_mask"]
    assert graphs["dual"]["inputs"] == ["input_ids", "attention_mask", "pair_input_ids", "pair_attention_mask"]
    # the pair tasks read the dual head's two sentences; concat_sep uses segments, the dual tasks do not: no rider
    assert graphs["dual"]["riders"] == ["separate", "cosine", "sts_cosine"]
    assert all("riders" not in graph for layout, graph in graphs.items() if layout != "dual")
    for _layout, graph in graphs.items():
        answered = graph["tasks"] + graph.get("riders", [])
        assert graph["outputs"] == [f"{t}_{what}" for t in answered for what in ("logits", "embeddings")]
        assert (folder / graph["file"]).is_file()
    files = {p.name for p in folder.iterdir()}
    assert {"mtbert_export.json", "runtime_mtbert.py", "tokenizer.json"} <= files
    if form == "onnx":
        assert "weights.bin" in files  # the encoder once, for every graph
        assert (folder / "weights.bin").stat().st_size < 1.1 * 4 * model.num_parameters()
    assert max(manifest["verified"]["max_abs_diff"].values()) < 1e-4


def test_exported_logits_match_torch_for_every_head(exported, model_and_tokenizer):
    form, folder, _, expected = exported
    model, _tokenizer = model_and_tokenizer
    backends = ["onnxruntime", "openvino"] if form == "onnx" else ["openvino"]
    if form == "onnx":
        try:
            import openvino  # noqa: F401
        except ImportError:
            backends.remove("openvino")
    for backend in backends:
        runner = ExportedModel(folder, backend=backend)
        assert runner.backend == backend and runner.max_length == MAX_LENGTH
        for task in TASKS:
            pairs = PAIRS if model.task_head(task).pair else None
            inputs = runner.tokenize(task, TEXTS, pairs)  # mtbert's token ids, without transformers
            for name, value in expected[task]["inputs"].items():
                np.testing.assert_array_equal(inputs[name], value, err_msg=f"{task} {name}")
            logits = runner.logits(task, TEXTS, pairs, batch_size=4)  # two batches, padded apart
            embeddings = runner.embeddings(task, TEXTS, pairs)
            assert logits.dtype == np.float32 and logits.shape == expected[task]["logits"].shape
            np.testing.assert_allclose(logits, expected[task]["logits"], rtol=0, atol=1e-4, err_msg=task)
            np.testing.assert_allclose(embeddings, expected[task]["embeddings"], rtol=0, atol=1e-4, err_msg=task)
            predictions = runner.predict(task, TEXTS, pairs)
            want_predictions, want_scores = model.postprocess(task, torch.as_tensor(expected[task]["logits"]))
            np.testing.assert_allclose(predictions["predictions"], want_predictions.numpy(), atol=1e-4)
            np.testing.assert_allclose(predictions["scores"], want_scores.numpy(), atol=1e-4)


# Run with mtbert and torch both unimportable: the graphs through the runtimes' own API, then the copied runner.
WITHOUT_MTBERT = """
import importlib.abc, json, sys
import numpy as np

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed here")

sys.meta_path.insert(0, BlockTorch())
folder, data_file, backend = sys.argv[1], sys.argv[2], sys.argv[3]
manifest = json.load(open(f"{folder}/mtbert_export.json"))
data = np.load(data_file)
worst = {}
for task, entry in manifest["tasks"].items():
    graph = manifest["graphs"][entry["graph"]]
    feeds = {name: data[f"{task}.{name}"] for name in graph["inputs"]}
    if backend == "onnxruntime":
        import onnxruntime
        session = onnxruntime.InferenceSession(f"{folder}/{graph['file']}", providers=["CPUExecutionProvider"])
        logits = session.run([entry["logits"]], feeds)[0]
    else:
        import openvino
        core = openvino.Core()
        compiled = core.compile_model(f"{folder}/{graph['file']}", "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        logits = compiled(feeds)[compiled.output(entry["logits"])]
    worst[task] = float(np.abs(logits - data[f"{task}.logits"]).max())
sys.path.insert(0, folder)
from runtime_mtbert import ExportedModel

runner = ExportedModel(folder, backend=backend)
texts, pairs = json.loads(sys.argv[4]), json.loads(sys.argv[5])
text_worst = {}
for task, entry in manifest["tasks"].items():
    logits = runner.logits(task, texts, pairs if entry["layout"] != "single" else None)
    text_worst[task] = float(np.abs(logits - data[f"{task}.logits"]).max())
print(json.dumps({"direct": worst, "runner": text_worst, "modules": sorted(m for m in sys.modules
                  if m.split(".")[0] in ("torch", "mtbert", "transformers"))}))
"""


def test_export_runs_without_mtbert_and_without_torch(exported, tmp_path):
    form, folder, _, expected = exported
    arrays = {f"{task}.{name}": value for task, want in expected.items() for name, value in want["inputs"].items()}
    arrays.update({f"{task}.logits": want["logits"] for task, want in expected.items()})
    np.savez(tmp_path / "data.npz", **arrays)
    backend = "onnxruntime" if form == "onnx" else "openvino"
    done = run_without_mtbert(
        WITHOUT_MTBERT, [folder, tmp_path / "data.npz", backend, json.dumps(TEXTS), json.dumps(PAIRS)], tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["modules"] == []  # neither torch, nor mtbert, nor transformers
    assert set(out["direct"]) == set(TASKS) and set(out["runner"]) == set(TASKS)
    assert max(out["direct"].values()) < 1e-4, out["direct"]
    assert max(out["runner"].values()) < 1e-4, out["runner"]


def test_export_of_a_saved_folder_from_the_command_line(model_and_tokenizer, tmp_path, capsys):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    model, tokenizer = model_and_tokenizer
    one = MultitaskBertModel(MultitaskBertConfig(encoder=model.config.encoder, tasks={"sst": TASKS["sst"]}))
    one.load_state_dict(model.state_dict(), strict=False)
    one.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    assert main([str(tmp_path / "model"), str(tmp_path / "out"), "--format", "onnx"]) == 0
    assert "single.onnx: inputs input_ids, attention_mask; tasks sst" in capsys.readouterr().out
    runner = ExportedModel(tmp_path / "out")
    batch = torch_batch(one, tokenizer, "sst", TEXTS, None)
    with torch.no_grad():
        want = one.eval()(task="sst", **batch).logits.numpy()
    np.testing.assert_allclose(runner.logits(None, TEXTS, max_length=MAX_LENGTH), want, rtol=0, atol=1e-4)
    # a second export into the same folder is refused, unless --overwrite
    assert main([str(tmp_path / "model"), str(tmp_path / "out")]) == 2
    assert "is not empty" in capsys.readouterr().err


def test_export_without_tokenizer_runs_on_token_ids(model_and_tokenizer, tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    model, tokenizer = model_and_tokenizer
    one = MultitaskBertModel(MultitaskBertConfig(encoder=model.config.encoder, tasks={"pair": TASKS["separate"]}))
    one.eval()
    manifest = export_model(one, tmp_path / "out")
    assert manifest["tokenizer_file"] is None
    assert manifest["graphs"]["pair"]["inputs"] == ["input_ids", "attention_mask"]
    batch = torch_batch(one, tokenizer, "pair", TEXTS, PAIRS)
    runner = ExportedModel(tmp_path / "out")
    got = runner.run("pair", **{k: v.numpy() for k, v in batch.items()})
    with torch.no_grad():
        want = one(task="pair", **batch)
    np.testing.assert_allclose(got["logits"], want.logits.numpy(), rtol=0, atol=1e-4)
    assert got["embeddings"].shape == (len(TEXTS), 2, 32)
    with pytest.raises(ValueError, match="has no tokenizer"):
        runner.logits("pair", TEXTS, PAIRS)


def test_export_mistakes_are_one_line_errors(model_and_tokenizer, tmp_path):
    model, _ = model_and_tokenizer
    with pytest.raises(MultitaskConfigError, match="format: 'tflite' is not one of onnx, openvino"):
        export_model(model, tmp_path / "out", format="tflite")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(MultitaskConfigError, match="is not empty"):
        export_model(model, tmp_path / "full")
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="is not an mtbert export"):
        ExportedModel(tmp_path / "full")


# ---------------------------------------------------------------------------------------------------------------
# The encoder as a SentenceTransformer
# ---------------------------------------------------------------------------------------------------------------

SENTENCE_TRANSFORMER = """
import json, sys
from sentence_transformers import SentenceTransformer

texts = json.loads(sys.argv[2])
out = {}
for name in sys.argv[3:]:
    model = SentenceTransformer(f"{sys.argv[1]}/{name}", device="cpu")
    out[name] = model.encode(texts, batch_size=4, convert_to_numpy=True).tolist()
print(json.dumps(out))
"""


def test_encoder_as_sentence_transformer_gives_the_task_embeddings(model_and_tokenizer, tmp_path):
    pytest.importorskip("sentence_transformers")
    model, tokenizer = model_and_tokenizer
    saved = tmp_path / "st"
    save_sentence_transformer(model, tokenizer, saved / "sst", task="sst", max_seq_length=MAX_LENGTH)  # CLS
    save_sentence_transformer(model, tokenizer, saved / "sts_cosine", task="sts_cosine", max_seq_length=MAX_LENGTH)
    save_sentence_transformer(model, tokenizer, saved / "dual", task="dual", max_seq_length=MAX_LENGTH)  # MEAN view
    save_sentence_transformer(model, tokenizer, saved / "unit", task="sst", normalize=True, max_seq_length=MAX_LENGTH)
    pooling = {name: json.loads((saved / name / "1_Pooling" / "config.json").read_text()) for name in ("sst", "dual")}
    assert "cls" in json.dumps(pooling["sst"]) and "mean" in json.dumps(pooling["dual"])
    modules = {name: json.loads((saved / name / "modules.json").read_text()) for name in ("sst", "unit")}
    assert [m["path"] for m in modules["sst"]] == ["", "1_Pooling"]  # no Normalize unless asked for
    assert "Normalize" in modules["unit"][-1]["type"]
    names = ["sst", "sts_cosine", "dual", "unit"]
    done = run_without_mtbert(SENTENCE_TRANSFORMER, [saved, json.dumps(TEXTS), *names], tmp_path)  # offline
    assert done.returncode == 0, done.stderr[-3000:]
    got = {name: np.array(value) for name, value in json.loads(done.stdout.strip().splitlines()[-1]).items()}

    with torch.no_grad():
        single = torch_batch(model, tokenizer, "sst", TEXTS, None)
        sentence_task = model(task="sst", **single).embeddings.numpy()  # a sentence task's pooled output
        pair = torch_batch(model, tokenizer, "sts_cosine", TEXTS, PAIRS)
        u = model(task="sts_cosine", **pair).embeddings[:, 0].numpy()  # the first sentence of each pair, alone
        dual = torch_batch(model, tokenizer, "dual", TEXTS, PAIRS)
        out = model.heads["dual"](  # its cosine view's sentence embeddings u, v: MEAN-pooled, each sentence alone
            partial(model._encode, "dual"), dual["input_ids"], dual["attention_mask"], dual.get("token_type_ids"),
            dual["pair_input_ids"], dual["pair_attention_mask"],
        )  # fmt: skip
    np.testing.assert_allclose(got["sst"], sentence_task, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["sts_cosine"], u, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["dual"], out.u.numpy(), rtol=0, atol=1e-5)
    unit = sentence_task / np.linalg.norm(sentence_task, axis=-1, keepdims=True)
    np.testing.assert_allclose(got["unit"], unit, rtol=0, atol=1e-5)


def test_sentence_transformer_needs_a_task_when_poolings_differ(model_and_tokenizer, tmp_path):
    pytest.importorskip("sentence_transformers")
    model, tokenizer = model_and_tokenizer
    with pytest.raises(MultitaskConfigError, match=r"pass task=\.\.\. to choose the sentence embeddings"):
        save_sentence_transformer(model, tokenizer, tmp_path / "st")
    assert not (tmp_path / "st").exists()
