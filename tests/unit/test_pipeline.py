"""The ``multitask-text-bert`` pipeline: same tokens and predictions as mtbert's own data/predict code, every input
shape, batching, truncation, clear errors, and local (no ``trust_remote_code``) loading."""

from __future__ import annotations

import json
import os
import pathlib

import datasets
import pytest
import torch
import yaml
from transformers import AutoModel, BertConfig, BertForSequenceClassification, BertModel, pipeline

from mtbert import PIPELINE_TASK, MultitaskBertConfig, MultitaskBertModel, MultitaskTextPipeline
from mtbert.cli.arguments import ModelArguments
from mtbert.cli.run import build_model
from mtbert.data import tokenize_batch, tokenize_task
from mtbert.hub import CODE_DIR, CODE_FILES, load_pipeline
from mtbert.inference.predict import predict_task
from mtbert.models.mtbert.configuration_mtbert import SST_LABELS, MultitaskConfigError
from mtbert.models.mtbert.heads_mtbert import input_layout
from mtbert.models.mtbert.pipeline_mtbert import collate_rows, encode_texts

from conftest import tiny_model as make_tiny_model

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


def tiny_model(tokenizer, tasks=None, seed=0) -> MultitaskBertModel:
    overrides = {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}  # BERT's default (eval mode here)
    model = make_tiny_model(tasks or TASKS, vocab_size=tokenizer.vocab_size, seed=seed, encoder_overrides=overrides)
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


def expected_output(task, spec, prediction, score):
    """What the pipeline must answer for mtbert's own (prediction, score) of one row."""
    if spec["kind"] == "pair_regression":
        return {"label": task, "score": score}
    label = spec["label_names"][int(prediction)]
    if spec["kind"] == "pair_classification" and spec["pair_encoding"] != "cosine":
        score = score if prediction == 1 else 1.0 - score  # P(duplicate) → the probability of the given label
    return {"label": label, "score": score}


def assert_same_outputs(got, want, atol=1e-5):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert set(g) == set(w) == {"label", "score"}
        assert g["label"] == w["label"]
        assert g["score"] == pytest.approx(w["score"], abs=atol)


def one(output):
    """The one ``{"label", "score"}`` of a single input: a string's one-item list, or a pair's dict."""
    if isinstance(output, list):
        assert len(output) == 1
        return output[0]
    return output


# ---------------------------------------------------------------------------------------------------------------
# Tokenization and collation equal mtbert.data / mtbert.data.collators
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
        "single",
        "pair",
        "joined",
        "joined_nosep",
        "dual",
    }


@pytest.mark.parametrize("task", ["sst", "qqp", "sts", "sts_dual"])
def test_collate_rows_equals_task_collator(tokenizer, model, task):
    from mtbert.data.collators import TaskCollator

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
# Predictions equal mtbert.inference.predict.predict_task, for every task, unbatched and batched
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
    want = [expected_output(task, spec, p, s) for p, s in zip(result["predictions"], result["scores"])]
    assert_same_outputs(pipe(inputs, task=task, max_length=48), want)
    assert_same_outputs(pipe(inputs, task=task, max_length=48, batch_size=3), want)
    assert_same_outputs([one(pipe(x, task=task, max_length=48)) for x in inputs], want)


# ---------------------------------------------------------------------------------------------------------------
# Output shapes: those of the stock text-classification pipeline, input for input
# ---------------------------------------------------------------------------------------------------------------


def shape(output):
    """The nesting of a pipeline's answer: lists and their lengths, dicts and their keys (values left out)."""
    if isinstance(output, list):
        return [shape(o) for o in output]
    assert isinstance(output, dict), output
    assert isinstance(output["score"], float) and isinstance(output["label"], str)
    return tuple(sorted(output))


@pytest.fixture(scope="module")
def stock_pipes(tokenizer, tmp_path_factory):
    """Stock ``pipeline("text-classification")`` over tiny saved BertForSequenceClassification models, built offline:
    5 labels (as SST), 2 labels (as QQP) and a regression model (as STS)."""
    pipes = {}
    for name, kwargs in (
        ("sst", {"num_labels": 5}),
        ("qqp", {"num_labels": 2}),
        ("sts", {"num_labels": 1, "problem_type": "regression"}),
    ):
        torch.manual_seed(0)
        config = BertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            vocab_size=tokenizer.vocab_size,
            max_position_embeddings=128,
            **kwargs,
        )
        folder = tmp_path_factory.mktemp(f"stock_{name}")
        BertForSequenceClassification(config).eval().save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        pipes[name] = pipeline("text-classification", model=str(folder), device=-1)
    return pipes


