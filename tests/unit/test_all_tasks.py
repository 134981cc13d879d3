"""Every task in one call (issue 24): ``pipe(x, task=[...])``, ``task="all"``, ``model.forward_tasks`` and
``examples/predict.py --input_file ... --tasks all`` make one encoder pass per distinct input encoding, and answer
what one call per task answers (to 1e-6)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re

import pytest
import torch

from mtbert import MultitaskTextPipeline
from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError

from conftest import load_example_script

PAIR = {"text": "How do I learn Python?", "text_pair": "What is the best way to learn Python?"}
PAIRS = [
    PAIR,
    {"text": "Two dogs play on the grass.", "text_pair": "Two black dogs are playing in a grassy plain, loudly."},
    {"text": "Why?", "text_pair": "Why is it that things go wrong?"},
]
SENTENCES = ["It 's a lovely film with lovely performances .", "bad", "Paris is lovely in May"]
TAGS = ["O", "B-LOC", "I-LOC"]

# Two concat_sep pair tasks, the bi-encoder heads (cosine, separate, dual), a sentence task and a token task.
TASKS = {
    "sst": {"pooling": "cls"},
    "qqp": {"pair_encoding": "concat_sep"},
    "sts": {"pair_encoding": "concat_sep"},
    "qqp_cos": {"kind": "pair_classification", "pair_encoding": "cosine", "pooling": "mean"},
    "sts_sep": {"kind": "pair_regression", "pair_encoding": "separate"},
    "qqp_dual": {"kind": "pair_classification", "pair_encoding": "dual"},
    "ner": {"kind": "token_classification", "label_names": TAGS},
}
PAIR_TASKS = ["qqp", "sts", "qqp_cos", "sts_sep", "qqp_dual"]


@pytest.fixture
def model(make_model, tokenizer):
    return make_model(TASKS, vocab_size=tokenizer.vocab_size).eval()


@pytest.fixture
def pipe(model, tokenizer):
    return MultitaskTextPipeline(model=model, tokenizer=tokenizer, device=-1)


@contextlib.contextmanager
def counted(model):
    """The number of calls of each encoder module while the block runs (a forward hook on each)."""
    calls, encoders = {}, {}
    for name, encoder in model.task_encoders().items():  # a shared encoder is named by its first task
        encoders.setdefault(id(encoder), (name, encoder))
    handles = [e.register_forward_hook(lambda m, i, o, n=name: calls.__setitem__(n, calls.get(n, 0) + 1))
               for name, e in encoders.values()]  # fmt: skip
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def assert_close(got, want, atol=1e-6):
    """The same nesting, labels and words; numbers equal to ``atol``."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), (got, want)
        for key in want:
            assert_close(got[key], want[key], atol)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (got, want)
        for g, w in zip(got, want):
            assert_close(g, w, atol)
    elif isinstance(want, str) or want is None:
        assert got == want
    else:
        assert float(got) == pytest.approx(float(want), abs=atol)


def one_call_per_task(pipe, inputs, tasks, **kwargs):
    """What ``task=[...]`` must answer: each task's own answer, regrouped per input."""
    answers = {task: pipe(inputs, task=task, **kwargs) for task in tasks}
    if isinstance(inputs, list):
        return [{task: answers[task][row] for task in tasks} for row in range(len(inputs))]
    return answers


# ---------------------------------------------------------------------------------------------------------------
# The pipeline: encoder passes and answers
# ---------------------------------------------------------------------------------------------------------------


def test_two_concat_sep_tasks_make_one_encoder_pass(pipe, model):
    with counted(model) as calls:
        got = pipe(PAIR, task=["qqp", "sts"])
    assert calls == {"sst": 1}  # the shared encoder (named by its first task), called once
    with counted(model) as calls:
        want = one_call_per_task(pipe, PAIR, ["qqp", "sts"])
    assert calls == {"sst": 2}
    assert_close(got, want)
    assert got["qqp"]["label"] in model.config.tasks["qqp"]["label_names"] and got["sts"]["label"] == "sts"


