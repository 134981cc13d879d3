"""Issue 17, item 3: a model card beside every saved model. ``examples/train.py`` writes ``README.md`` (the renderer a
push uses) beside the final model and in each checkpoint; ``huggingface_hub.ModelCard.load`` reads it; its
``model-index`` lists every task with the dataset it really came from (no ``nyu-mll/glue`` split ``dev`` for the
re-split minBERT files); the ``widget`` and usage examples fit each task (a pair for a pair task, the task's own dev
row when the data are at hand, never a movie review for a task that is not about sentiment)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from mtbert import MultitaskBertConfig
from mtbert.cli.arguments import DataArguments
from mtbert.hub import (
    DEFAULT_EXAMPLES,
    NEUTRAL_EXAMPLES,
    examples_from_data,
    render_model_card,
    task_datasets,
    task_examples,
)

from conftest import run_example_script, tiny_bert_config

ROOT = Path(__file__).resolve().parents[2]
NLI_DIR = ROOT / "examples" / "data" / "nli_toy"
NLI = {
    "kind": "pair_classification",
    "num_labels": 3,
    "label_names": ["entailment", "neutral", "contradiction"],
    "pair_encoding": "concat_sep",
}
HUB_IDS = {"SetFit/sst5", "nyu-mll/glue", "sentence-transformers/stsb"}


def resolved(tasks: dict) -> dict:
    """The tasks' full specs, as a model's config holds them."""
    return MultitaskBertConfig(encoder=tiny_bert_config().to_dict(), tasks=tasks).tasks


def front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n", 2)[1])


def first_row(path: Path) -> dict:
    with open(path, newline="", encoding="utf-8") as handle:
        return next(csv.DictReader(handle))


# ---------------------------------------------------------------------------------------------------------------
# Datasets and examples per task (no model needed)
# ---------------------------------------------------------------------------------------------------------------


def test_each_task_names_the_dataset_it_really_came_from(tmp_path):
    tasks = resolved({"sst": {}, "qqp": {}, "sts": {}, "nli": NLI})
    data_args = DataArguments(
        data_source="minbert",
        data_dir=str(tmp_path),
        task_data={"nli": {"source": "files", "data_dir": str(NLI_DIR), "text_columns": ["premise", "hypothesis"]}},
    )
    sources = task_datasets(tasks, data_args)
    assert list(sources) == ["sst", "qqp", "sts", "nli"]
    for task in ("sst", "qqp", "sts"):
        entry = sources[task]
        assert entry["dataset_id"] == f"cs224n-minbert-{task}" and entry["dataset_id"] not in HUB_IDS
        assert entry["split"] == "dev" and not entry["on_hub"]
        assert "CS224N minBERT split" in entry["dataset_name"]
    assert sources["sst"]["files"] == f"{tmp_path.name}/ids-sst-dev.csv"
    assert sources["qqp"]["origin"] == "nyu-mll/glue"  # named as the origin of the re-split, not as the dataset
    assert sources["nli"] == {
        "dataset_id": "nli_toy",
        "dataset_config": None,
        "dataset_name": "nli_toy (local files)",
        "split": "validation",
        "on_hub": False,
        "files": "nli_toy/validation.csv",
        "origin": None,
    }


def test_hub_tasks_name_their_id_and_real_split():
    tasks = resolved({"qqp": {}, "mnli": NLI})
    data_args = DataArguments(
        data_source="hub",
        task_data={
            "mnli": {
                "source": "hub",
                "path": "nyu-mll/glue",
                "name": "mnli",
                "text_columns": ["premise", "hypothesis"],
                "splits": {"dev": "validation_matched"},
            }
        },
    )
    sources = task_datasets(tasks, data_args)
    assert (sources["qqp"]["dataset_id"], sources["qqp"]["dataset_config"], sources["qqp"]["split"]) == (
        "nyu-mll/glue",
        "qqp",
        "validation",
    )
    assert (sources["mnli"]["dataset_id"], sources["mnli"]["dataset_config"], sources["mnli"]["split"]) == (
        "nyu-mll/glue",
        "mnli",
        "validation_matched",
    )
    assert sources["mnli"]["on_hub"]


def test_every_task_is_listed_even_without_data_args():
    sources = task_datasets(resolved({"sst": {}, "nli": NLI}))
    assert sources["sst"]["dataset_id"] == "SetFit/sst5"  # the known task's default Hub source
    assert sources["nli"]["dataset_name"] == "nli (data source not recorded)" and not sources["nli"]["on_hub"]


def test_examples_fit_each_head():
    tasks = resolved(
        {
            "sst": {},
            "qqp": {},
            "topic": {"kind": "sentence_classification", "num_labels": 4},
            "nli": NLI,
            "para": {"kind": "pair_classification"},
        }
    )
    given = {
        "para": {"text": "Only one sentence"},  # does not fit a pair head: not used
        "topic": {"text": "  Stocks fell sharply on Monday.  "},
    }
    examples = task_examples(tasks, given)
    assert examples["sst"] == DEFAULT_EXAMPLES["sst"] and examples["qqp"] == DEFAULT_EXAMPLES["qqp"]
    assert examples["topic"] == {"text": "Stocks fell sharply on Monday."}
    assert examples["nli"] == NEUTRAL_EXAMPLES[True] and set(examples["nli"]) == {"text", "text_pair"}
    assert examples["para"] == NEUTRAL_EXAMPLES[True]
    assert examples["nli"]["text"] != DEFAULT_EXAMPLES["sst"]["text"]  # never the movie review
    assert task_examples({"topic": tasks["topic"]})["topic"] == NEUTRAL_EXAMPLES[False]


def test_examples_from_data_take_the_first_dev_row():
    import datasets

    data = {
        "sst": {"dev": datasets.Dataset.from_dict({"text": ["first", "second"], "label": [0, 1]})},
        "nli": {"dev": datasets.Dataset.from_dict({"text": ["a", "b"], "text_pair": ["c", "d"], "label": [0, 1]})},
        "empty": {"dev": datasets.Dataset.from_dict({"text": [], "label": []})},
        "no_dev": {"train": datasets.Dataset.from_dict({"text": ["x"], "label": [0]})},
    }
    assert examples_from_data(data) == {"sst": {"text": "first"}, "nli": {"text": "a", "text_pair": "c"}}


def test_card_of_a_four_task_model_lists_every_task_with_fitting_examples(make_model, tmp_path):
    model = make_model(
        {"sst": {}, "qqp": {"pair_encoding": "concat_sep"}, "sts": {"pair_encoding": "cosine"}, "nli": NLI}
    )
    data_args = DataArguments(
        data_source="minbert",
        data_dir=str(tmp_path),
        task_data={"nli": {"source": "files", "data_dir": str(NLI_DIR), "text_columns": ["premise", "hypothesis"]}},
    )
    metrics = {
        "eval_sst_accuracy": 0.4,
        "eval_qqp_accuracy": 0.7,
        "eval_sts_pearson": 0.5,
        "eval_nli_accuracy": 0.6,
        "eval_nli_f1": 0.55,
    }
    card = render_model_card(
        model,
        metrics=metrics,
        data_args=data_args,
        repo_id="user/m",
        examples={"nli": {"text": "A dog runs.", "text_pair": "An animal moves."}},
    )
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    results = {(r.task_name.split()[0], r.metric_type): r for r in loaded.data.eval_results}
    assert set(results) == {
        ("sst", "accuracy"),
        ("qqp", "accuracy"),
        ("sts", "pearsonr"),
        ("nli", "accuracy"),
        ("nli", "f1"),
    }
    assert (results[("nli", "f1")].dataset_type, results[("nli", "f1")].dataset_split) == ("nli_toy", "validation")
    assert all(r.dataset_type not in HUB_IDS for r in loaded.data.eval_results)
    assert "datasets" not in front_matter(card.content)  # nothing here is a Hub dataset
    widget = {w["example_title"]: w for w in loaded.data.widget}
    assert widget["nli"] == {"text": "A dog runs.", "text_pair": "An animal moves.", "example_title": "nli"}
    assert "text_pair" not in widget["sst"] and "text_pair" in widget["qqp"] and "text_pair" in widget["sts"]
    text = card.content
    assert "| `nli` | nli_toy (local files) (`nli_toy`, not on the Hub) | validation | F1 | 0.5500 |" in text
    assert 'pipe({"text": "A dog runs.", "text_pair": "An animal moves."}, task="nli")' in text
    assert "read from `nli_toy/validation.csv`" in text


def test_automodel_example_uses_an_input_the_tokenizer_builds(make_model):
    pairs_only = make_model({"nli": NLI, "sts": {"pair_encoding": "cosine"}})
    text = render_model_card(pairs_only).content
    assert 'batch = tokenizer(["A man is playing a guitar on stage."], ["Someone is making music."]' in text
    assert 'model(task="nli"' in text
    separate_only = make_model({"sts": {"pair_encoding": "cosine"}})
    assert "With `AutoModel`" not in render_model_card(separate_only).content  # a separate pair needs the pipeline


# ---------------------------------------------------------------------------------------------------------------
# examples/train.py writes the card beside the model and in each checkpoint
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data").is_dir(), reason="../shared/data is not beside the checkout")
def test_train_writes_a_card_beside_the_model_for_every_task(tiny_backbone, small_minbert, tmp_path):
    out = tmp_path / "own_task"
    args = [
        "examples/configs/own_task.yaml",
        "--model_name_or_path",
        str(tiny_backbone),
        "--data_dir",
        str(small_minbert),
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--max_eval_samples",
        "12",
        "--max_seq_length",
        "32",
        "--max_train_samples",
        json.dumps({"sst": 8, "qqp": 8, "sts": 8}),
        "--per_device_train_batch_size",
        "4",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--write_predictions",
        "false",
        "--use_cpu",
        "true",
        "--disable_tqdm",
        "true",
        "--report_to",
        "none",
    ]
    result = run_example_script("train", args)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    # beside the final model, with the final dev metrics of all four tasks
    card = ModelCard.load(out / "README.md")
    metrics = json.loads((out / "metrics.json").read_text())
    values = {(r.task_name.split()[0], r.metric_type): r for r in card.data.eval_results}
    assert {task for task, _ in values} == {"sst", "qqp", "sts", "nli"}
    assert values[("nli", "accuracy")].metric_value == pytest.approx(metrics["eval_nli_accuracy"], abs=1e-6)
    assert values[("sst", "accuracy")].metric_value == pytest.approx(metrics["eval_sst_accuracy"], abs=1e-6)
    for task in ("sst", "qqp", "sts"):  # the re-split minBERT files are not claimed as a Hub dataset's split
        result_ = next(r for (t, _), r in values.items() if t == task)
        assert result_.dataset_type == f"cs224n-minbert-{task}" and result_.dataset_split == "dev"
    assert not any(r.dataset_type in HUB_IDS for r in card.data.eval_results)
    assert (values[("nli", "accuracy")].dataset_type, values[("nli", "accuracy")].dataset_split) == (
        "nli_toy",
        "validation",
    )
    assert card.data.to_dict().get("datasets") is None

    # widget and usage examples: each task's first dev row, a pair for the pair tasks
    widget = {w["example_title"]: w for w in card.data.widget}
    assert set(widget) == {"sst", "qqp", "sts", "nli"}
    nli_row = first_row(NLI_DIR / "validation.csv")
    assert (widget["nli"]["text"], widget["nli"]["text_pair"]) == (nli_row["premise"], nli_row["hypothesis"])
    assert "text_pair" not in widget["sst"] and all("text_pair" in widget[t] for t in ("qqp", "sts"))
    assert widget["sst"]["text"] in (small_minbert / "ids-sst-dev.csv").read_text(encoding="utf-8")
    nli_call = json.dumps({"text": nli_row["premise"], "text_pair": nli_row["hypothesis"]})
    assert f'pipe({nli_call}, task="nli")' in card.content
    assert f'pipeline(model="{out.name}"' in card.content

    # and in the checkpoint (no evaluation had run yet: every task in the card, no results)
    checkpoint = ModelCard.load(out / "checkpoint-2" / "README.md")
    assert {w["example_title"] for w in checkpoint.data.widget} == {"sst", "qqp", "sts", "nli"}
    assert "`nli`" in checkpoint.content and "No evaluation results were recorded" in checkpoint.content
