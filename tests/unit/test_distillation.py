"""Knowledge distillation (mtbert.training.distillation): the loss is the hand-computed mix for every objective, the
teacher labels the training rows once and the cache serves every later run, ensembles average, token tasks align to the
student's sub-tokens, and the settings are refused by name when wrong."""

from __future__ import annotations

import os

import datasets
import numpy as np
import pytest
import torch
from test_trainer import RAW, TASKS, tokenized

from mtbert import MultitaskBertConfig, MultitaskBertModel, MultitaskConfigError
from mtbert.models.mtbert.configuration_mtbert import normalize_task_spec
from mtbert.models.mtbert.heads_mtbert import align_word_labels, tokenize_words
from mtbert.models.mtbert.kinds_mtbert import IGNORE_INDEX
from mtbert.training.distillation import DistillationSettings, align_to_sub_tokens
from mtbert.training.trainer import MultitaskTrainer
from mtbert.training.training_args import MultitaskTrainingArguments

from conftest import save_tiny_model, tiny_bert_config, tiny_model

TAGS = ["O", "B-LOC", "I-LOC"]
ALPHA, T = 0.3, 2.5


def kl(student_logits, teacher_log_probs, temperature):
    """T² · Σ p_t (log p_t − log p_s) / rows, written out."""
    p_t = torch.softmax(teacher_log_probs / temperature, dim=-1)
    log_p_s = torch.log_softmax(student_logits / temperature, dim=-1)
    rows = student_logits.reshape(-1, student_logits.shape[-1]).shape[0]
    return temperature**2 * (p_t * (torch.log(p_t) - log_p_s)).sum() / rows


# (task spec, what the hand-computed soft loss is, given the head output)
OBJECTIVES = {
    "classes": ({"kind": "sentence_classification", "num_labels": 5, "classifier_dropout": 0.0}, "kl"),
    "binary": ({"kind": "pair_classification", "pair_encoding": "concat_sep", "classifier_dropout": 0.0}, "kl2"),
    "cosine_paraphrase": ({"kind": "pair_classification", "pair_encoding": "cosine"}, "cos_prob"),
    "score": ({"kind": "pair_regression", "pair_encoding": "concat_sep", "classifier_dropout": 0.0}, "mse"),
    "cosine_score": ({"kind": "pair_regression", "pair_encoding": "cosine"}, "mse"),
    "dual_score": ({"kind": "pair_regression", "pair_encoding": "dual", "classifier_dropout": 0.0}, "mse"),
    "dual_binary": ({"kind": "pair_classification", "pair_encoding": "dual", "classifier_dropout": 0.0}, "kl2"),
    "tags": ({"kind": "token_classification", "label_names": TAGS, "classifier_dropout": 0.0}, "kl"),
}