PAIR = {"text": "How old are you?", "text_pair": "What is your age?"}
SHAPE_CALLS = [
    ({}, "one"),
    ({}, "many"),
    ({"top_k": 1}, "one"),
    ({"top_k": 2}, "one"),
    ({"top_k": None}, "one"),
    ({"top_k": 2}, "many"),
    ({"top_k": None}, "many"),
    ({"top_k": 50}, "one"),
    ({"function_to_apply": "none"}, "one"),
    ({"function_to_apply": "none"}, "many"),
]


@pytest.mark.parametrize("kwargs, size", SHAPE_CALLS)
@pytest.mark.parametrize("task", ["sst", "qqp", "qqp_sep", "sts", "sts_sep"])
def test_shapes_match_the_stock_pipeline(pipe, stock_pipes, task, kwargs, size):
    spec = pipe.model.config.tasks[task]
    stock = stock_pipes[{"sentence_classification": "sst", "pair_classification": "qqp"}.get(spec["kind"], "sts")]
    single = SENTENCES[0] if spec["kind"] == "sentence_classification" else PAIR
    inputs = single if size == "one" else [single, SENTENCES[1] if isinstance(single, str) else PAIRS[0]]
    if isinstance(inputs, list) and isinstance(single, dict):
        inputs = [single, {"text": PAIRS[0][0], "text_pair": PAIRS[0][1]}]
    got = pipe(inputs, task=task, **kwargs)
    want = stock(inputs, **kwargs)
    assert shape(got) == shape(want)
    if task == "sst" and size == "one" and not kwargs:
        assert shape(got) == [("label", "score")]  # a string: a one-item list
    if task == "qqp" and size == "one" and not kwargs:
        assert shape(got) == ("label", "score")  # a pair dict: the dict itself, as the stock pipeline answers


def test_labels_and_scores(pipe):
    sst = pipe.model.config.tasks["sst"]["label_names"]
    out = pipe(["a fine film", "dull"], task="sst", batch_size=2)
    assert all(o["label"] in sst and 0.0 <= o["score"] <= 1.0 for o in out)
    out = pipe(PAIR, task="qqp")
    assert out["label"] in ("not duplicate", "duplicate") and 0.5 <= out["score"] <= 1.0
    out = pipe([PAIR, PAIR], task="sts")
    assert [o["label"] for o in out] == ["sts", "sts"]  # a score task: its name as the one label
    assert out[0]["score"] == pytest.approx(pipe(PAIR, task="sts")["score"], abs=1e-6)
    assert pipe(PAIR, task="sts", top_k=None) == [pipe(PAIR, task="sts")]
    assert pipe(("a", "b"), task="sst") == pipe(["a", "b"], task="sst")
    assert pipe([], task="sst") == []


def test_top_k(pipe):
    top1 = pipe("a fine film", task="sst")[0]
    top2 = pipe("a fine film", task="sst", top_k=2)
    assert [set(o) for o in top2] == [{"label", "score"}] * 2
    assert_same_outputs([top2[0]], [top1])
    assert top2[0]["score"] >= top2[1]["score"]
    assert pipe("a fine film", task="sst", top_k=1) == [top2[0]]
    every = pipe("a fine film", task="sst", top_k=None)
    assert sorted(o["label"] for o in every) == sorted(pipe.model.config.tasks["sst"]["label_names"])
    assert [o["score"] for o in every] == sorted((o["score"] for o in every), reverse=True)
    assert sum(o["score"] for o in every) == pytest.approx(1.0, abs=1e-5)
    assert len(pipe("a fine film", task="sst", top_k=50)) == 5
    batched = pipe(["a fine film", "dull"], task="sst", top_k=3, batch_size=2)
    assert [len(o) for o in batched] == [3, 3]
    pair = pipe({"text": "a", "text_pair": "b"}, task="qqp", top_k=None)
    assert sum(o["score"] for o in pair) == pytest.approx(1.0, abs=1e-6)
    assert_same_outputs([pair[0]], [pipe({"text": "a", "text_pair": "b"}, task="qqp")])
    fixed = MultitaskTextPipeline(model=pipe.model, tokenizer=pipe.tokenizer, top_k=2)  # set once, at construction
    assert_same_outputs(fixed("a fine film", task="sst"), top2)