def test_bi_encoder_heads_share_the_sentence_embeddings(pipe, model):
    with counted(model) as calls:  # cosine and separate: the two sentences, one pass
        got = pipe(PAIRS, task=["qqp_cos", "sts_sep"], batch_size=3)
    assert calls == {"sst": 1}
    assert_close(got, one_call_per_task(pipe, PAIRS, ["qqp_cos", "sts_sep"], batch_size=3))
    with counted(model) as calls:  # a dual head adds its joined pair; its sentences are the ones above
        got = pipe(PAIRS, task=["qqp_cos", "sts_sep", "qqp_dual"], batch_size=3)
    assert calls == {"sst": 2}
    assert_close(got, one_call_per_task(pipe, PAIRS, ["qqp_cos", "sts_sep", "qqp_dual"], batch_size=3))
    with counted(model) as calls:  # truncated alike: still shared
        got = pipe(PAIRS, task=["qqp_cos", "qqp_dual"], batch_size=3, max_length=6)
    assert calls == {"sst": 2}
    assert_close(got, one_call_per_task(pipe, PAIRS, ["qqp_cos", "qqp_dual"], batch_size=3, max_length=6))


def test_all_on_pairs_is_every_pair_task_in_two_passes_per_batch(pipe, model):
    with counted(model) as calls:
        got = pipe(PAIRS, task="all", batch_size=2)
    assert calls == {"sst": 2 * 2}  # the joined pairs and the sentences, for each of the 2 batches
    assert [list(answer) for answer in got] == [PAIR_TASKS] * len(PAIRS)
    assert_close(got, one_call_per_task(pipe, PAIRS, PAIR_TASKS, batch_size=2))
    assert_close(pipe(PAIR, task="all"), one_call_per_task(pipe, PAIR, PAIR_TASKS))


def test_all_on_strings_is_the_sentence_and_token_tasks(pipe, model):
    with counted(model) as calls:
        got = pipe(SENTENCES[2], task="all")
    assert list(got) == ["sst", "ner"]
    assert calls == {"sst": 1}  # the token task's sub-words are the sentence task's: one pass
    want = one_call_per_task(pipe, SENTENCES[2], ["sst", "ner"])
    assert isinstance(got["sst"], list) and len(got["sst"]) == 1  # a string's one-item list, as task="sst" gives
    assert_close(got, want)
    assert_close(pipe(SENTENCES, task="all", batch_size=2), one_call_per_task(pipe, SENTENCES, ["sst", "ner"],
                                                                              batch_size=2))  # fmt: skip


def test_settings_go_to_the_tasks_that_take_them(pipe):
    got = pipe(SENTENCES, task="all", top_k=2, aggregation_strategy="first", max_length=8)
    want_sst = pipe(SENTENCES, task="sst", top_k=2, max_length=8)
    want_ner = pipe(SENTENCES, task="ner", aggregation_strategy="first", max_length=8)
    assert_close(got, [{"sst": s, "ner": n} for s, n in zip(want_sst, want_ner)])
    assert_close(pipe(PAIR, task=["qqp", "sts"], function_to_apply="none"),
                 one_call_per_task(pipe, PAIR, ["qqp", "sts"], function_to_apply="none"))  # fmt: skip


@pytest.mark.parametrize(
    "inputs, kwargs, match",
    [
        (PAIR, {"task": []}, r"task=\[\] names no task"),
        (PAIR, {"task": ["qqp", "qqp"]}, r"lists 'qqp' more than once"),
        (PAIR, {"task": ["qqp", "nli"]}, r"unknown task 'nli' in task=\['qqp', 'nli'\]; this model has sst, qqp"),
        (PAIR, {"task": ["qqp", 3]}, r"unknown task 3 in task="),
        (PAIR, {"task": ["qqp", "sst"]}, r"input has a text_pair, but task 'sst'"),
        (SENTENCES[0], {"task": ["sst", "qqp"]}, r"single sentence .*task 'qqp' .*compares two sentences"),
        ([SENTENCES[0], PAIR], {"task": "all"}, r"task='all' .* mix single sentences and sentence pairs"),
        ([PAIR, None], {"task": "all"}, r"input 1 is None"),
        (PAIR, {"task": "all", "function_to_apply": "sigmoid"}, r"function_to_apply='sigmoid' .*task 'sts'"),
        (PAIR, {"task": "all", "aggregation_strategy": "simple"}, r"aggregation_strategy: only token tasks"),
        ("Paris", {"task": ["ner"], "top_k": 2}, r"top_k: only sentence and pair tasks"),
        (PAIR, {"task": ["qqp", "qqp_cos"], "top_k": 1}, r"top_k needs class probabilities; task 'qqp_cos'"),
        (PAIR, {"task": "all", "max_length": 2}, r"max_length must be an integer >= 4"),
        (PAIR, {"task": "all", "nope": 1}, r"unknown argument\(s\) nope"),
    ],
)
def test_bad_task_values_are_refused_in_one_line(pipe, inputs, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match) as caught:
        pipe(inputs, **kwargs)
    assert "\n" not in str(caught.value)