def batch_for(name, spec, tokenizer, model):
    """A 3-row batch in the head's layout, gold labels and teacher targets."""
    texts = ["a great film", "paris is lovely today", "awful"]
    pairs = ["a fine movie", "rome is nice", "bad"]
    g = torch.Generator().manual_seed(1)
    if name == "tags":
        words = [t.split() for t in texts]
        enc = tokenize_words(tokenizer, words, 32)
        length = max(map(len, enc["input_ids"]))
        tags = [[1] + [0] * (len(w) - 1) for w in words]
        ids = torch.zeros(3, length, dtype=torch.long)
        labels = torch.full((3, length), IGNORE_INDEX)
        teacher = torch.full((3, length, 3), float("nan"))
        for row, (x, w_ids) in enumerate(zip(enc["input_ids"], enc["word_ids"])):
            ids[row, : len(x)] = torch.tensor(x)
            labels[row, : len(x)] = torch.tensor(align_word_labels(w_ids, tags[row]))
            per_word = torch.log_softmax(torch.randn(len(words[row]), 3, generator=g), -1)
            teacher[row, : len(x)] = torch.tensor(align_to_sub_tokens(per_word.numpy(), w_ids))
        mask = (ids != 0).long()
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "teacher_targets": teacher}
    head = model.task_head("t")
    encoded = head.encode_texts(tokenizer, texts, pairs, 32)
    from mtbert.data.collators import TaskCollator

    rows = [dict(zip(encoded, values)) for values in zip(*encoded.values())]
    batch = TaskCollator(tokenizer.pad_token_id)(rows)
    regression = "regression" in spec["kind"]
    batch["labels"] = torch.tensor([4.5, 1.0, 2.0]) if regression else torch.tensor([1, 0, 1])
    if name == "classes":
        batch["labels"] = torch.tensor([4, 2, 0])
        batch["teacher_targets"] = torch.log_softmax(torch.randn(3, 5, generator=g), -1)
    elif regression:
        batch["teacher_targets"] = torch.tensor([1.0, 3.5, 0.0])
    else:
        batch["teacher_targets"] = torch.log_softmax(torch.randn(3, 2, generator=g), -1)
    return batch


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_the_loss_is_the_hand_computed_mix_for_every_objective(name, tokenizer):
    spec, soft_rule = OBJECTIVES[name]
    model = tiny_model({"t": spec}, vocab_size=tokenizer.vocab_size).eval()
    batch = batch_for(name, spec, tokenizer, model)
    labels, target = batch["labels"], batch["teacher_targets"]
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "teacher_targets")}
    with torch.no_grad():
        mixed = model(task="t", **batch, distill_alpha=ALPHA, distill_temperature=T).loss
        gold_only = model(task="t", **inputs, labels=labels).loss
        output = model._head_output(
            "t", inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"),
            inputs.get("pair_input_ids"), inputs.get("pair_attention_mask"),
        )  # fmt: skip
    views = output.views if output.views is not None else (output.logits,)

    def soft(view):
        view = view.float()
        if soft_rule == "kl":
            if name == "tags":
                keep = labels.reshape(-1) != IGNORE_INDEX  # the first sub-token of each word
                return kl(view.reshape(-1, 3)[keep], target.reshape(-1, 3)[keep], T)
            return kl(view, target, T)
        if soft_rule == "kl2":  # one logit x is the two-class logits (0, x)
            return kl(torch.stack([torch.zeros_like(view), view], -1), target, T)
        if soft_rule == "cos_prob":
            return ((view - target[:, 1].exp()) ** 2).mean()
        return ((view - target) ** 2).mean()

    expected = (1 - ALPHA) * gold_only + ALPHA * sum(soft(v) for v in views)
    assert mixed.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert mixed.item() != pytest.approx(gold_only.item(), rel=1e-3)  # the teacher's term is really in it
    with torch.no_grad():  # alpha 0 is the plain loss, alpha 1 the teacher's term alone
        assert model(task="t", **batch, distill_alpha=0.0).loss.item() == pytest.approx(gold_only.item(), rel=1e-6)
        only_teacher = model(task="t", **batch, distill_alpha=1.0, distill_temperature=T).loss
    assert only_teacher.item() == pytest.approx(sum(soft(v) for v in views).item(), rel=1e-5, abs=1e-6)


# -- the teacher labels once, through the cache --------------------------------------------------------------


@pytest.fixture(scope="module")
def student_data(tokenizer):
    datasets.disable_progress_bars()
    specs = {task: normalize_task_spec(task, spec) for task, spec in TASKS.items()}
    return tokenized(tokenizer, specs)


def save_teacher(path, tasks, tokenizer, seed):
    return save_tiny_model(path, tasks, tokenizer, seed=seed, max_seq_length=16)