def test_function_to_apply(pipe, model, tokenizer):
    batch = collate_rows(
        [{k: v[0] for k, v in encode_texts(tokenizer, model.config.tasks["sst"], ["a fine film"], None, 128).items()}],
        tokenizer.pad_token_id,
    )
    with torch.no_grad():
        logits = model(task="sst", **batch).logits[0]
    labels = model.config.tasks["sst"]["label_names"]
    for function, values in (
        ("none", logits),
        ("sigmoid", logits.sigmoid()),
        ("softmax", logits.softmax(-1)),
        ("SoftMax", logits.softmax(-1)),
    ):
        got = pipe("a fine film", task="sst", top_k=None, function_to_apply=function)
        assert {o["label"]: o["score"] for o in got} == pytest.approx(dict(zip(labels, values.tolist())), abs=1e-5)
        best = pipe("a fine film", task="sst", function_to_apply=function)
        assert_same_outputs(best, [{"label": labels[int(values.argmax())], "score": float(values.max())}])
    softmax = pipe("a fine film", task="sst", function_to_apply="softmax")
    assert_same_outputs(pipe("a fine film", task="sst"), [softmax[0]])
    # a two-label pair head's one logit z: probabilities for softmax and sigmoid, the log-odds [-z, z] for none
    rows = encode_texts(tokenizer, model.config.tasks["qqp"], [PAIR["text"]], [PAIR["text_pair"]], 128)
    with torch.no_grad():
        z = float(model(task="qqp", **collate_rows([{k: v[0] for k, v in rows.items()}], 0)).logits[0])
    p = 1 / (1 + torch.exp(torch.tensor(-z))).item()
    want = {"duplicate": p, "not duplicate": 1 - p}
    for function in ("softmax", "sigmoid"):
        got = pipe(PAIR, task="qqp", top_k=None, function_to_apply=function)
        assert {o["label"]: o["score"] for o in got} == pytest.approx(want, abs=1e-5)
    got = pipe(PAIR, task="qqp", top_k=None, function_to_apply="none")
    assert {o["label"]: o["score"] for o in got} == pytest.approx({"duplicate": z, "not duplicate": -z}, abs=1e-5)
    assert pipe(PAIR, task="sts", function_to_apply="none") == pipe(PAIR, task="sts")


def test_return_all_scores_is_top_k_none(pipe):
    with pytest.warns(FutureWarning, match="return_all_scores is deprecated"):
        got = pipe(["a fine film", "dull"], task="sst", return_all_scores=True)
    assert got == pipe(["a fine film", "dull"], task="sst", top_k=None)
    with pytest.warns(FutureWarning):
        assert pipe("dull", task="sst", return_all_scores=False) == pipe("dull", task="sst")


