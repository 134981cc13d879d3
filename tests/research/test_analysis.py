"""Error analysis on a tiny random model saved to disk and a tiny minBERT folder cut from the real dev files.

Every number in the report is checked against a direct computation from the model's own predictions.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from mtbert_research.analysis import (
    AnalysisReport,
    analyze,
    analyze_task,
    classification_analysis,
    confusion_matrix,
    paraphrase_analysis,
    render_markdown,
    row_normalise,
    summary,
)

from conftest import SHARED_DATA_DIR, tiny_model

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FILES = (
    "ids-sst-dev.csv",
    "quora-dev.csv",
    "sts-dev.csv",
    "ids-sst-test-student.csv",
    "quora-test-student.csv",
    "sts-test-student.csv",
)
ROWS = 30


# --------------------------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------------------------


def test_paraphrase_analysis_subsets_and_most_confident_errors():
    labels = [1, 1, 1, 0, 0, 0, 0, 1]
    predictions = [1, 0, 0, 1, 1, 0, 1, 0]
    scores = [0.9, 0.2, 0.4, 0.6, 0.95, 0.1, 0.7, 0.05]
    ids = [f"id{i}" for i in range(8)]
    result = paraphrase_analysis(
        ids, [f"a{i}" for i in range(8)], [f"b{i}" for i in range(8)], labels, predictions, scores, top_n=2
    )
    assert result["accuracy"] == pytest.approx(2 / 8)
    assert result["paraphrase_accuracy"] == pytest.approx(1 / 4)  # ids 0, 1, 2, 7: only 0 right
    assert result["non_paraphrase_accuracy"] == pytest.approx(1 / 4)  # ids 3, 4, 5, 6: only 5 right
    assert (result["n_paraphrases"], result["n_non_paraphrases"]) == (4, 4)
    assert (result["n_false_positives"], result["n_false_negatives"]) == (3, 3)
    assert [e["id"] for e in result["false_positives"]] == ["id4", "id6"]  # highest scores first
    assert [e["id"] for e in result["false_negatives"]] == ["id7", "id1"]  # lowest scores first
    assert result["false_positives"][0] == {
        "id": "id4",
        "text": "a4",
        "text_pair": "b4",
        "score": 0.95,
        "label": 0,
        "prediction": 1,
    }


def test_paraphrase_analysis_with_one_class_only():
    result = paraphrase_analysis(["x", "y"], ["a", "b"], ["c", "d"], [0, 0], [0, 1], [0.1, 0.8])
    assert result["paraphrase_accuracy"] is None and result["non_paraphrase_accuracy"] == 0.5
    assert result["false_negatives"] == [] and len(result["false_positives"]) == 1


def test_confusion_matrix_and_row_normalisation():
    matrix = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4)
    assert matrix.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    normalised = row_normalise(matrix)
    assert normalised[0].tolist() == [0.5, 0.5, 0, 0] and normalised[3].tolist() == [0, 0, 0, 0]
    result = classification_analysis([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], ["a", "b", "c", "d"])
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["per_class_recall"][:3] == pytest.approx([0.5, 1.0, 2 / 3])
    assert result["per_class_recall"][3] is None  # no dev example of label "d"


def test_each_task_gets_the_analysis_its_kind_allows():
    """Binary pairs: paraphrase subsets; 3-way pairs (NLI) and sentences: a confusion matrix; any regression: a scatter
    of predicted against gold."""
    from types import SimpleNamespace

    tasks = {
        "qqp": {"kind": "pair_classification", "num_labels": 2, "pair_encoding": "separate"},
        "nli": {"kind": "pair_classification", "num_labels": 3, "label_names": ["entail", "neutral", "contra"]},
        "rate": {"kind": "sentence_regression", "score_range": [1, 5]},
    }
    model = SimpleNamespace(config=SimpleNamespace(tasks=tasks))
    rows = {"id": ["a", "b", "c", "d"], "text": ["w", "x", "y", "z"], "text_pair": ["1", "2", "3", "4"]}
    qqp = analyze_task(
        model,
        "qqp",
        {**rows, "label": [1, 0, 1, 0]},
        {"predictions": np.array([1, 1, 0, 0]), "scores": np.array([0.9, 0.8, 0.2, 0.1])},
    )
    assert (qqp["analysis"], qqp["paraphrase_accuracy"], qqp["non_paraphrase_accuracy"]) == ("paraphrase", 0.5, 0.5)
    nli = analyze_task(
        model, "nli", {**rows, "label": [0, 1, 2, 2]}, {"predictions": np.array([0, 2, 2, 1]), "scores": np.ones(4)}
    )
    assert nli["analysis"] == "confusion" and nli["kind"] == "pair_classification"
    assert nli["confusion"].tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 1]] and nli["accuracy"] == 0.5
    rate = analyze_task(
        model,
        "rate",
        {**rows, "label": [1.0, 2.0, 3.0, 5.0]},
        {"predictions": np.array([1.5, 2.0, 3.5, 4.0]), "scores": np.zeros(4)},
    )
    assert rate["analysis"] == "regression" and rate["score_range"] == [1, 5]
    assert rate["mean_absolute_error"] == pytest.approx(0.5)
    report = AnalysisReport(model="m", tasks={"qqp": qqp, "nli": nli, "rate": rate})
    markdown = render_markdown(report)
    assert "## QQP: accuracy on subsets" in markdown and "## NLI: confusion matrix" in markdown
    assert "| true \\ predicted | entail | neutral | contra | recall |" in markdown
    assert "## RATE: predicted against gold" in markdown
    assert "nli: accuracy 0.500 (n=4)" in summary(report)


# --------------------------------------------------------------------------------------------------------------
# A saved tiny model on a tiny minBERT folder
# --------------------------------------------------------------------------------------------------------------


def cut_data(folder: Path, files=FILES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        with open(SHARED_DATA_DIR / name, "rb") as handle:
            lines = [next(handle) for _ in range(ROWS + 1)]
        (folder / name).write_bytes(b"".join(lines))
    return folder


@torch.no_grad()
def spread_logits(model, tokenizer, data_dir: Path, task: str) -> None:
    """Scale a random head's output layer and centre it on the dev set's median logit."""
    from mtbert.cli.arguments import DataArguments
    from mtbert.cli.run import load_tokenized
    from mtbert.inference.predict import predict_task

    head = model.heads[task].out_proj
    head.weight.mul_(200.0)
    head.bias.zero_()
    data_args = DataArguments(data_source="minbert", data_dir=str(data_dir))
    dev = load_tokenized({task: model.config.tasks[task]}, data_args, tokenizer, splits=("dev",))[task]["dev"]
    probabilities = np.clip(predict_task(model, task, dev, progress=False)["scores"], 1e-7, 1 - 1e-7)
    head.bias.sub_(float(np.median(np.log(probabilities / (1 - probabilities)))) + 1e-3)


@pytest.fixture(scope="module")
def workspace(tokenizer, tmp_path_factory):
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"the shared minBERT data folder {SHARED_DATA_DIR} is not available")

    root = tmp_path_factory.mktemp("analysis")

    data = cut_data(root / "data")

    def save(name, tasks):
        model = tiny_model(tasks, vocab_size=len(tokenizer), seed=0)
        if "qqp" in model.heads and hasattr(model.heads["qqp"], "out_proj"):  # spread the random paraphrase
            # logits around 0: false positives *and* negatives (a cosine head has no output layer)
            spread_logits(model, tokenizer, data, "qqp")
        folder = root / name
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return folder

    return {
        "data": data,
        "default_model": save("default", None),  # sst, qqp (separate, linear), sts (separate, linear)
        "cosine_model": save(
            "cosine", {"sst": {}, "qqp": {"pair_encoding": "cosine", "pooling": "mean", "cosine_threshold": 0.75}}
        ),
        "root": root,
    }


def direct_predictions(model_dir: Path, data_dir: Path, task: str):
    """Predictions computed here, independently of mtbert_research.analysis."""
    from transformers import AutoTokenizer

    from mtbert import MultitaskBertModel
    from mtbert.cli.arguments import DataArguments
    from mtbert.cli.run import load_tokenized
    from mtbert.inference.predict import predict_task

    model = MultitaskBertModel.from_pretrained(model_dir, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data_args = DataArguments(data_source="minbert", data_dir=str(data_dir))
    dev = load_tokenized({task: model.config.tasks[task]}, data_args, tokenizer, splits=("dev",))[task]["dev"]
    result = predict_task(model, task, dev, pad_token_id=tokenizer.pad_token_id, progress=False)
    return dev, result, model


def test_analyze_matches_direct_computation(workspace):
    model_dir, data_dir = workspace["default_model"], workspace["data"]
    out = workspace["root"] / "out_default"
    report = analyze(str(model_dir), str(data_dir), str(out), top_n=3, device="cpu")
    assert set(report.tasks) == {"sst", "qqp", "sts"} and not report.skipped

    # QQP: Table 6 numbers and the most confident errors
    dev, result, _ = direct_predictions(model_dir, data_dir, "qqp")
    labels, preds, scores = np.asarray(dev["label"]), result["predictions"].astype(int), result["scores"]
    qqp = report.tasks["qqp"]
    assert qqp["n"] == len(dev) > 20
    assert qqp["accuracy"] == pytest.approx(np.mean(preds == labels))
    assert qqp["paraphrase_accuracy"] == pytest.approx(np.mean(preds[labels == 1] == 1))
    assert qqp["non_paraphrase_accuracy"] == pytest.approx(np.mean(preds[labels == 0] == 0))
    fp = [i for i in np.argsort(-scores, kind="stable") if labels[i] == 0 and preds[i] == 1][:3]
    fn = [i for i in np.argsort(scores, kind="stable") if labels[i] == 1 and preds[i] == 0][:3]
    assert fp and fn and 0 < preds.mean() < 1  # the fixture's model makes both kinds of errors
    assert [e["id"] for e in qqp["false_positives"]] == [dev["id"][i] for i in fp]
    assert [e["id"] for e in qqp["false_negatives"]] == [dev["id"][i] for i in fn]
    assert [e["score"] for e in qqp["false_positives"]] == pytest.approx([scores[i] for i in fp])
    assert qqp["n_false_positives"] == int(np.sum((labels == 0) & (preds == 1)))
    for e in qqp["false_positives"] + qqp["false_negatives"]:
        i = dev["id"].index(e["id"])
        assert (e["text"], e["text_pair"]) == (dev["text"][i], dev["text_pair"][i])

    # SST: confusion matrix (rows true, columns predicted)
    dev, result, model = direct_predictions(model_dir, data_dir, "sst")
    expected = np.zeros((5, 5), dtype=int)
    for true, pred in zip(dev["label"], result["predictions"].astype(int)):
        expected[true, pred] += 1
    sst = report.tasks["sst"]
    assert sst["confusion"].tolist() == expected.tolist()
    assert sst["label_names"] == model.config.tasks["sst"]["label_names"]
    assert sst["accuracy"] == pytest.approx(np.trace(expected) / len(dev))

    # STS: correlations of the predicted scores with gold
    dev, result, _ = direct_predictions(model_dir, data_dir, "sts")
    sts = report.tasks["sts"]
    assert sts["pearson"] == pytest.approx(stats.pearsonr(result["predictions"], dev["label"])[0])
    assert sts["spearman"] == pytest.approx(stats.spearmanr(result["predictions"], dev["label"])[0])

    # files
    for name in ("sst_confusion_matrix.png", "sts_scatter.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000
    markdown = (out / "analysis.md").read_text(encoding="utf-8")
    assert markdown == render_markdown(report, str(out))
    assert (
        f"| default | {qqp['accuracy']:.3f} | {qqp['paraphrase_accuracy']:.3f} | "
        f"{qqp['non_paraphrase_accuracy']:.3f} |" in markdown
    )
    assert f"Paraphrases (n={int(np.sum(labels == 1))})" in markdown
    assert (
        "| true \\ predicted | negative | somewhat negative | neutral | somewhat positive | positive | recall |"
        in markdown
    )
    assert f"Pearson {sts['pearson']:.3f}, Spearman {sts['spearman']:.3f}" in markdown
    assert "![sst confusion matrix](sst_confusion_matrix.png)" in markdown
    text = summary(report)
    assert f"qqp: accuracy {qqp['accuracy']:.3f}" in text and "analysis.md" in text


def test_missing_tasks_and_files_are_skipped(workspace):
    """A model without STS and a data folder without the SST dev file: QQP (cosine head) is still analysed."""
    data = cut_data(workspace["root"] / "data_no_sst", [f for f in FILES if not f.startswith("ids-sst")])
    out = workspace["root"] / "out_cosine"
    report = analyze(str(workspace["cosine_model"]), str(data), str(out), top_n=2, device="cpu")
    assert set(report.tasks) == {"qqp"}
    assert "ids-sst-dev.csv" in report.skipped["sst"]
    qqp = report.tasks["qqp"]
    assert qqp["score_name"] == "cosine" and qqp["threshold"] == 0.75
    dev, result, _ = direct_predictions(workspace["cosine_model"], data, "qqp")
    assert np.array_equal(result["predictions"], (result["scores"] > 0.75).astype(float))
    assert qqp["accuracy"] == pytest.approx(np.mean(result["predictions"] == np.asarray(dev["label"])))
    markdown = (out / "analysis.md").read_text(encoding="utf-8")
    assert "## Skipped" in markdown and "STS" not in markdown and "(threshold 0.75)" in markdown
    assert sorted(p.name for p in out.iterdir()) == ["analysis.md"]


def test_command_line(workspace, capsys):
    spec = importlib.util.spec_from_file_location("analyze_cli", ROOT / "examples" / "analyze.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = workspace["root"] / "cli"
    module.main(
        [
            str(workspace["cosine_model"]),
            "--data_dir",
            str(workspace["data"]),
            "--output_dir",
            str(out),
            "--tasks",
            "sst",
            "--device",
            "cpu",
        ]
    )
    printed = capsys.readouterr().out
    assert "sst: accuracy" in printed and f"wrote {out / 'analysis.md'}" in printed
    assert (out / "sst_confusion_matrix.png").read_bytes().startswith(PNG_MAGIC)
    assert "QQP" not in (out / "analysis.md").read_text(encoding="utf-8")