@pytest.fixture(scope="module")
def teachers(tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    # the teacher reads QQP as a joined pair, the student as two separate sentences: per-row targets do not care
    tasks = {"sst": {}, "qqp": {"pair_encoding": "concat_sep"}, "sts": {"pair_encoding": "dual"}}
    return [save_teacher(root / f"teacher{i}", tasks, tokenizer, seed=10 + i) for i in range(2)]


def trainer_for(tokenizer, data, tmp_path, teacher, strategy="round_robin", **distill):
    """A tiny student on ``data`` taught by ``teacher`` (None: a plain run), 3 steps."""
    torch.manual_seed(0)
    model = MultitaskBertModel(
        MultitaskBertConfig(encoder=tiny_bert_config(tokenizer.vocab_size).to_dict(), tasks=TASKS)
    )
    args = MultitaskTrainingArguments(
        output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, strategy=strategy,
        per_device_train_batch_size=2, disable_tqdm=True, seed=0, save_strategy="no", max_steps=3,
        distill={"cache_dir": str(tmp_path / "cache"), "alpha": 0.5, **distill} if teacher else None,
    )  # fmt: skip
    return MultitaskTrainer(model, args, train_dataset=data, processing_class=tokenizer, teacher=teacher)


def teacher_log_probs(path, task, texts, pairs=None):
    from mtbert.inference.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(path)
    head = model.task_head(task)
    enc = head.encode_texts(tokenizer, texts, pairs, 16)
    from mtbert.data.collators import TaskCollator

    batch = TaskCollator(tokenizer.pad_token_id)([dict(zip(enc, v)) for v in zip(*enc.values())])
    with torch.no_grad():
        logits = model(task=task, **batch).logits
    return head.objective.probabilities(logits) if task != "sts" else logits


def test_the_teacher_labels_once_and_the_cache_serves_the_next_run(tokenizer, student_data, teachers, tmp_path):
    first = trainer_for(tokenizer, student_data, tmp_path, teachers[0])
    assert first.teacher_labeller.labelled_calls == 3  # sst, qqp, sts: each labelled by running the teacher
    assert len(os.listdir(tmp_path / "cache")) == 3
    second = trainer_for(tokenizer, student_data, tmp_path, teachers[0])
    assert second.teacher_labeller.labelled_calls == 0  # all three read back
    assert first.teacher_labeller.teachers_loaded == 1
    assert second.teacher_labeller.teachers_loaded == 0  # the teacher was not even loaded
    for task in TASKS:
        a = [r["teacher_targets"] for r in first.train_dataset.task_rows[task]]
        b = [r["teacher_targets"] for r in second.train_dataset.task_rows[task]]
        np.testing.assert_array_equal(a, b)
    # what was cached is the teacher's own prediction (log-probabilities; the score for STS)
    expected = teacher_log_probs(teachers[0], "sst", RAW["sst"]["text"]).log()
    got = torch.tensor([r["teacher_targets"] for r in first.train_dataset.task_rows["sst"]])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    expected = teacher_log_probs(teachers[0], "sts", RAW["sts"]["text"], RAW["sts"]["text_pair"])
    got = torch.tensor([r["teacher_targets"] for r in first.train_dataset.task_rows["sts"]])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # other data is another key
    fewer = {**student_data, "sst": student_data["sst"].select(range(5))}
    third = trainer_for(tokenizer, fewer, tmp_path, teachers[0])
    assert third.teacher_labeller.labelled_calls == 1


def test_an_ensemble_teaches_its_averaged_probabilities(tokenizer, student_data, teachers, tmp_path):
    trainer = trainer_for(tokenizer, student_data, tmp_path, teachers)
    probabilities = [teacher_log_probs(t, "qqp", RAW["qqp"]["text"], RAW["qqp"]["text_pair"]) for t in teachers]
    got = torch.tensor([r["teacher_targets"] for r in trainer.train_dataset.task_rows["qqp"]])
    torch.testing.assert_close(got, torch.stack(probabilities).mean(0).log(), rtol=1e-4, atol=1e-5)
    scores = [teacher_log_probs(t, "sts", RAW["sts"]["text"], RAW["sts"]["text_pair"]) for t in teachers]
    got = torch.tensor([r["teacher_targets"] for r in trainer.train_dataset.task_rows["sts"]])
    torch.testing.assert_close(got, torch.stack(scores).mean(0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("strategy", ["round_robin", "sum", "pcgrad"])
def test_a_student_trains_under_every_strategy(tokenizer, student_data, teachers, tmp_path, strategy):
    trainer = trainer_for(tokenizer, student_data, tmp_path, teachers[0], strategy=strategy)
    batch = next(iter(trainer.get_train_dataloader()))
    assert all("teacher_targets" in b for b in batch.values())
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.train()
    assert np.isfinite(result.training_loss)
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_the_teacher_changes_what_the_student_learns(tokenizer, student_data, teachers, tmp_path):
    """Same seed, same batches: with alpha 1 the student follows the teacher, not the labels, so the weights differ
    from a plain run's."""
    plain = trainer_for(tokenizer, student_data, tmp_path, None)
    plain.train()
    taught = trainer_for(tokenizer, student_data, tmp_path, teachers[0], alpha=1.0)
    taught.train()
    a, b = plain.model.state_dict(), taught.model.state_dict()
    assert any(not torch.allclose(a[k], b[k]) for k in a)


def test_a_token_task_learns_the_teachers_tags_per_word(tokenizer, tmp_path):
    from mtbert.data import tokenize_task

    ner = {"kind": "token_classification", "label_names": TAGS}
    teacher = save_teacher(tmp_path / "teacher", {"ner": ner}, tokenizer, seed=3)
    words = [["Paris", "is", "lovely"], ["Smithers", "went", "to", "Rome"]]
    raw = datasets.Dataset.from_dict({"tokens": words, "label": [[1, 0, 0], [0, 0, 0, 1]]})
    data = {"ner": tokenize_task(raw, tokenizer, normalize_task_spec("ner", ner), 16)}
    torch.manual_seed(0)
    student = MultitaskBertModel(
        MultitaskBertConfig(encoder=tiny_bert_config(tokenizer.vocab_size).to_dict(), tasks={"ner": ner})
    )
    args = MultitaskTrainingArguments(
        output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, per_device_train_batch_size=2,
        disable_tqdm=True, save_strategy="no", max_steps=2, distill={"cache_dir": str(tmp_path / "cache")},
    )  # fmt: skip
    trainer = MultitaskTrainer(student, args, train_dataset=data, processing_class=tokenizer, teacher=teacher)
    row = trainer.train_dataset.task_rows["ner"][1]
    targets = np.array(row["teacher_targets"])
    labelled = np.array(row["token_labels"]) != IGNORE_INDEX  # each word's first sub-token
    assert np.isfinite(targets[labelled]).all() and np.isnan(targets[~labelled]).all()
    assert labelled.sum() == 4
    np.testing.assert_allclose(np.exp(targets[labelled]).sum(-1), 1.0, rtol=1e-5)
    assert np.isfinite(trainer.train().training_loss)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"teacher": "x", "alpha": 1.5}, "alpha must be in [0, 1]"),
        ({"teacher": "x", "alpha": {"sts": -0.1}}, "distill.alpha.sts must be in [0, 1]"),
        ({"teacher": "x", "alpha": "high"}, "distill.alpha must be in [0, 1]"),
        ({"teacher": "x", "temperature": 0}, "temperature must be > 0"),
        ({"teacher": "x", "alhpa": 0.5}, "unknown setting(s) alhpa"),
        ({"alpha": 0.5}, "distill.teacher must be a model folder"),
        ({"teacher": "x", "batch_size": 2.5}, "batch_size must be a int"),
        ("[1, 2]", "teacher must be a model folder (or a list of them), got [1, 2]"),
        (3, "must be a mapping"),
        ({"teacher": "./no/such/folder"}, "no/such/folder"),
    ],
)
def test_settings_are_refused_by_name(value, message):
    with pytest.raises(MultitaskConfigError) as error:
        DistillationSettings.parse(value)
    assert message in str(error.value)