@pytest.mark.parametrize(
    "inputs, kwargs, error, match",
    [
        ("a fine film", {"task": "qqp"}, ValueError, "compares two sentences"),
        (["ok", "a fine film"], {"task": "sts"}, ValueError, "input 0 is a single sentence"),
        ({"text": "a", "text_pair": "b"}, {"task": "sst"}, ValueError, "reads one sentence"),
        ("a fine film", {"task": "nope"}, ValueError, "unknown task 'nope'.*sst, sst_mlp, qqp"),
        ("a fine film", {}, ValueError, "pass task=..., one of.*no default_task"),
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
        ("a", {"task": "sst", "top_k": 0}, ValueError, "top_k must be a positive integer"),
        ("a", {"task": "sst", "function_to_apply": "tanh"}, ValueError, "function_to_apply must be one of"),
        (
            {"text": "a", "text_pair": "b"},
            {"task": "sts", "function_to_apply": "sigmoid"},
            ValueError,
            "task 'sts' predicts a score: use 'none'",
        ),
        (
            {"text": "a", "text_pair": "b"},
            {"task": "qqp_cos", "function_to_apply": "softmax"},
            ValueError,
            "compares a cosine similarity",
        ),
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
    assert pipe({"text": "a", "text_pair": "b"}, task="qqp_cos", function_to_apply="none") == out
    with pytest.raises(ValueError, match="top_k needs class probabilities"):
        pipe({"text": "a", "text_pair": "b"}, task="qqp_cos", top_k=2)


# ---------------------------------------------------------------------------------------------------------------
# Labels in the config, and the default task
# ---------------------------------------------------------------------------------------------------------------


def test_single_task_model_needs_no_task(tokenizer):
    model = tiny_model(tokenizer, tasks={"sts": {"pair_encoding": "cosine"}})
    one_task = MultitaskTextPipeline(model=model, tokenizer=tokenizer, device=-1)
    assert one_task({"text": "a", "text_pair": "b"}) == one_task({"text": "a", "text_pair": "b"}, task="sts")
    assert one_task({"text": "a", "text_pair": "b"})["label"] == "sts"


def test_default_task_needs_no_task(tokenizer, tmp_path):
    tasks = {"sst": {}, "qqp": {"pair_encoding": "concat_sep"}, "sts": {"pair_encoding": "cosine"}}
    with pytest.raises(MultitaskConfigError, match="default_task 'nli' is not one of the tasks: sst, qqp, sts"):
        MultitaskBertConfig(tasks=tasks, default_task="nli")
    model = tiny_model(tokenizer, tasks={name: tasks[name] for name in ("sts", "sst", "qqp")})
    model.config.set_default_task("qqp")
    assert model.config.id2label == {0: "not duplicate", 1: "duplicate"}  # the default task's labels
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["default_task"] == "qqp" and saved["id2label"] == {"0": "not duplicate", "1": "duplicate"}
    loaded = load_pipeline(str(tmp_path), device=-1)
    assert loaded.model.config.default_task == "qqp"
    assert loaded(PAIR) == loaded(PAIR, task="qqp")  # no task=: the default task
    assert loaded("a fine film", task="sst")[0]["label"] in SST_LABELS  # others by name
    rows = encode_texts(tokenizer, model.config.tasks["qqp"], [PAIR["text"]], [PAIR["text_pair"]], 32)
    batch = collate_rows([{k: v[0] for k, v in rows.items()}], tokenizer.pad_token_id)
    with torch.no_grad():  # the model's forward too
        assert torch.equal(model(**batch).logits, model(task="qqp", **batch).logits)
    model.config.set_default_task(None)
    with pytest.raises(MultitaskConfigError, match=r"pass task=\.\.\..*or set the config's default_task"):
        model(**batch)


def test_id2label_follows_the_tasks():
    assert MultitaskBertConfig(tasks={"sts": {}, "sst": {}}).id2label == dict(enumerate(SST_LABELS))
    # a score task as the default: the first classification task's labels
    config = MultitaskBertConfig(tasks={"sts": {}, "qqp": {}, "sst": {}}, default_task="sts")
    assert config.id2label == {0: "not duplicate", 1: "duplicate"}
    assert config.label2id == {"not duplicate": 0, "duplicate": 1} and config.num_labels == 2
    nli = {"kind": "pair_classification", "label_names": ["entailment", "neutral", "contradiction"]}
    config = MultitaskBertConfig(tasks={"sst": {}, "nli": nli}, default_task="nli", id2label={0: "ignored"})
    assert config.id2label == {0: "entailment", 1: "neutral", 2: "contradiction"}
    assert MultitaskBertConfig(tasks={"sts": {}}).id2label == {0: "LABEL_0", 1: "LABEL_1"}  # no labels: the default


def quickstart_tasks():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "configs", "quickstart.yaml")
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)["tasks"]


def test_saved_quickstart_model_has_real_labels(tokenizer, tmp_path):
    backbone = tmp_path / "backbone"
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            vocab_size=tokenizer.vocab_size,
            max_position_embeddings=128,
        )
    ).save_pretrained(backbone)
    model = build_model(ModelArguments(model_name_or_path=str(backbone), tasks=quickstart_tasks()))
    assert list(model.config.tasks) == ["sst", "qqp", "sts"]
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["id2label"] == {str(i): name for i, name in enumerate(SST_LABELS)}
    assert saved["id2label"]["0"] == "negative" and saved["id2label"]["4"] == "positive"
    assert saved["label2id"] == {name: i for i, name in enumerate(SST_LABELS)}
    assert saved["tasks"]["qqp"]["label_names"] == ["not duplicate", "duplicate"]  # per task, as before
    assert saved["default_task"] is None
    # saved with sorted keys (qqp first), reloaded and saved again: still SST's labels
    reloaded = AutoModel.from_pretrained(tmp_path / "model")
    assert reloaded.config.id2label == dict(enumerate(SST_LABELS))
    reloaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["id2label"] == saved["id2label"]
    # default_task from the YAML/CLI settings, for a fresh model and for a checkpoint continued
    chosen = build_model(
        ModelArguments(model_name_or_path=str(backbone), tasks=quickstart_tasks(), default_task="qqp")
    )
    assert chosen.config.default_task == "qqp" and chosen.config.id2label == {0: "not duplicate", 1: "duplicate"}
    continued = build_model(ModelArguments(model_name_or_path=str(tmp_path / "model"), default_task="sts"))
    assert continued.config.default_task == "sts" and continued.config.id2label == dict(enumerate(SST_LABELS))
    with pytest.raises(MultitaskConfigError, match="default_task 'nli' is not one of the tasks"):
        build_model(ModelArguments(model_name_or_path=str(tmp_path / "model"), default_task="nli"))
    with pytest.raises(MultitaskConfigError, match="default_task 'nli' is not one of the tasks: sst, qqp, sts"):
        ModelArguments(model_name_or_path=str(backbone), tasks=quickstart_tasks(), default_task="nli")  # at once