def test_all_with_no_fitting_task_names_the_tasks(make_model, tokenizer):
    model = make_model({"qqp": {}, "sts": {}}, vocab_size=tokenizer.vocab_size).eval()
    pipe = MultitaskTextPipeline(model=model, tokenizer=tokenizer, device=-1)
    with pytest.raises(ValueError, match=r"task='all': no task of this model reads one sentence; it has qqp"):
        pipe("a fine film", task="all")


def test_a_task_named_all_is_still_that_task(make_model, tokenizer):
    model = make_model({"all": {"kind": "sentence_classification", "num_labels": 2}, "sst": {}},
                       vocab_size=tokenizer.vocab_size).eval()  # fmt: skip
    pipe = MultitaskTextPipeline(model=model, tokenizer=tokenizer, device=-1)
    assert pipe("a fine film", task="all") == pipe("a fine film", task=["all"])["all"]


# ---------------------------------------------------------------------------------------------------------------
# The model: forward_tasks
# ---------------------------------------------------------------------------------------------------------------


def task_batches(model, tokenizer, tasks, pairs):
    from mtbert.models.mtbert.pipeline_mtbert import collate_rows, encode_texts

    batches = {}
    for task in tasks:
        encoded = encode_texts(tokenizer, model.config.tasks[task], [p["text"] for p in pairs],
                               [p["text_pair"] for p in pairs], 32)  # fmt: skip
        rows = [{k: v[i] for k, v in encoded.items()} for i in range(len(pairs))]
        batches[task] = collate_rows(rows, tokenizer.pad_token_id)
    return batches


@pytest.mark.parametrize("shared", [True, False])
def test_forward_tasks_equals_forward(make_model, tokenizer, shared):
    tasks = {name: TASKS[name] for name in PAIR_TASKS}
    model = make_model(tasks, shared_encoder=shared, vocab_size=tokenizer.vocab_size).eval()
    batches = task_batches(model, tokenizer, PAIR_TASKS, PAIRS)
    with torch.no_grad(), counted(model) as calls:
        got = model.forward_tasks(batches)
    # shared: the joined pairs and the sentences; one encoder per task: nothing to share, one pass per encoder input
    assert calls == ({"qqp": 2} if shared else {"qqp": 1, "sts": 1, "qqp_cos": 1, "sts_sep": 1, "qqp_dual": 2})
    with torch.no_grad():
        for task in PAIR_TASKS:
            want = model(task=task, **batches[task])
            assert torch.allclose(got[task].logits, want.logits, atol=1e-6, rtol=0)
            assert torch.allclose(got[task].embeddings, want.embeddings, atol=1e-6, rtol=0)


def test_forward_tasks_refuses_labels_and_wrong_layouts(make_model, tokenizer):
    model = make_model({name: TASKS[name] for name in PAIR_TASKS}, vocab_size=tokenizer.vocab_size).eval()
    batches = task_batches(model, tokenizer, ["qqp", "qqp_cos"], PAIRS)
    with pytest.raises(MultitaskConfigError, match=r"batch of task 'qqp' has labels; it predicts from input_ids"):
        model.forward_tasks({"qqp": {**batches["qqp"], "labels": torch.zeros(3, dtype=torch.long)}})
    with pytest.raises(MultitaskConfigError, match=r"task 'qqp_cos' .* takes input_ids of shape \(batch, 2, length\)"):
        model.forward_tasks({"qqp_cos": batches["qqp"]})
    with pytest.raises(MultitaskConfigError, match=r"unknown task 'nli'"):
        model.forward_tasks({"nli": batches["qqp"]})
    with pytest.raises(MultitaskConfigError, match=r"forward_tasks takes \{task: batch\}"):
        model.forward_tasks({})


# ---------------------------------------------------------------------------------------------------------------
# mtbert.inference.predict and examples/predict.py --input_file ... --tasks all
# ---------------------------------------------------------------------------------------------------------------