def test_a_teacher_that_predicts_something_else_is_refused(tokenizer, student_data, tmp_path):
    three = {"num_labels": 3, "label_names": ["neg", "neu", "pos"]}
    wrong = save_teacher(tmp_path / "wrong", {"sst": three}, tokenizer, seed=0)
    with pytest.raises(MultitaskConfigError, match="'sst' has 5 labels in the student but 3 in the teacher"):
        trainer_for(tokenizer, student_data, tmp_path, wrong)
    other_kind = save_teacher(tmp_path / "kind", {"sts": {"kind": "pair_classification"}}, tokenizer, seed=0)
    with pytest.raises(MultitaskConfigError, match="pair_regression in the student but pair_classification"):
        trainer_for(tokenizer, student_data, tmp_path, other_kind)


def test_the_config_file_spelling_parses(tmp_path, teachers, small_minbert):
    from mtbert.cli.arguments import parse_args

    config = tmp_path / "c.yaml"
    config.write_text(
        f"distill: {{teacher: {teachers[0]}, alpha: 0.7}}\nreport_to: none\nuse_cpu: true\ndata_dir: {small_minbert}\n"
    )
    _, _, args = parse_args([str(config), "--output_dir", str(tmp_path / "o"), "--distill.temperature", "3"])
    assert args.distill["teacher"] == [teachers[0]] and args.distill["alpha"] == 0.7
    assert args.distill["temperature"] == 3.0


def test_alpha_per_task_reaches_each_tasks_loss(tokenizer, student_data, teachers, tmp_path, monkeypatch):
    """``alpha: {task: share}``: each task's forward gets its own share (0.5 for the tasks not named)."""
    trainer = trainer_for(tokenizer, student_data, tmp_path, teachers[0], alpha={"sst": 0.9, "sts": 0.1})
    seen = {}
    forward = trainer.model.forward

    def spy(*args, **kwargs):
        seen[kwargs["task"]] = kwargs.get("distill_alpha")
        return forward(*args, **kwargs)

    monkeypatch.setattr(trainer.model, "forward", spy)
    for task, rows in trainer.train_dataset.task_rows.items():
        trainer._task_loss(trainer.model, task, trainer.data_collator([(task, r) for r in rows[:2]])[task])
    assert seen == {"sst": 0.9, "qqp": 0.5, "sts": 0.1}
