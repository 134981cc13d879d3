"""Heads as classes: the registry, any number of labels for pair tasks, sentence regression, old checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mtbert import MultitaskBertConfig, MultitaskBertModel
from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError, normalize_task_spec
from mtbert.models.mtbert.heads_mtbert import HEADS, Binary, Classes, CosineThreshold, Score, head_class, objective

from conftest import tiny_bert_config, tiny_model

NLI_LABELS = ["entailment", "neutral", "contradiction"]
OLD_CHECKPOINT = Path(__file__).resolve().parents[1] / "fixtures" / "mtbert_0_1_checkpoint"


def nli_spec(pair_encoding: str) -> dict:
    return {"kind": "pair_classification", "num_labels": 3, "label_names": NLI_LABELS, "pair_encoding": pair_encoding}


def test_every_head_name_maps_to_its_class():
    assert set(HEADS) == {"sentence", "tokens", "separate", "cosine", "concat_sep", "concat_nosep", "dual"}
    assert head_class(normalize_task_spec("sst", {})) is HEADS["sentence"]
    ner = {"kind": "token_classification", "label_names": ["O", "B-LOC", "I-LOC"]}
    assert head_class(normalize_task_spec("ner", ner)) is HEADS["tokens"]
    for name in ("separate", "cosine", "concat_sep", "concat_nosep", "dual"):
        assert head_class(normalize_task_spec("qqp", {"pair_encoding": name})) is HEADS[name]


def test_objectives_follow_kind_and_labels():
    assert isinstance(objective(normalize_task_spec("sst", {})), Classes)
    assert isinstance(objective(normalize_task_spec("qqp", {"pair_encoding": "concat_sep"})), Binary)
    assert isinstance(objective(normalize_task_spec("qqp", {"pair_encoding": "cosine"})), CosineThreshold)
    assert isinstance(objective(normalize_task_spec("nli", nli_spec("concat_sep"))), Classes)
    assert isinstance(objective(normalize_task_spec("sts", {})), Score)
    assert isinstance(objective(normalize_task_spec("stars", {"kind": "sentence_regression"})), Score)


def test_a_three_label_cosine_head_is_refused_clearly():
    with pytest.raises(MultitaskConfigError, match=r"task 'nli'.*cosine head .* two labels; num_labels=3"):
        normalize_task_spec("nli", nli_spec("cosine"))


def test_label_names_set_the_number_of_labels():
    spec = normalize_task_spec("nli", {"kind": "pair_classification", "label_names": NLI_LABELS})
    assert spec["num_labels"] == 3
    with pytest.raises(MultitaskConfigError, match="2 label_names for num_labels=3"):
        normalize_task_spec("nli", {**nli_spec("concat_sep"), "label_names": NLI_LABELS[:2]})


@pytest.mark.parametrize("pair_encoding", ["concat_sep", "concat_nosep", "separate", "dual"])
def test_three_label_pair_heads_give_three_way_logits(pair_encoding):
    torch.manual_seed(0)
    config = MultitaskBertConfig(encoder=tiny_bert_config().to_dict(), tasks={"nli": nli_spec(pair_encoding)})
    model = MultitaskBertModel(config)
    batch = 4
    if pair_encoding == "separate":
        inputs = {"input_ids": torch.randint(5, 100, (batch, 2, 7))}
    else:
        inputs = {"input_ids": torch.randint(5, 100, (batch, 9))}
    if pair_encoding == "dual":
        inputs["pair_input_ids"] = torch.randint(5, 100, (batch, 2, 6))
    labels = torch.tensor([0, 1, 2, 1])
    out = model(task="nli", labels=labels, **inputs)
    assert out.logits.shape == (batch, 3)
    expected = torch.nn.functional.cross_entropy(out.logits, labels)
    if pair_encoding != "dual":  # a dual head's loss is the sum of its two views' cross-entropies
        torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.heads["nli"].parameters())
    predictions, scores = model.postprocess("nli", out.logits)
    assert set(predictions.tolist()) <= {0, 1, 2}
    torch.testing.assert_close(scores, out.logits.softmax(-1).max(-1).values)


def test_sentence_regression_is_a_kind():
    torch.manual_seed(0)
    tasks = {"stars": {"kind": "sentence_regression", "score_range": [1, 5]}}
    model = MultitaskBertModel(MultitaskBertConfig(encoder=tiny_bert_config().to_dict(), tasks=tasks))
    labels = torch.tensor([1.0, 4.5, 3.0])
    out = model(task="stars", input_ids=torch.randint(5, 100, (3, 8)), labels=labels)
    assert out.logits.shape == (3,)
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.logits, labels))
    with pytest.raises(MultitaskConfigError, match="needs a sentence pair"):
        normalize_task_spec("stars", {"kind": "sentence_regression", "pair_encoding": "cosine"})


def test_a_checkpoint_saved_by_mtbert_0_1_loads_with_the_same_outputs():
    """Saved by the version before heads became classes (qqp stored as num_labels 1, cosine heads absent from the
    weights): the same parameter names load strictly and give the same logits."""
    expected = json.loads((OLD_CHECKPOINT / "expected_logits.json").read_text())
    model = MultitaskBertModel.from_pretrained(str(OLD_CHECKPOINT), use_safetensors=True).eval()
    assert model.config.tasks["qqp"]["num_labels"] == 2
    ids = torch.tensor([[2, 5, 7, 9, 3]])
    pair = torch.tensor([[[2, 5, 7, 3], [2, 8, 9, 3]]])
    with torch.no_grad():
        got = {
            "sst": model(task="sst", input_ids=ids).logits,
            "qqp": model(task="qqp", input_ids=ids).logits,
            "sts": model(task="sts", input_ids=ids, pair_input_ids=pair).logits,
            "para": model(task="para", input_ids=pair).logits,
            "sep": model(task="sep", input_ids=pair).logits,
        }
    for task, logits in got.items():
        torch.testing.assert_close(logits, torch.tensor(expected[task]), rtol=1e-5, atol=1e-6)


def test_a_three_label_pair_task_learns_with_the_trainer(tokenizer, tmp_path):
    """A 3-way NLI-style task through the cross-encoder: the label is the last word of the second sentence, which a
    tiny random BERT learns in a few dozen steps; evaluation reports 3-way predictions and their accuracy."""
    import datasets
    from transformers import TrainingArguments

    from mtbert import MultitaskTrainer
    from mtbert.data import tokenize_task

    words = ["yes", "maybe", "no"]
    subjects = ["the cat sat", "a dog ran", "birds sing", "it rained", "we cooked", "they left"]
    rows = [(s, f"{t} {words[label]}", label) for s in subjects for t in subjects for label in range(3)]
    ds = datasets.Dataset.from_dict(
        {"id": [str(i) for i in range(len(rows))], "text": [r[0] for r in rows], "text_pair": [r[1] for r in rows],
         "label": [r[2] for r in rows]}
    )  # fmt: skip
    spec = normalize_task_spec("nli", nli_spec("concat_sep"))
    tokenized = tokenize_task(ds, tokenizer, spec, max_length=32)
    model = tiny_model({"nli": spec}, vocab_size=tokenizer.vocab_size, seed=0)
    args = TrainingArguments(
        output_dir=str(tmp_path), num_train_epochs=6, per_device_train_batch_size=16, learning_rate=3e-3,
        report_to="none", save_strategy="no", logging_strategy="no", seed=0, use_cpu=True,
    )  # fmt: skip
    trainer = MultitaskTrainer(
        model, args, train_dataset={"nli": tokenized}, eval_dataset={"nli": tokenized}, processing_class=tokenizer
    )
    before = trainer.evaluate()["eval_nli_accuracy"]
    trainer.train()
    metrics = trainer.evaluate()
    output = trainer.predict(tokenized, task="nli")
    assert set(output.predictions.argmax(-1).tolist() if output.predictions.ndim == 2 else output.predictions) == {
        0,
        1,
        2,
    }
    assert metrics["eval_nli_accuracy"] > 0.9 > before + 0.3, (before, metrics)