def test_default_task_from_the_command_line(tmp_path):
    from mtbert.cli.arguments import parse_args

    model_args, _, _ = parse_args(
        [
            "--tasks",
            '["sst", "qqp"]',
            "--default_task",
            "qqp",
            "--data_dir",
            str(tmp_path),
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    assert model_args.default_task == "qqp"
    with pytest.raises(MultitaskConfigError, match="default_task 'sts' is not one of the tasks: sst, qqp"):
        parse_args(
            [
                "--tasks",
                '["sst", "qqp"]',
                "--default_task",
                "sts",
                "--data_dir",
                str(tmp_path),
                "--output_dir",
                str(tmp_path / "out"),
            ]
        )


def test_truncation_of_long_input(pipe, tokenizer):
    long_text = "word " * 2000  # far beyond the encoder's 128 positions
    assert pipe.default_max_length() == 128
    assert set(one(pipe(long_text, task="sst"))) == {"label", "score"}
    assert set(pipe({"text": long_text, "text_pair": long_text}, task="qqp")) == {"label", "score"}
    assert pipe({"text": long_text, "text_pair": "short"}, task="sts_nosep")["label"] == "sts_nosep"
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
    assert set(one(p("fine", task="sst"))) == {"label", "score"}


# ---------------------------------------------------------------------------------------------------------------
# Registration: transformers.pipeline and AutoModel find mtbert locally, without trust_remote_code
# ---------------------------------------------------------------------------------------------------------------


def test_registered_pipeline_task(model, tokenizer):
    from transformers.pipelines import PIPELINE_REGISTRY

    assert PIPELINE_TASK in PIPELINE_REGISTRY.get_supported_tasks()
    p = pipeline(PIPELINE_TASK, model=model, tokenizer=tokenizer, device=-1)
    assert isinstance(p, MultitaskTextPipeline)
    reference = MultitaskTextPipeline(model=model, tokenizer=tokenizer)
    assert_same_outputs([one(p("fine", task="sst"))], [one(reference("fine", task="sst"))])


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
        assert_same_outputs([one(p(x, task=task))], [one(ref(x, task=task))])


def test_transformers_pipeline_without_trust_remote_code(model, tokenizer, tmp_path):
    """With mtbert imported, ``pipeline(model=path)`` infers the task from config.json's custom_pipelines and builds
    it from the installed code, where it would otherwise demand trust_remote_code."""
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["custom_pipelines"] == {
        PIPELINE_TASK: {"impl": "pipeline_mtbert.MultitaskTextPipeline", "pt": ["AutoModel"], "type": "text"}
    }
    p = pipeline(model=str(tmp_path), device=-1)  # no task, no trust_remote_code
    assert type(p) is MultitaskTextPipeline and type(p.model) is MultitaskBertModel
    assert pipeline(PIPELINE_TASK, model=str(tmp_path), device=-1).__class__ is MultitaskTextPipeline
    ref = MultitaskTextPipeline(model=model, tokenizer=tokenizer)
    for task, x in (("sst", SENTENCES[:2]), ("qqp", [PAIR]), ("sts", [PAIR])):
        assert_same_outputs(p(x, task=task), ref(x, task=task))
    config = AutoModel.from_pretrained(tmp_path).config
    assert config.custom_pipelines[PIPELINE_TASK]["impl"] == "pipeline_mtbert.MultitaskTextPipeline"
    remote_class = type("RemoteConfig", (MultitaskBertConfig,), {"local_pipeline_tasks": ()})  # as remote code
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline(model=str(tmp_path), config=remote_class.from_pretrained(tmp_path), device=-1)


def test_pipeline_save_pretrained_records_custom_pipelines(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["custom_pipelines"][PIPELINE_TASK]["impl"] == "pipeline_mtbert.MultitaskTextPipeline"
    assert config["custom_pipelines"][PIPELINE_TASK]["pt"] == ["AutoModel"]
    for name in CODE_FILES:
        assert (tmp_path / name).is_file()


def test_remote_code_files_import_only_relatively():
    package = CODE_DIR
    for name in CODE_FILES:
        source = pathlib.Path(package, name).read_text(encoding="utf-8")
        for line in source.splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import mtbert", "from mtbert")), (name, line)
            if stripped.startswith("from .") or stripped.startswith("import ."):
                module = stripped.split()[1].lstrip(".")
                assert f"{module}.py" in CODE_FILES, line