def test_predict_tasks_equals_predict_task_in_fewer_passes(model, tokenizer, tmp_path):
    from mtbert.inference.predict import input_tasks, predict_task, predict_tasks, read_inputs, tokenize_inputs

    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    rows = read_inputs(str(path))
    tasks = input_tasks(model.config.tasks, ["all"], rows)
    assert tasks == tuple(PAIR_TASKS)
    splits = tokenize_inputs(rows, tokenizer, model.config.tasks, tasks, 32)
    with counted(model) as calls:
        got = predict_tasks(model, splits, batch_size=1, pad_token_id=tokenizer.pad_token_id, progress=False)
    assert calls == {"sst": 2 * len(PAIRS)}  # one joined and one per-sentence pass per batch of one row
    for task in tasks:
        want = predict_task(model, task, splits[task], batch_size=1, pad_token_id=tokenizer.pad_token_id,
                            progress=False)  # fmt: skip
        assert list(got[task]["predictions"]) == list(want["predictions"])
        assert got[task]["scores"] == pytest.approx(want["scores"], abs=1e-6)


@pytest.fixture
def saved_model(model, tokenizer, tmp_path):
    folder = tmp_path / "model"
    model.config.max_seq_length = 32
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_predict(argv):
    """``examples/predict.py`` in-process: ``(exit code, stdout, stderr)``."""
    script = load_example_script("predict")
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            script.main([str(a) for a in argv])
        except SystemExit as exit_info:
            code = exit_info.code
    return code, out.getvalue(), err.getvalue()


def test_predict_script_writes_every_task_of_a_file(saved_model, pipe, tmp_path):
    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "text_pair"])
        writer.writerows([f"p{i}", p["text"], p["text_pair"]] for i, p in enumerate(PAIRS))
    code, out, err = run_predict(["--model_name_or_path", saved_model, "--input_file", pairs, "--tasks", "all",
                                  "--output_dir", tmp_path / "preds", "--batch_size", 2])  # fmt: skip
    assert code == 0, err
    written = tmp_path / "preds" / "predictions.csv"
    assert out.strip() == str(written)
    with open(written, encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0])[:3] == ["id", "text", "text_pair"] and sorted(list(table[0])[3:]) == sorted(PAIR_TASKS)
    assert [r["id"] for r in table] == ["p0", "p1", "p2"]
    want = pipe(PAIRS, task="all", max_length=32)
    for row, answer in zip(table, want):
        assert row["qqp"] == answer["qqp"]["label"] and row["qqp_dual"] == answer["qqp_dual"]["label"]
        assert float(row["sts"]) == pytest.approx(answer["sts"]["score"], abs=1e-5)

    sentences = tmp_path / "sentences.jsonl"
    sentences.write_text("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES))
    code, out, err = run_predict(["--model_name_or_path", saved_model, "--input_file", sentences,
                                  "--output_dir", tmp_path / "preds"])  # fmt: skip
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "preds" / "predictions.jsonl").read_text().splitlines()]
    assert [sorted(r) for r in records] == [["id", "ner", "sst", "text"]] * len(SENTENCES)
    assert all(len(r["ner"]) == len(r["text"].split()) and set(r["ner"]) <= set(TAGS) for r in records)


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--tasks", "sst"], "--tasks picks the tasks to predict for --input_file"),
        (["--input_file", "@PAIRS@", "--tasks", "sst"], r"tasks: task 'sst' \(sentence_classification\) reads one"),
        (["--input_file", "@PAIRS@", "--tasks", "qqp", "nli"], r"unknown task 'nli'; .* or all alone"),
        (["--input_file", "@PAIRS@", "--tasks", "qqp", "qqp"], r"tasks: 'qqp' is listed more than once"),
        (["--input_file", "@PAIRS@", "--data_dir", "@PAIRS@"], r"--data_dir: the leaderboard data"),
        (["--input_file", "@MISSING@"], r"input_file '.*missing.csv' is not a file"),
        (["--input_file", "@NO_TEXT@"], r"has no text column \(found sentence\)"),
    ],
)
def test_predict_script_refuses_input_mistakes_in_one_line(saved_model, tmp_path, extra, match):
    (tmp_path / "pairs.tsv").write_text("text\ttext_pair\na b\ta c\n")
    (tmp_path / "no_text.csv").write_text("sentence\na fine film\n")
    tokens = {"@PAIRS@": tmp_path / "pairs.tsv", "@MISSING@": tmp_path / "missing.csv",
              "@NO_TEXT@": tmp_path / "no_text.csv"}  # fmt: skip
    extra = [str(tokens.get(a, a)) for a in extra]
    code, _out, err = run_predict(["--model_name_or_path", saved_model, "--output_dir", tmp_path / "preds", *extra])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mtbert: error: "), err
    assert re.search(match, lines[0]), lines[0]
    assert not (tmp_path / "preds").exists()
